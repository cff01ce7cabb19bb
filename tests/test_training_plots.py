"""Plots and report from a metrics dict: PNG files that exist, and a report that shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import TrainConfig
from training.metrics import evaluate
from training.plots import write_plots
from training.report import render_report, write_report

CLASSES = ("cry", "screaming", "not_screaming")


def _metrics() -> dict:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    logits = rng.normal(size=(30, 3)) + 2.0 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sets = {name: evaluate(y, p, CLASSES) for name in ("train", "val", "test",
                                                       "bandlimited_val", "bandlimited_test")}
    history = {k: list(np.linspace(1, 0.2, 12)) for k in ("train_loss", "val_loss")}
    history |= {k: list(np.linspace(0.3, 0.9, 12)) for k in ("train_acc", "val_acc")}
    split = {s: {"files": 10, "groups": 5, "fraction": 0.33, "per_label": dict.fromkeys(CLASSES, 3)}
             for s in ("train", "val", "test")}
    return {"classes": list(CLASSES), "sets": sets, "history": history,
            "thresholds": dict.fromkeys(CLASSES, 0.5),
            "fit": {"mode": "split", "best_epoch": 9, "epochs_run": 12, "best_val_loss": 0.3,
                    "class_weights": [1.0, 1.0, 1.0], "refit": {"epochs": 9, "files": 20}},
            "split": split, "data": {"files": 30, "groups": 15, "source": "folders",
                                     "unusable_files": 1},
            "failures": {"x/broken.wav": "not_audio: nope"}}


def test_plots_are_pngs(tmp_path: Path) -> None:
    m = _metrics()
    paths = write_plots(tmp_path, histories=[m["history"]], best_epochs=[9],
                        evaluations={k: m["sets"][k] for k in ("test", "bandlimited_test")},
                        classes=CLASSES)
    assert set(paths) == {"loss", "accuracy", "confusion_test", "roc_test", "pr_test",
                          "confusion_bandlimited_test", "roc_bandlimited_test",
                          "pr_bandlimited_test"}
    for p in paths.values():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_shows_tables_plots_config_and_band_check(tmp_path: Path) -> None:
    m = _metrics()
    plots = {"loss": tmp_path / "loss.png", "roc_test": tmp_path / "roc_test.png"}
    cfg = TrainConfig("data", str(tmp_path / "head"), backbone="fake")
    text = render_report(config=cfg, metrics=m, plots=plots)
    test = m["sets"]["test"]
    assert f"{test['accuracy']:.3f}" in text and f"{test['macro_f1']:.3f}" in text
    assert "![loss](loss.png)" in text and "![roc_test](roc_test.png)" in text
    assert "Band-limited check (4000 Hz)" in text
    assert cfg.command() in text
    assert "| test, band-limited |" in text
    assert "x/broken.wav" in text
    cm_row = "| **cry** | " + " | ".join(map(str, test["confusion_matrix"][0])) + " |"
    assert cm_row in text
    assert write_report(tmp_path, config=cfg, metrics=m, plots=plots).read_text() == text
