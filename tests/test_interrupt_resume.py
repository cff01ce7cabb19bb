"""Interrupted scans lose nothing: Ctrl-C and SIGKILL in a real ``scanner scan`` process,
torn parts, interrupted resumes; ``--resume`` then gives every file exactly once."""


import os
import shutil
import signal
import subprocess
import sys
import time
import typing
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scanner.cli import EXIT_INTERRUPTED, cli
from scanner.config import ScanConfig
from scanner.engines.driver import ScanInterrupted, scan
from scanner.errors import ErrorKind
from scanner.output.writer import parts_dir
from scanner.testing import (
    deleting_after_discovery,
    fake_scan_config,
    noise,
    rows_by_name,
    sine,
    write_audio,
)

SR = 16000
CLASSES = ("cry", "screaming", "not_screaming")
UNICODE_NAME = "música infantil – 子守唄.wav"
ERROR_KINDS = set(typing.get_args(ErrorKind))


def _fake(head: Path, **kw) -> ScanConfig:
    return fake_scan_config(head, **kw)


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return rows_by_name(rows)


# --- Ctrl-C and SIGKILL in a real process -------------------------------------------------

# Runs `scanner` with rows committed every COMMIT_S seconds, each row ROW_DELAY_S slower and
# each decode DECODE_DELAY_S slower, so an interruption reliably lands mid-scan with parts
# already committed (and, with a decode delay, with decode tasks still queued).
_SLOW_SCANNER = """
import signal, sys, time
# a suite started in the background of a script (cmd &) hands SIGINT down ignored, and Python
# then keeps it so; Ctrl-C at a terminal reaches a scan with Python's own handler
signal.signal(signal.SIGINT, signal.default_int_handler)
import scanner.engines.chain as chain
import scanner.engines.driver as driver
from scanner.audio.decode import decode_task
from scanner.engines import ENGINES
from scanner.engines.local import LocalEngine
commit_s, row_delay_s, decode_delay_s = map(float, sys.argv[1:4])
driver.COMMIT_EVERY_S = commit_s
make_row = chain.make_row
def slow_make_row(*args, **kwargs):
    time.sleep(row_delay_s)
    return make_row(*args, **kwargs)
chain.make_row = slow_make_row
def slow_decode(task, sample_rate_hz):  # sent to the workers by value (defined in __main__)
    time.sleep(decode_delay_s)
    return decode_task(task, sample_rate_hz=sample_rate_hz)
if decode_delay_s:  # the engine the CLI makes takes the slow decoder
    ENGINES._entries["local"] = lambda **kw: LocalEngine(decode=slow_decode)
from scanner.cli import main
sys.argv = ["scanner", *sys.argv[4:]]
main()
"""


def _start(tmp_path: Path, args: list[str], *, log: Path, commit_s: float = 0.2,
           row_delay_s: float = 0.05, decode_delay_s: float = 0.0) -> subprocess.Popen:
    script = tmp_path / "slow_scanner.py"
    script.write_text(_SLOW_SCANNER)
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, str(script), str(commit_s), str(row_delay_s),
                                 str(decode_delay_s), *args],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _committed_rows(out: Path) -> int:
    parts = sorted(parts_dir(out).glob("part-*.parquet")) if parts_dir(out).exists() else []
    return sum(pq.read_metadata(p).num_rows for p in parts)


def _wait_for_rows(proc: subprocess.Popen, out: Path, at_least: int, timeout_s: float = 90) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = _committed_rows(out)
        if n >= at_least:
            return n
        assert proc.poll() is None, "the scan ended before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} rows committed after {timeout_s} s")


def _reap(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    """Waits for the scan; a hang fails the test. Leftover workers of its session are killed."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"scanner did not exit within {timeout_s} s") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _generated_folder(folder: Path, n: int, seconds: float) -> list[Path]:
    paths = []
    for i in range(n):
        x = sine(200 + 37 * i, seconds, SR, amplitude=0.3) + noise(seconds, SR, amplitude=0.05,
                                                                   seed=i)
        paths.append(write_audio(folder / f"{i // 10:02d}" / f"clip_{i:03d}.wav", x, SR,
                                 subtype="PCM_16"))
    return paths


def _reference(folder: Path, head: Path, out: Path) -> list[dict]:
    scan([folder], out, _fake(head, workers=0))
    return pq.read_table(out).drop_columns(["seconds_taken"]).to_pylist()


def _each_once(out: Path, expected: list[Path]) -> list[dict]:
    rows = pq.read_table(out).to_pylist()
    counts = Counter(r["path"] for r in rows)
    assert sorted(counts) == sorted(str(p) for p in expected)
    doubled = {p: c for p, c in counts.items() if c > 1}
    assert not doubled, f"rows doubled: {doubled}"
    return rows


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds_taken"} for r in rows]


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path, fake_head):
    folder = tmp_path / "in"
    files = _generated_folder(folder, 40, 1.0)
    out = tmp_path / "r.parquet"
    args = ["scan", str(folder), "-o", str(out), "--backbone", "fake", "--head", str(fake_head),
            "--workers", "1"]
    log = tmp_path / "stderr.txt"
    proc = _start(tmp_path, args, log=log)
    committed = _wait_for_rows(proc, out, at_least=8)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    code = _reap(proc)
    stderr = log.read_text()
    assert code == EXIT_INTERRUPTED, stderr
    assert "interrupted after" in stderr and f"-o {out} --resume" in stderr
    assert not out.exists()
    kept = _committed_rows(out)
    assert committed <= kept < len(files)

    result = CliRunner().invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"{len(files) - kept} files" in result.output and f"{kept} already done" in result.output
    rows = _each_once(out, files)
    assert not parts_dir(out).exists()
    assert _without_timing(rows) == _reference(folder, fake_head, tmp_path / "ref.parquet")


def test_ctrl_c_with_decodes_queued_exits_promptly_without_traceback(tmp_path, fake_head):
    folder = tmp_path / "in"
    _generated_folder(folder, 40, 1.0)
    out = tmp_path / "r.parquet"
    log = tmp_path / "stderr.txt"
    # slow decoding, fast rows: when Ctrl-C comes, many decode tasks are still queued
    proc = _start(tmp_path, ["scan", str(folder), "-o", str(out), "--backbone", "fake", "--head",
                             str(fake_head), "--workers", "2", "--batch-seconds", "1"], log=log,
                  row_delay_s=0.0, decode_delay_s=0.1)
    _wait_for_rows(proc, out, at_least=4)
    os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while "--resume" not in log.read_text() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    # once the resume hint is printed, exiting takes well under a second
    assert _reap(proc, timeout_s=10) == EXIT_INTERRUPTED
    assert "Traceback" not in log.read_text(), log.read_text()


def test_sigkill_mid_scan_then_resume_gives_each_file_once(tmp_path, fake_head):
    folder = tmp_path / "in"
    files = _generated_folder(folder, 60, 5.0)
    out = tmp_path / "r.parquet"
    args = ["-q", "scan", str(folder), "-o", str(out), "--backbone", "fake", "--head",
            str(fake_head), "--workers", "1", "--batch-seconds", "5"]
    # killed once in the first run and once in the resumed run, then finished
    first = _start(tmp_path, args, log=tmp_path / "1.txt")
    _wait_for_rows(first, out, at_least=10)
    os.kill(first.pid, signal.SIGKILL)
    _reap(first)
    after_first = _committed_rows(out)
    assert 10 <= after_first < len(files) and not out.exists()

    second = _start(tmp_path, [*args, "--resume"], log=tmp_path / "2.txt")
    _wait_for_rows(second, out, at_least=after_first + 10)
    os.kill(second.pid, signal.SIGKILL)
    _reap(second)
    after_second = _committed_rows(out)
    assert after_second < len(files) and not out.exists()
    assert len({r for r in pq.read_table(parts_dir(out)).column("path").to_pylist()}) \
        == after_second  # no file committed twice across the two killed runs

    last = subprocess.run([sys.executable, "-m", "scanner", *args, "--resume"],
                          capture_output=True, text=True, timeout=120)
    assert last.returncode == 0, last.stderr
    rows = _each_once(out, files)
    assert _without_timing(rows) == _reference(folder, fake_head, tmp_path / "ref.parquet")


@pytest.mark.parametrize("why", ["transient error", "file changed"])
def test_interrupted_resume_then_resume_keeps_one_row_per_file(tmp_path, fake_head,
                                                               monkeypatch, why):
    import scanner.audio.discover
    import scanner.engines.chain
    import scanner.engines.driver

    folder = tmp_path / "in"
    for i in range(4):
        write_audio(folder / f"f{i}.wav", noise(1.0, SR, seed=i), SR)
    victim = folder / "f1.wav"
    out = tmp_path / "r.parquet"
    if why == "transient error":
        kept = victim.read_bytes()
        with monkeypatch.context() as m:
            m.setattr(scanner.audio.discover, "discover", deleting_after_discovery(victim))
            scan([folder], out, _fake(fake_head, workers=0))
        victim.write_bytes(kept)
    else:
        scan([folder], out, _fake(fake_head, workers=0))
        write_audio(victim, noise(2.0, SR, seed=9), SR)
    write_audio(folder / "g_new.wav", noise(1.0, SR, seed=8), SR)

    # the resumed run commits f1's new row, then is interrupted on the next file
    make_row = scanner.engines.chain.make_row

    def interrupted_on_new(result, classifier):
        if result.file.path.name == "g_new.wav":
            raise KeyboardInterrupt
        return make_row(result, classifier)

    with monkeypatch.context() as m:
        m.setattr(scanner.engines.driver, "COMMIT_ROWS", 1)
        m.setattr(scanner.engines.chain, "make_row", interrupted_on_new)
        with pytest.raises(ScanInterrupted):
            scan([folder], out, _fake(fake_head, workers=0, resume=True))
    scan([folder], out, _fake(fake_head, workers=0, resume=True))
    rows = _each_once(out, sorted(folder.glob("*.wav")))
    f1 = _by_name(rows)["f1.wav"]
    assert f1["status"] == "ok" and f1["size_bytes"] == victim.stat().st_size


def test_killed_while_removing_parts_then_resume_keeps_one_row_per_file(tmp_path, fake_head,
                                                                       monkeypatch):
    import scanner.output.writer

    folder = tmp_path / "in"
    files = [write_audio(folder / f"f{i}.wav", noise(1.0, SR, seed=i), SR) for i in range(5)]
    out = tmp_path / "r.parquet"
    rmtree = shutil.rmtree

    def interrupted_rmtree(path, *args, **kwargs):
        if Path(path) == parts_dir(out):
            raise KeyboardInterrupt  # the final table is in place, its parts are not yet gone
        return rmtree(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(scanner.output.writer.shutil, "rmtree", interrupted_rmtree)
        with pytest.raises(KeyboardInterrupt):
            scan([folder], out, _fake(fake_head, workers=0))
    assert out.exists() and _committed_rows(out) == 5
    summary = scan([folder], out, _fake(fake_head, workers=0, resume=True))
    assert summary.skipped == 5
    _each_once(out, files)


def test_a_torn_part_loses_only_its_own_rows(tmp_path):
    from scanner.output.rows import arrow_schema, column_types
    from scanner.output.writer import TableSink

    schema = arrow_schema(column_types(CLASSES, ["fake"]), {b"scanner": b"{}"})

    def rows(*paths):
        return [{"path": p, "status": "ok", "size_bytes": 1, "mtime": 1} for p in paths]

    out = tmp_path / "r.parquet"
    first = TableSink(out, schema)
    for batch in (["/a"], ["/b"], ["/c"]):
        first.write(rows(*batch))
    (parts_dir(out) / "part-000002.parquet").write_bytes(b"PAR1 torn by a power cut")
    second = TableSink(out, schema, resume=True)  # drops part 2 (/b) with a warning
    assert sorted(r["path"] for r in second.previous_rows()) == ["/a", "/c"]
    second.write(rows("/b", "/d"))
    second.finish()
    assert pq.read_table(out).column("path").to_pylist() == ["/a", "/b", "/c", "/d"]


@pytest.mark.parametrize("stage", ["loading the model", "writing the table"])
def test_ctrl_c_outside_the_file_loop_is_exit_130(tmp_path, fake_head, monkeypatch, stage):
    import scanner.engines.driver
    import scanner.output.writer

    folder = tmp_path / "in"
    write_audio(folder / "a.wav", sine(440, 1.0, SR), SR)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if stage == "loading the model":
        monkeypatch.setattr(scanner.engines.driver, "load_classifier", interrupt)
    else:
        monkeypatch.setattr(scanner.output.writer.TableSink, "finish", interrupt)
    result = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(tmp_path / "r.parquet"),
                                      "--backbone", "fake", "--head", str(fake_head),
                                      "--workers", "0"])
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert "interrupted" in result.output and "Aborted!" not in result.output


