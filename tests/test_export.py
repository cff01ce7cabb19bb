"""Every export format, read back with an independent reader (crowsetta, csv, json, pandas)."""

from __future__ import annotations

import csv
import json
import logging
from datetime import datetime
from pathlib import Path

import crowsetta
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from scanner.errors import ScannerError
from scanner.events.export import EXPORTERS, Layout, export, read_annotations, resolve_format
from scanner.events.formats import RAVEN_COLUMNS
from scanner.output.writer import FORMATS, format_for

ROOT = "/data"
EVENTS = [
    {"path": "/data/a/day1.wav", "label": "screaming", "start_s": 10.24, "end_s": 15.36,
     "peak_confidence": 0.97, "mean_confidence": 0.81},
    {"path": "/data/a/day1.wav", "label": "cry", "start_s": 2.0, "end_s": 3.5,
     "peak_confidence": 0.62, "mean_confidence": 0.55},
    {"path": "/data/b/c/day2.flac", "label": "screaming", "start_s": 0.0, "end_s": 1.44,
     "peak_confidence": 0.71, "mean_confidence": 0.66},
    {"path": "/data/b/c/day2.flac", "label": "not_screaming", "start_s": 2.0, "end_s": 4.0,
     "peak_confidence": 0.99, "mean_confidence": 0.9},
]
FILES = [
    {"path": "/data/a/day1.wav", "status": "ok", "duration_s": 25.0, "sample_rate": 44100,
     "label": "screaming", "confidence": 0.88,
     "recorded_at": datetime(2024, 5, 1, 3, 4, 5)},
    {"path": "/data/b/c/day2.flac", "status": "ok", "duration_s": 4.0, "sample_rate": 8000,
     "label": "cry", "confidence": 0.6, "recorded_at": None},
    {"path": "/data/c/quiet.wav", "status": "ok", "duration_s": 30.0, "sample_rate": 16000,
     "label": "not_screaming", "confidence": 0.99, "recorded_at": None},
    {"path": "/data/c/broken.wav", "status": "error", "duration_s": None, "sample_rate": None,
     "label": None, "confidence": None, "recorded_at": None},
]
META = {b"scanner": json.dumps({"classes": ["cry", "screaming", "not_screaming"]}).encode()}


def _write(path: Path, rows: list[dict]) -> Path:
    table = pa.Table.from_pylist(rows).replace_schema_metadata(META)
    FORMATS.get(format_for(path))().write(table, path)
    return path


@pytest.fixture()
def scan(tmp_path: Path) -> Path:
    """A file table with its events table beside it, as 'scanner scan --segments' writes."""
    out = _write(tmp_path / "results.parquet", FILES)
    _write(tmp_path / "results.events.parquet", EVENTS)
    return out


def _sorted(events: list[dict], *, background: bool = False) -> list[dict]:
    kept = [e for e in events if background or e["label"] != "not_screaming"]
    return sorted(kept, key=lambda e: (e["path"], e["start_s"]))


def test_registry_and_names():
    assert EXPORTERS.names() == ["audacity", "csv", "jsonl", "kaleidoscope", "raven"]
    assert resolve_format("Audacity") == "audacity" and resolve_format("RAVEN") == "raven"
    with pytest.raises(KeyError):
        resolve_format("midi")


def test_audacity_mirrors_the_tree_and_reads_in_crowsetta(scan, tmp_path):
    result = export(scan, "audacity", tmp_path / "aud")
    out = tmp_path / "aud"
    assert (out / "a" / "day1.txt").is_file() and (out / "b" / "c" / "day2.txt").is_file()
    seq = crowsetta.formats.seq.AudSeq.from_file(out / "a" / "day1.txt")
    assert list(seq.start_times) == [2.0, 10.24] and list(seq.end_times) == [3.5, 15.36]
    assert list(seq.labels) == ["cry (0.62)", "screaming (0.97)"]
    index = pd.read_csv(out / "index.csv")
    assert index.to_dict("records") == [
        {"audio_path": "/data/a/day1.wav", "label_file": "a/day1.txt", "annotations": 2},
        {"audio_path": "/data/b/c/day2.flac", "label_file": "b/c/day2.txt", "annotations": 1}]
    assert result.n_annotations == 3 and result.source == "events"


def test_raven_per_file_and_combined_tables_read_in_crowsetta(scan, tmp_path):
    export(scan, "raven", tmp_path / "rv")
    day1 = tmp_path / "rv" / "a" / "day1.Table.1.selections.txt"
    raven = crowsetta.formats.bbox.Raven.from_file(day1)
    assert list(raven.df["begin_time_s"]) == [2.0, 10.24]
    assert list(raven.df["high_freq_hz"]) == [22050.0, 22050.0]  # 44.1 kHz / 2
    assert list(raven.df["annotation"]) == ["cry", "screaming"]
    df = pd.read_csv(day1, sep="\t")
    assert list(df.columns) == list(RAVEN_COLUMNS)
    assert list(df["Begin Path"]) == ["/data/a/day1.wav"] * 2
    assert list(df["Confidence"]) == [0.62, 0.97]
    day2 = crowsetta.formats.bbox.Raven.from_file(
        tmp_path / "rv" / "b" / "c" / "day2.Table.1.selections.txt")
    assert list(day2.df["high_freq_hz"]) == [4000.0]  # 8 kHz / 2
    combined = pd.read_csv(tmp_path / "rv" / "combined.selections.txt", sep="\t")
    crowsetta.formats.bbox.Raven.from_file(tmp_path / "rv" / "combined.selections.txt")
    assert list(combined["Selection"]) == [1, 2, 3]
    assert list(combined["Begin Path"]) == ["/data/a/day1.wav"] * 2 + ["/data/b/c/day2.flac"]
    assert list(combined["File Offset (s)"]) == [2.0, 10.24, 0.0]
    # Begin Time runs on across files: day2 starts after day1's 25 s
    assert list(combined["Begin Time (s)"]) == [2.0, 10.24, 25.0]
    assert list(combined["End Time (s)"]) == [3.5, 15.36, 26.44]


def test_raven_escapes_tabs_and_newlines_in_paths(tmp_path):
    evil = "/data/x\ty\nz.wav"
    events = _write(tmp_path / "e.events.parquet", [{**EVENTS[0], "path": evil}])
    result = export(events, "raven", tmp_path / "rv")
    for path in result.paths:
        if path.name.endswith(".txt"):
            rows = list(csv.reader(path.open(newline=""), delimiter="\t"))
            assert all(len(r) == len(RAVEN_COLUMNS) for r in rows), path
    table = pd.read_csv(tmp_path / "rv" / "combined.selections.txt", sep="\t")
    assert table["Begin Path"].tolist() == ["/data/x\\ty\\nz.wav"]


def test_jsonl_and_the_json_alias(scan, tmp_path, caplog):
    (path,) = [p for p in export(scan, "jsonl", tmp_path / "js").paths if p.suffix == ".jsonl"]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [{k: r[k] for k in EVENTS[0]} for r in records] == _sorted(EVENTS)
    # recorded_at of day1 + the event's offset; day2 has no known start
    assert [r["start_time"] for r in records] == ["2024-05-01T03:04:07", "2024-05-01T03:04:15.240000",
                                                  None]
    with caplog.at_level(logging.WARNING):
        old = export(scan, "json", tmp_path / "old")
    assert "deprecated" in caplog.text and "jsonl" in caplog.text
    assert (tmp_path / "old" / "events.jsonl").read_text() == path.read_text()
    assert old.out_dir == tmp_path / "old"


def test_csv_reads_back_and_neutralises_formulas(tmp_path):
    rows = [{**EVENTS[0], "path": "/data/r\rn.wav"}, {**EVENTS[1], "path": "=cmd|' /C calc'!A0"},
            {**EVENTS[2], "label": "+cry"}]
    events = _write(tmp_path / "e.events.parquet", rows)
    (path,) = [p for p in export(events, "csv", tmp_path / "cs", labels=["screaming", "cry", "+cry"]
                                 ).paths if p.suffix == ".csv"]
    with path.open(newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == 3  # the \r did not split a row
    assert {r["path"] for r in back} == {"/data/r\rn.wav", "'=cmd|' /C calc'!A0",
                                         "/data/b/c/day2.flac"}
    assert "'+cry" in {r["label"] for r in back}
    assert all(not r[k].startswith(("=", "+", "-", "@")) for r in back for k in r)


def test_kaleidoscope(scan, tmp_path):
    (path,) = [p for p in export(scan, "kaleidoscope", tmp_path / "k").paths
               if p.name == "kaleidoscope.csv"]
    df = pd.read_csv(path, keep_default_na=False)
    assert list(df.columns[:6]) == ["INDIR", "FOLDER", "IN FILE", "CHANNEL", "OFFSET", "DURATION"]
    assert df[["INDIR", "FOLDER", "IN FILE"]].values.tolist() == [
        [ROOT, "a", "day1.wav"], [ROOT, "a", "day1.wav"], [ROOT, "b/c", "day2.flac"]]
    assert df["OFFSET"].tolist() == [2.0, 10.24, 0.0]
    assert df["DURATION"].tolist() == [1.5, 5.12, 1.44]
    assert df["AUTO ID*"].tolist() == ["cry", "screaming", "screaming"]
    assert df["DATE"].tolist() == ["2024-05-01", "2024-05-01", ""]
    assert df["TIME"].tolist() == ["03:04:05", "03:04:05", ""]


def test_filters_and_a_label_that_matches_nothing(scan, tmp_path, caplog):
    result = export(scan, "jsonl", tmp_path / "f1", min_confidence=0.7)
    assert [json.loads(x)["peak_confidence"] for x in
            (tmp_path / "f1" / "events.jsonl").read_text().splitlines()] == [0.97, 0.71]
    assert result.warnings == []
    with caplog.at_level(logging.WARNING):
        empty = export(scan, "audacity", tmp_path / "f2", labels=["scream"])
    assert empty.n_annotations == 0
    assert len(empty.warnings) == 1 and "matches no class" in empty.warnings[0]
    assert "'screaming'" in empty.warnings[0] and "matches no class" in caplog.text
    none = export(scan, "audacity", tmp_path / "f3", labels=["cry"], min_confidence=0.9)
    assert none.n_annotations == 0 and "min-confidence 0.9" in none.warnings[0]


def test_file_table_without_events_gives_whole_file_annotations(tmp_path):
    (tmp_path / "alone").mkdir()
    table = _write(tmp_path / "alone" / "results.csv",
                   [{k: v for k, v in r.items() if k != "recorded_at"} for r in FILES])
    annotations, source, _ = read_annotations(table)
    assert source == "files" and {a.path for a in annotations} == {
        "/data/a/day1.wav", "/data/b/c/day2.flac", "/data/c/quiet.wav"}
    export(table, "audacity", tmp_path / "whole")
    assert (tmp_path / "whole" / "a" / "day1.txt").read_text() == \
        "0.000000\t25.000000\tscreaming (0.88)\n"
    assert not (tmp_path / "whole" / "c").exists()  # background only


def test_clashing_stems_and_long_names(tmp_path):
    long_stem = "é" * 125  # 250 bytes: with ".wav" a legal 254-byte name
    rows = [{**EVENTS[0], "path": "/d/x/a.wav"}, {**EVENTS[0], "path": "/d/x/a.flac"},
            {**EVENTS[0], "path": "/d/y/a.wav"}, {**EVENTS[0], "path": f"/d/y/{long_stem}.wav"}]
    events = _write(tmp_path / "e.events.parquet", rows)
    result = export(events, "raven", tmp_path / "rv")
    names = {p.relative_to(tmp_path / "rv").as_posix() for p in result.paths}
    assert {"x/a.wav.Table.1.selections.txt", "x/a.flac.Table.1.selections.txt",
            "y/a.Table.1.selections.txt"} <= names
    long_files = [p for p in result.paths if p.name.startswith("é")]
    assert len(long_files) == 1 and len(long_files[0].name.encode()) <= 255
    index = pd.read_csv(tmp_path / "rv" / "index.csv")
    assert len(index) == 4 and index["label_file"].is_unique


def test_never_overwrites_a_file_it_did_not_write(scan, tmp_path):
    out = tmp_path / "aud"
    (out / "a").mkdir(parents=True)
    (out / "a" / "day1.txt").write_text("my own labels\n")
    with pytest.raises(ScannerError, match="did not write"):
        export(scan, "audacity", out)
    with pytest.raises(ScannerError, match="did not write"):
        export(scan, "audacity", out, overwrite=True)
    assert (out / "a" / "day1.txt").read_text() == "my own labels\n"
    assert not (out / "b").exists()  # refused before writing anything


def test_a_second_export_needs_overwrite_and_edits_are_kept(scan, tmp_path):
    out = tmp_path / "aud"
    export(scan, "audacity", out)
    first = (out / "a" / "day1.txt").read_text()
    with pytest.raises(ScannerError, match="--overwrite"):
        export(scan, "audacity", out)
    export(scan, "audacity", out, overwrite=True, labels=["screaming"])
    assert (out / "a" / "day1.txt").read_text() != first
    (out / "a" / "day1.txt").write_text("corrected in Audacity\n")
    with pytest.raises(ScannerError, match="changed"):
        export(scan, "audacity", out, overwrite=True)
    assert (out / "a" / "day1.txt").read_text() == "corrected in Audacity\n"


def test_overwrite_removes_files_the_new_export_no_longer_writes(scan, tmp_path):
    out = tmp_path / "aud"
    export(scan, "audacity", out)
    export(scan, "audacity", out, overwrite=True, labels=["cry"])
    assert (out / "a" / "day1.txt").is_file() and not (out / "b" / "c" / "day2.txt").exists()


def test_beside_audio(tmp_path):
    audio = tmp_path / "rec" / "site1"
    audio.mkdir(parents=True)
    (audio / "n1.wav").write_bytes(b"")
    rows = [{**EVENTS[0], "path": str(audio / "n1.wav")}]
    events = _write(tmp_path / "r.events.parquet", rows)
    result = export(events, "raven", tmp_path / "rv", beside_audio=True)
    table = audio / "n1.Table.1.selections.txt"
    assert table in result.paths and table.is_file()
    assert crowsetta.formats.bbox.Raven.from_file(table).df["begin_time_s"].tolist() == [10.24]
    index = pd.read_csv(tmp_path / "rv" / "index.csv")
    assert index["label_file"].tolist() == [str(table)]
    with pytest.raises(ScannerError, match="--overwrite"):
        export(events, "raven", tmp_path / "rv", beside_audio=True)
    export(events, "raven", tmp_path / "rv", beside_audio=True, overwrite=True)
    with pytest.raises(ScannerError, match="per-file format"):
        export(events, "csv", tmp_path / "x", beside_audio=True)


def test_layout_never_leaves_the_export_folder(tmp_path):
    layout = Layout(tmp_path / "out", roots=("/data",))
    assert layout.relative("/data/a/b.wav").as_posix() == "a/b.wav"
    assert layout.relative("../../etc/x.wav").as_posix() == "_parent_/_parent_/etc/x.wav"
    target = layout.targets(["../../etc/passwd.wav"], ".txt")["../../etc/passwd.wav"]
    assert tmp_path / "out" in target.parents


def test_rejects_other_tables(tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ScannerError, match="neither"):
        export(bad, "jsonl", tmp_path / "o")


def test_cli_export(scan, tmp_path, caplog):
    from scanner.cli.export import export as export_cmd

    out = tmp_path / "cli"
    res = CliRunner().invoke(export_cmd, [str(scan), "--format", "Audacity", "-o", str(out),
                                          "--label", "screaming"], obj={"verbosity": 0})
    assert res.exit_code == 0, res.output
    assert (out / "a" / "day1.txt").read_text() == "10.240000\t15.360000\tscreaming (0.97)\n"
    assert "2 annotations" in res.output
    again = CliRunner().invoke(export_cmd, [str(scan), "--format", "audacity", "-o", str(out)])
    assert again.exit_code == 3 and "--overwrite" in caplog.text
    assert "Traceback" not in again.output + caplog.text
    bad = CliRunner().invoke(export_cmd, [str(scan), "--format", "midi"])
    assert bad.exit_code == 2


def test_a_255_byte_file_name_exports(tmp_path):
    name = "n" * 251 + ".wav"  # the longest legal name
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / name).write_bytes(b"")
    events = _write(tmp_path / "e.events.parquet",
                    [{**EVENTS[0], "path": str(audio / name)}] +
                    [{**EVENTS[0], "path": str(audio / f"f{i}.wav")} for i in range(20)])
    aud = export(events, "audacity", tmp_path / "aud")
    assert (tmp_path / "aud" / ("n" * 251 + ".txt")).is_file() and len(aud.paths) == 22
    raven = export(events, "raven", tmp_path / "rv")
    assert len(raven.paths) == 23  # 21 tables, the combined one and the index
    assert not list((tmp_path / "aud").glob(".scanner-*.tmp"))


def test_dictionary_columns_and_a_csv_file_table(tmp_path):
    files = pa.Table.from_pylist(FILES)
    files = files.set_column(files.schema.get_field_index("label"), "label",
                             files.column("label").dictionary_encode())
    files = files.set_column(files.schema.get_field_index("status"), "status",
                             files.column("status").dictionary_encode())
    FORMATS.get("parquet")().write(files.replace_schema_metadata(META), tmp_path / "r.parquet")
    events = pa.Table.from_pylist(EVENTS)
    events = events.set_column(1, "label", events.column("label").dictionary_encode())
    FORMATS.get("parquet")().write(events, tmp_path / "r.events.parquet")
    result = export(tmp_path / "r.parquet", "kaleidoscope", tmp_path / "k")
    assert result.n_annotations == 3
    # a CSV file table (timestamps read back as text or timestamps) gives the same wall clock
    _write(tmp_path / "c.csv", FILES)
    _write(tmp_path / "c.events.csv", EVENTS)
    jl = export(tmp_path / "c.csv", "jsonl", tmp_path / "j")
    first = json.loads((tmp_path / "j" / "events.jsonl").read_text().splitlines()[0])
    assert first["start_time"] == "2024-05-01T03:04:07" and jl.n_annotations == 3


def test_roots_recorded_as_typed_are_anchored_in_the_paths(tmp_path):
    rows = [{**EVENTS[0], "path": "/home/me/rec/site1/a.wav"},
            {**EVENTS[0], "path": "/home/me/rec/site2/deep/b.wav"}]
    table = pa.Table.from_pylist(rows).replace_schema_metadata(
        {b"scanner": json.dumps({"roots": ["rec"], "classes": ["screaming"]}).encode()})
    FORMATS.get("parquet")().write(table, tmp_path / "r.events.parquet")
    export(tmp_path / "r.events.parquet", "audacity", tmp_path / "aud")
    assert (tmp_path / "aud" / "site1" / "a.txt").is_file()
    assert (tmp_path / "aud" / "site2" / "deep" / "b.txt").is_file()
    # a recorded root that holds none of the files: the deepest common folder instead
    table = table.replace_schema_metadata({b"scanner": json.dumps({"roots": ["elsewhere"]}).encode()})
    FORMATS.get("parquet")().write(table, tmp_path / "s.events.parquet")
    export(tmp_path / "s.events.parquet", "audacity", tmp_path / "aud2")
    assert (tmp_path / "aud2" / "site1" / "a.txt").is_file()
