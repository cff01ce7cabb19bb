"""Cross-fitting: K members, each early-stopped on its own fold, merged into one network.

With ``--folds K`` every non-test file is validation exactly once: member ``i`` trains on
the other folds and early-stops on fold ``i``, so its predictions on fold ``i`` are honest
(out-of-fold) and together cover all of train + validation. The head averages the
members' logits. Members share one standardisation, so the average is itself one MLP:
the first layers stacked, the middle ones block-diagonal, the last ones side by side and
divided by K (a linear head is just the mean of the members' weights). The saved head
therefore stays a plain :class:`~scanner.heads.mlp.MLPHead`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.fit import FitResult, Layers, fit_mlp, standardisation

log = logging.getLogger(__name__)


def forward(layers: Layers, mean: NDArray[np.float32], std: NDArray[np.float32],
            x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Logits ``[n, classes]`` of a standardised ReLU network (as :class:`MLPHead` computes)."""
    h = (np.asarray(x, np.float32) - mean) / std
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h.astype(np.float32)


def merge_networks(members: Sequence[Layers]) -> Layers:
    """One network whose logits are the mean of the members' logits (same input, same shapes)."""
    if not members:
        raise ValueError("merge_networks needs at least one member")
    depth = len(members[0])
    if any(len(m) != depth for m in members):
        raise ValueError("members must have the same number of layers")
    k = len(members)
    if depth == 1:
        return [(np.mean([m[0][0] for m in members], axis=0).astype(np.float32),
                 np.mean([m[0][1] for m in members], axis=0).astype(np.float32))]
    merged: Layers = [(np.concatenate([m[0][0] for m in members]),
                       np.concatenate([m[0][1] for m in members]))]
    for i in range(1, depth - 1):
        merged.append((_block_diagonal([m[i][0] for m in members]),
                       np.concatenate([m[i][1] for m in members])))
    merged.append(((np.concatenate([m[-1][0] for m in members], axis=1) / k).astype(np.float32),
                   np.mean([m[-1][1] for m in members], axis=0).astype(np.float32)))
    return merged


def _block_diagonal(blocks: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols), dtype=np.float32)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


@dataclass(frozen=True)
class CrossFit:
    """The merged network and what each member saw.

    Attributes:
        layers, mean, std: The merged network (see :func:`merge_networks`).
        members: Each member's fit (its history, chosen epoch).
        oof_logits: ``{view: [n, classes]}`` each row's logits from the member that did not
            train on it, for the views passed to :func:`cross_fit`.
    """

    layers: Layers
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    members: list[FitResult] = field(default_factory=list)
    oof_logits: dict[str, NDArray[np.float32]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"members": len(self.members),
                "best_epochs": [m.best_epoch for m in self.members],
                "epochs_run": [m.epochs_run for m in self.members],
                "best_val_losses": [m.summary()["best_val_loss"] for m in self.members],
                "class_weights": self.members[0].class_weights if self.members else []}


def cross_fit(views: dict[str, NDArray[np.float32]], y: NDArray[np.int64],
              folds: NDArray[np.int64], *, alt_view: str | None, alt_prob: float,
              seed: int = 0, **fit_options: Any) -> CrossFit:
    """Fits one member per fold and merges them.

    Args:
        views: ``{name: [n, dim]}`` row-aligned views of the same clips; the first is the
            original, ``alt_view`` (if given) is mixed in with ``alt_prob`` during training.
            Every view of a member's fold is in its early-stopping set.
        y: ``[n]`` class indices.
        folds: ``[n]`` fold index of each row (``0..k-1``).
        alt_view: Name of the view mixed into training, or None.
        alt_prob: See :func:`training.fit.fit_mlp`.
        seed: Member ``i`` is seeded with ``seed + i``.
        fit_options: Passed to :func:`training.fit.fit_mlp` (hidden, lr, epochs...).
    """
    names = list(views)
    original = views[names[0]]
    use_alt = alt_view is not None and alt_prob > 0
    seen = np.concatenate([original, views[alt_view]]) if use_alt else original
    mean, std = standardisation(seen)
    k = int(folds.max()) + 1
    members: list[FitResult] = []
    oof = {name: np.zeros((len(y), 0), np.float32) for name in names}
    for i in range(k):
        tr, va = np.flatnonzero(folds != i), np.flatnonzero(folds == i)
        log.info("member %d/%d: %d training, %d validation files", i + 1, k, len(tr), len(va))
        fit = fit_mlp(original[tr], y[tr], np.concatenate([views[n][va] for n in names]),
                      np.concatenate([y[va]] * len(names)),
                      x_train_alt=views[alt_view][tr] if use_alt else None, alt_prob=alt_prob,
                      standardize=(mean, std), seed=seed + i, **fit_options)
        members.append(fit)
        for name in names:
            logits = forward(fit.layers, mean, std, views[name][va])
            if oof[name].shape[1] == 0:
                oof[name] = np.zeros((len(y), logits.shape[1]), np.float32)
            oof[name][va] = logits
    return CrossFit(merge_networks([m.layers for m in members]), mean, std, members, oof)
