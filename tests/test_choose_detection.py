"""Choosing detection settings on validation soundscapes: per-class thresholds and minimum
event lengths, the shortest length that does (almost) as well as the best, and edge
thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from training.detect_eval import (
    EDGE_GRID,
    MIN_EVENT_GRID,
    ScoredFile,
    choose_detection,
    choose_edges,
    evaluate_files,
    segment_config,
)

CLASSES = ("cry", "screaming", "not_screaming")
HOP, WINDOW, DURATION = 0.48, 1.44, 600.0


def _background(seed: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded generator, and a 10-minute file of windows that are all background."""
    starts = np.arange(0.0, DURATION - WINDOW, HOP)
    return (np.random.default_rng(seed), starts, np.tile([0.02, 0.02, 0.96], (len(starts), 1)),
            starts + WINDOW / 2)


def _file(name: str, seed: int) -> ScoredFile:
    """Six 6 s cries and six 1.9 s screams, and ten 2.9 s cry-like bursts of background."""
    rng, starts, probs, centre = _background(seed)
    reference = []

    def put(label: str, t0: float, seconds: float, truth: bool) -> None:
        k = np.flatnonzero((centre >= t0) & (centre < t0 + seconds))
        col = CLASSES.index(label)
        probs[k] = 0.05
        probs[k, col] = 0.9
        if truth:
            reference.append({"label": label, "start_s": float(centre[k[0]] - HOP / 2),
                              "end_s": float(centre[k[-1]] + HOP / 2)})

    slots = rng.permutation(np.arange(10.0, DURATION - 20, 25.0))[:22]
    for i, t in enumerate(sorted(slots)):
        if i % 11 < 3:
            put("cry", t, 6.0, True)
        elif i % 11 < 6:
            put("screaming", t, 1.92, True)
        else:
            put("cry", t, 2.88, False)  # a false alarm the head gives, half a cry long
    return ScoredFile(name, starts, starts + WINDOW, probs.astype(np.float32), DURATION, reference)


def test_each_class_gets_the_shortest_minimum_event_that_works(monkeypatch) -> None:
    import training.detect_eval as detect_eval

    monkeypatch.setattr(detect_eval, "THRESHOLD_GRID", (0.3, 0.5, 0.7, 0.85))  # 4x quicker
    files = [_file(f"f{i}", i) for i in range(3)]
    thresholds, settings, sweep = choose_detection(files, CLASSES, background="not_screaming",
                                                   fa_budget_per_hour=5.0)
    lengths = {c: settings["class_min_event_s"].get(c, settings["min_event_s"])
               for c in ("cry", "screaming")}
    # cry needs a minimum that the bursts (1.9-2.9 s long, by threshold) do not pass;
    # screaming keeps its 1.9 s screams, and of the lengths that keep them all the shortest
    assert lengths["cry"] >= 2.0
    assert lengths["screaming"] == MIN_EVENT_GRID[0]
    chosen = evaluate_files(files, CLASSES, segment_config(thresholds, **settings))
    assert chosen["per_class"]["cry"]["event_f1"] == pytest.approx(1.0)
    assert chosen["per_class"]["screaming"]["event_f1"] == pytest.approx(1.0)
    assert chosen["false_alarms_per_hour"] == 0.0
    one_length = evaluate_files(files, CLASSES, segment_config(thresholds, settings["min_event_s"],
                                                               max_gap_s=settings["max_gap_s"]))
    assert one_length["per_class"]["cry"]["event_f1"] < 0.6  # the bursts pass a short minimum
    assert {v["min_event_s"] for v in sweep.values()} == set(MIN_EVENT_GRID)


def _faded(name: str, seed: int) -> ScoredFile:
    """Eight 6 s cries whose first and last 1.5 s score only 0.55 (a cry fading in and out)."""
    rng, starts, probs, centre = _background(seed)
    reference = []
    for t in sorted(rng.permutation(np.arange(10.0, DURATION - 20, 40.0))[:8]):
        k = np.flatnonzero((centre >= t) & (centre < t + 6.0))
        probs[k] = [0.9, 0.02, 0.08]
        fade = k[(centre[k] < t + 1.5) | (centre[k] >= t + 4.5)]
        probs[fade] = [0.55, 0.02, 0.43]
        reference.append({"label": "cry", "start_s": float(centre[k[0]] - HOP / 2),
                          "end_s": float(centre[k[-1]] + HOP / 2)})
    return ScoredFile(name, starts, starts + WINDOW, probs.astype(np.float32), DURATION, reference)


def test_an_edge_threshold_is_chosen_where_events_fade() -> None:
    files = [_faded(f"f{i}", i) for i in range(2)]
    settings = {"min_event_s": 1.0, "max_gap_s": 0.0, "class_min_event_s": {}}
    thresholds = {"cry": 0.8, "screaming": 0.8}
    edges, curves = choose_edges(files, CLASSES, thresholds, settings, background="not_screaming")
    none, *tried = curves["cry"]
    assert none["edge"] is None and none["event_f1"] < 0.5  # cut at 0.8, 3 s of each 6 s
    assert [p["edge"] for p in tried] == [e for e in EDGE_GRID if e < 0.8]
    # every edge below the fade's 0.55 (smoothed) finds them all; the lowest of those is taken
    assert edges["cry"] == min(p["edge"] for p in tried if p["event_f1"] == pytest.approx(1.0))
    assert "screaming" not in edges  # no scream to grow: no edge
    grown = evaluate_files(files, CLASSES, segment_config(thresholds, **settings,
                                                          edge_thresholds=edges))
    assert grown["per_class"]["cry"]["event_f1"] == pytest.approx(1.0)


def _clip(name: str, cry: float, screaming: float, seconds: float = 7.2) -> ScoredFile:
    """A clip whose middle 3 s have these window probabilities (background elsewhere)."""
    starts = np.arange(0.0, seconds - WINDOW + 1e-9, HOP)
    probs = np.tile([0.02, 0.02, 0.96], (len(starts), 1))
    mid = (starts + WINDOW / 2 > 2.0) & (starts + WINDOW / 2 < 5.0)
    probs[mid] = [cry, screaming, 1.0 - cry - screaming]
    return ScoredFile(name, starts, starts + WINDOW, probs, seconds, [])


def test_short_recordings_get_the_thresholds_their_validation_clips_want() -> None:
    from training.detect_eval import choose_short_recordings, clip_macro_f1

    # the soundscapes chose 0.8 for both; these cries peak at 0.65-0.75, and these
    # negatives hold a scream-like 0.85 that no real scream (0.97) comes near
    cries = [_clip(f"c{i}", 0.65 + 0.02 * i, 0.05) for i in range(6)]
    screams = [_clip(f"s{i}", 0.01, 0.97) for i in range(4)]
    negatives = [_clip(f"n{i}", 0.02, 0.85) for i in range(3)] + \
        [_clip(f"q{i}", 0.02, 0.02) for i in range(8)]
    files = cries + screams + negatives
    y = [0] * 6 + [1] * 4 + [2] * 11
    seg = segment_config({"cry": 0.8, "screaming": 0.8}, 1.0)
    choice = choose_short_recordings(files, y, CLASSES, seg)
    assert choice.thresholds["cry"] <= 0.65 and choice.thresholds["screaming"] >= 0.9
    assert choice.best == pytest.approx(1.0) and choice.best > choice.without
    assert choice.without == pytest.approx(clip_macro_f1(files, y, CLASSES, seg), abs=1e-6)
    assert choice.best == max(choice.by_fraction.values())
    # the chosen settings give the chosen figure; a 90 s recording keeps the long thresholds
    chosen = segment_config({"cry": 0.8, "screaming": 0.8}, 1.0, short_thresholds=choice.thresholds,
                            min_event_fraction=choice.fraction)
    assert clip_macro_f1(files, y, CLASSES, chosen) == pytest.approx(choice.best, abs=1e-6)
    long_cry = _clip("long", 0.7, 0.05, seconds=90.0)
    assert clip_macro_f1([long_cry], [0], CLASSES, chosen) == 0.0
    # clips the long thresholds already get right keep them (no change without a gain)
    easy = [_clip(f"e{i}", 0.95, 0.01) for i in range(3)] + [_clip("f", 0.01, 0.97)] + \
        [_clip(f"g{i}", 0.02, 0.02) for i in range(3)]
    kept = choose_short_recordings(easy, [0, 0, 0, 1, 2, 2, 2], CLASSES, seg)
    assert kept.thresholds == {} and kept.fraction == 1.0 and kept.best == kept.without
