"""Detection evaluation: a scan's events against reference annotations (``scanner evaluate``).

    truth.py    reference annotations: truth CSV, Raven selection tables, Audacity labels
    results.py  a scan's tables: files, durations, events, windows; matching files to paths
    metrics.py  event-, segment- and file-based scores and false alarms per hour (sed_eval)
    sweep.py    events made again at a grid of thresholds, scored per threshold
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scanner.errors import ConfigError

log = logging.getLogger(__name__)


def evaluate(results: str | Path, truth: str | Path, *, sweep: bool = False,
             grid: Sequence[float] | None = None) -> dict[str, Any]:
    """Scores a scan's events against reference annotations.

    Args:
        results: A file table written by ``scanner scan`` (Parquet or CSV), with its events
            table beside it (and its segments table for ``sweep``).
        truth: A truth CSV, a Raven table, an Audacity label file, or a folder of them.
        sweep: Also make events again at every threshold of ``grid`` and score each.
        grid: Thresholds of the sweep (default :data:`scanner.evaluate.sweep.DEFAULT_GRID`).

    Returns:
        A plain dict, written as the metrics JSON: ``metrics`` (see
        :func:`scanner.evaluate.metrics.detection_metrics`), ``definitions``, the scan's
        ``detection`` settings, ``errors`` (files left out), ``unmatched_truth_files``,
        ``ignored_labels`` and, with ``sweep``, ``sweep`` (one row per threshold) and
        ``sweep_reproduces_scan`` (the scan's own settings make its events again from the
        segments table).

    Raises:
        ConfigError: Malformed truth, no events table, or a sweep without a segments table.
        ScannerError: A table cannot be read.
    """
    from scanner.evaluate.metrics import DEFINITIONS, detection_metrics
    from scanner.evaluate.results import load_results, load_windows, match_references
    from scanner.evaluate.truth import read_truth

    scan = load_results(results)
    if not scan.targets:
        raise ConfigError(f"{results}: the scan has no event class besides {scan.background!r}")
    refs = read_truth(truth)
    ignored = Counter(r.label for r in refs if r.label not in scan.targets)
    for label, n in sorted(ignored.items()):
        log.warning("ignoring %d reference event(s) labelled %r: not an event class of the scan "
                    "(%s)", n, label, ", ".join(scan.targets))
    by_path, unmatched = match_references((r for r in refs if r.label in scan.targets),
                                          [*scan.durations_s, *(e["path"] for e in scan.errors)])
    if unmatched:
        log.warning("%d truth file(s) match no scanned file and are left out: %s", len(unmatched),
                    ", ".join(repr(u) for u in unmatched[:5]))
    if scan.errors:
        log.warning("%d file(s) failed to scan and are left out", len(scan.errors))
    if not scan.durations_s:
        raise ConfigError(f"{results}: no file scanned ok; nothing to evaluate")
    reference = {p: sorted(((r.label, r.onset_s, r.offset_s) for r in rs), key=lambda e: e[1])
                 for p, rs in by_path.items() if p in scan.durations_s}
    metrics = detection_metrics(scan.targets, reference, scan.events, scan.durations_s)
    report: dict[str, Any] = {
        "results": str(results), "truth": str(truth), "classes": list(scan.targets),
        "background": scan.background, "detection": scan.detection, "definitions": DEFINITIONS,
        "metrics": metrics, "n_reference_events": sum(len(v) for v in reference.values()),
        "errors": scan.errors, "unmatched_truth_files": unmatched, "ignored_labels": dict(ignored),
    }
    if sweep:
        from scanner.evaluate.sweep import DEFAULT_GRID, reproduces
        from scanner.evaluate.sweep import sweep as run_sweep

        windows = load_windows(scan)
        differ = reproduces(windows, scan.classes, scan.durations_s, scan.detection, scan.events)
        if differ:
            log.warning("%d file(s) get other events from the segments table than the events table "
                        "holds (tables of different scans?), e.g. %r", len(differ), differ[0])
        report["sweep_reproduces_scan"] = not differ
        report["sweep"] = run_sweep(windows, scan.classes, scan.targets, reference, scan.durations_s,
                                    scan.detection, grid or DEFAULT_GRID)
    return report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_metrics(report: dict[str, Any]) -> str:
    """The per-class table (and the sweep's, if any) as plain text."""
    m = report["metrics"]
    lines = [f"{m['files']} files, {_fmt(m['audio_hours'], 2)} h of audio "
             f"({_fmt(m['event_free_hours'], 2)} h without reference events), "
             f"{report['n_reference_events']} reference events",
             f"{'class':<12} {'event F1':>8} {'P':>6} {'R':>6} {'onset F1':>8} {'seg F1':>7} {'file F1':>8} "
             f"{'FA/h':>7} {'ref':>5} {'sys':>5}"]
    for c, row in m["classes"].items():
        e = row["event"]
        lines.append(f"{c:<12} {_fmt(e['f1']):>8} {_fmt(e['precision']):>6} {_fmt(e['recall']):>6} "
                     f"{_fmt(row['event_onset']['f1']):>8} "
                     f"{_fmt(row['segment']['f1']):>7} {_fmt(row['file']['f1']):>8} "
                     f"{_fmt(row['false_alarms']['per_hour'], 1):>7} {e.get('n_ref', 0):>5} "
                     f"{e.get('n_sys', 0):>5}")
    if report.get("sweep"):
        classes = list(m["classes"])
        lines += ["", "threshold sweep (event F1 / file F1 / FA per hour):",
                  f"{'threshold':>9} " + " ".join(f"{c:>24}" for c in classes)]
        for row in report["sweep"]:
            cells = [f"{_fmt(row['classes'][c]['event_f1']):>6} / {_fmt(row['classes'][c]['file_f1']):>5}"
                     f" / {_fmt(row['classes'][c]['false_alarms_per_hour'], 1):>6}" for c in classes]
            lines.append(f"{row['threshold']:>9.2f} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)
