"""Every export format's exact content, from an events table and from a file table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from scanner.errors import ScannerError
from scanner.events.export import (
    EXPORTERS,
    RAVEN_COLUMNS,
    Annotation,
    export,
    file_stems,
    read_annotations,
    select,
)
from scanner.events.segments import event_columns, events_path, summary_columns
from scanner.output.rows import arrow_schema, column_types
from scanner.output.writer import FORMATS, format_for

CLASSES = ("cry", "screaming", "not_screaming")

EVENTS = [
    {"path": "/data/a/day1.wav", "label": "screaming", "start_s": 10.24, "end_s": 15.36,
     "peak_confidence": 0.97, "mean_confidence": 0.81},
    {"path": "/data/a/day1.wav", "label": "cry", "start_s": 2.0, "end_s": 3.5,
     "peak_confidence": 0.62, "mean_confidence": 0.55},
    {"path": "/data/b/day2.flac", "label": "screaming", "start_s": 0.0, "end_s": 1.44,
     "peak_confidence": 0.71, "mean_confidence": 0.66},
]


def _write(path: Path, rows: list[dict], columns: dict[str, str]) -> Path:
    table = pa.Table.from_pylist(rows, schema=arrow_schema(columns))
    FORMATS.get(format_for(path))().write(table, path)
    return path


def _file_rows() -> list[dict]:
    base = {"error": None, "error_kind": None, "sample_rate": 16000, "channels": 1,
            "decoder": "soundfile", "seconds_taken": 0.1, "size_bytes": 1, "mtime_ns": 1,
            "backbone": "yamnet", "head": "default"}
    return [
        {**base, "path": "/data/a/day1.wav", "status": "ok", "duration_s": 25.0,
         "label": "screaming", "confidence": 0.88},
        {**base, "path": "/data/b/day2.flac", "status": "ok", "duration_s": 4.0,
         "label": "cry", "confidence": 0.6},
        {**base, "path": "/data/c/quiet.wav", "status": "ok", "duration_s": 30.0,
         "label": "not_screaming", "confidence": 0.99},
        {**base, "path": "/data/c/broken.wav", "status": "error", "duration_s": None,
         "label": None, "confidence": None, "error": "not audio", "error_kind": "not_audio"},
    ]


def _file_columns() -> dict[str, str]:
    return {**column_types(CLASSES, ["yamnet"]), **summary_columns(CLASSES)}


@pytest.fixture()
def events_table(tmp_path: Path) -> Path:
    return _write(tmp_path / "results.events.parquet", EVENTS, event_columns())


@pytest.fixture()
def file_table_with_events(tmp_path: Path) -> Path:
    out = _write(tmp_path / "results.parquet", _file_rows(), _file_columns())
    _write(events_path(out), EVENTS, event_columns())
    return out


@pytest.fixture()
def file_table_alone(tmp_path: Path) -> Path:
    (tmp_path / "alone").mkdir()
    return _write(tmp_path / "alone" / "results.csv", _file_rows(), _file_columns())


def test_registry_has_every_format():
    assert EXPORTERS.names() == ["audacity", "csv", "json", "raven"]


def test_audacity_label_tracks(events_table, tmp_path):
    result = export(events_table, "audacity", tmp_path / "aud")
    assert sorted(p.name for p in result.paths) == ["day1.txt", "day2.txt"]
    assert (tmp_path / "aud" / "day1.txt").read_text() == (
        "2.000000\t3.500000\tcry\n10.240000\t15.360000\tscreaming\n")
    assert (tmp_path / "aud" / "day2.txt").read_text() == "0.000000\t1.440000\tscreaming\n"
    assert result.n_annotations == 3 and result.source == "events"


def test_raven_selection_tables(events_table, tmp_path):
    export(events_table, "raven", tmp_path / "rv")
    lines = (tmp_path / "rv" / "day1.Table.1.selections.txt").read_text().splitlines()
    assert lines[0].split("\t") == list(RAVEN_COLUMNS)
    assert lines[0].startswith("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\t"
                               "Low Freq (Hz)\tHigh Freq (Hz)\tAnnotation")
    assert lines[1].split("\t") == ["1", "Spectrogram 1", "1", "2.000000", "3.500000", "0.0",
                                    "8000.0", "cry", "0.6200", "/data/a/day1.wav", "2.000000"]
    assert lines[2].split("\t")[:8] == ["2", "Spectrogram 1", "1", "10.240000", "15.360000",
                                        "0.0", "8000.0", "screaming"]
    assert len(lines) == 3


def test_json_lines(events_table, tmp_path):
    (path,) = export(events_table, "json", tmp_path / "js").paths
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == sorted(EVENTS, key=lambda e: (e["path"], e["start_s"]))


def test_csv(events_table, tmp_path):
    (path,) = export(events_table, "csv", tmp_path / "cs").paths
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "start_s", "end_s", "peak_confidence",
                             "mean_confidence"]
    assert [(r["path"], r["label"], float(r["start_s"]), float(r["end_s"]),
             float(r["peak_confidence"])) for r in rows] == [
        (e["path"], e["label"], e["start_s"], e["end_s"], e["peak_confidence"])
        for e in sorted(EVENTS, key=lambda e: (e["path"], e["start_s"]))]


def test_filters_min_confidence_and_label(events_table, tmp_path):
    result = export(events_table, "json", tmp_path / "f1", min_confidence=0.7)
    assert [json.loads(x)["peak_confidence"] for x in result.paths[0].read_text().splitlines()] \
        == [0.97, 0.71]
    result = export(events_table, "audacity", tmp_path / "f2", labels=["cry"])
    assert [p.name for p in result.paths] == ["day1.txt"]
    assert result.paths[0].read_text() == "2.000000\t3.500000\tcry\n"


def test_file_table_uses_the_events_beside_it(file_table_with_events, tmp_path):
    annotations, source, table = read_annotations(file_table_with_events)
    assert source == "events" and table == events_path(file_table_with_events)
    assert len(annotations) == 3
    result = export(file_table_with_events, "audacity")
    assert result.out_dir == file_table_with_events.with_name("results-audacity")
    assert "screaming" in (result.out_dir / "day1.txt").read_text()


def test_file_table_without_events_gives_whole_file_annotations(file_table_alone, tmp_path):
    result = export(file_table_alone, "audacity", tmp_path / "whole")
    assert result.source == "files"
    assert sorted(p.name for p in result.paths) == ["day1.txt", "day2.txt"]  # no background
    assert (tmp_path / "whole" / "day1.txt").read_text() == "0.000000\t25.000000\tscreaming\n"
    everything = export(file_table_alone, "csv", tmp_path / "all",
                        labels=["not_screaming", "cry"])
    rows = list(csv.DictReader(everything.paths[0].open()))
    assert [(r["path"], r["label"]) for r in rows] == [("/data/b/day2.flac", "cry"),
                                                      ("/data/c/quiet.wav", "not_screaming")]


def test_clashing_stems_get_distinct_files(tmp_path):
    stems = file_stems(["/x/a.wav", "/y/a.wav", "/z/b.wav"])
    assert stems["/z/b.wav"] == "b"
    assert stems["/x/a.wav"] != stems["/y/a.wav"] and stems["/x/a.wav"].startswith("a-")
    anns = [Annotation("/x/a.wav", "cry", 0, 1, 0.9), Annotation("/y/a.wav", "cry", 2, 3, 0.9)]
    paths = EXPORTERS.get("audacity")().write(select(anns), tmp_path)
    assert len({p.name for p in paths}) == 2


def test_rejects_other_tables(tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ScannerError, match="neither"):
        export(bad, "json", tmp_path / "o")


def test_cli_export(file_table_with_events, tmp_path):
    from scanner.cli.export import export as export_cmd

    out = tmp_path / "cli"
    res = CliRunner().invoke(export_cmd, [str(file_table_with_events), "--format", "audacity",
                                          "-o", str(out), "--label", "screaming"],
                             obj={"verbosity": 0})
    assert res.exit_code == 0, res.output
    assert (out / "day1.txt").read_text() == "10.240000\t15.360000\tscreaming\n"
    assert "2 annotations" in res.output
    bad = CliRunner().invoke(export_cmd, [str(file_table_with_events), "--format", "midi"])
    assert bad.exit_code == 2
