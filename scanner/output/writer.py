"""Results tables: committed in parts as the scan goes, then one atomic final table.

Rows are committed every batch as Parquet part files in a hidden folder beside the
output (``.results.parquet.parts/``), each sorted by path, written to a temporary name and
renamed, so a kill loses at most the batch in hand. ``finish`` merges the parts (and, with
``resume``, the rows of an earlier run) into the final table by streaming: each source is
read a batch at a time and the sorted sources are merged (:mod:`scanner.output.merge`), so
memory holds a few batches, never the whole table. The final table is written to a
temporary file and renamed over the target: a crash never leaves a half-written table at the
target path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scanner.registry import Registry

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 10_000
"""Rows per row group of a final Parquet table (and per write of a CSV one)."""
READ_ROWS = 8_192
"""Rows read from a source at a time while merging (memory: about this much per source)."""


class TableFormat(ABC):
    """How a whole table is written to and read from one file, and streamed."""

    suffixes: tuple[str, ...]
    keeps_metadata: bool = True

    @abstractmethod
    def write(self, table: Any, path: Path) -> None: ...

    @abstractmethod
    def read(self, path: Path) -> Any: ...

    @abstractmethod
    def writer(self, path: Path, schema: Any) -> Any:
        """An open writer with ``write_table(table)`` and ``close()``."""

    @abstractmethod
    def batches(self, path: Path, schema: Any, *, columns: Sequence[str] | None = None,
                rows: int = READ_ROWS) -> Iterator[Any]:
        """The table at ``path`` as record batches (``columns`` only, typed as ``schema``)."""


FORMATS: Registry[type[TableFormat]] = Registry("output format")


@FORMATS.register("parquet")
class ParquetFormat(TableFormat):
    suffixes = (".parquet", ".pq")

    def write(self, table: Any, path: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)

    def read(self, path: Path) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(path)

    def writer(self, path: Path, schema: Any) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)

    def batches(self, path: Path, schema: Any, *, columns: Sequence[str] | None = None,
                rows: int = READ_ROWS) -> Iterator[Any]:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        have = set(file.schema_arrow.names)
        wanted = None if columns is None else [c for c in columns if c in have]
        yield from file.iter_batches(batch_size=rows, columns=wanted)


@FORMATS.register("csv")
class CsvFormat(TableFormat):
    suffixes = (".csv",)
    keeps_metadata = False  # CSV has no place for it: it goes to a sidecar file

    def write(self, table: Any, path: Path) -> None:
        import pyarrow.csv as pacsv

        from scanner.escape import neutralise_csv_table

        # Text that a spreadsheet would run as a formula gets a leading "'" (OWASP).
        pacsv.write_csv(neutralise_csv_table(table), path)

    def read(self, path: Path) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)

    def writer(self, path: Path, schema: Any) -> Any:
        return _NeutralisingCsvWriter(path, schema)

    def batches(self, path: Path, schema: Any, *, columns: Sequence[str] | None = None,
                rows: int = READ_ROWS) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        # Types come from the schema: a streaming reader infers them from its first block
        # only, and a column empty there would fail on a later block.
        types = {f.name: pa.string() if pa.types.is_dictionary(f.type) else f.type
                 for f in schema}
        with open(path, "rb") as fh:
            header = pacsv.open_csv(fh).schema.names
        wanted = [c for c in (columns or header) if c in header]
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=max(1 << 20, rows * 256)),
            convert_options=pacsv.ConvertOptions(
                column_types={c: types[c] for c in wanted if c in types},
                include_columns=wanted, strings_can_be_null=True))
        yield from reader


class _NeutralisingCsvWriter:
    """A streaming CSV writer that neutralises formula text, as :meth:`CsvFormat.write` does."""

    def __init__(self, path: Path, schema: Any) -> None:
        import pyarrow.csv as pacsv

        self._writer = pacsv.CSVWriter(path, schema)

    def write_table(self, table: Any) -> None:
        from scanner.escape import neutralise_csv_table

        self._writer.write_table(neutralise_csv_table(table))

    def close(self) -> None:
        self._writer.close()


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


def parts_dir(out: Path) -> Path:
    """The hidden folder of committed parts for output ``out``."""
    return out.with_name(f".{out.name}.parts")


def conform(batch: Any, schema: Any) -> Any:
    """A batch or table of an earlier run as a table of this run's ``schema`` (CSV reads
    infer their own types; a column this run added is null)."""
    import pyarrow as pa

    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


class TableSink:
    """Commits rows in parts and writes the final table atomically, by streaming.

    Args:
        out: The final table's path.
        schema: A pyarrow schema; the final table's metadata comes from it.
        fmt: Registered format name (``parquet``/``csv``).
        resume: Keep rows of an earlier run (final table and parts) and add to them;
            otherwise leftovers of an earlier run are discarded.
        sort_by: Column the final table is sorted by (stable: a file's rows keep their
            order) and whose newest rows replace older ones (None: ``path``).
        committed: With ``resume``, the commit numbers the file table holds: this table's
            parts of other commits are dropped (see :meth:`_drop_uncommitted`).
        row_group_rows: Rows per row group of the final table.
        read_rows: Rows read from each source at a time while merging.
    """

    def __init__(self, out: Path, schema: Any, *, fmt: str = "parquet", resume: bool = False,
                 sort_by: str | None = "path", committed: set[int] | None = None,
                 row_group_rows: int = ROW_GROUP_ROWS, read_rows: int = READ_ROWS) -> None:
        self.out = Path(out)
        self.schema = schema
        self.format = FORMATS.get(fmt)()
        self.sort_by = sort_by
        self.row_group_rows = row_group_rows
        self.read_rows = read_rows
        self.parts = parts_dir(self.out)
        self._previous_table: Path | None = None
        self._resumed_parts: list[Path] = []
        if resume:
            if committed is not None:
                self._drop_uncommitted(committed)
            self._find_previous()
        elif self.parts.exists():
            shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        # after the highest number kept: a count reuses a dropped part's number and overwrites
        # a later part
        self._n_parts = max(self.committed_parts(), default=0)

    def committed_parts(self) -> set[int]:
        """Numbers of the parts committed so far (kept for ``--resume``)."""
        return {_part_number(p) for p in self.parts.glob("part-*.parquet")} \
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

    def _find_previous(self) -> None:
        """Notes the earlier run's final table and parts; reads only their footers (a torn
        part is dropped and its files redone), never their rows."""
        import pyarrow.parquet as pq

        if self.out.exists():
            try:
                next(self.format.batches(self.out, self.schema, columns=["path"], rows=1),
                     None)
                self._previous_table = self.out
            except Exception as e:  # noqa: BLE001 - a damaged table is reported, not fatal
                log.warning("cannot read earlier results %s (%s); starting afresh", self.out, e)
        for part in sorted(self.parts.glob("part-*.parquet")) if self.parts.exists() else []:
            try:
                pq.read_metadata(part)
                self._resumed_parts.append(part)
            except Exception as e:  # noqa: BLE001 - a torn part is dropped and redone
                log.warning("dropping unreadable part %s (%s)", part, e)
                part.unlink()

    def _previous_sources(self) -> list[tuple[Path, TableFormat]]:
        out = [(self._previous_table, self.format)] if self._previous_table else []
        return out + [(p, ParquetFormat()) for p in self._resumed_parts]

    def _previous_batches(self, columns: Sequence[str] | None = None) -> Iterator[Any]:
        for path, fmt in self._previous_sources():
            yield from fmt.batches(path, self.schema, columns=columns, rows=self.read_rows)

    def previous_rows(self) -> Iterator[dict[str, Any]]:
        """Rows of the run being resumed (final table and committed parts), streamed."""
        for batch in self._previous_batches():
            yield from conform(batch, self.schema).to_pylist()

    def previous_keys(self) -> dict[str, tuple[int, int, str | None]]:
        """By path, each earlier row's size, mtime (ns) and error kind (None for ok rows);
        read column-wise, a batch at a time, so resuming a large table is quick."""
        import pyarrow as pa
        import pyarrow.compute as pc

        columns = ("path", "size_bytes", "mtime", "status", "error_kind")
        key_schema = pa.schema([self.schema.field(c) for c in columns])
        out: dict[str, tuple[int, int, str | None]] = {}
        for batch in self._previous_batches(columns):
            t = conform(batch, key_schema)
            kinds = pc.if_else(pc.equal(t.column("status"), "error"), t.column("error_kind"),
                               pa.scalar(None, pa.string())).to_pylist()
            mtimes = t.column("mtime").cast(pa.int64()).to_pylist()
            for path, size, mtime, kind in zip(t.column("path").to_pylist(),
                                               t.column("size_bytes").to_pylist(), mtimes, kinds,
                                               strict=True):
                out[path] = (size, mtime, kind)
        return out

    def write(self, rows: Sequence[dict[str, Any]], *, number: int | None = None) -> None:
        """Commits ``rows`` as one part file, sorted (atomic: temporary name, then rename).

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
        if self.sort_by:
            table = _sorted(table, self.sort_by)
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

        Each path's rows come from the newest source that has it (the earlier final table is
        the oldest, then parts by number), so a redone file's rows replace its earlier ones.

        Args:
            drop_paths: Paths whose earlier rows are superseded by a row of this run.
        """
        from scanner.output.merge import Source, merge_sorted, spill_sorted

        key = self.sort_by or "path"
        drop = frozenset(drop_paths)
        previous = self._previous_sources()
        resumed = set(self._resumed_parts)
        new_parts = [p for p in sorted(self.parts.glob("part-*.parquet")) if p not in resumed]
        sources: list[Source] = []
        for index, (path, fmt) in enumerate(previous + [(p, ParquetFormat()) for p in new_parts]):
            old = index < len(previous)
            source = Source(path, fmt, self.schema, key=key, rows=self.read_rows,
                            generation=_part_number(path) if path.parent == self.parts else 0,
                            drop=drop if old else frozenset())
            # parts this run wrote are sorted; an earlier run's tables are checked
            if old and not source.is_sorted():
                log.info("%s is not sorted by %s: sorting it on disk", path.name, key)
                sources += spill_sorted(source, self.parts / ".spill",
                                        rows=max(self.read_rows * 8, 65_536))
            else:
                sources.append(source)
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        n_rows = 0
        try:
            writer = self.format.writer(tmp, self.schema)
            try:
                for table in merge_sorted(sources, key, rows=self.row_group_rows):
                    writer.write_table(table)
                    n_rows += table.num_rows
            finally:
                writer.close()
            metadata = self.schema.metadata or {}
            if not self.format.keeps_metadata and b"scanner" in metadata:
                meta = json.loads(metadata[b"scanner"])
                _atomic_write_text(sidecar_path(self.out), json.dumps(meta, indent=2) + "\n")
            os.replace(tmp, self.out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        shutil.rmtree(self.parts, ignore_errors=True)
        return n_rows

    def abort(self) -> None:
        """Leaves committed parts in place (for --resume) and no final table."""
        log.info("kept %d committed parts in %s", self._n_parts, self.parts)


def _part_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def _sorted(table: Any, key: str) -> Any:
    import pyarrow.compute as pc

    # sort_indices is stable: a file's rows (its events, its windows) keep their time order
    return table.take(pc.sort_indices(table, [(key, "ascending")]))
