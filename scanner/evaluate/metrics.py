"""Detection metrics per class: event-based, segment-based, file flags and false alarms per hour.

Event- and segment-based metrics come from `sed_eval <https://tut-arg.github.io/sed_eval/>`_
(the DCASE reference implementation), file flags from scikit-learn; only the false-alarm
rate, which neither defines, is counted here.

Definitions (also written into the metrics JSON, :data:`DEFINITIONS`):

- **event**: a system event matches a reference event of its class when its onset is within
  :data:`ONSET_COLLAR_S` of the reference onset and its offset within the larger of
  :data:`OFFSET_COLLAR_S` and :data:`OFFSET_COLLAR_FRACTION` of the reference event's length
  of the reference offset (sed_eval ``EventBasedMetrics``, optimal one-to-one matching);
  F1, precision and recall over all matched/unmatched events of the class (micro, all files).
- **segment**: audio cut into :data:`SEGMENT_S` segments; a segment is active for a class when
  any event of the class overlaps it (sed_eval ``SegmentBasedMetrics``, each file evaluated
  over its whole duration).
- **file**: a file is flagged for a class when it has at least one system event of that
  class, and is positive when it has at least one reference event of it.
- **false alarms per hour**: a false alarm of class C is a system event of class C that
  overlaps no reference event of any class (a detection where nothing was annotated).
  The rate divides their number by the hours of evaluated audio not covered by any
  reference event (of any class). A detection of the wrong class during a real event is an
  error of the event metrics, not a false alarm here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from scanner.errors import ConfigError

Event = tuple[str, float, float]  # (label, onset_s, offset_s)

ONSET_COLLAR_S = 1.0
OFFSET_COLLAR_S = 1.0
OFFSET_COLLAR_FRACTION = 0.2
SEGMENT_S = 1.0
SECONDS_PER_HOUR = 3600.0

DEFINITIONS: dict[str, str] = {
    "event": (f"sed_eval EventBasedMetrics: onset collar {ONSET_COLLAR_S:g} s, offset collar "
              f"max({OFFSET_COLLAR_S:g} s, {OFFSET_COLLAR_FRACTION:g} x reference length), optimal "
              "one-to-one matching, micro-averaged over files"),
    "event_onset": f"as event, onsets only (collar {ONSET_COLLAR_S:g} s): a detection that finds the "
                   "event but ends early or late counts",
    "segment": f"sed_eval SegmentBasedMetrics at {SEGMENT_S:g} s, each file over its whole duration",
    "file": "a file is flagged for a class when it has a system event of it, positive when it "
            "has a reference event of it",
    "false_alarms_per_hour": "system events of the class that overlap no reference event of any "
                             "class, per hour of evaluated audio not covered by any reference event",
}


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def _items(path: str, events: Iterable[Event]) -> list[dict[str, Any]]:
    return [{"file": path, "event_label": label, "onset": float(on), "offset": float(off)}
            for label, on, off in events]


def _sed_eval(classes: Sequence[str], reference: Mapping[str, Sequence[Event]],
              estimated: Mapping[str, Sequence[Event]], durations_s: Mapping[str, float]
              ) -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{"event", "event_onset", "segment"}`` -> (the sed_eval metric object, its results())."""
    with warnings.catch_warnings():  # dcase_util imports pkg_resources
        warnings.simplefilter("ignore")
        try:
            import sed_eval
        except ImportError as e:
            raise ConfigError("scanner evaluate needs sed_eval: pip install "
                              "'cry-scream-scanner[eval]'") from e

    labels = list(classes)
    events = {
        "event": sed_eval.sound_event.EventBasedMetrics(
            event_label_list=labels, t_collar=ONSET_COLLAR_S,
            percentage_of_length=OFFSET_COLLAR_FRACTION, evaluate_onset=True, evaluate_offset=True),
        "event_onset": sed_eval.sound_event.EventBasedMetrics(
            event_label_list=labels, t_collar=ONSET_COLLAR_S, evaluate_onset=True,
            evaluate_offset=False),
    }
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=labels, time_resolution=SEGMENT_S)
    for path, duration in durations_s.items():
        ref = _items(path, (e for e in reference.get(path, ()) if e[0] in classes))
        est = _items(path, (e for e in estimated.get(path, ()) if e[0] in classes))
        for m in events.values():
            m.evaluate(reference_event_list=ref, estimated_event_list=est)
        ends = [e["offset"] for e in (*ref, *est)]
        segment.evaluate(reference_event_list=ref, estimated_event_list=est,
                         evaluated_length_seconds=max([float(duration), *ends]))
    with warnings.catch_warnings():  # numpy's "mean of empty slice" for a class with no events
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: (m, m.results()) for name, m in {**events, "segment": segment}.items()}


def _scores(block: Mapping[str, Any], count: Mapping[str, float]) -> dict[str, Any]:
    f = block["f_measure"]
    out = {"f1": _clean(f["f_measure"]), "precision": _clean(f["precision"]),
           "recall": _clean(f["recall"])}
    for key, name in (("Nref", "n_ref"), ("Nsys", "n_sys"), ("Ntp", "tp"), ("Nfp", "fp"), ("Nfn", "fn")):
        if key in count:
            out[name] = int(count[key])
    return out


def file_flags(classes: Sequence[str], reference: Mapping[str, Sequence[Event]],
               estimated: Mapping[str, Sequence[Event]], paths: Sequence[str]) -> dict[str, Any]:
    """Per class: F1, precision and recall of "the file contains the class" (scikit-learn)."""
    from sklearn.metrics import precision_recall_fscore_support

    out: dict[str, Any] = {}
    for c in classes:
        truth = np.array([any(e[0] == c for e in reference.get(p, ())) for p in paths], bool)
        flag = np.array([any(e[0] == c for e in estimated.get(p, ())) for p in paths], bool)
        if len(paths):
            p, r, f, _ = precision_recall_fscore_support(truth, flag, average="binary",
                                                         zero_division=np.nan)
        else:
            p = r = f = math.nan
        out[c] = {"f1": _clean(f), "precision": _clean(p), "recall": _clean(r),
                  "n_files": len(paths), "n_positive": int(truth.sum()), "n_flagged": int(flag.sum()),
                  "tp": int((truth & flag).sum()), "fp": int((~truth & flag).sum()),
                  "fn": int((truth & ~flag).sum())}
    return out


def _union_s(intervals: Iterable[tuple[float, float]], duration_s: float) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted((max(0.0, a), min(duration_s, b)) for a, b in intervals):
        if b <= a:
            continue
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def false_alarms(classes: Sequence[str], reference: Mapping[str, Sequence[Event]],
                 estimated: Mapping[str, Sequence[Event]], durations_s: Mapping[str, float]
                 ) -> tuple[dict[str, Any], float]:
    """Per class ``{"count", "per_hour"}``, and the event-free hours they are divided by."""
    counts = dict.fromkeys(classes, 0)
    free_s = 0.0
    for path, duration in durations_s.items():
        refs = [(on, off) for _, on, off in reference.get(path, ())]
        free_s += max(0.0, float(duration) - _union_s(refs, float(duration)))
        for label, on, off in estimated.get(path, ()):
            if label in counts and not any(on < r_off and off > r_on for r_on, r_off in refs):
                counts[label] += 1
    hours = free_s / SECONDS_PER_HOUR
    return ({c: {"count": n, "per_hour": _clean(n / hours) if hours > 0 else None}
             for c, n in counts.items()}, hours)


def detection_metrics(classes: Sequence[str], reference: Mapping[str, Sequence[Event]],
                      estimated: Mapping[str, Sequence[Event]], durations_s: Mapping[str, float]
                      ) -> dict[str, Any]:
    """Every metric of :data:`DEFINITIONS` for the files of ``durations_s``.

    Args:
        classes: The event classes to score (not the background).
        reference: By file, the reference events; a file without an entry has none.
        estimated: By file, the system's events.
        durations_s: Every evaluated file and its length; files missing here are ignored.

    Returns:
        ``{"classes": {class: {"event", "event_onset", "segment", "file", "false_alarms"}},
        "overall": {"event", "event_onset", "segment"} (micro over classes), "files",
        "audio_hours", "event_free_hours"}``.
    """
    classes = list(classes)
    paths = list(durations_s)
    sed = _sed_eval(classes, reference, estimated, durations_s)
    flags = file_flags(classes, reference, estimated, paths)
    alarms, free_hours = false_alarms(classes, reference, estimated, durations_s)
    per_class = {c: {**{name: _scores(res["class_wise"][c], m.class_wise[c])
                        for name, (m, res) in sed.items()},
                     "file": flags[c], "false_alarms": alarms[c]} for c in classes}
    return {
        "classes": per_class,
        "overall": {name: _scores(res["overall"], m.overall) for name, (m, res) in sed.items()},
        "files": len(paths),
        "audio_hours": _clean(sum(durations_s.values()) / SECONDS_PER_HOUR),
        "event_free_hours": _clean(free_hours),
    }
