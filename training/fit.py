"""Fitting the MLP head with PyTorch: seeded, CPU-deterministic, early-stopped on validation loss.

The network is ``[Linear -> ReLU -> Dropout] * len(hidden) -> Linear`` on standardised
pooled embeddings (mean and std from the training rows), trained with Adam on a
class-weighted cross-entropy (inverse class frequency by default). After every epoch the
validation loss is measured; the best epoch's weights are *copied* (``deepcopy`` of the
state dict, not references to live tensors) and restored at the end. torch is imported inside
:func:`fit_mlp` only, so scanning never needs it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.config import CLASS_WEIGHTS

log = logging.getLogger(__name__)

Layers = list[tuple[NDArray[np.float32], NDArray[np.float32]]]


@dataclass(frozen=True)
class FitResult:
    """A trained network as numpy arrays, and how training went.

    Attributes:
        layers: ``[(weight [out, in], bias [out]), ...]`` as :class:`MLPHead` takes them.
        mean, std: ``[dim]`` standardisation of the input (std 1 for constant features).
        history: Per epoch: ``train_loss``, ``train_acc`` (eval mode, original view),
            ``val_loss``, ``val_acc``.
        best_epoch: 1-based epoch whose weights were kept.
        epochs_run: Epochs trained before early stopping (or ``epochs``).
        class_weights: Loss weight of each class.
    """

    layers: Layers
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    class_weights: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        i = self.best_epoch - 1
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "best_val_loss": self.history["val_loss"][i] if self.history else None,
            "best_val_acc": self.history["val_acc"][i] if self.history else None,
            "class_weights": self.class_weights,
        }


def standardisation(x: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-feature mean and std of ``[n, dim]``; constant features get std 1 (left unscaled)."""
    mean = x.mean(axis=0).astype(np.float32)
    std = x.std(axis=0).astype(np.float32)
    std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
    return mean, std


def class_weights(y: NDArray[np.int64], n_classes: int, mode: str = "balanced"
                  ) -> NDArray[np.float32]:
    """Loss weight of each class.

    ``balanced``: inverse frequency ``n / (k * n_c)``, so every class weighs as much in the
    loss; ``sqrt``: its square root (a milder correction); ``none``: all 1. A class absent
    from ``y`` gets 0.
    """
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"class weight mode must be one of {CLASS_WEIGHTS}, got {mode!r}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode == "none":
        w = (counts > 0).astype(np.float64)
    return w.astype(np.float32)


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeds torch and turns on deterministic algorithms, restoring both afterwards."""
    import torch

    was = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was)


def build_network(dim: int, hidden: Sequence[int], n_classes: int, dropout: float):
    """``[Linear -> ReLU -> Dropout] * len(hidden) -> Linear`` as a ``torch.nn.Sequential``."""
    from torch import nn

    modules: list[nn.Module] = []
    size = dim
    for h in hidden:
        modules += [nn.Linear(size, h), nn.ReLU()]
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        size = h
    modules.append(nn.Linear(size, n_classes))
    return nn.Sequential(*modules)


def network_layers(net) -> Layers:
    """The ``Linear`` layers of a network as numpy ``(weight, bias)`` pairs."""
    from torch import nn

    return [(m.weight.detach().cpu().numpy().astype(np.float32).copy(),
             m.bias.detach().cpu().numpy().astype(np.float32).copy())
            for m in net if isinstance(m, nn.Linear)]


def fit_mlp(x_train: NDArray[np.float32], y_train: NDArray[np.int64],
            x_val: NDArray[np.float32], y_val: NDArray[np.int64], *, n_classes: int,
            x_train_alt: NDArray[np.float32] | None = None, alt_prob: float = 0.0,
            hidden: Sequence[int] = (256,), dropout: float = 0.3, weight_decay: float = 1e-4,
            lr: float = 5e-4, batch_size: int = 32, epochs: int = 200,
            patience: int | None = 20, class_weight: str = "balanced",
            standardize: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None,
            seed: int = 0) -> FitResult:
    """Trains the MLP; the same inputs and seed give the same weights.

    Args:
        x_train: ``[n, dim]`` pooled embeddings of the training clips (original view).
        y_train: ``[n]`` class indices.
        x_val, y_val: Validation rows (any views the caller wants early stopping to watch).
        n_classes: Number of output classes.
        x_train_alt: ``[n, dim]`` another view of the same clips (band-limited), row-aligned
            with ``x_train``.
        alt_prob: Chance, per clip and epoch, that the clip is seen through ``x_train_alt``.
        hidden, dropout, weight_decay, lr, batch_size, epochs: The usual.
        patience: Stop after this many epochs without a better validation loss and keep
            the best epoch's weights; None: train all ``epochs`` and keep the last weights
            (a refit for a number of epochs chosen earlier).
        class_weight: How classes are weighted in the loss (see :func:`class_weights`).
        standardize: A given ``(mean, std)`` of the input (members of an ensemble share
            one); None: computed from the training rows.
        seed: Seeds initialisation, batch order, dropout and view choice.
    """
    import torch
    from torch import nn

    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError("fit_mlp needs training and validation rows")
    if x_train_alt is not None and x_train_alt.shape != x_train.shape:
        raise ValueError("x_train_alt must be row-aligned with x_train")
    use_alt = x_train_alt is not None and alt_prob > 0
    seen = np.concatenate([x_train, x_train_alt]) if use_alt else x_train
    mean, std = standardisation(seen) if standardize is None else standardize
    weights = class_weights(y_train, n_classes, class_weight)

    def tensor(a: NDArray[np.float32]) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    xt, yt = tensor(x_train), torch.from_numpy(y_train.astype(np.int64))
    xt_alt = tensor(x_train_alt) if use_alt else None
    xv, yv = tensor(x_val), torch.from_numpy(y_val.astype(np.int64))
    history: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "val_loss": [],
                                       "val_acc": []}
    with _deterministic(seed):
        gen = torch.Generator().manual_seed(seed)
        net = build_network(x_train.shape[1], hidden, n_classes, dropout)
        loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        best_loss, best_state, best_epoch, stale, epoch = float("inf"), None, 0, 0, 0

        def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
            net.eval()
            with torch.no_grad():
                logits = net(x)
                return (float(loss_fn(logits, y)),
                        float((logits.argmax(dim=1) == y).float().mean()))

        for epoch in range(1, epochs + 1):
            net.train()
            xe = xt
            if xt_alt is not None:
                pick = torch.rand(len(xt), generator=gen) < alt_prob
                xe = torch.where(pick[:, None], xt_alt, xt)
            order = torch.randperm(len(xt), generator=gen)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                opt.zero_grad()
                loss = loss_fn(net(xe[idx]), yt[idx])
                loss.backward()
                opt.step()
            train_loss, train_acc = evaluate(xt, yt)
            val_loss, val_acc = evaluate(xv, yv)
            for key, value in (("train_loss", train_loss), ("train_acc", train_acc),
                               ("val_loss", val_loss), ("val_acc", val_acc)):
                history[key].append(value)
            if patience is None:
                best_loss, best_epoch = val_loss, epoch
            elif val_loss < best_loss - 1e-6:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= patience:
                    log.info("early stop at epoch %d (best %d, val loss %.4f)", epoch,
                             best_epoch, best_loss)
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        elif patience is not None:  # the validation loss was never finite: keep the last
            log.warning("validation loss was never finite; keeping the last epoch")
            best_epoch = epoch
    if patience is None:
        # a refit: the validation rows may be part of training now, so their figures
        # are not held out and are not logged as if they were
        log.info("refit for %d epochs (no early stopping)", epoch)
    else:
        log.info("trained %d epochs; kept epoch %d (val loss %.4f, val acc %.3f)", epoch,
                 best_epoch, history["val_loss"][best_epoch - 1],
                 history["val_acc"][best_epoch - 1])
        if best_epoch == epochs:
            log.warning("kept epoch %d of %d: the epoch cap stopped training while the "
                        "validation loss was still falling; raise --epochs", best_epoch, epochs)
    return FitResult(network_layers(net), mean, std, history, best_epoch, epoch,
                     [float(w) for w in weights])
