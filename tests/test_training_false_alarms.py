"""False alarms traced to the background clip under them (training.false_alarms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_soundscapes import write_tiny_dataset

from scanner.backbones.fake import FakeBackbone
from training.detect_eval import ScoredFile
from training.false_alarms import NO_BED, bed_clip_under, false_alarm_sources, sources_table
from training.patches import PatchCache
from training.scene_sets import benchmark_beds, benchmark_set
from training.soundscapes import load_manifest

CLASSES = ("cry", "screaming", "not_screaming")
BEDS = [{"clip": "bg/a.flac", "group": "a", "start": 0.0, "end": 10.0},
        {"clip": "bg/b.flac", "group": "b", "start": 10.0, "end": 30.0},
        {"clip": "bg/c.flac", "group": "c", "start": 30.0, "end": 60.0}]


def _file(name: str, reference: list[dict]) -> ScoredFile:
    return ScoredFile(name, np.zeros(1), np.ones(1), np.zeros((1, 3), np.float32), 60.0, reference)


def _ev(label: str, start: float, end: float) -> dict:
    return {"label": label, "start_s": start, "end_s": end}


def test_each_false_alarm_goes_to_the_bed_clip_it_overlaps_most() -> None:
    files = [_file("r1", [_ev("cry", 40.0, 45.0)]), _file("r2", [])]
    events = {"r1": [_ev("cry", 8.0, 13.0),     # 2 s over a, 3 s over b: b's
                     _ev("cry", 41.0, 43.0),    # on the reference: found, not a false alarm
                     _ev("screaming", 1.0, 3.0)],  # another class
              "r2": [_ev("cry", 12.0, 14.0), _ev("cry", 50.0, 52.5)]}
    beds = {"r1": BEDS, "r2": BEDS}
    rows = false_alarm_sources(files, events, beds, "cry")
    assert [(r["clip"], r["false_alarms"]) for r in rows] == [("bg/b.flac", 2), ("bg/c.flac", 1)]
    assert rows[0]["seconds"] == pytest.approx(7.0) and rows[0]["group"] == "b"
    scream = false_alarm_sources(files, events, beds, "screaming")
    assert [(r["clip"], r["false_alarms"]) for r in scream] == [("bg/a.flac", 1)]
    # a recording without bed details still counts its false alarms
    assert false_alarm_sources(files, events, {}, "cry")[0] == {
        "clip": NO_BED, "group": "", "false_alarms": 3, "seconds": 9.5}
    assert bed_clip_under(_ev("cry", 60.0, 61.0), BEDS) is None  # touching is not overlapping


def test_audioset_classes_are_the_highest_mean_over_a_clips_false_alarms() -> None:
    names = ["Speech", "Cat", "Crow", "Music"]

    def audioset(name: str, start: float, end: float) -> np.ndarray:
        # the first false alarm hears a cat, the second mostly music
        return np.array([0.1, 0.9, 0.0, 0.2]) if start < 20 else np.array([0.1, 0.1, 0.0, 0.9])

    files = [_file("r", [])]
    events = {"r": [_ev("cry", 12.0, 14.0), _ev("cry", 22.0, 25.0)]}
    (row,) = false_alarm_sources(files, events, {"r": BEDS}, "cry", audioset=audioset,
                                 score_names=names, top_tags=2)
    assert row["false_alarms"] == 2
    assert row["audioset"] == [["Music", 0.55], ["Cat", 0.5]]


def test_table_escapes_clip_names() -> None:
    rows = {"cry": [{"clip": "bg/a|b*c.flac", "group": "g", "false_alarms": 3, "seconds": 4.0,
                     "audioset": [["Cat", 0.5]]}]}
    table = sources_table(rows, top=5)
    assert table[2] == "| cry | bg/a\\|b\\*c.flac | 3 | 4.0 | Cat 0.50 |"
    assert len(sources_table(rows, top=0)) == 2


def test_beds_are_those_of_the_cached_benchmark_recordings(tmp_path: Path) -> None:
    clips = load_manifest(write_tiny_dataset(tmp_path / "clips"))
    backbone = FakeBackbone()
    cache = PatchCache(tmp_path / "cache", backbone)
    kw = dict(hours=0.1, minutes=(1.0, 2.0), seed=4, classes=CLASSES,
              background_class="not_screaming")
    scenes = benchmark_set("test", clips, digests=["x"], backbone=backbone, cache=cache, **kw)
    again = benchmark_set("test", clips, digests=["x"], backbone=backbone, cache=cache, **kw)
    beds = benchmark_beds("test", clips, **kw)
    assert [s.name for s in scenes] == [s.name for s in again] == list(beds)
    background = {str(c.file) for c in clips if c.label == "not_screaming"}
    for s in again:  # read from the cache, which keeps no beds: they still tile the recording
        bed = beds[s.name]
        assert bed[0]["start"] == 0 and bed[-1]["end"] == pytest.approx(s.duration_s, abs=1e-3)
        assert all(a["end"] == b["start"] for a, b in zip(bed, bed[1:], strict=False))
        assert {b["clip"] for b in bed} <= background
    assert benchmark_beds("test", clips, **{**kw, "seed": 5}) != beds


def test_traced_false_alarms_add_up_to_the_metrics_count(tmp_path: Path) -> None:
    from training.detect_eval import detect, evaluate_files, segment_config
    from training.false_alarms import trace_sets
    from training.windows import windows_of

    clips = load_manifest(write_tiny_dataset(tmp_path / "clips"))
    backbone = FakeBackbone()
    kw = dict(hours=0.1, minutes=(1.0, 2.0), seed=4, classes=CLASSES,
              background_class="not_screaming")
    scenes = benchmark_set("test", clips, digests=["x"], backbone=backbone,
                           cache=PatchCache(tmp_path / "cache", backbone), **kw)
    beds = benchmark_beds("test", clips, **kw)
    rng = np.random.default_rng(0)
    files = []
    for s in scenes:  # a head that fires at random: false alarms all over the beds
        starts, ends = windows_of(s.patches)
        p = rng.uniform(0, 1, (len(starts), 3)).astype(np.float32)
        p /= p.sum(axis=1, keepdims=True)
        files.append(ScoredFile(s.name, starts, ends, p, s.duration_s,
                                [{"label": e.label, "start_s": e.onset_s, "end_s": e.offset_s}
                                 for e in s.events]))
    seg = segment_config({"cry": 0.4, "screaming": 0.4}, 0.5, smooth_windows=1)
    events = detect(files, CLASSES, seg)
    traced = trace_sets({"test": (files, events)}, beds, CLASSES, "not_screaming")["test"]
    metrics = evaluate_files(files, CLASSES, seg)["per_class"]
    background = {str(c.file) for c in clips if c.label == "not_screaming"}
    for c in ("cry", "screaming"):
        assert metrics[c]["false_alarms"] > 5
        assert sum(r["false_alarms"] for r in traced[c]) == metrics[c]["false_alarms"]
        assert {r["clip"] for r in traced[c]} <= background


def test_a_set_made_now_hands_back_its_beds(tmp_path: Path) -> None:
    clips = load_manifest(write_tiny_dataset(tmp_path / "clips"))
    backbone = FakeBackbone()
    kw = dict(hours=0.1, minutes=(1.0, 2.0), seed=7, classes=CLASSES,
              background_class="not_screaming")
    made: dict = {}
    scenes = benchmark_set("val", clips, digests=["y"], backbone=backbone,
                           cache=PatchCache(tmp_path / "cache", backbone), beds=made, **kw)
    assert made == benchmark_beds("val", clips, **kw)
    assert list(made) == [s.name for s in scenes]
    cached: dict = {}  # read from the cache: no beds handed back
    benchmark_set("val", clips, digests=["y"], backbone=backbone,
                  cache=PatchCache(tmp_path / "cache", backbone), beds=cached, **kw)
    assert cached == {}


def test_audioset_scorer_means_the_patches_inside_the_stretch() -> None:
    from training.false_alarms import AudioSetScorer
    from training.patches import Patches

    emb = np.zeros((10, 2), np.float32)
    emb[4:6, 0] = 50.0  # patches 4 and 5 (centres 2.4 s, 2.88 s): class 0 certain
    patches = Patches(emb, np.zeros(10), 0.48, 0.96)
    scorer = AudioSetScorer((np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
                            ["Cat", "Crow"], {"r": patches})
    np.testing.assert_allclose(scorer("r", 2.2, 3.0), [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(scorer("r", 1.9, 3.0), [2.5 / 3, 0.5], atol=1e-6)  # 3 patches
    np.testing.assert_allclose(scorer("r", 2.5, 2.6), [1.0, 0.5], atol=1e-6)  # the nearest
