"""Outputs are protected: no file the tool did not write is replaced, one scan per output at a
time, ``--resume`` only with the same settings, and a file's rows commit together."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scanner.cli import EXIT_OUTPUT, cli
from scanner.engines.driver import scan
from scanner.errors import ConfigError, OutputError
from scanner.output.writer import parts_dir
from scanner.testing import fake_scan_config, noise, sine, write_audio

SR = 16000


def _folder(root: Path, n: int = 4) -> Path:
    for i in range(n):
        write_audio(root / f"f{i}.wav", sine(300 + 40 * i, 1.5, SR) + noise(1.5, SR, seed=i), SR)
    return root


@pytest.mark.parametrize("victim", ["input.flac", "notes.parquet", "sheet.csv", "events"])
def test_a_file_the_tool_did_not_write_is_never_replaced(tmp_path, fake_head, victim):
    folder = _folder(tmp_path / "in")
    if victim == "input.flac":
        out = folder / "f0.wav"  # -o names an input recording
    elif victim == "events":
        out = tmp_path / "r.parquet"
        (tmp_path / "r.events.parquet").write_bytes(b"someone's own table")
    else:
        out = tmp_path / victim
        out.write_bytes(b"PAR1 not ours" if victim.endswith(".parquet") else b"a,b\n1,2\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for extra in ([], ["--overwrite"], ["--resume"]):
        result = CliRunner().invoke(cli, ["scan", str(folder), "-o", str(out), "--backbone", "fake",
                                          "--head", str(fake_head), "--workers", "0", *extra])
        if victim == "input.flac":  # refused already for its extension: not a results table
            assert result.exit_code == 2 and "a results table ends in" in result.output
            continue
        assert result.exit_code == EXIT_OUTPUT, result.output
        assert "not a results table written by scanner" in result.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_an_earlier_table_is_replaced_only_with_overwrite(tmp_path, fake_head, suffix):
    folder = _folder(tmp_path / "in")
    out = tmp_path / f"r.{suffix}"
    scan([folder], out, fake_scan_config(fake_head, workers=0))
    with pytest.raises(OutputError, match="--resume .* or --overwrite"):
        scan([folder], out, fake_scan_config(fake_head, workers=0))
    write_audio(folder / "new.wav", sine(500, 1.0, SR), SR)
    summary = scan([folder], out, fake_scan_config(fake_head, workers=0, overwrite=True))
    assert summary.files == 5 and summary.skipped == 0


def test_resume_with_other_settings_refuses_and_names_them(tmp_path, fake_head):
    folder = _folder(tmp_path / "in")
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(fake_head, workers=0))
    before = out.read_bytes()
    changes = {"thresholds": {"cry": 0.9}, "sensitivity": 2.0, "segments": True,
               "detection": {"min_event_s": 2.0}}
    for key, value in changes.items():
        with pytest.raises(ConfigError, match=r"--resume: .*other settings") as caught:
            scan([folder], out, fake_scan_config(fake_head, workers=0, resume=True, **{key: value}))
        assert ("detection" if key != "segments" else "segments") in str(caught.value)
    assert out.read_bytes() == before
    again = scan([folder], out, fake_scan_config(fake_head, workers=0, resume=True))
    assert again.skipped == 4


_HOLD = """
import sys, time
from pathlib import Path
from scanner.config import ScanConfig
from scanner.output.guard import OutputGuard
with OutputGuard(Path(sys.argv[1]), ScanConfig()).lock():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_scan_refuses_while_the_first_holds_the_output(tmp_path, fake_head):
    folder = _folder(tmp_path / "in")
    out = tmp_path / "r.parquet"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=rf"another scan \(process {holder.pid} on "):
            scan([folder], out, fake_scan_config(fake_head, workers=0))
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock is stale and simply taken over
    summary = scan([folder], out, fake_scan_config(fake_head, workers=0))
    assert summary.files == 4 and out.exists()


def test_a_failed_commit_leaves_no_holes_after_resume(tmp_path, fake_head, monkeypatch):
    """A full disk between the events part and the file part: the file is redone whole."""
    import scanner.output.writer as writer

    folder = _folder(tmp_path / "in", n=6)
    out = tmp_path / "r.parquet"
    real = writer.TableSink.write
    calls = {"n": 0}

    def full_disk_on_second_file_part(self, rows, *, number=None):
        if self.out == out and rows:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, rows, number=number)

    config = fake_scan_config(fake_head, workers=0, thresholds={"cry": 0.01, "screaming": 0.01})
    monkeypatch.setattr("scanner.engines.driver.COMMIT_ROWS", 2)
    with monkeypatch.context() as m:
        m.setattr(writer.TableSink, "write", full_disk_on_second_file_part)
        with pytest.raises(OSError, match="No space left"):
            scan([folder], out, config)
    resumed = scan([folder], out, fake_scan_config(fake_head, workers=0, resume=True,
                                                   thresholds={"cry": 0.01, "screaming": 0.01}))
    assert resumed.skipped == 2 and resumed.files == 4
    rows = pq.read_table(out).to_pylist()
    events = pq.read_table(tmp_path / "r.events.parquet").to_pylist()
    assert len(rows) == 6 and not parts_dir(out).exists()
    for row in rows:  # every file's event count matches its event rows: no holes, no doubles
        assert row["n_events"] == sum(e["path"] == row["path"] for e in events), row["path"]
    assert sum(r["n_events"] for r in rows) > 0


def test_the_metadata_records_the_command_roots_and_detection(tmp_path, fake_head):
    folder = _folder(tmp_path / "in")
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(fake_head, workers=0, roots=(str(folder),),
                                         command=("scanner", "scan", str(folder)),
                                         thresholds={"cry": 0.7}))
    for table in (out, tmp_path / "r.events.parquet"):
        meta = json.loads(pq.read_schema(table).metadata[b"scanner"])
        assert meta["command"] == ["scanner", "scan", str(folder)]
        assert meta["roots"] == [str(folder)]
        assert meta["detection"]["thresholds"]["cry"] == 0.7
    assert "fingerprint" in json.loads(pq.read_schema(out).metadata[b"scanner"])


def test_the_lock_file_is_gone_after_a_scan(tmp_path, fake_head):
    folder = _folder(tmp_path / "in")
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(fake_head, workers=0))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "r."))) \
        == ["r.events.parquet", "r.parquet"]


def test_a_killed_scan_leaves_a_lock_the_next_scan_takes_over(tmp_path):
    out = tmp_path / "r.parquet"
    code = textwrap.dedent(_HOLD)
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), "60"], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    os.kill(proc.pid, 9)
    proc.wait()
    assert out.with_name(".r.parquet.lock").exists()  # left behind by the dead process
    from scanner.config import ScanConfig
    from scanner.output.guard import OutputGuard

    start = time.monotonic()
    with OutputGuard(out, ScanConfig()).lock():
        pass
    assert time.monotonic() - start < 5


def test_a_table_made_with_a_renamed_builtin_head_resumes_under_its_new_name(
        tmp_path, fake_head, monkeypatch):
    import shutil

    import scanner.heads as heads

    folder = _folder(tmp_path / "in")
    former = tmp_path / "former"
    shutil.copytree(fake_head, former)
    meta = json.loads((former / "head.json").read_text())
    (former / "head.json").write_text(json.dumps({**meta, "name": "former"}))
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(former, workers=0))
    with pytest.raises(ConfigError, match="other settings"):  # not renamed: refused
        scan([folder], out, fake_scan_config(fake_head, workers=0, resume=True))
    monkeypatch.setattr(heads, "RENAMED", {("former", heads.load_head(former).sha256): str(fake_head)})
    other = tmp_path / "other"
    shutil.copytree(fake_head, other)
    (other / "head.json").write_text(json.dumps({**meta, "name": "other"}))
    with pytest.raises(ConfigError, match=rf"former default head, now {meta['name']!r}: add --head"):
        scan([folder], out, fake_scan_config(other, workers=0, resume=True))
    again = scan([folder], out, fake_scan_config(fake_head, workers=0, resume=True))
    assert again.skipped == 4


def test_clip_linear_is_the_former_default_head_byte_for_byte(tmp_path):
    import shutil

    from scanner.heads import RENAMED, builtin_heads, folder_sha256, load_head

    copy = tmp_path / "default"
    shutil.copytree(builtin_heads()["clip-linear"], copy)
    text = (copy / "head.json").read_text()
    for new, old in (('"name": "clip-linear"', '"name": "default"'),
                     ("builtin/clip-linear", "builtin/default"),
                     ('--name clip-linear"', '--name default"')):
        text = text.replace(new, old)
    (copy / "head.json").write_text(text)
    assert RENAMED[("default", folder_sha256(copy))] == "clip-linear"
    assert load_head("clip-linear").thresholds == load_head(copy).thresholds
