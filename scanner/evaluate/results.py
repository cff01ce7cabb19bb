"""A scan's tables as evaluation input: files and durations, events, window probabilities.

``scanner scan -o r.parquet`` writes the file table ``r.parquet``, its events beside it
(``r.events.parquet``) and, with ``--segments``, the windows (``r.segments.parquet``); CSV
tables likewise, their metadata in ``r.csv.meta.json``. Files whose ``status`` is not ``ok``
are listed and left out of every metric.

Reference files are matched to the scanned paths by their trailing path components: the
longest trailing part of the reference's name that is the tail of exactly one scanned path
(with its extension, or without it for label files that name only a stem) wins.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ConfigError
from scanner.evaluate.truth import Reference

log = logging.getLogger(__name__)

Event = tuple[str, float, float]  # (label, onset_s, offset_s)


@dataclass(frozen=True)
class Windows:
    """One file's analysis windows: ``starts_s [n]``, ``ends_s [n]``, ``probs [n, classes]``."""

    starts_s: NDArray[np.float64]
    ends_s: NDArray[np.float64]
    probs: NDArray[np.float64]


@dataclass(frozen=True)
class ScanResults:
    """What evaluation reads from a scan.

    Attributes:
        path: The file table.
        classes: The heads' classes, in the table's order.
        background: The class that never makes an event.
        detection: The detection settings the scan used (``SegmentConfig.to_dict()``).
        durations_s: By path, the length of every file that scanned ``ok``.
        errors: ``{"path", "error"}`` of every file that did not.
        events: By path, the scan's events ``(label, onset_s, offset_s)`` (ok files only).
        segments_path: The per-window table, if the scan wrote one.
        metadata: The file table's ``scanner`` metadata.
    """

    path: Path
    classes: tuple[str, ...]
    background: str
    detection: dict[str, Any]
    durations_s: dict[str, float]
    errors: list[dict[str, Any]]
    events: dict[str, list[Event]]
    segments_path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        """The classes that make events (all but the background)."""
        return tuple(c for c in self.classes if c != self.background)


def _read(path: Path) -> Any:
    from scanner.events.export import read_table

    return read_table(path)


def table_metadata(path: Path, table: Any) -> dict[str, Any]:
    """The ``scanner`` metadata of a table: its schema's, or a CSV's ``.meta.json`` sidecar."""
    from scanner.output.schema import METADATA_KEY
    from scanner.output.writer import sidecar_path

    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    try:
        if raw:
            return json.loads(raw)
        if sidecar_path(path).is_file():
            return json.loads(sidecar_path(path).read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise ConfigError(f"unreadable scan metadata of {path}: {e}") from e
    return {}


def detection_settings(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The detection settings a scan recorded: ``detection``, else ``options.segments``, else {}."""
    return dict(metadata.get("detection") or (metadata.get("options") or {}).get("segments") or {})


def load_results(path: str | Path) -> ScanResults:
    """Reads a file table and its events table.

    Raises:
        ConfigError: Not a scan's file table, or no events table beside it.
        ScannerError: A table is unreadable.
    """
    from scanner.events.segments import DEFAULT_BACKGROUND, events_path, segments_path

    path = Path(path)
    table = _read(path)
    missing = {"path", "status", "duration_s"} - set(table.column_names)
    if missing:
        raise ConfigError(f"{path} is not a results table of 'scanner scan' (no "
                          f"{', '.join(sorted(missing))} column); pass the file table")
    meta = table_metadata(path, table)
    detection = detection_settings(meta)
    background = detection.get("background", DEFAULT_BACKGROUND)
    classes = tuple(meta.get("classes") or [c[5:] for c in table.column_names if c.startswith("prob_")])
    durations: dict[str, float] = {}
    errors: list[dict[str, Any]] = []
    for row in table.select(["path", "status", "duration_s"] + (["error"] if "error" in table.column_names
                                                                  else [])).to_pylist():
        if row["status"] == "ok" and row["duration_s"] is not None:
            durations[row["path"]] = float(row["duration_s"])
        else:
            errors.append({"path": row["path"], "error": row.get("error") or row["status"]})
    ev_path = events_path(path)
    if not ev_path.is_file():
        raise ConfigError(f"no events table {ev_path.name} beside {path}: scan with a version that "
                          f"writes events (or with --segments)")
    events: dict[str, list[Event]] = defaultdict(list)
    for row in _read(ev_path).select(["path", "label", "start_s", "end_s"]).to_pylist():
        if row["path"] in durations:
            events[row["path"]].append((row["label"], float(row["start_s"]), float(row["end_s"])))
    seg_path = segments_path(path)
    return ScanResults(path=path, classes=classes, background=background, detection=detection,
                       durations_s=durations, errors=errors,
                       events={p: sorted(v, key=lambda e: e[1]) for p, v in events.items()},
                       segments_path=seg_path if seg_path.is_file() else None, metadata=meta)


def load_windows(results: ScanResults) -> dict[str, Windows]:
    """Every ok file's windows from the segments table, in time order.

    Raises:
        ConfigError: The scan wrote no segments table, or it lacks a class's probabilities.
    """
    if results.segments_path is None:
        raise ConfigError(f"no segments table beside {results.path}: a threshold sweep needs the "
                          f"window probabilities of 'scanner scan --segments'")
    table = _read(results.segments_path)
    cols = [f"prob_{c}" for c in results.classes]
    missing = [c for c in ["path", "start_s", "end_s", *cols] if c not in table.column_names]
    if missing:
        raise ConfigError(f"{results.segments_path} lacks the column(s) {', '.join(missing)}")
    table = table.select(["path", "start_s", "end_s", *cols])
    paths = table.column("path").to_pylist()
    starts = table.column("start_s").to_numpy().astype(np.float64)
    ends = table.column("end_s").to_numpy().astype(np.float64)
    probs = np.stack([table.column(c).to_numpy().astype(np.float64) for c in cols], axis=1)
    rows: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(paths):
        if p in results.durations_s:
            rows[p].append(i)
    out = {}
    for p, idx in rows.items():
        ix = np.asarray(idx)[np.argsort(starts[idx], kind="stable")]
        out[p] = Windows(starts[ix], ends[ix], probs[ix])
    return out


def _tails(parts: Sequence[str]) -> Iterable[str]:
    for k in range(1, len(parts) + 1):
        yield "/".join(parts[-k:])


def path_index(paths: Iterable[str]) -> dict[str, set[str]]:
    """Every trailing part of every path (``c.wav``, ``b/c.wav``, also ``c``, ``b/c``) -> paths."""
    index: dict[str, set[str]] = defaultdict(set)
    for p in paths:
        parts = PurePosixPath(p.replace("\\", "/")).parts
        if not parts:
            continue
        no_ext = (*parts[:-1], PurePosixPath(parts[-1]).stem)
        for tail in (*_tails(parts), *_tails(no_ext)):
            index[tail].add(p)
    return index


def match_references(references: Iterable[Reference], paths: Iterable[str]
                     ) -> tuple[dict[str, list[Reference]], list[str]]:
    """References by scanned path, and the reference files that match no scanned path.

    Raises:
        ConfigError: A reference file matches several scanned files equally well.
    """
    index = path_index(paths)
    matched: dict[str, list[Reference]] = defaultdict(list)
    unmatched: dict[str, None] = {}
    cache: dict[str, str | None] = {}
    for ref in references:
        if ref.file not in cache:
            parts = [p for p in PurePosixPath(ref.file).parts if p not in ("/", ".")]
            hit = None
            for k in range(len(parts), 0, -1):
                found = index.get("/".join(parts[-k:]))
                if found:
                    if len(found) > 1:
                        shown = ", ".join(sorted(found)[:3])
                        raise ConfigError(f"truth file {ref.file!r} ({ref.source}) matches "
                                          f"{len(found)} scanned files ({shown}); name it by a "
                                          f"longer relative path")
                    hit = next(iter(found))
                    break
            cache[ref.file] = hit
        hit = cache[ref.file]
        if hit is None:
            unmatched[ref.file] = None
        else:
            matched[hit].append(ref)
    return dict(matched), list(unmatched)

