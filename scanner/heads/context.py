"""A context head: each window also sees its neighbours (multi-scale means of patches), in numpy.

A window's features are the means of the ``s`` patches centred on the window's centre, for
each scale ``s`` in ``scales`` (odd patch counts; with YAMNet's 0.48 s hop, 3 patches
cover the 1.44 s window itself, 7 about 3.4 s, 21 about 10 s), concatenated and fed to a
standardised MLP. The wide scales tell a loud event from a loud room: the network sees the
window and the background it sits in. Near a file's ends a scale takes the patches there
are. A whole short clip pooled into one vector is every scale at once (all scales hold the
same patches), so :meth:`ContextHead.predict_proba` repeats the pooled vector per scale.

Stored as ``head.json`` (``kind: context``, the scales, the calibration temperature,
detection thresholds and settings) and ``weights.safetensors`` (as :mod:`scanner.heads.mlp`),
and checked at load: finite weights, layer shapes that chain, standardisation sizes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ScannerError
from scanner.heads import register_head
from scanner.heads.base import WINDOW_CHUNK, Features, Head
from scanner.heads.mlp import (
    DETECTION_HEAD_KEYS,
    check_standardisation,
    detection_metadata,
    init_detection_head,
    read_head_folder,
    save_layers,
    softmax,
)
from scanner.records import Embedding

DEFAULT_SCALES: tuple[int, ...] = (3, 7, 21)
"""Patch counts of the context means: the window (1.44 s), ~3.4 s and ~10 s of YAMNet patches."""


def centre_patches(patch_starts_s: NDArray[np.float64], patch_s: float,
                   starts_s: NDArray[np.float64], ends_s: NDArray[np.float64]) -> NDArray[np.intp]:
    """``[windows]`` index of the patch whose centre is nearest each window's centre."""
    centres = np.asarray(patch_starts_s, np.float64) + patch_s / 2
    mid = (np.asarray(starts_s, np.float64) + np.asarray(ends_s, np.float64)) / 2
    hi = np.clip(np.searchsorted(centres, mid), 1, max(len(centres) - 1, 1))
    lo = hi - 1
    pick = np.where(np.abs(centres[np.minimum(hi, len(centres) - 1)] - mid)
                    < np.abs(centres[lo] - mid), hi, lo)
    return np.clip(pick, 0, len(centres) - 1).astype(np.intp)


def prefix_sums(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """``[n, dim]`` -> ``[n + 1, dim]`` float64 running sums over rows, starting at zero.

    The same sums, in the same order, as ``np.cumsum(x, axis=0)`` in float64, row by row:
    numpy's cumsum down the rows of a wide array is strided and 15 times slower.
    """
    out = np.empty((x.shape[0] + 1, x.shape[1]), np.float64)
    out[0] = 0.0
    acc = np.zeros(x.shape[1], np.float64)
    for i in range(x.shape[0]):
        acc += x[i]
        out[i + 1] = acc
    return out


def multiscale_features(values: NDArray[np.floating], centre: NDArray[np.intp],
                        scales: Sequence[int]) -> NDArray[np.float32]:
    """``[patches, dim]`` and ``[windows]`` centre patches -> ``[windows, dim * len(scales)]``.

    Scale ``s`` is the mean of patches ``centre - s//2 .. centre + s//2`` that exist. Only
    the patches the widest scale reaches from these centres are summed, so a long file read
    in chunks of windows costs time linear in its length (summing every patch for each chunk
    made a 4 h file 13 times slower than a 1 h one).
    """
    n_all = np.asarray(values).shape[0]
    centre = np.asarray(centre, np.intp)
    if centre.size == 0:
        return np.zeros((0, np.asarray(values).shape[1] * len(scales)), np.float32)
    half = max(scales) // 2
    first = int(np.clip(centre.min() - half, 0, n_all))
    last = int(np.clip(centre.max() + half + 1, 0, n_all))
    x = np.asarray(values[first:last])
    n = x.shape[0]
    csum = prefix_sums(x)
    local = centre - first
    parts = []
    for s in scales:
        lo = np.clip(local - s // 2, 0, n)
        hi = np.clip(local + s // 2 + 1, 0, n)
        parts.append((csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)[:, None])
    return np.concatenate(parts, axis=1).astype(np.float32)


def mlp_logits(layers: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]],
               mean: NDArray[np.float32], std: NDArray[np.float32],
               x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Standardise, then ``Linear -> ReLU`` layers and a final ``Linear`` (logits)."""
    h = (np.asarray(x, np.float32) - mean) / std
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def check_layers(layers: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]],
                 in_dim: int, n_out: int, where: str) -> None:
    """Raises ValueError unless the layers chain from ``in_dim`` to ``n_out`` with finite weights."""
    if not layers:
        raise ValueError(f"{where}: no layers")
    size = in_dim
    for i, (w, b) in enumerate(layers):
        if w.ndim != 2 or w.shape[1] != size or b.shape != (w.shape[0],):
            raise ValueError(f"{where}: layer {i} has weight {w.shape} and bias {b.shape}, "
                             f"expected [out, {size}] and [out]")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"{where}: layer {i} holds non-finite weights")
        size = w.shape[0]
    if size != n_out:
        raise ValueError(f"{where}: last layer has {size} outputs for {n_out} classes")


@register_head("context")
class ContextHead(Head):
    """Multi-scale context means -> standardised MLP -> logits / temperature -> softmax.

    Args:
        classes: Class names, in output order.
        backbone_config: The backbone's identity and config at training time.
        scales: Odd patch counts of the context means, in feature order.
        layers: ``[(weight [out, in], bias [out]), ...]``; the first takes
            ``embedding_dim * len(scales)`` inputs.
        mean, std: Standardisation of the features, ``[embedding_dim * len(scales)]``.
        temperature: Calibration: logits are divided by it (fitted on validation windows).
        thresholds: Per-class event thresholds chosen on validation soundscapes.
        detection: Window, hop, smoothing and minimum event length the thresholds were
            chosen with (``window_s``, ``hop_s``, ``smooth_windows``, ``min_event_s``).
        extra: Anything else for ``head.json`` (training summary, metrics).
    """

    kind = "context"

    def __init__(self, *, classes: Sequence[str], backbone_config: dict[str, Any],
                 scales: Sequence[int],
                 layers: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]],
                 mean: NDArray[np.float32], std: NDArray[np.float32], temperature: float = 1.0,
                 features: Features = "embeddings", thresholds: dict[str, float] | None = None,
                 detection: dict[str, Any] | None = None, name: str = "context",
                 extra: dict[str, Any] | None = None) -> None:
        self.scales = tuple(int(s) for s in scales)
        if not self.scales or any(s < 1 or s % 2 == 0 for s in self.scales):
            raise ValueError(f"scales must be odd patch counts >= 1, got {list(scales)}")
        init_detection_head(self, classes=classes, backbone_config=backbone_config, mean=mean,
                            std=std, temperature=temperature, features=features,
                            thresholds=thresholds, detection=detection, name=name, extra=extra)
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        in_dim = self.layers[0][0].shape[1] if self.layers else 0
        if in_dim % len(self.scales):
            raise ValueError(f"first layer takes {in_dim} inputs, not a multiple of "
                             f"{len(self.scales)} scales")
        dim = self.backbone_config.get("embedding_dim")
        if features == "embeddings" and dim is not None and in_dim != int(dim) * len(self.scales):
            raise ValueError(f"head {name!r}: first layer takes {in_dim} inputs, but "
                             f"{len(self.scales)} scales of {dim}-d embeddings make "
                             f"{int(dim) * len(self.scales)}")
        check_layers(self.layers, in_dim, len(self.classes), f"head {name!r}")
        check_standardisation(self.mean, self.std, in_dim, f"head {name!r}")

    @property
    def input_dim(self) -> int:
        """Size of one patch embedding (a pooled vector), as the backbone check expects."""
        return int(self.layers[0][0].shape[1]) // len(self.scales)

    def proba_from_features(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``[n, input_dim * len(scales)]`` multi-scale features -> calibrated probabilities."""
        return softmax(mlp_logits(self.layers, self.mean, self.std, x) / self.temperature)

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``[n, input_dim]`` pooled vectors (a whole clip: every scale alike)."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[1] != self.input_dim:
            raise ValueError(f"head {self.name!r} takes {self.input_dim}-d input, got {x.shape[1]}-d")
        return self.proba_from_features(np.tile(x, (1, len(self.scales))))

    def window_features(self, emb: Embedding, starts_s: NDArray[np.float64],
                        ends_s: NDArray[np.float64]) -> NDArray[np.float32]:
        """``[windows, input_dim * len(scales)]``: the features of each window of one file."""
        centre = centre_patches(emb.starts_s, emb.window_s, starts_s, ends_s)
        return multiscale_features(self.select(emb), centre, self.scales)

    def predict_windows(self, emb: Embedding, starts_s: NDArray[np.float64],
                        ends_s: NDArray[np.float64]) -> NDArray[np.float32]:
        out = np.zeros((len(starts_s), len(self.classes)), np.float32)
        if emb.n_patches == 0 or len(starts_s) == 0:
            return out
        # In chunks: the multi-scale features of a day's 180,000 windows would take 2 GB.
        for lo in range(0, len(starts_s), WINDOW_CHUNK):
            hi = lo + WINDOW_CHUNK
            out[lo:hi] = self.proba_from_features(
                self.window_features(emb, starts_s[lo:hi], ends_s[lo:hi]))
        return out

    def metadata(self) -> dict[str, Any]:
        return detection_metadata(
            self, {"context_scales_patches": list(self.scales)},
            {"sizes": [int(self.layers[0][0].shape[1])] + [int(w.shape[0]) for w, _ in self.layers]})

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes ``head.json`` and ``weights.safetensors`` into ``folder``."""
        return save_layers(folder, self.metadata(), self.mean, self.std, self.layers)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ContextHead:
        """Reads a head folder written by :meth:`save`; ScannerError on anything malformed."""
        src, meta, tensors = read_head_folder(folder, cls.kind, "a context head")
        try:
            n_layers = sum(1 for k in tensors if k.startswith("layer") and k.endswith(".weight"))
            layers = [(tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"])
                      for i in range(n_layers)]
            pre = meta.get("preprocessing", {})
            return cls(classes=meta["classes"], backbone_config=meta["backbone"],
                       scales=pre["context_scales_patches"], layers=layers,
                       mean=tensors["input.mean"], std=tensors["input.std"],
                       temperature=float(meta.get("calibration", {}).get("temperature", 1.0)),
                       features=pre.get("features", "embeddings"),
                       thresholds=meta.get("thresholds"), detection=meta.get("detection"),
                       name=meta.get("name", src.name),
                       extra={k: v for k, v in meta.items() if k not in DETECTION_HEAD_KEYS})
        except (KeyError, TypeError, ValueError) as e:
            raise ScannerError(f"head {src} is malformed: {e}") from e
