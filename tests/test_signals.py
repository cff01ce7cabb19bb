"""SIGTERM and SIGHUP stop a real scan like Ctrl-C; a SIGKILLed scan leaves no worker behind.

``scanner scan`` runs in a subprocess (its own session) with the fake backbone, made slow
enough that the signal lands mid-scan with rows committed; afterwards no process of its
session may be left, and ``--resume`` finishes with every file exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner.cli.boundary import EXIT_HANGUP, EXIT_TERMINATED
from scanner.output.writer import parts_dir
from scanner.testing import noise, sine, write_audio

ROOT = Path(__file__).resolve().parents[1]
SR = 16000

# Rows commit every 0.2 s and each decode takes 0.1 s longer: a signal lands mid-scan with
# parts committed and decode tasks queued. PYTHONPATH: this checkout's scanner, not another.
_SLOW_SCANNER = """
import os, signal, sys, time
if os.environ.get("SIGHUP_DEFAULT"):
    # a test run under nohup hands SIGHUP down ignored, which the scanner then rightly keeps
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
import scanner.engines.driver as driver
from scanner.audio.decode import decode_task
from scanner.engines import ENGINES
from scanner.engines.local import LocalEngine
driver.COMMIT_EVERY_S = 0.2
DELAY_S = float(sys.argv[1])
def slow_decode(task, sample_rate_hz):  # sent to the workers by value, DELAY_S with it
    time.sleep(DELAY_S)
    return decode_task(task, sample_rate_hz=sample_rate_hz)
# the engine the CLI makes takes the slow decoder
ENGINES._entries["local"] = lambda **kw: LocalEngine(decode=slow_decode)
from scanner.cli import main
sys.argv = ["scanner", *sys.argv[2:]]
main()
"""


def _folder(folder: Path, n: int) -> list[Path]:
    return [write_audio(folder / f"clip_{i:03d}.wav",
                        sine(200 + 37 * i, 1.0, SR, amplitude=0.3) + noise(1.0, SR, seed=i), SR)
            for i in range(n)]


_STARTED: list[int] = []


@pytest.fixture(autouse=True)
def _no_leftovers():
    """Whatever a test asserts, the processes of the scans it started do not outlive it."""
    yield
    while _STARTED:
        _gone(_STARTED.pop(), within_s=0)


def _start(tmp_path: Path, args: list[str], *, decode_delay_s: float = 0.1) -> subprocess.Popen:
    script = tmp_path / "slow_scanner.py"
    script.write_text(_SLOW_SCANNER)
    err = open(tmp_path / "stderr.txt", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, str(script), str(decode_delay_s), *args],
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           "SIGHUP_DEFAULT": "1"})
    _STARTED.append(proc.pid)
    return proc


def _committed(out: Path) -> int:
    folder = parts_dir(out)
    parts = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    return sum(pq.read_metadata(p).num_rows for p in parts)


def _wait_for_rows(proc: subprocess.Popen, out: Path, at_least: int) -> None:
    deadline = time.monotonic() + 90
    while _committed(out) < at_least:
        assert proc.poll() is None, "the scan ended before the signal"
        assert time.monotonic() < deadline, "no rows committed"
        time.sleep(0.05)


def _session(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        pids.append(int(entry))
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    return pids


def _gone(sid: int, within_s: float) -> list[int]:
    """Processes of the session still alive after ``within_s`` seconds (then killed)."""
    deadline = time.monotonic() + within_s
    while (left := _session(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _args(folder: Path, out: Path, head: Path) -> list[str]:
    return ["scan", str(folder), "-o", str(out), "--backbone", "fake", "--head", str(head),
            "--workers", "2"]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, EXIT_TERMINATED),
                                         (signal.SIGHUP, EXIT_HANGUP)])
def test_a_signal_commits_stops_the_workers_and_resume_finishes(tmp_path, fake_head, signum,
                                                                code):
    files = _folder(tmp_path / "in", 60)
    out = tmp_path / "r.parquet"
    proc = _start(tmp_path, _args(tmp_path / "in", out, fake_head))
    _wait_for_rows(proc, out, at_least=5)
    os.kill(proc.pid, signum)  # the scanner alone, as `kill` or systemd would send it
    try:
        got = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the scan did not stop") from None
    stderr = (tmp_path / "stderr.txt").read_text()
    assert got == code, stderr
    assert f"-o {out} --resume" in stderr and "Traceback" not in stderr
    assert _gone(proc.pid, within_s=5) == []
    kept = _committed(out)
    assert 5 <= kept < len(files)

    again = subprocess.run([sys.executable, "-m", "scanner",
                            *_args(tmp_path / "in", out, fake_head), "--resume"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{kept} already done" in again.stderr
    counts = Counter(pq.read_table(out).column("path").to_pylist())
    assert sorted(counts) == sorted(str(p) for p in files)
    assert set(counts.values()) == {1}


def test_the_whole_group_terminated_still_commits_and_exits_143(tmp_path, fake_head):
    _folder(tmp_path / "in", 60)
    out = tmp_path / "r.parquet"
    proc = _start(tmp_path, _args(tmp_path / "in", out, fake_head))
    _wait_for_rows(proc, out, at_least=5)
    os.killpg(proc.pid, signal.SIGTERM)  # workers too: they leave it to the scanner
    assert proc.wait(timeout=60) == EXIT_TERMINATED, (tmp_path / "stderr.txt").read_text()
    assert _gone(proc.pid, within_s=5) == []
    rows = pq.read_table(parts_dir(out)).to_pylist() if parts_dir(out).exists() else []
    assert rows and all(r["status"] == "ok" for r in rows)  # no worker died mid-file


def test_workers_exit_when_the_scanner_is_killed(tmp_path, fake_head):
    _folder(tmp_path / "in", 60)
    out = tmp_path / "r.parquet"
    proc = _start(tmp_path, _args(tmp_path / "in", out, fake_head), decode_delay_s=0.3)
    _wait_for_rows(proc, out, at_least=2)
    workers = [pid for pid in _session(proc.pid) if pid != proc.pid]
    assert workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert _gone(proc.pid, within_s=5) == [], "decode workers outlived the scanner"


def test_nohup_keeps_sighup_ignored(tmp_path, fake_head):
    files = _folder(tmp_path / "in", 120)  # long enough to be signalled mid-scan
    out = tmp_path / "r.parquet"
    script = tmp_path / "slow_scanner.py"
    script.write_text(_SLOW_SCANNER)
    err = open(tmp_path / "stderr.txt", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(["nohup", sys.executable, str(script), "0.05",
                             *_args(tmp_path / "in", out, fake_head)],
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _STARTED.append(proc.pid)
    _wait_for_rows(proc, out, at_least=2)
    os.kill(proc.pid, signal.SIGHUP)  # the terminal closed: nohup said to carry on
    assert proc.wait(timeout=120) == 0, (tmp_path / "stderr.txt").read_text()
    assert len(pq.read_table(out)) == len(files)
