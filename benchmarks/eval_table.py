"""Scores a results table against folder labels: macro-F1 and per-class recall.

The true label of a row is the first folder under ROOT on its path (``ROOT/<label>/...``).

    python benchmarks/eval_table.py results.parquet --root /tmp/mixed60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def evaluate(table_path: Path, root: Path) -> dict:
    import pandas as pd
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    df = pd.read_csv(table_path) if table_path.suffix == ".csv" else pd.read_parquet(table_path)
    root = root.resolve()
    truth = [Path(p).resolve().relative_to(root).parts[0] for p in df["path"]]
    pred = df["label"].fillna("error").tolist()
    classes = sorted(set(truth))
    return {
        "rows": len(df),
        "ok": int((df["status"] == "ok").sum()),
        "macro_f1": float(f1_score(truth, pred, labels=classes, average="macro")),
        "recall": dict(zip(classes, map(float, recall_score(truth, pred, labels=classes,
                                                              average=None)), strict=True)),
        "confusion": {"labels": classes,
                      "matrix": confusion_matrix(truth, pred, labels=classes).tolist()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(evaluate(args.table, args.root), indent=2))


if __name__ == "__main__":
    main()
