"""The report's aggregations: pyarrow group-bys and filters over the file and events tables.

Each function takes whole tables and returns a few small rows (per class, folder, hour, day,
or the top-k), so no Python loop ever runs over every row of a table.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from scanner.events.annotations import scan_roots

MAX_FOLDERS = 200


def to_rows(table: Any) -> list[dict[str, Any]]:
    return table.to_pylist()  # only ever called on aggregated or sliced tables


def strings(values: Any) -> Any:
    import pyarrow as pa

    return pa.array(list(values), pa.string())


def flags(files: Any, events: Any | None, targets: list[str]) -> dict[str, Any]:
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


def roots_of(meta: dict[str, Any], files: Any) -> tuple[str, ...]:
    """The scanned roots (see :func:`scan_roots`), from the files' unique folders."""
    import pyarrow.compute as pc

    if not files.num_rows:
        return ()
    return scan_roots(meta, pc.unique(folder_column(files.column("path"), ())).to_pylist())


def folder_column(paths: Any, roots: tuple[str, ...]) -> Any:
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


def by_folder(files: Any, flags: dict[str, Any], events: Any | None, targets: list[str],
               roots: tuple[str, ...]) -> tuple[list[dict[str, Any]], int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table({
        "folder": folder_column(files.column("path"), roots),
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
        ev = pa.table({"folder": folder_column(events.column("path"), roots),
                       "label": events.column("label")})
        counts = ev.group_by(["folder", "label"]).aggregate([("label", "count")])
        per = {(r["folder"], r["label"]): r["label_count"] for r in to_rows(counts)}
    else:
        per = {}
    rows = sorted(to_rows(grouped), key=lambda r: (-sum(r[f"files_{c}"] for c in targets),
                                                 -r["files"], r["folder"]))
    for r in rows:
        for c in targets:
            r[f"events_{c}"] = per.get((r["folder"], c), 0)
    return rows[:MAX_FOLDERS], len(rows)


def _day(ts: Any) -> Any:
    """The calendar day of each timestamp, in its own zone (much faster than strftime)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    local = pc.local_timestamp(ts) if getattr(ts.type, "tz", None) else ts
    return pc.cast(pc.floor_temporal(local, unit="day"), pa.date32())


def by_time(files: Any, events: Any | None, targets: list[str]
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
            micros = pc.round(pc.multiply(events.column("start_s"), 1e6))
            offset = pc.cast(pc.cast(micros, pa.int64()), pa.duration("us"))
            start_times = pc.add(pc.cast(base, pa.timestamp("us", ts.type.tz)), offset)
    out = []
    for key, fn in (("hour", pc.hour), ("day", _day)):
        frame = pa.table({key: fn(ts), "duration_s": pc.fill_null(known.column("duration_s"), 0.0)})
        rows = {r[key]: {key: r[key], "files": r["duration_s_count"], "audio_s": r["duration_s_sum"]}
                for r in to_rows(frame.group_by(key).aggregate([("duration_s", "count"),
                                                              ("duration_s", "sum")]))}
        if start_times is not None:
            when = fn(start_times)
            ev = pa.table({key: when, "label": events.column("label")}).filter(pc.is_valid(when))
            for r in to_rows(ev.group_by([key, "label"]).aggregate([("label", "count")])):
                rows.setdefault(r[key], {key: r[key], "files": 0, "audio_s": 0.0})
                rows[r[key]][f"events_{r['label']}"] = r["label_count"]
        for r in rows.values():
            for c in targets:
                r.setdefault(f"events_{c}", 0)
        if key == "hour":
            rows = {h: rows.get(h, {"hour": h, "files": 0, "audio_s": 0.0,
                                    **{f"events_{c}": 0 for c in targets}}) for h in range(24)}
        else:
            for r in rows.values():
                r["day"] = r["day"].isoformat()
        out.append([rows[k] for k in sorted(rows)])
    return out[0], out[1]


def top_events(events: Any, targets: list[str], k: int) -> list[dict[str, Any]]:
    import pyarrow.compute as pc

    ev = events.filter(pc.and_(pc.is_in(events.column("label"), value_set=strings(targets)),
                               pc.is_valid(events.column("peak_confidence"))))
    if not ev.num_rows:
        return []
    idx = pc.select_k_unstable(ev, k=min(k, ev.num_rows),
                               sort_keys=[("peak_confidence", "descending")])
    cols = [c for c in ("path", "label", "start_s", "end_s", "peak_confidence", "start_time")
            if c in ev.column_names]
    rows = to_rows(ev.take(idx).select(cols))
    return sorted(rows, key=lambda r: (-r["peak_confidence"], r["path"], r["start_s"]))


def wall_clock(rows: list[dict[str, Any]], files: Any) -> list[dict[str, Any]]:
    """``start_time`` of each event row, from its file's ``recorded_at`` when not given."""
    import pyarrow.compute as pc

    if not rows or "recorded_at" not in files.column_names:
        return rows
    paths = sorted({r["path"] for r in rows})
    mine = files.filter(pc.is_in(files.column("path"), value_set=strings(paths)))
    starts = {r["path"]: r["recorded_at"] for r in to_rows(mine.select(["path", "recorded_at"]))}
    for r in rows:
        when = starts.get(r["path"])
        if r.get("start_time") is None and isinstance(when, datetime):
            r["start_time"] = (when + timedelta(seconds=r["start_s"])).isoformat(
                sep=" ", timespec="seconds")
    return rows


def top_files(files: Any, events: Any | None, targets: list[str], background: str,
               k: int) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    info_cols = [c for c in ("path", "label", "duration_s", "confidence", "recorded_at")
                 if c in files.column_names]
    if events is not None and events.num_rows:
        ev = events.filter(pc.is_in(events.column("label"), value_set=strings(targets)))
        ev = ev.append_column("event_s", pc.subtract(ev.column("end_s"), ev.column("start_s")))
        per = ev.group_by("path").aggregate([("event_s", "count"), ("event_s", "sum"),
                                             ("start_s", "min")])
        if not per.num_rows:
            return []
        idx = pc.sort_indices(per, sort_keys=[("event_s_count", "descending"),
                                              ("event_s_sum", "descending"), ("path", "ascending")])
        top = to_rows(per.take(idx.slice(0, k)))
        paths = [r["path"] for r in top]
        info = {r["path"]: r for r in to_rows(files.filter(
            pc.is_in(files.column("path"), value_set=strings(paths))).select(info_cols))}
        mine = ev.filter(pc.is_in(ev.column("path"), value_set=strings(paths)))
        counts = {(r["path"], r["label"]): r["label_count"]
                  for r in to_rows(mine.group_by(["path", "label"]).aggregate([("label", "count")]))}
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
            for r in to_rows(flagged.take(idx.slice(0, k)).select(info_cols))]


def by_label(values: Any, labels: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    table = pa.table({"v": values, "label": labels}).filter(pc.is_valid(values))
    for label in pc.unique(table.column("label")).to_pylist():
        if label is not None:
            out[label] = table.filter(pc.equal(table.column("label"), label)).column("v") \
                .to_numpy()
    return out
