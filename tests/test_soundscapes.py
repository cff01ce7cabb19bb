"""training.soundscapes: truth where the sound is, SNRs as drawn, splits disjoint by group, seeded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from scanner.errors import ConfigError
from training.soundscapes import (
    Clip,
    SoundscapeConfig,
    active_power,
    frame_power,
    generate,
    load_manifest,
    split_groups,
    write_set,
)

TONE_S = 1.5
PAD_S = 1.0
TONES_HZ = {"cry": 1000.0, "screaming": 3000.0}


def _write(root: Path, rel: str, x: np.ndarray, sr: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr)


def write_tiny_dataset(root: Path) -> Path:
    """Noise beds (16 and 8 kHz) and tone events padded with silence, 4 groups per label."""
    rng = np.random.default_rng(0)
    rows = []
    for g in range(4):
        for k in range(3):
            sr = 16000 if k % 2 == 0 else 8000
            rel = f"not_screaming/bg{g}_{k}.flac"
            _write(root, rel, 0.1 * rng.standard_normal(int(3.0 * sr)), sr)
            rows.append((rel, "not_screaming", f"bg{g}", 3.0))
        for label, hz in TONES_HZ.items():
            sr = 8000 if label == "cry" else 16000
            t = np.arange(int(TONE_S * sr)) / sr
            tone = 0.5 * np.sin(2 * np.pi * hz * t)
            pad = np.zeros(int(PAD_S * sr))
            rel = f"{label}/{label}{g}.flac"
            _write(root, rel, np.concatenate([pad, tone, pad]), sr)
            rows.append((rel, label, f"{label}{g}", TONE_S + 2 * PAD_S))
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "group", "seconds", "version"])
        w.writerows([(*r, "v1") for r in rows])
    return root


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "clips")


SMALL = SoundscapeConfig(minutes=(1.0, 1.0), events_per_recording=(3, 3), snr_db=(10.0, 10.0),
                         background_only_fraction=0.0, bed_gain_db=(-20.0, -20.0))


def test_truth_is_where_the_tone_is_and_snr_is_as_drawn(tiny_dataset: Path) -> None:
    clips = load_manifest(tiny_dataset)
    (scape,) = generate(clips, 1, SMALL, seed=3)
    sr = scape.sample_rate_hz
    assert scape.duration_s == pytest.approx(60.0)
    assert len(scape.events) == 3
    for label, onset, offset in scape.events:
        assert label in TONES_HZ
        # the silent padding was trimmed: the event is the tone alone (to a trim frame, 64 ms)
        assert offset - onset == pytest.approx(TONE_S, abs=0.1)
        inside = scape.waveform[int(onset * sr):int(offset * sr)]
        before = scape.waveform[int((onset - 0.6) * sr):int((onset - 0.1) * sr)]
        after = scape.waveform[int((offset + 0.1) * sr):int((offset + 0.6) * sr)]
        p_in, p_bed = active_power(inside), 0.5 * (frame_power(before).mean() + frame_power(after).mean())
        snr = 10 * np.log10((p_in - p_bed) / p_bed)
        assert snr == pytest.approx(10.0, abs=1.0)
        spectrum = np.abs(np.fft.rfft(inside))
        freqs = np.fft.rfftfreq(len(inside), 1 / sr)
        assert abs(freqs[np.argmax(spectrum)] - TONES_HZ[label]) < 5.0
    bed = scape.bed_details  # the clips of the bed tile the recording, end to end
    assert bed[0]["start"] == 0 and bed[-1]["end"] == pytest.approx(scape.duration_s)
    assert all(a["end"] == b["start"] for a, b in zip(bed, bed[1:], strict=False))
    assert {b["group"] for b in bed} == set(scape.bed_groups)
    onsets = [e[1] for e in scape.events]
    assert onsets == sorted(onsets)
    assert all(b[1] - a[2] >= 2.0 for a, b in zip(scape.events, scape.events[1:], strict=False))


def test_deterministic_for_a_seed(tiny_dataset: Path) -> None:
    clips = load_manifest(tiny_dataset)
    a = list(generate(clips, 2, SMALL, seed=5))
    b = list(generate(clips, 2, SMALL, seed=5))
    c = list(generate(clips, 2, SMALL, seed=6))
    for x, y in zip(a, b, strict=True):
        assert x.events == y.events
        np.testing.assert_array_equal(x.waveform, y.waveform)
    assert [x.events for x in a] != [x.events for x in c]


def test_background_only_fraction_and_levels(tiny_dataset: Path) -> None:
    clips = load_manifest(tiny_dataset)
    config = SoundscapeConfig(minutes=(0.5, 0.5), events_per_recording=(1, 2),
                              background_only_fraction=0.4, bed_gain_db=(-30.0, -10.0))
    scapes = list(generate(clips, 5, config, seed=0))
    assert sum(1 for s in scapes if not s.events) == 2
    for s in scapes:
        assert np.max(np.abs(s.waveform)) <= 0.99 + 1e-6
        assert s.waveform.dtype == np.float32
    # beds vary in level: 3 s clips at -30..-10 dB, so their RMS spans well over 6 dB
    bed = scapes[[i for i, s in enumerate(scapes) if not s.events][0]].waveform
    levels = 10 * np.log10([np.mean(bed[i:i + 48000] ** 2) for i in range(0, len(bed) - 48000, 48000)])
    assert levels.max() - levels.min() > 6.0


def test_splits_are_disjoint_by_group_and_stratified(tiny_dataset: Path) -> None:
    clips = load_manifest(tiny_dataset)
    groups = split_groups(clips, fractions={"train": 0.5, "val": 0.25, "test": 0.25}, seed=1)
    assert set(groups) == {c.group for c in clips}
    for label in ("cry", "screaming", "not_screaming"):
        assert {groups[c.group] for c in clips if c.label == label} == {"train", "val", "test"}


def test_write_set_uses_only_its_splits_groups(tiny_dataset: Path, tmp_path: Path) -> None:
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    truth = write_set(tiny_dataset, tmp_path / "set", split="test", hours=2 / 60, config=SMALL,
                      seed=0, split_seed=1, fractions=fractions)
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    groups = split_groups(load_manifest(tiny_dataset), fractions=fractions, seed=1)
    test_groups = {g for g, s in groups.items() if s == "test"}
    assert set(manifest["split_groups"]) == test_groups
    assert set(manifest["bed_groups"]) | set(manifest["event_groups"]) <= test_groups
    assert manifest["event_groups"] and manifest["bed_groups"]
    with truth.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "label", "onset", "offset"]
    files = sorted(p.name for p in (tmp_path / "set").glob("*.flac"))
    assert files == ["test_0000.flac", "test_0001.flac"]
    assert {r["file"] for r in rows} <= set(files)
    info = sf.info(tmp_path / "set" / files[0])
    assert info.samplerate == 16000 and info.channels == 1 and info.duration == pytest.approx(60.0)
    with pytest.raises(ConfigError, match="unknown split"):
        write_set(tiny_dataset, tmp_path / "x", split="holdout", fractions=fractions)


def test_real_clips(dataset_dir: Path) -> None:
    """On the shared clips: each event is louder than the bed right around it, by about its SNR."""
    clips = load_manifest(dataset_dir)
    groups = split_groups(clips, seed=0)
    test = [c for c in clips if groups[c.group] == "test"]
    assert not {c.group for c in test} & {c.group for c in clips if groups[c.group] != "test"}
    config = SoundscapeConfig(minutes=(1.0, 1.0), events_per_recording=(3, 3), snr_db=(10.0, 15.0),
                              background_only_fraction=0.0)
    (scape,) = generate(test, 1, config, seed=0)
    assert scape.events
    test_groups = {c.group for c in test}
    assert set(scape.bed_groups) <= test_groups and set(scape.event_groups) <= test_groups
    sr = scape.sample_rate_hz
    for detail in scape.event_details:
        inside = scape.waveform[int(detail["onset"] * sr):int(detail["offset"] * sr)]
        assert 10 * np.log10(active_power(inside) / frame_power(inside).min()) > 3.0
        assert active_power(inside) > 0


def test_config_and_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snr_db"):
        SoundscapeConfig(snr_db=(10.0, 0.0))
    with pytest.raises(ValueError, match="background_only_fraction"):
        SoundscapeConfig(background_only_fraction=1.5)
    with pytest.raises(ConfigError, match="manifest.csv"):
        load_manifest(tmp_path)
    with pytest.raises(ConfigError, match="bed"):
        next(generate([Clip(path=tmp_path / "a.wav", label="cry", group="g", seconds=1.0)], 1,
                      SoundscapeConfig(), seed=0))
    assert SoundscapeConfig.from_dict(SMALL.to_dict()) == SMALL


def test_benchmark_script_builds_a_set(tiny_dataset: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "soundscapes.py"
    out = tmp_path / "set"
    res = subprocess.run([sys.executable, str(script), "build", str(tiny_dataset), str(out),
                          "--split", "train", "--hours", "0.05", "--minutes", "0.5,1", "--events", "1,2",
                          "--snr", "5,10", "--background-only", "0"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == "train" and manifest["config"]["snr_db"] == [5.0, 10.0]
    assert all(1 <= len(r["events"]) <= 2 for r in manifest["recordings"])
    assert len(list(out.glob("train_*.flac"))) == len(manifest["recordings"]) == 4
