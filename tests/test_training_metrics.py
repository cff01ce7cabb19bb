"""Metrics against values computed by hand on a tiny example."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.metrics import choose_thresholds, evaluate, without_curves

CLASSES = ("a", "b", "c")
# True:      a    a    a    b    b    c
# Predicted: a    a    b    b    c    c
Y = np.array([0, 0, 0, 1, 1, 2])
P = np.array([
    [0.8, 0.1, 0.1],
    [0.6, 0.3, 0.1],
    [0.3, 0.6, 0.1],
    [0.2, 0.7, 0.1],
    [0.1, 0.4, 0.5],
    [0.1, 0.2, 0.7],
], dtype=np.float32)


def test_counts_accuracy_and_f1_by_hand() -> None:
    m = evaluate(Y, P, CLASSES)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    a, b, c = (m["per_class"][k] for k in CLASSES)
    # a: tp 2, fp 0, fn 1; b: tp 1, fp 1, fn 1; c: tp 1, fp 1, fn 0.
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert [a["support"], b["support"], c["support"]] == [3, 2, 1]
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_ranking_metrics_by_hand() -> None:
    m = evaluate(Y, P, CLASSES)
    # Class a scores: positives {.8,.6,.3}, negatives {.2,.1,.1}: every positive ranks higher.
    assert m["per_class"]["a"]["roc_auc"] == pytest.approx(1.0)
    assert m["per_class"]["a"]["average_precision"] == pytest.approx(1.0)
    # Class b: positives {.7,.4}, negatives {.1,.3,.6,.2}: pairs won 4+3 of 8.
    assert m["per_class"]["b"]["roc_auc"] == pytest.approx(7 / 8)
    # Ranked .7(+) .6(-) .4(+): AP = (1/1 + 2/3) / 2.
    assert m["per_class"]["b"]["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    # Class c: positive .7 is the top score.
    assert m["per_class"]["c"]["roc_auc"] == pytest.approx(1.0)
    assert m["macro_roc_auc"] == pytest.approx((1 + 7 / 8 + 1) / 3)


def test_curves_are_plot_ready_and_json_serialisable() -> None:
    m = evaluate(Y, P, CLASSES)
    roc = m["curves"]["b"]["roc"]
    assert roc["fpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert len(roc["fpr"]) == len(roc["tpr"])
    pr = m["curves"]["b"]["pr"]
    assert len(pr["precision"]) == len(pr["recall"])
    json.dumps(m)
    assert "curves" not in json.dumps(without_curves({"sets": {"x": m}}))


def test_absent_class_gives_undefined_ranking_metrics() -> None:
    m = evaluate(np.array([0, 1, 1]), P[:3], CLASSES)
    assert m["per_class"]["c"]["roc_auc"] is None
    assert m["per_class"]["c"]["average_precision"] is None
    assert m["per_class"]["c"]["support"] == 0
    assert "c" not in m["curves"]
    # Predicted a, a, b. a: tp 1, fp 1 -> F1 2/3; b: tp 1, fn 1 -> F1 2/3. Macro-F1 averages
    # the classes present (with c's 0 it would be 4/9).
    assert m["macro_f1"] == pytest.approx(2 / 3)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        evaluate(Y, P[:, :2], CLASSES)


def test_thresholds_maximise_one_vs_rest_f1() -> None:
    t = choose_thresholds(Y, P, CLASSES)
    # a: threshold .3 catches all three positives with no false positive (F1 1).
    assert t["a"] == pytest.approx(0.3)
    # c: only .7 is positive; threshold .7 gives F1 1.
    assert t["c"] == pytest.approx(0.7)
    # b: positives .7, .4; threshold .4 -> tp 2, fp 1 (.6): F1 .8; .7 -> F1 2/3.
    assert t["b"] == pytest.approx(0.4)
    assert choose_thresholds(np.array([0, 0]), P[:2], CLASSES)["c"] == 0.5
