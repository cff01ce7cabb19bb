"""scanner.evaluate.sweep: events made again from window probabilities, per threshold."""

from __future__ import annotations

import numpy as np

from scanner.evaluate.results import Windows
from scanner.evaluate.sweep import detect_events, reproduces, sweep

CLASSES = ("cry", "screaming", "not_screaming")
DETECTION = {"window_s": 1.44, "hop_s": 0.48, "smooth_windows": 1, "min_event_s": 1.0,
             "thresholds": {}, "background": "not_screaming"}


def _windows(duration_s: float = 60.0, cry: tuple[float, float] = (20.0, 30.0), p: float = 0.7) -> Windows:
    starts = np.arange(0.0, duration_s - 1.44 + 1e-9, 0.48)
    ends = starts + 1.44
    centres = (starts + ends) / 2
    probs = np.tile([0.05, 0.05, 0.9], (len(starts), 1))
    inside = (centres >= cry[0]) & (centres < cry[1])
    probs[inside] = [p, 0.05, 0.95 - p]
    return Windows(starts, ends, probs)


def test_detect_events_and_reproduces() -> None:
    from scanner.events.segments import SegmentConfig

    windows = {"a": _windows()}
    events = detect_events(windows, CLASSES, {"a": 60.0}, SegmentConfig.from_dict(DETECTION))
    ((label, on, off),) = events["a"]
    assert label == "cry" and abs(on - 20.0) < 0.5 and abs(off - 30.0) < 0.5
    assert reproduces(windows, CLASSES, {"a": 60.0}, DETECTION, events) == []
    assert reproduces(windows, CLASSES, {"a": 60.0}, DETECTION, {"a": [(label, on + 1.0, off)]}) == ["a"]
    assert reproduces(windows, CLASSES, {"a": 60.0}, DETECTION, {}) == ["a"]


def test_sweep_rows_follow_the_threshold() -> None:
    windows = {"a": _windows(p=0.7), "b": _windows(cry=(5.0, 12.0), p=0.45)}
    reference = {"a": [("cry", 20.0, 30.0)], "b": [("cry", 5.0, 12.0)]}
    rows = sweep(windows, CLASSES, ("cry", "screaming"), reference, {"a": 60.0, "b": 60.0}, DETECTION,
                 grid=(0.3, 0.6, 0.8))
    assert [r["threshold"] for r in rows] == [0.3, 0.6, 0.8]
    cry = [r["classes"]["cry"] for r in rows]
    assert [c["n_events"] for c in cry] == [2, 1, 0]  # b's cry (p 0.45) passes 0.3 only; a's passes 0.6
    assert cry[0]["event_f1"] == 1.0 and cry[1]["event_recall"] == 0.5 and cry[2]["file_f1"] == 0.0
    assert all(c["false_alarms_per_hour"] == 0.0 for c in cry)
