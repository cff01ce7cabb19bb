"""The file row: path text that is unique and reversible, and column types that survive pandas."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner.engines.driver import scan
from scanner.output.rows import path_text, text_path
from scanner.testing import fake_scan_config, sine, write_audio

SR = 16000


@pytest.mark.parametrize("name", ["plain.wav", "caf\udce9.wav", "caf\\xe9.wav", "a\\\\b.wav",
                                  "back\\slash \udcff\udcfe.wav", "música 子守唄.wav"])
def test_path_text_is_utf8_and_turns_back_into_the_path(name):
    text = path_text(f"/data/{name}")
    text.encode("utf-8")  # Arrow takes it
    assert text_path(text) == f"/data/{name}"


def test_two_names_that_used_to_collide_get_two_rows_and_resume_knows_both(tmp_path, fake_head):
    folder = tmp_path / "in"
    folder.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.wav")  # a Latin-1 name from an old disk
    literal = "caf\\xe9.wav"  # the characters backslash, x, e, 9
    write_audio(folder / "clip.wav", sine(440, 1.0, SR), SR)
    for name in (latin1, literal):  # soundfile cannot open such a name for writing: copy
        (folder / name).write_bytes((folder / "clip.wav").read_bytes())
    (folder / "clip.wav").unlink()
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(fake_head, workers=0))
    paths = pq.read_table(out).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 2
    assert sorted(Path(text_path(p)).name for p in paths) == sorted([latin1, literal])
    again = scan([folder], out, fake_scan_config(fake_head, workers=0, resume=True))
    assert (again.files, again.skipped) == (0, 2)


def test_integers_stay_integers_in_pandas_and_mtime_is_a_timestamp(tmp_path, fake_head):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "in"
    write_audio(folder / "good.wav", sine(440, 1.0, SR), SR)
    (folder / "bad.wav").write_bytes(b"not audio at all" * 10)
    out = tmp_path / "r.parquet"
    scan([folder], out, fake_scan_config(fake_head, workers=0))
    df = pd.read_parquet(out)
    assert str(df["sample_rate"].dtype) == "Int64" and str(df["n_events"].dtype) == "Int64"
    assert str(df["has_cry"].dtype) == "boolean"
    assert str(df["label"].dtype) == "category"
    assert str(df["mtime"].dtype).startswith("datetime64[ns")
    bad = df[df.path.str.endswith("bad.wav")].iloc[0]
    assert pd.isna(bad["sample_rate"]) and bad["status"] == "error"
    good = df[df.path.str.endswith("good.wav")].iloc[0]
    assert good["mtime"].value == (folder / "good.wav").stat().st_mtime_ns
