"""Results tables: committed in parts as the scan goes, then one atomic final table.

Rows are committed every batch as Parquet part files in a hidden folder beside the
output (``.results.parquet.parts/``), each written to a temporary name and renamed, so a
kill loses at most the batch in hand. ``finish`` merges the parts (and, with ``resume``,
the rows of an earlier run) into the final table, written to a temporary file and renamed
over the target: a crash never leaves a half-written table at the target path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scanner.registry import Registry

log = logging.getLogger(__name__)


class TableFormat(ABC):
    """How a whole table is written to and read from one file."""

    suffixes: tuple[str, ...]
    keeps_metadata: bool = True

    @abstractmethod
    def write(self, table: Any, path: Path) -> None: ...

    @abstractmethod
    def read(self, path: Path) -> Any: ...


FORMATS: Registry[type[TableFormat]] = Registry("output format")


@FORMATS.register("parquet")
class ParquetFormat(TableFormat):
    suffixes = (".parquet", ".pq")

    def write(self, table: Any, path: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=10_000)

    def read(self, path: Path) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(path)


@FORMATS.register("csv")
class CsvFormat(TableFormat):
    suffixes = (".csv",)
    keeps_metadata = False  # CSV has no place for it: it goes to a sidecar file

    def write(self, table: Any, path: Path) -> None:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)

    def read(self, path: Path) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)


def sidecar_path(path: Path) -> Path:
    """Where a CSV table's metadata goes (``results.csv`` -> ``results.csv.meta.json``)."""
    return path.with_name(path.name + ".meta.json")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def format_for(path: Path, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the file suffix (default parquet)."""
    if fmt:
        FORMATS.get(fmt)
        return fmt
    for name in FORMATS:
        if path.suffix.lower() in FORMATS.get(name).suffixes:
            return name
    return "parquet"


def _newest_rows(tables: Sequence[Any], key: str) -> Any:
    """Concatenates ``tables`` (oldest first), keeping each ``key``'s rows from the last table
    that has it.

    A run commits all of a file's rows (its row, its segments) in one part, so a path found in
    a later table was redone there (a retried error or a changed file in a ``--resume`` run
    that was itself interrupted, or a part committed twice on Ctrl-C): its earlier rows are
    superseded, not kept beside the new ones.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.concat_tables(tables)
    if key not in table.column_names or len(tables) < 2:
        return table
    generation = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    codes = pc.dictionary_encode(table.column(key).combine_chunks()).indices.to_numpy(
        zero_copy_only=False)
    newest = np.full(codes.max(initial=-1) + 1, -1)
    np.maximum.at(newest, codes, generation)
    return table.filter(pa.array(generation == newest[codes]))


def parts_dir(out: Path) -> Path:
    """The hidden folder of committed parts for output ``out``."""
    return out.with_name(f".{out.name}.parts")


class TableSink:
    """Commits rows in parts and writes the final table atomically.

    Args:
        out: The final table's path.
        schema: A pyarrow schema; the final table's metadata comes from it.
        fmt: Registered format name (``parquet``/``csv``).
        resume: Keep rows of an earlier run (final table and parts) and add to them;
            otherwise leftovers of an earlier run are discarded.
        sort_by: Column the final table is sorted by (stable), or None to keep order.
    """

    def __init__(self, out: Path, schema: Any, *, fmt: str = "parquet", resume: bool = False,
                 sort_by: str | None = "path", committed: set[int] | None = None) -> None:
        self.out = Path(out)
        self.schema = schema
        self.format = FORMATS.get(fmt)()
        self.sort_by = sort_by
        self.parts = parts_dir(self.out)
        self._previous: list[Any] = []
        self._resumed_parts: set[str] = set()
        if resume:
            if committed is not None:
                self._drop_uncommitted(committed)
            self._previous = self._read_previous()
        elif self.parts.exists():
            shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        # after the highest number kept: a count reuses a dropped part's number and overwrites
        # a later part
        self._n_parts = max(self.committed_parts(), default=0)

    def committed_parts(self) -> set[int]:
        """Numbers of the parts committed so far (kept for ``--resume``)."""
        return {int(p.stem.rsplit("-", 1)[1]) for p in self.parts.glob("part-*.parquet")} \
            if self.parts.is_dir() else set()

    @property
    def last_part(self) -> int:
        return self._n_parts

    def _drop_uncommitted(self, committed: set[int]) -> None:
        """A table beside the file table: its parts whose commit never reached the file table
        (a crash or a full disk between the two) are dropped, so their files are redone whole."""
        for number in self.committed_parts() - committed:
            log.info("dropping %s part %d: its commit did not complete", self.out.name, number)
            (self.parts / f"part-{number:06d}.parquet").unlink(missing_ok=True)

    def _read_previous(self) -> list[Any]:
        import pyarrow.parquet as pq

        tables = []
        if self.out.exists():
            try:
                tables.append(self._conform(self.format.read(self.out)))
            except Exception as e:  # noqa: BLE001 - a damaged table is reported, not fatal
                log.warning("cannot read earlier results %s (%s); starting afresh", self.out, e)
        for part in sorted(self.parts.glob("part-*.parquet")) if self.parts.exists() else []:
            try:
                tables.append(self._conform(pq.read_table(part)))
                self._resumed_parts.add(part.name)
            except Exception as e:  # noqa: BLE001 - a torn part is dropped and redone
                log.warning("dropping unreadable part %s (%s)", part, e)
                part.unlink()
        return tables

    def _conform(self, table: Any) -> Any:
        """Casts an earlier table to this run's schema (CSV reads infer their own types)."""
        import pyarrow as pa

        cols = []
        for field in self.schema:
            if field.name in table.column_names:
                cols.append(table.column(field.name).cast(field.type))
            else:
                cols.append(pa.nulls(table.num_rows, field.type))
        return pa.Table.from_arrays(cols, schema=self.schema)

    def previous_rows(self) -> list[dict[str, Any]]:
        """Rows of the run being resumed (final table and committed parts)."""
        return [row for t in self._previous for row in t.to_pylist()]

    def previous_keys(self) -> dict[str, tuple[int, int, str | None]]:
        """By path, each earlier row's size, mtime (ns) and error kind (None for ok rows);
        read column-wise, so resuming a large table is quick."""
        import pyarrow as pa
        import pyarrow.compute as pc

        out: dict[str, tuple[int, int, str | None]] = {}
        for t in self._previous:
            kinds = pc.if_else(pc.equal(t.column("status"), "error"), t.column("error_kind"),
                               pa.scalar(None, pa.string())).to_pylist()
            mtimes = t.column("mtime").cast(pa.int64()).to_pylist()
            for path, size, mtime, kind in zip(t.column("path").to_pylist(),
                                               t.column("size_bytes").to_pylist(), mtimes, kinds,
                                               strict=True):
                out[path] = (size, mtime, kind)
        return out

    def write(self, rows: Sequence[dict[str, Any]], *, number: int | None = None) -> None:
        """Commits ``rows`` as one part file (atomic: temporary name, then rename).

        Args:
            number: The commit's number, shared by every table of one commit (None: the
                next). A commit with no rows writes no part.
        """
        self._n_parts = number if number is not None else self._n_parts + 1
        if not rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(list(rows), schema=self.schema)
        final = self.parts / f"part-{self._n_parts:06d}.parquet"
        tmp = self.parts / f".tmp-{self._n_parts:06d}.parquet"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def finish(self, drop_paths: Iterable[str] = ()) -> int:
        """Writes the final table from the earlier run's rows and every part; returns its rows.

        Args:
            drop_paths: Paths whose earlier rows are superseded by a row of this run.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        drop = set(drop_paths)
        tables = []
        for t in self._previous:
            if drop:
                t = t.filter(pc.invert(pc.is_in(t.column("path"), pa.array(sorted(drop)))))
            tables.append(t)
        tables += [pq.read_table(part) for part in sorted(self.parts.glob("part-*.parquet"))
                   if part.name not in self._resumed_parts]
        table = _newest_rows(tables, "path") if tables else self.schema.empty_table()
        table = table.replace_schema_metadata(self.schema.metadata)
        if self.sort_by and table.num_rows:
            table = table.take(pc.sort_indices(table, [(self.sort_by, "ascending")]))
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        self.format.write(table, tmp)
        metadata = table.schema.metadata or {}
        if not self.format.keeps_metadata and b"scanner" in metadata:
            meta = json.loads(metadata[b"scanner"])
            _atomic_write_text(sidecar_path(self.out), json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, self.out)
        shutil.rmtree(self.parts, ignore_errors=True)
        return table.num_rows

    def abort(self) -> None:
        """Leaves committed parts in place (for --resume) and no final table."""
        log.info("kept %d committed parts in %s", self._n_parts, self.parts)
