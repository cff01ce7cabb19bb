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
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scanner.errors import ScannerError
from scanner.escape import escape_terminal
from scanner.events.export import plain, read_table, scan_roots, table_metadata

log = logging.getLogger(__name__)

TOP_EVENTS = 20
MAX_FOLDERS = 200
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
        table = table.filter(pc.is_in(table.column(column), value_set=_array(values)))
    return table.select(wanted(table.column_names)) if wanted else table


def _array(values: Any) -> Any:
    import pyarrow as pa

    return pa.array(list(values), pa.string())


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    options = meta.get("options") or {}
    for source in (options.get("segments"), options.get("detection"), meta.get("detection"),
                   meta.get("segments")):
        if isinstance(source, dict):
            return source
    return {}


def _rows(table: Any) -> list[dict[str, Any]]:
    return table.to_pylist()  # only ever called on aggregated or sliced tables


# -- aggregation ----------------------------------------------------------------------------

def _flags(files: Any, events: Any | None, targets: list[str]) -> dict[str, Any]:
    """Per target class, a boolean array over the file table: the file has that class."""
    import pyarrow.compute as pc

    out = {}
    for c in targets:
        if f"has_{c}" in files.column_names:
            out[c] = pc.fill_null(files.column(f"has_{c}"), False)
        elif f"n_events_{c}" in files.column_names:
            out[c] = pc.fill_null(pc.greater(files.column(f"n_events_{c}"), 0), False)
        elif events is not None:
            paths = pc.unique(events.filter(pc.equal(events.column("label"), c)).column("path"))
            out[c] = pc.is_in(files.column("path"), value_set=paths)
        else:
            ok = pc.equal(files.column("status"), "ok")
            out[c] = pc.fill_null(pc.and_(ok, pc.equal(files.column("label"), c)), False)
    return out


def _roots(meta: dict[str, Any], files: Any) -> tuple[str, ...]:
    import pyarrow.compute as pc

    roots = scan_roots(meta, [])
    if roots or not files.num_rows:
        return roots
    folders = pc.unique(_folder_column(files.column("path"), ())).to_pylist()
    try:
        return (os.path.commonpath(folders),)
    except ValueError:  # absolute and relative paths mixed
        return ()


def _folder_column(paths: Any, roots: tuple[str, ...]) -> Any:
    """Each path's folder (``.`` for a bare name), relative to the longest root holding it."""
    import pyarrow.compute as pc

    folders = pc.replace_substring_regex(paths, r"/[^/]*$", "")
    folders = pc.if_else(pc.match_substring(paths, "/"),
                         pc.if_else(pc.equal(folders, ""), "/", folders), ".")
    for root in sorted(roots, key=len, reverse=True):
        prefix = root.rstrip("/")
        if not prefix:
            continue
        inside = pc.or_(pc.equal(folders, prefix), pc.starts_with(folders, prefix + "/"))
        rel = pc.utf8_slice_codeunits(folders, len(prefix) + 1)
        folders = pc.if_else(inside, pc.if_else(pc.equal(rel, ""), ".", rel), folders)
    return folders


def _by_folder(files: Any, flags: dict[str, Any], events: Any | None, targets: list[str],
               roots: tuple[str, ...]) -> tuple[list[dict[str, Any]], int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table({
        "folder": _folder_column(files.column("path"), roots),
        "error": pc.cast(pc.not_equal(files.column("status"), "ok"), pa.int64()),
        "duration_s": pc.fill_null(files.column("duration_s"), 0.0),
        **{f"files_{c}": pc.cast(flags[c], pa.int64()) for c in targets},
    })
    aggs = [("folder", "count"), ("error", "sum"), ("duration_s", "sum")]
    aggs += [(f"files_{c}", "sum") for c in targets]
    grouped = table.group_by("folder").aggregate(aggs)
    names = {"folder_count": "files", "error_sum": "errors", "duration_s_sum": "audio_s",
             **{f"files_{c}_sum": f"files_{c}" for c in targets}}
    grouped = grouped.rename_columns([names.get(n, n) for n in grouped.column_names])
    if events is not None and events.num_rows:
        ev = pa.table({"folder": _folder_column(events.column("path"), roots),
                       "label": events.column("label")})
        counts = ev.group_by(["folder", "label"]).aggregate([("label", "count")])
        per = {(r["folder"], r["label"]): r["label_count"] for r in _rows(counts)}
    else:
        per = {}
    rows = sorted(_rows(grouped), key=lambda r: (-sum(r[f"files_{c}"] for c in targets),
                                                 -r["files"], r["folder"]))
    for r in rows:
        for c in targets:
            r[f"events_{c}"] = per.get((r["folder"], c), 0)
    return rows[:MAX_FOLDERS], len(rows)


def _times(files: Any, events: Any | None, targets: list[str]
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per hour of day and per day: files started, audio, events per class (by wall clock)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "recorded_at" not in files.column_names:
        return [], []
    known = files.filter(pc.is_valid(files.column("recorded_at")))
    if not known.num_rows or not pa.types.is_timestamp(known.schema.field("recorded_at").type):
        return [], []
    ts = known.column("recorded_at")
    start_times = None
    if events is not None and events.num_rows:
        if "start_time" in events.column_names and \
                pa.types.is_timestamp(events.schema.field("start_time").type):
            start_times = events.column("start_time")
        else:
            where = pc.index_in(events.column("path"), value_set=known.column("path"))
            base = pc.take(ts, where)
            offset = pc.cast(pc.cast(pc.multiply(events.column("start_s"), 1e6), pa.int64()),
                             pa.duration("us"))
            start_times = pc.add(pc.cast(base, pa.timestamp("us", ts.type.tz)), offset)
    out = []
    for key, fn in (("hour", pc.hour), ("day", lambda t: pc.strftime(t, format="%Y-%m-%d"))):
        frame = pa.table({key: fn(ts), "duration_s": pc.fill_null(known.column("duration_s"), 0.0)})
        rows = {r[key]: {key: r[key], "files": r["duration_s_count"], "audio_s": r["duration_s_sum"]}
                for r in _rows(frame.group_by(key).aggregate([("duration_s", "count"),
                                                              ("duration_s", "sum")]))}
        if start_times is not None:
            ev = pa.table({key: fn(start_times), "label": events.column("label")}).filter(
                pc.is_valid(fn(start_times)))
            for r in _rows(ev.group_by([key, "label"]).aggregate([("label", "count")])):
                rows.setdefault(r[key], {key: r[key], "files": 0, "audio_s": 0.0})
                rows[r[key]][f"events_{r['label']}"] = r["label_count"]
        for r in rows.values():
            for c in targets:
                r.setdefault(f"events_{c}", 0)
        if key == "hour":
            rows = {h: rows.get(h, {"hour": h, "files": 0, "audio_s": 0.0,
                                    **{f"events_{c}": 0 for c in targets}}) for h in range(24)}
        out.append([rows[k] for k in sorted(rows)])
    return out[0], out[1]


def _top_events(events: Any, targets: list[str], k: int) -> list[dict[str, Any]]:
    import pyarrow.compute as pc

    ev = events.filter(pc.and_(pc.is_in(events.column("label"), value_set=_array(targets)),
                               pc.is_valid(events.column("peak_confidence"))))
    if not ev.num_rows:
        return []
    idx = pc.select_k_unstable(ev, k=min(k, ev.num_rows),
                               sort_keys=[("peak_confidence", "descending")])
    cols = [c for c in ("path", "label", "start_s", "end_s", "peak_confidence", "start_time")
            if c in ev.column_names]
    rows = _rows(ev.take(idx).select(cols))
    return sorted(rows, key=lambda r: (-r["peak_confidence"], r["path"], r["start_s"]))


def _wall_clock(rows: list[dict[str, Any]], files: Any) -> list[dict[str, Any]]:
    """``start_time`` of each event row, from its file's ``recorded_at`` when not given."""
    import pyarrow.compute as pc

    if not rows or "recorded_at" not in files.column_names:
        return rows
    paths = sorted({r["path"] for r in rows})
    mine = files.filter(pc.is_in(files.column("path"), value_set=_array(paths)))
    starts = {r["path"]: r["recorded_at"] for r in _rows(mine.select(["path", "recorded_at"]))}
    for r in rows:
        when = starts.get(r["path"])
        if r.get("start_time") is None and isinstance(when, datetime):
            r["start_time"] = (when + timedelta(seconds=r["start_s"])).isoformat(
                sep=" ", timespec="seconds")
    return rows


def _top_files(files: Any, events: Any | None, targets: list[str], background: str,
               k: int) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    info_cols = [c for c in ("path", "label", "duration_s", "confidence", "recorded_at")
                 if c in files.column_names]
    if events is not None and events.num_rows:
        ev = events.filter(pc.is_in(events.column("label"), value_set=_array(targets)))
        ev = ev.append_column("event_s", pc.subtract(ev.column("end_s"), ev.column("start_s")))
        per = ev.group_by("path").aggregate([("event_s", "count"), ("event_s", "sum"),
                                             ("start_s", "min")])
        if not per.num_rows:
            return []
        idx = pc.sort_indices(per, sort_keys=[("event_s_count", "descending"),
                                              ("event_s_sum", "descending"), ("path", "ascending")])
        top = _rows(per.take(idx.slice(0, k)))
        paths = [r["path"] for r in top]
        info = {r["path"]: r for r in _rows(files.filter(
            pc.is_in(files.column("path"), value_set=_array(paths))).select(info_cols))}
        mine = ev.filter(pc.is_in(ev.column("path"), value_set=_array(paths)))
        counts = {(r["path"], r["label"]): r["label_count"]
                  for r in _rows(mine.group_by(["path", "label"]).aggregate([("label", "count")]))}
        return [{**info.get(r["path"], {"path": r["path"]}), "n_events": r["event_s_count"],
                 "event_s": r["event_s_sum"], "first_onset_s": r["start_s_min"],
                 **{f"n_{c}": counts.get((r["path"], c), 0) for c in targets}} for r in top]
    flagged = files.filter(pc.and_(pc.equal(files.column("status"), "ok"),
                                   pc.and_(pc.is_valid(files.column("label")),
                                           pc.not_equal(files.column("label"), background))))
    if not flagged.num_rows:
        return []
    conf = flagged.column("confidence") if "confidence" in flagged.column_names else \
        pa.nulls(flagged.num_rows, pa.float64())
    flagged = flagged.append_column("_conf", pc.fill_null(conf, 0.0))
    idx = pc.sort_indices(flagged, sort_keys=[("_conf", "descending"), ("path", "ascending")])
    return [{**r, "n_events": 0, "event_s": 0.0, "first_onset_s": None,
             **{f"n_{c}": 0 for c in targets}}
            for r in _rows(flagged.take(idx.slice(0, k)).select(info_cols))]


def _by_label(values: Any, labels: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    table = pa.table({"v": values, "label": labels}).filter(pc.is_valid(values))
    for label in pc.unique(table.column("label")).to_pylist():
        if label is not None:
            out[label] = table.filter(pc.equal(table.column("label"), label)).column("v") \
                .to_numpy()
    return out


def load_report(results: Path, *, top_files: int = 10, top_events: int = TOP_EVENTS
                ) -> ReportData:
    """Reads a file table (and its events/segments tables, if any) into :class:`ReportData`.

    Raises:
        ScannerError: ``results`` is unreadable or not a scanner file table.
    """
    import pyarrow.compute as pc

    from scanner.events.segments import DEFAULT_BACKGROUND, DEFAULT_THRESHOLD, events_path, segments_path

    results = Path(results)
    files = _read(results)
    if "status" not in files.column_names:
        raise ScannerError(f"{results} is not a results table of 'scanner scan' (no status "
                           f"column); pass the file table, not the events or segments table")
    meta = table_metadata(results, files)
    settings = _settings(meta)
    background = settings.get("background", DEFAULT_BACKGROUND)
    classes = list(meta.get("classes") or [c[5:] for c in files.column_names
                                           if c.startswith("prob_")])
    ev_file = events_path(results)
    events = _read(ev_file) if ev_file.is_file() else None
    labels = set(pc.unique(files.column("label")).to_pylist()) - {None}
    if events is not None:
        labels |= set(pc.unique(events.column("label")).to_pylist())
    classes += sorted(labels - set(classes))
    targets = [c for c in classes if c != background]
    thresholds = {c: float((settings.get("thresholds") or {}).get(c, DEFAULT_THRESHOLD))
                  for c in targets}
    roots = _roots(meta, files)

    ok_mask = pc.equal(files.column("status"), "ok")
    ok = files.filter(ok_mask)
    errors = files.filter(pc.invert(ok_mask))
    flags = _flags(files, events, targets)

    label_rows = []
    if ok.num_rows:
        agg = ok.group_by("label").aggregate([("path", "count"), ("duration_s", "sum"),
                                              ("confidence", "mean")])
        got = {r["label"]: r for r in _rows(agg)}
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
        ev_stats = {r["label"]: r for r in _rows(agg)}
    durations = pc.fill_null(files.column("duration_s"), 0.0)
    class_rows = [{"label": c, "files": pc.sum(pc.cast(flags[c], "int64")).as_py() or 0,
                   "audio_s": pc.sum(pc.if_else(flags[c], durations, 0.0)).as_py() or 0.0,
                   "events": ev_stats.get(c, {}).get("event_s_count", 0),
                   "event_s": ev_stats.get(c, {}).get("event_s_sum", 0.0)} for c in targets]
    folder_rows, n_folders = _by_folder(files, flags, events, targets, roots)
    hour_rows, day_rows = _times(files, events, targets)
    kinds = errors.group_by("error_kind").aggregate([("path", "count")]) if errors.num_rows \
        else None
    errors_by_kind = dict(sorted(((r["error_kind"] or "unknown", r["path_count"])
                                  for r in _rows(kinds)), key=lambda kv: (-kv[1], kv[0]))) \
        if kinds is not None else {}
    err_cols = [c for c in ("path", "error_kind", "error") if c in errors.column_names]
    top = _top_files(files, events, targets, background, top_files)
    top_paths = [t["path"] for t in top]
    events_by_path: dict[str, list[dict[str, Any]]] = {p: [] for p in top_paths}
    if events is not None and top_paths:
        mine = events.filter(pc.is_in(events.column("path"), value_set=_array(top_paths)))
        for r in _rows(mine.take(pc.sort_indices(mine, sort_keys=[("path", "ascending"),
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
        errors=_rows(errors.slice(0, MAX_ERRORS).select(err_cols)),
        top_events=_wall_clock(_top_events(events, targets, top_events), files)
        if events is not None else [],
        top_files=top,
        confidences=_by_label(ok.column("confidence"), ok.column("label"))
        if "confidence" in ok.column_names else {},
        event_confidences=_by_label(events.column("peak_confidence"), events.column("label"))
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
    for row in _rows(table):
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
    try:
        return render(data, out, timelines=timelines, generated=datetime.now())
    except OSError as e:
        raise ScannerError(f"cannot write the report {out}: {e.strerror or e}") from e
