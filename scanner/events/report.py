"""A report a person reads instead of the table: counts, hours, confidences, errors, timelines.

:func:`load_report` gathers the numbers from a file table and, when the scan wrote them
(``--segments``), its events and segments tables beside it; :func:`write_report` renders
them as one self-contained HTML page (plots embedded as base64 PNGs) or as Markdown with
PNG files in a folder beside it. Plots use matplotlib's ``Figure`` directly (Agg, no
pyplot state), imported only here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.errors import ScannerError
from scanner.events.export import read_table

log = logging.getLogger(__name__)

COLOURS = {"screaming": "#d62728", "cry": "#ff7f0e", "not_screaming": "#7f7f7f"}
OTHER_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class ReportData:
    """The numbers of a report (what the page shows, and what tests check).

    Attributes:
        label_rows: Per file-level label: ``label``, ``files``, ``audio_s``, ``mean_confidence``.
        event_rows: Per event label: ``label``, ``events``, ``event_s``, ``files``.
        top_files: Files with the most events (or, without events, the most confident
            non-background files): ``path``, ``label``, ``duration_s``, ``n_events``,
            ``event_s``, ``first_onset_s`` and ``n_<label>`` per event label.
        confidences: File-level confidence values by label.
        event_confidences: Events' peak confidences by label.
        events_by_path: The events of each top file (for the timelines).
        segments_by_path: The windows of each top file, when a segments table exists.
    """

    results: Path
    classes: list[str]
    background: str
    n_files: int
    n_ok: int
    n_errors: int
    audio_s: float
    label_rows: list[dict[str, Any]]
    has_events: bool
    event_rows: list[dict[str, Any]]
    errors_by_kind: dict[str, int]
    errors: list[dict[str, Any]]
    top_files: list[dict[str, Any]]
    confidences: dict[str, list[float]]
    event_confidences: dict[str, list[float]]
    events_by_path: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    segments_by_path: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _metadata(results: Path, table: Any) -> dict[str, Any]:
    from scanner.output.writer import sidecar_path

    raw = (table.schema.metadata or {}).get(b"scanner")
    try:
        if raw:
            return json.loads(raw)
        if sidecar_path(results).is_file():
            return json.loads(sidecar_path(results).read_text())
    except (json.JSONDecodeError, OSError) as e:
        log.warning("ignoring unreadable metadata of %s: %s", results, e)
    return {}


def _f(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _read_segments(path: Path, paths: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The segment rows of ``paths`` only (a segments table can be far larger than memory)."""
    if not paths:
        return {}
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path, filters=[("path", "in", paths)])
        else:
            import pyarrow as pa
            import pyarrow.compute as pc

            table = read_table(path)
            table = table.filter(pc.is_in(table.column("path"), pa.array(paths)))
    except Exception as e:  # noqa: BLE001 - timelines are optional; the report goes on
        log.warning("cannot read segments %s (%s); timelines show events only", path, e)
        return {}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        out[row["path"]].append(row)
    return {p: sorted(rows, key=lambda r: r["start_s"]) for p, rows in out.items()}


def load_report(results: Path, *, top_files: int = 10, max_errors: int = 50) -> ReportData:
    """Reads a file table (and its events/segments tables, if any) into :class:`ReportData`.

    Raises:
        ScannerError: ``results`` is unreadable or not a scanner file table.
    """
    from scanner.events.segments import DEFAULT_BACKGROUND, events_path, segments_path

    results = Path(results)
    table = read_table(results)
    if "status" not in table.column_names:
        raise ScannerError(f"{results} is not a results table of 'scanner scan' (no status "
                           f"column); pass the file table, not the events or segments table")
    meta = _metadata(results, table)
    rows = table.to_pylist()
    seg_options = meta.get("detection") or {}
    background = seg_options.get("background", DEFAULT_BACKGROUND)
    classes = list(meta.get("classes") or [c[5:] for c in table.column_names
                                           if c.startswith("prob_")])
    ok = [r for r in rows if r["status"] == "ok"]
    errors = [r for r in rows if r["status"] != "ok"]

    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        by_label[r.get("label") or "?"].append(r)
    order = [c for c in classes if c in by_label] + sorted(set(by_label) - set(classes))
    label_rows, confidences = [], {}
    for label in order:
        group = by_label[label]
        confs = [c for c in (_f(r.get("confidence")) for r in group) if c is not None]
        confidences[label] = confs
        label_rows.append({"label": label, "files": len(group),
                           "audio_s": sum(_f(r.get("duration_s")) or 0.0 for r in group),
                           "mean_confidence": sum(confs) / len(confs) if confs else None})

    ev_file = events_path(results)
    has_events = ev_file.is_file()
    events = read_table(ev_file).to_pylist() if has_events else []
    ev_by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    event_confidences: dict[str, list[float]] = defaultdict(list)
    for e in events:
        ev_by_path[e["path"]].append(e)
        if _f(e.get("peak_confidence")) is not None:
            event_confidences[e["label"]].append(float(e["peak_confidence"]))
    ev_labels = [c for c in classes if any(e["label"] == c for e in events)]
    ev_labels += sorted({e["label"] for e in events} - set(ev_labels))
    event_rows = [{"label": lab,
                   "events": sum(1 for e in events if e["label"] == lab),
                   "event_s": sum(e["end_s"] - e["start_s"] for e in events if e["label"] == lab),
                   "files": len({e["path"] for e in events if e["label"] == lab})}
                  for lab in ev_labels]

    info = {r["path"]: r for r in rows}
    if has_events:
        ranked = sorted(ev_by_path, key=lambda p: (-len(ev_by_path[p]),
                                                   -sum(e["end_s"] - e["start_s"]
                                                        for e in ev_by_path[p]), p))
    else:
        flagged = [r for r in ok if r.get("label") not in (None, background)]
        ranked = [r["path"] for r in sorted(flagged, key=lambda r: (-(r.get("confidence") or 0),
                                                                    r["path"]))]
    top = []
    for p in ranked[:top_files]:
        evs = sorted(ev_by_path.get(p, []), key=lambda e: e["start_s"])
        row = {"path": p, "label": info.get(p, {}).get("label"),
               "duration_s": _f(info.get(p, {}).get("duration_s")), "n_events": len(evs),
               "event_s": sum(e["end_s"] - e["start_s"] for e in evs),
               "first_onset_s": evs[0]["start_s"] if evs else None}
        row.update({f"n_{lab}": sum(1 for e in evs if e["label"] == lab) for lab in ev_labels})
        top.append(row)
    top_paths = [t["path"] for t in top]
    seg_file = segments_path(results)
    segments = _read_segments(seg_file, top_paths) if seg_file.is_file() else {}
    return ReportData(
        results=results, classes=classes, background=background, n_files=len(rows),
        n_ok=len(ok), n_errors=len(errors),
        audio_s=sum(_f(r.get("duration_s")) or 0.0 for r in ok), label_rows=label_rows,
        has_events=has_events, event_rows=event_rows,
        errors_by_kind=dict(Counter(r.get("error_kind") or "unknown" for r in errors)
                            .most_common()),
        errors=[{"path": r["path"], "error_kind": r.get("error_kind"), "error": r.get("error")}
                for r in errors[:max_errors]],
        top_files=top, confidences=confidences,
        event_confidences={lab: event_confidences.get(lab, []) for lab in ev_labels},
        events_by_path={p: ev_by_path.get(p, []) for p in top_paths},
        segments_by_path=segments, metadata=meta)


# -- plots ----------------------------------------------------------------------------------

def _colour(label: str, labels: list[str]) -> str:
    if label in COLOURS:
        return COLOURS[label]
    return OTHER_COLOURS[labels.index(label) % len(OTHER_COLOURS)] if label in labels \
        else OTHER_COLOURS[0]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def confidence_plot(values: dict[str, list[float]], title: str) -> bytes:
    """One confidence histogram in [0, 1] per label, side by side, as PNG bytes."""
    from matplotlib.figure import Figure

    labels = [k for k, v in values.items() if v] or ["(none)"]
    fig = Figure(figsize=(min(3.2 * len(labels), 12), 2.6), layout="constrained")
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    bins = [i / 20 for i in range(21)]
    for ax, label in zip(axes, labels, strict=True):
        vals = values.get(label, [])
        if vals:
            ax.hist(vals, bins=bins, color=_colour(label, labels), edgecolor="white")
        ax.set_xlim(0, 1)
        ax.set_title(f"{label} ({len(vals)})", fontsize="medium")
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("count")
    fig.suptitle(title)
    return _png(fig)


def timeline_plot(path: str, duration_s: float | None, events: list[dict[str, Any]],
                  segments: list[dict[str, Any]], classes: list[str], background: str) -> bytes:
    """One file: window probabilities over time (when known) with its events shaded."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.4))
    ax = fig.subplots()
    targets = [c for c in classes if c != background] or classes
    for e in events:
        ax.axvspan(e["start_s"], e["end_s"], color=_colour(e["label"], targets), alpha=0.25,
                   linewidth=0)
    if segments:
        t = [(s["start_s"] + s["end_s"]) / 2 for s in segments]
        for c in targets:
            if f"prob_{c}" in segments[0]:
                ax.plot(t, [s[f"prob_{c}"] for s in segments], label=f"P({c})",
                        color=_colour(c, targets), linewidth=1.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.legend(loc="upper right", fontsize="small")
    else:
        ax.set_yticks([])
    end = duration_s or max([e["end_s"] for e in events] + [1.0])
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_title(Path(path).name + "  (shaded: events)", fontsize="medium", loc="left")
    return _png(fig)


# -- rendering ------------------------------------------------------------------------------

def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _num(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _tables(data: ReportData) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report, as text cells."""
    ev_labels = [r["label"] for r in data.event_rows]
    tables = [
        ("Overview", ["files", "ok", "errors", "audio (h)", "audio (h:mm:ss)"],
         [[str(data.n_files), str(data.n_ok), str(data.n_errors), _hours(data.audio_s),
           _hms(data.audio_s)]]),
        ("Files by label", ["label", "files", "audio (h)", "audio (h:mm:ss)", "mean confidence"],
         [[r["label"], str(r["files"]), _hours(r["audio_s"]), _hms(r["audio_s"]),
           _num(r["mean_confidence"])] for r in data.label_rows]),
    ]
    if data.has_events:
        tables.append(("Events by label",
                       ["label", "events", "files", "event time (s)", "event time (h:mm:ss)"],
                       [[r["label"], str(r["events"]), str(r["files"]), _num(r["event_s"], 1),
                         _hms(r["event_s"])] for r in data.event_rows]))
    title = "Files with the most events" if data.has_events else \
        "Most confident files (no events table: scan with --segments for time stamps)"
    tables.append((title, ["path", "file label", "duration (s)", "events",
                           *[f"{lab} events" for lab in ev_labels], "event time (s)",
                           "first onset (s)"],
                   [[t["path"], t["label"] or "", _num(t["duration_s"], 1), str(t["n_events"]),
                     *[str(t[f"n_{lab}"]) for lab in ev_labels], _num(t["event_s"], 1),
                     _num(t["first_onset_s"], 1)] for t in data.top_files]))
    tables.append(("Errors by kind", ["kind", "files"],
                   [[k, str(n)] for k, n in data.errors_by_kind.items()] or [["none", "0"]]))
    if data.errors:
        tables.append((f"Errors (first {len(data.errors)})", ["path", "kind", "error"],
                       [[e["path"], e["error_kind"] or "", e["error"] or ""]
                        for e in data.errors]))
    return tables


def _figures(data: ReportData, timelines: int) -> list[tuple[str, str, bytes]]:
    """(section, caption, PNG bytes) for every plot of the report."""
    figs = [("Confidence", "File-level confidence by label",
             confidence_plot(data.confidences, "file-level confidence"))]
    if data.has_events:
        figs.append(("Confidence", "Peak confidence of events by label",
                     confidence_plot(data.event_confidences, "event peak confidence")))
    for t in data.top_files[:timelines]:
        p = t["path"]
        figs.append(("Timelines", p, timeline_plot(
            p, t["duration_s"], data.events_by_path.get(p, []),
            data.segments_by_path.get(p, []), data.classes, data.background)))
    return figs


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
       "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
       "th{background:#f3f3f3}td.path{font-family:monospace;font-size:90%}img{max-width:100%}")


def _html(data: ReportData, figs: list[tuple[str, str, bytes]]) -> str:
    e = html.escape
    meta = data.metadata
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>scanner report: {e(data.results.name)}</title><style>{CSS}</style>"
             "</head><body>", f"<h1>Scan report: {e(str(data.results))}</h1>"]
    if meta:
        heads = ", ".join(h.get("name", "?") for h in meta.get("heads", []))
        parts.append(f"<p>Created {e(str(meta.get('created', '?')))} by scanner "
                     f"{e(str(meta.get('tool_version', '?')))}; classes "
                     f"{e(', '.join(meta.get('classes', [])))}; heads {e(heads)}.</p>")
    for title, header, rows in _tables(data):
        parts.append(f"<h2>{e(title)}</h2><table><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(
                f"<td class='path'>{e(c)}</td>" if h == "path" else f"<td>{e(c)}</td>"
                for h, c in zip(header, row, strict=True)) + "</tr>")
        parts.append("</table>")
    section = None
    for sec, caption, png in figs:
        if sec != section:
            parts.append(f"<h2>{e(sec)}</h2>")
            section = sec
        parts.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'><figcaption>{e(caption)}"
                     "</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(data: ReportData, figs: list[tuple[str, str, bytes]], folder: Path,
              rel: str) -> str:
    lines = [f"# Scan report: {data.results}", ""]
    for title, header, rows in _tables(data):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        lines.append("")
    section = None
    for i, (sec, caption, png) in enumerate(figs):
        if sec != section:
            lines += [f"## {sec}", ""]
            section = sec
        name = f"figure-{i + 1:02d}.png"
        (folder / name).write_bytes(png)
        lines += [f"![{_md_cell(caption)}]({rel}/{name})", "", _md_cell(caption), ""]
    return "\n".join(lines)


def write_report(results: Path, out: Path, *, top_files: int = 10,
                 timelines: int = 5) -> Path:
    """Writes the report of ``results`` to ``out``: ``.html`` (self-contained) or ``.md``.

    A Markdown report puts its PNGs in ``<out stem>_files/`` beside it.

    Args:
        results: A file table written by ``scanner scan``.
        out: The report's path; its suffix picks the format.
        top_files: Rows in the "files with the most events" table.
        timelines: Timeline plots, for the first of those files.

    Raises:
        ScannerError: Unreadable results or an unknown report suffix.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".md"):
        raise ScannerError(f"report {out} must end in .html or .md")
    data = load_report(results, top_files=top_files)
    figs = _figures(data, timelines)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".md":
        folder = out.with_name(f"{out.stem}_files")
        folder.mkdir(exist_ok=True)
        text = _markdown(data, figs, folder, folder.name)
    else:
        text = _html(data, figs)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
