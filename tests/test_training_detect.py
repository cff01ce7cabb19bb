"""``scanner train --detector`` end to end on generated audio with the fake backbone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from scanner.cli import cli
from scanner.heads import load_head
from scanner.heads.context import ContextHead
from scanner.testing import chirp, noise, sine, write_audio

SR = 16000


def _corpus(root: Path) -> tuple[Path, Path]:
    """Cries = tones, screams = chirps, background = noise and hum; 8 recordings each."""
    rng = np.random.default_rng(0)
    rows = []
    for g in range(8):
        for part in range(2):
            pad = np.zeros(int(SR * rng.uniform(0.2, 0.8)), np.float32)
            clips = {
                "cry": np.concatenate([pad, sine(450 + 40 * g, 2.0, SR, amplitude=0.4), pad]),
                "screaming": np.concatenate([pad, chirp(1200, 3500, 1.8, SR), pad]),
                "not_screaming": noise(3.0, SR, amplitude=0.05, seed=g * 10 + part)
                + sine(100 + 10 * g, 3.0, SR, amplitude=0.05),
            }
            for label, x in clips.items():
                rel = f"{label}/{label}{g}_{part}.wav"
                write_audio(root / rel, x, SR)
                rows.append([rel, label, f"{label}:{g}"])
    with (root / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["file", "label", "group"], *rows])
    weak = root.parent / "weak"
    wrows = []
    for g in range(6):  # half the bags hold a scream, half only noise
        x = chirp(1200, 3500, 1.5, SR) if g % 2 == 0 else noise(1.5, SR, amplitude=0.05, seed=99 + g)
        write_audio(weak / f"screaming/w{g}.wav", x, SR)
        wrows.append([f"screaming/w{g}.wav", "screaming", f"weak:{g}"])
    with (weak / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["file", "label", "group"], *wrows])
    return root, weak


def test_detector_end_to_end(tmp_path: Path) -> None:
    data, weak = _corpus(tmp_path / "data")
    out = tmp_path / "head"
    args = ["train", str(data), "-o", str(out), "--detector", "--backbone", "fake",
            "--weak", str(weak), "--cache-dir", str(tmp_path / "cache"), "--scene-hours", "0.05",
            "--val-hours", "0.05", "--test-hours", "0.05",
            "--eval-minutes", "1,1.5", "--epochs", "40",
            "--batch-size", "32", "--lr", "0.003", "--val", "0.25", "--test", "0.25",
            "--hidden-sizes", "16"]
    result = CliRunner().invoke(cli, ["-v", *args])
    assert result.exit_code == 0, result.output
    assert "mean event F1" in result.output
    assert "embedding every patch" in result.output and "made" in result.output
    head = load_head(out, backbone="fake")
    assert isinstance(head, ContextHead) and head.scales == (3, 7, 21)
    assert set(head.detection_thresholds()) == {"cry", "screaming"}
    settings = head.detection_settings()
    assert set(settings) - {"class_min_event_s", "edge_thresholds", "min_event_fraction",
                            "short_thresholds", "short_max_s"} == {
        "window_s", "hop_s", "smooth_windows", "min_event_s", "max_gap_s"}
    metrics = json.loads((out / "metrics.json").read_text())
    # the minimum event fraction is the best on the validation clips, and the head keeps it
    fraction = metrics["min_event_fraction"]
    f1 = fraction["val_clips_macro_f1"]
    assert set(f1) == {"1", "0.5", "0.25", "0.15"}
    assert f1[f"{fraction['chosen']:g}"] == max(f1.values())
    assert settings.get("min_event_fraction", 1.0) == fraction["chosen"]
    # short recordings: thresholds of their own only where they beat the long ones on the
    # validation clips, and the head keeps exactly those
    short = metrics["short_recordings"]
    assert short["val_clips_macro_f1"] >= short["val_clips_macro_f1_long_thresholds"]
    assert short["val_clips_macro_f1"] == max(f1.values())
    assert settings.get("short_thresholds", {}) == short["thresholds"]
    assert all(t != head.detection_thresholds()[c] for c, t in short["thresholds"].items())
    if short["thresholds"]:
        assert settings["short_max_s"] == short["max_s"] == 60.0
        assert short["val_clips_macro_f1"] > short["val_clips_macro_f1_long_thresholds"]
    assert metrics["clips"]["test_events"]["macro_f1"] >= 0.8
    assert metrics["calibration"]["temperature"] > 0
    assert metrics["recipe"]["weak_bags"] == 6
    report = (out / "report.md").read_text()
    for section in ("## Test soundscapes", "### Threshold sweep", "## Calibration",
                    "band-limited", "false alarms", "Edge threshold of **cry**",
                    "Edge threshold of **screaming**",
                    f"at most {fraction['chosen']:g} of its length",
                    f"A recording of at most {short['max_s']:g} s"):
        assert section in report
    assert "published method" not in report
    # every test soundscape event carries its mixing SNR; the report counts them by band
    test_sc = metrics["soundscapes"]["test"]["per_class"]
    for c, v in test_sc.items():
        assert sum(b["events"] for b in v["found_by_snr"]) == v["reference_events"] > 0
        for b in v["found_by_snr"]:
            assert f"| {c} | {b['snr_db']} | {b['events']} | {b['found']} |" in report
    # every false alarm is put down to a clip of its set's beds (the fake backbone: no
    # AudioSet classes), and the report lists them
    sources = metrics["false_alarm_sources"]
    for split in ("val", "test"):
        for c, v in metrics["soundscapes"][split]["per_class"].items():
            rows = sources[split][c]
            assert sum(r["false_alarms"] for r in rows) == v["false_alarms"]
            assert all(r["clip"].startswith("not_screaming/") and "audioset" not in r
                       for r in rows)
            if rows:
                assert f"| {c} | {rows[0]['clip']} | {rows[0]['false_alarms']} |" in report
    assert (out / "reliability.png").is_file() and (out / "threshold_sweep.png").is_file()
    with (out / "split.csv").open() as f:
        rows = list(csv.DictReader(f))
    seen: dict[str, str] = {}
    for r in rows:
        assert seen.setdefault(r["group"], r["split"]) == r["split"]
    # a second run reuses every cached patch and scene
    again = CliRunner().invoke(cli, ["-v", *args[:-2], "--hidden-sizes", "8"])
    assert again.exit_code == 0, again.output
    assert "embedding every patch" not in again.output and "made" not in again.output
    # events played faster or slower are new scenes, and the head records the option
    fast = CliRunner().invoke(cli, ["-v", *args[:-2], "--hidden-sizes", "8",
                                    "--event-speed", "2", "-o", str(tmp_path / "fast")])
    assert fast.exit_code == 0, fast.output
    assert "made" in fast.output and "embedding every patch" not in fast.output
    config = json.loads((tmp_path / "fast" / "train_config.json").read_text())
    assert config["event_speed_semitones"] == 2.0
    assert "--event-speed 2" in load_head(tmp_path / "fast", backbone="fake").extra[
        "training"]["command"]


def test_temporal_detector_end_to_end(tmp_path: Path) -> None:
    """``--arch temporal``: the convolution over patch sequences, trained, calibrated, tuned,
    written, and scanning through the same code as any head."""
    from scanner.heads.temporal import TemporalHead

    data, weak = _corpus(tmp_path / "data")
    out = tmp_path / "head"
    args = ["train", str(data), "-o", str(out), "--detector", "--backbone", "fake",
            "--weak", str(weak), "--cache-dir", str(tmp_path / "cache"), "--scene-hours", "0.05",
            "--val-hours", "0.05", "--test-hours", "0.05", "--eval-minutes", "1,1.5",
            "--epochs", "40", "--batch-size", "8", "--lr", "0.003", "--val", "0.25",
            "--test", "0.25", "--hidden-sizes", "16", "--arch", "temporal", "--kernel", "3",
            "--dilations", "1,2"]
    result = CliRunner().invoke(cli, ["-v", *args])
    assert result.exit_code == 0, result.output
    head = load_head(out, backbone="fake")
    assert isinstance(head, TemporalHead) and head.dilations == (1, 2) and head.radius == 3
    assert set(head.detection_thresholds()) == {"cry", "screaming"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"]["test_events"]["macro_f1"] >= 0.8
    assert metrics["calibration"]["temperature"] > 0
    assert metrics["recipe"]["weak_bags"] == 6 and metrics["recipe"]["validation_loss"]
    assert metrics["recipe"]["weak_bags_used"] <= 6  # bags, not bags times views
    config = json.loads((out / "head.json").read_text())["training"]["config"]
    assert config["arch"] == "temporal" and config["dilations"] == [1, 2]
    assert "--arch temporal --kernel 3 --dilations 1,2" in (out / "report.md").read_text()
    bad = CliRunner().invoke(cli, [*args[:-2], "--dilations", "1,x"])
    assert bad.exit_code == 2 and "--dilations" in bad.output
