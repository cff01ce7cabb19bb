"""Calibrates the zero-shot ``audioset`` head on labelled clips and writes it as a head folder.

YAMNet's pooled AudioSet scores for ``Crying, sobbing``/``Baby cry, infant cry`` and
``Screaming`` become two logit features; a 3-class logistic model on them (6 weights, 3
biases) is fitted with balanced class weights. Mean and max pooling are compared by
grouped 5-fold cross-validated macro-F1 and the better one is kept. Reproduce with::

    SCANNER_MODEL_DIR=../shared/models python -m training.calibrate_audioset \\
        ../shared/datasets/cry-scream -o scanner/heads/builtin/audioset
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
CLASSES = ("cry", "screaming", "not_screaming")


def _load_manifest(data_dir: Path) -> list[tuple[Path, str, str]]:
    with open(data_dir / "manifest.csv", newline="") as f:
        return [(data_dir / r["file"], r["label"], r["group"]) for r in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, recall_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    from scanner.backbones import load_backbone
    from scanner.discover import discover
    from scanner.embed import embed_files
    from scanner.heads.audioset import CLASS_SOURCES, AudioSetHead, _logit

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with manifest.csv (file,label,group)")
    parser.add_argument("-o", "--out", type=Path, default=Path("scanner/heads/builtin/audioset"))
    parser.add_argument("--model", help="YAMNet source (default: SCANNER_MODEL_DIR, then hub)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    items = _load_manifest(args.data_dir)
    labels = {p.resolve(): (lab, grp) for p, lab, grp in items}
    backbone = load_backbone("yamnet", args.model)
    names = backbone.score_names
    score_index = {n: names.index(n) for srcs in CLASS_SOURCES.values() for n in srcs}
    files = discover([p for p, _, _ in items])
    pooled = {"mean": [], "max": []}
    y, groups = [], []
    for result in embed_files(files, [backbone]):
        if not result.ok:
            log.warning("skipping %s: %s", result.file.path, result.failure.message)
            continue
        scores = result.embeddings["yamnet"].scores
        pooled["mean"].append(scores.mean(axis=0))
        pooled["max"].append(scores.max(axis=0))
        lab, grp = labels[result.file.path.resolve()]
        y.append(CLASSES.index(lab))
        groups.append(grp)
    y = np.array(y)
    report = {}
    heads = {}
    for pooling, rows in pooled.items():
        head0 = AudioSetHead(classes=CLASSES, score_index=score_index, mapped=("cry", "screaming"),
                             weight=np.zeros((3, 2)), bias=np.zeros(3), pooling=pooling)
        x = _logit(head0.mapped_scores(np.stack(rows)))
        model = LogisticRegression(class_weight="balanced", C=10.0, max_iter=2000)
        cv_pred = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(5))
        model.fit(x, y)
        fit_pred = model.predict(x)
        report[pooling] = {
            "cv_macro_f1": float(f1_score(y, cv_pred, average="macro")),
            "cv_recall": dict(zip(CLASSES, map(float, recall_score(y, cv_pred, average=None)), strict=True)),
            "fit_macro_f1": float(f1_score(y, fit_pred, average="macro")),
            "fit_recall": dict(zip(CLASSES, map(float, recall_score(y, fit_pred, average=None)), strict=True)),
        }
        heads[pooling] = (model.coef_, model.intercept_)
        log.info("%s pooling: %s", pooling, report[pooling])
    best = max(report, key=lambda k: report[k]["cv_macro_f1"])
    coef, intercept = heads[best]
    head = AudioSetHead(classes=CLASSES, score_index=score_index, mapped=("cry", "screaming"),
                        weight=coef, bias=intercept, pooling=best,
                        extra={"calibration": {"data": str(args.data_dir.name), "clips": len(y),
                                               "chosen_pooling": best, "results": report,
                                               "command": "python -m training.calibrate_audioset "
                                                          "DATA_DIR -o OUT"}})
    head.save(args.out)
    log.info("wrote %s (pooling=%s, cv macro-F1 %.3f)", args.out, best, report[best]["cv_macro_f1"])


if __name__ == "__main__":
    main()
