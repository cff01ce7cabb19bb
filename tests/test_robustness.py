"""No file lost: bad input, vanishing and unreadable files, crashes, Ctrl-C, SIGKILL, --resume.

The done-when folder (5 good clips and 10 awkward entries) goes end to end through the CLI
with the real YAMNet; the interruption tests run ``scanner scan`` in a subprocess and stop it
with SIGINT or SIGKILL while it commits rows, then finish the job with ``--resume``.
"""

from __future__ import annotations

import builtins
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import typing
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.audio import decode as decode_mod
from scanner.cli import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, cli
from scanner.config import ScanConfig
from scanner.audio.decode import decode_task
from scanner.errors import ErrorKind
from scanner.engines.driver import ScanInterrupted, load_classifier, scan
from scanner.records import DecodedClip, DecodeFailure, DecodeTask
from scanner.testing import NON_FINITE_AT_S, chirp, make_bad_inputs, noise, sine, write_audio
from scanner.output.writer import parts_dir

SR = 16000
CLASSES = ("cry", "screaming", "not_screaming")
UNICODE_NAME = "música infantil – 子守唄.wav"
ERROR_KINDS = set(typing.get_args(ErrorKind))


# --- the done-when folder -----------------------------------------------------------------


def done_when_folder(root: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """Writes the issue's folder; returns ``{file name: (status, error_kind, words in error)}``.

    Five good clips (three formats, four rates, one stereo), an empty wav, a text file named
    .mp3, a truncated flac, a NaN wav, a 5 ms clip, one second of silence, an 8-channel 96 kHz
    float wav, a unicode-named wav, a wav whose header claims 2 GB, and a folder symlink loop
    (which gives no row: 14 rows in all).
    """
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, tuple[str, str | None, str | None]] = {}
    good = [("good_tone.wav", sine(440, 2.0, SR), SR),
            ("good_noise.flac", noise(2.5, 22050, amplitude=0.2, seed=1), 22050),
            ("good_chirp.ogg", chirp(200, 3000, 3.0, 44100, channels=2), 44100),
            ("good_8k.wav", sine(300, 1.5, 8000), 8000),
            ("good_mix.flac", sine(660, 2.0, 48000) + noise(2.0, 48000, seed=2), 48000)]
    for name, x, rate in good:
        write_audio(root / name, np.clip(x, -1, 1), rate)
        expected[name] = ("ok", None, None)

    bad = make_bad_inputs(root.parent / f"_{root.name}_corpus")
    shutil.copy(bad["empty"].path, root / "empty.wav")
    expected["empty.wav"] = ("error", "empty", "empty file")
    (root / "notes.mp3").write_text("Shopping list: milk, eggs, bread.\n" * 30)
    expected["notes.mp3"] = ("error", "not_audio", "not an audio file")
    shutil.copy(bad["truncated_flac"].path, root / "truncated.flac")
    expected["truncated.flac"] = ("error", "truncated", "truncated after")
    shutil.copy(bad["nan"].path, root / "nan.wav")
    expected["nan.wav"] = ("error", "non_finite", f"NaN/Inf) at {NON_FINITE_AT_S:.2f} s")
    shutil.rmtree(bad["empty"].path.parent)

    write_audio(root / "five_ms.wav", sine(440, 0.005, SR), SR, subtype="PCM_16")
    write_audio(root / "silence.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    write_audio(root / "eight_channels_96k.wav", sine(1000, 1.0, 96000, amplitude=0.2, channels=8),
                96000, subtype="FLOAT")
    write_audio(root / UNICODE_NAME, sine(523, 1.5, SR), SR)
    for name in ("five_ms.wav", "silence.wav", "eight_channels_96k.wav", UNICODE_NAME):
        expected[name] = ("ok", None, None)

    wav = bytearray(write_audio(root / "claims_2gb.wav", sine(440, 1.0, SR), SR,
                                subtype="PCM_16").read_bytes())
    data_at = wav.find(b"data")
    wav[data_at + 4:data_at + 8] = struct.pack("<I", 2_000_000_000)
    wav[4:8] = struct.pack("<I", 2_000_000_036)
    (root / "claims_2gb.wav").write_bytes(bytes(wav))
    expected["claims_2gb.wav"] = ("error", "truncated", "the header says 62500.0 s")

    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "loop")
    return expected


@pytest.fixture()
def yamnet_env(model_dir, monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SCANNER_OFFLINE", "1")


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in rows}


def test_done_when_folder_gives_14_rows_with_the_right_status(tmp_path, yamnet_env):
    folder = tmp_path / "mixed bag"
    expected = done_when_folder(folder)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(out), "--workers", "2",
                                      "--strict"])
    assert result.exit_code == EXIT_FILE_ERRORS, result.output
    assert "14 files (9 ok, 5 errors)" in result.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 14 and len({r["path"] for r in rows}) == 14
    by_name = _by_name(rows)
    assert set(by_name) == set(expected)
    assert by_name[UNICODE_NAME]["path"] == str(folder / UNICODE_NAME)
    for name, (status, kind, words) in expected.items():
        row = by_name[name]
        assert (row["status"], row["error_kind"]) == (status, kind), (name, row["error"])
        assert row["seconds_taken"] is not None and row["seconds_taken"] >= 0
        assert row["size_bytes"] == (folder / name).stat().st_size
        if status == "error":
            assert words in row["error"], (name, row["error"])
            assert row["label"] is None and row["prob_cry"] is None
            # every failure is logged with the file and its reason
            assert f"{folder / name}: {row['error']} ({kind})" in result.output
        else:
            assert row["error"] is None and row["decoder"] == "soundfile"
            probs = [row[f"prob_{c}"] for c in CLASSES]
            assert abs(sum(probs) - 1) < 1e-5 and row["confidence"] == max(probs)
            assert row["label"] == CLASSES[int(np.argmax(probs))]
    assert by_name["five_ms.wav"]["duration_s"] == pytest.approx(0.005)
    assert by_name["silence.wav"]["duration_s"] == pytest.approx(1.0)
    eight = by_name["eight_channels_96k.wav"]
    assert (eight["channels"], eight["sample_rate"]) == (8, 96000)
    assert by_name["good_chirp.ogg"]["channels"] == 2


def test_results_are_the_same_whatever_the_workers(tmp_path, yamnet_env):
    folder = tmp_path / "in"
    done_when_folder(folder)
    config = ScanConfig()
    classifier = load_classifier(config)
    tables = []
    for workers, batch_s in ((0, 60.0), (1, 60.0), (2, 1.0)):
        out = tmp_path / f"w{workers}.parquet"
        scan([folder], out, ScanConfig(workers=workers, batch_s=batch_s), classifier=classifier)
        tables.append(pq.read_table(out).drop_columns(["seconds_taken"]).to_pylist())
    assert len(tables[0]) == 14
    assert tables[0] == tables[1] == tables[2]
    assert {r["status"] for r in tables[0]} == {"ok", "error"}


def test_symlink_loops_end_and_followed_links_give_one_row(tmp_path, fake_head):
    folder = tmp_path / "in"
    done_when_folder(folder)
    os.symlink("loop_b.wav", folder / "loop_a.wav")  # a file link loop: not a file, no row
    os.symlink("loop_a.wav", folder / "loop_b.wav")
    for follow in (False, True):
        out = tmp_path / f"r{follow}.parquet"
        summary = scan([folder], out, _fake(fake_head, workers=0, follow_symlinks=follow))
        paths = pq.read_table(out).column("path").to_pylist()
        assert summary.files == 14 and len(set(paths)) == 14
        assert not any("loop" in Path(p).name for p in paths)


# --- names, permissions, files that vanish -------------------------------------------------


def _fake(head: Path, **kw) -> ScanConfig:
    return ScanConfig(backbones=("fake",), heads={"fake": str(head)}, **kw)


ODD_NAMES = ["with space.wav", "comma,and;semi.wav", 'quote"d.wav', "new\nline.wav",
             "-starts-with-dash.wav", "cafe\u0301 (NFD).wav", "caf\u00e9 (NFC).wav",
             "日本語 音声.flac", "crying 😢.wav", "tab\tname.wav"]


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_odd_names_round_trip_and_resume(tmp_path, fake_head, suffix):
    folder = tmp_path / "odd names"
    for i, name in enumerate(ODD_NAMES):
        write_audio(folder / name, sine(300 + 40 * i, 1.0, SR), SR)
    out = tmp_path / f"out put.{suffix}"
    result = CliRunner().invoke(cli, ["-q", "scan", str(folder), "-o", str(out), "--backbone",
                                      "fake", "--head", str(fake_head), "--workers", "0"])
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(out), "--backbone", "fake",
                                     "--head", str(fake_head), "--workers", "0", "--resume"])
    assert again.exit_code == 0, again.output
    assert "0 files (0 ok, 0 errors, 10 already done)" in again.output
    import pyarrow.csv as pacsv

    table = pq.read_table(out) if suffix == "parquet" else pacsv.read_csv(
        out, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert sorted(table.column("path").to_pylist()) == sorted(str(folder / n) for n in ODD_NAMES)
    assert set(table.column("status").to_pylist()) == {"ok"}


def test_a_name_that_is_not_utf8_still_gets_its_row(tmp_path, fake_head):
    folder = tmp_path / "in"
    write_audio(folder / "fine.wav", sine(440, 1.0, SR), SR)
    write_audio(folder / "tmp.wav", sine(550, 1.0, SR), SR)
    # a Latin-1 name from an old disk: not UTF-8 (soundfile cannot even write it)
    os.rename(folder / "tmp.wav", os.fsencode(folder) + b"/chanson_\xe9t\xe9.wav")
    out = tmp_path / "r.parquet"
    summary = scan([folder], out, _fake(fake_head, workers=0))
    assert summary.files == 2
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    assert any("chanson_" in r["path"] for r in rows)
    again = scan([folder], out, _fake(fake_head, workers=0, resume=True))
    assert again.skipped == 2 and pq.read_table(out).num_rows == 2


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_unreadable_file_is_an_error_row_and_the_scan_goes_on(tmp_path, fake_head, monkeypatch,
                                                              how):
    folder = tmp_path / "in"
    for i in range(3):
        write_audio(folder / f"f{i}.wav", sine(300 + 100 * i, 1.0, SR), SR)
    locked = folder / "f1.wav"
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root reads files whatever their mode: the 'simulated' case covers it")
        locked.chmod(0)
    else:
        def guarded_open(file, *args, **kwargs):
            if Path(file) == locked:
                raise PermissionError(13, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr(decode_mod, "open", guarded_open, raising=False)
    out = tmp_path / "r.parquet"
    try:
        summary = scan([folder], out, _fake(fake_head, workers=0))
    finally:
        locked.chmod(0o644)
    rows = _by_name(pq.read_table(out).to_pylist())
    assert summary.files == 3 and summary.errors == 1
    assert (rows["f1.wav"]["status"], rows["f1.wav"]["error_kind"]) == ("error", "io")
    assert rows["f1.wav"]["error"] == "permission denied"
    assert rows["f0.wav"]["status"] == rows["f2.wav"]["status"] == "ok"


def _deleting_after_discovery(victim):
    """``discover`` as it is, but ``victim`` is deleted once the files are listed."""
    import scanner.audio.discover

    real_discover = scanner.audio.discover.discover

    def discover_then_delete(*args, **kwargs):
        files = real_discover(*args, **kwargs)
        victim.unlink()
        return files

    return discover_then_delete


def test_file_deleted_after_discovery_is_an_error_row_then_retried(tmp_path, fake_head,
                                                                   monkeypatch):
    import scanner.audio.discover

    folder = tmp_path / "in"
    for i in range(4):
        write_audio(folder / f"f{i}.wav", noise(1.0, SR, seed=i), SR)
    victim = folder / "f2.wav"
    kept = victim.read_bytes()
    real_discover = scanner.audio.discover.discover
    monkeypatch.setattr(scanner.audio.discover, "discover", _deleting_after_discovery(victim))
    out = tmp_path / "r.parquet"
    summary = scan([folder], out, _fake(fake_head, workers=1))
    rows = _by_name(pq.read_table(out).to_pylist())
    assert summary.files == 4 and summary.errors == 1 and len(rows) == 4
    assert rows["f2.wav"]["error_kind"] == "io"
    assert rows["f2.wav"]["error"] == "file not found (moved or deleted since it was listed)"

    monkeypatch.setattr(scanner.audio.discover, "discover", real_discover)
    victim.write_bytes(kept)
    os.utime(victim, ns=(rows["f2.wav"]["mtime_ns"],) * 2)
    again = scan([folder], out, _fake(fake_head, workers=1, resume=True))
    assert (again.files, again.skipped, again.errors) == (1, 3, 0)  # io errors are retried
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}


# --- crashes, hangs, tracebacks -------------------------------------------------------------


def _faulty_decode(task: DecodeTask, sample_rate_hz: int) -> DecodedClip | DecodeFailure:
    """The real decoder, except that it kills its worker on 'crash*' and hangs on 'hang*'."""
    name = task.file.path.name
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        time.sleep(120)
    return decode_task(task, sample_rate_hz=sample_rate_hz)


def test_a_crash_or_a_hang_costs_only_its_file(tmp_path, fake_head, monkeypatch):
    import scanner.audio.pool
    import scanner.engines.local

    folder = tmp_path / "in"
    names = ["a.wav", "b.wav", "crash.wav", "c.wav", "hang.wav", "d.wav"]
    for i, name in enumerate(names):
        write_audio(folder / name, sine(300 + 50 * i, 1.0, SR), SR)

    class FaultyPool(scanner.audio.pool.DecodePool):
        def __init__(self, **kw):
            super().__init__(decode=_faulty_decode, **kw)

    monkeypatch.setattr(scanner.engines.local, "DecodePool", FaultyPool)
    monkeypatch.setattr(scanner.audio.pool, "DecodePool", FaultyPool)  # started by scan()
    out = tmp_path / "r.parquet"
    start = time.monotonic()
    summary = scan([folder], out, _fake(fake_head, workers=2, decode_timeout_s=3.0))
    assert time.monotonic() - start < 60
    rows = _by_name(pq.read_table(out).to_pylist())
    assert set(rows) == set(names) and summary.errors == 2
    assert rows["crash.wav"]["error_kind"] == "crashed"
    assert "crashed its worker process" in rows["crash.wav"]["error"]
    assert rows["hang.wav"]["error_kind"] == "timeout"
    assert rows["hang.wav"]["error"] == "decoding took longer than 3 s"
    assert all(rows[n]["status"] == "ok" for n in ("a.wav", "b.wav", "c.wav", "d.wav"))

    monkeypatch.undo()  # the real decoder again: --resume retries crashes and timeouts
    again = scan([folder], out, _fake(fake_head, workers=2, resume=True))
    assert (again.files, again.skipped, again.errors) == (2, 4, 0)
    paths = pq.read_table(out).column("path").to_pylist()
    assert sorted(Path(p).name for p in paths) == sorted(names)


def test_verbose_logs_the_traceback_of_an_internal_error(tmp_path, fake_head, monkeypatch):
    folder = tmp_path / "in"
    write_audio(folder / "bug.wav", sine(440, 0.5, SR), SR)
    write_audio(folder / "fine.wav", sine(440, 0.5, SR), SR)
    real = dict(decode_mod.DECODERS)

    def buggy(name):
        def backend(path, **kw):
            if Path(path).name == "bug.wav":
                raise ZeroDivisionError("a decoder bug")
            return real[name](path, **kw)
        return backend

    monkeypatch.setattr(decode_mod, "DECODERS", tuple((n, buggy(n)) for n in real))
    args = ["scan", str(folder), "-o", str(tmp_path / "r.parquet"), "--backbone", "fake",
            "--head", str(fake_head), "--workers", "0", "--strict"]
    quiet = CliRunner().invoke(cli, args)
    loud = CliRunner().invoke(cli, ["-v", *args])
    for result in (quiet, loud):
        assert result.exit_code == EXIT_FILE_ERRORS, result.output
        assert "bug.wav: ZeroDivisionError: a decoder bug (internal)" in result.output
    assert "Traceback (most recent call last)" not in quiet.output
    assert "Traceback (most recent call last)" in loud.output
    assert 'ZeroDivisionError("a decoder bug")' in loud.output or \
        "raise ZeroDivisionError" in loud.output


def test_a_wav_past_4_gib_is_read_to_its_end(tmp_path):
    from scanner.audio.decode import plan_tasks, probe_duration
    from scanner.audio.discover import discover

    # What a recorder or libsndfile writes for 10 h of 44.1 kHz stereo: sizes 0xFFFFFFFF.
    # Sparse: 5 GiB of silence with one second of tone at 30,000 s, and no disk used.
    rate, bytes_per_s = 44100, 44100 * 4
    header = bytearray(write_audio(tmp_path / "h.wav", np.zeros((1, 2), np.float32), rate,
                                   subtype="PCM_16").read_bytes()[:44])
    data_at = header.find(b"data")
    header[4:8] = header[data_at + 4:data_at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path = tmp_path / "long.wav"
    with open(path, "wb") as f:
        f.write(header)
        f.seek(data_at + 8 + 30_000 * bytes_per_s)
        f.write((sine(440, 1.0, rate, channels=2) * 32767).astype("<i2").tobytes())
        f.truncate(5 * 1024**3)
    true_s = (5 * 1024**3 - data_at - 8) / bytes_per_s
    assert probe_duration(path) == pytest.approx(true_s, abs=1)
    tasks = list(plan_tasks(discover([tmp_path]), part_s=600.0))
    late = next(t for t in tasks if t.file.path == path and t.start_s <= 30_000 < t.start_s + 600)
    clip = decode_task(replace(late, start_s=30_000.0, max_s=1.0))
    assert isinstance(clip, DecodedClip), clip
    assert np.abs(clip.waveform).max() > 0.3  # the tone, not silence past a false end


# --- --max-duration -------------------------------------------------------------------------


def test_max_duration_cuts_with_a_clear_note(tmp_path, fake_head):
    folder = tmp_path / "in"
    write_audio(folder / "long.wav", noise(12.0, SR, seed=4), SR)
    write_audio(folder / "short.wav", noise(3.0, SR, seed=5), SR)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["-q", "scan", str(folder), "-o", str(out), "--backbone",
                                      "fake", "--head", str(fake_head), "--max-duration", "5"])
    assert result.exit_code == 0, result.output
    rows = _by_name(pq.read_table(out).to_pylist())
    long, short = rows["long.wav"], rows["short.wav"]
    assert (long["status"], long["error_kind"]) == ("ok", "too_long")
    assert long["error"] == "cut to the first 5 s (--max-duration)"
    assert long["duration_s"] == pytest.approx(12.0) and long["label"] in CLASSES
    assert (short["status"], short["error"], short["error_kind"]) == ("ok", None, None)


def test_max_duration_cuts_a_file_decoded_in_parts(tmp_path):
    from scanner.backbones import load_backbone
    from scanner.audio.discover import discover
    from scanner.engines.local import embed_files

    # 140 s of 16-bit audio is 4.5 MB: large enough to be probed and planned in parts
    write_audio(tmp_path / "long.wav", noise(140.0, SR, seed=6), SR, subtype="PCM_16")
    (result,) = embed_files(discover([tmp_path]), [load_backbone("fake")], workers=0,
                            part_s=30.0, max_duration_s=50.0)
    starts = result.embeddings["fake"].starts_s
    assert result.ok and result.info.truncated_to_s == 50.0
    assert result.info.duration_s == pytest.approx(140.0)
    assert 48.0 < starts.max() < 50.0 and np.all(np.diff(starts) > 0)


# --- Ctrl-C and SIGKILL in a real process -------------------------------------------------

# Runs `scanner` with rows committed every COMMIT_S seconds, each row ROW_DELAY_S slower and
# each decode DECODE_DELAY_S slower, so an interruption reliably lands mid-scan with parts
# already committed (and, with a decode delay, with decode tasks still queued).
_SLOW_SCANNER = """
import sys, time
import scanner.audio.pool
import scanner.engines.local
import scanner.engines.driver as pipeline
from scanner.audio.decode import decode_task
from scanner.audio.pool import DecodePool
commit_s, row_delay_s, decode_delay_s = map(float, sys.argv[1:4])
pipeline.COMMIT_EVERY_S = commit_s
make_row = pipeline.make_row
def slow_make_row(*args, **kwargs):
    time.sleep(row_delay_s)
    return make_row(*args, **kwargs)
pipeline.make_row = slow_make_row
def slow_decode(task, sample_rate_hz):  # sent to the workers by value (defined in __main__)
    time.sleep(decode_delay_s)
    return decode_task(task, sample_rate_hz=sample_rate_hz)
class SlowPool(DecodePool):
    def __init__(self, **kw):
        super().__init__(decode=slow_decode, **kw)
if decode_delay_s:
    scanner.engines.local.DecodePool = scanner.audio.pool.DecodePool = SlowPool
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

    result = CliRunner().invoke(cli, ["-q", *args, "--resume"])
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
    import scanner.engines.driver

    folder = tmp_path / "in"
    for i in range(4):
        write_audio(folder / f"f{i}.wav", noise(1.0, SR, seed=i), SR)
    victim = folder / "f1.wav"
    out = tmp_path / "r.parquet"
    if why == "transient error":
        kept = victim.read_bytes()
        with monkeypatch.context() as m:
            m.setattr(scanner.audio.discover, "discover", _deleting_after_discovery(victim))
            scan([folder], out, _fake(fake_head, workers=0))
        victim.write_bytes(kept)
    else:
        scan([folder], out, _fake(fake_head, workers=0))
        write_audio(victim, noise(2.0, SR, seed=9), SR)
    write_audio(folder / "g_new.wav", noise(1.0, SR, seed=8), SR)

    # the resumed run commits f1's new row, then is interrupted on the next file
    make_row = scanner.engines.driver.make_row

    def interrupted_on_new(result, classifier):
        if result.file.path.name == "g_new.wav":
            raise KeyboardInterrupt
        return make_row(result, classifier)

    with monkeypatch.context() as m:
        m.setattr(scanner.engines.driver, "COMMIT_ROWS", 1)
        m.setattr(scanner.engines.driver, "make_row", interrupted_on_new)
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
        return [{"path": p, "status": "ok", "size_bytes": 1, "mtime_ns": 1} for p in paths]

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


# --- fuzzing ----------------------------------------------------------------------------------


def _seed_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as d:
        x = chirp(300, 2000, 0.6, 8000, amplitude=0.5)
        return {ext: write_audio(Path(d) / f"s{ext}", x, 8000).read_bytes()
                for ext in (".wav", ".flac", ".ogg")}


SEED_FILES = _seed_files()


@st.composite
def damaged_file(draw: st.DrawFn) -> tuple[str, bytes]:
    ext = draw(st.sampled_from(sorted(SEED_FILES) + [".mp3", ".m4a"]))
    if ext not in SEED_FILES or draw(st.integers(0, 3)) == 0:
        return ext, draw(st.binary(max_size=3000))
    data = bytearray(SEED_FILES[ext])
    for _ in range(draw(st.integers(0, 10))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return ext, bytes(data[:draw(st.integers(0, len(data)))])


@pytest.fixture(scope="module")
def fuzz_classifier(tmp_path_factory):
    from scanner.backbones import load_backbone
    from scanner.heads.mlp import MLPHead

    backbone = load_backbone("fake")
    rng = np.random.default_rng(1)
    head = MLPHead(classes=CLASSES, backbone_config={**backbone.config(), **backbone.identity},
                   layers=[(rng.standard_normal((8, 16)), rng.standard_normal(8)),
                           (rng.standard_normal((3, 8)), rng.standard_normal(3))],
                   mean=np.full(16, -5.0), std=np.full(16, 3.0), name="fuzz-head")
    folder = head.save(tmp_path_factory.mktemp("head") / "fuzz-head")
    config = _fake(folder, workers=0)
    return config, load_classifier(config)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(damaged_file(), min_size=1, max_size=6))
def test_fuzzed_folder_gives_one_row_per_file(fuzz_classifier, files):
    config, classifier = fuzz_classifier
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "in"
        folder.mkdir()
        written = [folder / "good.wav"]
        sf.write(written[0], sine(440, 0.5, SR), SR)
        for i, (ext, data) in enumerate(files):
            written.append(folder / f"f{i}{ext}")
            written[-1].write_bytes(data)
        out = Path(d) / "r.parquet"
        summary = scan([folder], out, config, classifier=classifier)
        rows = pq.read_table(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in written)
    assert summary.files == len(written) == summary.ok + summary.errors
    for r in rows:
        assert r["status"] in ("ok", "error")
        if r["status"] == "error":
            assert r["error"] and r["error_kind"] in ERROR_KINDS
            assert r["error_kind"] != "internal", r["error"]
        else:
            assert abs(sum(r[f"prob_{c}"] for c in CLASSES) - 1) < 1e-5
    assert _by_name(rows)["good.wav"]["status"] == "ok"
