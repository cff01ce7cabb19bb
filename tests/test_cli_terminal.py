"""The terminal: short escaped log lines, native stderr kept off it, progress on and off a terminal."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

from scanner.cli.progress import Progress, hms
from scanner.cli.terminal import escape
from scanner.testing import sine, write_audio

ROOT = Path(__file__).resolve().parents[1]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) \S")


def _run(args: list[str], *, stderr_file: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    if stderr_file is None:
        return subprocess.run([sys.executable, "-m", "scanner", *args], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=300)
    with open(stderr_file, "wb") as err:
        return subprocess.run([sys.executable, "-m", "scanner", *args], cwd=ROOT, env=full_env,
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=300)


def _fake_scan(folder: Path, out: Path, head: Path, *extra: str) -> list[str]:
    return ["scan", str(folder), "-o", str(out), "--backbone", "fake", "--head", str(head),
            *extra]


def _corrupt_mp3(path: Path) -> None:
    """An MP3 with 600 random bytes in its middle: libmpg123 complains on stderr and resyncs."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp3", rate=16000)
        stream.layout = "mono"
        x = sine(440, 3.0, 16000).astype(np.float32)
        for i in range(0, len(x), 1152):
            frame = av.AudioFrame.from_ndarray(x[None, i:i + 1152], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 600] = np.random.default_rng(0).integers(0, 256, 600, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_escape_makes_control_characters_visible():
    assert escape("a\x1b[31mb\rc\nd\x85") == "a\\x1b[31mb\\rc\\nd\\x85"
    assert escape("ünïcode ok") == "ünïcode ok"


def test_log_lines_are_short_and_escape_file_names(audio_folder, fake_head, tmp_path):
    bad = audio_folder / "bad\x1b[2Kname.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 20)
    proc = _run(_fake_scan(audio_folder, tmp_path / "r.parquet", fake_head, "--workers", "0"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if " WARNING " in line]
    assert warnings, proc.stderr
    for line in warnings:
        assert LOG_LINE.match(line), line
        assert "scanner." not in line.split(" WARNING ")[0] + line.split(" WARNING ")[1][:20]
    assert "\x1b" not in proc.stderr
    assert "bad\\x1b[2Kname.flac" in proc.stderr


def test_native_stderr_becomes_debug_records_and_python_stderr_stays():
    code = (
        "import logging, os, sys\n"
        "from scanner.cli.terminal import native_stderr_to_log, setup_logging\n"
        "with native_stderr_to_log():\n"
        "    setup_logging(int(sys.argv[1]))\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    print('python stderr', file=sys.stderr)\n"
        "    logging.getLogger('scanner').warning('a warning')\n"
        "os.write(2, b'after\\n')\n")
    for verbosity, native_shown in ((0, False), (1, True)):
        proc = subprocess.run([sys.executable, "-c", code, str(verbosity)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "python stderr" in proc.stderr and "WARNING a warning" in proc.stderr
        assert "after" in proc.stderr  # fd 2 is restored
        assert ("DEBUG native: INFO: Created TensorFlow Lite" in proc.stderr) == native_shown
        assert proc.stderr.count("XNNPACK") == int(native_shown)


def test_quiet_real_yamnet_scan_prints_nothing(tmp_path, model_dir):
    folder = tmp_path / "audio"
    write_audio(folder / "tone.wav", sine(440, 2.0, 16000), 16000)
    args = ["scan", str(folder), "-o", str(tmp_path / "r.parquet"), "--workers", "1"]
    quiet = _run(["-q", *args], SCANNER_MODEL_DIR=str(model_dir))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == ""
    loud = _run([*args, "-v", "--overwrite"], SCANNER_MODEL_DIR=str(model_dir))
    assert loud.returncode == 0, loud.stderr
    assert "DEBUG native: INFO: Created TensorFlow Lite XNNPACK delegate" in loud.stderr
    assert "1 files (1 ok, 0 errors)" in loud.stderr


@pytest.mark.parametrize("workers", ["0", "1"])
def test_libmpg123_notes_stay_off_the_terminal(tmp_path, fake_head, workers):
    _corrupt_mp3(tmp_path / "audio" / "bad.mp3")
    args = _fake_scan(tmp_path / "audio", tmp_path / "r.parquet", fake_head, "--workers", workers)
    quiet = _run([*args, "-q"])
    assert quiet.returncode == 0, quiet.stderr
    assert "Illegal Audio-MPEG-Header" not in quiet.stderr and "Note:" not in quiet.stderr
    for line in quiet.stderr.splitlines():
        assert LOG_LINE.match(line), line
    loud = _run([*args, "-v", "--overwrite"])
    assert "DEBUG native: Note: Illegal Audio-MPEG-Header" in loud.stderr


def test_stderr_to_a_file_gets_no_carriage_returns(audio_folder, fake_head, tmp_path):
    (audio_folder / "broken.flac").write_bytes(b"fLaC" + b"\x00" * 20)
    log_file = tmp_path / "scan.log"
    proc = _run(_fake_scan(audio_folder, tmp_path / "r.parquet", fake_head, "--workers", "1"),
                stderr_file=log_file)
    assert proc.returncode == 0
    text = log_file.read_text()
    assert "\r" not in text
    assert "7 files (6 ok, 1 errors)" in text
    assert any(LOG_LINE.match(line) and "broken.flac" in line for line in text.splitlines())


def test_on_a_terminal_the_bar_runs_and_warnings_get_their_own_line(audio_folder, fake_head,
                                                                    tmp_path):
    for i in range(3):
        (audio_folder / f"broken{i}.flac").write_bytes(b"fLaC" + b"\x00" * 20)
    leader, follower = pty.openpty()
    # a pty starts 0 columns wide, which tqdm draws as nothing
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scanner",
             *_fake_scan(audio_folder, tmp_path / "r.parquet", fake_head, "--workers", "0")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    assert "scanning:" in text and "\rscanning:" in text
    warning_lines = [line for line in text.split("\n") if " WARNING " in line]
    assert len(warning_lines) >= 3
    for line in warning_lines:
        # tqdm.write clears the bar first: what follows the last \r is the log line alone
        assert LOG_LINE.match(line.rstrip("\r").split("\r")[-1]), repr(line)


def test_plain_progress_lines_come_every_few_seconds(caplog):
    now = [0.0]
    progress = Progress(stream=io.StringIO(), every_s=10.0, clock=lambda: now[0])
    assert not progress.uses_bar
    caplog.set_level(logging.INFO, logger="scanner.progress")
    with progress:
        progress.start(100)
        for _ in range(40):
            now[0] += 1.0
            progress.update({"duration_s": 90.0})
    lines = [r.getMessage() for r in caplog.records if r.name == "scanner.progress"]
    assert len(lines) == 4
    assert lines[0] == "10/100 files (10%), 0.25 h of audio, 1.0 files/s, about 0:01:30 left"
    assert lines[-1].startswith("40/100 files (40%), 1.00 h of audio")


def test_progress_disabled_says_nothing_and_a_bar_draws_frames(caplog):
    caplog.set_level(logging.INFO, logger="scanner.progress")
    quiet = Progress(enabled=False, stream=io.StringIO(), every_s=0.0)
    quiet.start(3)
    quiet.update({"duration_s": 1.0})
    assert quiet.done == 1 and not caplog.records
    stream = io.StringIO()
    with Progress(stream=stream, bar=True) as bar:
        bar.start(2)
        bar.update({"duration_s": 1.0})
        bar.update({"duration_s": 1.0})
    assert "\r" in stream.getvalue() and "2/2" in stream.getvalue()


def test_hms():
    assert hms(0) == "0:00:00" and hms(3725.4) == "1:02:05"
