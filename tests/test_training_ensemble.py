"""Cross-fitting: merged networks compute the mean of their members' logits, and every
out-of-fold row is scored by the member that never trained on it."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.heads.mlp import MLPHead
from training.ensemble import cross_fit, forward, merge_networks


def _member(rng: np.random.Generator, sizes: list[int]):
    return [(rng.standard_normal((o, i)).astype(np.float32),
             rng.standard_normal(o).astype(np.float32)) for i, o in zip(sizes, sizes[1:], strict=False)]


@pytest.mark.parametrize("sizes", [[6, 3], [6, 5, 3], [6, 5, 4, 3]])
def test_merged_network_averages_member_logits(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    members = [_member(rng, sizes) for _ in range(4)]
    mean, std = rng.standard_normal(6).astype(np.float32), np.full(6, 2.0, np.float32)
    x = rng.standard_normal((20, 6)).astype(np.float32)
    expected = np.mean([forward(m, mean, std, x) for m in members], axis=0)
    merged = merge_networks(members)
    np.testing.assert_allclose(forward(merged, mean, std, x), expected, rtol=1e-5, atol=1e-5)
    head = MLPHead(classes=("a", "b", "c"), backbone_config={"name": "fake"}, layers=merged,
                   mean=mean, std=std)
    np.testing.assert_allclose(head.logits(x), expected, rtol=1e-5, atol=1e-5)
    hidden = [w.shape[0] for w, _ in merged[:-1]]
    assert hidden == [4 * s for s in sizes[1:-1]]


def test_merge_rejects_mismatched_members() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        merge_networks([_member(rng, [4, 3]), _member(rng, [4, 2, 3])])
    with pytest.raises(ValueError):
        merge_networks([])


def test_cross_fit_scores_each_fold_with_its_own_member() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 2, (3, 8))
    y = np.tile(np.arange(3), 30)
    x = (centres[y] + rng.standard_normal((90, 8))).astype(np.float32)
    alt = (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    folds = (np.arange(90) // 3) % 3
    cf = cross_fit({"original": x, "alt": alt}, y, folds, alt_view="alt", alt_prob=0.5,
                   n_classes=3, hidden=(8,), epochs=60, patience=10, lr=1e-2)
    assert len(cf.members) == 3 and cf.summary()["members"] == 3
    for i, member in enumerate(cf.members):
        rows = folds == i
        for view, data in (("original", x), ("alt", alt)):
            np.testing.assert_allclose(cf.oof_logits[view][rows],
                                       forward(member.layers, cf.mean, cf.std, data[rows]),
                                       rtol=1e-5, atol=1e-5)
    assert (cf.oof_logits["original"].argmax(1) == y).mean() > 0.9
    np.testing.assert_allclose(cf.mean, np.concatenate([x, alt]).mean(0), rtol=1e-4, atol=1e-5)
    assert cf.layers[0][0].shape == (24, 8)
