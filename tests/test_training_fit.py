"""The PyTorch fit: learns separable data, is deterministic, keeps a copy of the best weights,
and converts to an MLPHead that gives the same probabilities after a save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.heads.mlp import MLPHead
from training.fit import class_weights, fit_mlp, standardisation


def _blobs(n: int, seed: int, *, dim: int = 12, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 2.0, (3, dim))
    y = rng.integers(0, 3, n)
    x = centres[y] + spread * rng.standard_normal((n, dim)) + 40.0  # offset: needs standardising
    return x.astype(np.float32), y.astype(np.int64)


def _head(fit) -> MLPHead:
    return MLPHead(classes=("a", "b", "c"), backbone_config={"name": "fake", "embedding_dim": 12},
                   layers=fit.layers, mean=fit.mean, std=fit.std)


def test_learns_separable_classes() -> None:
    x, y = _blobs(300, 0)
    xv, yv = _blobs(90, 1)
    xt, yt = _blobs(90, 2)
    fit = fit_mlp(x, y, xv, yv, n_classes=3, hidden=(32,), epochs=60, patience=10, lr=3e-3)
    acc = (_head(fit).predict_proba(xt).argmax(1) == yt).mean()
    assert acc >= 0.95
    assert len(fit.history["val_loss"]) == fit.epochs_run
    assert set(fit.history) == {"train_loss", "train_acc", "val_loss", "val_acc"}


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    x, y = _blobs(120, 0)
    xv, yv = _blobs(40, 1)
    kw = {"n_classes": 3, "hidden": (16,), "epochs": 8, "patience": 8, "dropout": 0.2}
    a = fit_mlp(x, y, xv, yv, seed=5, **kw)
    b = fit_mlp(x, y, xv, yv, seed=5, **kw)
    c = fit_mlp(x, y, xv, yv, seed=6, **kw)
    for (wa, ba), (wb, bb) in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    assert a.history == b.history
    assert not np.array_equal(a.layers[0][0], c.layers[0][0])


def test_restores_a_copy_of_the_best_epoch() -> None:
    # Noisy, overlapping data with a high learning rate: validation loss bottoms out early
    # and rises while training goes on, so the kept weights must be the early ones.
    x, y = _blobs(60, 0, spread=4.0)
    xv, yv = _blobs(60, 1, spread=4.0)
    fit = fit_mlp(x, y, xv, yv, n_classes=3, hidden=(64,), dropout=0.0, weight_decay=0.0,
                  lr=1e-2, epochs=40, patience=40)
    assert fit.epochs_run == 40
    assert fit.best_epoch < 40
    best = fit.history["val_loss"][fit.best_epoch - 1]
    assert best == min(fit.history["val_loss"]) < fit.history["val_loss"][-1]
    # Recompute the class-weighted validation loss of the returned weights.
    p = _head(fit).predict_proba(xv).astype(np.float64)
    w = np.asarray(fit.class_weights)[yv]
    loss = -(w * np.log(p[np.arange(len(yv)), yv])).sum() / w.sum()
    assert loss == pytest.approx(best, rel=1e-4)


def test_alt_view_is_used_and_standardisation_covers_it() -> None:
    x, y = _blobs(90, 0)
    xv, yv = _blobs(30, 1)
    alt = x + 5.0
    kw = {"n_classes": 3, "hidden": (8,), "epochs": 3, "patience": 3}
    plain = fit_mlp(x, y, xv, yv, **kw)
    mixed = fit_mlp(x, y, xv, yv, x_train_alt=alt, alt_prob=0.5, **kw)
    np.testing.assert_allclose(mixed.mean, np.concatenate([x, alt]).mean(0), rtol=1e-5)
    assert not np.array_equal(plain.layers[0][0], mixed.layers[0][0])
    with pytest.raises(ValueError):
        fit_mlp(x, y, xv, yv, x_train_alt=alt[:10], alt_prob=0.5, **kw)


def test_head_round_trip_gives_the_same_probabilities(tmp_path) -> None:
    x, y = _blobs(90, 0)
    xv, yv = _blobs(30, 1)
    fit = fit_mlp(x, y, xv, yv, n_classes=3, hidden=(16, 8), epochs=5, patience=5)
    head = _head(fit)
    import torch

    from training.fit import build_network

    net = build_network(12, (16, 8), 3, 0.3)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for m, (w, b) in zip(linears, fit.layers, strict=True):
        m.weight.data, m.bias.data = torch.from_numpy(w), torch.from_numpy(b)
    net.eval()
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy((xv - fit.mean) / fit.std)), dim=1).numpy()
    np.testing.assert_allclose(head.predict_proba(xv), ref, atol=1e-5)
    loaded = MLPHead.load(head.save(tmp_path / "h"))
    np.testing.assert_array_equal(loaded.predict_proba(xv), head.predict_proba(xv))


def test_helpers() -> None:
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 9, 4 / 3, 0.0])
    mean, std = standardisation(np.array([[1.0, 5.0], [3.0, 5.0]], np.float32))
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0])


def test_never_finite_validation_loss_keeps_the_last_epoch() -> None:
    x, y = _blobs(60, 0)
    keep = y != 2
    xv, _ = _blobs(10, 1)
    # Validation holds only class 2, which is absent from training (loss weight 0): 0/0.
    fit = fit_mlp(x[keep], y[keep], xv, np.full(10, 2), n_classes=3, hidden=(4,), epochs=3,
                  patience=2)
    # Never improving, it stops after `patience` epochs and keeps the last one.
    assert fit.best_epoch == fit.epochs_run == 2


def test_logs_warn_at_the_epoch_cap_and_never_claim_held_out_accuracy_after_a_refit(
        caplog: pytest.LogCaptureFixture) -> None:
    x, y = _blobs(200, 0)
    xv, yv = _blobs(60, 1)
    with caplog.at_level("INFO", logger="training.fit"):
        fit_mlp(x, y, xv, yv, n_classes=3, hidden=(8,), epochs=3, patience=10, lr=1e-4)
    assert "kept epoch 3 of 3" in caplog.text and "raise --epochs" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="training.fit"):
        fit_mlp(np.concatenate([x, xv]), np.concatenate([y, yv]), xv, yv, n_classes=3,
                hidden=(8,), epochs=3, patience=None)
    assert "val acc" not in caplog.text and "refit for 3 epochs" in caplog.text
