"""Windows, smoothing, thresholds, minimum length and event merging (scanner/segments.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.backbones.fake import FakeBackbone
from scanner.classify import Classifier, Model
from scanner.errors import ConfigError
from scanner.events.segments import (
    SegmentConfig,
    analyse_file,
    analyse_result,
    event_columns,
    events_path,
    parse_thresholds,
    patches_in,
    segment_columns,
    segment_probs,
    segments_path,
    smooth,
    summary_columns,
    window_bounds,
    window_labels,
    window_starts,
)
from scanner.heads.mlp import MLPHead
from scanner.records import Embedding
from scanner.testing import sine

CLASSES = ("cry", "screaming", "not_screaming")
SR = 16_000


def _probs(screaming: list[float], cry: list[float] | None = None) -> np.ndarray:
    """Rows of (cry, screaming, not_screaming) summing to 1."""
    cry = cry or [0.0] * len(screaming)
    p = np.array([[c, s, 1.0 - c - s] for c, s in zip(cry, screaming, strict=True)])
    assert (p >= 0).all()
    return p


def _grid(n: int, window_s: float = 0.96, hop_s: float = 0.48):
    starts = np.arange(n) * hop_s
    return starts, starts + window_s, float(starts[-1] + window_s)


# -- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"window_s": 0}, {"window_s": float("nan")}, {"hop_s": 0}, {"window_s": 1.0, "hop_s": 2.0},
    {"smooth_windows": 0}, {"smooth_windows": 2}, {"min_event_s": -1}, {"max_gap_s": -0.5},
    {"max_gap_s": float("inf")}, {"min_event_fraction": 0}, {"min_event_fraction": 1.5},
    {"min_event_fraction": float("nan")}, {"short_max_s": -1}, {"short_max_s": float("inf")},
    {"short_thresholds": {"cry": 1.2}}, {"short_thresholds": {"not_screaming": 0.5}},
    {"thresholds": {"screaming": 1.5}}, {"thresholds": {"not_screaming": 0.5}},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SegmentConfig(**kwargs)


def test_config_round_trip_and_thresholds():
    cfg = SegmentConfig(window_s=2.0, hop_s=0.5, smooth_windows=5, min_event_s=1.5,
                        thresholds={"screaming": 0.7})
    assert SegmentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.threshold("screaming") == 0.7
    assert cfg.threshold("cry") == 0.5
    with pytest.raises(ConfigError, match="unknown class"):
        SegmentConfig(thresholds={"scream": 0.6}).check_classes(CLASSES)


def test_parse_thresholds():
    assert parse_thresholds(["screaming=0.6", "cry=0.4, screaming=0.7"]) == {
        "screaming": 0.7, "cry": 0.4}
    assert parse_thresholds([]) == {}
    for bad in (["screaming"], ["screaming=high"], ["screaming=1.2"], ["=0.5"]):
        with pytest.raises(ValueError, match="CLASS=P"):
            parse_thresholds(bad)


def test_paths_beside_the_file_table():
    assert segments_path(Path("out/results.parquet")) == Path("out/results.segments.parquet")
    assert events_path(Path("out/results.parquet")) == Path("out/results.events.parquet")
    assert events_path(Path("r.csv")) == Path("r.events.csv")


# -- windows --------------------------------------------------------------------------------

def test_window_starts_cover_the_file_and_stay_inside_it():
    starts = window_starts(5.0, 1.44, 0.48)
    assert starts[0] == 0.0
    assert starts[-1] + 1.44 == pytest.approx(5.0)  # the last window ends at the file's end
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= 0.48 + 1e-9)
    assert window_starts(0.7, 1.44, 0.48).tolist() == [0.0]  # shorter than one window
    assert window_starts(1.44, 1.44, 0.48).tolist() == [0.0]


def test_patches_in_uses_centres_then_largest_overlap():
    starts = np.arange(10) * 0.48  # centres at 0.48 + 0.48 k
    assert patches_in(starts, 0.96, 0.0, 1.44).tolist() == [0, 1]  # centres 0.48, 0.96
    assert patches_in(starts, 0.96, 0.96, 2.4).tolist() == [1, 2, 3]
    long = np.array([0.0, 10.0])  # Wav2Vec2-like 10 s patches: none centred in a 2 s window
    assert patches_in(long, 10.0, 11.0, 13.0).tolist() == [1]
    assert patches_in(long, 10.0, 9.0, 11.0).tolist() == [0, 1]  # equal overlap: both


def test_window_bounds_tile_the_file_at_the_centres():
    starts, ends, dur = _grid(4)
    lo, hi = window_bounds(starts, ends, dur)
    assert lo[0] == 0.0 and hi[-1] == dur
    np.testing.assert_allclose(lo[1:], hi[:-1])
    np.testing.assert_allclose(hi[:-1], (starts[:-1] + starts[1:]) / 2 + 0.48)


# -- smoothing and decisions ----------------------------------------------------------------

def test_smooth_is_a_centred_mean_that_keeps_constants():
    x = np.zeros((7, 3))
    x[3, 1] = 0.9
    s = smooth(x, 3)
    np.testing.assert_allclose(s[2:5, 1], [0.3, 0.3, 0.3])
    assert s[1, 1] == 0 and s[5, 1] == 0
    const = np.tile([0.2, 0.3, 0.5], (5, 1))
    np.testing.assert_allclose(smooth(const, 5), const)
    edge = smooth(np.array([[1.0], [0.0], [0.0]]), 3)
    assert edge[0, 0] == pytest.approx(0.5)  # mean over the two rows there are
    np.testing.assert_array_equal(smooth(x, 1), x)


def test_window_labels_apply_per_class_thresholds():
    p = _probs([0.55, 0.55, 0.1, 0.3], cry=[0.0, 0.4, 0.6, 0.45])
    cfg = SegmentConfig(thresholds={"screaming": 0.5, "cry": 0.4})
    assert window_labels(p, CLASSES, cfg) == ["screaming", "screaming", "cry", "cry"]
    strict = SegmentConfig(thresholds={"screaming": 0.6})
    assert window_labels(p, CLASSES, strict) == ["not_screaming", "not_screaming", "cry",
                                                 "not_screaming"]


# -- events from synthetic probability sequences --------------------------------------------

def test_a_run_of_windows_becomes_one_event_at_the_window_centres():
    screaming = [0.05] * 10 + [0.9] * 8 + [0.05] * 10
    starts, ends, dur = _grid(len(screaming))
    cfg = SegmentConfig(window_s=0.96, hop_s=0.48, smooth_windows=1, min_event_s=1.0)
    fs = segment_probs(starts, ends, _probs(screaming), CLASSES, dur, cfg)
    assert len(fs.events) == 1
    ev = fs.events[0]
    # window k owns [centre_k - hop/2, centre_k + hop/2): windows 10..17
    assert ev["label"] == "screaming"
    assert ev["start_s"] == pytest.approx(10 * 0.48 + 0.48 - 0.24)
    assert ev["end_s"] == pytest.approx(17 * 0.48 + 0.48 + 0.24)
    assert ev["peak_confidence"] == pytest.approx(0.9)
    assert ev["mean_confidence"] == pytest.approx(0.9)
    labels = [s["label"] for s in fs.segments]
    assert labels == ["not_screaming"] * 10 + ["screaming"] * 8 + ["not_screaming"] * 10
    assert fs.summary["n_events_screaming"] == 1 and fs.summary["n_events_cry"] == 0
    assert fs.summary["event_s_screaming"] == pytest.approx(8 * 0.48)
    assert fs.summary["first_onset_s"] == ev["start_s"]


def test_one_stray_window_makes_no_event():
    screaming = [0.05] * 10 + [0.95] + [0.05] * 10
    starts, ends, dur = _grid(len(screaming))
    smoothed = segment_probs(starts, ends, _probs(screaming), CLASSES, dur,
                             SegmentConfig(smooth_windows=3, min_event_s=0.0))
    assert smoothed.events == []  # 0.95 averaged with two neighbours is under 0.5
    too_short = segment_probs(starts, ends, _probs(screaming), CLASSES, dur,
                              SegmentConfig(smooth_windows=1, min_event_s=1.0))
    assert too_short.events == []  # one window owns 0.48 s < 1.0 s
    assert all(s["label"] == "not_screaming" for s in too_short.segments)
    kept = segment_probs(starts, ends, _probs(screaming), CLASSES, dur,
                         SegmentConfig(smooth_windows=1, min_event_s=0.4))
    assert len(kept.events) == 1


def test_threshold_decides_whether_a_weak_run_is_an_event():
    screaming = [0.1] * 5 + [0.55] * 6 + [0.1] * 5
    starts, ends, dur = _grid(len(screaming))
    loose = segment_probs(starts, ends, _probs(screaming), CLASSES, dur,
                          SegmentConfig(smooth_windows=1, thresholds={"screaming": 0.5}))
    strict = segment_probs(starts, ends, _probs(screaming), CLASSES, dur,
                           SegmentConfig(smooth_windows=1, thresholds={"screaming": 0.6}))
    assert [e["label"] for e in loose.events] == ["screaming"]
    assert strict.events == [] and strict.summary["n_events"] == 0
    assert strict.summary["first_onset_s"] is None


def test_runs_of_different_classes_and_gaps_make_separate_events():
    cry = [0.0] * 4 + [0.8] * 4 + [0.0] * 12
    screaming = [0.0] * 8 + [0.9] * 3 + [0.0] * 3 + [0.9] * 3 + [0.0] * 3
    starts, ends, dur = _grid(len(cry))
    fs = segment_probs(starts, ends, _probs(screaming, cry), CLASSES, dur,
                       SegmentConfig(smooth_windows=1, min_event_s=1.0))
    assert [e["label"] for e in fs.events] == ["cry", "screaming", "screaming"]
    assert fs.events[0]["end_s"] == pytest.approx(fs.events[1]["start_s"])  # adjacent runs
    assert fs.summary["n_events"] == 3
    assert fs.summary["n_events_cry"] == 1 and fs.summary["n_events_screaming"] == 2
    assert fs.summary["event_s_screaming"] == pytest.approx(6 * 0.48)
    assert fs.summary["first_onset_s"] == fs.events[0]["start_s"]


def test_a_short_gap_between_two_runs_of_one_class_is_bridged():
    # screaming, 3 windows of background (1.44 s), screaming; then cry right after a gap
    screaming = [0.0] * 4 + [0.9] * 3 + [0.0] * 3 + [0.9] * 3 + [0.0] * 3 + [0.0] * 4
    cry = [0.0] * 16 + [0.9] * 4
    starts, ends, dur = _grid(len(cry))
    probs = _probs(screaming, cry)

    def events(gap: float) -> list[dict]:
        return segment_probs(starts, ends, probs, CLASSES, dur,
                             SegmentConfig(smooth_windows=1, min_event_s=1.0,
                                           max_gap_s=gap)).events

    assert [e["label"] for e in events(0.0)] == ["screaming", "screaming", "cry"]
    assert [e["label"] for e in events(1.0)] == ["screaming", "screaming", "cry"]  # 1.44 > 1
    joined = events(1.5)
    assert [e["label"] for e in joined] == ["screaming", "cry"]  # a gap never joins classes
    assert joined[0]["start_s"] == pytest.approx(events(0.0)[0]["start_s"])
    assert joined[0]["end_s"] == pytest.approx(events(0.0)[1]["end_s"])
    fs = segment_probs(starts, ends, probs, CLASSES, dur,
                       SegmentConfig(smooth_windows=1, min_event_s=1.0, max_gap_s=1.5))
    assert [s["label"] for s in fs.segments][4:13] == ["screaming"] * 9
    assert fs.summary["n_events_screaming"] == 1
    # two short runs that are each under the minimum make one event once bridged
    short = [0.0] * 4 + [0.9] + [0.0] + [0.9] + [0.0] * 5
    s_starts, s_ends, s_dur = _grid(len(short))
    assert segment_probs(s_starts, s_ends, _probs(short), CLASSES, s_dur,
                         SegmentConfig(smooth_windows=1, min_event_s=1.0)).events == []
    bridged = segment_probs(s_starts, s_ends, _probs(short), CLASSES, s_dur,
                            SegmentConfig(smooth_windows=1, min_event_s=1.0, max_gap_s=0.5))
    assert len(bridged.events) == 1


def test_segment_rows_match_the_declared_columns():
    import pyarrow as pa

    from scanner.output.rows import arrow_schema

    starts, ends, dur = _grid(12)
    fs = segment_probs(starts, ends, _probs([0.0] * 4 + [0.9] * 4 + [0.0] * 4), CLASSES, dur,
                       SegmentConfig(smooth_windows=1))
    seg_rows, ev_rows = fs.rows("/a/b.wav")
    assert list(seg_rows[0]) == list(segment_columns(CLASSES))
    # the chain adds each event's wall-clock start_time (from the file's recorded_at)
    assert list(ev_rows[0]) + ["start_time"] == list(event_columns())
    assert list(fs.summary) == list(summary_columns(CLASSES, "not_screaming"))
    for rows, cols in ((seg_rows, segment_columns(CLASSES)), (ev_rows, event_columns())):
        table = pa.Table.from_pylist(rows, schema=arrow_schema(cols))
        assert table.num_rows == len(rows) and table.column("path")[0].as_py() == "/a/b.wav"
    np.testing.assert_allclose([sum(r[f"prob_{c}"] for c in CLASSES) for r in seg_rows], 1.0)


def test_no_windows_gives_an_empty_summary():
    fs = segment_probs(np.zeros(0), np.zeros(0), np.zeros((0, 3)), CLASSES, 3.0, SegmentConfig())
    assert fs.segments == [] and fs.events == []
    assert fs.summary["n_events"] == 0 and fs.summary["first_onset_s"] is None


# -- with a backbone and a head -------------------------------------------------------------

# The fake backbone's 16 features are log energies of 500 Hz bands: a 440 Hz tone lights
# band 0, a 2.6 kHz tone band 5 and a 5.2 kHz tone band 10. The head reads one band per class.
BAND = {"cry": 5, "screaming": 10, "not_screaming": 0}
TONE_HZ = {"cry": 2600.0, "screaming": 5200.0, "not_screaming": 440.0}


def _band_classifier(backbone: FakeBackbone, *, weight: float = 1.0) -> Classifier:
    w = np.zeros((3, 16), np.float32)
    for i, c in enumerate(CLASSES):
        w[i, BAND[c]] = 1.0
    head = MLPHead(classes=CLASSES, backbone_config={**backbone.config(), **backbone.identity},
                   layers=[(w, np.zeros(3, np.float32))], mean=np.zeros(16), std=np.ones(16),
                   name=f"bands-{backbone.name}")
    return Model(backbone, head, weight)


def _tones(*parts: tuple[str, float]) -> np.ndarray:
    return np.concatenate([sine(TONE_HZ[c], d, SR, amplitude=0.3) for c, d in parts])


def test_analyse_file_places_a_tone_burst_with_the_fake_backbone():
    backbone = FakeBackbone()
    classifier = Classifier([_band_classifier(backbone)])
    wave = _tones(("not_screaming", 10.0), ("screaming", 3.0), ("not_screaming", 8.0),
                  ("cry", 2.0), ("not_screaming", 4.0))
    fs = analyse_file(classifier, {"fake": backbone.embed(wave)}, len(wave) / SR, SegmentConfig())
    assert [e["label"] for e in fs.events] == ["screaming", "cry"]
    scream, cry = fs.events
    assert abs(scream["start_s"] - 10.0) <= 0.5 and abs(scream["end_s"] - 13.0) <= 0.5
    assert abs(cry["start_s"] - 21.0) <= 0.5 and abs(cry["end_s"] - 23.0) <= 0.5
    assert scream["peak_confidence"] > 0.99
    assert fs.segments[-1]["end_s"] == pytest.approx(27.0)
    assert fs.summary["first_onset_s"] == scream["start_s"]


def test_analyse_file_with_two_backbones_on_different_grids():
    class CoarseFake(FakeBackbone):
        name = "coarse"

    fine, coarse = FakeBackbone(), CoarseFake(window_s=2.0, hop_s=1.0)
    classifier = Classifier([_band_classifier(fine), _band_classifier(coarse)])
    wave = _tones(("not_screaming", 8.0), ("screaming", 4.0), ("not_screaming", 8.0))
    embeddings = {"fake": fine.embed(wave), "coarse": coarse.embed(wave)}
    fs = analyse_file(classifier, embeddings, len(wave) / SR, SegmentConfig(window_s=1.0,
                                                                             hop_s=0.5))
    assert [e["label"] for e in fs.events] == ["screaming"]
    assert abs(fs.events[0]["start_s"] - 8.0) <= 1.0 and abs(fs.events[0]["end_s"] - 12.0) <= 1.0


def test_short_and_cut_files():
    backbone = FakeBackbone()
    classifier = Classifier([_band_classifier(backbone)])
    short = _tones(("screaming", 0.5))
    fs = analyse_file(classifier, {"fake": backbone.embed(short)}, 0.5, SegmentConfig())
    assert len(fs.segments) == 1
    assert (fs.segments[0]["start_s"], fs.segments[0]["end_s"]) == (0.0, 0.5)
    assert fs.segments[0]["prob_screaming"] > 0.9
    # Embeddings of the first 6 s of a file said to last 60 s (--max-duration): no windows
    # where nothing was analysed.
    cut = _tones(("not_screaming", 6.0))
    fs = analyse_file(classifier, {"fake": backbone.embed(cut)}, 60.0, SegmentConfig())
    assert fs.segments[-1]["end_s"] <= 6.0 + 0.96
    assert fs.events == []


def test_empty_embedding_gives_no_segments():
    backbone = FakeBackbone()
    classifier = Classifier([_band_classifier(backbone)])
    empty = Embedding(np.zeros((0, 16), np.float32), np.zeros(0), 0.96)
    fs = analyse_file(classifier, {"fake": empty}, 3.0, SegmentConfig())
    assert fs.segments == [] and fs.summary["n_events"] == 0


def test_analyse_result_uses_the_cut_length_and_skips_failures():
    from scanner.records import AudioFile, ClipInfo, DecodeFailure, DecodeTask, FileResult

    backbone = FakeBackbone()
    classifier = Classifier([_band_classifier(backbone)])
    wave = _tones(("not_screaming", 4.0), ("screaming", 4.0))  # the first 8 s of a long file
    file = AudioFile(Path("/x/long.wav"), 1, 1)
    info = ClipInfo(16000, 1, 600.0, "soundfile", 0.1, truncated_to_s=8.0)
    fs = analyse_result(classifier, FileResult(file, info, {"fake": backbone.embed(wave)}),
                        SegmentConfig())
    assert fs.segments[-1]["end_s"] == pytest.approx(8.0)
    assert [e["label"] for e in fs.events] == ["screaming"]
    assert fs.events[0]["end_s"] == pytest.approx(8.0)
    failed = FileResult(file, failure=DecodeFailure(DecodeTask(file), "not_audio", "bad"))
    assert analyse_result(classifier, failed, SegmentConfig()) is None


def test_patch_order_does_not_matter():
    backbone = FakeBackbone()
    classifier = Classifier([_band_classifier(backbone)])
    wave = _tones(("not_screaming", 5.0), ("screaming", 3.0), ("not_screaming", 5.0))
    emb = backbone.embed(wave)
    order = np.random.default_rng(0).permutation(emb.n_patches)
    shuffled = Embedding(emb.embeddings[order], emb.starts_s[order], emb.window_s)
    a = analyse_file(classifier, {"fake": emb}, 13.0, SegmentConfig())
    b = analyse_file(classifier, {"fake": shuffled}, 13.0, SegmentConfig())
    assert a.events == b.events and len(a.events) == 1
    assert a.segments == b.segments


def test_each_class_may_have_its_own_minimum_event_length():
    # a 2.4 s cry and a 2.4 s scream, far apart
    cry = [0.0] * 4 + [0.9] * 5 + [0.0] * 21
    screaming = [0.0] * 20 + [0.9] * 5 + [0.0] * 5
    starts, ends, dur = _grid(len(cry))
    probs = _probs(screaming, cry)

    def labels(**kw) -> list[str]:
        cfg = SegmentConfig(smooth_windows=1, **kw)
        return [e["label"] for e in segment_probs(starts, ends, probs, CLASSES, dur, cfg).events]

    assert labels(min_event_s=1.0) == ["cry", "screaming"]
    assert labels(min_event_s=1.0, class_min_event_s={"cry": 3.0}) == ["screaming"]
    assert labels(min_event_s=3.0, class_min_event_s={"screaming": 1.0}) == ["screaming"]
    assert labels(min_event_s=3.0) == []
    cfg = SegmentConfig(min_event_s=1.0, class_min_event_s={"cry": 3.0})
    assert cfg.min_event("cry") == 3.0 and cfg.min_event("screaming") == 1.0
    assert SegmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="minimum event length of 'cry'"):
        SegmentConfig(class_min_event_s={"cry": -1.0})
    with pytest.raises(ValueError, match="background"):
        SegmentConfig(class_min_event_s={"not_screaming": 1.0})
    with pytest.raises(ConfigError, match="unknown class"):
        SegmentConfig(class_min_event_s={"laughter": 1.0}).check_classes(CLASSES)


def test_in_a_short_recording_the_minimum_is_at_most_a_fraction_of_it():
    # a 1.9 s cry (4 windows' own stretch) in a 7.2 s clip, and the same cry in 60 s
    def events(n: int, **kw) -> list[dict]:
        cry = [0.0] * 5 + [0.9] * 4 + [0.0] * (n - 9)
        starts, ends, dur = _grid(n)
        cfg = SegmentConfig(smooth_windows=1, min_event_s=2.0, **kw)
        return segment_probs(starts, ends, _probs([0.0] * n, cry), CLASSES, dur, cfg).events

    assert events(14) == []  # 7.2 s: the 2 s minimum drops it
    (kept,) = events(14, min_event_fraction=0.25)  # the minimum is 1.8 s here
    assert kept["label"] == "cry" and kept["end_s"] - kept["start_s"] == pytest.approx(1.92)
    assert events(124, min_event_fraction=0.25) == []  # 60 s: the 2 s minimum holds
    # the default (1) keeps the earlier rule: shorter than the minimum, one event end to end
    starts, ends, dur = _grid(3)
    whole = segment_probs(starts, ends, _probs([0.9] * 3), CLASSES, dur,
                          SegmentConfig(smooth_windows=1, min_event_s=5.0)).events
    assert [(e["start_s"], e["end_s"]) for e in whole] == [(0.0, pytest.approx(dur))]
    cfg = SegmentConfig(min_event_fraction=0.25)
    assert SegmentConfig.from_dict(cfg.to_dict()) == cfg


def test_a_short_recording_uses_its_own_thresholds():
    # a 0.65 cry for 3 s in a 7.2 s clip, and the same cry in a 70 s recording
    def events(n: int, **kw) -> list[dict]:
        cry = [0.0] * 4 + [0.65] * 7 + [0.0] * (n - 11)
        starts, ends, dur = _grid(n)
        cfg = SegmentConfig(smooth_windows=1, min_event_s=1.0, thresholds={"cry": 0.8}, **kw)
        return segment_probs(starts, ends, _probs([0.0] * n, cry), CLASSES, dur, cfg).events

    short = {"short_thresholds": {"cry": 0.6}}
    assert events(14) == []  # the long threshold, 0.8, misses it
    (kept,) = events(14, **short)  # 7.2 s is a clip: 0.6 finds it
    assert kept["label"] == "cry"
    assert events(145, **short) == []  # 70 s is longer than the 60 s of a clip
    assert len(events(145, **short, short_max_s=80.0)) == 1
    assert events(14, **short, short_max_s=0.0) == []  # 0: no recording is short
    cfg = SegmentConfig(thresholds={"cry": 0.8, "screaming": 0.7}, **short)
    assert cfg.for_length(30.0).thresholds == {"cry": 0.6, "screaming": 0.7}
    assert cfg.for_length(61.0) is cfg
    assert SegmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown class"):
        SegmentConfig(short_thresholds={"laughter": 0.5}).check_classes(CLASSES)


def test_an_edge_threshold_extends_a_kept_event_over_its_fading_edges():
    # a cry that fades in (0.5), peaks (0.9) and fades out (0.5, 0.45); a lone 0.6 blip later
    cry = [0.05] * 4 + [0.5] * 3 + [0.9] * 5 + [0.5] * 4 + [0.45] * 2 + [0.05] * 6 + [0.6] * 2 \
        + [0.05] * 4
    screaming = [0.0] * len(cry)
    starts, ends, dur = _grid(len(cry))
    probs = _probs(screaming, cry)

    def events(**kw) -> list[dict]:
        cfg = SegmentConfig(smooth_windows=1, min_event_s=1.5, thresholds={"cry": 0.75}, **kw)
        return segment_probs(starts, ends, probs, CLASSES, dur, cfg).events

    (core,) = events()
    (grown,) = events(edge_thresholds={"cry": 0.4})
    own_start, own_end = window_bounds(starts, ends, dur)
    assert (core["start_s"], core["end_s"]) == pytest.approx((own_start[7], own_end[11]))
    assert (grown["start_s"], grown["end_s"]) == pytest.approx((own_start[4], own_end[17]))
    assert grown["peak_confidence"] == pytest.approx(0.9)
    assert grown["mean_confidence"] == pytest.approx(np.mean(cry[4:18]))
    # 0.48 passes the fade-out only to 0.5; the blip (0.6, above every edge) never becomes one
    (half,) = events(edge_thresholds={"cry": 0.48})
    assert half["end_s"] == pytest.approx(own_end[15])
    # an edge at or above the threshold changes nothing
    assert events(edge_thresholds={"cry": 0.9}) == [core]
    cfg = SegmentConfig(thresholds={"cry": 0.75}, edge_thresholds={"cry": 0.9})
    assert cfg.edge_threshold("cry") == 0.75 and cfg.edge_threshold("screaming") is None
    assert SegmentConfig.from_dict(cfg.to_dict()) == cfg


def test_an_edge_never_makes_an_event_nor_grows_into_another_class():
    # a 2-window cry (too short to keep) beside a long 0.5 stretch
    cry = [0.05] * 3 + [0.9] * 2 + [0.5] * 8 + [0.05] * 3
    starts, ends, dur = _grid(len(cry))
    cfg = SegmentConfig(smooth_windows=1, min_event_s=1.5, thresholds={"cry": 0.75},
                        edge_thresholds={"cry": 0.4})
    short = segment_probs(starts, ends, _probs([0.0] * len(cry), cry), CLASSES, dur, cfg)
    assert short.events == [] and set(short.labels) == {"not_screaming"}
    # a kept cry right before a scream whose windows still hold 0.45 cry
    cry = [0.05] * 3 + [0.9] * 5 + [0.45] * 5 + [0.05] * 3
    screaming = [0.0] * 8 + [0.5] * 5 + [0.0] * 3
    starts, ends, dur = _grid(len(cry))
    fs = segment_probs(starts, ends, _probs(screaming, cry), CLASSES, dur, cfg)
    assert [e["label"] for e in fs.events] == ["cry", "screaming"]
    assert fs.labels[8:13] == ["screaming"] * 5


@pytest.mark.parametrize("edges", [{"cry": 1.5}, {"cry": -0.1}, {"not_screaming": 0.3}])
def test_edge_thresholds_out_of_range_or_for_the_background_are_refused(edges):
    with pytest.raises(ValueError, match="edge threshold"):
        SegmentConfig(edge_thresholds=edges)
    with pytest.raises(ConfigError, match="unknown class"):
        SegmentConfig(edge_thresholds={"laughter": 0.3}).check_classes(CLASSES)


def test_edge_growth_is_the_two_way_walk_from_each_kept_run():
    """grow_events against its definition: walk out of every run of a class, forwards then
    backwards, over background windows at or above the edge (random labels and scores)."""
    from scanner.events.segments import grow_events

    def walk(labels, sm, config):
        out = list(labels)
        for ci, c in enumerate(CLASSES[:2]):
            passes = sm[:, ci] >= config.edge_threshold(c)
            for k in range(1, len(out)):
                if out[k] == "not_screaming" and out[k - 1] == c and passes[k]:
                    out[k] = c
            for k in range(len(out) - 2, -1, -1):
                if out[k] == "not_screaming" and out[k + 1] == c and passes[k]:
                    out[k] = c
        return out

    rng = np.random.default_rng(0)
    cfg = SegmentConfig(thresholds={"cry": 0.8, "screaming": 0.7},
                        edge_thresholds={"cry": 0.4, "screaming": 0.3})
    grew = 0
    for _ in range(500):
        n = int(rng.integers(1, 40))
        labels = [str(x) for x in rng.choice(CLASSES, n, p=[0.15, 0.15, 0.7])]
        sm = rng.random((n, 3))
        got = grow_events(labels, sm, CLASSES, cfg)
        assert got == walk(labels, sm, cfg)
        grew += got != labels
    assert grew > 100  # the cases do exercise growth
