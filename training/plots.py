"""PNG plots of a training run, drawn from the metrics dict and the fit history.

matplotlib is imported lazily and used through ``Figure`` with the Agg canvas only (no
pyplot, no global backend state), so plotting works headless and in worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOSS_PNG = "loss.png"
ACCURACY_PNG = "accuracy.png"


def _figure(width_in: float = 6.0, height_in: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curve(histories: Sequence[dict[str, list[float]]], key: str, path: Path, *,
               ylabel: str, best_epochs: Sequence[int] = ()) -> Path:
    """Train and validation ``key`` (``loss`` or ``acc``) per epoch, one pair per fit
    (several for cross-fitted members), with the kept epochs marked."""
    fig = _figure()
    ax = fig.add_subplot()
    many = len(histories) > 1
    for i, history in enumerate(histories):
        epochs = range(1, len(history[f"train_{key}"]) + 1)
        tag = f" (member {i + 1})" if many else ""
        alpha = 0.6 if many else 1.0
        ax.plot(epochs, history[f"train_{key}"], color=f"C{2 * i}", alpha=alpha,
                label=f"train{tag}")
        ax.plot(epochs, history[f"val_{key}"], color=f"C{2 * i + 1}", alpha=alpha,
                linestyle="--" if many else "-", label=f"validation{tag}")
    for j, epoch in enumerate(best_epochs):
        ax.axvline(epoch, color="grey", linestyle=":",
                   label="kept epoch" if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small" if many else None)
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, *,
                   title: str) -> Path:
    """Confusion matrix with counts in the cells (rows true, columns predicted)."""
    import numpy as np

    cm = np.asarray(matrix)
    fig = _figure(1.6 * len(classes) + 2.5, 1.3 * len(classes) + 2.0)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    high = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > high else "black")
    return _save(fig, path)


def plot_roc(metrics: dict[str, Any], path: Path, *, title: str) -> Path:
    """One-vs-rest ROC curve of each class, with its AUC in the legend."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, pts in metrics.get("curves", {}).items():
        auc = metrics["per_class"][name]["roc_auc"]
        ax.plot(pts["roc"]["fpr"], pts["roc"]["tpr"], label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(metrics: dict[str, Any], path: Path, *, title: str) -> Path:
    """One-vs-rest precision-recall curve of each class, with its average precision."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, pts in metrics.get("curves", {}).items():
        ap = metrics["per_class"][name]["average_precision"]
        ax.step(pts["pr"]["recall"], pts["pr"]["precision"], where="post",
                label=f"{name} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def write_plots(out_dir: str | Path, *, histories: Sequence[dict[str, list[float]]],
                best_epochs: Sequence[int], evaluations: dict[str, dict[str, Any]],
                classes: Sequence[str]) -> dict[str, Path]:
    """Writes every plot of a run into ``out_dir``.

    Args:
        histories: :attr:`training.fit.FitResult.history` of each early-stopped fit.
        best_epochs: The epochs whose weights were kept (marked on the curves).
        evaluations: Metrics by set name (``test``, ``bandlimited_test``...); each gets a
            confusion matrix, ROC and PR plot.
        classes: Class names.

    Returns:
        Plot paths by name (``loss``, ``accuracy``, ``confusion_test``, ``roc_test``...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "loss": plot_curve(histories, "loss", out / LOSS_PNG, ylabel="weighted loss",
                           best_epochs=best_epochs),
        "accuracy": plot_curve(histories, "acc", out / ACCURACY_PNG, ylabel="accuracy",
                               best_epochs=best_epochs),
    }
    for name, m in evaluations.items():
        nice = name.replace("_", " ")
        paths[f"confusion_{name}"] = plot_confusion(
            m["confusion_matrix"], classes, out / f"confusion_{name}.png",
            title=f"confusion matrix, {nice}")
        if m.get("curves"):
            paths[f"roc_{name}"] = plot_roc(m, out / f"roc_{name}.png", title=f"ROC, {nice}")
            paths[f"pr_{name}"] = plot_pr(m, out / f"pr_{name}.png",
                                          title=f"precision-recall, {nice}")
    return paths
