"""The engine-agnostic driver behind ``scanner scan``: discovery, resume, commits, the final
tables and the summary.

::

    discover -> resume filter -> engine.results(todo) -> FileChain.process -> commit -> finish
    (paths)                       (FileResult per file)   (row | events | sinks)

An engine (:class:`~scanner.engines.local.LocalEngine`, :class:`~scanner.engines.ray_engine.RayEngine`)
only decides where and when decoding and the models run, and yields one
:class:`~scanner.records.FileResult` per file; everything after embedding happens here, in
the same :class:`~scanner.engines.chain.FileChain` for every engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from scanner.classify import Classifier, load_classifier
from scanner.config import ScanConfig
from scanner.records import AudioFile, FileResult

if TYPE_CHECKING:
    from scanner.engines.chain import FileChain

log = logging.getLogger(__name__)

# Error kinds worth another try on --resume; other errors are properties of the file.
TRANSIENT_ERRORS = frozenset({"timeout", "crashed", "io", "internal"})
# Rows are committed to disk at least this often, so a kill loses little work.
COMMIT_ROWS = 256
COMMIT_EVERY_S = 10.0

__all__ = ["Engine", "ScanInterrupted", "ScanSummary", "load_classifier", "scan"]


class Engine(Protocol):
    """Where and when the stages run. :meth:`results` yields one FileResult per file."""

    name: str

    def prepare(self, config: ScanConfig, sample_rate_hz: int | None) -> None:
        """Called before discovery and model loading (to boot workers meanwhile)."""

    def results(self, todo: Sequence[AudioFile], config: ScanConfig, classifier: Classifier
                ) -> Iterator[FileResult]: ...

    def close(self) -> None: ...


class ScanInterrupted(Exception):
    """The scan was stopped (Ctrl-C, SIGTERM); committed rows are kept for ``--resume``."""

    def __init__(self, summary: ScanSummary) -> None:
        super().__init__("scan interrupted")
        self.summary = summary


@dataclass(frozen=True)
class ScanSummary:
    """What a scan did: counts, audio hours and speed."""

    out: Path
    files: int
    ok: int
    errors: int
    skipped: int
    audio_s: float
    wall_s: float
    events: int = 0

    @property
    def x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (f"{self.files} files ({self.ok} ok, {self.errors} errors"
                + (f", {self.skipped} already done" if self.skipped else "")
                + f"), {self.events} events, {self.audio_s / 3600:.2f} h of audio in "
                f"{self.wall_s:.1f} s ({self.x_realtime:.0f}x realtime) -> {self.out}")


def scan(paths: Sequence[str | Path], out: str | Path, config: ScanConfig | None = None, *,
         classifier: Classifier | None = None,
         on_files: Callable[[int], None] | None = None,
         on_row: Callable[[dict[str, Any]], None] | None = None,
         engine: Engine | None = None) -> ScanSummary:
    """Scans ``paths`` and writes one row per audio file to ``out``, and its events beside it.

    Args:
        paths: Folders (walked recursively) and files.
        out: Output table (``.parquet`` or ``.csv``); the events go to ``OUT.events.parquet``
            (``.csv`` likewise), per-window rows to ``OUT.segments.*`` with ``config.segments``.
        config: Scan settings (defaults: YAMNet with its default head).
        classifier: Already loaded models (else loaded from ``config``).
        on_files: Called once with the number of files to process (for a progress bar).
        on_row: Called with each row as it is made (for progress and logging).
        engine: Where the stages run (default: a :class:`~scanner.engines.local.LocalEngine`).

    Returns:
        A summary. Raises ScanInterrupted on Ctrl-C after keeping the committed rows.
    """
    from scanner.audio.discover import discover
    from scanner.output.guard import OutputGuard

    config = config or ScanConfig()
    if engine is None:
        from scanner.engines.local import LocalEngine

        engine = LocalEngine()
    out = Path(out).expanduser().absolute()
    start = time.monotonic()
    guard = OutputGuard(out, config)
    guard.check_before_start()
    # The decode workers boot while files are listed and the models load.
    engine.prepare(config, _known_sample_rate(config, classifier))
    try:
        with guard.lock():
            files = discover(paths, extensions=config.extensions, include=config.include,
                             exclude=config.exclude, hidden=config.hidden,
                             follow_symlinks=config.follow_symlinks)
            classifier = classifier or load_classifier(config)
            tables = _open_tables(out, config, classifier, guard)
            todo, skipped, redo = _resume_filter(files, tables.previous_keys()) if config.resume \
                else (files, 0, set())
            if on_files:
                on_files(len(todo))
            return _run(todo, skipped, redo, config, classifier, tables, engine, on_row, start)
    finally:
        engine.close()


@dataclass
class _Tables:
    """The file table and the chain that feeds the tables beside it."""

    sink: Any  # scanner.output.writer.TableSink
    chain: FileChain
    out: Path

    def previous_keys(self) -> dict[str, tuple[int, int, str | None]]:
        return self.sink.previous_keys()


def _open_tables(out: Path, config: ScanConfig, classifier: Classifier, guard: Any) -> _Tables:
    from scanner.engines.chain import CacheSink, EventTables, FileChain
    from scanner.events.detection import resolve_detection
    from scanner.output.schema import results_schema, table_metadata
    from scanner.output.writer import TableSink, format_for

    detection = resolve_detection(classifier, options=config.detection, thresholds=config.thresholds,
                                  sensitivity=config.sensitivity)
    metadata = table_metadata(config, classifier, detection)
    schema = results_schema(config, classifier, detection)
    guard.check_resume(schema)
    fmt = format_for(out, config.output_format)
    sink = TableSink(out, schema, fmt=fmt, resume=config.resume)
    committed = sink.committed_parts()
    sinks: list[Any] = [EventTables(out, config, classifier, fmt, metadata, committed)]
    if config.cache:
        sinks.append(CacheSink(config, classifier))
    if config.embeddings:
        from scanner.output.vectors import VectorSink

        sinks.append(VectorSink(out, classifier, config, resume=config.resume))
    return _Tables(sink, FileChain(classifier, detection, sinks), out)


def _run(todo: list[AudioFile], skipped: int, redo: set[str], config: ScanConfig,
         classifier: Classifier, tables: _Tables, engine: Engine,
         on_row: Callable[[dict[str, Any]], None] | None, start: float) -> ScanSummary:
    counts = {"ok": 0, "error": 0, "events": 0}
    audio_s = 0.0
    pending: list[dict[str, Any]] = []
    committed = time.monotonic()
    number = tables.sink.last_part

    def commit() -> None:
        nonlocal pending, committed, number
        number += 1
        tables.chain.commit(number)  # the tables beside it first: the file table commits last
        tables.sink.write(pending, number=number)
        pending, committed = [], time.monotonic()

    def summary(files: int) -> ScanSummary:
        return ScanSummary(tables.out, files, counts["ok"], counts["error"], skipped, audio_s,
                           time.monotonic() - start, counts["events"])

    source = engine.results(todo, config, classifier)
    try:
        with closing(source):
            for result in source:
                row = tables.chain.process(result)
                counts[row["status"]] += 1
                counts["events"] += row.get("n_events") or 0
                audio_s += row["duration_s"] or 0.0
                pending.append(row)
                if on_row:
                    on_row(row)
                if len(pending) >= COMMIT_ROWS or time.monotonic() - committed > COMMIT_EVERY_S:
                    commit()
        commit()
    except KeyboardInterrupt:
        commit()
        tables.chain.abort()
        tables.sink.abort()
        raise ScanInterrupted(summary(counts["ok"] + counts["error"])) from None
    tables.chain.finish(redo)  # the file table last: a crash here leaves it resumable
    tables.sink.finish(drop_paths=redo)
    return summary(len(todo))


def _known_sample_rate(config: ScanConfig, classifier: Classifier | None) -> int | None:
    """The rate decoding makes, known before the models load; None if not (yet) known."""
    from scanner.backbones import BACKBONES

    if classifier is not None:
        rates = {b.sample_rate_hz for b in classifier.backbones}
    else:
        try:
            rates = {BACKBONES.get(name).sample_rate_hz for name in config.backbones}
        except KeyError:  # an unknown backbone: load_classifier says so
            return None
    return rates.pop() if len(rates) == 1 else None


def _resume_filter(files: list[AudioFile], done: dict[str, tuple[int, int, str | None]]
                   ) -> tuple[list[AudioFile], int, set[str]]:
    """Files still to do, how many are done, and earlier rows to replace (transient errors).

    Args:
        done: By path text: size, mtime (ns) and the error kind of each earlier row.
    """
    from scanner.output.rows import path_text

    todo, redo = [], set()
    for f in files:
        key = path_text(f.path)
        prev = done.get(key)
        if prev is not None and prev[:2] == (f.size_bytes, f.mtime_ns) \
                and prev[2] not in TRANSIENT_ERRORS:
            continue
        if prev is not None:
            redo.add(key)
        todo.append(f)
    return todo, len(files) - len(todo), redo
