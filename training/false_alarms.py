"""Where a detector's false alarms come from: the background clip under each one.

The benchmark's soundscapes (:mod:`training.soundscapes`) know, for each recording, which
background clips make its bed and where each lies (``bed_details``). A false alarm (an event of
a class that touches no reference event, as :mod:`training.detection_metrics` counts them) is put
down to the bed clip it overlaps most. The clips under most false alarms say which sounds a head
takes for crying or screaming: the hard negatives worth adding. With YAMNet's own AudioSet
classifier, each clip's false alarms also get the AudioSet classes YAMNet hears in them
(``Cat``, ``Crow``, ``Speech``...), which names the kind of sound when the clip's name does not.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.detect_eval import ScoredFile
from training.detection_metrics import _overlaps

NO_BED = "(no bed clip)"
log = logging.getLogger(__name__)


def _overlap_s(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def bed_clip_under(event: Mapping[str, Any], beds: Sequence[Mapping[str, Any]]
                   ) -> Mapping[str, Any] | None:
    """The bed clip (``clip``, ``group``, ``start``, ``end``) that overlaps ``event`` most."""
    start, end = float(event["start_s"]), float(event["end_s"])
    best, most = None, 0.0
    for b in beds:
        o = _overlap_s(start, end, float(b["start"]), float(b["end"]))
        if o > most:
            best, most = b, o
    return best


def false_alarm_sources(files: Sequence[ScoredFile], events: Mapping[str, Sequence[Mapping[str, Any]]],
                        beds: Mapping[str, Sequence[Mapping[str, Any]]], label: str, *,
                        audioset: Callable[[str, float, float], NDArray[np.floating]] | None = None,
                        score_names: Sequence[str] | None = None, top_tags: int = 3
                        ) -> list[dict[str, Any]]:
    """The bed clips under ``label``'s false alarms, most false alarms first.

    Args:
        files: The scored recordings, with their reference events.
        events: By recording name, the detected events.
        beds: By recording name, its bed clips (``Soundscape.bed_details``).
        label: The class whose false alarms are traced.
        audioset: Optional ``(recording, start_s, end_s) -> [521]`` mean AudioSet scores over
            that stretch; with ``score_names``, each clip gets the ``top_tags`` classes with the
            highest mean score over its false alarms.

    Returns:
        One row per clip: ``clip``, ``group``, ``false_alarms``, ``seconds`` (their total
        length) and, with ``audioset``, ``audioset`` (``[[name, score], ...]``).
    """
    rows: dict[str, dict[str, Any]] = {}
    tags: dict[str, list[NDArray[np.floating]]] = defaultdict(list)
    for f in files:
        for e in events.get(f.name, []):
            if e["label"] != label or any(_overlaps(e, r) for r in f.reference):
                continue
            bed = bed_clip_under(e, beds.get(f.name, []))
            clip = str(bed["clip"]) if bed else NO_BED
            row = rows.setdefault(clip, {"clip": clip, "group": str(bed["group"]) if bed else "",
                                         "false_alarms": 0, "seconds": 0.0})
            row["false_alarms"] += 1
            row["seconds"] = round(row["seconds"] + float(e["end_s"]) - float(e["start_s"]), 3)
            if audioset is not None:
                tags[clip].append(np.asarray(audioset(f.name, float(e["start_s"]),
                                                      float(e["end_s"])), np.float64))
    out = sorted(rows.values(), key=lambda r: (-r["false_alarms"], r["clip"]))
    if audioset is not None and score_names is not None:
        for row in out:
            mean = np.mean(tags[row["clip"]], axis=0)
            order = np.argsort(-mean)[:top_tags]
            row["audioset"] = [[str(score_names[i]), round(float(mean[i]), 3)] for i in order]
    return out


def sources_table(sources: Mapping[str, Sequence[Mapping[str, Any]]], top: int) -> list[str]:
    """Markdown lines: per class, the ``top`` clips under most false alarms."""
    from scanner.escape import escape_markdown

    lines = ["| class | background clip | false alarms | seconds | YAMNet hears |",
             "|---|---|---|---|---|"]
    for label, rows in sources.items():
        for r in list(rows)[:top]:
            heard = ", ".join(f"{escape_markdown(n)} {s:.2f}" for n, s in r.get("audioset", []))
            lines.append(f"| {escape_markdown(label)} | {escape_markdown(r['clip'])} | "
                         f"{r['false_alarms']} | {r['seconds']:.1f} | {heard} |")
    return lines


class AudioSetScorer:
    """Mean AudioSet scores of YAMNet's own classifier over a stretch of an embedded recording.

    Args:
        layer: YAMNet's last layer (``weight [521, dim]``, ``bias [521]``).
        names: The 521 class names.
        patches: By recording name, its patch embeddings (``training.patches.Patches``).
    """

    def __init__(self, layer: tuple[NDArray[np.float32], NDArray[np.float32]],
                 names: Sequence[str], patches: Mapping[str, Any]) -> None:
        self.weight, self.bias = layer
        self.names = list(names)
        self.patches = patches

    @classmethod
    def for_model(cls, model: str | Path | None, patches: Mapping[str, Any]
                  ) -> AudioSetScorer | None:
        """From a YAMNet ``.tflite`` (``model``, else ``$SCANNER_MODEL_DIR/yamnet``) with its
        class map beside it; None (and a log line) when there is none."""
        from scanner.backbones.sources import model_dir
        from training.audioset_member import classifier_layer

        folder = model_dir()
        path = Path(model) if model else (folder / "yamnet" / "yamnet.tflite" if folder else None)
        names_csv = path.with_name("yamnet_class_map.csv") if path else None
        if path is None or path.suffix != ".tflite" or not (names_csv and names_csv.is_file()):
            log.info("no YAMNet .tflite with its class map: false alarms get no AudioSet classes")
            return None
        with names_csv.open(newline="") as f:
            names = [row["display_name"] for row in csv.DictReader(f)]
        return cls(classifier_layer(path), names, patches)

    def __call__(self, name: str, start_s: float, end_s: float) -> NDArray[np.float32]:
        p = self.patches[name]
        centres = p.starts_s + p.window_s / 2
        inside = np.flatnonzero((centres >= start_s) & (centres < end_s))
        if not len(inside):  # an event shorter than a patch: the nearest patch
            inside = np.array([int(np.argmin(np.abs(centres - (start_s + end_s) / 2)))])
        z = p.embeddings[inside].astype(np.float32) @ self.weight.T + self.bias
        return (0.5 * (1.0 + np.tanh(0.5 * z))).mean(axis=0).astype(np.float32)


def trace_sets(sets: Mapping[str, tuple[Sequence[ScoredFile], Mapping[str, Any]]],
               beds: Mapping[str, Sequence[Mapping[str, Any]]], classes: Sequence[str],
               background: str, scorer: AudioSetScorer | None = None
               ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """By set name (``val``, ``test``) and class, :func:`false_alarm_sources` of each set's
    scored recordings and detected events (``sets[name] = (files, events)``)."""
    return {name: {c: false_alarm_sources(files, events, beds, c, audioset=scorer,
                                          score_names=scorer.names if scorer else None)
                   for c in classes if c != background}
            for name, (files, events) in sets.items()}
