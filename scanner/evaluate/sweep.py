"""A threshold sweep: events made again from a scan's window probabilities, scored per threshold.

The scan's own detection settings (windows, smoothing, minimum event length, background)
are kept; only the thresholds change. At each grid value every event class gets that
threshold at once, and the class of a window is still the likeliest one past its threshold
(:func:`scanner.events.segments.segment_probs`), so a row of the sweep is exactly what
``scanner scan --threshold cry=T,screaming=T`` would have found. A user reads the operating
point of each class off its own column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from scanner.evaluate.metrics import Event, detection_metrics
from scanner.evaluate.results import Windows

DEFAULT_GRID: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def detect_events(windows: Mapping[str, Windows], classes: Sequence[str],
                  durations_s: Mapping[str, float], config: Any) -> dict[str, list[Event]]:
    """Each file's events from its windows under ``config`` (a ``SegmentConfig``)."""
    from scanner.events.segments import segment_probs

    out: dict[str, list[Event]] = {}
    for path, w in windows.items():
        segs = segment_probs(w.starts_s, w.ends_s, w.probs, classes, durations_s[path], config)
        out[path] = [(e["label"], float(e["start_s"]), float(e["end_s"])) for e in segs.events]
    return out


def same_events(a: Sequence[Event], b: Sequence[Event], *, tolerance_s: float = 0.01) -> bool:
    """Whether two event lists agree (labels, and times to ``tolerance_s``: stored times are rounded)."""
    return len(a) == len(b) and all(x[0] == y[0] and abs(x[1] - y[1]) <= tolerance_s
                                    and abs(x[2] - y[2]) <= tolerance_s for x, y in zip(a, b, strict=True))


def reproduces(windows: Mapping[str, Windows], classes: Sequence[str], durations_s: Mapping[str, float],
               detection: Mapping[str, Any], events: Mapping[str, Sequence[Event]]) -> list[str]:
    """The files whose events, made again at the scan's own settings, differ from the scan's.

    Empty when the segments table and the events table come from the same scan: the check that
    the sweep's events are the scan's own way of making them.
    """
    from scanner.events.segments import SegmentConfig

    again = detect_events(windows, classes, durations_s, SegmentConfig.from_dict(detection))
    return [p for p in durations_s if not same_events(again.get(p, []), events.get(p, []))]


def _row(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {c: {"event_f1": m["event"]["f1"], "event_precision": m["event"]["precision"],
                "event_recall": m["event"]["recall"], "segment_f1": m["segment"]["f1"],
                "file_f1": m["file"]["f1"], "false_alarms_per_hour": m["false_alarms"]["per_hour"],
                "n_events": m["event"].get("n_sys", 0)}
            for c, m in metrics["classes"].items()}


def sweep(windows: Mapping[str, Windows], classes: Sequence[str], targets: Sequence[str],
          reference: Mapping[str, Sequence[Event]], durations_s: Mapping[str, float],
          detection: Mapping[str, Any], grid: Sequence[float] = DEFAULT_GRID
          ) -> list[dict[str, Any]]:
    """One row per threshold: ``{"threshold", "classes": {class: {event_f1, ..., n_events}}}``.

    Args:
        windows: By file, the scan's windows (files absent here have no windows and no events).
        classes: Column order of the window probabilities.
        targets: The event classes (every class but the background).
        reference: By file, the reference events.
        durations_s: Every evaluated file and its length.
        detection: The scan's detection settings (``SegmentConfig.to_dict()``).
        grid: Thresholds in [0, 1].
    """
    from scanner.events.segments import SegmentConfig

    base = SegmentConfig.from_dict(detection)
    rows = []
    for t in grid:
        # as --threshold would: the same threshold at every length, short recordings too
        config = replace(base, thresholds=dict.fromkeys(targets, float(t)), short_thresholds={})
        estimated = detect_events(windows, classes, durations_s, config)
        metrics = detection_metrics(targets, reference, estimated, durations_s)
        rows.append({"threshold": float(t), "classes": _row(metrics)})
    return rows
