"""Annotations out of a results table, for the tools people review audio with.

One :class:`Exporter` per format, registered by name (``audacity``, ``raven``, ``json``,
``csv``), so adding a format is one class here. Exporters read :class:`Annotation` records
from either an events table (``results.events.parquet``) or a file table: a file table
whose scan wrote events beside it exports those events, otherwise each file becomes one
annotation spanning the whole file with its file-level label.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from scanner.errors import ScannerError
from scanner.registry import Registry

log = logging.getLogger(__name__)

Source = Literal["events", "files"]


@dataclass(frozen=True)
class Annotation:
    """One labelled stretch of one audio file (times in seconds from the file's start)."""

    path: str
    label: str
    start_s: float
    end_s: float
    peak_confidence: float | None = None
    mean_confidence: float | None = None


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: files, how many annotations, and what it read them from."""

    paths: list[Path]
    n_annotations: int
    source: Source
    table: Path
    out_dir: Path


# -- reading --------------------------------------------------------------------------------

def read_table(path: Path) -> Any:
    """A pyarrow table from a ``.parquet`` or ``.csv`` results file (ScannerError if unreadable)."""
    from scanner.output.writer import FORMATS, format_for

    try:
        return FORMATS.get(format_for(Path(path)))().read(Path(path))
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ScannerError(f"cannot read results table {path}: {e}") from e


def _is_events(columns: Iterable[str]) -> bool:
    cols = set(columns)
    return {"path", "label", "start_s", "end_s"} <= cols and "status" not in cols


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _from_events(table: Any) -> list[Annotation]:
    rows = table.to_pylist()
    return [Annotation(str(r["path"]), str(r["label"]), float(r["start_s"]), float(r["end_s"]),
                       _num(r.get("peak_confidence")), _num(r.get("mean_confidence")))
            for r in rows]


def _from_files(table: Any) -> list[Annotation]:
    out = []
    for r in table.select([c for c in ("path", "status", "label", "confidence", "duration_s")
                           if c in table.column_names]).to_pylist():
        if r.get("status") != "ok" or not r.get("label") or _num(r.get("duration_s")) is None:
            continue
        conf = _num(r.get("confidence"))
        out.append(Annotation(str(r["path"]), str(r["label"]), 0.0, float(r["duration_s"]),
                              conf, conf))
    return out


def read_annotations(results: Path) -> tuple[list[Annotation], Source, Path]:
    """Annotations from an events table, or from a file table (its events table if present).

    Returns:
        The annotations, whether they are ``events`` or whole ``files``, and the table read.

    Raises:
        ScannerError: The table is unreadable or is neither kind.
    """
    from scanner.events.segments import events_path

    results = Path(results)
    table = read_table(results)
    if _is_events(table.column_names):
        return _from_events(table), "events", results
    if "status" not in table.column_names:
        raise ScannerError(f"{results} is neither a scanner results table nor an events table "
                           f"(columns: {', '.join(table.column_names)})")
    sibling = events_path(results)
    if sibling.is_file():
        log.info("reading events from %s", sibling)
        return _from_events(read_table(sibling)), "events", sibling
    log.info("no events table beside %s: exporting one whole-file annotation per file "
             "(scan with --segments for time-stamped events)", results)
    return _from_files(table), "files", results


def select(annotations: Iterable[Annotation], *, min_confidence: float | None = None,
           labels: Sequence[str] = (), background: str | None = None) -> list[Annotation]:
    """Keeps ``labels`` (all but ``background`` when empty) at ``min_confidence`` or above."""
    kept = []
    for a in annotations:
        if labels and a.label not in labels:
            continue
        if not labels and a.label == background:
            continue
        if min_confidence is not None and (a.peak_confidence or 0.0) < min_confidence:
            continue
        kept.append(a)
    return sorted(kept, key=lambda a: (a.path, a.start_s, a.end_s, a.label))


# -- writing --------------------------------------------------------------------------------

def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


def _by_file(annotations: Sequence[Annotation]) -> dict[str, list[Annotation]]:
    groups: dict[str, list[Annotation]] = defaultdict(list)
    for a in annotations:
        groups[a.path].append(a)
    return dict(groups)


def file_stems(paths: Iterable[str]) -> dict[str, str]:
    """A unique output stem per audio path: its file stem, plus a short hash where stems clash."""
    paths = sorted(set(paths))
    count: dict[str, int] = defaultdict(int)
    for p in paths:
        count[Path(p).stem] += 1
    out = {}
    for p in paths:
        stem = Path(p).stem
        out[p] = stem if count[stem] == 1 else \
            f"{stem}-{hashlib.sha1(p.encode()).hexdigest()[:8]}"
    return out


class Exporter(ABC):
    """Writes annotations into ``out_dir`` in one format; returns the files it wrote."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def write(self, annotations: Sequence[Annotation], out_dir: Path) -> list[Path]: ...


EXPORTERS: Registry[type[Exporter]] = Registry("export format")


@EXPORTERS.register("audacity")
class AudacityExporter(Exporter):
    """One Audacity label track per audio file: ``<stem>.txt`` with ``start\\tend\\tlabel``.

    Import in Audacity with File > Import > Labels after opening the audio file.
    """

    name = "audacity"
    description = "Audacity label tracks, one <audio stem>.txt per audio file"

    def write(self, annotations: Sequence[Annotation], out_dir: Path) -> list[Path]:
        groups = _by_file(annotations)
        stems = file_stems(groups)
        written = []
        for path, items in groups.items():
            text = "".join(f"{a.start_s:.6f}\t{a.end_s:.6f}\t{a.label}\n" for a in items)
            written.append(_write_text(out_dir / f"{stems[path]}.txt", text))
        return written


RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Confidence", "Begin Path",
                 "File Offset (s)")
# The band the models hear: audio is analysed at 16 kHz, so 0 Hz to its Nyquist frequency.
RAVEN_HIGH_FREQ_HZ = 8000.0


@EXPORTERS.register("raven")
class RavenExporter(Exporter):
    """One Raven selection table per audio file: ``<stem>.Table.1.selections.txt``.

    Tab-separated with Raven's own column names; open it in Raven with File > Open
    Selection Table after opening the audio file.
    """

    name = "raven"
    description = "Raven selection tables, one <audio stem>.Table.1.selections.txt per audio file"

    def write(self, annotations: Sequence[Annotation], out_dir: Path) -> list[Path]:
        groups = _by_file(annotations)
        stems = file_stems(groups)
        written = []
        for path, items in groups.items():
            lines = ["\t".join(RAVEN_COLUMNS)]
            for i, a in enumerate(items, start=1):
                conf = "" if a.peak_confidence is None else f"{a.peak_confidence:.4f}"
                lines.append("\t".join([
                    str(i), "Spectrogram 1", "1", f"{a.start_s:.6f}", f"{a.end_s:.6f}",
                    f"{0.0:.1f}", f"{RAVEN_HIGH_FREQ_HZ:.1f}", a.label, conf, a.path,
                    f"{a.start_s:.6f}"]))
            text = "\n".join(lines) + "\n"
            written.append(_write_text(out_dir / f"{stems[path]}.Table.1.selections.txt", text))
        return written


FIELDS = ("path", "label", "start_s", "end_s", "peak_confidence", "mean_confidence")


@EXPORTERS.register("json")
class JsonLinesExporter(Exporter):
    """All annotations in ``events.jsonl``: one JSON object per line."""

    name = "json"
    description = "JSON lines, events.jsonl (one object per annotation)"

    def write(self, annotations: Sequence[Annotation], out_dir: Path) -> list[Path]:
        text = "".join(json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in annotations)
        return [_write_text(out_dir / "events.jsonl", text)]


@EXPORTERS.register("csv")
class CsvExporter(Exporter):
    """All annotations in ``events.csv`` with a header row."""

    name = "csv"
    description = "one CSV table, events.csv"

    def write(self, annotations: Sequence[Annotation], out_dir: Path) -> list[Path]:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for a in annotations:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(a).items()})
        return [_write_text(out_dir / "events.csv", buf.getvalue())]


def default_out_dir(results: Path, fmt: str) -> Path:
    """``results.parquet`` -> ``results-audacity/`` beside it."""
    results = Path(results)
    stem = results.stem.removesuffix(".events")
    return results.with_name(f"{stem}-{fmt}")


def export(results: Path, fmt: str, out_dir: Path | None = None, *,
           min_confidence: float | None = None, labels: Sequence[str] = (),
           background: str | None = None) -> ExportResult:
    """Writes the annotations of ``results`` in format ``fmt`` into ``out_dir``.

    Args:
        results: A file table (its events table beside it is used when present) or an
            events table.
        fmt: A registered exporter name (``audacity``, ``raven``, ``json``, ``csv``).
        out_dir: Folder to write into (created); default ``<results stem>-<fmt>/`` beside it.
        min_confidence: Keep annotations whose (peak) confidence is at least this.
        labels: Keep only these labels; when empty, every label but ``background``.
        background: The class that is not worth an annotation (default ``not_screaming``).

    Raises:
        ScannerError: The table cannot be read, or is not a results or events table.
        KeyError: ``fmt`` is not a registered format.
    """
    from scanner.events.segments import DEFAULT_BACKGROUND

    exporter = EXPORTERS.get(fmt)()
    annotations, source, table = read_annotations(Path(results))
    kept = select(annotations, min_confidence=min_confidence, labels=labels,
                  background=DEFAULT_BACKGROUND if background is None else background)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(Path(results), fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = exporter.write(kept, out_dir)
    log.debug("wrote %d %s annotations from %s to %d file(s) in %s", len(kept), fmt, table,
             len(paths), out_dir)
    return ExportResult(paths, len(kept), source, table, out_dir)
