"""Training the temporal head: whole patch sequences of scenes and clips, labelled per patch.

A window's label (:mod:`training.windows`: a scene's from its event times, a clip's from its
label where the sound is) goes to the window's centre patch, the patch the head reads a
window from; every other patch is ``IGNORE``. Sequences of a batch are zero-padded and a
mask keeps the padding at zero after every layer, so a short clip trains exactly as the
numpy head (:class:`scanner.heads.temporal.TemporalHead`) runs it: alone, zero-padded at
both ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.heads.context import centre_patches
from training.fit import _deterministic, class_weights
from training.patches import Patches
from training.windows import ACTIVE_DB, IGNORE, windows_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledSequence:
    """One source's patches and per-patch labels (``IGNORE`` where no window is labelled).

    Attributes:
        x: ``[T, dim]`` patch embeddings.
        y: ``[T]`` class index per patch, or ``IGNORE``.
        energy_db: ``[T]`` patch levels (for the weak bags' selection).
        weight: ``[T]`` loss weight per patch (hard negatives get more).
    """

    x: NDArray[np.float16]
    y: NDArray[np.int64]
    energy_db: NDArray[np.float32]
    weight: NDArray[np.float32] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.weight is None:
            object.__setattr__(self, "weight", np.ones(len(self.y), np.float32))


def window_labels_to_patches(patches: Patches, window_y: NDArray[np.int64]) -> NDArray[np.int64]:
    """``[windows]`` labels -> ``[patches]``: each window's label on its centre patch."""
    starts, ends = windows_of(patches)
    centre = centre_patches(patches.starts_s, patches.window_s, starts, ends)
    y = np.full(patches.n, IGNORE, np.int64)
    n = min(len(centre), len(window_y))
    y[centre[:n]] = window_y[:n]
    return y


def scene_sequence(patches: Patches, window_y: NDArray[np.int64]) -> LabelledSequence:
    return LabelledSequence(patches.embeddings, window_labels_to_patches(patches, window_y),
                            patches.energy_db)


def clip_sequence(patches: Patches, label: int, *, background: int, weak: bool = False,
                  active_db: float = ACTIVE_DB) -> LabelledSequence:
    """A clip labelled as :func:`training.windows.clip_windows` labels its windows."""
    starts, ends = windows_of(patches)
    centre = centre_patches(patches.starts_s, patches.window_s, starts, ends)
    y = np.full(len(centre), IGNORE if weak else label, np.int64)
    if not weak and label != background:
        y[patches.energy_db[centre] < float(patches.energy_db.max()) - active_db] = IGNORE
    out = np.full(patches.n, IGNORE, np.int64)
    out[centre] = y
    return LabelledSequence(patches.embeddings, out, patches.energy_db)


@dataclass(frozen=True)
class TemporalFit:
    """A trained temporal network as numpy arrays, and how training went."""

    proj: tuple[NDArray[np.float32], NDArray[np.float32]]
    blocks: list[tuple[NDArray[np.float32], NDArray[np.float32]]]
    out: tuple[NDArray[np.float32], NDArray[np.float32]]
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    best_epoch: int
    epochs_run: int
    class_weights: list[float]
    val_loss: list[float]
    val_ap: list[float | None]


def _network(dim: int, hidden: int, kernel: int, dilations: Sequence[int], n_classes: int,
             dropout: float):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv1d(dim, hidden, 1)
            self.blocks = nn.ModuleList([nn.Conv1d(hidden, hidden, kernel, dilation=d,
                                                   padding=d * (kernel // 2))
                                         for d in dilations])
            self.out = nn.Conv1d(hidden, n_classes, 1)
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask[:, None, :]  # [B, 1, T]
            h = torch.relu(self.proj(self.drop(x.transpose(1, 2)))) * m
            for conv in self.blocks:
                h = (h + torch.relu(conv(self.drop(h)))) * m
            return self.out(self.drop(h)).transpose(1, 2)  # [B, T, C]

    return Net()


def _batches(seqs: Sequence[LabelledSequence], batch: int, rng: np.random.Generator | None
             ) -> Iterator[list[int]]:
    """Index batches of sequences of similar length (shuffled when ``rng`` is given)."""
    order = np.argsort([len(s.y) for s in seqs], kind="stable")
    groups = [order[i:i + batch].tolist() for i in range(0, len(order), batch)]
    if rng is not None:
        rng.shuffle(groups)
    yield from groups


def _stack(seqs: Sequence[LabelledSequence], idx: list[int], mean: NDArray[np.float32],
           std: NDArray[np.float32]):  # type: ignore[no-untyped-def]
    import torch

    n = max(len(seqs[i].y) for i in idx)
    dim = mean.shape[0]
    x = np.zeros((len(idx), n, dim), np.float32)
    y = np.full((len(idx), n), IGNORE, np.int64)
    w = np.zeros((len(idx), n), np.float32)
    mask = np.zeros((len(idx), n), np.float32)
    for r, i in enumerate(idx):
        s = seqs[i]
        t = len(s.y)
        x[r, :t] = (s.x.astype(np.float32) - mean) / std
        y[r, :t], w[r, :t], mask[r, :t] = s.y, s.weight, 1.0
    return (torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w),
            torch.from_numpy(mask))


def sequence_stats(seqs: Sequence[LabelledSequence]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-dimension mean and std over every patch (std floored, as the MLP's)."""
    total = sum(len(s.y) for s in seqs)
    acc = np.zeros(seqs[0].x.shape[1], np.float64)
    sq = np.zeros_like(acc)
    for s in seqs:
        x = s.x.astype(np.float64)
        acc += x.sum(0)
        sq += (x * x).sum(0)
    mean = acc / total
    std = np.sqrt(np.maximum(sq / total - mean * mean, 0.0))
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def average_precision(scores: NDArray[np.floating], positive: NDArray[np.bool_]) -> float:
    """Area under the precision-recall curve (precision at each positive, averaged)."""
    if not positive.any():
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = positive[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def fit_temporal(train: Sequence[LabelledSequence], val: Sequence[LabelledSequence], *,
                 n_classes: int, targets: Sequence[int] = (),
                 hidden: int = 128, kernel: int = 5, dilations: Sequence[int] = (1, 2, 4),
                 dropout: float = 0.3, weight_decay: float = 1e-3, lr: float = 1e-3,
                 batch_size: int = 16, epochs: int = 30, patience: int = 5,
                 class_weight: str = "sqrt", seed: int = 0) -> TemporalFit:
    """Trains the temporal network and keeps the best epoch's weights. The same inputs and
    seed give the same weights.

    Early stopping watches the mean average precision of the ``targets`` classes over the
    labelled validation patches (how well events rank above everything else, which is what
    thresholds work with); without ``targets``, the validation loss. The loss rises early
    on sequences whose few distinct events the network has memorised, while the ranking still
    improves."""
    import torch
    from torch import nn

    if not train or not val:
        raise ValueError("fit_temporal needs training and validation sequences")
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"the kernel must be an odd number of patches, got {kernel}")
    labelled = np.concatenate([s.y[s.y != IGNORE] for s in train])
    cw = class_weights(labelled, n_classes, class_weight)
    mean, std = sequence_stats(train)
    rng = np.random.default_rng(seed)
    with _deterministic(seed):
        net = _network(mean.shape[0], hidden, kernel, dilations, n_classes, dropout)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        cw_t = torch.from_numpy(cw)
        ce = nn.CrossEntropyLoss(weight=cw_t, ignore_index=IGNORE, reduction="none")

        def loss_of(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                    ) -> tuple[torch.Tensor, float]:
            """Summed weighted loss and its normaliser (the summed weights)."""
            flat_y, flat_w = y.reshape(-1), w.reshape(-1)
            raw = ce(logits.reshape(-1, n_classes), flat_y) * flat_w
            norm = float(((flat_y != IGNORE).float() * cw_t[flat_y.clamp(min=0)] * flat_w).sum())
            return raw.sum(), norm

        best, best_state, best_epoch, since, history, ranks = np.inf, None, 0, 0, [], []
        for epoch in range(1, epochs + 1):
            net.train()
            for idx in _batches(train, batch_size, rng):
                x, y, w, mask = _stack(train, idx, mean, std)
                total, norm = loss_of(net(x, mask), y, w)
                if norm <= 0:
                    continue
                opt.zero_grad()
                (total / norm).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                parts, probs, labels = [], [], []
                for idx in _batches(val, 64, None):
                    x, y, w, mask = _stack(val, idx, mean, std)
                    logits = net(x, mask)
                    parts.append(loss_of(logits, y, w))
                    keep = y != IGNORE
                    probs.append(torch.softmax(logits, -1)[keep].numpy())
                    labels.append(y[keep].numpy())
            vloss = float(sum(float(t) for t, _ in parts) / max(sum(n for _, n in parts), 1e-9))
            p_val, y_val = np.concatenate(probs), np.concatenate(labels)
            rank = float(np.mean([average_precision(p_val[:, k], y_val == k) for k in targets])
                         ) if targets else float("nan")
            history.append(round(vloss, 5))
            ranks.append(round(rank, 5) if targets else None)
            log.info("temporal epoch %d: validation loss %.4f, mean AP %.4f", epoch, vloss, rank)
            score = -rank if targets else vloss
            if score < best - 1e-4:
                best, best_epoch, since = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= patience:
                    break
        assert best_state is not None
        net.load_state_dict(best_state)

    def dense(conv: Any) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        return (conv.weight.detach().numpy()[:, :, 0].astype(np.float32),
                conv.bias.detach().numpy().astype(np.float32))

    return TemporalFit(
        proj=dense(net.proj),
        blocks=[(c.weight.detach().numpy().astype(np.float32),
                 c.bias.detach().numpy().astype(np.float32)) for c in net.blocks],
        out=dense(net.out), mean=mean, std=std, best_epoch=best_epoch, epochs_run=len(history),
        class_weights=[float(v) for v in cw], val_loss=history, val_ap=ranks)


def select_sequence_positives(bag: LabelledSequence, proba: NDArray[np.float32], target: int, *,
                              threshold: float = 0.5, top_k: int = 3,
                              active_db: float = ACTIVE_DB) -> NDArray[np.int64]:
    """A weak bag's new patch labels, as :func:`training.windows.select_bag_positives` chooses
    windows: its ``top_k`` most ``target``-like loud patches that reach ``threshold`` become
    ``target``, everything else stays ``IGNORE`` (a bag without a scream gives nothing)."""
    y = np.full(len(bag.y), IGNORE, np.int64)
    loud = bag.energy_db >= float(bag.energy_db.max()) - active_db
    cand = np.flatnonzero(loud & (proba[:, target] >= threshold))
    if len(cand):
        y[cand[np.argsort(-proba[cand, target])[:top_k]]] = target
    return y
