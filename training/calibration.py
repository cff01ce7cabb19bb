"""Calibration on validation windows: temperature scaling, expected calibration error, reliability.

Temperature scaling divides every logit by one number fitted to minimise the validation
negative log-likelihood (Guo et al. 2017): it keeps the arg-max and the ranking of windows,
so it changes which threshold means what, not which window is more likely.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

N_BINS = 10


def _log_softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_temperature(logits: NDArray[np.floating], y: NDArray[np.int64]) -> float:
    """The temperature in [0.05, 20] that minimises the NLL of ``softmax(logits / T)``."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64)
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return float(-_log_softmax(z / np.exp(log_t))[np.arange(len(y)), y].mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def reliability(proba: NDArray[np.floating], y: NDArray[np.int64], *, n_bins: int = N_BINS
                ) -> dict[str, Any]:
    """Top-label reliability: per confidence bin, mean confidence, accuracy and count; and ECE."""
    p = np.asarray(proba, np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        if not m.any():
            bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": 0,
                         "confidence": None, "accuracy": None})
            continue
        c, a = float(conf[m].mean()), float(correct[m].mean())
        ece += m.mean() * abs(c - a)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                     "confidence": c, "accuracy": a})
    return {"ece": float(ece), "bins": bins, "n": int(len(y))}


def class_reliability(proba: NDArray[np.floating], y: NDArray[np.int64], c: int, *,
                      n_bins: int = N_BINS) -> dict[str, Any]:
    """One class's probability against how often the window is that class, per bin; and ECE."""
    p = np.asarray(proba, np.float64)[:, c]
    hit = (np.asarray(y) == c).astype(np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - hit[m].mean())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                     "confidence": float(p[m].mean()) if m.any() else None,
                     "accuracy": float(hit[m].mean()) if m.any() else None})
    return {"ece": float(ece), "bins": bins}


def softmax_t(logits: NDArray[np.floating], temperature: float = 1.0) -> NDArray[np.float32]:
    return np.exp(_log_softmax(np.asarray(logits, np.float64) / temperature)).astype(np.float32)
