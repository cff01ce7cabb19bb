"""Reading annotations out of results tables: the file table, its events table, or both.

:func:`load` returns :class:`Annotation` records (an events table's rows, or one whole-file
annotation per labelled file when the scan wrote no events), the :class:`FileInfo` of each
file (sample rate, duration, recording start) and the table's metadata. Every export format
and the report read through here.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from scanner.errors import ScannerError
from scanner.escape import escape_terminal

log = logging.getLogger(__name__)

Source = Literal["events", "files"]


@dataclass(frozen=True)
class Annotation:
    """One labelled stretch of one audio file (times in seconds from the file's start).

    ``start_time`` is the wall-clock time of ``start_s`` when the recording's start is known.
    """

    path: str
    label: str
    start_s: float
    end_s: float
    peak_confidence: float | None = None
    mean_confidence: float | None = None
    start_time: datetime | None = None


@dataclass(frozen=True)
class FileInfo:
    """What an export needs to know about one audio file (from the file table, if any)."""

    path: str
    sample_rate: int | None = None
    duration_s: float | None = None
    recorded_at: datetime | None = None


# -- reading --------------------------------------------------------------------------------

def read_table(path: Path) -> Any:
    """A pyarrow table from a ``.parquet`` or ``.csv`` results file (ScannerError if unreadable).

    Dictionary (categorical) columns come back decoded to their values.
    """
    from scanner.output.writer import FORMATS, format_for

    try:
        return plain(FORMATS.get(format_for(Path(path)))().read(Path(path)))
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ScannerError(f"cannot read results table {path}: {e}") from e


def plain(table: Any) -> Any:
    """``table`` with dictionary columns decoded (group-bys and filters want plain types)."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def table_metadata(path: Path, table: Any) -> dict[str, Any]:
    """The scan's metadata of a table (Parquet footer or CSV sidecar); {} when there is none."""
    import json

    from scanner.output.writer import sidecar_path

    raw = (table.schema.metadata or {}).get(b"scanner")
    data: Any = {}
    try:
        if raw:
            data = json.loads(raw)
        elif sidecar_path(path).is_file():
            data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        log.warning("ignoring unreadable metadata of %s: %s", escape_terminal(str(path)), e)
    return data if isinstance(data, dict) else {}


def _is_events(columns: Iterable[str]) -> bool:
    cols = set(columns)
    return {"path", "label", "start_s", "end_s"} <= cols and "status" not in cols


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def file_infos(table: Any) -> dict[str, FileInfo]:
    """Path -> :class:`FileInfo` from a file table's ``path``, ``sample_rate``, ``duration_s``
    and (when the scan found one) ``recorded_at`` columns."""
    cols = [c for c in ("path", "sample_rate", "duration_s", "recorded_at")
            if c in table.column_names]
    out = {}
    for r in table.select(cols).to_pylist():
        rate = r.get("sample_rate")
        out[str(r["path"])] = FileInfo(str(r["path"]), int(rate) if rate else None,
                                       _num(r.get("duration_s")), _when(r.get("recorded_at")))
    return out


@dataclass(frozen=True)
class Loaded:
    """Everything :func:`load` read: annotations, where from, the files, the metadata."""

    annotations: list[Annotation]
    source: Source
    table: Path
    files: dict[str, FileInfo]
    metadata: dict[str, Any]
    classes: list[str]


def _file_table_beside(events: Path) -> Path | None:
    stem = events.stem
    if not stem.endswith(".events"):
        return None
    candidate = events.with_name(stem.removesuffix(".events") + events.suffix)
    return candidate if candidate.is_file() else None


def load(results: Path) -> Loaded:
    """Annotations from an events table, or from a file table (its events table if present).

    Raises:
        ScannerError: The table is unreadable or is neither kind.
    """
    from scanner.events.segments import events_path

    results = Path(results)
    table = read_table(results)
    meta = table_metadata(results, table)
    if _is_events(table.column_names):
        beside = _file_table_beside(results)
        files = file_infos(read_table(beside)) if beside else {}
        return _loaded(table, "events", results, files, meta)
    if "status" not in table.column_names:
        raise ScannerError(f"{results} is neither a scanner results table nor an events table "
                           f"(columns: {', '.join(table.column_names)})")
    files = file_infos(table)
    sibling = events_path(results)
    if sibling.is_file():
        log.info("reading events from %s", escape_terminal(str(sibling)))
        return _loaded(read_table(sibling), "events", sibling, files, meta)
    log.info("no events table beside %s: exporting one whole-file annotation per file "
             "(scan with --segments for time-stamped events)", escape_terminal(str(results)))
    return _loaded(_whole_files(table), "files", results, files, meta)


def _whole_files(table: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = table.filter(pc.and_(pc.equal(table.column("status"), "ok"),
                              pc.is_valid(table.column("duration_s"))))
    ok = ok.filter(pc.is_valid(ok.column("label")))
    zeros = pa.array([0.0] * ok.num_rows, pa.float64())
    conf = ok.column("confidence") if "confidence" in ok.column_names else \
        pa.nulls(ok.num_rows, pa.float64())
    return pa.table({"path": ok.column("path"), "label": ok.column("label"), "start_s": zeros,
                     "end_s": ok.column("duration_s"), "peak_confidence": conf,
                     "mean_confidence": conf})


def _loaded(table: Any, source: Source, path: Path, files: dict[str, FileInfo],
            meta: dict[str, Any]) -> Loaded:
    cols = [c for c in ("path", "label", "start_s", "end_s", "peak_confidence",
                        "mean_confidence", "start_time") if c in table.column_names]
    out = []
    for r in table.select(cols).to_pylist():
        start = float(r["start_s"])
        when = _when(r.get("start_time"))
        info = files.get(str(r["path"]))
        if when is None and info is not None and info.recorded_at is not None:
            when = info.recorded_at + timedelta(seconds=start)
        out.append(Annotation(str(r["path"]), str(r["label"]), start, float(r["end_s"]),
                              _num(r.get("peak_confidence")), _num(r.get("mean_confidence")),
                              when))
    classes = [str(c) for c in meta.get("classes") or [] if isinstance(meta.get("classes"), list)]
    classes += sorted({a.label for a in out} - set(classes))
    return Loaded(out, source, path, files, meta, classes)


def read_annotations(results: Path) -> tuple[list[Annotation], Source, Path]:
    """The annotations of ``results``, whether they are ``events`` or whole ``files``, and the
    table they came from (see :func:`load`)."""
    loaded = load(results)
    return loaded.annotations, loaded.source, loaded.table


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


def scan_roots(metadata: Mapping[str, Any], folders: Iterable[str]) -> tuple[str, ...]:
    """The scanned roots, as the table's paths spell them.

    The roots the metadata records are used when they hold the files; a root recorded as
    typed (``sample_audio``) is anchored in the paths that hold it
    (``/home/me/sample_audio/...`` -> ``/home/me/sample_audio``). Otherwise, the deepest
    folder that holds every file.

    Args:
        metadata: The table's metadata (``roots``, or ``options.roots``).
        folders: The folders of the table's files (each file's parent).
    """
    folders = sorted(set(folders), key=lambda f: (len(f), f))
    recorded: list[str] = []
    for source in (metadata, metadata.get("options")):
        roots = source.get("roots") if isinstance(source, Mapping) else None
        if isinstance(roots, str):
            roots = [roots]
        if isinstance(roots, list) and roots:
            recorded = [str(r) for r in roots]
            break
    anchored = [a for a in (_anchor(r, folders) for r in recorded) if a is not None]
    if anchored:
        return tuple(dict.fromkeys(anchored))
    if not folders:
        return ()
    try:
        return (os.path.commonpath(folders),)
    except ValueError:  # absolute and relative paths mixed
        return ()


def _anchor(root: str, folders: Sequence[str]) -> str | None:
    """``root`` as the folders spell it: itself, or the prefix of a folder ending in it."""
    want = tuple(p for p in PurePosixPath(root).parts if p != ".")
    if not want:
        return None
    for folder in folders:
        parts = PurePosixPath(folder).parts
        for i in range(len(parts) - len(want) + 1):
            if parts[i:i + len(want)] == want:
                return str(PurePosixPath(*parts[:i + len(want)]))
    return None
