"""The CLI boundary: OSErrors, bad paths and hung exits become one line and a documented code."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.cli import cli
from scanner.cli.boundary import (
    EXIT_FILE_ERRORS,
    EXIT_IO,
    EXIT_USAGE,
    describe_os_error,
    invoke,
)
from scanner.testing import sine, write_audio

ROOT = Path(__file__).resolve().parents[1]


def _folder(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "in"
    for i in range(n):
        write_audio(folder / f"f{i}.wav", sine(300 + 50 * i, 1.0, 16000), 16000)
    return folder


def _scan_args(folder: Path, out: Path, head: Path, *extra: str) -> list[str]:
    return ["scan", str(folder), "-o", str(out), "--backbone", "fake", "--head", str(head),
            "--workers", "0", *extra]


def _one_line(err: str, words: str) -> None:
    errors = [line for line in err.splitlines() if " ERROR " in line or line.startswith("Error")]
    assert len(errors) == 1, err
    assert words in errors[0], err
    assert "Traceback" not in err


def test_output_under_a_regular_file_is_one_line_and_exit_5(tmp_path, fake_head, capsys):
    (tmp_path / "plain").write_text("not a folder")
    code = invoke(cli, args=_scan_args(_folder(tmp_path), tmp_path / "plain" / "r.parquet",
                                       fake_head))
    assert code == EXIT_IO
    _one_line(capsys.readouterr().err, "a file is in the way where a folder is needed")


def test_an_output_name_too_long_is_one_line_and_exit_5(tmp_path, fake_head, capsys):
    code = invoke(cli, args=_scan_args(_folder(tmp_path), tmp_path / ("x" * 300 + ".parquet"),
                                       fake_head))
    assert code == EXIT_IO
    _one_line(capsys.readouterr().err, "longer than the file system allows")


@pytest.mark.parametrize("err,words", [(errno.ENOSPC, "the disk is full"),
                                       (errno.EROFS, "the file system is read-only"),
                                       (errno.EACCES, "permission denied")])
def test_a_failing_disk_during_the_scan_is_one_line_and_exit_5(tmp_path, fake_head, capsys,
                                                               monkeypatch, err, words):
    import pyarrow.parquet as pq

    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err), str(tmp_path / "r.parquet.parts"))

    monkeypatch.setattr(pq, "write_table", fail)
    code = invoke(cli, args=_scan_args(_folder(tmp_path), tmp_path / "r.parquet", fake_head))
    assert code == EXIT_IO
    _one_line(capsys.readouterr().err, words)


@pytest.mark.parametrize("command", [["export", "--format", "audacity", "-o"],
                                     ["export", "--format", "csv", "-o"], ["report", "-o"]])
def test_export_and_report_into_an_impossible_place_are_exit_5(tmp_path, fake_head, capsys,
                                                               command):
    out = tmp_path / "r.parquet"
    assert invoke(cli, args=_scan_args(_folder(tmp_path), out, fake_head)) == 0
    (tmp_path / "plain").write_text("not a folder")
    target = tmp_path / "plain" / ("labels" if command[0] == "export" else "report.html")
    capsys.readouterr()
    code = invoke(cli, args=[command[0], str(out), *command[1:], str(target)])
    assert code == EXIT_IO
    _one_line(capsys.readouterr().err, "plain")


def test_a_fifo_or_a_device_on_the_command_line_is_usage_exit_2(tmp_path, fake_head, capsys):
    os.mkfifo(tmp_path / "pipe.wav")
    for path, words in ((tmp_path / "pipe.wav", "a named pipe (FIFO)"),
                        (Path("/dev/null"), "a character device")):
        code = invoke(cli, args=_scan_args(path, tmp_path / "r.parquet", fake_head))
        assert code == EXIT_USAGE
        _one_line(capsys.readouterr().err, words)


def test_a_folder_of_skipped_media_says_which_ext_to_add(tmp_path, fake_head, capsys):
    folder = _folder(tmp_path, 2)
    for i in range(12):
        (folder / f"clip{i}.mp4").write_bytes(b"\0" * 64)
    (folder / "notes.txt").write_text("not media")
    code = invoke(cli, args=_scan_args(folder, tmp_path / "r.parquet", fake_head))
    assert code == 0
    err = capsys.readouterr().err
    assert "12 .mp4 files were skipped (found 2 to scan); add --ext mp4" in err
    assert ".txt" not in err


def test_os_error_lines_name_the_path_and_escape_control_characters():
    line = describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/d/a\x1b[31mb"))
    assert line == "cannot use /d/a\\x1b[31mb: the disk is full (No space left on device)"


def test_exit_is_bounded_even_when_an_exit_handler_hangs(tmp_path):
    code = ("import atexit, time\n"
            "atexit.register(time.sleep, 120)\n"
            "from scanner.cli.boundary import exit_now\n"
            "exit_now(4, grace_s=1.0)\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert proc.returncode == EXIT_FILE_ERRORS
    assert time.monotonic() - start < 30


def test_the_console_script_exits_with_the_boundary_code(tmp_path, fake_head):
    (tmp_path / "plain").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "scanner", "-q",
                           *_scan_args(_folder(tmp_path), tmp_path / "plain" / "r.parquet",
                                       fake_head)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_IO, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
