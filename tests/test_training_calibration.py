"""Temperature scaling recovers a known temperature and lowers the calibration error."""

from __future__ import annotations

import numpy as np

from training.calibration import class_reliability, fit_temperature, reliability, softmax_t


def _overconfident(n: int = 4000, t_true: float = 2.5):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (n, 3))
    p = softmax_t(logits)  # the true probabilities
    y = np.array([rng.choice(3, p=row / row.sum()) for row in p.astype(np.float64)])
    return logits * t_true, y


def test_fit_temperature_recovers_the_scale() -> None:
    logits, y = _overconfident()
    assert abs(fit_temperature(logits, y) - 2.5) < 0.25


def test_calibration_lowers_ece() -> None:
    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    before, after = reliability(softmax_t(logits), y), reliability(softmax_t(logits, t), y)
    assert after["ece"] < before["ece"] / 2
    assert sum(b["n"] for b in after["bins"]) == len(y)
    per = class_reliability(softmax_t(logits, t), y, 0)
    assert per["ece"] < 0.05
