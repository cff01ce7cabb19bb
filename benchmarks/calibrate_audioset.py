"""Calibrates the zero-shot ``audioset`` head on labelled clips and writes it as a head folder.

YAMNet's pooled AudioSet scores for ``Crying, sobbing``/``Baby cry, infant cry`` and
``Screaming`` become two logit features. Each class's logit reads only its own score
(``cry = a1 * logit(s_cry) + b1``, ``screaming = a2 * logit(s_scream) + b2``,
``not_screaming = 0``) with positive slopes, so the mapping stays monotonic: a calibrated
threshold per class, fitted by balanced cross-entropy. Mean and max pooling are compared by
grouped 5-fold cross-validated macro-F1 and the better one is kept. Reproduce with::

    SCANNER_MODEL_DIR=../shared/models python benchmarks/calibrate_audioset.py \\
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


def _per_class(values: np.ndarray) -> dict[str, float]:
    return {c: float(v) for c, v in zip(CLASSES, values, strict=True)}


def fit_thresholds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fits ``[3, 2]`` diagonal weights and ``[3]`` biases (not_screaming fixed at 0)."""
    from scipy.optimize import minimize

    counts = np.bincount(y, minlength=3).astype(float)
    sample_w = (len(y) / (3 * counts))[y]

    def unpack(theta):
        a1, b1, a2, b2 = theta
        w = np.array([[np.exp(a1), 0.0], [0.0, np.exp(a2)], [0.0, 0.0]])
        return w, np.array([b1, b2, 0.0])

    def loss(theta):
        w, b = unpack(theta)
        z = x @ w.T + b
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -(sample_w * logp[np.arange(len(y)), y]).sum() / sample_w.sum()

    theta = minimize(loss, np.zeros(4), method="Nelder-Mead",
                     options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9}).x
    return unpack(theta)


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import f1_score, recall_score
    from sklearn.model_selection import GroupKFold

    from scanner.audio.discover import discover
    from scanner.backbones import load_backbone
    from scanner.engines.local import embed_files
    from scanner.heads.audioset import CLASS_SOURCES, AudioSetHead, logit

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
        x = logit(head0.mapped_scores(np.stack(rows)))
        cv_pred = np.zeros_like(y)
        for train, test in GroupKFold(5).split(x, y, groups):
            w, b = fit_thresholds(x[train], y[train])
            cv_pred[test] = (x[test] @ w.T + b).argmax(axis=1)
        w, b = fit_thresholds(x, y)
        fit_pred = (x @ w.T + b).argmax(axis=1)
        report[pooling] = {
            "cv_macro_f1": float(f1_score(y, cv_pred, average="macro")),
            "cv_recall": _per_class(recall_score(y, cv_pred, average=None)),
            "fit_macro_f1": float(f1_score(y, fit_pred, average="macro")),
            "fit_recall": _per_class(recall_score(y, fit_pred, average=None)),
        }
        heads[pooling] = (w, b)
        log.info("%s pooling: %s", pooling, report[pooling])
    best = max(report, key=lambda k: report[k]["cv_macro_f1"])
    coef, intercept = heads[best]
    head = AudioSetHead(classes=CLASSES, score_index=score_index, mapped=("cry", "screaming"),
                        weight=coef, bias=intercept, pooling=best,
                        extra={"calibration": {"data": str(args.data_dir.name), "clips": len(y),
                                               "chosen_pooling": best, "results": report,
                                               "command": "python benchmarks/calibrate_audioset.py "
                                                          "DATA_DIR -o OUT"}})
    head.save(args.out)
    log.info("wrote %s (pooling=%s, cv macro-F1 %.3f)", args.out, best, report[best]["cv_macro_f1"])


if __name__ == "__main__":
    main()
