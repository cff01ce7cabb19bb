"""Detection metrics: event F1 with collars, file flags and false alarms per background hour."""

from __future__ import annotations

import pytest

from training.detection_metrics import detection_metrics, snr_band


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


def test_found_by_snr_counts_overlaps_per_band() -> None:
    def at(label, a, b, snr):
        return {**ev(label, a, b), "snr_db": snr}

    ref = {"a": [at("cry", 10, 15, 2.0), at("cry", 30, 36, 12.5), at("screaming", 50, 52, 7.0)],
           "b": [at("cry", 5, 9, 4.9), at("cry", 20, 25, 10.0)]}
    # a: the 2 dB cry overlapped with bad boundaries (found, not matched), the 12.5 dB cry
    # missed, the scream overlapped only by a cry (not found); b: only the 10 dB cry found
    est = {"a": [ev("cry", 13, 30), ev("cry", 50.5, 51.5)], "b": [ev("cry", 20.3, 25.5)]}
    m = detection_metrics(ref, est, {"a": 60, "b": 60}, ["cry", "screaming"])
    cry = m["per_class"]["cry"]
    assert cry["event_recall"] == pytest.approx(1 / 4)  # only b's 10 dB cry within the collars
    assert cry["found_by_snr"] == [
        {"snr_db": "< 5 dB", "events": 2, "found": 1, "recall": 0.5},
        {"snr_db": ">= 10 dB", "events": 2, "found": 1, "recall": 0.5}]
    assert m["per_class"]["screaming"]["found_by_snr"] == [
        {"snr_db": "5-10 dB", "events": 1, "found": 0, "recall": 0.0}]
    plain = detection_metrics({"a": [ev("cry", 1, 2)]}, {"a": []}, {"a": 10}, ["cry"])
    assert plain["per_class"]["cry"]["found_by_snr"] == []  # annotations carry no SNR


def test_snr_band_names() -> None:
    assert [snr_band(x) for x in (-3.0, 4.99, 5.0, 9.9, 10.0, 15.0)] == [
        "< 5 dB", "< 5 dB", "5-10 dB", "5-10 dB", ">= 10 dB", ">= 10 dB"]
    assert snr_band(7.0, (0.0,)) == ">= 0 dB"
