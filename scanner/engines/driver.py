"""The local engine: discover -> decode (worker processes) -> embed -> classify -> write.

:func:`scan` is the library entry point behind ``scanner scan``; it only schedules the
stages, which live in their own modules.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.classify import Classifier, Model
from scanner.config import ScanConfig
from scanner.errors import ConfigError
from scanner.records import AudioFile

if TYPE_CHECKING:
    from scanner.audio.pool import DecodePool
    from scanner.engines.local import FileResult
    from scanner.events.segments import SegmentConfig

log = logging.getLogger(__name__)

# Error kinds worth another try on --resume; other errors are properties of the file.
TRANSIENT_ERRORS = frozenset({"timeout", "crashed", "io", "internal"})
# Rows are committed to disk at least this often, so a kill loses little work.
COMMIT_ROWS = 256
COMMIT_EVERY_S = 10.0


class ScanInterrupted(Exception):
    """The scan was stopped (Ctrl-C); committed rows are kept for ``--resume``."""

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

    @property
    def x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (f"{self.files} files ({self.ok} ok, {self.errors} errors"
                + (f", {self.skipped} already done" if self.skipped else "")
                + f"), {self.audio_s / 3600:.2f} h of audio in {self.wall_s:.1f} s "
                f"({self.x_realtime:.0f}x realtime) -> {self.out}")


def load_classifier(config: ScanConfig) -> Classifier:
    """Loads every backbone and its head (raises ModelNotFoundError/ScannerError)."""
    from scanner.backbones import load_backbone
    from scanner.heads import load_head

    models = []
    for name in config.backbones:
        backbone = load_backbone(name, config.models.get(name), device=config.device,
                                 threads=config.threads, **config.backbone_options.get(name, {}))
        head = load_head(config.heads.get(name), backbone=name)
        models.append(Model(backbone, head, config.weights.get(name, 1.0)))
    return Classifier(models)


def table_metadata(config: ScanConfig, classifier: Classifier) -> dict[bytes, bytes]:
    from scanner import __version__

    meta = {
        "tool": "scanner",
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "classes": list(classifier.classes),
        "backbones": [m.backbone.identity for m in classifier.models],
        "heads": [{"name": m.head.name, "kind": m.head.kind, "backbone": m.head.backbone,
                   "weight": classifier.weights[m.backbone.name]} for m in classifier.models],
        "options": config.to_dict(),
    }
    return {b"scanner": json.dumps(meta, default=str).encode()}


def results_schema(config: ScanConfig, classifier: Classifier):
    """The file table's arrow schema, with the scan's metadata (the same for every engine)."""
    from scanner.output.rows import arrow_schema, column_types

    names = [m.backbone.name for m in classifier.models]
    columns = column_types(classifier.classes, names)
    if config.segments is not None:
        from scanner.events.segments import summary_columns

        columns.update(summary_columns(classifier.classes, config.segments.background))
    return arrow_schema(columns, table_metadata(config, classifier))


class _EventSinks:
    """The segments and events tables beside the file table (``scan --segments``)."""

    def __init__(self, out: Path, config: ScanConfig, classifier: Classifier, fmt: str) -> None:
        from scanner.output.rows import arrow_schema
        from scanner.events.segments import event_columns, events_path, segment_columns, segments_path
        from scanner.output.writer import TableSink

        meta = table_metadata(config, classifier)
        # sort_by="path" is a stable sort: each file's rows stay in time order
        self.segments = TableSink(segments_path(out), arrow_schema(
            segment_columns(classifier.classes), meta), fmt=fmt, resume=config.resume)
        self.events = TableSink(events_path(out), arrow_schema(event_columns(), meta), fmt=fmt,
                                resume=config.resume)
        self._segments: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []

    def add(self, result: FileResult, row: dict[str, Any], classifier: Classifier,
            config: SegmentConfig) -> None:
        """Analyses one file's windows; adds its event summary to ``row``."""
        from scanner.events.segments import analyse_result

        if row["status"] != "ok":
            return
        try:
            found = analyse_result(classifier, result, config)
        except Exception as e:  # noqa: BLE001 - one file's failure must not stop the scan
            log.warning("%s: segment analysis failed: %s", result.file.path, e, exc_info=True)
            return
        if found is None:
            return
        row.update(found.summary)
        segments, events = found.rows(row["path"])
        self._segments += segments
        self._events += events

    def write(self) -> None:
        self.segments.write(self._segments)
        self.events.write(self._events)
        self._segments, self._events = [], []

    def abort(self) -> None:
        self.segments.abort()
        self.events.abort()

    def finish(self, drop_paths: set[str]) -> None:
        self.segments.finish(drop_paths=drop_paths)
        self.events.finish(drop_paths=drop_paths)


class _EmbeddingStore:
    """``scan --cache``: files' pooled embeddings into the cache ``scanner train`` reads."""

    def __init__(self, config: ScanConfig, classifier: Classifier) -> None:
        from scanner.output.cache import EmbeddingCache

        self.caches = {m.backbone.name: EmbeddingCache.for_backbone(config.cache_dir, m.backbone)
                       for m in classifier.models}

    def add(self, result: FileResult) -> None:
        from scanner.output.cache import ORIGINAL_VIEW, file_digest
        from scanner.heads.base import pool

        if result.info is not None and result.info.truncated_to_s is not None:
            return  # a cut file's embedding is not the file's
        try:
            digest = file_digest(result.file.path)
            for name, cache in self.caches.items():
                emb = result.embeddings[name]
                cache.put(digest, ORIGINAL_VIEW, pool(emb.embeddings, cache.pooling),
                          n_patches=emb.n_patches)
        except OSError as e:
            log.warning("%s: not cached: %s", result.file.path, e)


RowSource = Callable[[list[AudioFile], ScanConfig, Classifier], Iterator[dict[str, Any]]]
"""How an engine turns the files still to do into rows (in any order; one row per file)."""


def local_rows(todo: list[AudioFile], config: ScanConfig, classifier: Classifier, *,
               events: _EventSinks | None = None,
               pool: DecodePool | None = None) -> Iterator[dict[str, Any]]:
    """The local engine's rows: decode worker processes, the models in this process.

    ``pool``: decode workers already started (closed when the rows end); None starts them.
    """
    from scanner.engines.local import embed_files

    store = _EmbeddingStore(config, classifier) if config.cache else None
    for result in embed_files(todo, classifier.backbones, workers=config.workers, pool=pool,
                              batch_s=config.batch_s, part_s=config.part_s,
                              max_duration_s=config.max_duration_s,
                              decode_timeout_s=config.decode_timeout_s,
                              keep_scores=any(m.head.features == "scores"
                                              for m in classifier.models)):
        row = make_row(result, classifier)
        if store is not None and row["status"] == "ok":
            store.add(result)
        if events is not None:
            events.add(result, row, classifier, config.segments)
        yield row


def scan(paths: Sequence[str | Path], out: str | Path, config: ScanConfig | None = None, *,
         classifier: Classifier | None = None,
         on_files: Callable[[int], None] | None = None,
         on_row: Callable[[dict[str, Any]], None] | None = None,
         rows: RowSource | None = None) -> ScanSummary:
    """Scans ``paths`` and writes one row per audio file to ``out``.

    Args:
        paths: Folders (walked recursively) and files.
        out: Output table (``.parquet`` or ``.csv``).
        config: Scan settings (defaults: YAMNet with its default head).
        classifier: Already loaded models (else loaded from ``config``).
        on_files: Called once with the number of files to process (for a progress bar).
        on_row: Called with each row as it is made (for progress and logging).
        rows: The engine that makes the rows (default: :func:`local_rows`); discovery,
            resume, commits and the final table are the same for every engine.

    Returns:
        A summary. Raises ScanInterrupted on Ctrl-C after keeping the committed rows.
    """
    from scanner.audio.discover import discover
    from scanner.output.writer import TableSink, format_for

    config = config or ScanConfig()
    if rows is not None and config.segments is not None:
        raise ConfigError("time-stamped segments and events (--segments) need the local engine")
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    # The local engine's decode workers boot while files are listed and the models load.
    pool = _start_decode_pool(config, classifier) if rows is None else None
    try:
        files = discover(paths, extensions=config.extensions, include=config.include,
                         exclude=config.exclude, hidden=config.hidden,
                         follow_symlinks=config.follow_symlinks)
        classifier = classifier or load_classifier(config)
        schema = results_schema(config, classifier)
        fmt = format_for(out, config.output_format)
        sink = TableSink(out, schema, fmt=fmt, resume=config.resume)
        events = _EventSinks(out, config, classifier, fmt) if config.segments is not None \
            else None
        todo, skipped, redo = _resume_filter(files, sink.previous_rows()) if config.resume \
            else (files, 0, set())
        if on_files:
            on_files(len(todo))
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    counts = {"ok": 0, "error": 0}
    audio_s = 0.0
    pending: list[dict[str, Any]] = []
    committed = time.monotonic()

    def commit() -> None:
        nonlocal pending, committed
        sink.write(pending)
        if events is not None:
            events.write()
        pending, committed = [], time.monotonic()

    source = rows(todo, config, classifier) if rows is not None \
        else local_rows(todo, config, classifier, events=events, pool=pool)
    try:
        with closing(source):
            for row in source:
                counts[row["status"]] += 1
                audio_s += row["duration_s"] or 0.0
                pending.append(row)
                if on_row:
                    on_row(row)
                if len(pending) >= COMMIT_ROWS or time.monotonic() - committed > COMMIT_EVERY_S:
                    commit()
        commit()
    except KeyboardInterrupt:
        commit()
        sink.abort()
        if events is not None:
            events.abort()
        raise ScanInterrupted(ScanSummary(out, counts["ok"] + counts["error"], counts["ok"],
                                          counts["error"], skipped, audio_s,
                                          time.monotonic() - start)) from None
    sink.finish(drop_paths=redo)
    if events is not None:
        events.finish(drop_paths=redo)
    return ScanSummary(out, len(todo), counts["ok"], counts["error"], skipped, audio_s,
                       time.monotonic() - start)


def _start_decode_pool(config: ScanConfig, classifier: Classifier | None) -> DecodePool | None:
    """Decode workers for the local engine, booting now; None if the rate is not yet known."""
    from scanner.backbones import BACKBONES
    from scanner.audio.pool import DecodePool
    from scanner.engines.local import IN_FLIGHT

    if classifier is not None:
        rates = {b.sample_rate_hz for b in classifier.backbones}
    else:
        try:
            rates = {BACKBONES.get(name).sample_rate_hz for name in config.backbones}
        except Exception:  # noqa: BLE001 - an unknown backbone: load_classifier says so
            return None
    if len(rates) != 1:
        return None  # embed_files explains
    return DecodePool(workers=config.workers, sample_rate_hz=rates.pop(),
                      timeout_s=config.decode_timeout_s, in_flight=IN_FLIGHT).start()


def make_row(result: FileResult, classifier: Classifier) -> dict[str, Any]:
    """Classifies one file's embeddings into its table row; failures become error rows.

    Shared by every engine.
    """
    from scanner.output.rows import build_row

    classes = classifier.classes
    backbone_label = "+".join(m.backbone.name for m in classifier.models)
    head_label = "+".join(m.head.name for m in classifier.models)
    if not result.ok:
        log.warning("%s: %s (%s)", result.file.path, result.failure.message, result.failure.kind)
        if result.failure.details:
            log.debug("decoder chain for %s: %s", result.file.path, "; ".join(result.failure.details))
        if result.failure.traceback:
            log.debug("%s", result.failure.traceback)
        return build_row(result, None, classes=classes, backbone=backbone_label, head=head_label)
    try:
        prediction = classifier.predict_file(result.embeddings)
    except Exception as e:  # noqa: BLE001 - one file's failure must not stop the scan
        log.warning("%s: classification failed: %s", result.file.path, e, exc_info=True)
        return build_row(result, None, classes=classes, backbone=backbone_label, head=head_label,
                         error=f"classification failed: {e}", error_kind="model")
    return build_row(result, prediction, classes=classes, backbone=backbone_label,
                     head=head_label)


def _resume_filter(files: list[AudioFile], previous: list[dict[str, Any]]
                   ) -> tuple[list[AudioFile], int, set[str]]:
    """Files still to do, how many are done, and earlier rows to replace (transient errors)."""
    from scanner.output.rows import path_text

    done: dict[str, tuple[int, int, str | None]] = {
        r["path"]: (r["size_bytes"], r["mtime_ns"], r["error_kind"] if r["status"] == "error"
                    else None) for r in previous}
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
