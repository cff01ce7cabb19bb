"""The zero-shot head: YAMNet's own AudioSet scores mapped to cry / screaming / not_screaming.

``Crying, sobbing`` and ``Baby cry, infant cry`` count for ``cry`` (the larger of the two),
``Screaming`` for ``screaming``. Their pooled scores enter a 3-class logistic model on the
scores' logits, whose few weights were calibrated on real labelled clips (see
``benchmarks/calibrate_audioset.py``); everything else is ``not_screaming``.

The head reads the scores the model gives (``features: scores``), or, with a ``score layer``
(``weights.safetensors``: YAMNet's own classifier rows of the mapped AudioSet classes,
``score.weight`` ``[k, 1024]`` and ``score.bias`` ``[k]``), computes them from the patch
embeddings the way YAMNet does (``sigmoid(embedding @ weight.T + bias)``) and reads
``features: embeddings``: so it can be the member of an ensemble with heads on embeddings, and
be scored on cached embeddings (``score_index`` then numbers the layer's rows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import HeadMismatchError, ScannerError
from scanner.heads import register_head
from scanner.heads.base import Head, Pooling
from scanner.heads.mlp import HEAD_JSON, WEIGHTS_FILE, softmax
from scanner.records import Embedding

CLASS_SOURCES: dict[str, tuple[str, ...]] = {
    "cry": ("Crying, sobbing", "Baby cry, infant cry"),
    "screaming": ("Screaming",),
}


def logit(p: NDArray[np.float32]) -> NDArray[np.float32]:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@register_head("audioset")
class AudioSetHead(Head):
    """Maps pooled AudioSet scores to the three classes.

    Args:
        score_index: AudioSet class name -> column in YAMNet's score vector.
        weight: ``[n_classes, n_mapped]`` logistic weights on the mapped scores' logits.
        bias: ``[n_classes]``.
        mapped: Output-free names of the mapped inputs, in weight column order (``cry``, ``screaming``).
    """

    kind = "audioset"
    features = "scores"

    def __init__(self, *, classes: tuple[str, ...], score_index: dict[str, int],
                 mapped: tuple[str, ...], weight: NDArray[np.float32], bias: NDArray[np.float32],
                 pooling: Pooling = "mean", name: str = "audioset",
                 extra: dict[str, Any] | None = None,
                 score_layer: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None) -> None:
        self.classes = tuple(classes)
        self.backbone = "yamnet"
        self.score_index = dict(score_index)
        self.mapped = tuple(mapped)
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.pooling = pooling
        self.name = name
        self.extra = dict(extra or {})
        if self.weight.shape != (len(self.classes), len(self.mapped)):
            raise ValueError(f"weight must be [{len(self.classes)}, {len(self.mapped)}]")
        self.score_layer = None
        if score_layer is not None:
            w, b = (np.asarray(a, np.float32) for a in score_layer)
            if w.ndim != 2 or b.shape != (w.shape[0],) or not (np.isfinite(w).all()
                                                              and np.isfinite(b).all()):
                raise ValueError(f"score layer must be finite [k, dim] and [k], got {w.shape} "
                                 f"and {b.shape}")
            if sorted(self.score_index.values()) != list(range(w.shape[0])):
                raise ValueError("with a score layer, score_index numbers its rows 0..k-1")
            self.score_layer = (w, b)
            self.features = "embeddings"
        # Its pooled input is the scores select() derives, not the embeddings themselves.
        self.derived_features = self.score_layer is not None

    @property
    def input_dim(self) -> int | None:
        return None if self.score_layer is None else int(self.score_layer[0].shape[1])

    def select(self, emb: Embedding) -> NDArray[np.float32]:
        """The model's scores, or with a score layer the mapped classes' scores from the
        patch embeddings."""
        if self.score_layer is None:
            return super().select(emb)
        w, b = self.score_layer
        return (0.5 * (1.0 + np.tanh(0.5 * (emb.embeddings @ w.T + b)))).astype(np.float32)

    def mapped_scores(self, scores: NDArray[np.float32]) -> NDArray[np.float32]:
        """``[n, 521]`` pooled AudioSet scores -> ``[n, len(mapped)]`` scores of the mapped classes."""
        cols = []
        for target in self.mapped:
            idx = [self.score_index[name] for name in CLASS_SOURCES[target]]
            cols.append(scores[:, idx].max(axis=1))
        return np.stack(cols, axis=1)

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        x = np.atleast_2d(np.asarray(x, np.float32))
        z = logit(self.mapped_scores(x))
        return softmax(z @ self.weight.T + self.bias)

    def check_model(self, backbone: Any) -> None:
        """Also checks that the model's class map has the mapped classes where expected."""
        super().check_model(backbone)
        score_names = backbone.score_names
        if score_names is None or self.score_layer is not None:
            return
        for name, idx in self.score_index.items():
            if idx >= len(score_names) or score_names[idx] != name:
                raise HeadMismatchError(f"the model's class map has no {name!r} at index {idx}")

    def metadata(self) -> dict[str, Any]:
        return {
            "format": "scanner-head",
            "format_version": 1,
            "kind": self.kind,
            "name": self.name,
            "classes": list(self.classes),
            "backbone": {"name": "yamnet"},
            "preprocessing": {"features": self.features, "pooling": self.pooling,
                              **({"score_layer": WEIGHTS_FILE} if self.score_layer else {})},
            "score_index": self.score_index,
            "mapped": list(self.mapped),
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            **self.extra,
        }

    def save(self, folder: str | os.PathLike[str]) -> Path:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        if self.score_layer is not None:
            from safetensors.numpy import save_file

            w, b = self.score_layer
            save_file({"score.weight": w, "score.bias": b}, str(out / WEIGHTS_FILE))
        (out / HEAD_JSON).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> AudioSetHead:
        src = Path(folder)
        try:
            meta = json.loads((src / HEAD_JSON).read_text())
            known = {"format", "format_version", "kind", "name", "classes", "backbone",
                     "preprocessing", "score_index", "mapped", "weight", "bias"}
            layer = None
            if meta.get("preprocessing", {}).get("score_layer"):
                from scanner.heads.checks import load_safetensors

                tensors = load_safetensors(src / WEIGHTS_FILE)
                layer = (tensors["score.weight"], tensors["score.bias"])
            return cls(classes=tuple(meta["classes"]), score_index=meta["score_index"],
                       mapped=tuple(meta["mapped"]), weight=np.array(meta["weight"]),
                       bias=np.array(meta["bias"]),
                       pooling=meta.get("preprocessing", {}).get("pooling", "mean"),
                       name=meta.get("name", "audioset"),
                       extra={k: v for k, v in meta.items() if k not in known}, score_layer=layer)
        except (OSError, KeyError, ValueError) as e:
            raise ScannerError(f"cannot read AudioSet head {src}: {e}") from e
