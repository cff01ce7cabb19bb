"""Heads applied to backbone outputs, and the ensemble of several backbones, aligned by class name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.errors import HeadMismatchError
from scanner.heads.base import Head
from scanner.records import Embedding

if TYPE_CHECKING:
    from scanner.config import ScanConfig


def align_classes(probs: NDArray[np.float32], classes: Sequence[str],
                  target: Sequence[str]) -> NDArray[np.float32]:
    """Reorders ``[n, len(classes)]`` columns into the order of ``target``, by name.

    Raises:
        HeadMismatchError: The two heads do not have the same set of class names.
    """
    if set(classes) != set(target) or len(classes) != len(target):
        raise HeadMismatchError(f"heads disagree on classes: {list(classes)} vs {list(target)}")
    index = [list(classes).index(name) for name in target]
    return probs[:, index]


@dataclass(frozen=True)
class Model:
    """One backbone with the head that reads it, and its weight in the ensemble."""

    backbone: Backbone
    head: Head
    weight: float = 1.0


@dataclass(frozen=True)
class Prediction:
    """Probabilities in the classifier's class order: per backbone and combined."""

    per_backbone: Mapping[str, NDArray[np.float32]]
    probs: NDArray[np.float32]


class Classifier:
    """Applies each model's head and averages their probabilities (weighted), by class name.

    The first head's class order is the output order; every other head must have the same
    class names, in any order.
    """

    def __init__(self, models: Sequence[Model]) -> None:
        if not models:
            raise ValueError("a classifier needs at least one model")
        names = [m.backbone.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"each backbone may appear once, got {names}")
        for m in models:
            m.head.check_model(m.backbone)
            if m.weight < 0:
                raise ValueError(f"ensemble weight of {m.backbone.name} must be >= 0")
        self.models = tuple(models)
        self.classes: tuple[str, ...] = tuple(models[0].head.classes)
        for m in models[1:]:
            align_classes(np.zeros((0, len(m.head.classes)), np.float32), m.head.classes,
                          self.classes)
        total = sum(m.weight for m in models)
        if total <= 0:
            raise ValueError("ensemble weights must not all be zero")
        self.weights = {m.backbone.name: m.weight / total for m in models}

    @property
    def backbones(self) -> list[Backbone]:
        return [m.backbone for m in self.models]

    def predict_features(self, features: Mapping[str, NDArray[np.float32]]) -> Prediction:
        """``features[backbone] = [n, dim]`` pooled inputs -> probabilities for n items."""
        per: dict[str, NDArray[np.float32]] = {}
        for m in self.models:
            p = m.head.predict_proba(features[m.backbone.name])
            per[m.backbone.name] = align_classes(p, m.head.classes, self.classes)
        combined = sum(self.weights[name] * p for name, p in per.items())
        return Prediction(per, np.asarray(combined, np.float32))

    def predict_windows(self, embeddings: Mapping[str, Embedding], starts_s: NDArray[np.float64],
                        ends_s: NDArray[np.float64]) -> Prediction:
        """Probabilities for each window of one file, every head reading its own backbone."""
        per: dict[str, NDArray[np.float32]] = {}
        for m in self.models:
            emb = embeddings[m.backbone.name]
            if np.any(np.diff(emb.starts_s) < 0):  # heads need patches in time order
                order = np.argsort(emb.starts_s, kind="stable")
                emb = Embedding(emb.embeddings[order], emb.starts_s[order], emb.window_s,
                                None if emb.scores is None else emb.scores[order])
            p = m.head.predict_windows(emb, starts_s, ends_s)
            per[m.backbone.name] = align_classes(p, m.head.classes, self.classes)
        combined = sum(self.weights[name] * p for name, p in per.items())
        return Prediction(per, np.asarray(combined, np.float32))

    def predict_file(self, embeddings: Mapping[str, Embedding]) -> Prediction:
        """One prediction for a whole file: each head pools all of the file's patches."""
        per = {m.backbone.name: align_classes(m.head.predict_file(embeddings[m.backbone.name]),
                                              m.head.classes, self.classes)
               for m in self.models}
        combined = sum(self.weights[name] * p for name, p in per.items())
        return Prediction(per, np.asarray(combined, np.float32))


def load_classifier(config: ScanConfig) -> Classifier:
    """Loads every backbone of ``config`` and its head (raises ModelNotFoundError/ScannerError)."""
    from scanner.backbones import load_backbone
    from scanner.heads import load_head

    models = []
    for name in config.backbones:
        backbone = load_backbone(name, config.models.get(name), device=config.device,
                                 threads=config.threads, **config.backbone_options.get(name, {}))
        head = load_head(config.heads.get(name), backbone=name)
        models.append(Model(backbone, head, config.weights.get(name, 1.0)))
    return Classifier(models)
