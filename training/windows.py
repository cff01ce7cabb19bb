"""Training windows: the scan's analysis windows over clips and scenes, with labels.

Windows are cut exactly as ``scan`` cuts a file (:func:`scanner.events.segments.window_starts`,
1.44 s at a 0.48 s hop by default) and get the context head's features
(:func:`scanner.heads.context.multiscale_features`), so a head trains on what it will see.

Labels:

- a background clip: every window is background;
- a cry or scream clip: positive only where the sound is, i.e. windows whose loudest centre
  patch is within ``ACTIVE_DB`` of the clip's loudest patch; quieter windows (pauses,
  breaths, silence around the sound) are left out, not called background;
- a scene: from the known event times (:func:`training.scenes.window_labels`);
- a weak bag (a clip labelled only by where it comes from): no label at first; after a
  first fit, the windows the model already finds most scream-like become positives
  (multiple-instance learning by instance selection, :func:`select_bag_positives`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scanner.events.segments import window_starts
from scanner.heads.context import centre_patches, multiscale_features
from training.patches import Patches

WINDOW_S = 1.44
HOP_S = 0.48
ACTIVE_DB = 15.0
"""A positive clip's window counts as the sound when within this of the clip's loudest patch."""
IGNORE = -1


@dataclass(frozen=True)
class WindowSet:
    """Windows of many sources, row-aligned.

    Attributes:
        x: ``[n, dim * scales]`` float32 features.
        y: ``[n]`` class index, or ``IGNORE``.
        source: ``[n]`` index of the clip or scene each window comes from.
        energy_db: ``[n]`` level of the window's loudest centre patch.
    """

    x: NDArray[np.float32]
    y: NDArray[np.int64]
    source: NDArray[np.int64]
    energy_db: NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, mask: NDArray[np.bool_]) -> WindowSet:
        return WindowSet(self.x[mask], self.y[mask], self.source[mask], self.energy_db[mask])

    def relabel(self, y: NDArray[np.int64]) -> WindowSet:
        return WindowSet(self.x, y, self.source, self.energy_db)

    @staticmethod
    def concat(parts: Sequence[WindowSet]) -> WindowSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            return empty(0)
        return WindowSet(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                         np.concatenate([p.source for p in parts]),
                         np.concatenate([p.energy_db for p in parts]))


def empty(dim: int) -> WindowSet:
    return WindowSet(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros(0, np.float32))


def windows_of(patches: Patches, *, window_s: float = WINDOW_S, hop_s: float = HOP_S
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The scan's windows over a waveform's patches: ``(starts_s, ends_s)``."""
    span = (patches.n - 1) * patches.hop_s + patches.window_s if patches.n else 0.0
    starts = window_starts(span, window_s, hop_s)
    return starts, np.minimum(starts + window_s, span)


def features_of(patches: Patches, starts_s: NDArray[np.float64], ends_s: NDArray[np.float64],
                scales: Sequence[int]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``([windows, dim * scales] features, [windows] loudest centre-patch energy)``."""
    centre = centre_patches(patches.starts_s, patches.window_s, starts_s, ends_s)
    x = multiscale_features(patches.embeddings, centre, scales)
    e = patches.energy_db
    lo, hi = np.clip(centre - 1, 0, patches.n - 1), np.clip(centre + 1, 0, patches.n - 1)
    energy = np.maximum(np.maximum(e[lo], e[centre]), e[hi])
    return x, energy.astype(np.float32)


def clip_windows(patches: Sequence[Patches | None], labels: Sequence[int], *, background: int,
                 scales: Sequence[int], sources: Sequence[int] | None = None,
                 active_db: float = ACTIVE_DB, weak: bool = False) -> WindowSet:
    """Windows of whole clips labelled with their clip's label (see the module docstring).

    Args:
        patches: Each clip's patches (None: unusable, skipped).
        labels: Each clip's class index.
        background: Index of the background class.
        scales: Context scales of the features.
        sources: Source index of each clip (default: its position).
        active_db: How far under the clip's loudest patch a positive window may be.
        weak: Weak bags: every window is ``IGNORE`` until :func:`select_bag_positives`.
    """
    parts = []
    for i, (p, label) in enumerate(zip(patches, labels, strict=True)):
        if p is None or p.n == 0:
            continue
        starts, ends = windows_of(p)
        x, energy = features_of(p, starts, ends, scales)
        y = np.full(len(starts), label, np.int64)
        if weak:
            y[:] = IGNORE
        elif label != background:
            y[energy < float(p.energy_db.max()) - active_db] = IGNORE
        src = np.full(len(starts), i if sources is None else sources[i], np.int64)
        parts.append(WindowSet(x, y, src, energy))
    return WindowSet.concat(parts)


def select_bag_positives(bags: WindowSet, proba: NDArray[np.float32], target: int, *,
                         threshold: float = 0.5, top_k: int = 3,
                         active_db: float = ACTIVE_DB) -> NDArray[np.int64]:
    """New labels for weak bags: each bag's ``top_k`` most ``target``-like loud windows whose
    probability reaches ``threshold`` become ``target``; every other window stays ``IGNORE``.

    A bag whose best window stays under ``threshold`` (about half the weak screams hold no
    scream) gives nothing.
    """
    y = np.full(len(bags), IGNORE, np.int64)
    for src in np.unique(bags.source):
        idx = np.flatnonzero(bags.source == src)
        loud = bags.energy_db[idx] >= bags.energy_db[idx].max() - active_db
        cand = idx[loud & (proba[idx, target] >= threshold)]
        if len(cand):
            best = cand[np.argsort(-proba[cand, target])[:top_k]]
            y[best] = target
    return y
