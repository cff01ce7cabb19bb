"""Training a classifier head on frozen backbone embeddings.

The stages, one module each::

    dataset (labelled files + groups) -> split (grouped, stratified) -> features (embed,
    with cache and the band-limited view: augment, cache) -> fit (PyTorch MLP; or ensemble:
    K cross-fitted members merged into one MLP) -> metrics (and thresholds) -> plots, report

:func:`training.train.train_head` runs them all from a :class:`training.config.TrainConfig`;
``scanner train`` is a thin layer over it. Importing this package imports no deep-learning
framework: torch is imported inside :mod:`training.fit` only.
"""

from __future__ import annotations

from training.config import TrainConfig

__all__ = ["TrainConfig"]
