"""``report.md``: a training run's config, split, metrics tables, band-limited check and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import TrainConfig

REPORT_MD = "report.md"

_SET_TITLES = {
    "train": "train",
    "val": "validation",
    "test": "test",
    "bandlimited_val": "validation, band-limited",
    "bandlimited_test": "test, band-limited",
}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def overview_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """One row per evaluated set: accuracy, macro-F1, macro ROC-AUC, macro AP, files."""
    titles = dict(_SET_TITLES)
    if metrics.get("fit", {}).get("mode") == "folds":
        titles |= {"train": "train + validation (fitted)", "val": "validation (out-of-fold)",
                   "bandlimited_val": "validation, band-limited (out-of-fold)"}
    return [[titles.get(name, name), m["accuracy"], m["macro_f1"], m["macro_roc_auc"],
             m["macro_average_precision"], m["n"]]
            for name, m in metrics["sets"].items()]


def _per_class(m: dict[str, Any]) -> list[str]:
    rows = [[name, c["precision"], c["recall"], c["f1"], c["roc_auc"], c["average_precision"],
             c["support"]] for name, c in m["per_class"].items()]
    return _table(["class", "precision", "recall", "F1", "ROC-AUC", "AP", "files"], rows)


def _confusion(m: dict[str, Any]) -> list[str]:
    classes = m["classes"]
    rows = [[f"**{classes[i]}**", *row] for i, row in enumerate(m["confusion_matrix"])]
    return _table(["true \\ predicted", *classes], rows)


def _training_text(config: TrainConfig, metrics: dict[str, Any]) -> list[str]:
    fit = metrics["fit"]
    weights = ", ".join(f"{c} {w:.2f}" for c, w in zip(metrics["classes"], fit["class_weights"],
                                                        strict=True))
    if fit.get("mode") == "folds":
        return [
            f"Cross-fitted: train + validation cut into {fit['members']} grouped folds; member "
            f"i trained on the other folds and early-stopped on fold i (validation loss, "
            f"patience {config.patience}) at epochs {fit['best_epochs']}. The head averages "
            f"the members' logits (merged into one network). Validation metrics are "
            f"out-of-fold: each file scored by the member that never trained on it. Class "
            f"weights ({config.class_weight}): {weights}."]
    lines = [
        f"Kept epoch {fit['best_epoch']} of {fit['epochs_run']} (early stopping on validation "
        f"loss, patience {config.patience}); best validation loss "
        f"{_fmt(fit['best_val_loss'], 4)}. Class weights ({config.class_weight}): {weights}."]
    if fit.get("refit"):
        lines += ["", f"The saved head was then trained again on train + validation "
                      f"({fit['refit']['files']} files) for those {fit['refit']['epochs']} "
                      f"epochs. Validation metrics and thresholds come from the early-stopped "
                      f"model (which never trained on validation); train and test metrics from "
                      f"the saved head."]
    return lines


def render_report(*, config: TrainConfig, metrics: dict[str, Any],
                  plots: dict[str, Path]) -> str:
    """The report's markdown (plots linked by file name, so the folder can move)."""
    sets = metrics["sets"]
    test, band = sets["test"], sets["bandlimited_test"]
    data = metrics["data"]
    kind = (f"MLP {'-'.join(map(str, config.hidden))}" if config.hidden
            else "linear softmax (MLP without hidden layer)")
    lines = [f"# Head `{Path(config.out_dir).name}`: {config.backbone} + {kind}", ""]
    lines += [
        f"Test accuracy **{test['accuracy']:.3f}**, macro-F1 **{test['macro_f1']:.3f}** "
        f"on {test['n']} held-out clips (groups never shared with training); with every test "
        f"clip band-limited to {config.band_limit_hz} Hz: accuracy "
        f"**{band['accuracy']:.3f}**, macro-F1 **{band['macro_f1']:.3f}**.", "",
        *[f"> **Warning:** {w}." for w in metrics.get("warnings", [])],
        *([""] if metrics.get("warnings") else []),
        "Reproduce:", "", "```", config.command(), "```", "",
        *_final_text(metrics),
        "## Metrics", "",
        *_table(["set", "accuracy", "macro-F1", "macro ROC-AUC", "macro AP", "files"],
                overview_rows(metrics)), "",
        "### Test, per class", "", *_per_class(test), "",
        "### Test, confusion matrix", "", *_confusion(test), "",
        f"### Band-limited check ({config.band_limit_hz} Hz)", "",
        "Every test clip low-passed the way an 8 kHz recording is, so a head that tells "
        "classes apart by bandwidth instead of sound fails here.", "",
        *_per_class(band), "", *_confusion(band), "",
        "### Decision thresholds (one-vs-rest, max F1 on validation, both views)", "",
        *_table(["class", "threshold"], list(metrics["thresholds"].items())), "",
        "## Training", "", *_training_text(config, metrics), "",
    ]
    for key in ("loss", "accuracy"):
        if key in plots:
            lines += [f"![{key}]({plots[key].name})", ""]
    lines += ["## Split", "",
              f"{data['files']} files in {data['groups']} groups from {data['source']}; "
              f"{data['unusable_files']} unusable. Split by group, stratified by label, "
              f"seed {config.seed}; the assignment is in `split.csv`.", ""]
    classes = metrics["classes"]
    rows = [[name, s["files"], s["groups"], s["fraction"], *[s["per_label"][c] for c in classes]]
            for name, s in metrics["split"].items()]
    lines += [*_table(["split", "files", "groups", "fraction", *classes], rows), ""]
    lines += ["## Plots", ""]
    for key, path in plots.items():
        if key not in ("loss", "accuracy"):
            lines += [f"![{key}]({path.name})", ""]
    lines += ["## Configuration", "", "| option | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in config.to_dict().items()]
    lines += ["", f"Learning rate used: {config.learning_rate}.", ""]
    if metrics.get("failures"):
        lines += ["## Unusable files", ""]
        lines += [f"- `{p}`: {why}" for p, why in sorted(metrics["failures"].items())]
        lines += [""]
    return "\n".join(lines)


def _final_text(metrics: dict[str, Any]) -> list[str]:
    """With ``--final``: what the written head was fitted on, and its out-of-fold scores."""
    final = metrics.get("final_fit")
    if not final:
        return []
    oof = final["out_of_fold_all_files"]
    return [
        f"**The written head was fitted again on all {final['files']} files** (`--final`, "
        f"test included, same recipe); the metrics below describe the evaluated model. "
        f"Out-of-fold over all files, the final recipe scores accuracy "
        f"{oof['accuracy']:.3f}, macro-F1 {oof['macro_f1']:.3f}.", ""]


def write_report(out_dir: str | Path, *, config: TrainConfig, metrics: dict[str, Any],
                 plots: dict[str, Path]) -> Path:
    """Writes ``report.md`` into ``out_dir``."""
    path = Path(out_dir) / REPORT_MD
    path.write_text(render_report(config=config, metrics=metrics, plots=plots))
    return path
