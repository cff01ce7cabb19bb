"""Which clips of a benchmark's validation and test splits a head was trained on.

A head written by ``scanner train`` keeps its ``split.csv`` (``path,label,group,split``, paths
relative to its data folder). Its ``train`` rows (and cross-validation folds) were fit; its
``val`` rows too when it was refit on train + validation (``training.config.refit``; a
``scanner train --detector`` head has no such setting and is never refit), else they only
chose the epoch; its ``test`` rows too with ``--final`` (``training.config.final``).
A head that saw a benchmark's validation clips gets thresholds chosen on soundscapes it
partly knows; one that saw its test clips gets figures that are too good. An ensemble's
members are checked one by one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def _member_dirs(folder: Path) -> list[Path]:
    meta = json.loads((folder / "head.json").read_text())
    if meta.get("kind") != "ensemble":
        return [folder]
    return [folder / m["folder"] for m in meta.get("members", [])]


def clips_seen(folder: Path) -> set[str] | None:
    """Data-relative paths of the clips the head in ``folder`` was fit on, or None when it
    keeps no ``split.csv`` (not known)."""
    split = folder / "split.csv"
    if not split.is_file():
        return None
    meta = json.loads((folder / "head.json").read_text())
    config = (meta.get("training") or {}).get("config") or {}
    final, refit = bool(config.get("final")), bool(config.get("refit", False))
    with split.open(newline="") as f:
        return {r["path"] for r in csv.DictReader(f)
                if final or r.get("split") not in ("test", "val") or (refit and r["split"] == "val")}


def split_overlap(folder: str | Path, benchmark: Mapping[str, Iterable[str]]
                  ) -> dict[str, dict[str, Any]]:
    """Per member folder name: how many clips of each benchmark split it was trained on.

    Args:
        folder: A head folder (an ensemble's members are checked one by one).
        benchmark: Split name (``val``, ``test``) -> the data-relative paths of its clips.

    Returns:
        ``{member: {"val": n, "test": n}}``, or ``{member: {"known": False}}`` for a member
        without a ``split.csv``.
    """
    out: dict[str, dict[str, Any]] = {}
    for member in _member_dirs(Path(folder)):
        seen = clips_seen(member)
        out[member.name] = {"known": False} if seen is None else {
            split: len(seen.intersection(paths)) for split, paths in benchmark.items()}
    return out
