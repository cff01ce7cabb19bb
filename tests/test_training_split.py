"""Grouped, stratified, seeded train/val/test split."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from scanner.errors import ConfigError
from training.split import (
    SPLITS,
    assign_folds,
    assign_splits,
    check_disjoint,
    read_split_csv,
    split_summary,
    write_split_csv,
)


def _dataset(seed: int = 0) -> tuple[list[str], list[str]]:
    """Three imbalanced labels; groups of 1-6 files each, one label per group."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for label, n_groups in (("cry", 60), ("not_screaming", 120), ("screaming", 20)):
        for g in range(n_groups):
            for _ in range(int(rng.integers(1, 7))):
                labels.append(label)
                groups.append(f"{label}-{g}")
    order = rng.permutation(len(labels))
    return [labels[i] for i in order], [groups[i] for i in order]


def test_groups_never_straddle_splits() -> None:
    labels, groups = _dataset()
    splits = assign_splits(labels, groups, seed=3)
    where: dict[str, set[str]] = {}
    for g, s in zip(groups, splits, strict=True):
        where.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in where.values())
    check_disjoint(groups, splits)


def test_proportions_and_every_label_in_every_split() -> None:
    labels, groups = _dataset()
    splits = assign_splits(labels, groups, val=0.15, test=0.15, seed=0)
    total = Counter(labels)
    for split, frac in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        n = sum(s == split for s in splits)
        assert abs(n / len(labels) - frac) < 0.03, (split, n)
        per_label = Counter(lab for lab, s in zip(labels, splits, strict=True) if s == split)
        for label, count in total.items():
            assert per_label[label] > 0
            assert abs(per_label[label] / count - frac) < 0.08, (split, label)


def test_custom_fractions() -> None:
    labels, groups = _dataset(1)
    splits = assign_splits(labels, groups, val=0.1, test=0.3, seed=0)
    assert abs(splits.count("test") / len(splits) - 0.3) < 0.03
    assert abs(splits.count("val") / len(splits) - 0.1) < 0.03


def test_seeded_and_reproducible() -> None:
    labels, groups = _dataset()
    a = assign_splits(labels, groups, seed=7)
    assert a == assign_splits(labels, groups, seed=7)
    assert a != assign_splits(labels, groups, seed=8)


def test_rare_label_with_three_groups_reaches_every_split() -> None:
    labels = ["a"] * 30 + ["b"] * 3
    groups = [f"a{i}" for i in range(30)] + ["b0", "b1", "b2"]
    splits = assign_splits(labels, groups, seed=0)
    assert {s for lab, s in zip(labels, splits, strict=True) if lab == "b"} == set(SPLITS)


def test_single_group_label_stays_whole() -> None:
    labels = ["a"] * 20 + ["b"] * 5
    groups = [f"a{i}" for i in range(20)] + ["b"] * 5
    splits = assign_splits(labels, groups, seed=0)
    assert len({s for lab, s in zip(labels, splits, strict=True) if lab == "b"}) == 1


def test_bad_fractions_and_lengths() -> None:
    with pytest.raises(ConfigError):
        assign_splits(["a", "b"], ["x", "y"], val=0.6, test=0.5)
    with pytest.raises(ConfigError):
        assign_splits(["a", "b"], ["x"])
    with pytest.raises(ConfigError, match="both"):
        check_disjoint(["g", "g"], ["train", "test"])


def test_summary_and_csv_round_trip(tmp_path) -> None:
    labels, groups = _dataset()
    splits = assign_splits(labels, groups, seed=0)
    summary = split_summary(labels, groups, splits, ["cry", "screaming", "not_screaming"])
    assert sum(s["files"] for s in summary.values()) == len(labels)
    assert sum(s["groups"] for s in summary.values()) == len(set(groups))
    assert summary["val"]["per_label"]["screaming"] == sum(
        1 for lab, s in zip(labels, splits, strict=True) if s == "val" and lab == "screaming")
    rows = [(f"f{i}.wav", lab, g, s) for i, (lab, g, s) in
            enumerate(zip(labels, groups, splits, strict=True))]
    back = read_split_csv(write_split_csv(tmp_path / "split.csv", rows))
    assert [tuple(r.values()) for r in back] == rows
    assert list(back[0]) == ["path", "label", "group", "split"]


def test_folds_are_grouped_stratified_and_balanced() -> None:
    labels, groups = _dataset(2)
    folds = assign_folds(labels, groups, 5, seed=1)
    assert set(folds) == set(range(5))
    check_disjoint(groups, [str(f) for f in folds])
    for k in range(5):
        n = folds.count(k)
        assert abs(n / len(labels) - 0.2) < 0.03
        assert {lab for lab, f in zip(labels, folds, strict=True) if f == k} == set(labels)
    assert folds == assign_folds(labels, groups, 5, seed=1)
    with pytest.raises(ConfigError):
        assign_folds(labels, groups, 1)
