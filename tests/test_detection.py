"""Detection in every scan: the file's answer comes from its events, on long recordings too.

A linear head over the fake backbone's band energies makes the outcome known in advance: a
2 kHz tone is crying, a 5 kHz tone is screaming, noise is neither. The real-model checks of
the issue (held-out long recordings) are in the soundscape benchmark (docs/evaluate.md).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from scanner.engines.driver import scan
from scanner.errors import ConfigError
from scanner.events.detection import apply_verdict, resolve_detection, with_sensitivity
from scanner.events.segments import FileSegments
from scanner.testing import fake_scan_config, noise, sine, verdict_problems, write_audio

SR = 16000
CLASSES = ("cry", "screaming", "not_screaming")
CRY_HZ, SCREAM_HZ = 2000, 5000


def _band(hz: float) -> int:
    """The fake backbone's band (16 linear bands over 0-8 kHz) holding ``hz``."""
    return int(hz / (SR / 2) * 16)


@pytest.fixture()
def tone_head(tmp_path):
    """cry <- energy in the 2 kHz band above the mean; screaming <- the 5 kHz band."""
    from scanner.backbones import load_backbone
    from scanner.heads.mlp import MLPHead

    backbone = load_backbone("fake")
    w = np.zeros((3, 16), np.float32)
    w[0] = -2.0 / 16
    w[0, _band(CRY_HZ)] += 2.0
    w[1] = -2.0 / 16
    w[1, _band(SCREAM_HZ)] += 2.0
    head = MLPHead(classes=CLASSES, backbone_config={**backbone.config(), **backbone.identity},
                   layers=[(w, np.array([-6.0, -6.0, 0.0], np.float32))],
                   mean=np.zeros(16, np.float32), std=np.ones(16, np.float32),
                   thresholds={"cry": 0.5, "screaming": 0.5}, name="tones")
    return head.save(tmp_path / "tones")


def _edited_head(tone_head, dest, **fields):
    """A copy of ``tone_head`` at ``dest`` with these ``head.json`` fields replaced; (path, meta)."""
    import json
    import shutil

    shutil.copytree(tone_head, dest)
    meta = {**json.loads((dest / "head.json").read_text()), **fields}
    (dest / "head.json").write_text(json.dumps(meta))
    return dest, meta


def _recording(path, minutes: float, events: list[tuple[float, float, float]]):
    """Noise for ``minutes``, with tones ``(hz, start_s, seconds)`` mixed in."""
    x = noise(minutes * 60, SR, amplitude=0.05, seed=3)
    for hz, start, seconds in events:
        i = int(start * SR)
        x[i:i + int(seconds * SR)] += sine(hz, seconds, SR, amplitude=0.3)
    return write_audio(path, x, SR)


def test_a_short_event_in_a_long_recording_decides_the_file(tmp_path, tone_head):
    folder = tmp_path / "in"
    _recording(folder / "cry_20s_in_10min.wav", 10, [(CRY_HZ, 290.0, 20.0)])
    _recording(folder / "scream_6s_in_10min.wav", 10, [(SCREAM_HZ, 400.0, 6.0)])
    _recording(folder / "both.wav", 3, [(CRY_HZ, 20.0, 5.0), (SCREAM_HZ, 100.0, 8.0)])
    _recording(folder / "nothing.wav", 10, [])
    out = tmp_path / "r.parquet"
    summary = scan([folder], out, fake_scan_config(tone_head, workers=0))
    rows = {r["path"].rsplit("/", 1)[1]: r for r in pq.read_table(out).to_pylist()}
    events = pq.read_table(tmp_path / "r.events.parquet").to_pylist()
    assert summary.events == len(events) == 4
    for row in rows.values():
        assert verdict_problems(row) == [], row["path"]
    cry = rows["cry_20s_in_10min.wav"]
    assert cry["label"] == "cry" and cry["has_cry"] and not cry["has_screaming"]
    assert cry["mean_prob_cry"] < 0.5  # the whole-file mean would have missed it
    assert abs(cry["first_onset_s_cry"] - 290) <= 1.5 and abs(cry["event_s_cry"] - 20) <= 2
    scream = rows["scream_6s_in_10min.wav"]
    assert scream["label"] == "screaming" and scream["n_events_screaming"] == 1
    assert abs(scream["first_onset_s_screaming"] - 400) <= 1.5
    both = rows["both.wav"]
    assert both["has_cry"] and both["has_screaming"] and both["n_events"] == 2
    strongest = max((e for e in events if e["path"] == both["path"]),
                    key=lambda e: e["peak_confidence"])
    assert both["label"] == strongest["label"] and both["confidence"] == strongest["peak_confidence"]
    nothing = rows["nothing.wav"]
    assert nothing["label"] == "not_screaming" and nothing["n_events"] == 0
    assert nothing["first_onset_s_cry"] is None and not nothing["has_cry"]


def test_thresholds_and_sensitivity_move_the_operating_point(tmp_path, tone_head):
    folder = tmp_path / "in"
    # a faint 2 kHz tone: its windows sit near the threshold
    x = noise(60, SR, amplitude=0.05, seed=1)
    x[20 * SR:30 * SR] += sine(CRY_HZ, 10.0, SR, amplitude=0.004)
    write_audio(folder / "faint.wav", x, SR)

    def cry_events(**kw) -> int:
        out = tmp_path / "r.parquet"
        scan([folder], out, fake_scan_config(tone_head, workers=0, overwrite=True, **kw))
        return pq.read_table(out).to_pylist()[0]["n_events_cry"]

    strict, default, sensitive = (cry_events(thresholds={"cry": 0.99}), cry_events(),
                                  cry_events(sensitivity=1000.0))
    assert strict == 0 and sensitive >= 1 and strict <= default <= sensitive


def test_with_sensitivity_scales_the_odds():
    assert with_sensitivity(0.5, 1.0) == 0.5
    assert with_sensitivity(0.5, 3.0) == pytest.approx(0.25)  # odds 1 -> 1/3
    assert with_sensitivity(0.8, 0.5) == pytest.approx(8 / 9)  # odds 4 -> 8
    assert with_sensitivity(0.0, 5.0) == 0.0 and with_sensitivity(1.0, 5.0) == 1.0
    with pytest.raises(ConfigError):
        with_sensitivity(0.5, 0.0)


def test_thresholds_come_from_the_head_then_the_user(tone_head, tmp_path):
    from scanner.classify import load_classifier

    classifier = load_classifier(fake_scan_config(tone_head))
    assert resolve_detection(classifier).thresholds == {"cry": 0.5, "screaming": 0.5}
    mine = resolve_detection(classifier, thresholds={"screaming": 0.8},
                             options={"min_event_s": 3.0})
    assert mine.thresholds == {"cry": 0.5, "screaming": 0.8} and mine.min_event_s == 3.0
    with pytest.raises(ConfigError, match="scream"):
        resolve_detection(classifier, thresholds={"scream": 0.8})
    with pytest.raises(ConfigError, match="unknown detection setting"):
        resolve_detection(classifier, options={"windows": 3})


def _windows(events, probs):
    probs = np.array(probs, np.float64)
    n = len(probs)
    return FileSegments(events, {}, np.arange(n) * 0.48, np.arange(n) * 0.48 + 1.44, probs, probs,
                        ["not_screaming"] * n, CLASSES)


def test_the_verdict_of_one_file():
    segments = [[0.2, 0.7, 0.1], [0.9, 0.05, 0.05]]
    events = [{"label": "screaming", "start_s": 0.0, "end_s": 1.2, "peak_confidence": 0.7},
              {"label": "cry", "start_s": 1.2, "end_s": 3.0, "peak_confidence": 0.9}]
    row: dict = {"label": "not_screaming", "confidence": 0.5}
    apply_verdict(row, _windows(events, segments), CLASSES)
    assert (row["label"], row["confidence"], row["n_events"]) == ("cry", 0.9, 2)
    assert row["has_screaming"] and row["first_onset_s_screaming"] == 0.0
    assert row["max_prob_screaming"] == 0.7 and row["event_s_cry"] == 1.8
    quiet: dict = {}
    apply_verdict(quiet, _windows([], segments), CLASSES)
    assert quiet["label"] == "not_screaming" and quiet["confidence"] == pytest.approx(0.1)


def test_recorded_at_from_the_name_and_wall_clock_event_times(tmp_path, tone_head):
    from datetime import datetime, timedelta

    folder = tmp_path / "in"
    _recording(folder / "20240501_030405.wav", 1, [(CRY_HZ, 20.0, 5.0)])
    _recording(folder / "site3-2405011230-x.wav", 1, [])
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(tone_head, workers=0))
    rows = {r["path"].rsplit("/", 1)[1]: r for r in pq.read_table(out).to_pylist()}
    start = datetime(2024, 5, 1, 3, 4, 5)
    assert rows["20240501_030405.wav"]["recorded_at"] == start
    assert rows["site3-2405011230-x.wav"]["recorded_at"] is None
    (event,) = pq.read_table(tmp_path / "r.events.parquet").to_pylist()
    assert event["start_time"] == start + timedelta(seconds=event["start_s"])
    # a pattern of one's own
    scan([folder], out, fake_scan_config(tone_head, workers=0, overwrite=True,
                                         timestamp_pattern="site3-%y%m%d%H%M"))
    rows = {r["path"].rsplit("/", 1)[1]: r for r in pq.read_table(out).to_pylist()}
    assert rows["site3-2405011230-x.wav"]["recorded_at"] == datetime(2024, 5, 1, 12, 30)


def test_a_heads_per_class_minimum_event_holds_until_the_user_sets_one(tone_head, tmp_path):

    from scanner.classify import load_classifier

    head, _ = _edited_head(tone_head, tmp_path / "per-class",
                           detection={"min_event_s": 1.0, "class_min_event_s": {"cry": 3.0}})
    classifier = load_classifier(fake_scan_config(head))
    own = resolve_detection(classifier)
    assert own.min_event("cry") == 3.0 and own.min_event("screaming") == 1.0
    mine = resolve_detection(classifier, options={"min_event_s": 2.0})
    assert mine.min_event("cry") == 2.0 and mine.min_event("screaming") == 2.0


def test_a_heads_edge_thresholds_then_the_users_then_sensitivity(tone_head, tmp_path):
    import json

    from scanner.classify import load_classifier

    head, meta = _edited_head(tone_head, tmp_path / "edges", detection={
        "min_event_s": 1.0, "edge_thresholds": {"cry": 0.3, "screaming": 0.4}})
    classifier = load_classifier(fake_scan_config(head))
    assert resolve_detection(classifier).edge_thresholds == {"cry": 0.3, "screaming": 0.4}
    mine = resolve_detection(classifier, options={"edge_thresholds": {"cry": 0.2}})
    assert mine.edge_thresholds == {"cry": 0.2, "screaming": 0.4}
    more = resolve_detection(classifier, sensitivity=3.0)
    assert more.edge_thresholds["screaming"] == pytest.approx(with_sensitivity(0.4, 3.0))
    assert more.edge_threshold("screaming") <= more.threshold("screaming")
    with pytest.raises(ConfigError, match="edge threshold"):
        resolve_detection(classifier, options={"edge_thresholds": {"not_screaming": 0.2}})
    with pytest.raises(ConfigError, match="unknown class"):
        resolve_detection(classifier, options={"edge_thresholds": {"laughter": 0.2}})
    for bad in ({"cry": "low"}, [0.3]):
        meta["detection"]["edge_thresholds"] = bad
        (head / "head.json").write_text(json.dumps(meta))
        with pytest.raises(ConfigError, match="numbers"):
            resolve_detection(load_classifier(fake_scan_config(head)))


def test_a_heads_minimum_event_fraction_reaches_the_scan_and_its_fingerprint(tone_head, tmp_path):
    import json

    from scanner.classify import load_classifier
    from scanner.output.schema import _detection_key

    head, meta = _edited_head(tone_head, tmp_path / "fraction",
                              detection={"min_event_s": 2.0, "min_event_fraction": 0.25})
    own = resolve_detection(load_classifier(fake_scan_config(head)))
    assert own.min_event_fraction == 0.25
    assert _detection_key(own)["min_event_fraction"] == 0.25
    # the default (1, the rule before the setting) stays out of the fingerprint, so tables
    # written before it resume
    assert "min_event_fraction" not in _detection_key(resolve_detection(
        load_classifier(fake_scan_config(tone_head))))
    meta["detection"]["min_event_fraction"] = 0
    (head / "head.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="min_event_fraction"):
        resolve_detection(load_classifier(fake_scan_config(head)))


def test_a_heads_short_recording_thresholds_then_the_users(tone_head, tmp_path):
    import json

    from scanner.classify import load_classifier
    from scanner.output.schema import _detection_key

    head, meta = _edited_head(tone_head, tmp_path / "short", detection={
        "min_event_s": 1.0, "short_thresholds": {"cry": 0.3, "screaming": 0.9}, "short_max_s": 30.0})
    classifier = load_classifier(fake_scan_config(head))
    own = resolve_detection(classifier)
    assert own.short_thresholds == {"cry": 0.3, "screaming": 0.9} and own.short_max_s == 30.0
    assert _detection_key(own)["short_thresholds"] == own.short_thresholds
    # the user's --short-threshold replaces the head's by class; --threshold holds at every
    # length; --sensitivity scales them like the others
    mine = resolve_detection(classifier, options={"short_thresholds": {"cry": 0.4}},
                             thresholds={"screaming": 0.6})
    assert mine.short_thresholds == {"cry": 0.4}
    assert mine.for_length(10.0).thresholds == pytest.approx({"cry": 0.4, "screaming": 0.6})
    more = resolve_detection(classifier, sensitivity=2.0)
    assert more.short_thresholds["cry"] == pytest.approx(with_sensitivity(0.3, 2.0))
    # without short-recording thresholds none of it is in the fingerprint (old tables resume)
    plain = _detection_key(resolve_detection(load_classifier(fake_scan_config(tone_head))))
    assert "short_thresholds" not in plain and "short_max_s" not in plain
    for bad in ({"cry": "low"}, [0.3], {"cry": 1.5}):
        meta["detection"]["short_thresholds"] = bad
        (head / "head.json").write_text(json.dumps(meta))
        with pytest.raises(ConfigError, match="short"):
            resolve_detection(load_classifier(fake_scan_config(head)))


def test_short_recording_thresholds_from_the_command_line(tmp_path, tone_head):
    import json

    from click.testing import CliRunner

    from scanner.cli import cli

    # a cry threshold no window reaches
    head, _ = _edited_head(tone_head, tmp_path / "strict", thresholds={"cry": 0.999, "screaming": 0.5})
    folder = tmp_path / "in"
    _recording(folder / "clip.wav", 0.1, [(CRY_HZ, 1.5, 3.0)])  # 6 s with a 3 s cry
    runs = iter(range(100))

    def scan_labels(*extra: str) -> tuple[str, dict]:
        out = tmp_path / f"r{next(runs)}.parquet"
        res = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(out), "--backbone", "fake",
                                       "--head", str(head), *extra])
        assert res.exit_code == 0, res.output
        meta = json.loads(pq.read_schema(out).metadata[b"scanner"])
        return pq.read_table(out).to_pylist()[0]["label"], meta["detection"]

    label, detection = scan_labels()
    assert label == "not_screaming" and detection["short_thresholds"] == {}
    label, detection = scan_labels("--short-threshold", "cry=0.5")  # 6 s is a clip
    assert label == "cry" and detection["short_thresholds"] == {"cry": 0.5}
    label, detection = scan_labels("--short-threshold", "cry=0.5", "--short-max", "5")
    assert label == "not_screaming" and detection["short_max_s"] == 5.0
    # --threshold holds at every length, so a short threshold for the same class is dropped
    label, detection = scan_labels("--short-threshold", "cry=0.5", "--threshold", "cry=0.999")
    assert label == "not_screaming" and detection["short_thresholds"] == {}
    for bad, option in ((("--short-threshold", "cry"), "--short-threshold"),
                        (("--short-max", "-1"), "--short-max")):
        res = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(tmp_path / "x.parquet"),
                                       "--backbone", "fake", *bad])
        assert res.exit_code == 2 and option in res.output


def test_min_event_fraction_from_the_command_line(tmp_path, tone_head):
    import json

    from click.testing import CliRunner

    from scanner.cli import cli

    folder = tmp_path / "in"
    _recording(folder / "clip.wav", 0.1, [(CRY_HZ, 1.5, 3.0)])  # 6 s: a 1.9 s cry event

    def scan_labels(*extra: str) -> tuple[str, dict]:
        out = tmp_path / f"r{len(extra)}.parquet"
        res = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(out), "--backbone", "fake",
                                       "--head", str(tone_head), "--min-event", "3", *extra])
        assert res.exit_code == 0, res.output
        meta = json.loads(pq.read_schema(out).metadata[b"scanner"])
        return pq.read_table(out).to_pylist()[0]["label"], meta["detection"]

    label, detection = scan_labels()
    assert label == "not_screaming" and detection["min_event_fraction"] == 1.0
    label, detection = scan_labels("--min-event-fraction", "0.25")  # the minimum is 1.5 s here
    assert label == "cry" and detection["min_event_fraction"] == 0.25
    res = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(tmp_path / "x.parquet"),
                                   "--backbone", "fake", "--min-event-fraction", "0"])
    assert res.exit_code == 2 and "--min-event-fraction" in res.output
