"""A k-way merge of tables sorted by one key, with bounded memory, for the final tables.

::

    sources (each sorted by key, oldest first) -> batches -> complete key groups
        -> rows up to the frontier from every source -> newest source per key wins -> out

Each source is read a batch at a time. A source's buffer holds only *complete* key groups
(the rows of its last key wait until the next batch shows the key has ended), so every row
of a key at or below the frontier (the smallest buffered key any open source is sure of) is
in memory at once, and which source is newest for it can be decided there. A source is
opened only when the frontier reaches its first key: parts of a scan cover consecutive path
ranges, so few are open at a time. Memory is about one batch per open source, plus the rows
of the largest single key (one file's windows).

A source that is not sorted (a table written by an older version) is first cut into sorted
runs on disk (:func:`spill_sorted`), an external sort.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Source:
    """One sorted input of the merge: a table file read a batch at a time.

    Args:
        path: The file.
        fmt: Its :class:`~scanner.output.writer.TableFormat`.
        schema: The schema every batch is cast to.
        generation: Newer sources have higher numbers; a key's rows come from the newest.
        seq: Orders sources of one generation (the runs of one spilled source).
        drop: Keys whose rows are left out.
        key: The column the source is sorted by.
        rows: Rows per batch.
    """

    def __init__(self, path: Path, fmt: Any, schema: Any, *, generation: int, seq: int = 0,
                 drop: frozenset[str] = frozenset(), key: str = "path",
                 rows: int = 8_192) -> None:
        self.path, self.fmt, self.schema = path, fmt, schema
        self.generation, self.seq = generation, seq
        self.drop, self.key, self.rows = drop, key, rows

    @property
    def order(self) -> tuple[int, int]:
        return self.generation, self.seq

    def tables(self) -> Iterator[Any]:
        """The source's rows, a batch at a time, cast to the schema, ``drop`` left out."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from scanner.output.writer import conform

        drop = pa.array(sorted(self.drop), pa.string()) if self.drop else None
        for batch in self.fmt.batches(self.path, self.schema, rows=self.rows):
            table = conform(batch, self.schema)
            if drop is not None:
                table = table.filter(pc.invert(pc.is_in(table.column(self.key), value_set=drop)))
            if table.num_rows:
                yield table

    def _keys(self) -> Iterator[Any]:
        for batch in self.fmt.batches(self.path, self.schema, columns=[self.key], rows=self.rows):
            column = batch.column(0)
            if len(column):
                yield column

    def first_key(self) -> str | None:
        """The smallest key (None for an empty source): where the merge must open it."""
        for column in self._keys():
            return column[0].as_py()
        return None

    def is_sorted(self) -> bool:
        """Whether the keys never decrease (reads the key column only, a batch at a time)."""
        import pyarrow.compute as pc

        last = None
        for column in self._keys():
            column = column.cast("string")
            if last is not None and column[0].as_py() < last:
                return False
            if len(column) > 1 and not pc.all(
                    pc.less_equal(column.slice(0, len(column) - 1), column.slice(1))).as_py():
                return False
            last = column[len(column) - 1].as_py()
        return True


class _Cursor:
    """A source being merged: a buffer of complete key groups, refilled batch by batch.

    ``first`` and ``last`` are the buffer's first and last keys (kept, not recomputed: the
    merge compares them for every open source at every step)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._tables = source.tables()
        self.buffer: Any = None  # rows of complete keys, sorted
        self._carry: Any = None  # rows of the last key read, which may go on
        self.exhausted = False
        self.first: str = ""
        self.last: str = ""
        self.fill()

    def fill(self) -> None:
        """Reads until the buffer holds a complete key, or the source ends."""
        import pyarrow as pa
        import pyarrow.compute as pc

        key = self.source.key
        while self.empty and not self.exhausted:
            table = next(self._tables, None)
            if table is None:
                self.buffer, self._carry, self.exhausted = self._carry, None, True
                break
            if self._carry is not None:
                table = pa.concat_tables([self._carry, table])
            column = table.column(key)
            last = column[table.num_rows - 1]
            tail = pc.sum(pc.equal(column, last)).as_py()  # sorted: the last key's rows end it
            self.buffer = table.slice(0, table.num_rows - tail)
            self._carry = table.slice(table.num_rows - tail)
        self._keys()

    def _keys(self) -> None:
        if not self.empty:
            column = self.buffer.column(self.source.key)
            self.first, self.last = column[0].as_py(), column[len(column) - 1].as_py()

    @property
    def empty(self) -> bool:
        return self.buffer is None or not self.buffer.num_rows

    def take_until(self, key: str) -> Any:
        """Removes and returns the buffer's rows with keys up to ``key``."""
        import pyarrow.compute as pc

        if self.last <= key:
            n = self.buffer.num_rows
        else:
            n = pc.sum(pc.less_equal(self.buffer.column(self.source.key), key)).as_py() or 0
        head, self.buffer = self.buffer.slice(0, n), self.buffer.slice(n)
        if self.empty:
            self.fill()
        else:
            self._keys()
        return head


def merge_sorted(sources: Sequence[Source], key: str, *, rows: int) -> Iterator[Any]:
    """Merges sorted ``sources`` into tables of about ``rows`` rows, sorted by ``key``.

    For each key, only the rows of the newest source (highest :attr:`Source.order`
    generation) that has it are kept, in that source's order (sources of one generation
    are concatenated in ``seq`` order).
    """
    pending = [(k, i) for i, s in enumerate(sources) if (k := s.first_key()) is not None]
    heapq.heapify(pending)
    active: list[_Cursor] = []
    out: list[Any] = []
    held = 0
    while active or pending:
        if not active:
            _, i = heapq.heappop(pending)
            active.append(_Cursor(sources[i]))
            active = [c for c in active if not c.empty]
            continue
        # every open source holds all its rows up to the frontier; unopened ones start later
        frontier = min(c.last for c in active)
        while pending and pending[0][0] <= frontier:
            _, i = heapq.heappop(pending)
            cursor = _Cursor(sources[i])
            if not cursor.empty:
                active.append(cursor)
                frontier = min(frontier, cursor.last)
        taking = sorted((c for c in active if c.first <= frontier), key=lambda c: c.source.order)
        step = _newest([(c.source.generation, c.take_until(frontier)) for c in taking], key)
        if step is not None:
            out.append(step)
            held += step.num_rows
        while held >= rows:
            chunk, out, held = _cut(out, rows)
            yield chunk
        active = [c for c in active if not c.empty]
    if held:
        yield _concat(out)


def _newest(pieces: list[tuple[int, Any]], key: str) -> Any:
    """The pieces' rows (all rows of their keys), each key's from its newest piece, sorted by
    key; stable, so rows of one key keep their order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    pieces = [(g, t) for g, t in pieces if t.num_rows]
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0][1]
    table = pa.concat_tables([t for _, t in pieces])
    generations = [g for g, _ in pieces]
    if len(set(generations)) > 1:
        generation = np.repeat(generations, [t.num_rows for _, t in pieces])
        codes = pc.dictionary_encode(table.column(key).combine_chunks()).indices.to_numpy(
            zero_copy_only=False)
        newest = np.full(codes.max(initial=-1) + 1, -1)
        np.maximum.at(newest, codes, generation)
        table = table.filter(pa.array(generation == newest[codes]))
    return table.take(pc.sort_indices(table, [(key, "ascending")]))


def _concat(tables: list[Any]) -> Any:
    import pyarrow as pa

    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _cut(tables: list[Any], rows: int) -> tuple[Any, list[Any], int]:
    """The first ``rows`` rows of ``tables``, the rest, and how many rows the rest holds."""
    table = _concat(tables)
    rest = table.slice(rows)
    return table.slice(0, rows), [rest] if rest.num_rows else [], rest.num_rows


def spill_sorted(source: Source, folder: Path, *, rows: int) -> list[Source]:
    """Cuts an unsorted source into sorted runs of at most ``rows`` rows on disk (an external
    sort); the runs replace it in the merge (same generation, in order)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from scanner.output.writer import ParquetFormat

    folder.mkdir(parents=True, exist_ok=True)
    runs: list[Source] = []
    held: list[Any] = []
    n = 0

    def flush() -> None:
        nonlocal held, n
        table = pa.concat_tables(held)
        table = table.take(pc.sort_indices(table, [(source.key, "ascending")]))
        path = folder / f"run-{source.generation:06d}-{len(runs):06d}.parquet"
        pq.write_table(table, path)
        runs.append(Source(path, ParquetFormat(), source.schema, generation=source.generation,
                           seq=len(runs), key=source.key, rows=source.rows))
        held, n = [], 0

    for table in source.tables():
        held.append(table)
        n += table.num_rows
        if n >= rows:
            flush()
    if held:
        flush()
    return runs
