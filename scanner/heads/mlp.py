"""The trained head: a standardised MLP evaluated in numpy, stored as JSON + safetensors (no pickle).

A head folder holds ``head.json`` (classes, backbone config, preprocessing, thresholds,
training summary, metrics) and ``weights.safetensors`` (``input.mean``, ``input.std``,
``layer{i}.weight`` as ``[out, in]`` and ``layer{i}.bias``).
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
from scanner.heads.base import Features, Head, Pooling

HEAD_JSON = "head.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "scanner-head"
FORMAT_VERSION = 1


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@register_head("mlp")
class MLPHead(Head):
    """Standardise, then ``Linear -> ReLU`` layers, then a final ``Linear`` and softmax.

    Args:
        classes: Class names, in output order.
        backbone_config: The backbone's :meth:`Backbone.config` (and identity) at training time.
        layers: ``[(weight [out, in], bias [out]), ...]``, the last one producing logits.
        mean, std: Standardisation of the pooled input, ``[in]`` each.
        thresholds: Per-class decision thresholds chosen on validation (used for events).
        extra: Anything else to keep in ``head.json`` (training summary, metrics...).
    """

    kind = "mlp"

    def __init__(self, *, classes: Sequence[str], backbone_config: dict[str, Any],
                 layers: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]],
                 mean: NDArray[np.float32], std: NDArray[np.float32],
                 pooling: Pooling = "mean", features: Features = "embeddings",
                 thresholds: dict[str, float] | None = None, name: str = "mlp",
                 extra: dict[str, Any] | None = None) -> None:
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(f"a head needs at least two distinct class names, got {list(classes)}")
        if not layers:
            raise ValueError("an MLP head needs at least one layer")
        self.classes = tuple(classes)
        self.backbone_config = dict(backbone_config)
        self.backbone = str(backbone_config["name"])
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.pooling = pooling
        self.features = features
        self.thresholds = dict(thresholds or {})
        self.name = name
        self.extra = dict(extra or {})
        if self.layers[-1][0].shape[0] != len(self.classes):
            raise ValueError(f"last layer has {self.layers[-1][0].shape[0]} outputs "
                             f"for {len(self.classes)} classes")
        if self.mean.shape != (self.input_dim,) or self.std.shape != (self.input_dim,):
            raise ValueError("standardisation vectors do not match the first layer's input size")

    @property
    def input_dim(self) -> int:
        return int(self.layers[0][0].shape[1])

    def logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        h = (np.asarray(x, np.float32) - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[1] != self.input_dim:
            raise ValueError(f"head {self.name!r} takes {self.input_dim}-d input, got {x.shape[1]}-d")
        return softmax(self.logits(x))

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "classes": list(self.classes),
            "backbone": self.backbone_config,
            "preprocessing": {
                "features": self.features,
                "pooling": self.pooling,
                "standardize": True,
                "sample_rate_hz": self.backbone_config.get("sample_rate_hz"),
                "window_s": self.backbone_config.get("window_s"),
                "hop_s": self.backbone_config.get("hop_s"),
            },
            "architecture": {
                "activation": "relu",
                "sizes": [self.input_dim] + [int(w.shape[0]) for w, _ in self.layers],
            },
            "thresholds": self.thresholds,
            **self.extra,
        }

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes ``head.json`` and ``weights.safetensors`` into ``folder`` (created if needed)."""
        return save_layers(folder, self.metadata(), self.mean, self.std, self.layers)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> MLPHead:
        """Reads a head folder written by :meth:`save`; raises ScannerError on anything malformed."""
        from scanner.heads.checks import read_mlp

        src = Path(folder)
        meta, tensors, n_layers = read_mlp(src)
        if meta.get("format") != FORMAT or meta.get("kind") != cls.kind:
            raise ScannerError(f"{src / HEAD_JSON} is not an MLP head of this tool "
                               f"(format={meta.get('format')!r}, kind={meta.get('kind')!r})")
        layers = [(tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]) for i in range(n_layers)]
        known = {"format", "format_version", "kind", "name", "classes", "backbone",
                 "preprocessing", "architecture", "thresholds", "tool_version"}
        pre = meta.get("preprocessing", {})
        return cls(classes=meta["classes"], backbone_config=meta["backbone"], layers=layers,
                   mean=tensors["input.mean"], std=tensors["input.std"],
                   pooling=pre.get("pooling", "mean"), features=pre.get("features", "embeddings"),
                   thresholds=meta.get("thresholds"), name=meta.get("name", src.name),
                   extra={k: v for k, v in meta.items() if k not in known})


def save_layers(folder: str | os.PathLike[str], metadata: dict[str, Any],
                mean: NDArray[np.float32], std: NDArray[np.float32],
                layers: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]]) -> Path:
    """Writes a head folder of standardisation and dense layers (the MLP and context heads):
    ``weights.safetensors`` (``input.mean``, ``input.std``, ``layer{i}.weight``/``bias``) and
    ``head.json`` (``metadata`` with the tool's version)."""
    from safetensors.numpy import save_file

    from scanner import __version__

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"input.mean": mean, "input.std": std}
    for i, (w, b) in enumerate(layers):
        tensors[f"layer{i}.weight"] = np.ascontiguousarray(w)
        tensors[f"layer{i}.bias"] = np.ascontiguousarray(b)
    save_file(tensors, str(out / WEIGHTS_FILE))
    meta = {**metadata, "tool_version": __version__}
    (out / HEAD_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return out


DETECTION_HEAD_KEYS = frozenset({"format", "format_version", "kind", "name", "classes", "backbone",
                                 "preprocessing", "architecture", "calibration", "thresholds",
                                 "detection", "tool_version"})
"""``head.json`` keys a calibrated detection head (context, temporal) reads itself; the rest
is kept as its ``extra``."""


def detection_metadata(head: Any, preprocessing: dict[str, Any],
                       architecture: dict[str, Any]) -> dict[str, Any]:
    """``head.json`` of a calibrated detection head (a context or temporal head): identity,
    backbone, ``preprocessing`` (plus the backbone's rate, window and hop), ``architecture``,
    temperature, thresholds, detection settings and the head's ``extra``."""
    cfg = head.backbone_config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": head.kind,
        "name": head.name,
        "classes": list(head.classes),
        "backbone": cfg,
        "preprocessing": {"features": head.features, **preprocessing, "standardize": True,
                          "sample_rate_hz": cfg.get("sample_rate_hz"),
                          "window_s": cfg.get("window_s"), "hop_s": cfg.get("hop_s")},
        "architecture": {"activation": "relu", **architecture},
        "calibration": {"method": "temperature", "temperature": head.temperature},
        "thresholds": head.thresholds,
        "detection": head.detection,
        **head.extra,
    }


def read_head_folder(folder: str | os.PathLike[str], kind: str, what: str
                     ) -> tuple[Path, dict[str, Any], dict[str, NDArray[np.float32]]]:
    """``(folder, head.json, weights.safetensors)`` of a head folder of ``kind``.

    Raises:
        ScannerError: A file is missing or unreadable, or the folder holds another kind.
    """
    from safetensors.numpy import load_file

    src = Path(folder)
    try:
        meta = json.loads((src / HEAD_JSON).read_text())
        tensors = load_file(str(src / WEIGHTS_FILE))
    except FileNotFoundError as e:
        raise ScannerError(f"{src} is not a head folder: {e.filename} is missing") from e
    except Exception as e:  # json, OS and safetensors' own error types
        raise ScannerError(f"cannot read head {src}: {e}") from e
    if meta.get("format") != FORMAT or meta.get("kind") != kind:
        raise ScannerError(f"{src / HEAD_JSON} is not {what} of this tool "
                           f"(format={meta.get('format')!r}, kind={meta.get('kind')!r})")
    return src, meta, tensors


def init_detection_head(head: Any, *, classes: Sequence[str], backbone_config: dict[str, Any],
                        mean: NDArray[np.float32], std: NDArray[np.float32], temperature: float,
                        features: Features, thresholds: dict[str, float] | None,
                        detection: dict[str, Any] | None, name: str,
                        extra: dict[str, Any] | None) -> None:
    """Sets the fields a calibrated detection head (context, temporal) shares, after checking
    the class names and the temperature (ValueError)."""
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"a head needs at least two distinct class names, got {list(classes)}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    head.classes = tuple(classes)
    head.backbone_config = dict(backbone_config)
    head.backbone = str(backbone_config["name"])
    head.mean = np.asarray(mean, np.float32)
    head.std = np.asarray(std, np.float32)
    head.temperature = float(temperature)
    head.features = features
    head.pooling = "mean"
    head.thresholds = {k: float(v) for k, v in (thresholds or {}).items()}
    head.detection = dict(detection or {})
    head.name = name
    head.extra = dict(extra or {})


def check_standardisation(mean: NDArray[np.float32], std: NDArray[np.float32], size: int,
                          where: str) -> None:
    """ValueError unless ``mean`` and ``std`` are finite ``[size]`` vectors with ``std > 0``."""
    if mean.shape != (size,) or std.shape != (size,):
        raise ValueError(f"{where}: standardisation vectors are {mean.shape} and "
                         f"{std.shape}, expected ({size},)")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"{where}: standardisation must be finite with std > 0")
