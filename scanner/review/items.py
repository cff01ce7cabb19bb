"""What to review: items (a stretch of one file with a label and a score) chosen from a table.

Three ways to choose (``select``):

- ``top``: the ``per_class`` highest-scoring items of each non-background class;
- ``sample``: for calibration, per class, a seeded random sample of ``per_bin`` items from
  each of ``bins`` equal score bins over [0, 1]; each item's ``weight`` is how many items
  of its bin it stands for, so precision estimated from verdicts is the population's;
- ``all``: every row of the given table (search hits, in rank order), up to ``limit``.

Sources, from the table given: a results table reads its events table beside it
(``r.events.parquet``, from ``scan --segments``) or, without one, its file rows; ``sample``
prefers the segments table (``r.segments.parquet``), whose windows span the whole score
range, where the events hold only windows above threshold. An events, hits or segments
table is read as it is.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scanner import CLASSES
from scanner.errors import ConfigError

log = logging.getLogger(__name__)

Select = Literal["auto", "top", "sample", "all"]
BACKGROUND = "not_screaming"


@dataclass(frozen=True)
class ReviewItem:
    """One card of the review page.

    Attributes:
        path: The audio file, as the table names it.
        start_s, end_s: The stretch under review, in file time.
        label: What the model (or the search query) says it is.
        score: The model's probability of ``label`` (an event's peak, a hit's similarity).
        stratum: Why it was chosen (``top``, ``bin 0.6-0.7``, ``hit``...).
        weight: Items of the population it stands for (1 unless sampled by bin).
        probs: Per-class probabilities, when the table has them.
        query: The search query of a hit.
        rank: A hit's rank for its query.
        wall_clock: Wall-clock time of ``start_s``, from a time stamp in the file name.
    """

    path: str
    start_s: float
    end_s: float
    label: str
    score: float | None
    stratum: str
    weight: float = 1.0
    probs: dict[str, float] | None = None
    query: str | None = None
    rank: int | None = None
    wall_clock: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """A table read for review: its rows, their kind, and the classes it knows."""

    rows: list[dict[str, Any]]
    kind: Literal["events", "segments", "files", "hits"]
    path: Path
    classes: tuple[str, ...]
    head: str | None


def wall_clock(path: str, offset_s: float, row: dict[str, Any] | None = None) -> str | None:
    """Wall-clock time ``offset_s`` into the file (ISO 8601): from the row's ``start_time``
    (events) or ``recorded_at`` (file rows) that the scan wrote, else from a time stamp in
    the file's name (:func:`scanner.timestamps.from_name`); None when nothing says."""
    row = row or {}
    if isinstance(row.get("start_time"), datetime):
        return row["start_time"].isoformat(timespec="seconds")
    t0 = row.get("recorded_at")
    if not isinstance(t0, datetime):
        from scanner.timestamps import from_name

        t0 = from_name(Path(path).name)
    if t0 is None:
        return None
    return (t0 + timedelta(seconds=offset_s)).isoformat(timespec="seconds")


def _read(path: Path) -> tuple[Any, dict[str, Any]]:
    from scanner.events.export import read_table

    table = read_table(path)
    raw = (table.schema.metadata or {}).get(b"scanner")
    meta: dict[str, Any] = {}
    if raw:
        meta = json.loads(raw)
    else:
        from scanner.output.writer import sidecar_path

        side = sidecar_path(path)
        if side.is_file():
            meta = json.loads(side.read_text())
    return table, meta


def _kind(columns: list[str]) -> str:
    cols = set(columns)
    if "status" in cols:
        return "files"
    if not {"path", "start_s", "end_s"} <= cols:
        raise ConfigError(f"cannot review a table with columns {columns}: give a results, "
                          "events, segments or search-hits table")
    if "query" in cols:
        return "hits"
    if "peak_confidence" in cols:
        return "events"
    return "segments"


def _classes(meta: dict[str, Any], columns: list[str], rows: list[dict[str, Any]]) -> tuple[str, ...]:
    if meta.get("classes"):
        return tuple(meta["classes"])
    found = [c[5:] for c in columns if c.startswith("prob_")]
    for r in rows:
        if r.get("label") and r["label"] not in found:
            found.append(str(r["label"]))
    for c in CLASSES:
        if c not in found:
            found.append(c)
    return tuple(found)


def load_source(table: Path, select: Select) -> Source:
    """Reads ``table`` and, for a results table, the events or segments table beside it."""
    from scanner.events.segments import events_path, segments_path

    table = Path(table)
    data, meta = _read(table)
    kind = _kind(data.column_names)
    if kind == "files":
        beside = [segments_path(table), events_path(table)] if select == "sample" \
            else [events_path(table)]
        for path in beside:
            if path.is_file():
                log.info("reviewing %s (beside %s)", path.name, table.name)
                data, meta = _read(path)
                kind, table = _kind(data.column_names), path
                break
    rows = data.to_pylist()
    heads = meta.get("heads") or []
    head = "+".join(str(h.get("name")) for h in heads) or None
    return Source(rows, kind, table, _classes(meta, data.column_names, rows), head)  # type: ignore[arg-type]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _probs(row: dict[str, Any], classes: tuple[str, ...]) -> dict[str, float] | None:
    out = {c: _num(row.get(f"prob_{c}")) for c in classes}
    clean = {c: v for c, v in out.items() if v is not None}
    return clean or None


def _item(row: dict[str, Any], source: Source, *, label: str | None = None,
          score: float | None = None, stratum: str, weight: float = 1.0) -> ReviewItem:
    kind = source.kind
    probs = _probs(row, source.classes)
    if kind == "files":
        start, end = 0.0, float(row.get("duration_s") or 0.0)
    else:
        start, end = float(row["start_s"]), float(row["end_s"])
    label = label or str(row.get("label") or "")
    if score is None:
        if kind in ("events", "hits"):
            score = _num(row.get("peak_confidence"))
        elif probs and label in probs:
            score = probs[label]
        else:
            score = _num(row.get("confidence"))
    path = str(row["path"])
    return ReviewItem(path, round(start, 3), round(end, 3), label, score, stratum, weight, probs,
                      row.get("query"), row.get("rank"), wall_clock(path, start, row))


def _usable(source: Source) -> list[dict[str, Any]]:
    if source.kind != "files":
        return source.rows
    return [r for r in source.rows if r.get("status") == "ok" and _num(r.get("duration_s"))]


def select_items(source: Source, select: Select = "auto", *, per_class: int = 20, bins: int = 10,
                 per_bin: int = 5, limit: int = 500, seed: int = 0,
                 background: str = BACKGROUND, labels: tuple[str, ...] = ()) -> list[ReviewItem]:
    """The items to review from ``source`` (see the module docstring).

    Args:
        labels: Only these classes (default: every class but ``background``).
    """
    if select == "auto":
        select = "all" if source.kind == "hits" else "top"
    rows = _usable(source)
    targets = list(labels) or [c for c in source.classes if c != background]
    if select == "all":
        return [_item(r, source, stratum=source.kind) for r in rows[:limit]]
    if select == "top":
        out = []
        for c in targets:
            mine = [_item(r, source, stratum="top") for r in rows if r.get("label") == c]
            mine.sort(key=lambda it: (-(it.score or 0.0), it.path, it.start_s))
            out += mine[:per_class]
        return out
    if select == "sample":
        return _sample(source, rows, targets, bins=bins, per_bin=per_bin, seed=seed)
    raise ConfigError(f"unknown selection {select!r}: top, sample or all")


def _sample(source: Source, rows: list[dict[str, Any]], targets: list[str], *, bins: int,
            per_bin: int, seed: int) -> list[ReviewItem]:
    """Per class and score bin, a seeded sample; every row is scored for every class when the
    table has ``prob_<class>`` (windows, files), else only for its own label (events)."""
    if bins < 1 or per_bin < 1:
        raise ConfigError("bins and per_bin must be >= 1")
    rng = np.random.default_rng(seed)
    has_probs = any(f"prob_{c}" in (rows[0] if rows else {}) for c in targets)
    out = []
    for c in targets:
        if has_probs:
            scored = [(r, _num(r.get(f"prob_{c}"))) for r in rows]
        else:
            scored = [(r, _num(r.get("peak_confidence"))) for r in rows if r.get("label") == c]
        scored = [(r, s) for r, s in scored if s is not None]
        scores = np.array([s for _, s in scored], float)
        which = np.minimum((scores * bins).astype(int), bins - 1) if len(scores) else scores
        for b in range(bins):
            members = np.flatnonzero(which == b)
            if len(members) == 0:
                continue
            pick = np.sort(rng.choice(members, size=min(per_bin, len(members)), replace=False))
            weight = len(members) / len(pick)
            name = f"bin {b / bins:.2f}-{(b + 1) / bins:.2f}"
            out += [_item(scored[i][0], source, label=c, score=scored[i][1], stratum=name,
                          weight=round(weight, 4)) for i in pick]
    return out
