"""`scanner train` through CliRunner, on a tiny generated folder with the fake backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.cli.train import parse_hidden
from scanner.testing import noise, sine, write_audio


def _folder(root: Path) -> Path:
    for rec in range(8):
        for part in range(2):
            sr = 8000 if rec % 3 == 0 else 16000
            write_audio(root / "tone" / f"t{rec}_{part}.wav",
                        sine(300 + 150 * rec + 20 * part, 0.7, sr), sr)
            write_audio(root / "hiss" / f"h{rec}_{part}.wav", noise(0.7, sr, seed=10 * rec + part),
                        sr)
    return root


def test_end_to_end(tmp_path: Path) -> None:
    data = _folder(tmp_path / "data")
    out = tmp_path / "head"
    args = ["train", str(data), "-o", str(out), "--backbone", "fake",
            "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "--epochs", "40",
            "--hidden", "16", "--hidden", "8", "--seed", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for name in ("head.json", "weights.safetensors", "metrics.json", "report.md", "split.csv"):
        assert (out / name).is_file()
    assert len(list(out.glob("*.png"))) >= 4
    meta = json.loads((out / "head.json").read_text())
    assert meta["architecture"]["sizes"] == [16, 16, 8, 2]
    assert meta["classes"] == ["hiss", "tone"]
    assert meta["training"]["config"]["seed"] == 1
    assert meta["training"]["config"]["lr"] is None
    test_acc = json.loads((out / "metrics.json").read_text())["sets"]["test"]["accuracy"]
    assert "bandlimited test" not in result.output  # the table uses the report's titles
    assert "test, band-limited" in result.output and f"{test_acc:.3f}" in result.output
    assert "embedded now: original 32, bandlimit4k 32" in result.output

    again = CliRunner().invoke(cli, [*args[:3], str(tmp_path / "head2"), *args[4:],
                                     "--dropout", "0", "--band-limit-prob", "0"])
    assert again.exit_code == 0, again.output
    assert "embedded now: original 0, bandlimit4k 0" in again.output


def test_bad_data_and_options(tmp_path: Path) -> None:
    write_audio(tmp_path / "data" / "only" / "a.wav", sine(440, 0.3, 16000), 16000)
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "data"), "-o", str(tmp_path / "h"),
                                      "--backbone", "fake", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "two labels" in result.output
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "data"), "-o", str(tmp_path / "h"),
                                      "--val", "0.6", "--test", "0.5"])
    assert result.exit_code == 2 and "--val" in result.output
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "data"), "-o", str(tmp_path / "h"),
                                      "--backbone", "nope"])
    assert result.exit_code == 2


def test_parse_hidden() -> None:
    import click

    assert parse_hidden(("256",)) == (256,)
    assert parse_hidden(("128,64", "32")) == (128, 64, 32)
    assert parse_hidden(("0",)) == ()
    for bad in (("x",), ("-1",), ("0,4",)):
        with pytest.raises(click.BadParameter):
            parse_hidden(bad)
