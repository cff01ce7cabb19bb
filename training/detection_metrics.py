"""Detection metrics of events against reference events, as plain dicts (via ``sed_eval``).

Per class: event-based F1, precision and recall (onset collar 1 s, offset collar the larger
of 1 s and 20 % of the reference event's length), segment-based F1 at 1 s, file-flag F1
(does the file hold the class), and false-alarm events per hour of audio with no reference
event (an estimated event that touches no reference event of any class, per hour of the
time no reference event covers). Where reference events carry ``snr_db`` (the soundscape
generator's mixing level), each class also gets ``found_by_snr``: per SNR band, how many
reference events an estimated event of the class overlaps at all (boundaries not judged),
which separates events the head never flags from events it flags with loose boundaries.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

EventList = Sequence[Mapping[str, Any]]
"""Events as dicts with ``label``, ``start_s``, ``end_s`` (one file's)."""

T_COLLAR_S = 1.0
OFFSET_FRACTION = 0.2
SEGMENT_S = 1.0
SNR_BANDS_DB = (5.0, 10.0)
"""Edges of the SNR bands of ``found_by_snr``: below 5 dB, 5 to 10 dB, 10 dB and above."""


def _overlaps(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return float(a["start_s"]) < float(b["end_s"]) and float(b["start_s"]) < float(a["end_s"])


def snr_band(snr_db: float, edges: Sequence[float] = SNR_BANDS_DB) -> str:
    """The band's name for one SNR: ``< 5 dB``, ``5-10 dB``, ``>= 10 dB`` for the default edges."""
    lo = None
    for edge in edges:
        if snr_db < edge:
            return f"< {edge:g} dB" if lo is None else f"{lo:g}-{edge:g} dB"
        lo = edge
    return f">= {lo:g} dB"


def found_by_snr(reference: Mapping[str, EventList], estimated: Mapping[str, EventList],
                 label: str, edges: Sequence[float] = SNR_BANDS_DB) -> list[dict[str, Any]]:
    """Per SNR band (low to high), ``label``'s reference events and how many of them an
    estimated event of ``label`` overlaps; empty when no reference event of it has ``snr_db``.
    """
    names = [snr_band(x, edges) for x in [float("-inf"), *edges]]
    counts = {n: [0, 0] for n in names}
    for f, refs in reference.items():
        mine = [e for e in estimated.get(f, []) if e["label"] == label]
        for r in refs:
            if r["label"] != label or r.get("snr_db") is None:
                continue
            band = counts[snr_band(float(r["snr_db"]), edges)]
            band[0] += 1
            band[1] += any(_overlaps(r, e) for e in mine)
    return [{"snr_db": n, "events": k, "found": hit, "recall": hit / k}
            for n, (k, hit) in counts.items() if k]


def _container(by_file: Mapping[str, EventList]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dcase_util

    rows = [{"filename": f, "event_label": e["label"], "onset": float(e["start_s"]),
             "offset": float(e["end_s"])} for f, events in by_file.items() for e in events]
    return dcase_util.containers.MetaDataContainer(rows)


def _f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def detection_metrics(reference: Mapping[str, EventList], estimated: Mapping[str, EventList],
                      durations_s: Mapping[str, float], classes: Sequence[str]
                      ) -> dict[str, Any]:
    """Metrics of ``estimated`` events against ``reference``, per class and their mean.

    Args:
        reference, estimated: File name -> that file's events (every file in ``durations_s``
            should be a key of both; a missing one has no events).
        durations_s: File name -> length.
        classes: The event classes to score (not the background).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sed_eval

    files = sorted(durations_s)
    ev = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(classes), t_collar=T_COLLAR_S, percentage_of_length=OFFSET_FRACTION,
        evaluate_onset=True, evaluate_offset=True)
    seg = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=list(classes),
                                                   time_resolution=SEGMENT_S)
    for f in files:
        ref = _container({f: reference.get(f, [])})
        est = _container({f: [e for e in estimated.get(f, []) if e["label"] in classes]})
        ev.evaluate(reference_event_list=ref, estimated_event_list=est)
        seg.evaluate(reference_event_list=ref, estimated_event_list=est)
    ev_cls = ev.results_class_wise_metrics()
    seg_cls = seg.results_class_wise_metrics()
    out: dict[str, Any] = {"per_class": {}, "files": len(files),
                           "hours": sum(durations_s.values()) / 3600}
    scored = {f: reference.get(f, []) for f in files}
    free_h = 0.0
    for f in files:
        covered = sum(float(e["end_s"]) - float(e["start_s"]) for e in reference.get(f, []))
        free_h += max(0.0, durations_s[f] - covered) / 3600
    for c in classes:
        n_ref = sum(1 for f in files for e in reference.get(f, []) if e["label"] == c)
        fa = 0
        for f in files:
            refs = reference.get(f, [])
            for e in estimated.get(f, []):
                if e["label"] == c and not any(_overlaps(e, r) for r in refs):
                    fa += 1
        truth = [any(e["label"] == c for e in reference.get(f, [])) for f in files]
        flag = [any(e["label"] == c for e in estimated.get(f, [])) for f in files]
        tp = sum(t and p for t, p in zip(truth, flag, strict=True))
        fp = sum(p and not t for t, p in zip(truth, flag, strict=True))
        fn = sum(t and not p for t, p in zip(truth, flag, strict=True))
        e_m = ev_cls[c]["f_measure"]
        out["per_class"][c] = {
            "event_f1": float(e_m["f_measure"]), "event_precision": float(e_m["precision"]),
            "event_recall": float(e_m["recall"]), "reference_events": n_ref,
            "estimated_events": sum(1 for f in files for e in estimated.get(f, [])
                                    if e["label"] == c),
            "segment_f1": float(seg_cls[c]["f_measure"]["f_measure"]),
            "file_flag": _f1(tp, fp, fn),
            "false_alarms": fa,
            "false_alarms_per_hour": fa / free_h if free_h > 0 else 0.0,
            "found_by_snr": found_by_snr(scored, estimated, c),
        }
    out["per_class"] = _nan_to_zero(out["per_class"])
    pcs = out["per_class"].values()
    n = max(len(classes), 1)
    out["mean_event_f1"] = sum(m["event_f1"] for m in pcs) / n
    out["mean_file_flag_f1"] = sum(m["file_flag"]["f1"] for m in pcs) / n
    out["false_alarms_per_hour"] = sum(m["false_alarms_per_hour"] for m in pcs)
    out["background_hours"] = free_h
    return out


def _nan_to_zero(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_to_zero(v) for k, v in x.items()}
    if isinstance(x, float) and x != x:
        return 0.0
    return x
