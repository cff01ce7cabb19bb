"""The file's answer from its events: detection settings for a scan, and the verdict columns.

Every scan detects. A file's ``label`` is the class of its strongest event (highest peak
window probability), or the background class when it has no event; nothing in the row that
looks like the file's answer can disagree with ``label``. Whole-file mean probabilities are
kept under explicit names (``mean_prob_<class>``).

Thresholds, by precedence: :data:`~scanner.events.segments.DEFAULT_THRESHOLD` < the head's
own validated thresholds (``head.json`` ``thresholds``) < ``--threshold CLASS=P``; then
``--sensitivity`` scales every class's odds. Edge thresholds (hysteresis), likewise: the head's
``detection`` block ``edge_thresholds`` < ``--edge-threshold CLASS=P``, scaled by
``--sensitivity``. Short-recording thresholds (a clip's, see
:attr:`~scanner.events.segments.SegmentConfig.short_thresholds`): the head's ``detection`` block
``short_thresholds`` < ``--short-threshold CLASS=P``, scaled by ``--sensitivity``; a class the
user gives ``--threshold`` for uses that threshold at every length. Window, hop, smoothing,
minimum event length, the gap bridged and the longest short recording (``--short-max``):
:class:`~scanner.events.segments.SegmentConfig`'s defaults < the head's ``detection`` block <
the user's options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scanner.errors import ConfigError
from scanner.events.segments import DEFAULT_BACKGROUND, FileSegments, SegmentConfig

if TYPE_CHECKING:
    from scanner.classify import Classifier

DETECTION_KEYS = ("window_s", "hop_s", "smooth_windows", "min_event_s", "max_gap_s",
                  "class_min_event_s", "edge_thresholds", "min_event_fraction",
                  "short_thresholds", "short_max_s")
"""Settings a head's ``detection`` block or the user may set."""


def with_sensitivity(threshold: float, sensitivity: float) -> float:
    """``threshold`` with its odds divided by ``sensitivity``.

    ``sensitivity`` 1 keeps it; 2 halves the odds a window needs (more events, more false
    alarms); 0.5 doubles them (fewer false alarms, more misses). 0 and 1 stay put.
    """
    if not (math.isfinite(sensitivity) and sensitivity > 0):
        raise ConfigError(f"sensitivity must be a positive number, got {sensitivity}")
    if threshold <= 0.0 or threshold >= 1.0:
        return threshold
    odds = threshold / (1.0 - threshold) / sensitivity
    return odds / (1.0 + odds)


def resolve_detection(classifier: Classifier, *, options: Mapping[str, Any] | None = None,
                      thresholds: Mapping[str, float] | None = None, sensitivity: float = 1.0,
                      background: str = DEFAULT_BACKGROUND) -> SegmentConfig:
    """The detection settings a scan uses (see the module docstring for the precedence).

    Args:
        classifier: The scan's models; their heads may carry thresholds and settings.
        options: The user's window/hop/smoothing/minimum-event settings (``DETECTION_KEYS``).
        thresholds: The user's per-class thresholds (``--threshold``).
        sensitivity: See :func:`with_sensitivity`.
        background: The class that never makes an event.

    Raises:
        ConfigError: An unknown class or setting, or a value out of range.
    """
    settings: dict[str, Any] = {}
    head_thresholds: dict[str, list[float]] = {}
    for m in classifier.models:
        block = m.head.detection_settings()
        settings.update({k: v for k, v in block.items() if k in DETECTION_KEYS})
        for name, value in m.head.detection_thresholds().items():
            if name != background and name in classifier.classes:
                head_thresholds.setdefault(name, []).append(float(value))
    unknown = set(options or {}) - set(DETECTION_KEYS)
    if unknown:
        raise ConfigError(f"unknown detection setting(s) {sorted(unknown)}")
    if (options or {}).get("min_event_s") is not None and "class_min_event_s" not in (options or {}):
        settings.pop("class_min_event_s", None)  # the user's --min-event is for every class
    head_own = {key: settings.get(key) or {} for key in ("edge_thresholds", "short_thresholds")}
    settings.update({k: v for k, v in (options or {}).items() if v is not None})
    for key, what in (("edge_thresholds", "edge thresholds"),
                      ("short_thresholds", "short-recording thresholds")):
        try:  # the user's --edge-threshold / --short-threshold replace the head's by class
            values = {**head_own[key], **((options or {}).get(key) or {})}
            if key == "short_thresholds":  # --threshold CLASS=P holds at every length
                values = {c: p for c, p in values.items() if c not in (thresholds or {})}
            settings[key] = {c: with_sensitivity(float(p), sensitivity) for c, p in values.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{what} must be numbers by class, got {head_own[key]!r}") from e
    chosen = {name: sum(values) / len(values) for name, values in head_thresholds.items()}
    chosen.update(thresholds or {})
    targets = [c for c in classifier.classes if c != background]
    final = {c: with_sensitivity(chosen.get(c, SegmentConfig().threshold(c)), sensitivity)
             for c in targets}
    try:
        config = SegmentConfig(**settings, thresholds=final, background=background)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    config.check_classes(classifier.classes)
    unknown_classes = set(thresholds or {}) - set(targets)
    if unknown_classes:
        raise ConfigError(f"--threshold names class(es) {sorted(unknown_classes)}; the head's "
                          f"event classes are {targets}")
    return config


def verdict_columns(classes: Sequence[str], background: str = DEFAULT_BACKGROUND
                    ) -> dict[str, str]:
    """Column name -> arrow type name of the event summary in every file row."""
    targets = [c for c in classes if c != background]
    cols: dict[str, str] = {"n_events": "int64"}
    for c in targets:
        cols[f"has_{c}"] = "bool"
        cols[f"max_prob_{c}"] = "float64"
        cols[f"n_events_{c}"] = "int64"
        cols[f"event_s_{c}"] = "float64"
        cols[f"first_onset_s_{c}"] = "float64"
    return cols


def apply_verdict(row: dict[str, Any], analysis: FileSegments | None, classes: Sequence[str],
                  background: str = DEFAULT_BACKGROUND) -> None:
    """Sets ``row``'s label, confidence and event summary from the file's events.

    ``label``: the class of the event with the highest peak probability, else ``background``.
    ``confidence``: that event's peak window probability; with no event, one minus the
    highest window probability of any event class (how far the file stayed from an event).
    A file too short for one window (no analysis) keeps its whole-file label.
    """
    if analysis is None or not analysis.n_windows:
        return
    targets = [c for c in classes if c != background]
    events = analysis.events
    row["n_events"] = len(events)
    peaks: dict[str, float] = {}
    for c in targets:
        mine = [e for e in events if e["label"] == c]
        peaks[c] = analysis.max_prob(c)
        row[f"has_{c}"] = bool(mine)
        row[f"max_prob_{c}"] = peaks[c]
        row[f"n_events_{c}"] = len(mine)
        row[f"event_s_{c}"] = round(sum(e["end_s"] - e["start_s"] for e in mine), 3)
        row[f"first_onset_s_{c}"] = min((e["start_s"] for e in mine), default=None)
    if events:
        best = max(events, key=lambda e: e["peak_confidence"])
        row["label"], row["confidence"] = best["label"], float(best["peak_confidence"])
    else:
        row["label"] = background
        row["confidence"] = float(1.0 - max(peaks.values(), default=0.0))
