"""scanner.evaluate.metrics: the collars, file flags and false alarms per hour as defined."""

from __future__ import annotations

import pytest

from scanner.evaluate.metrics import SECONDS_PER_HOUR, detection_metrics, false_alarms, file_flags

CLASSES = ["cry", "screaming"]


@pytest.mark.parametrize(("onset_shift", "offset_shift", "matched"), [
    (0.9, 0.0, True),     # onset within the 1 s collar
    (1.1, 0.0, False),    # onset outside it
    (0.0, 1.9, True),     # a 10 s event: offset collar max(1 s, 20% of 10 s) = 2 s
    (0.0, 2.1, False),
    (-0.5, -1.5, True),
])
def test_event_collars(onset_shift: float, offset_shift: float, matched: bool) -> None:
    ref = {"a": [("cry", 20.0, 30.0)]}
    est = {"a": [("cry", 20.0 + onset_shift, 30.0 + offset_shift)]}
    m = detection_metrics(CLASSES, ref, est, {"a": 60.0})["classes"]["cry"]["event"]
    assert (m["tp"], m["fp"], m["fn"]) == ((1, 0, 0) if matched else (0, 1, 1))
    assert m["f1"] == (1.0 if matched else 0.0)


def test_onset_only_ignores_the_offset() -> None:
    m = detection_metrics(CLASSES, {"a": [("cry", 20.0, 30.0)]}, {"a": [("cry", 20.5, 24.0)]},
                          {"a": 60.0})["classes"]["cry"]
    assert m["event"]["tp"] == 0 and m["event_onset"]["tp"] == 1


def test_short_events_get_the_one_second_offset_collar() -> None:
    ref = {"a": [("screaming", 5.0, 7.0)]}  # 20% of 2 s is 0.4 s: the 1 s floor applies
    hit = detection_metrics(CLASSES, ref, {"a": [("screaming", 5.0, 7.9)]}, {"a": 30.0})
    miss = detection_metrics(CLASSES, ref, {"a": [("screaming", 5.0, 8.1)]}, {"a": 30.0})
    assert hit["classes"]["screaming"]["event"]["tp"] == 1
    assert miss["classes"]["screaming"]["event"]["tp"] == 0


def test_wrong_class_is_no_match() -> None:
    m = detection_metrics(CLASSES, {"a": [("cry", 1.0, 5.0)]}, {"a": [("screaming", 1.0, 5.0)]},
                          {"a": 10.0})["classes"]
    assert m["cry"]["event"]["fn"] == 1 and m["screaming"]["event"]["fp"] == 1


def test_segment_metrics_count_one_second_segments() -> None:
    # reference covers segments 10..14 (5), the estimate 12..16 (5): 3 shared
    m = detection_metrics(CLASSES, {"a": [("cry", 10.0, 15.0)]}, {"a": [("cry", 12.0, 17.0)]},
                          {"a": 60.0})["classes"]["cry"]["segment"]
    assert (m["tp"], m["fp"], m["fn"]) == (3, 2, 2)
    assert m["f1"] == pytest.approx(0.6)


def test_file_flags() -> None:
    ref = {"a": [("cry", 1, 2)], "b": [("cry", 1, 2)], "c": []}
    est = {"a": [("cry", 50, 52)], "c": [("cry", 1, 2)], "d": [("screaming", 1, 2)]}
    flags = file_flags(CLASSES, ref, est, ["a", "b", "c", "d"])
    assert (flags["cry"]["tp"], flags["cry"]["fp"], flags["cry"]["fn"]) == (1, 1, 1)
    assert flags["cry"]["f1"] == pytest.approx(0.5)
    assert flags["screaming"]["n_positive"] == 0 and flags["screaming"]["fp"] == 1
    assert flags["screaming"]["recall"] is None  # no positive file: recall is undefined


def test_false_alarms_per_hour_of_event_free_audio() -> None:
    ref = {"a": [("cry", 100.0, 200.0), ("screaming", 150.0, 400.0)]}  # union: 300 s
    est = {"a": [("cry", 10.0, 12.0),         # in free audio: a false alarm
                 ("cry", 390.0, 395.0),       # inside the scream: a confusion, not a false alarm
                 ("screaming", 1000.0, 1001.0)],
           "b": [("cry", 5.0, 6.0)]}
    durations = {"a": 1800.0, "b": 1800.0}
    alarms, hours = false_alarms(CLASSES, ref, est, durations)
    assert hours == pytest.approx((3600.0 - 300.0) / SECONDS_PER_HOUR)
    assert alarms["cry"]["count"] == 2 and alarms["screaming"]["count"] == 1
    assert alarms["cry"]["per_hour"] == pytest.approx(2 / hours, rel=1e-5)
    m = detection_metrics(CLASSES, ref, est, durations)
    assert m["event_free_hours"] == pytest.approx(hours, rel=1e-5)
    assert m["audio_hours"] == pytest.approx(1.0)


def test_no_event_free_audio_gives_no_rate() -> None:
    alarms, hours = false_alarms(CLASSES, {"a": [("cry", 0.0, 10.0)]}, {}, {"a": 10.0})
    assert hours == 0 and alarms["cry"] == {"count": 0, "per_hour": None}
