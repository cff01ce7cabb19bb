"""Compares heads on the test split a head was trained with (its ``split.csv``).

Embeds the test clips once with YAMNet and applies every head to the same embeddings:
accuracy, macro-F1 and per-class recall, also with every clip band-limited to 4 kHz.

    SCANNER_MODEL_DIR=../shared/models python benchmarks/compare_heads.py \\
        scanner/heads/builtin/clip-linear ../shared/datasets/cry-scream --heads clip-linear audioset
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from scanner.audio.discover import discover
    from scanner.backbones import load_backbone
    from scanner.engines.local import embed_files
    from scanner.heads import load_head
    from training.augment import BandLimit

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_head", type=Path, help="head folder whose split.csv to use")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--heads", nargs="+", default=["clip-linear", "audioset"])
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    with open(args.split_head / "split.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == args.split]
    truth = {(args.data_dir / r["path"]).resolve(): r["label"] for r in rows}
    files = discover(sorted(truth))
    backbone = load_backbone("yamnet")
    heads = {name: load_head(name) for name in args.heads}
    report = {}
    for view, transform in (("original", None), ("bandlimit4k", BandLimit(4000))):
        preds: dict[str, list[str]] = {name: [] for name in heads}
        y = []
        for result in embed_files(files, [backbone], transform=transform):
            emb = result.embeddings["yamnet"]
            y.append(truth[result.file.path.resolve()])
            for name, head in heads.items():
                p = head.predict_file(emb)[0]
                preds[name].append(head.classes[int(np.argmax(p))])
        labels = sorted(set(y))
        for name, pred in preds.items():
            report[f"{name}/{view}"] = {
                "n": len(y), "accuracy": accuracy_score(y, pred),
                "macro_f1": f1_score(y, pred, labels=labels, average="macro"),
                "recall": dict(zip(labels, recall_score(y, pred, labels=labels, average=None)
                                   .round(3).tolist(), strict=True)),
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
