"""Training on a slice of the real cry-scream clips with the real YAMNet (slow, needs ../shared)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scanner.heads.mlp import MLPHead
from training.config import TrainConfig
from training.train import train_head

pytestmark = pytest.mark.slow


def test_real_yamnet_head_on_a_slice(dataset_dir: Path, model_dir: Path, tmp_path: Path,
                                     monkeypatch) -> None:
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    with open(dataset_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked, per_label = [], {}
    for r in sorted(rows, key=lambda r: r["group"]):
        groups = per_label.setdefault(r["label"], set())
        if r["group"] in groups or len(groups) < 12:
            groups.add(r["group"])
            picked.append(r)
    manifest = tmp_path / "slice.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows([(str(dataset_dir / r["file"]), r["label"], r["group"]) for r in picked])
    config = TrainConfig(str(dataset_dir), str(tmp_path / "head"), backbone="yamnet",
                         manifest=str(manifest), cache_dir=str(tmp_path / "cache"),
                         hidden=(), dropout=0.0, weight_decay=0.1, class_weight="none",
                         epochs=80, workers=1, val=0.25, test=0.25)
    result = train_head(config, progress=False)
    sets = result.metrics["sets"]
    assert result.head.classes == ("cry", "screaming", "not_screaming")
    assert result.embedded == {"original": len(picked), "bandlimit4k": len(picked)}
    # Nine groups per class for training is little, but YAMNet separates these well.
    held_out = sets["val"]["n"] + sets["test"]["n"]
    correct = sets["val"]["accuracy"] * sets["val"]["n"] + sets["test"]["accuracy"] * sets["test"]["n"]
    assert correct / held_out >= 0.7
    assert sets["bandlimited_test"]["n"] == sets["test"]["n"]
    head = MLPHead.load(tmp_path / "head")
    assert head.backbone == "yamnet" and head.input_dim == 1024
