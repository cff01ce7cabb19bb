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


# -- streaming final tables ------------------------------------------------------------------

def _event_schema():
    from scanner.output.rows import arrow_schema

    return arrow_schema({"path": "string", "start_s": "float64", "run": "int64"},
                        {b"scanner": b"{}"})


def _expected(generations, drop=frozenset()):
    """The final table as the rules say, computed the plain way: each path's rows from the
    newest generation that has it (the earlier table's rows minus ``drop``), sorted by path,
    a path's rows in their order."""
    newest = {}
    for g, rows in enumerate(generations):
        for r in rows:
            if g == 0 and r["path"] in drop:
                continue
            newest[r["path"]] = g
    keep = [r for g, rows in enumerate(generations) for r in rows
            if newest.get(r["path"]) == g and not (g == 0 and r["path"] in drop)]
    return sorted(keep, key=lambda r: r["path"])  # stable


def _event_rows(rng, paths, run):
    rows = []
    for p in paths:
        for k in range(int(rng.integers(1, 4))):
            rows.append({"path": p, "start_s": float(k), "run": run})
    return rows


def test_many_parts_stream_into_small_row_groups_in_order(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    out = tmp_path / "r.events.parquet"
    sink = TableSink(out, _event_schema(), row_group_rows=50, read_rows=16)
    paths = [f"/d{i % 7}/f{i:04d}.wav" for i in range(600)]
    parts = [_event_rows(rng, rng.permutation(paths[i:i + 40]).tolist(), 1)
             for i in range(0, 600, 40)]
    for rows in parts:
        sink.write(rows)
    n = sink.finish()
    table = pq.read_table(out)
    assert table.to_pylist() == _expected([[]] + parts) and n == table.num_rows
    assert pq.ParquetFile(out).num_row_groups == -(-n // 50)
    assert {pq.ParquetFile(out).metadata.row_group(i).num_rows for i in range(3)} == {50}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_resume_merge_newest_wins_and_drop_paths(tmp_path, fmt):
    """An earlier table, parts left by an interrupted resume, and this run's parts, all
    overlapping: each path's rows come from the newest, earlier rows of drop_paths go."""
    import numpy as np

    rng = np.random.default_rng(1)
    out = tmp_path / f"r.events.{fmt}"
    paths = [f"/x/{i:03d}.wav" for i in range(300)]
    first_parts = [_event_rows(rng, paths[i:i + 40:2], 0) for i in range(0, 300, 40)]
    first = TableSink(out, _event_schema(), fmt=fmt, read_rows=7)
    for rows in first_parts:  # a commit holds all of a file's rows
        first.write(rows)
    first.finish()
    first_rows = [r for rows in first_parts for r in rows]
    # an interrupted resume: two parts committed, no final table
    second_parts = [_event_rows(rng, rng.choice(paths, 30, replace=False).tolist(), 2)
                    for _ in range(2)]
    second = TableSink(out, _event_schema(), fmt=fmt, resume=True, read_rows=7)
    for rows in second_parts:
        second.write(rows)
    third_parts = [_event_rows(rng, rng.choice(paths, 30, replace=False).tolist(), 3)
                   for _ in range(3)]
    third = TableSink(out, _event_schema(), fmt=fmt, resume=True, read_rows=7,
                      row_group_rows=33)
    for rows in third_parts:
        third.write(rows)
    drop = frozenset(paths[:40:2])  # redone files that made no rows this time
    third.finish(drop_paths=drop)
    got = FORMATS_READ[fmt](out)
    want = _expected([first_rows] + second_parts + third_parts)
    # drop_paths removes the earlier table's rows and the interrupted run's alike
    want = [r for r in want if not (r["path"] in drop and r["run"] < 3)]
    assert got == want
    assert not parts_dir(out).exists()


def _read_csv_rows(path):
    import pyarrow.csv as pacsv

    types = {"path": pa_type("string"), "start_s": pa_type("float64"), "run": pa_type("int64")}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types=types)).to_pylist()


def pa_type(name):
    import pyarrow as pa

    return {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64()}[name]


FORMATS_READ = {"parquet": lambda p: pq.read_table(p).to_pylist(), "csv": _read_csv_rows}


def test_unsorted_earlier_table_is_sorted_on_disk(tmp_path):
    """A table written by an older version (not sorted) still merges right."""
    import pyarrow as pa

    out = tmp_path / "r.events.parquet"
    old = [{"path": f"/p{i % 13:02d}", "start_s": float(i), "run": 0} for i in range(200)]
    pq.write_table(pa.Table.from_pylist(old, schema=_event_schema()), out, row_group_size=20)
    sink = TableSink(out, _event_schema(), resume=True, read_rows=8)
    new = [{"path": "/p03", "start_s": 0.5, "run": 1}, {"path": "/p99", "start_s": 0.0, "run": 1}]
    sink.write(new)
    sink.finish()
    assert pq.read_table(out).to_pylist() == _expected([old, new])


def test_finish_memory_is_bounded_by_batches_not_the_table(tmp_path):
    """Finishing a ~30 MB table of 80 parts, read 256 rows at a time, holds a few MB."""
    import pyarrow as pa

    out = tmp_path / "r.events.parquet"
    sink = TableSink(out, _event_schema(), row_group_rows=2_000, read_rows=256)
    pad = "x" * 180
    n_rows = 0
    for part in range(80):
        rows = [{"path": f"/{pad}/{part:03d}/{i:05d}.wav", "start_s": 0.0, "run": part}
                for i in range(2_000)]
        sink.write(rows)
        n_rows += len(rows)
    total = pq.ParquetFile(next(parts_dir(out).glob("part-*.parquet"))).metadata.row_group(
        0).total_byte_size * 80  # uncompressed size of all rows, Parquet's own figure
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        assert sink.finish() == n_rows
    finally:
        pa.set_memory_pool(previous)
    assert pool.max_memory() < total / 4, (pool.max_memory(), total)
    assert pq.ParquetFile(out).metadata.num_rows == n_rows
    paths = pq.read_table(out, columns=["path"]).column("path").to_pylist()
    assert paths == sorted(paths)


def test_previous_keys_read_only_what_resume_needs(tmp_path):
    out = tmp_path / "r.parquet"
    sink = TableSink(out, _schema())
    sink.write([_row(f"/f{i}") for i in range(10)])
    sink.finish()
    again = TableSink(out, _schema(), resume=True, read_rows=3)
    keys = again.previous_keys()
    assert sorted(keys) == [f"/f{i}" for i in range(10)]
    assert keys["/f3"] == (1, 2, None)
