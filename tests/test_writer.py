"""Output tables: schema, formats, atomic final table, parts and resume."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from scanner.output.rows import arrow_schema, column_types
from scanner.output.writer import TableSink, format_for, parts_dir, sidecar_path

CLASSES = ("cry", "screaming", "not_screaming")


def _schema():
    return arrow_schema(column_types(CLASSES, ["yamnet"]), {b"scanner": json.dumps({"x": 1}).encode()})


def _row(path, label="cry"):
    row = {name: None for name in column_types(CLASSES, ["yamnet"])}
    row.update(path=path, status="ok", label=label, confidence=0.9, size_bytes=1, mtime=2,
               mean_prob_cry=0.9, mean_prob_screaming=0.05, mean_prob_not_screaming=0.05)
    return row


def test_columns_for_one_and_two_backbones():
    one = column_types(CLASSES, ["yamnet"])
    assert list(one)[:3] == ["path", "status", "error"]
    assert {"mean_prob_cry", "mean_prob_screaming", "mean_prob_not_screaming", "backbone", "head"} <= set(one)
    two = column_types(CLASSES, ["yamnet", "wav2vec2"])
    assert {"yamnet_mean_prob_cry", "wav2vec2_mean_prob_not_screaming", "mean_prob_cry"} <= set(two)


@pytest.mark.parametrize("name,fmt", [("r.parquet", "parquet"), ("r.csv", "csv"),
                                      ("r.PQ", "parquet"), ("r.txt", "parquet")])
def test_format_from_suffix(tmp_path, name, fmt):
    assert format_for(tmp_path / name) == fmt


def test_parts_then_sorted_atomic_final_table(tmp_path):
    out = tmp_path / "r.parquet"
    sink = TableSink(out, _schema())
    sink.write([_row("/b"), _row("/c")])
    sink.write([_row("/a")])
    assert not out.exists() and len(list(parts_dir(out).glob("part-*.parquet"))) == 2
    assert sink.finish() == 3
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == ["/a", "/b", "/c"]
    assert json.loads(table.schema.metadata[b"scanner"]) == {"x": 1}
    assert not parts_dir(out).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


def test_csv_with_metadata_sidecar(tmp_path):
    out = tmp_path / "r.csv"
    sink = TableSink(out, _schema(), fmt="csv")
    sink.write([_row("/a")])
    sink.finish()
    header = out.read_text().splitlines()[0]
    assert header.startswith('"path","status","error"')
    assert json.loads(sidecar_path(out).read_text()) == {"x": 1}


def test_resume_keeps_final_table_and_parts_without_doubles(tmp_path):
    out = tmp_path / "r.parquet"
    first = TableSink(out, _schema())
    first.write([_row("/a")])
    first.finish()
    # A second run is killed after committing one part (no finish).
    second = TableSink(out, _schema(), resume=True)
    assert [r["path"] for r in second.previous_rows()] == ["/a"]
    second.write([_row("/b")])
    # It is resumed: earlier rows come from the final table and the committed part.
    third = TableSink(out, _schema(), resume=True)
    assert sorted(r["path"] for r in third.previous_rows()) == ["/a", "/b"]
    third.write([_row("/c"), _row("/a", label="screaming")])
    third.finish(drop_paths={"/a"})
    table = pq.read_table(out).to_pylist()
    assert [r["path"] for r in table] == ["/a", "/b", "/c"]
    assert table[0]["label"] == "screaming"


def test_torn_part_is_dropped_on_resume(tmp_path):
    out = tmp_path / "r.parquet"
    sink = TableSink(out, _schema())
    sink.write([_row("/a")])
    (parts_dir(out) / "part-000002.parquet").write_bytes(b"PAR1 torn")
    again = TableSink(out, _schema(), resume=True)
    assert [r["path"] for r in again.previous_rows()] == ["/a"]


def test_without_resume_leftover_parts_are_discarded(tmp_path):
    out = tmp_path / "r.parquet"
    TableSink(out, _schema()).write([_row("/old")])
    sink = TableSink(out, _schema())
    sink.write([_row("/new")])
    sink.finish()
    assert pq.read_table(out).column("path").to_pylist() == ["/new"]
