"""Train/validation/test split by group, stratified by label, seeded.

Every file of a group (one source recording) lands in the same split, so parts of one
recording never sit on both sides. Within that constraint the split is stratified: each
label is divided roughly in the requested proportions, and each label with at least three
groups appears in every split.

The assignment is greedy and deterministic for a seed: groups are shuffled with the seed,
then (largest first) each goes to the split whose per-label deficit it fills best. Before
that, each label with enough groups gives one of its smallest groups to validation and to
test, so no split misses a label only because big groups came first. The same procedure
makes the grouped, stratified folds of cross-fitting (:func:`assign_folds`).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def assign_splits(labels: Sequence[str], groups: Sequence[str], *, val: float = 0.15,
                  test: float = 0.15, seed: int = 0) -> list[str]:
    """The split (``train``, ``val`` or ``test``) of each item.

    Args:
        labels: ``[n]`` label of each item.
        groups: ``[n]`` group of each item; items of one group always share a split.
        val, test: Target fractions of each label in validation and test.
        seed: Seeds the order in which groups are assigned.

    Raises:
        ConfigError: Fractions out of range, or mismatched lengths.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"split fractions val={val}, test={test} are out of range")
    return assign_groups(labels, groups, {"train": 1.0 - val - test, "val": val, "test": test},
                         seed=seed)


def assign_folds(labels: Sequence[str], groups: Sequence[str], k: int, *,
                 seed: int = 0) -> list[int]:
    """``k`` grouped, stratified folds of about equal size: the fold index of each item."""
    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {k}")
    names = [f"fold{i}" for i in range(k)]
    parts = assign_groups(labels, groups, dict.fromkeys(names, 1.0 / k), seed=seed)
    return [names.index(p) for p in parts]


def assign_groups(labels: Sequence[str], groups: Sequence[str], fractions: Mapping[str, float],
                  *, seed: int = 0) -> list[str]:
    """Assigns whole groups to named parts so each label is divided as ``fractions`` say.

    The first part with the largest fraction is filled last by the greedy pass; every
    other part first gets one small group of each label that has a group for every part.

    Raises:
        ConfigError: Mismatched lengths or fractions that are not positive.
    """
    if len(labels) != len(groups):
        raise ConfigError(f"{len(labels)} labels but {len(groups)} groups")
    if not fractions or any(f <= 0 for f in fractions.values()):
        raise ConfigError(f"part fractions must be positive, got {dict(fractions)}")
    parts = tuple(fractions)
    total_fraction = sum(fractions.values())
    target = {p: f / total_fraction for p, f in fractions.items()}
    totals = Counter(labels)
    by_group: dict[str, Counter[str]] = defaultdict(Counter)
    for label, group in zip(labels, groups, strict=True):
        by_group[group][label] += 1

    rng = np.random.default_rng(seed)
    names = sorted(by_group)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    rank = {g: i for i, g in enumerate(shuffled)}
    size = {g: sum(c.values()) for g, c in by_group.items()}
    major = {g: max(sorted(c), key=lambda lab: c[lab]) for g, c in by_group.items()}

    counts: dict[str, Counter[str]] = {p: Counter() for p in parts}
    where: dict[str, str] = {}

    def put(group: str, part: str) -> None:
        where[group] = part
        counts[part].update(by_group[group])

    largest = max(parts, key=lambda p: target[p])
    seeded = [p for p in parts if p != largest]
    for label in sorted(totals, key=lambda lab: (totals[lab], lab)):
        own = sorted((g for g in shuffled if major[g] == label and g not in where),
                     key=lambda g: (size[g], rank[g]))
        if len(own) < len(parts):
            continue
        for part, group in zip(seeded, own, strict=False):
            if counts[part][label] == 0:
                put(group, part)

    def deficit(group: str, part: str) -> float:
        return sum(n * (target[part] * totals[lab] - counts[part][lab]) / totals[lab]
                   for lab, n in by_group[group].items())

    for group in sorted(shuffled, key=lambda g: (-size[g], rank[g])):
        if group in where:
            continue
        put(group, max(parts, key=lambda p: (deficit(group, p), -parts.index(p))))
    return [where[g] for g in groups]


def split_summary(labels: Sequence[str], groups: Sequence[str], splits: Sequence[str],
                  classes: Sequence[str]) -> dict[str, Any]:
    """Files, groups and per-label counts of each split (or fold), as a plain dict."""
    out: dict[str, Any] = {}
    n = len(labels)
    present = set(splits)
    order = [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))
    if "test" in order:  # test last, after train/val or the folds
        order.remove("test")
        order.append("test")
    for split in order:
        idx = [i for i, s in enumerate(splits) if s == split]
        per_label = Counter(labels[i] for i in idx)
        out[split] = {
            "files": len(idx),
            "fraction": round(len(idx) / n, 4) if n else 0.0,
            "groups": len({groups[i] for i in idx}),
            "per_label": {c: per_label[c] for c in classes},
        }
    return out


def check_disjoint(groups: Sequence[str], splits: Sequence[str]) -> None:
    """Raises ConfigError when one group appears in two splits (a leak)."""
    seen: dict[str, str] = {}
    for group, split in zip(groups, splits, strict=True):
        if seen.setdefault(group, split) != split:
            raise ConfigError(f"group {group!r} is in both {seen[group]} and {split}")


def write_split_csv(path: str | Path, rows: Iterable[tuple[str, str, str, str]]) -> Path:
    """Writes ``path,label,group,split`` rows."""
    out = Path(path)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "split"])
        w.writerows(rows)
    return out


def read_split_csv(path: str | Path) -> list[dict[str, str]]:
    """Reads a ``split.csv`` back as a list of row dicts."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
