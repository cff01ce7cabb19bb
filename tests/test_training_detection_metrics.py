"""Detection metrics: event F1 with collars, file flags and false alarms per background hour."""

from __future__ import annotations

import pytest

from training.detection_metrics import detection_metrics


def ev(label, a, b):
    return {"label": label, "start_s": a, "end_s": b}


def test_collars_file_flags_and_false_alarms() -> None:
    ref = {"a": [ev("cry", 10, 15), ev("screaming", 40, 42)], "b": [], "c": [ev("cry", 5, 8)]}
    est = {"a": [ev("cry", 10.8, 15.9), ev("screaming", 43.5, 45)],  # onset 3.5 s late: a miss
           "b": [ev("cry", 1, 3), ev("cry", 100, 103)], "c": []}
    m = detection_metrics(ref, est, {"a": 60, "b": 3600, "c": 60}, ["cry", "screaming"])
    cry, scream = m["per_class"]["cry"], m["per_class"]["screaming"]
    assert cry["event_precision"] == pytest.approx(1 / 3)
    assert cry["event_recall"] == pytest.approx(1 / 2)
    assert scream["event_f1"] == 0.0
    assert cry["file_flag"]["precision"] == pytest.approx(0.5)
    assert cry["file_flag"]["recall"] == pytest.approx(0.5)
    assert scream["file_flag"]["f1"] == 1.0
    free_h = (60 - 7 + 3600 + 60 - 3) / 3600
    assert cry["false_alarms"] == 2
    assert cry["false_alarms_per_hour"] == pytest.approx(2 / free_h)
    assert scream["false_alarms"] == 1  # touches no reference event
    assert m["false_alarms_per_hour"] == pytest.approx(3 / free_h)
