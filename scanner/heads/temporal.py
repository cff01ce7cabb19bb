"""A temporal head: a small dilated convolution over the sequence of patches, in numpy.

Each patch embedding is standardised and projected (``Linear -> ReLU``), then passes
residual blocks ``h + ReLU(Conv1d(h))`` with growing dilation, and a last ``Linear`` gives
per-patch logits. With kernel 5 and dilations 1, 2, 4 a patch sees 14 patches either side
(about 7 s of YAMNet patches each way), so the head learns how a cry starts and ends and what
the room sounds like around it, instead of seeing fixed means. A window's probabilities are
those of the patch nearest its centre.

The sequence is zero-padded at a file's ends, as in training (``torch.nn.Conv1d`` with
``padding = dilation * (kernel // 2)``). A long file is run in overlapping chunks that each
carry the receptive field either side, so the result does not depend on the chunking and
memory stays bounded.

Stored as ``head.json`` (``kind: temporal``, kernel, dilations, calibration temperature,
detection settings) and ``weights.safetensors`` (``input.mean``/``input.std``,
``proj.weight``/``bias``, ``block{i}.weight [H, H, kernel]``/``bias``, ``out.weight``/``bias``),
and checked at load: finite weights, shapes that chain, standardisation sizes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ScannerError
from scanner.heads import register_head
from scanner.heads.base import Features, Head
from scanner.heads.context import centre_patches
from scanner.heads.mlp import (
    DETECTION_HEAD_KEYS,
    HEAD_JSON,
    WEIGHTS_FILE,
    check_standardisation,
    detection_metadata,
    init_detection_head,
    read_head_folder,
    softmax,
)
from scanner.records import Embedding

CHUNK_PATCHES = 8192
"""Patches run at a time on a long file (plus the receptive field on each side)."""

Dense = tuple[NDArray[np.float32], NDArray[np.float32]]


def _finite(name: str, *arrays: NDArray[np.float32]) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{name} holds non-finite weights")


def conv_same(h: NDArray[np.float32], weight: NDArray[np.float32], bias: NDArray[np.float32],
              dilation: int) -> NDArray[np.float32]:
    """``[T, H_in]`` -> ``[T, H_out]``: a zero-padded 'same' 1-D convolution (cross-correlation,
    as torch's ``Conv1d``) with ``weight [H_out, H_in, K]`` (``K`` odd)."""
    n, k = h.shape[0], weight.shape[2]
    out = np.broadcast_to(bias, (n, weight.shape[0])).astype(np.float32)
    for j in range(k):
        shift = (j - k // 2) * dilation
        lo, hi = max(0, -shift), min(n, n - shift)
        if hi > lo:
            out[lo:hi] += h[lo + shift:hi + shift] @ weight[:, :, j].T
    return out


@register_head("temporal")
class TemporalHead(Head):
    """Standardise -> ``Linear``+ReLU -> residual dilated convolutions -> ``Linear`` ->
    logits / temperature -> softmax, per patch.

    Args:
        classes: Class names, in output order.
        backbone_config: The backbone's identity and config at training time.
        proj: ``(weight [H, dim], bias [H])``, the per-patch projection.
        blocks: ``[(weight [H, H, K], bias [H]), ...]``, one per dilation.
        dilations: One positive dilation per block.
        out: ``(weight [classes, H], bias [classes])``.
        mean, std: Standardisation of the patch embeddings, ``[dim]``.
        temperature: Calibration: logits are divided by it (fitted on validation windows).
        thresholds, detection: As in :class:`~scanner.heads.context.ContextHead`.
        extra: Anything else for ``head.json`` (training summary, metrics).
    """

    kind = "temporal"

    def __init__(self, *, classes: Sequence[str], backbone_config: dict[str, Any],
                 proj: Dense, blocks: Sequence[Dense], dilations: Sequence[int], out: Dense,
                 mean: NDArray[np.float32], std: NDArray[np.float32], temperature: float = 1.0,
                 features: Features = "embeddings", thresholds: dict[str, float] | None = None,
                 detection: dict[str, Any] | None = None, name: str = "temporal",
                 extra: dict[str, Any] | None = None) -> None:
        init_detection_head(self, classes=classes, backbone_config=backbone_config, mean=mean,
                            std=std, temperature=temperature, features=features,
                            thresholds=thresholds, detection=detection, name=name, extra=extra)
        self.proj = (np.asarray(proj[0], np.float32), np.asarray(proj[1], np.float32))
        self.blocks = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in blocks]
        self.dilations = tuple(int(d) for d in dilations)
        self.out = (np.asarray(out[0], np.float32), np.asarray(out[1], np.float32))
        self._check()

    def _check(self) -> None:
        where = f"head {self.name!r}"
        w, b = self.proj
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"{where}: projection weight {w.shape} and bias {b.shape}")
        hidden, dim = w.shape
        cfg_dim = self.backbone_config.get("embedding_dim")
        if self.features == "embeddings" and cfg_dim is not None and dim != int(cfg_dim):
            raise ValueError(f"{where}: takes {dim}-d patches, the backbone gives {cfg_dim}-d")
        if len(self.blocks) != len(self.dilations) or any(d < 1 for d in self.dilations):
            raise ValueError(f"{where}: {len(self.blocks)} blocks need as many positive "
                             f"dilations, got {list(self.dilations)}")
        for i, (bw, bb) in enumerate(self.blocks):
            if (bw.ndim != 3 or bw.shape[:2] != (hidden, hidden) or bw.shape[2] % 2 == 0
                    or bb.shape != (hidden,)):
                raise ValueError(f"{where}: block {i} has weight {bw.shape} and bias {bb.shape}, "
                                 f"expected [{hidden}, {hidden}, odd kernel] and [{hidden}]")
            _finite(f"{where}: block {i}", bw, bb)
        ow, ob = self.out
        if ow.shape != (len(self.classes), hidden) or ob.shape != (len(self.classes),):
            raise ValueError(f"{where}: output layer {ow.shape} for {len(self.classes)} classes "
                             f"and {hidden} hidden units")
        _finite(where, w, b, ow, ob)
        check_standardisation(self.mean, self.std, dim, where)

    @property
    def input_dim(self) -> int:
        return int(self.proj[0].shape[1])

    @property
    def radius(self) -> int:
        """Patches either side that reach a patch's output (the receptive field's half)."""
        return sum(d * (w.shape[2] // 2) for d, (w, _) in zip(self.dilations, self.blocks, strict=True))

    def sequence_logits(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """``[T, dim]`` one file's patches (the whole sequence) -> ``[T, classes]`` logits."""
        h = (np.asarray(x, np.float32) - self.mean) / self.std
        h = np.maximum(h @ self.proj[0].T + self.proj[1], 0.0)
        for d, (w, b) in zip(self.dilations, self.blocks, strict=True):
            h = h + np.maximum(conv_same(h, w, b, d), 0.0)
        return (h @ self.out[0].T + self.out[1]).astype(np.float32)

    def patch_proba(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """``[T, dim]`` -> ``[T, classes]`` calibrated probabilities, in bounded chunks."""
        x = np.asarray(x)
        n, r = x.shape[0], self.radius
        if n <= CHUNK_PATCHES:
            return softmax(self.sequence_logits(x) / self.temperature)
        out = np.empty((n, len(self.classes)), np.float32)
        for lo in range(0, n, CHUNK_PATCHES):
            hi = min(n, lo + CHUNK_PATCHES)
            a, b = max(0, lo - r), min(n, hi + r)
            out[lo:hi] = softmax(self.sequence_logits(x[a:b])[lo - a:hi - a] / self.temperature)
        return out

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``[n, dim]`` pooled vectors: each as a steady sound, a sequence of that one vector
        as long as the receptive field; the centre patch's probabilities."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[1] != self.input_dim:
            raise ValueError(f"head {self.name!r} takes {self.input_dim}-d input, got {x.shape[1]}-d")
        r = self.radius
        return np.stack([self.patch_proba(np.repeat(v[None], 2 * r + 1, axis=0))[r] for v in x]
                        ) if len(x) else np.zeros((0, len(self.classes)), np.float32)

    def predict_windows(self, emb: Embedding, starts_s: NDArray[np.float64],
                        ends_s: NDArray[np.float64]) -> NDArray[np.float32]:
        if emb.n_patches == 0 or len(starts_s) == 0:
            return np.zeros((len(starts_s), len(self.classes)), np.float32)
        probs = self.patch_proba(self.select(emb))
        return probs[centre_patches(emb.starts_s, emb.window_s, starts_s, ends_s)]

    def metadata(self) -> dict[str, Any]:
        return detection_metadata(self, {}, {
            "hidden": int(self.proj[0].shape[0]),
            "kernel": [int(w.shape[2]) for w, _ in self.blocks],
            "dilations": list(self.dilations),
            "receptive_field_patches": 2 * self.radius + 1})

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes ``head.json`` and ``weights.safetensors`` into ``folder``."""
        from safetensors.numpy import save_file

        from scanner import __version__

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"input.mean": self.mean, "input.std": self.std,
                   "proj.weight": self.proj[0], "proj.bias": self.proj[1],
                   "out.weight": self.out[0], "out.bias": self.out[1]}
        for i, (w, b) in enumerate(self.blocks):
            tensors[f"block{i}.weight"], tensors[f"block{i}.bias"] = w, b
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                  str(out / WEIGHTS_FILE))
        meta = {**self.metadata(), "tool_version": __version__}
        (out / HEAD_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> TemporalHead:
        """Reads a head folder written by :meth:`save`; ScannerError on anything malformed."""
        src, meta, tensors = read_head_folder(folder, cls.kind, "a temporal head")
        try:
            dilations = [int(d) for d in meta["architecture"]["dilations"]]
            return cls(classes=meta["classes"], backbone_config=meta["backbone"],
                       proj=(tensors["proj.weight"], tensors["proj.bias"]),
                       blocks=[(tensors[f"block{i}.weight"], tensors[f"block{i}.bias"])
                               for i in range(len(dilations))],
                       dilations=dilations, out=(tensors["out.weight"], tensors["out.bias"]),
                       mean=tensors["input.mean"], std=tensors["input.std"],
                       temperature=float(meta.get("calibration", {}).get("temperature", 1.0)),
                       features=meta.get("preprocessing", {}).get("features", "embeddings"),
                       thresholds=meta.get("thresholds"), detection=meta.get("detection"),
                       name=meta.get("name", src.name),
                       extra={k: v for k, v in meta.items() if k not in DETECTION_HEAD_KEYS})
        except (KeyError, TypeError, ValueError) as e:
            raise ScannerError(f"head {src} is malformed: {e}") from e
