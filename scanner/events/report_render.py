"""Renders :class:`~scanner.events.report.ReportData` with the Jinja2 templates beside this file.

The HTML template autoescapes everything; the Markdown one escapes every text value with
:func:`scanner.escape.escape_markdown` (``finalize``), so a file name can show ``<script>``
but never run it. Numbers are formatted here and marked safe. Links: a ``file://`` URI per
file, and, when a ``review/`` folder exists beside the report, each top event links to
``review/index.html#<percent-encoded path>@<start_s>`` (:func:`review_anchor`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scanner.errors import OutputError
from scanner.events.report import ReportData
from scanner.events.report_plots import confidence_plot, counts_plot, hms, timeline_plot

TEMPLATES = Path(__file__).parent / "templates"
GENERATOR = "scanner report"  # marks a page this tool wrote: only such a page is replaced
REVIEW_DIR = "review"


@dataclass(frozen=True)
class Cell:
    """One table cell: text, an optional link, and whether it is a path (monospace)."""

    text: Any
    href: str | None = None
    path: bool = False


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]]
    note: str = ""


@dataclass(frozen=True)
class Figure:
    section: str
    caption: str
    png: bytes


def review_anchor(path: str, start_s: float) -> Any:
    """``review/index.html#<path>@<start_s>``: the path percent-encoded, ``start_s`` as
    JavaScript prints the number (``10.24``, ``3``), so the review page can build the
    same id from its own data."""
    number = repr(float(start_s))
    number = number[:-2] if number.endswith(".0") else number
    return _url(f"{REVIEW_DIR}/index.html#{quote(path, safe='/')}@{number}")


def file_uri(path: str) -> Any:
    return _url(Path(os.path.abspath(path)).as_uri())


def _url(text: str) -> Any:
    """A URL this module built from percent-encoded parts: safe in HTML and Markdown as is."""
    from markupsafe import Markup

    return Markup(text)


def _num(value: Any, digits: int = 2) -> Any:
    from markupsafe import Markup

    return Markup("") if value is None else Markup(f"{value:.{digits}f}")


def _int(value: Any) -> Any:
    from markupsafe import Markup

    return Markup(str(int(value or 0)))


def _hours(seconds: float) -> Any:
    from markupsafe import Markup

    return Markup(f"{seconds / 3600:.2f} ({hms(seconds)})")


def _path(path: str) -> Cell:
    return Cell(path, file_uri(path), True)


def _settings(data: ReportData) -> Table | None:
    meta = data.metadata
    if not meta:
        return None
    rows: list[list[Cell]] = []

    def add(key: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            rows.append([Cell(key), Cell(text)])

    add("created", meta.get("created"))
    add("scanner version", meta.get("tool_version"))
    add("command", meta.get("command") or meta.get("command_line"))
    add("roots", list(data.roots))
    add("classes", ", ".join(data.classes))
    add("backbones", ", ".join(f"{b.get('name', '?')} ({str(b.get('sha256', ''))[:12]})"
                               for b in meta.get("backbones") or [] if isinstance(b, dict)))
    add("heads", ", ".join(str(h.get("name", "?")) for h in meta.get("heads") or []
                           if isinstance(h, dict)))
    add("detection thresholds", {c: round(t, 3) for c, t in data.thresholds.items()})
    options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    for key, value in sorted(options.items()):
        if key not in ("command", "roots"):  # shown above
            add(f"option {key}", value)
    return Table("Scan settings", ["setting", "value"], rows)


def tables(data: ReportData, *, review: bool) -> list[Table]:
    """Every table of the report, in page order."""
    t = data.targets
    out = [Table("Overview", ["files", "ok", "errors", "audio h (h:mm:ss)", "folders", "events"],
                 [[Cell(_int(data.n_files)), Cell(_int(data.n_ok)), Cell(_int(data.n_errors)),
                   Cell(_hours(data.audio_s)), Cell(_int(data.n_folders)),
                   Cell(_int(sum(r["events"] for r in data.class_rows)))]])]
    settings = _settings(data)
    if settings:
        out.append(settings)
    how = "has an event of the class" if data.has_events else "is labelled with the class"
    out.append(Table("Files by class", ["class", "files", "% of ok files", "their audio h",
                                        "events", "event time (h:mm:ss)"],
                     [[Cell(r["label"]), Cell(_int(r["files"])),
                       Cell(_num(100 * r["files"] / data.n_ok if data.n_ok else None, 1)),
                       Cell(_hours(r["audio_s"])), Cell(_int(r["events"])),
                       Cell(hms(r["event_s"]))] for r in data.class_rows],
                     note=f"A file counts for a class when it {how}."))
    out.append(Table("Files by file-level label", ["label", "files", "audio h", "mean confidence"],
                     [[Cell(r["label"]), Cell(_int(r["files"])), Cell(_hours(r["audio_s"])),
                       Cell(_num(r["mean_confidence"]))] for r in data.label_rows]))
    more = f" (the first {len(data.folder_rows)} of {data.n_folders})" \
        if data.n_folders > len(data.folder_rows) else ""
    out.append(Table(f"Folders{more}", ["folder", "files", "errors", "audio h",
                                        *[f"{c} files" for c in t], *[f"{c} events" for c in t]],
                     [[Cell(r["folder"], None, True), Cell(_int(r["files"])),
                       Cell(_int(r["errors"])), Cell(_hours(r["audio_s"])),
                       *[Cell(_int(r[f"files_{c}"])) for c in t],
                       *[Cell(_int(r[f"events_{c}"])) for c in t]] for r in data.folder_rows],
                     note="Relative to " + ", ".join(data.roots) if data.roots else ""))
    for rows, key, title in ((data.hour_rows, "hour", "By hour of day"),
                             (data.day_rows, "day", "By day")):
        if rows:
            out.append(Table(title, [key, "files started", "audio h", *[f"{c} events" for c in t]],
                             [[Cell(r[key]), Cell(_int(r["files"])), Cell(_hours(r["audio_s"])),
                               *[Cell(_int(r[f"events_{c}"])) for c in t]] for r in rows
                              if r["files"] or any(r[f"events_{c}"] for c in t)],
                             note="Wall-clock time of the recordings (recorded_at); events by "
                                  "their own start time."))
    if data.top_events:
        clock = any(e.get("start_time") for e in data.top_events)
        out.append(Table("Most confident events",
                         ["path", "class", "start (h:mm:ss)", "start (s)", "length (s)",
                          "peak confidence", *(["wall clock"] if clock else []),
                          *(["review"] if review else [])],
                         [[_path(e["path"]), Cell(e["label"]), Cell(hms(e["start_s"])),
                           Cell(_num(e["start_s"])), Cell(_num(e["end_s"] - e["start_s"], 1)),
                           Cell(_num(e["peak_confidence"], 3)),
                           *([Cell(str(e.get("start_time") or ""))] if clock else []),
                           *([Cell("listen", review_anchor(e["path"], e["start_s"]))]
                             if review else [])] for e in data.top_events],
                         note="" if review else "Run 'scanner review' with -o review/ beside "
                                                "this report to link each event to its card."))
    title = "Files with the most events" if data.has_events else \
        "Most confident files (no events table: scan with --segments for time stamps)"
    out.append(Table(title, ["path", "file label", "duration", "events",
                             *[f"{c} events" for c in t], "event time (s)", "first onset (s)"],
                     [[_path(f["path"]), Cell(f.get("label") or ""), Cell(hms(f.get("duration_s"))),
                       Cell(_int(f["n_events"])), *[Cell(_int(f[f"n_{c}"])) for c in t],
                       Cell(_num(f["event_s"], 1)), Cell(_num(f["first_onset_s"], 1))]
                      for f in data.top_files]))
    out.append(Table("Errors by kind", ["kind", "files"],
                     [[Cell(k), Cell(_int(n))] for k, n in data.errors_by_kind.items()]
                     or [[Cell("none"), Cell(_int(0))]]))
    if data.errors:
        out.append(Table(f"Errors (first {len(data.errors)})", ["path", "kind", "error"],
                         [[_path(e["path"]), Cell(e.get("error_kind") or ""),
                           Cell(e.get("error") or "")] for e in data.errors]))
    return out


def figures(data: ReportData, timelines: int) -> list[Figure]:
    """Every plot of the report."""
    figs = [Figure("Confidence", "File-level confidence by label",
                   confidence_plot(data.confidences, "file-level confidence"))]
    if data.has_events:
        figs.append(Figure("Confidence", "Peak confidence of events by label",
                           confidence_plot({c: data.event_confidences.get(c, [])
                                            for c in data.targets}, "event peak confidence")))
    if data.hour_rows:
        figs.append(Figure("Time of day", "Events per hour of day (recording clock)",
                           counts_plot(data.hour_rows, "hour", data.targets, "events per hour")))
    if len(data.day_rows) > 1:
        figs.append(Figure("Time of day", "Events per day",
                           counts_plot(data.day_rows, "day", data.targets, "events per day")))
    for f in data.top_files[:timelines]:
        p = f["path"]
        figs.append(Figure("Timelines", p, timeline_plot(
            p, f.get("duration_s"), data.events_by_path.get(p, []),
            data.segments_by_path.get(p, []), data.targets, data.thresholds)))
    return figs


def _environment(markdown: bool) -> Any:
    import jinja2
    from markupsafe import Markup

    from scanner.escape import escape_markdown

    def finalize(value: Any) -> Any:
        if isinstance(value, Markup) or not isinstance(value, str):
            return value
        return escape_markdown(value)

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=not markdown,
                              finalize=finalize if markdown else None,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


def _ours(out: Path) -> bool:
    try:
        with out.open("r", encoding="utf-8", errors="replace") as f:
            return GENERATOR in f.read(4096)
    except OSError:
        return False


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".scanner-{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render(data: ReportData, out: Path, *, timelines: int, generated: datetime) -> Path:
    """Writes ``out`` (``.html`` or ``.md``, PNGs in ``<stem>_files/`` for Markdown).

    Raises:
        ScannerError: ``out`` exists and is not a report this tool wrote.
        OSError: The write failed.
    """
    if out.exists() and not _ours(out):
        raise OutputError(f"{out} exists and is not a report scanner wrote; not replacing it "
                           "(choose another -o)")
    markdown = out.suffix.lower() == ".md"
    review = (out.parent / REVIEW_DIR).is_dir()
    figs = figures(data, timelines)
    context = {"data": data, "tables": tables(data, review=review), "generator": GENERATOR,
               "generated": generated.isoformat(timespec="seconds"), "results": str(data.results)}
    out.parent.mkdir(parents=True, exist_ok=True)
    if markdown:
        folder = out.with_name(f"{out.stem}_files")
        folder.mkdir(exist_ok=True)
        images = []
        for i, fig in enumerate(figs):
            name = f"figure-{i + 1:02d}.png"
            _atomic_write(folder / name, fig.png)
            images.append({"section": fig.section, "caption": fig.caption,
                           "src": _url(f"{quote(folder.name)}/{name}")})
        text = _environment(True).get_template("report.md.j2").render(**context, figures=images)
    else:
        images = [{"section": f.section, "caption": f.caption,
                   "src": "data:image/png;base64," + base64.b64encode(f.png).decode()}
                  for f in figs]
        text = _environment(False).get_template("report.html.j2").render(**context,
                                                                         figures=images)
    _atomic_write(out, text.encode("utf-8"))
    return out
