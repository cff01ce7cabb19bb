"""The head interface: pooled backbone features in, per-class probabilities out (numpy only)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from scanner.errors import HeadMismatchError
from scanner.records import Embedding

Features = Literal["embeddings", "scores"]
WINDOW_CHUNK = 2048
"""Windows pooled and classified at a time (bounded memory on long files)."""
Pooling = Literal["mean", "max"]


def pool(values: NDArray[np.float32], pooling: Pooling) -> NDArray[np.float32]:
    """Pools ``[patches, dim]`` over patches to ``[dim]``."""
    if values.shape[0] == 0:
        raise ValueError("cannot pool zero patches")
    out = values.mean(axis=0) if pooling == "mean" else values.max(axis=0)
    return out.astype(np.float32)


def window_patches(patch_starts_s: NDArray[np.float64], patch_s: float,
                   starts_s: NDArray[np.float64], ends_s: NDArray[np.float64]
                   ) -> list[NDArray[np.intp]]:
    """For each window ``[starts_s[k], ends_s[k])``, the indices of the patches pooled for it.

    Patches whose centre lies in the window; when there is none (patches longer than the
    window, e.g. Wav2Vec2's), the patches that overlap it most. Patches must be in time order.
    """
    centres = patch_starts_s + patch_s / 2
    lo = np.searchsorted(centres, starts_s, side="left")
    hi = np.searchsorted(centres, ends_s, side="left")
    # Only patches starting in (t0 - patch_s, t1) can overlap a window: looking at those
    # alone keeps a long file linear (comparing every patch for every window was quadratic).
    near_lo = np.searchsorted(patch_starts_s, np.asarray(starts_s) - patch_s, side="right")
    near_hi = np.searchsorted(patch_starts_s, ends_s, side="left")
    out = []
    for k in range(len(starts_s)):
        if hi[k] > lo[k] or patch_starts_s.size == 0:
            out.append(np.arange(lo[k], hi[k]))
            continue
        t0, t1 = starts_s[k], ends_s[k]
        near = np.arange(near_lo[k], max(near_lo[k], near_hi[k]))
        overlap = np.minimum(patch_starts_s[near] + patch_s, t1) - np.maximum(patch_starts_s[near], t0)
        if overlap.size and overlap.max() > 0:
            out.append(near[overlap >= overlap.max() - 1e-9])
        else:
            out.append(np.array([int(np.argmin(np.abs(centres - (t0 + t1) / 2)))]))
    return out


class Head(ABC):
    """Maps pooled features of one backbone to probabilities over ``classes``.

    Attributes:
        kind: Registry name of the head type (``mlp``, ``audioset``).
        classes: Output class names, in column order of :meth:`predict_proba`.
        backbone: Name of the backbone whose features it takes.
        features: Which backbone output it reads: patch ``embeddings`` or the model's own ``scores``.
        pooling: How patches are pooled into one vector per file or window.
    """

    kind: ClassVar[str]
    classes: tuple[str, ...]
    backbone: str
    features: Features = "embeddings"
    pooling: Pooling = "mean"
    name: str

    @classmethod
    @abstractmethod
    def load(cls, folder: Any) -> Head:
        """Reads a head folder (``head.json`` + weights)."""

    @abstractmethod
    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``[n, input_dim]`` pooled features -> ``[n, len(classes)]`` probabilities (rows sum to 1)."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (written to the output table's metadata)."""

    @property
    def input_dim(self) -> int | None:
        return None

    def select(self, emb: Embedding) -> NDArray[np.float32]:
        """The ``[patches, dim]`` array this head reads from a backbone output."""
        if self.features == "scores":
            if emb.scores is None:
                raise HeadMismatchError(f"head {self.name!r} needs the backbone's class scores, "
                                        f"which backbone {self.backbone!r} did not produce")
            return emb.scores
        return emb.embeddings

    def pooled(self, emb: Embedding) -> NDArray[np.float32]:
        """One pooled feature vector for a whole backbone output."""
        return pool(self.select(emb), self.pooling)

    def predict_file(self, emb: Embedding) -> NDArray[np.float32]:
        """``[1, len(classes)]`` probabilities for a whole backbone output (all its patches
        pooled)."""
        return self.predict_proba(self.pooled(emb)[None, :])

    def detection_thresholds(self) -> dict[str, float]:
        """Per-class probabilities a window needs to make an event, chosen on validation.

        Empty when the head has none (the scan then uses its defaults).
        """
        return dict(getattr(self, "thresholds", None) or {})

    def detection_settings(self) -> dict[str, Any]:
        """The window, hop, smoothing and minimum event length the thresholds were chosen with.

        ``head.json``'s ``detection`` (keys ``window_s``, ``hop_s``, ``smooth_windows``,
        ``min_event_s``); empty when the head has none (the scan then uses its defaults).
        """
        own = getattr(self, "detection", None) or (getattr(self, "extra", None) or {}).get(
            "detection")
        return dict(own or {})

    def predict_windows(self, emb: Embedding, starts_s: NDArray[np.float64],
                        ends_s: NDArray[np.float64]) -> NDArray[np.float32]:
        """Probabilities for each window ``[starts_s[k], ends_s[k])`` of one file.

        Args:
            emb: Every patch of the file, in time order (``starts_s`` in file time).
            starts_s, ends_s: ``[windows]`` window extents in file time.

        Returns:
            ``[windows, len(classes)]``. The default pools the patches whose centre lies in
            each window (see :func:`window_patches`) and calls :meth:`predict_proba`; a head
            that reads neighbouring patches (temporal context) overrides this.
        """
        values = self.select(emb)
        groups = window_patches(emb.starts_s, emb.window_s, starts_s, ends_s)
        out = np.zeros((len(groups), len(self.classes)), np.float32)
        # In chunks: a day-long file has 180,000 windows, whose pooled features at once would
        # take 0.7 GB (1024-d float32) and as much again inside the head.
        for lo in range(0, len(groups), WINDOW_CHUNK):
            chunk = groups[lo:lo + WINDOW_CHUNK]
            out[lo:lo + len(chunk)] = self.predict_proba(
                np.stack([pool(values[idx], self.pooling) for idx in chunk]))
        return out

    def check_model(self, backbone: Any) -> None:
        """Raises HeadMismatchError unless this head can read ``backbone``'s output."""
        self.check_backbone(backbone.config())

    def check_backbone(self, backbone_config: dict[str, Any]) -> None:
        """Raises HeadMismatchError when this head was made for another backbone."""
        if backbone_config.get("name") != self.backbone:
            raise HeadMismatchError(
                f"head {self.name!r} was trained for backbone {self.backbone!r}, "
                f"not {backbone_config.get('name')!r}; pass a head made for it with --head")
        recorded = getattr(self, "backbone_config", {}) or {}
        for key in ("layer", "window_s", "hop_s", "do_normalize", "sample_rate_hz"):
            if key in recorded and key in backbone_config and recorded[key] != backbone_config[key]:
                raise HeadMismatchError(
                    f"head {self.name!r} was trained with {self.backbone} {key}={recorded[key]!r}, "
                    f"but the backbone runs with {key}={backbone_config[key]!r}")
        dim = self.input_dim
        if self.features == "embeddings" and dim is not None and \
                backbone_config.get("embedding_dim") not in (None, dim):
            raise HeadMismatchError(
                f"head {self.name!r} takes {dim}-d embeddings but backbone "
                f"{backbone_config.get('name')!r} gives {backbone_config.get('embedding_dim')}-d")
