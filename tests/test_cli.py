"""The command line: help without heavy imports, version, exit codes, scan through CliRunner."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
from click.testing import CliRunner

from scanner import __version__
from scanner.cli import EXIT_FILE_ERRORS, EXIT_LOAD_FAILED, cli


def test_help_imports_no_deep_learning_framework():
    code = ("import sys; from scanner.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "for cmd in ('scan', 'train'):\n"
            "    try:\n        cli([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('tensorflow', 'torch', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "scan" in proc.stdout and "train" in proc.stdout


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_scan_with_fake_backbone_writes_table(audio_folder, fake_head, tmp_path):
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["-q", "scan", str(audio_folder), "-o", str(out),
                                      "--backbone", "fake", "--head", str(fake_head),
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 6
    assert "6 files (6 ok, 0 errors)" in result.output


def test_file_errors_give_their_own_exit_code(audio_folder, fake_head, tmp_path):
    (audio_folder / "broken.flac").write_bytes(b"fLaC" + b"\x00" * 20)
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(cli, ["scan", str(audio_folder), "-o", str(out),
                                      "--backbone", "fake", "--head", str(fake_head)])
    assert result.exit_code == EXIT_FILE_ERRORS, result.output
    assert "1 errors" in result.output


def test_missing_model_is_a_clear_message_not_a_traceback(audio_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("SCANNER_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["scan", str(audio_folder), "-o", str(tmp_path / "r.parquet")])
    assert result.exit_code == EXIT_LOAD_FAILED
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.parquet").exists()


def test_usage_errors():
    runner = CliRunner()
    assert runner.invoke(cli, ["scan"]).exit_code == 2
    assert runner.invoke(cli, ["scan", "/definitely/not/here"]).exit_code == 2
    bad = runner.invoke(cli, ["scan", ".", "--backbone", "nope"])
    assert bad.exit_code == 2 and "unknown backbone" in bad.output


def test_head_for_another_backbone_is_refused(audio_folder, fake_head, tmp_path, model_dir,
                                              monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    result = CliRunner().invoke(cli, ["scan", str(audio_folder), "-o", str(tmp_path / "r.parquet"),
                                      "--head", str(fake_head)])
    assert result.exit_code == EXIT_LOAD_FAILED
    assert "trained for backbone 'fake'" in result.output
