"""When in the file: per-window probabilities, smoothing, thresholds and events.

A file is cut into analysis windows of ``window_s`` at a ``hop_s`` step. Each window pools
the patches of every backbone whose centre lies in it (the head's own features and
pooling), and the classifier gives one probability row per window. The probabilities are
smoothed over ``smooth_windows`` windows; a window is labelled with the non-background
class whose smoothed probability passes that class's threshold (the likeliest if several
do), else with the background class. Runs of one label become events, and events shorter
than ``min_event_s`` are dropped, so one stray window does not make an event. A class with an
edge threshold (hysteresis) then grows each kept event over the neighbouring background
windows whose smoothed probability still reaches it: the threshold decides *whether* there
is an event, the lower edge threshold *where* it starts and ends. A recording of at most
``short_max_s`` (a clip) may use thresholds of its own (``short_thresholds``).

Windows overlap, so an event's edges are taken from the windows' centres: each window
owns the stretch of time halfway to its neighbours' centres (the first from 0 s, the last
to the file's end). A scream therefore starts where the first window that is mostly
scream is centred, not where the first window that barely touches it starts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ConfigError
from scanner.heads.base import window_patches

if TYPE_CHECKING:
    from scanner.classify import Classifier
    from scanner.engines.local import FileResult
    from scanner.records import Embedding

log = logging.getLogger(__name__)

DEFAULT_BACKGROUND = "not_screaming"
# A class missing from ``thresholds`` passes at this probability: with three classes that
# sum to 1, at most one class can exceed it, so the rule never has to break a tie.
DEFAULT_THRESHOLD = 0.5
# Recordings at most this long are clips to SegmentConfig.short_thresholds: every clip of the
# project's data set is shorter (the longest is 41 s), every soundscape longer (10-30 min).
SHORT_MAX_S = 60.0


@dataclass(frozen=True)
class SegmentConfig:
    """How a file is cut into windows and how windows become events.

    The defaults were measured on 25 s recordings of clean speech with a real scream cut
    to 5 s or 2 s in the middle (15 and 62 recordings; MLP heads trained on the other half
    of the clips, split by group) and on speech-only and everyday-sound recordings.
    Windows of 0.96 to 1.92 s at a 0.48 s hop, smoothed over 3, put both edges of 2/3 of
    the 5 s screams (the rest are clips with long pauses or that sound like something
    else) and 87-89% of the 2 s screams within 1.5 s, mean edge error 0.2-0.9 s, with no
    event in speech; the differences among them were within noise. Windows of 2.88 s and
    more blurred the edges (2 s screams placed 60-79% of the time). 1.44 s (3 YAMNet
    patches) sits in the middle of that plateau. See ``tests/test_events_real.py``.

    Attributes:
        window_s: Length of one analysis window (3 YAMNet patches: 0.96 s + 2 hops).
        hop_s: Step between windows; YAMNet's own patch hop, so every patch starts a window.
        smooth_windows: Odd number of windows in the centred moving average of the
            probabilities (1: no smoothing).
        min_event_s: Events shorter than this are dropped (after gaps are bridged).
        class_min_event_s: Per class, a minimum event length other than ``min_event_s`` (a
            cry lasts longer than a scream, so its minimum may be longer).
        max_gap_s: Two events of one class this close or closer are joined into one, the
            background windows between them taking their label (0: never).
        thresholds: Probability a class's smoothed window probability must reach, by class
            name (missing classes: :data:`DEFAULT_THRESHOLD`).
        background: The class that never makes an event (``not_screaming``).
        edge_thresholds: Per class, the lower probability a kept event extends over
            (hysteresis; at most the class's threshold). Only events that passed the
            threshold and the minimum length grow, so it adds no event. Cries fade in and
            out: on the project's soundscapes, events cut at the threshold ended a median
            2.5 s before the cry did.
        min_event_fraction: In a short recording, the minimum event length is at most this
            fraction of the recording. 1 (the default) only lets a recording shorter than
            the minimum be one event end to end. A minimum made for hours of background asks
            a lot of a 7 s clip, where there is little background to make a spurious event:
            at 0.25 a 7.2 s clip needs 1.8 s of cry rather than 2 s. Recordings longer than
            ``min_event / min_event_fraction`` are not affected.
        short_thresholds: Per class, the threshold a recording of at most ``short_max_s``
            uses instead of ``thresholds`` (empty: the same thresholds for every length).
            Long-recording thresholds are chosen to keep false alarms per hour of background
            low; a clip's question is only what the whole clip holds, and it has little
            background to make a false alarm. On the project's validation clips the file
            labels were best with a lower cry and a higher screaming threshold than the
            soundscapes chose.
        short_max_s: The longest recording that uses ``short_thresholds`` (0: none does).
    """

    window_s: float = 1.44
    hop_s: float = 0.48
    smooth_windows: int = 3
    min_event_s: float = 1.0
    max_gap_s: float = 0.0
    thresholds: dict[str, float] = field(default_factory=dict)
    background: str = DEFAULT_BACKGROUND
    class_min_event_s: dict[str, float] = field(default_factory=dict)
    edge_thresholds: dict[str, float] = field(default_factory=dict)
    min_event_fraction: float = 1.0
    short_thresholds: dict[str, float] = field(default_factory=dict)
    short_max_s: float = SHORT_MAX_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s}")
        if not (math.isfinite(self.hop_s) and 0 < self.hop_s <= self.window_s):
            raise ValueError(f"hop_s must be in (0, window_s={self.window_s}], got {self.hop_s}")
        if self.smooth_windows < 1 or self.smooth_windows % 2 == 0:
            raise ValueError(f"smooth_windows must be odd and >= 1, got {self.smooth_windows}")
        if not (math.isfinite(self.min_event_s) and self.min_event_s >= 0):
            raise ValueError(f"min_event_s must be >= 0, got {self.min_event_s}")
        if not (math.isfinite(self.max_gap_s) and self.max_gap_s >= 0):
            raise ValueError(f"max_gap_s must be >= 0, got {self.max_gap_s}")
        if not (isinstance(self.min_event_fraction, (int, float))
                and 0 < self.min_event_fraction <= 1):
            raise ValueError(f"min_event_fraction must be in (0, 1], got {self.min_event_fraction!r}")
        for name, value in self.class_min_event_s.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"minimum event length of {name!r} must be >= 0, got {value!r}")
            if name == self.background:
                raise ValueError(f"{name!r} is the background class; it has no events")
        if not (isinstance(self.short_max_s, (int, float)) and math.isfinite(self.short_max_s)
                and self.short_max_s >= 0):
            raise ValueError(f"short_max_s must be >= 0 seconds, got {self.short_max_s!r}")
        for kind, values in (("threshold", self.thresholds),
                             ("edge threshold", self.edge_thresholds),
                             ("short-recording threshold", self.short_thresholds)):
            for name, value in values.items():
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{kind} of {name!r} must be in [0, 1], got {value!r}")
                if name == self.background:
                    raise ValueError(f"{name!r} is the background class; it has no {kind}")

    def for_length(self, length_s: float) -> SegmentConfig:
        """The settings a recording of ``length_s`` seconds is analysed with: itself, or with
        ``short_thresholds`` in place of ``thresholds`` when it is at most ``short_max_s``."""
        if not self.short_thresholds or length_s > self.short_max_s + 1e-9:
            return self
        return replace(self, thresholds={**self.thresholds, **self.short_thresholds},
                       short_thresholds={})

    def threshold(self, label: str) -> float:
        """The probability ``label`` must reach to label a window."""
        return float(self.thresholds.get(label, DEFAULT_THRESHOLD))

    def edge_threshold(self, label: str) -> float | None:
        """The probability a kept ``label`` event extends over, or None (no growth)."""
        if label not in self.edge_thresholds:
            return None
        return min(float(self.edge_thresholds[label]), self.threshold(label))

    def min_event(self, label: str) -> float:
        """The shortest event of ``label`` that is kept."""
        return float(self.class_min_event_s.get(label, self.min_event_s))

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raises ConfigError when the background or a thresholded class is not in ``classes``."""
        unknown = [c for c in [self.background, *self.thresholds, *self.class_min_event_s,
                               *self.edge_thresholds, *self.short_thresholds]
                   if c not in classes]
        if unknown:
            raise ConfigError(f"unknown class(es) {unknown} in the segment settings; the "
                              f"heads' classes are {list(classes)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def parse_thresholds(items: Iterable[str]) -> dict[str, float]:
    """``["screaming=0.6", "cry=0.4,..."]`` (``--threshold``) -> ``{"screaming": 0.6, ...}``.

    Raises:
        ValueError: An item is not ``CLASS=P`` with P a number in [0, 1].
    """
    out: dict[str, float] = {}
    for item in (part.strip() for value in items for part in value.split(",")):
        if not item:
            continue
        name, sep, number = item.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or not 0.0 <= value <= 1.0:
            raise ValueError(f"expected CLASS=P with P in [0, 1], got {item!r}")
        out[name.strip()] = value
    return out


@dataclass(frozen=True)
class FileSegments:
    """One file's windows, events and the summary columns for its file row.

    The windows are kept as arrays (a day-long recording has 180,000 of them); their rows as
    dicts are made only when asked for (:attr:`segments`, :meth:`rows`).

    Attributes:
        events: ``label``, ``start_s``, ``end_s``, ``peak_confidence`` and
            ``mean_confidence`` (over the event's windows' raw probabilities of ``label``).
        summary: Extra file-row columns (see :func:`summary_columns`).
        starts_s, ends_s: ``[windows]`` window extents in file time.
        probs: ``[windows, classes]`` the windows' raw probabilities.
        smoothed: ``[windows, classes]`` after smoothing.
        labels: Each window's label (after thresholds and the minimum event length).
        classes: Column names of ``probs``.
    """

    events: list[dict[str, Any]]
    summary: dict[str, Any]
    starts_s: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    ends_s: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    probs: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    smoothed: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    labels: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = ()

    @property
    def n_windows(self) -> int:
        return len(self.starts_s)

    def max_prob(self, label: str) -> float:
        """The highest raw window probability of ``label`` in the file (0 with no window)."""
        if not self.n_windows:
            return 0.0
        return float(self.probs[:, self.classes.index(label)].max())

    @cached_property
    def segments(self) -> list[dict[str, Any]]:
        """One dict per window: ``start_s``, ``end_s``, ``label``, ``confidence`` (the smoothed
        probability of ``label``) and ``prob_<class>``. No ``path``: see :meth:`rows`."""
        out = []
        index = {c: i for i, c in enumerate(self.classes)}
        for k, label in enumerate(self.labels):
            row: dict[str, Any] = {"start_s": round(float(self.starts_s[k]), 3),
                                   "end_s": round(float(self.ends_s[k]), 3), "label": label,
                                   "confidence": float(self.smoothed[k, index[label]])}
            row.update({f"prob_{c}": float(p) for c, p in zip(self.classes, self.probs[k],
                                                                strict=True)})
            out.append(row)
        return out

    def rows(self, path: str, *, segments: bool = True
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Segment (unless ``segments`` is False) and event rows with ``path`` first."""
        return ([{"path": path, **s} for s in self.segments] if segments else [],
                [{"path": path, **e} for e in self.events])


# -- table layout ---------------------------------------------------------------------------

def segment_columns(classes: Sequence[str]) -> dict[str, str]:
    """Column name -> arrow type name of the segment table (``scanner.output.rows`` type names)."""
    cols = {"path": "string", "start_s": "float64", "end_s": "float64", "label": "string",
            "confidence": "float64"}
    cols.update({f"prob_{c}": "float64" for c in classes})
    return cols


def event_columns() -> dict[str, str]:
    """Column name -> arrow type name of the events table."""
    return {"path": "string", "label": "string", "start_s": "float64", "end_s": "float64",
            "peak_confidence": "float64", "mean_confidence": "float64",
            "start_time": "datetime"}


def summary_columns(classes: Sequence[str], background: str = DEFAULT_BACKGROUND
                    ) -> dict[str, str]:
    """The columns :attr:`FileSegments.summary` adds to a file row."""
    targets = [c for c in classes if c != background]
    cols = {"n_events": "int64"}
    cols.update({f"n_events_{c}": "int64" for c in targets})
    cols.update({f"event_s_{c}": "float64" for c in targets})
    cols["first_onset_s"] = "float64"
    return cols


def _sibling(out: Path, kind: str) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.{kind}{out.suffix}")


def segments_path(out: Path) -> Path:
    """``results.parquet`` -> ``results.segments.parquet`` (``.csv`` likewise)."""
    return _sibling(out, "segments")


def events_path(out: Path) -> Path:
    """``results.parquet`` -> ``results.events.parquet`` (``.csv`` likewise)."""
    return _sibling(out, "events")


# -- windows --------------------------------------------------------------------------------

def window_starts(duration_s: float, window_s: float, hop_s: float) -> NDArray[np.float64]:
    """Start of each window: every ``hop_s``, the last one moved back to end at the file's end.

    A file no longer than one window is one window starting at 0.
    """
    if duration_s <= window_s:
        return np.zeros(1)
    n = 1 + math.ceil((duration_s - window_s) / hop_s - 1e-9)
    starts = np.minimum(np.arange(n) * hop_s, duration_s - window_s)
    return np.unique(np.round(starts, 9))


def patches_in(starts_s: NDArray[np.float64], patch_s: float, t0: float, t1: float
               ) -> NDArray[np.intp]:
    """Indices of the patches pooled for window ``[t0, t1)`` (see :func:`window_patches`)."""
    return window_patches(starts_s, patch_s, np.array([t0]), np.array([t1]))[0]


def window_probabilities(classifier: Classifier, embeddings: Mapping[str, Embedding],
                         duration_s: float, config: SegmentConfig
                         ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float32]]:
    """Runs every head on every window (each head's :meth:`~scanner.heads.base.Head.predict_windows`).

    Returns:
        ``(starts_s [n], ends_s [n], probs [n, classes])``, in the classifier's class order.
        ``duration_s`` is capped at the end of the shortest backbone's last patch, so a file
        cut by ``--max-duration`` gets windows only where it was analysed.
    """
    span = duration_s
    for m in classifier.models:
        emb = embeddings[m.backbone.name]
        if emb.n_patches == 0:
            return np.zeros(0), np.zeros(0), np.zeros((0, len(classifier.classes)), np.float32)
        span = min(span, float(emb.starts_s.max()) + emb.window_s)
    starts = window_starts(span, config.window_s, config.hop_s)
    ends = np.minimum(starts + config.window_s, span)
    return starts, ends, classifier.predict_windows(embeddings, starts, ends).probs


# -- from probabilities to events -----------------------------------------------------------

def smooth(probs: NDArray[np.floating], n_windows: int) -> NDArray[np.float64]:
    """Centred moving average over ``n_windows`` rows; at the edges, over the rows there are."""
    x = np.asarray(probs, np.float64)
    if n_windows <= 1 or len(x) <= 1:
        return x.copy()
    half = n_windows // 2
    csum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    idx = np.arange(len(x))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(x))
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def window_labels(smoothed: NDArray[np.floating], classes: Sequence[str],
                  config: SegmentConfig) -> list[str]:
    """Each window's label: the likeliest class past its threshold, else the background."""
    targets = [i for i, c in enumerate(classes) if c != config.background]
    thresholds = np.array([config.threshold(classes[i]) for i in targets])
    labels = []
    for row in np.asarray(smoothed):
        p = row[targets]
        passed = p >= thresholds
        labels.append(classes[targets[int(np.argmax(np.where(passed, p, -1.0)))]]
                      if passed.any() else config.background)
    return labels


def window_bounds(starts_s: NDArray[np.floating], ends_s: NDArray[np.floating],
                  duration_s: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The stretch of time each window owns: halfway to its neighbours' centres."""
    centres = (np.asarray(starts_s, np.float64) + np.asarray(ends_s, np.float64)) / 2
    mids = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[0.0], mids]), np.concatenate([mids, [float(duration_s)]])


def bridge_gaps(labels: Sequence[str], own_start_s: NDArray[np.floating],
                own_end_s: NDArray[np.floating], *, background: str, max_gap_s: float
                ) -> list[str]:
    """Labels with each background run of at most ``max_gap_s`` between two runs of one
    class set to that class (so the two become one event)."""
    out = list(labels)
    if max_gap_s <= 0:
        return out
    runs: list[tuple[int, int]] = []  # [i, j] of each run of one label
    i = 0
    while i < len(out):
        j = i
        while j + 1 < len(out) and out[j + 1] == out[i]:
            j += 1
        runs.append((i, j))
        i = j + 1
    for k in range(1, len(runs) - 1):
        i, j = runs[k]
        before, after = out[runs[k - 1][0]], out[runs[k + 1][0]]
        if (out[i] == background and before == after != background
                and float(own_end_s[j]) - float(own_start_s[i]) <= max_gap_s + 1e-9):
            out[i:j + 1] = [before] * (j + 1 - i)
    return out


def merge_events(labels: Sequence[str], own_start_s: NDArray[np.floating],
                 own_end_s: NDArray[np.floating], probs: NDArray[np.floating],
                 classes: Sequence[str], *, background: str,
                 min_event_s: float | Mapping[str, float]
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """Runs of one non-background label -> events; runs shorter than ``min_event_s`` (one
    length, or one per label) dropped.

    Returns:
        The events, and the window labels with dropped runs set back to ``background``.
    """
    events: list[dict[str, Any]] = []
    final = list(labels)
    i = 0
    while i < len(labels):
        j = i
        while j + 1 < len(labels) and labels[j + 1] == labels[i]:
            j += 1
        label = labels[i]
        if label != background:
            start, end = float(own_start_s[i]), float(own_end_s[j])
            shortest = min_event_s.get(label, 0.0) if isinstance(min_event_s, Mapping) \
                else min_event_s
            if end - start + 1e-9 >= shortest:
                p = np.asarray(probs[i:j + 1, list(classes).index(label)], np.float64)
                events.append({"label": label, "start_s": round(start, 3), "end_s": round(end, 3),
                               "peak_confidence": float(p.max()),
                               "mean_confidence": float(p.mean())})
            else:
                final[i:j + 1] = [background] * (j + 1 - i)
        i = j + 1
    return events, final


def grow_events(labels: Sequence[str], smoothed: NDArray[np.floating], classes: Sequence[str],
                config: SegmentConfig) -> list[str]:
    """Labels with each run of a class that has an edge threshold extended, both ways, over
    the background windows whose smoothed probability of that class reaches it.

    Growth stops at a window of another class or one below the edge threshold; two runs of
    one class that grow into each other become one.
    """
    out = np.asarray(labels, dtype=object)
    sm = np.asarray(smoothed, np.float64)
    for ci, c in enumerate(classes):
        edge = config.edge_threshold(c) if c != config.background else None
        if edge is None or len(out) == 0:
            continue
        is_c = out == c
        # stretches of windows that are this class or background above the edge: a stretch
        # that holds a window of the class becomes the class
        ok = is_c | ((out == config.background) & (sm[:, ci] >= edge))
        stretch = np.cumsum(ok & ~np.concatenate([[False], ok[:-1]])) * ok
        holds = np.zeros(int(stretch.max()) + 1, bool)
        holds[stretch[is_c]] = True
        holds[0] = False
        out[ok & holds[stretch]] = c
    return [str(x) for x in out]


def summarise(events: Sequence[Mapping[str, Any]], classes: Sequence[str],
              background: str = DEFAULT_BACKGROUND) -> dict[str, Any]:
    """The file row's event columns: counts and seconds per class, and the first onset."""
    summary: dict[str, Any] = {"n_events": len(events)}
    targets = [c for c in classes if c != background]
    for c in targets:
        summary[f"n_events_{c}"] = sum(1 for e in events if e["label"] == c)
    for c in targets:
        summary[f"event_s_{c}"] = round(sum(e["end_s"] - e["start_s"] for e in events
                                            if e["label"] == c), 3)
    summary["first_onset_s"] = min((e["start_s"] for e in events), default=None)
    return summary


def segment_probs(starts_s: NDArray[np.floating], ends_s: NDArray[np.floating],
                  probs: NDArray[np.floating], classes: Sequence[str], duration_s: float,
                  config: SegmentConfig) -> FileSegments:
    """Windows' probabilities -> segments, events and summary (no model involved).

    Args:
        starts_s, ends_s: ``[n]`` window extents in file time, in order.
        probs: ``[n, len(classes)]`` raw window probabilities.
        classes: Column names of ``probs``.
        duration_s: End of the analysed audio (the last window owns time up to it).
        config: Smoothing, thresholds and minimum event length.
    """
    config.check_classes(classes)
    probs = np.asarray(probs, np.float64)
    if len(probs) == 0:
        return FileSegments([], summarise([], classes, config.background), classes=tuple(classes))
    smoothed = smooth(probs, config.smooth_windows)
    own_start, own_end = window_bounds(starts_s, ends_s, max(duration_s, float(ends_s[-1])))
    # A recording shorter than the minimum event length can still be one event, end to end;
    # in a short one the minimum is at most a fraction of it (min_event_fraction).
    length = float(own_end[-1]) - float(own_start[0])
    config = config.for_length(length)
    min_event_s = {c: min(config.min_event(c), config.min_event_fraction * length)
                   for c in classes}
    labels = bridge_gaps(window_labels(smoothed, classes, config), own_start, own_end,
                         background=config.background, max_gap_s=config.max_gap_s)
    events, labels = merge_events(labels, own_start, own_end, probs, classes,
                                  background=config.background, min_event_s=min_event_s)
    if events and config.edge_thresholds:
        labels = grow_events(labels, smoothed, classes, config)
        # Grown runs are no shorter than the kept events, so no minimum applies again.
        events, labels = merge_events(labels, own_start, own_end, probs, classes,
                                      background=config.background, min_event_s=0.0)
    return FileSegments(events, summarise(events, classes, config.background),
                        np.asarray(starts_s, np.float64), np.asarray(ends_s, np.float64), probs,
                        smoothed, labels, tuple(classes))


def analyse_file(classifier: Classifier, embeddings: Mapping[str, Embedding], duration_s: float,
                 config: SegmentConfig) -> FileSegments:
    """Segments, events and the file row's event summary for one embedded file.

    Args:
        classifier: The scan's models; their heads read pooled window features.
        embeddings: By backbone name, every patch of the file (``starts_s`` in file time),
            as in :attr:`scanner.engines.local.FileResult.embeddings`.
        duration_s: The analysed length of the file (the cut length with ``--max-duration``).
        config: Windows, smoothing, thresholds and minimum event length.
    """
    starts, ends, probs = window_probabilities(classifier, embeddings, duration_s, config)
    analysed_s = float(ends[-1]) if len(ends) else duration_s
    return segment_probs(starts, ends, probs, classifier.classes, analysed_s, config)


def analyse_result(classifier: Classifier, result: FileResult, config: SegmentConfig
                   ) -> FileSegments | None:
    """:func:`analyse_file` for one pipeline result; None for a file that failed to decode.

    The analysed length is the file's duration, or the ``--max-duration`` cut when set.
    """
    if not result.ok or result.info is None:
        return None
    info = result.info
    analysed_s = info.duration_s if info.truncated_to_s is None \
        else min(info.duration_s, info.truncated_to_s)
    return analyse_file(classifier, result.embeddings, analysed_s, config)
