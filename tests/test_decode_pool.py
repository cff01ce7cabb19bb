"""The decode pool: order, bounded look-ahead, and a hung or crashing decoder costing one file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from scanner.audio.decode import decode_task
from scanner.audio.pool import DecodePool
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask


def _tasks(folder: Path, names: list[str]) -> list[DecodeTask]:
    out = []
    for name in names:
        path = folder / name
        if not path.exists():
            path.write_bytes(b"")
        out.append(DecodeTask(AudioFile(path, path.stat().st_size, 0)))
    return out


def _faulty(task: DecodeTask, sample_rate_hz: int):
    """Crashes its worker on 'crash*', hangs on 'hang*', else decodes a fixed tone."""
    name = task.file.path.name
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        time.sleep(60)
    n = 1600 * (1 + len(name))
    return DecodedClip(task, np.zeros(n, np.float32), sample_rate_hz, sample_rate_hz, 1,
                       n / sample_rate_hz, "test", 0.0)


def test_results_come_in_task_order(tmp_path):
    names = [f"f{i:02d}.wav" for i in range(12)]
    with DecodePool(workers=2, in_flight=3, decode=_faulty) as pool:
        got = [r.task.file.path.name for r in pool.imap(_tasks(tmp_path, names))]
    assert got == names


def test_a_crashing_decoder_costs_only_its_file(tmp_path):
    names = ["a.wav", "b.wav", "crash.wav", "c.wav", "d.wav", "e.wav"]
    with DecodePool(workers=2, decode=_faulty) as pool:
        results = list(pool.imap(_tasks(tmp_path, names)))
    assert [r.task.file.path.name for r in results] == names
    kinds = {r.task.file.path.name: (r.kind if isinstance(r, DecodeFailure) else "ok")
             for r in results}
    assert kinds == {"a.wav": "ok", "b.wav": "ok", "crash.wav": "crashed", "c.wav": "ok",
                     "d.wav": "ok", "e.wav": "ok"}


def test_a_hung_decoder_times_out_and_the_rest_go_on(tmp_path):
    names = ["a.wav", "hang.wav", "b.wav", "c.wav"]
    start = time.monotonic()
    with DecodePool(workers=2, timeout_s=3, decode=_faulty) as pool:
        results = list(pool.imap(_tasks(tmp_path, names)))
    assert time.monotonic() - start < 30
    kinds = [r.kind if isinstance(r, DecodeFailure) else "ok" for r in results]
    assert kinds == ["ok", "timeout", "ok", "ok"]
    assert "longer than 3 s" in results[1].message


def test_in_process_mode_uses_the_real_decoder(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    task = _tasks(tmp_path, ["empty.wav"])[0]
    with DecodePool(workers=0) as pool:
        (result,) = list(pool.imap([task]))
    assert isinstance(result, DecodeFailure) and result.kind == "empty"
    assert decode_task(task).kind == "empty"


def test_started_workers_are_running_before_the_first_task(tmp_path):
    pool = DecodePool(workers=2, decode=_faulty).start()
    try:
        processes = pool._executor._processes
        deadline = time.monotonic() + 30
        while len(processes) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(processes) == 2  # booted before any file was submitted
        names = [f"f{i}.wav" for i in range(5)]
        assert [r.task.file.path.name for r in pool.imap(_tasks(tmp_path, names))] == names
    finally:
        pool.close()
    assert DecodePool(workers=0).start()._executor is None  # in-process decoding: nothing to start


def test_scan_closes_its_started_pool_when_the_models_fail_to_load(tmp_path, monkeypatch):
    from scanner.config import ScanConfig
    from scanner.engines.driver import scan
    from scanner.errors import ScannerError

    closed = []
    real_close = DecodePool.close

    def close(self):
        closed.append(self._executor is not None)
        real_close(self)

    monkeypatch.setattr(DecodePool, "close", close)
    (tmp_path / "in").mkdir()
    config = ScanConfig(backbones=("fake",), heads={"fake": str(tmp_path / "no-such-head")},
                        workers=2)
    with pytest.raises(ScannerError):
        scan([tmp_path / "in"], tmp_path / "r.parquet", config)
    assert closed == [True]  # the workers started for the scan were stopped


# --- issue 14, item 4: the clock starts with the decode, hung workers die, no exit hang ------


def _slow(task: DecodeTask, sample_rate_hz: int):
    """Every task takes 1 s of real work, then decodes a fixed tone."""
    time.sleep(1.0)
    return _faulty(task, sample_rate_hz)


def test_a_task_waiting_in_the_queue_is_not_timed(tmp_path):
    # One worker, 1 s per file, a 2.5 s timeout: the fourth file waits 3 s in the queue
    # before it starts, and must still come out ok (timed from its start, it takes 1 s).
    names = [f"f{i}.wav" for i in range(4)]
    with DecodePool(workers=1, timeout_s=2.5, in_flight=4, decode=_slow) as pool:
        results = list(pool.imap(_tasks(tmp_path, names)))
    assert [type(r).__name__ for r in results] == ["DecodedClip"] * 4


def _pool_pids(pool: DecodePool) -> list[int]:
    return list((pool._executor._processes if pool._executor else {}).keys())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_fifo_times_out_and_its_blocked_worker_is_killed(tmp_path):
    from scanner.testing import sine, write_audio

    for name in ("a.wav", "b.wav", "c.wav"):
        write_audio(tmp_path / name, sine(440, 0.5, 16000), 16000)
    os.mkfifo(tmp_path / "fifo.wav")  # opening it for reading blocks until a writer comes
    tasks = _tasks(tmp_path, ["a.wav", "fifo.wav", "b.wav", "c.wav"])
    pool = DecodePool(workers=2, timeout_s=1.5).start()
    seen: list[int] = []
    try:
        results = []
        for r in pool.imap(tasks):
            seen += _pool_pids(pool)
            results.append(r)
    finally:
        pool.close()
    kinds = [r.kind if isinstance(r, DecodeFailure) else "ok" for r in results]
    assert kinds == ["ok", "timeout", "ok", "ok"]
    assert seen and not any(_alive(pid) for pid in set(seen))


_FIFO_SCAN = """
import os, sys
from pathlib import Path
import scanner.audio.discover as d
real = d.iter_files  # the scan's streamed discovery
victim = Path(sys.argv[1])
def replaced_by_a_fifo(*args, **kwargs):
    files = list(real(*args, **kwargs))
    victim.unlink()
    os.mkfifo(victim)
    return iter(files)
d.iter_files = replaced_by_a_fifo
from scanner.cli import main
sys.argv = ["scanner", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize("victim", ["f0.wav", "f5.wav"])
def test_a_file_replaced_by_a_fifo_gives_a_timeout_row_and_the_scan_exits(tmp_path, fake_head,
                                                                          victim):
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from scanner.testing import sine, write_audio

    folder = tmp_path / "in"
    for i in range(12):
        write_audio(folder / f"f{i}.wav", sine(300 + 20 * i, 1.0, 16000), 16000)
    script = tmp_path / "fifo_scan.py"
    script.write_text(_FIFO_SCAN)
    out = tmp_path / "r.parquet"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder / victim), "-q", "scan", str(folder), "-o",
         str(out), "--backbone", "fake", "--head", str(fake_head), "--decode-timeout", "2",
         "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the scan hung") from None
    deadline = time.monotonic() + 5  # "within a few seconds": helpers end as the scan does
    while (leftover := [pid for pid in _session(proc.pid) if _alive(pid)]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, f"processes left behind: {leftover}"
    assert proc.returncode == 0, err.decode()  # some files failed: a warning, exit 0 (no --strict)
    rows = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}
    assert len(rows) == 12 and rows[victim]["error_kind"] == "timeout"
    assert sum(r["status"] == "ok" for r in rows.values()) == 11


def _session(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids
