"""benchmarks/compare_detectors.py: the parts that need no benchmark data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from scanner.heads import load_head

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_detectors.py"


@pytest.fixture(scope="module")
def cd():
    spec = importlib.util.spec_from_file_location("compare_detectors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_settings_are_the_heads_stored_operating_point(cd) -> None:
    thresholds, settings = cd.own_settings("detector", ["detector"], load_head)
    head = load_head("detector")
    assert thresholds == head.detection_thresholds()
    stored = head.detection_settings()
    assert settings == {k: stored[k] for k in cd.SETTING_KEYS if k in stored}
    assert settings["min_event_s"] > 0 and "window_s" not in settings


def test_own_settings_of_a_head_without_a_detection_block_are_the_scans(cd) -> None:
    # clip-linear stores thresholds (one on the background class) and no detection block:
    # this used to stop the benchmark with a TypeError once the detector's row was done.
    from scanner.events.segments import SegmentConfig
    from training.detect_eval import segment_config

    thresholds, settings = cd.own_settings("clip-linear", ["clip-linear"], load_head)
    stored = load_head("clip-linear").detection_thresholds()
    assert "not_screaming" in stored and "not_screaming" not in thresholds
    assert thresholds == {c: p for c, p in stored.items() if c != "not_screaming"}
    defaults = SegmentConfig()
    assert settings == {k: getattr(defaults, k) for k in cd.SETTING_KEYS}
    seg = segment_config(thresholds, **settings)
    assert seg.min_event_s == defaults.min_event_s and seg.thresholds == thresholds


def test_own_settings_need_a_head_with_thresholds(cd) -> None:
    class Bare:
        def detection_thresholds(self):
            return {}

        def detection_settings(self):
            return {}

    with pytest.raises(SystemExit, match="stores no thresholds"):
        cd.own_settings("bare", ["bare"], lambda name: Bare())


@pytest.mark.parametrize("argv", [["--heads", "a+b", "--own-settings"],
                                  ["--heads", "a+b", "--own-settings", "--save", "x"],
                                  ["--heads", "a", "--own-settings", "--min-event-fraction",
                                   "0.5"]])
def test_own_settings_refuse_averaged_specs_and_save(cd, argv, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cd.main(["data", *argv])
    assert e.value.code == 2
    assert "--own-settings takes single heads" in capsys.readouterr().err


def test_min_event_fraction_must_be_a_fraction(cd, capsys) -> None:
    with pytest.raises(SystemExit):
        cd.main(["data", "--heads", "a", "--min-event-fraction", "0"])
    assert "--min-event-fraction must be in (0, 1]" in capsys.readouterr().err


def test_short_recordings_choose_the_fraction_themselves(cd, capsys) -> None:
    with pytest.raises(SystemExit):
        cd.main(["data", "--heads", "a", "--short-recordings", "--min-event-fraction", "0.5"])
    assert "--short-recordings chooses the minimum event fraction" in capsys.readouterr().err
    # a stored head's short-recording settings are part of its own operating point
    assert {"short_thresholds", "short_max_s", "min_event_fraction"} <= set(cd.SETTING_KEYS)


def test_member_weights(cd) -> None:
    assert cd.member_weights("a@2+b") == (["a", "b"], [2.0, 1.0])
    with pytest.raises(SystemExit, match="positive"):
        cd.member_weights("a@0")
