"""A report a person reads instead of the table: counts, folders, hours, events, errors, timelines.

:func:`load_report` aggregates a file table and, when the scan wrote them (``--segments``),
its events and segments tables beside it, with pyarrow group-bys (no Python loop over the
rows of a table: a scan of millions of files reports in seconds). :func:`write_report`
renders the numbers with a Jinja2 template (:mod:`scanner.events.report_render`) as one
self-contained HTML page (plots embedded as PNGs) or as Markdown with PNG files beside it.

A file counts for a class when it has an event of that class: the table's ``has_<class>``
columns when present, else its ``n_events_<class>`` columns, else the events table; a
table without events counts each file under its file-level label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scanner.errors import ScannerError
from scanner.escape import escape_terminal
from scanner.events import report_aggregate as ra
from scanner.events.annotations import plain, read_table, table_metadata

log = logging.getLogger(__name__)

TOP_EVENTS = 20
MAX_ERRORS = 50


@dataclass(frozen=True)
class ReportData:
    """The numbers of a report (what the page shows, and what tests check).

    Row lists hold plain dicts, one per table row, already aggregated.

    Attributes:
        label_rows: Per file-level label: ``label``, ``files``, ``audio_s``, ``mean_confidence``.
        class_rows: Per target class: ``label``, ``files`` (files with it), ``audio_s`` of those
            files, ``events``, ``event_s``.
        folder_rows: Per folder (relative to the scanned root): ``folder``, ``files``,
            ``errors``, ``audio_s``, ``files_<class>`` and ``events_<class>`` per target class.
        hour_rows / day_rows: When recording times are known: per hour of day (``hour``) or
            per day (``day``): ``files`` started then, ``audio_s``, ``events_<class>``.
        top_events: The most confident events: ``path``, ``label``, ``start_s``, ``end_s``,
            ``peak_confidence``, ``start_time``.
        top_files: Files with the most events (or, without events, the most confident
            non-background files): ``path``, ``label``, ``duration_s``, ``n_events``,
            ``event_s``, ``first_onset_s`` and ``n_<label>`` per target class.
        confidences / event_confidences: File-level confidences, events' peak confidences,
            by label (for the histograms; numpy arrays).
        events_by_path / segments_by_path: Rows of the top files (for the timelines).
        thresholds: The detection threshold of each target class.
    """

    results: Path
    classes: list[str]
    targets: list[str]
    background: str
    n_files: int
    n_ok: int
    n_errors: int
    audio_s: float
    has_events: bool
    label_rows: list[dict[str, Any]]
    class_rows: list[dict[str, Any]]
    folder_rows: list[dict[str, Any]]
    n_folders: int
    hour_rows: list[dict[str, Any]]
    day_rows: list[dict[str, Any]]
    errors_by_kind: dict[str, int]
    errors: list[dict[str, Any]]
    top_events: list[dict[str, Any]]
    top_files: list[dict[str, Any]]
    confidences: dict[str, Any]
    event_confidences: dict[str, Any]
    thresholds: dict[str, float]
    roots: tuple[str, ...] = ()
    events_by_path: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    segments_by_path: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


# -- reading --------------------------------------------------------------------------------

def _read(path: Path, wanted: Any = None, filters: Any = None) -> Any:
    """A table, with only the columns ``wanted(names)`` picks when the format allows."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
            cols = wanted(names) if wanted else None
            return plain(pq.read_table(path, columns=cols, filters=filters))
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise ScannerError(f"cannot read results table {path}: {e}") from e
    table = plain(read_table(path))
    if filters is not None:
        import pyarrow.compute as pc

        (column, _, values), = filters
        table = table.filter(pc.is_in(table.column(column), value_set=ra.strings(values)))
    return table.select(wanted(table.column_names)) if wanted else table


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    for source in (meta.get("detection"), options.get("detection"), options.get("segments"),
                   meta.get("segments")):
        if isinstance(source, dict):
            return source
    return {}


def _names(path: Path, table: Any) -> list[str]:
    """Every column name of the table at ``path`` (``table`` may hold only some)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    return table.column_names


def _report_columns(names: list[str]) -> list[str]:
    """The file table's columns a report reads (not the probabilities or timings)."""
    wanted = {"path", "status", "error", "error_kind", "duration_s", "sample_rate", "label",
              "confidence", "recorded_at"}
    return [n for n in names if n in wanted or n.startswith(("has_", "n_events_"))]


def load_report(results: Path, *, top_files: int = 10, top_events: int = TOP_EVENTS
                ) -> ReportData:
    """Reads a file table (and its events/segments tables, if any) into :class:`ReportData`.

    Raises:
        ScannerError: ``results`` is unreadable or not a scanner file table.
    """
    import pyarrow.compute as pc

    from scanner.events.segments import DEFAULT_BACKGROUND, DEFAULT_THRESHOLD, events_path, segments_path

    results = Path(results)
    files = _read(results, _report_columns)
    if "status" not in files.column_names:
        raise ScannerError(f"{results} is not a results table of 'scanner scan' (no status "
                           f"column); pass the file table, not the events or segments table")
    meta = table_metadata(results, files)
    settings = _settings(meta)
    background = settings.get("background", DEFAULT_BACKGROUND)
    known = meta.get("classes")
    classes = [str(c) for c in known] if isinstance(known, list) and known else \
        [c[5:] for c in _names(results, files) if c.startswith("prob_")]
    ev_file = events_path(results)
    events = _read(ev_file) if ev_file.is_file() else None
    labels = set(pc.unique(files.column("label")).to_pylist()) - {None}
    if events is not None:
        labels |= set(pc.unique(events.column("label")).to_pylist())
    classes += sorted(labels - set(classes))
    targets = [c for c in classes if c != background]
    thresholds = {c: float((settings.get("thresholds") or {}).get(c, DEFAULT_THRESHOLD))
                  for c in targets}
    roots = ra.roots_of(meta, files)

    ok_mask = pc.equal(files.column("status"), "ok")
    ok = files.filter(ok_mask)
    errors = files.filter(pc.invert(ok_mask))
    flags = ra.flags(files, events, targets)

    label_rows = []
    if ok.num_rows:
        agg = ok.group_by("label").aggregate([("path", "count"), ("duration_s", "sum"),
                                              ("confidence", "mean")])
        got = {r["label"]: r for r in ra.to_rows(agg)}
        for label in [c for c in classes if c in got] + sorted(set(got) - set(classes), key=str):
            r = got[label]
            label_rows.append({"label": label if label is not None else "?",
                               "files": r["path_count"], "audio_s": r["duration_s_sum"] or 0.0,
                               "mean_confidence": r["confidence_mean"]})
    ev_stats = {}
    if events is not None and events.num_rows:
        span = pc.subtract(events.column("end_s"), events.column("start_s"))
        agg = events.append_column("event_s", span).group_by("label").aggregate(
            [("event_s", "count"), ("event_s", "sum")])
        ev_stats = {r["label"]: r for r in ra.to_rows(agg)}
    durations = pc.fill_null(files.column("duration_s"), 0.0)
    class_rows = [{"label": c, "files": pc.sum(pc.cast(flags[c], "int64")).as_py() or 0,
                   "audio_s": pc.sum(pc.if_else(flags[c], durations, 0.0)).as_py() or 0.0,
                   "events": ev_stats.get(c, {}).get("event_s_count", 0),
                   "event_s": ev_stats.get(c, {}).get("event_s_sum", 0.0)} for c in targets]
    folder_rows, n_folders = ra.by_folder(files, flags, events, targets, roots)
    hour_rows, day_rows = ra.by_time(files, events, targets)
    kinds = errors.group_by("error_kind").aggregate([("path", "count")]) if errors.num_rows \
        else None
    errors_by_kind = dict(sorted(((r["error_kind"] or "unknown", r["path_count"])
                                  for r in ra.to_rows(kinds)), key=lambda kv: (-kv[1], kv[0]))) \
        if kinds is not None else {}
    err_cols = [c for c in ("path", "error_kind", "error") if c in errors.column_names]
    top = ra.top_files(files, events, targets, background, top_files)
    top_paths = [t["path"] for t in top]
    events_by_path: dict[str, list[dict[str, Any]]] = {p: [] for p in top_paths}
    if events is not None and top_paths:
        mine = events.filter(pc.is_in(events.column("path"), value_set=ra.strings(top_paths)))
        for r in ra.to_rows(mine.take(pc.sort_indices(mine, sort_keys=[("path", "ascending"),
                                                                  ("start_s", "ascending")]))):
            events_by_path[r["path"]].append(r)
    seg_file = segments_path(results)
    segments = _segments(seg_file, top_paths) if seg_file.is_file() and top_paths else {}
    return ReportData(
        results=results, classes=classes, targets=targets, background=background,
        n_files=files.num_rows, n_ok=ok.num_rows, n_errors=errors.num_rows,
        audio_s=pc.sum(ok.column("duration_s")).as_py() or 0.0 if ok.num_rows else 0.0,
        has_events=events is not None, label_rows=label_rows, class_rows=class_rows,
        folder_rows=folder_rows, n_folders=n_folders, hour_rows=hour_rows, day_rows=day_rows,
        errors_by_kind=errors_by_kind,
        errors=ra.to_rows(errors.slice(0, MAX_ERRORS).select(err_cols)),
        top_events=ra.wall_clock(ra.top_events(events, targets, top_events), files)
        if events is not None else [],
        top_files=top,
        confidences=ra.by_label(ok.column("confidence"), ok.column("label"))
        if "confidence" in ok.column_names else {},
        event_confidences=ra.by_label(events.column("peak_confidence"), events.column("label"))
        if events is not None else {},
        thresholds=thresholds, roots=roots, events_by_path=events_by_path,
        segments_by_path=segments, metadata=meta)


def _segments(path: Path, paths: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The segment rows of ``paths`` only (a segments table can be far larger than memory)."""
    import pyarrow.compute as pc

    try:
        table = _read(path, filters=[("path", "in", paths)])
    except ScannerError as e:  # timelines are optional; the report goes on
        log.warning("%s; timelines show events only", escape_terminal(str(e)))
        return {}
    table = table.take(pc.sort_indices(table, sort_keys=[("path", "ascending"),
                                                         ("start_s", "ascending")]))
    out: dict[str, list[dict[str, Any]]] = {}
    for row in ra.to_rows(table):
        out.setdefault(row["path"], []).append(row)
    return out


def write_report(results: Path, out: Path, *, top_files: int = 10, timelines: int = 5,
                 top_events: int = TOP_EVENTS) -> Path:
    """Writes the report of ``results`` to ``out``: ``.html`` (self-contained) or ``.md``.

    A Markdown report puts its PNGs in ``<out stem>_files/`` beside it. The top events link
    to the review page (``review/index.html``) when that folder exists beside the report.

    Args:
        results: A file table written by ``scanner scan``.
        out: The report's path; its suffix picks the format.
        top_files: Rows in the "files with the most events" table.
        timelines: Timeline plots, for the first of those files.
        top_events: Rows in the "most confident events" table.

    Raises:
        ScannerError: Unreadable results, an unknown report suffix, or a failed write.
    """
    from scanner.events.report_render import render

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise ScannerError(f"report {out} must end in .html or .md")
    data = load_report(results, top_files=top_files, top_events=top_events)
    # An OSError (a read-only folder, a file in the way) reaches the CLI's boundary: one line.
    return render(data, out, timelines=timelines, generated=datetime.now())
