"""The report: numbers from pyarrow group-bys, its template, links, plots and hostile names."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from scanner.errors import ScannerError
from scanner.events.report import load_report, write_report
from scanner.events.report_render import review_anchor
from scanner.events.segments import SegmentConfig, events_path, segment_probs, segments_path
from scanner.output.writer import FORMATS, format_for

CLASSES = ("cry", "screaming", "not_screaming")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "/rec/site2/<img src=x onerror=alert(1)><script>alert(2)<\\script> $x$ $$|.wav"
META = {"classes": list(CLASSES), "created": "2026-01-01T00:00:00+00:00", "tool_version": "0.1",
        "roots": ["/rec"], "heads": [{"name": "default"}],
        "detection": {"background": "not_screaming", "thresholds": {"screaming": 0.6}},
        "options": {"batch_s": 60.0}}


def _write(path: Path, rows: list[dict], *, meta: dict | None = META) -> Path:
    table = pa.Table.from_pylist(rows)
    if meta is not None:
        table = table.replace_schema_metadata({b"scanner": json.dumps(meta).encode()})
    FORMATS.get(format_for(path))().write(table, path)
    return path


# (path, duration, recorded_at, [(label, first window, last window)]) on a 0.96 s / 0.48 s grid
PLAN = [("/rec/site1/a.wav", 30.0, datetime(2024, 5, 1, 3, 0, 0),
         [("screaming", 10, 20), ("screaming", 40, 50), ("cry", 25, 32)]),
        ("/rec/site1/b.wav", 20.0, datetime(2024, 5, 1, 22, 30, 0), [("cry", 5, 15)]),
        ("/rec/site2/c.wav", 12.0, datetime(2024, 5, 2, 3, 59, 58), [("cry", 2, 12)]),
        (EVIL, 3600.0, None, [("screaming", 100, 120)]),
        ("/rec/d.wav", 60.0, None, [])]


def _scan_like(tmp_path: Path, *, with_events: bool = True, suffix: str = ".parquet",
               has_columns: bool = False) -> Path:
    """A file table (one error), with events and segments made by segment_probs."""
    rng = np.random.default_rng(0)
    cfg = SegmentConfig(window_s=0.96, hop_s=0.48, smooth_windows=1, min_event_s=1.0)
    files, segments, events = [], [], []
    for path, dur, when, runs in PLAN:
        n = int((dur - 0.96) / 0.48) + 1
        starts = np.arange(n) * 0.48
        probs = np.tile([0.05, 0.05, 0.9], (n, 1)) + rng.uniform(0, 0.02, (n, 3))
        for label, i, j in runs:
            probs[i:j + 1] = [0.85, 0.1, 0.05] if label == "cry" else [0.05, 0.9, 0.05]
        probs /= probs.sum(axis=1, keepdims=True)
        fs = segment_probs(starts, starts + 0.96, probs, CLASSES, dur, cfg)
        seg_rows, ev_rows = fs.rows(path)
        segments += seg_rows
        events += ev_rows
        label = runs[0][0] if runs else "not_screaming"
        row = {"path": path, "status": "ok", "error_kind": None, "error": None, "duration_s": dur,
               "sample_rate": 16000, "label": label, "confidence": 0.9 if runs else 0.97,
               "recorded_at": when, **fs.summary}
        if has_columns:
            row.update({f"has_{c}": any(r[0] == c for r in runs) for c in CLASSES[:2]})
        files.append(row)
    files.append({"path": "/rec/site2/bad.mp3", "status": "error", "error_kind": "truncated",
                  "error": "file ends early <b>", "duration_s": None, "label": None})
    out = tmp_path / f"results{suffix}"
    _write(out, files)
    if with_events:
        _write(events_path(out), events)
        _write(segments_path(out), segments)
    return out


def _events(path: Path) -> list[dict]:
    return FORMATS.get(format_for(path))().read(path).to_pylist()


def test_numbers_come_from_the_tables(tmp_path):
    results = _scan_like(tmp_path)
    data = load_report(results)
    events = _events(events_path(results))
    assert (data.n_files, data.n_ok, data.n_errors) == (6, 5, 1)
    assert data.audio_s == pytest.approx(30 + 20 + 12 + 3600 + 60)
    by_label = {r["label"]: r for r in data.label_rows}
    assert by_label["cry"]["files"] == 2 and by_label["not_screaming"]["audio_s"] == 60.0
    by_class = {r["label"]: r for r in data.class_rows}
    # a.wav has both classes: it counts for each (file label alone would say screaming)
    assert by_class["cry"]["files"] == 3 and by_class["screaming"]["files"] == 2
    assert by_class["screaming"]["events"] == sum(e["label"] == "screaming" for e in events) == 3
    assert by_class["cry"]["event_s"] == pytest.approx(
        sum(e["end_s"] - e["start_s"] for e in events if e["label"] == "cry"))
    assert data.thresholds == {"cry": 0.5, "screaming": 0.6}
    assert data.errors_by_kind == {"truncated": 1}
    # most events first, then the longest event time: the hour-long file's 10 s scream
    assert [t["path"] for t in data.top_files][:2] == ["/rec/site1/a.wav", EVIL]
    assert data.top_files[0]["n_screaming"] == 2 and data.top_files[0]["n_cry"] == 1
    assert set(data.segments_by_path) == {p for p, *_ in PLAN[:4]}


def test_folders_relative_to_the_root(tmp_path):
    data = load_report(_scan_like(tmp_path))
    folders = {r["folder"]: r for r in data.folder_rows}
    assert set(folders) == {"site1", "site2", "."}
    assert folders["site1"]["files"] == 2 and folders["site1"]["files_cry"] == 2
    assert folders["site1"]["events_screaming"] == 2 and folders["site1"]["files_screaming"] == 1
    assert folders["site2"]["errors"] == 1 and folders["site2"]["files"] == 3
    assert folders["."]["audio_s"] == 60.0


def test_hours_and_days_from_recorded_at(tmp_path):
    data = load_report(_scan_like(tmp_path))
    hours = {r["hour"]: r for r in data.hour_rows}
    assert len(hours) == 24
    assert hours[3]["files"] == 2 and hours[22]["files"] == 1 and hours[4]["files"] == 0
    # c.wav starts at 03:59:58; its cry event ~1 s in: still hour 3, its end runs into 4
    events = _events(tmp_path / "results.events.parquet")
    c_start = datetime(2024, 5, 2, 3, 59, 58) + timedelta(
        seconds=[e for e in events if e["path"] == "/rec/site2/c.wav"][0]["start_s"])
    assert hours[c_start.hour]["events_cry"] >= 1
    assert hours[3]["events_screaming"] == 2 and hours[22]["events_cry"] == 1
    assert sum(r["events_screaming"] for r in data.hour_rows) == 2  # EVIL has no recorded_at
    days = {r["day"]: r for r in data.day_rows}
    assert set(days) == {"2024-05-01", "2024-05-02"}
    assert days["2024-05-01"]["files"] == 2 and days["2024-05-02"]["events_cry"] == 1


def test_has_columns_take_precedence(tmp_path):
    results = _scan_like(tmp_path, has_columns=True)
    table = FORMATS.get("parquet")().read(results)
    # make the has_ column disagree with the events: the column wins
    rows = table.to_pylist()
    rows[0]["has_cry"] = False
    _write(results, rows)
    by_class = {r["label"]: r for r in load_report(results).class_rows}
    assert by_class["cry"]["files"] == 2


def test_top_events_by_peak_confidence(tmp_path):
    results = _scan_like(tmp_path)
    events = [e for e in _events(events_path(results)) if e["label"] != "not_screaming"]
    data = load_report(results, top_events=3)
    want = sorted(e["peak_confidence"] for e in events)[::-1][:3]
    assert [e["peak_confidence"] for e in data.top_events] == pytest.approx(want)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])
        if tag == "script" or any(k.startswith("on") for k, _ in attrs):
            self.scripts += 1


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                   page)]


def test_html_page(tmp_path):
    results = _scan_like(tmp_path)
    page = write_report(results, tmp_path / "report.html").read_text()
    pngs = _pngs(page)
    # 2 confidence histograms, per-hour and per-day counts, a timeline per top file (4)
    assert len(pngs) == 8 and all(p.startswith(PNG_MAGIC) for p in pngs)
    parser = _Links()
    parser.feed(page)
    assert parser.scripts == 0  # the hostile name is text, not a tag
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)" in page
    assert "file:///rec/site1/a.wav" in parser.hrefs
    assert not any(h.startswith("review/") for h in parser.hrefs)  # no review folder yet
    assert "batch_s" in page and "Scan settings" in page and "By hour of day" in page
    assert "1:02:02" in page  # 3722 s of audio
    assert "file ends early &lt;b&gt;" in page


def test_review_links_when_the_folder_exists(tmp_path):
    results = _scan_like(tmp_path)
    (tmp_path / "review").mkdir()
    page = write_report(results, tmp_path / "report.html").read_text()
    parser = _Links()
    parser.feed(page)
    data = load_report(results)
    top = data.top_events[0]
    assert review_anchor(top["path"], top["start_s"]) in parser.hrefs
    assert review_anchor("/a b/x.wav", 3.0) == "review/index.html#/a%20b/x.wav@3"
    assert review_anchor("/a.wav", 10.24) == "review/index.html#/a.wav@10.24"


def test_markdown_report_escapes_names_and_writes_pngs(tmp_path):
    out = write_report(_scan_like(tmp_path, suffix=".csv"), tmp_path / "rep" / "report.md",
                       timelines=1)
    text = out.read_text()
    figures = sorted((tmp_path / "rep" / "report_files").glob("*.png"))
    assert len(figures) == 5 and all(f.read_bytes().startswith(PNG_MAGIC) for f in figures)
    for f in figures:
        assert f"(report_files/{f.name})" in text
    assert "<script>" not in text and "<img src=x" not in text and "&lt;script&gt;" in text
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    header = next(line for line in table_lines if line.startswith("| files | ok |"))
    assert header.count(" | ") == 5
    # every row of every table has as many cells as its header (no stray | from names)
    cells = [len(re.split(r"(?<!\\)\|", line)) for line in table_lines]
    assert min(cells) >= 3


def test_dollar_signs_in_names_plot_as_text(tmp_path):
    from scanner.events.report_plots import timeline_plot

    png = timeline_plot("/x/$$ and $a^b$.wav", 10.0, [{"label": "cry", "start_s": 1, "end_s": 2}],
                        [], ["cry"], {"cry": 0.5})
    assert png.startswith(PNG_MAGIC)


def test_long_timelines_get_hms_ticks(tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    import scanner.events.report_plots as plots

    made = []
    orig = Figure.subplots

    def spy(self, *a, **k):
        ax = orig(self, *a, **k)
        made.append(ax)
        return ax

    Figure.subplots = spy
    try:
        plots.timeline_plot("/long.wav", 7200.0, [], [{"start_s": 0, "end_s": 1, "prob_cry": 0.2},
                                                      {"start_s": 7000, "end_s": 7001,
                                                       "prob_cry": 0.9}], ["cry"], {"cry": 0.4})
    finally:
        Figure.subplots = orig
    ax = made[0]
    fmt = ax.xaxis.get_major_formatter()
    assert isinstance(fmt, FuncFormatter) and fmt(3725, 0) == "1:02:05"
    assert any(list(line.get_ydata()) == [0.4, 0.4] for line in ax.get_lines())


def test_report_without_events_or_timestamps(tmp_path):
    results = _scan_like(tmp_path, with_events=False)
    table = FORMATS.get("parquet")().read(results)
    rows = table.drop_columns([c for c in table.column_names
                               if c == "recorded_at" or c.startswith("n_events")]).to_pylist()
    _write(results, rows)
    data = load_report(results)
    assert not data.has_events and data.hour_rows == [] and data.day_rows == []
    assert {r["label"]: r["files"] for r in data.class_rows} == {"cry": 2, "screaming": 2}
    page = write_report(results, tmp_path / "r.html").read_text()
    assert "Most confident files" in page and "By hour of day" not in page
    assert len(_pngs(page)) == 1 + 4  # file confidences, a timeline per flagged file


def test_refuses_other_tables_suffixes_and_foreign_files(tmp_path):
    results = _scan_like(tmp_path)
    with pytest.raises(ScannerError, match="not a results table"):
        write_report(events_path(results), tmp_path / "r.html")
    with pytest.raises(ScannerError, match=".html or .md"):
        write_report(results, tmp_path / "r.pdf")
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    with pytest.raises(ScannerError, match="not a report"):
        write_report(results, mine)
    assert mine.read_text() == "<html>my notes</html>"
    write_report(results, tmp_path / "again.html")
    write_report(results, tmp_path / "again.html")  # its own page is replaced


def test_cli_report(tmp_path, caplog):
    from scanner.cli.report import report

    results = _scan_like(tmp_path)
    res = CliRunner().invoke(report, [str(results), "-o", str(tmp_path / "x.html")],
                             obj={"verbosity": 0})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.html").is_file()
    bad = CliRunner().invoke(report, [str(results), "-o", str(tmp_path / "x.pdf")])
    assert bad.exit_code == 2


def test_top_events_carry_the_wall_clock(tmp_path):
    data = load_report(_scan_like(tmp_path))
    for e in data.top_events:
        when = dict((p, w) for p, _, w, _ in PLAN)[e["path"]]
        if when is None:
            assert e.get("start_time") is None
        else:
            want = when + timedelta(seconds=e["start_s"])
            assert e["start_time"] == want.isoformat(sep=" ", timespec="seconds")
    assert any(e.get("start_time") for e in data.top_events)


def test_wall_clock_of_events_at_any_offset(tmp_path):
    files = [{"path": "/r/a.wav", "status": "ok", "duration_s": 7200.0, "label": "cry",
              "confidence": 0.9, "recorded_at": datetime(2024, 5, 1, 23, 59, 0)}]
    # 1.2345678 s is no whole number of microseconds; 3600.5 s is past midnight
    events = [{"path": "/r/a.wav", "label": "cry", "start_s": s, "end_s": s + 2.0,
               "peak_confidence": 0.9, "mean_confidence": 0.8} for s in (1.2345678, 3600.5)]
    results = _write(tmp_path / "r.parquet", files)
    _write(tmp_path / "r.events.parquet", events)
    data = load_report(results)
    hours = {r["hour"]: r["events_cry"] for r in data.hour_rows}
    assert hours[23] == 1 and hours[0] == 1
    assert {r["day"]: r["events_cry"] for r in data.day_rows} == {"2024-05-01": 1, "2024-05-02": 1}


def test_metadata_of_the_wrong_shape_is_ignored(tmp_path):
    results = _scan_like(tmp_path)
    rows = FORMATS.get("parquet")().read(results).to_pylist()
    _write(results, rows, meta={"classes": "cry", "options": ["x"], "heads": "h", "roots": "/rec",
                                "backbones": None})
    data = load_report(results)
    assert data.roots == ("/rec",) and "cry" in data.classes and "c" not in data.classes
    write_report(results, tmp_path / "odd.html")
    _write(results, rows, meta=None)
    assert load_report(results).metadata == {}


def test_folders_of_a_relative_recorded_root(tmp_path):
    results = _scan_like(tmp_path)
    rows = FORMATS.get("parquet")().read(results).to_pylist()
    _write(results, rows, meta={**META, "roots": ["rec"]})  # as typed: 'scanner scan rec'
    data = load_report(results)
    assert data.roots == ("/rec",)
    assert {r["folder"] for r in data.folder_rows} == {"site1", "site2", "."}
