"""The report renders, embeds its plots, and shows the table's numbers (scanner/report.py)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from scanner.errors import ScannerError
from scanner.events.report import load_report, write_report
from scanner.events.segments import (
    SegmentConfig,
    event_columns,
    events_path,
    segment_columns,
    segment_probs,
    segments_path,
    summary_columns,
)
from scanner.output.rows import arrow_schema, column_types
from scanner.output.writer import FORMATS, format_for

CLASSES = ("cry", "screaming", "not_screaming")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, rows: list[dict], columns: dict[str, str]) -> Path:
    FORMATS.get(format_for(path))().write(
        pa.Table.from_pylist(rows, schema=arrow_schema(columns)), path)
    return path


def _scan_like(tmp_path: Path, *, with_events: bool = True, suffix: str = ".parquet") -> Path:
    """A file table of 5 files (one error), with events and segments made by segment_probs."""
    rng = np.random.default_rng(0)
    # (path, duration, [(label, first window, last window)]) on a 0.96 s / 0.48 s grid
    plan = [("/rec/a.wav", 30.0, [("screaming", 10, 20), ("screaming", 40, 50), ("cry", 25, 32)]),
            ("/rec/b.wav", 20.0, [("cry", 5, 15)]),
            ("/rec/c.wav", 12.0, []),
            ("/rec/d.wav", 3600.0, [])]
    cfg = SegmentConfig(window_s=0.96, hop_s=0.48, smooth_windows=1, min_event_s=1.0)
    files, segments, events = [], [], []
    for path, dur, runs in plan:
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
        label = max(CLASSES, key=lambda c: fs.summary.get(f"event_s_{c}", 0)) if runs \
            else "not_screaming"
        files.append({"path": path, "status": "ok", "duration_s": dur, "label": label,
                      "confidence": 0.9 if runs else 0.97, **fs.summary})
    files.append({"path": "/rec/bad.mp3", "status": "error", "error_kind": "truncated",
                  "error": "file ends early"})
    out = tmp_path / f"results{suffix}"
    _write(out, files, {**column_types(CLASSES, ["yamnet"]), **summary_columns(CLASSES)})
    if with_events:
        _write(events_path(out), events, event_columns())
        _write(segments_path(out), segments, segment_columns(CLASSES))
    return out


def test_numbers_come_from_the_tables(tmp_path):
    data = load_report(_scan_like(tmp_path))
    assert (data.n_files, data.n_ok, data.n_errors) == (5, 4, 1)
    assert data.audio_s == pytest.approx(30 + 20 + 12 + 3600)
    by_label = {r["label"]: r for r in data.label_rows}
    assert by_label["not_screaming"]["files"] == 2
    assert by_label["not_screaming"]["audio_s"] == pytest.approx(3612.0)
    events = read_events(tmp_path / "results.events.parquet")
    by_event = {r["label"]: r for r in data.event_rows}
    assert by_event["screaming"]["events"] == sum(e["label"] == "screaming" for e in events) == 2
    assert by_event["cry"]["files"] == 2
    assert by_event["screaming"]["event_s"] == pytest.approx(
        sum(e["end_s"] - e["start_s"] for e in events if e["label"] == "screaming"))
    assert [t["path"] for t in data.top_files] == ["/rec/a.wav", "/rec/b.wav"]
    assert data.top_files[0]["n_screaming"] == 2 and data.top_files[0]["n_cry"] == 1
    assert data.errors_by_kind == {"truncated": 1}
    assert data.segments_by_path["/rec/a.wav"][0]["start_s"] == 0.0
    assert set(data.segments_by_path) == {"/rec/a.wav", "/rec/b.wav"}


def read_events(path: Path) -> list[dict]:
    return FORMATS.get("parquet")().read(path).to_pylist()


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                   page)]


def test_html_report_embeds_plots_and_shows_the_numbers(tmp_path):
    results = _scan_like(tmp_path)
    out = write_report(results, tmp_path / "report.html")
    page = out.read_text()
    pngs = _pngs(page)
    # two confidence histograms + one timeline per file with events
    assert len(pngs) == 4 and all(p.startswith(PNG_MAGIC) for p in pngs)
    data = load_report(results)
    assert f"<td>{data.n_files}</td><td>{data.n_ok}</td><td>{data.n_errors}</td>" in page
    assert f"<td>{data.audio_s / 3600:.2f}</td>" in page
    assert "1:01:02" in page  # 3662 s of audio
    for row in data.event_rows:
        assert f"<td>{row['label']}</td><td>{row['events']}</td><td>{row['files']}</td>" \
               f"<td>{row['event_s']:.1f}</td>" in page
    assert "file ends early" in page and "/rec/bad.mp3" in page
    assert "Files with the most events" in page
    assert page.index("/rec/a.wav") < page.index("/rec/b.wav")


def test_markdown_report_writes_png_files(tmp_path):
    out = write_report(_scan_like(tmp_path, suffix=".csv"), tmp_path / "rep" / "report.md",
                       timelines=1)
    text = out.read_text()
    figures = sorted((tmp_path / "rep" / "report_files").glob("*.png"))
    assert len(figures) == 3
    assert all(f.read_bytes().startswith(PNG_MAGIC) for f in figures)
    for f in figures:
        assert f"(report_files/{f.name})" in text
    assert "| files | ok | errors |" in text


def test_report_without_events(tmp_path):
    page = write_report(_scan_like(tmp_path, with_events=False), tmp_path / "r.html").read_text()
    assert "Most confident files" in page and "Events by label" not in page
    assert len(_pngs(page)) == 1 + 2  # file confidences, and a timeline per flagged file


def test_report_rejects_an_events_table_and_bad_suffix(tmp_path):
    results = _scan_like(tmp_path)
    with pytest.raises(ScannerError, match="not a results table"):
        write_report(events_path(results), tmp_path / "r.html")
    with pytest.raises(ScannerError, match=".html or .md"):
        write_report(results, tmp_path / "r.pdf")


def test_cli_report(tmp_path):
    from scanner.cli.report import report

    results = _scan_like(tmp_path)
    res = CliRunner().invoke(report, [str(results), "-o", str(tmp_path / "x.html")],
                             obj={"verbosity": 0})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.html").is_file()
    bad = CliRunner().invoke(report, [str(results), "-o", str(tmp_path / "x.pdf")])
    assert bad.exit_code == 2
