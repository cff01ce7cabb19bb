"""Bad input gets a row, never a lost file: the done-when folder (real YAMNet), odd and
non-UTF-8 names, unreadable and vanishing files, crashes, hangs, huge WAVs, --max-duration."""


import builtins
import os
import shutil
import signal
import struct
import time
import typing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scanner.audio import decode as decode_mod
from scanner.audio.decode import decode_task
from scanner.cli import EXIT_FILE_ERRORS, cli
from scanner.config import ScanConfig
from scanner.engines.driver import load_classifier, scan
from scanner.errors import ErrorKind
from scanner.records import DecodedClip, DecodeFailure, DecodeTask
from scanner.testing import (
    NON_FINITE_AT_S,
    chirp,
    deleting_after_discovery,
    fake_scan_config,
    make_bad_inputs,
    noise,
    rows_by_name,
    sine,
    verdict_problems,
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


def test_done_when_folder_gives_14_rows_with_the_right_status(tmp_path, yamnet_env):
    folder = tmp_path / "mixed bag"
    expected = done_when_folder(folder)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(out), "--workers", "2"])
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
            assert row["label"] is None and row["mean_prob_cry"] is None
            # every failure is logged with the file and its reason
            assert f"{folder / name}: {row['error']} ({kind})" in result.output
        else:
            assert row["error"] is None and row["decoder"] == "soundfile"
            assert verdict_problems(row) == [], name
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


def test_file_deleted_after_discovery_is_an_error_row_then_retried(tmp_path, fake_head,
                                                                   monkeypatch):
    import scanner.audio.discover

    folder = tmp_path / "in"
    for i in range(4):
        write_audio(folder / f"f{i}.wav", noise(1.0, SR, seed=i), SR)
    victim = folder / "f2.wav"
    kept, mtime_ns = victim.read_bytes(), victim.stat().st_mtime_ns
    real_discover = scanner.audio.discover.discover
    monkeypatch.setattr(scanner.audio.discover, "discover", deleting_after_discovery(victim))
    out = tmp_path / "r.parquet"
    summary = scan([folder], out, _fake(fake_head, workers=1))
    rows = _by_name(pq.read_table(out).to_pylist())
    assert summary.files == 4 and summary.errors == 1 and len(rows) == 4
    assert rows["f2.wav"]["error_kind"] == "io"
    assert rows["f2.wav"]["error"] == "file not found (moved or deleted since it was listed)"

    monkeypatch.setattr(scanner.audio.discover, "discover", real_discover)
    victim.write_bytes(kept)
    os.utime(victim, ns=(mtime_ns,) * 2)
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


def test_a_crash_or_a_hang_costs_only_its_file(tmp_path, fake_head):
    from scanner.engines.local import LocalEngine

    folder = tmp_path / "in"
    names = ["a.wav", "b.wav", "crash.wav", "c.wav", "hang.wav", "d.wav"]
    for i, name in enumerate(names):
        write_audio(folder / name, sine(300 + 50 * i, 1.0, SR), SR)

    out = tmp_path / "r.parquet"
    start = time.monotonic()
    summary = scan([folder], out, _fake(fake_head, workers=2, decode_timeout_s=3.0),
                   engine=LocalEngine(decode=_faulty_decode))
    assert time.monotonic() - start < 60
    rows = _by_name(pq.read_table(out).to_pylist())
    assert set(rows) == set(names) and summary.errors == 2
    assert rows["crash.wav"]["error_kind"] == "crashed"
    assert "crashed its worker process" in rows["crash.wav"]["error"]
    assert rows["hang.wav"]["error_kind"] == "timeout"
    assert rows["hang.wav"]["error"] == "decoding took longer than 3 s"
    assert all(rows[n]["status"] == "ok" for n in ("a.wav", "b.wav", "c.wav", "d.wav"))

    # the real decoder again: --resume retries crashes and timeouts
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
            "--head", str(fake_head), "--workers", "0"]
    quiet = CliRunner().invoke(cli, args)
    loud = CliRunner().invoke(cli, ["-v", *args, "--overwrite"])
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
    from scanner.audio.discover import discover
    from scanner.backbones import load_backbone
    from scanner.engines.local import embed_files

    # 140 s of 16-bit audio is 4.5 MB: large enough to be probed and planned in parts
    write_audio(tmp_path / "long.wav", noise(140.0, SR, seed=6), SR, subtype="PCM_16")
    (result,) = embed_files(discover([tmp_path]), [load_backbone("fake")], workers=0,
                            part_s=30.0, max_duration_s=50.0)
    starts = result.embeddings["fake"].starts_s
    assert result.ok and result.info.truncated_to_s == 50.0
    assert result.info.duration_s == pytest.approx(140.0)
    assert 48.0 < starts.max() < 50.0 and np.all(np.diff(starts) > 0)


