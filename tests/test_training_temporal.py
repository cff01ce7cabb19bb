"""Training the temporal head: per-patch labels, the padding mask, early stopping, MIL picks."""

from __future__ import annotations

import numpy as np
import pytest

from training.patches import Patches
from training.temporal import (
    LabelledSequence,
    _network,
    _stack,
    average_precision,
    clip_sequence,
    fit_temporal,
    scene_sequence,
    select_sequence_positives,
    window_labels_to_patches,
)
from training.windows import IGNORE, windows_of


def _patches(n: int, dim: int = 4, seed: int = 0, energy: np.ndarray | None = None) -> Patches:
    rng = np.random.default_rng(seed)
    e = np.full(n, -20.0, np.float32) if energy is None else energy.astype(np.float32)
    return Patches(rng.standard_normal((n, dim)).astype(np.float16), e, 0.48, 0.96)


def test_window_labels_land_on_centre_patches() -> None:
    from scanner.heads.context import centre_patches

    p = _patches(12)
    starts, ends = windows_of(p)
    window_y = np.arange(len(starts)) % 3
    y = window_labels_to_patches(p, window_y)
    centre = centre_patches(p.starts_s, p.window_s, starts, ends)  # what the head reads
    for k in range(len(starts)):  # the last window reading a patch gives its label
        assert y[centre[k]] == window_y[np.flatnonzero(centre == centre[k]).max()]
    assert (y[np.setdiff1d(np.arange(p.n), centre)] == IGNORE).all()
    assert scene_sequence(p, window_y).y.tolist() == y.tolist()


def test_clip_positives_only_where_the_sound_is() -> None:
    energy = np.array([-60, -60, -10, -8, -9, -60, -60, -60], np.float32)
    p = _patches(8, energy=energy)
    cry = clip_sequence(p, 0, background=2)
    assert set(cry.y[cry.y != IGNORE]) == {0}
    assert (cry.y[energy < -30] == IGNORE).all()
    bg = clip_sequence(p, 2, background=2)
    assert (bg.y[bg.y != IGNORE] == 2).all() and (bg.y != IGNORE).sum() > (cry.y != IGNORE).sum()
    assert (clip_sequence(p, 1, background=2, weak=True).y == IGNORE).all()


def test_padding_does_not_leak_into_a_short_sequence() -> None:
    import torch

    torch.manual_seed(0)
    net = _network(4, 6, 3, (1, 2), 3, 0.0).eval()
    short, long = _patches(5, seed=1), _patches(20, seed=2)
    seqs = [LabelledSequence(s.embeddings, np.zeros(s.n, np.int64), s.energy_db)
            for s in (short, long)]
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    with torch.no_grad():
        x, _, _, mask = _stack(seqs, [0, 1], mean, std)
        together = net(x, mask)[0, :5]
        x1, _, _, m1 = _stack(seqs, [0], mean, std)
        alone = net(x1, m1)[0]
    np.testing.assert_allclose(together.numpy(), alone.numpy(), atol=1e-5)


def test_average_precision() -> None:
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([True, True, False])) == 1.0
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([False, True, False])) == 0.5
    assert average_precision(np.array([0.1]), np.array([False])) == 0.0


def test_bag_positives_are_the_loud_confident_patches() -> None:
    energy = np.array([-10, -10, -60, -10, -10], np.float32)
    bag = LabelledSequence(np.zeros((5, 2), np.float16), np.full(5, IGNORE), energy)
    proba = np.array([[0, 0.9, 0.1], [0, 0.4, 0.6], [0, 0.99, 0.01], [0, 0.7, 0.3],
                      [0, 0.6, 0.4]], np.float32)
    y = select_sequence_positives(bag, proba, 1, top_k=2)
    assert np.flatnonzero(y == 1).tolist() == [0, 3]  # patch 2 is quiet, 1 under 0.5
    none = select_sequence_positives(bag, proba * [1, 0.1, 1], 1)
    assert (none == IGNORE).all()


def _toy(n: int, seed: int) -> list[LabelledSequence]:
    """Background noise with cry (feature 0 up) and scream (feature 1 up) bursts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((40, 4)).astype(np.float32) * 0.5
        y = np.full(40, 2, np.int64)
        for label in (0, 1):
            at = rng.integers(0, 34)
            x[at:at + 5, label] += 3
            y[at:at + 5] = label
        out.append(LabelledSequence(x.astype(np.float16), y, np.zeros(40, np.float32)))
    return out


def test_fit_learns_events_and_is_reproducible() -> None:
    train, val = _toy(24, 0), _toy(8, 1)
    kw = {"n_classes": 3, "targets": [0, 1], "hidden": 8, "kernel": 3, "dilations": (1, 2),
          "epochs": 15, "patience": 15, "lr": 0.01, "batch_size": 8, "dropout": 0.0}
    a, b = fit_temporal(train, val, **kw), fit_temporal(train, val, **kw)
    np.testing.assert_array_equal(a.out[0], b.out[0])
    assert max(a.val_ap) > 0.9 and a.val_ap[a.best_epoch - 1] == max(a.val_ap)
    assert len(a.val_loss) == a.epochs_run and len(a.blocks) == 2
    with pytest.raises(ValueError, match="odd"):
        fit_temporal(train, val, **{**kw, "kernel": 4})
