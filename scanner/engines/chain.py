"""The per-file chain: what happens to every file after embedding, whichever engine embedded it.

::

    FileResult -> windows -> probabilities -> events -> file verdict -> row | sinks

The driver calls :meth:`FileChain.process` for every :class:`~scanner.records.FileResult`;
the chain makes the file's row (the verdict comes from its events) and hands the result to
each sink: the events table (always), the per-window table (``--segments``), the embedding
cache (``--cache``), exported vectors (``--embeddings``). A new output is one more sink here,
never a branch inside an engine.

Every sink commits its rows under the same commit number as the file table, and the file
table commits last, so a file's rows in every table are committed together or not at all
(see :class:`scanner.output.writer.TableSink`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from scanner.output.rows import build_row

if TYPE_CHECKING:
    from scanner.classify import Classifier
    from scanner.config import ScanConfig
    from scanner.events.segments import FileSegments, SegmentConfig
    from scanner.records import FileResult

log = logging.getLogger(__name__)


class Sink(Protocol):
    """One more output of the chain, committed with the file table.

    ``add`` sees every file (error rows too: a sink ignores what it has no use for);
    ``commit(number)`` writes what was added since the last commit as part ``number``;
    ``finish`` writes the final output (atomically), dropping earlier rows of ``drop_paths``;
    ``abort`` keeps committed parts for ``--resume``.
    """

    def add(self, result: FileResult, row: dict[str, Any], analysis: FileSegments | None
            ) -> None: ...

    def commit(self, number: int) -> None: ...

    def finish(self, drop_paths: set[str]) -> None: ...

    def abort(self) -> None: ...


def make_row(result: FileResult, classifier: Classifier) -> dict[str, Any]:
    """Classifies one file's embeddings into its table row (whole-file means, no verdict yet);
    failures become error rows."""
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


class FileChain:
    """Turns each FileResult into its row and feeds the sinks.

    Args:
        classifier: The scan's models.
        detection: Windows, smoothing, thresholds and minimum event length (resolved: see
            :func:`scanner.events.detection.resolve_detection`).
        sinks: The outputs beside the file table, in the order they are fed.
    """

    def __init__(self, classifier: Classifier, detection: SegmentConfig,
                 sinks: list[Sink]) -> None:
        self.classifier = classifier
        self.detection = detection
        self.sinks = sinks

    def process(self, result: FileResult) -> dict[str, Any]:
        """The file's row (with its verdict), after every sink has seen the file."""
        from scanner.events.detection import apply_verdict
        from scanner.events.segments import analyse_result

        row = make_row(result, self.classifier)
        analysis = None
        if row["status"] == "ok":
            try:
                analysis = analyse_result(self.classifier, result, self.detection)
            except Exception as e:  # noqa: BLE001 - one file's failure must not stop the scan
                log.warning("%s: detection failed: %s", result.file.path, e, exc_info=True)
                row = make_error_row(row, f"detection failed: {type(e).__name__}: {e}")
            else:
                apply_verdict(row, analysis, self.classifier.classes, self.detection.background)
        for sink in self.sinks:
            sink.add(result, row, analysis if row["status"] == "ok" else None)
        return row

    def commit(self, number: int) -> None:
        for sink in self.sinks:
            sink.commit(number)

    def finish(self, drop_paths: set[str]) -> None:
        for sink in self.sinks:
            sink.finish(drop_paths)

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()


def make_error_row(row: dict[str, Any], message: str, kind: str = "model") -> dict[str, Any]:
    """``row`` turned into an error row: no label, no probabilities."""
    keep = ("path", "path_bytes", "duration_s", "sample_rate", "channels", "decoder",
            "seconds_taken", "size_bytes", "mtime", "backbone", "head", "recorded_at")
    out = {k: row[k] for k in keep if k in row}
    out.update(status="error", error=message, error_kind=kind)
    return out


# -- the sinks ------------------------------------------------------------------------------

class EventTables:
    """The events table (always) and the per-window segments table (``--segments``)."""

    def __init__(self, out: Path, config: ScanConfig, classifier: Classifier, fmt: str,
                 metadata: dict[bytes, bytes], committed: set[int] | None) -> None:
        from scanner.events.segments import event_columns, events_path, segment_columns, segments_path
        from scanner.output.rows import arrow_schema
        from scanner.output.writer import TableSink

        self.events = TableSink(events_path(out), arrow_schema(event_columns(), metadata),
                                fmt=fmt, resume=config.resume, committed=committed)
        self.segments = TableSink(
            segments_path(out), arrow_schema(segment_columns(classifier.classes), metadata),
            fmt=fmt, resume=config.resume, committed=committed) if config.segments else None
        self._events: list[dict[str, Any]] = []
        self._segments: list[dict[str, Any]] = []

    def add(self, result: FileResult, row: dict[str, Any], analysis: FileSegments | None
            ) -> None:
        if analysis is None:
            return
        segments, events = analysis.rows(row["path"])
        self._events += events
        if self.segments is not None:
            self._segments += segments

    def commit(self, number: int) -> None:
        self.events.write(self._events, number=number)
        if self.segments is not None:
            self.segments.write(self._segments, number=number)
        self._events, self._segments = [], []

    def finish(self, drop_paths: set[str]) -> None:
        self.events.finish(drop_paths=drop_paths)
        if self.segments is not None:
            self.segments.finish(drop_paths=drop_paths)

    def abort(self) -> None:
        self.events.abort()
        if self.segments is not None:
            self.segments.abort()


class CacheSink:
    """``scan --cache``: files' pooled embeddings into the cache ``scanner train`` reads."""

    def __init__(self, config: ScanConfig, classifier: Classifier) -> None:
        from scanner.output.cache import EmbeddingCache

        self.caches = {m.backbone.name: EmbeddingCache.for_backbone(config.cache_dir, m.backbone)
                       for m in classifier.models}

    def add(self, result: FileResult, row: dict[str, Any], analysis: FileSegments | None
            ) -> None:
        from scanner.heads.base import pool
        from scanner.output.cache import ORIGINAL_VIEW, file_digest

        if row["status"] != "ok" or result.info is None or result.info.truncated_to_s is not None:
            return  # a cut file's embedding is not the file's
        try:
            digest = file_digest(result.file.path)
            for name, cache in self.caches.items():
                emb = result.embeddings[name]
                cache.put(digest, ORIGINAL_VIEW, pool(emb.embeddings, cache.pooling),
                          n_patches=emb.n_patches)
        except OSError as e:
            log.warning("%s: not cached: %s", result.file.path, e)

    def commit(self, number: int) -> None:
        pass  # each entry is written atomically as it comes

    def finish(self, drop_paths: set[str]) -> None:
        pass

    def abort(self) -> None:
        pass
