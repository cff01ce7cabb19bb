"""Classification metrics as plain dicts (JSON-ready) that plots and reports read.

Predictions are the arg-max of the probabilities. Per class: precision, recall, F1,
support, one-vs-rest ROC-AUC and average precision (PR-AUC); overall: accuracy, macro-F1,
macro ROC-AUC/AP, the confusion matrix (rows true, columns predicted), and the curve
points for plotting. A metric that is undefined (a class absent from the set) is ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def evaluate(y_true: NDArray[np.int64], proba: NDArray[np.float32], classes: Sequence[str], *,
             curves: bool = True) -> dict[str, Any]:
    """Metrics of ``[n, k]`` probabilities against ``[n]`` true class indices.

    Args:
        y_true: True class index of each row.
        proba: Probabilities, columns in ``classes`` order.
        classes: Class names.
        curves: Also return ROC and PR curve points per class (under ``curves``).
    """
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        precision_recall_curve,
        precision_recall_fscore_support,
        roc_auc_score,
        roc_curve,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = len(classes)
    if proba.shape != (len(y_true), k):
        raise ValueError(f"proba has shape {proba.shape}, expected ({len(y_true)}, {k})")
    y_pred = proba.argmax(axis=1)
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    per_class: dict[str, dict[str, Any]] = {}
    curve_points: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(classes):
        positive = y_true == c
        both = 0 < positive.sum() < len(y_true)
        auc = float(roc_auc_score(positive, proba[:, c])) if both else None
        ap = float(average_precision_score(positive, proba[:, c])) if positive.any() else None
        per_class[name] = {"precision": float(precision[c]), "recall": float(recall[c]),
                           "f1": float(f1[c]), "support": int(support[c]),
                           "roc_auc": auc, "average_precision": ap}
        if curves and both:
            fpr, tpr, _ = roc_curve(positive, proba[:, c])
            prec, rec, _ = precision_recall_curve(positive, proba[:, c])
            curve_points[name] = {"roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
                                  "pr": {"precision": prec.tolist(), "recall": rec.tolist()}}
    present = [name for c, name in enumerate(classes) if support[c] > 0]
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else None,
        # Macro-F1 over the classes present in this set.
        "macro_f1": _mean_defined([per_class[n]["f1"] for n in present]),
        "macro_roc_auc": _mean_defined([per_class[n]["roc_auc"] for n in classes]),
        "macro_average_precision": _mean_defined(
            [per_class[n]["average_precision"] for n in classes]),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }
    if curves:
        out["curves"] = curve_points
    return out


def without_curves(metrics: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested metrics with every ``curves`` entry dropped (for head.json)."""
    if not isinstance(metrics, dict):
        return metrics
    return {k: without_curves(v) for k, v in metrics.items() if k != "curves"}


def choose_thresholds(y_true: NDArray[np.int64], proba: NDArray[np.float32],
                      classes: Sequence[str], *, default: float = 0.5) -> dict[str, float]:
    """Per class, the one-vs-rest probability threshold that maximises F1 (on validation).

    A class with no positive example gets ``default``.
    """
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true, dtype=np.int64)
    out: dict[str, float] = {}
    for c, name in enumerate(classes):
        positive = y_true == c
        if not positive.any():
            out[name] = default
            continue
        prec, rec, thr = precision_recall_curve(positive, proba[:, c])
        # The last (precision 1, recall 0) point has no threshold.
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
        out[name] = float(thr[int(np.argmax(f1))])
    return out
