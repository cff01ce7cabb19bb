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
