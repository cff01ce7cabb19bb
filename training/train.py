"""``train_head``: a labelled folder in, a head folder with metrics, plots and a report out.

The stages: load the dataset -> split by group -> pooled embeddings of every file, as-is
and band-limited, through the cache -> fit the MLP (early stopping and thresholds on
validation, both views) -> evaluate every split and the band-limited test set -> write
the head (head.json + weights.safetensors), ``split.csv``, ``predictions.csv``,
``metrics.json``, the plots and ``report.md``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.errors import ConfigError
from scanner.heads.mlp import MLPHead
from training.augment import ORIGINAL, BandLimit
from training.cache import EmbeddingCache, default_cache_dir
from training.config import TrainConfig
from training.dataset import Dataset, load_dataset
from training.features import digests, pooled_features
from training.fit import FitResult, fit_mlp
from training.metrics import choose_thresholds, evaluate, without_curves
from training.split import SPLITS, assign_splits, check_disjoint, split_summary, write_split_csv

log = logging.getLogger(__name__)

PUBLISHED_TEST_ACCURACY = 0.912
"""The published method's test accuracy (frozen YAMNet/Wav2Vec2 + MLP, 70/15/15 split)."""

METRICS_JSON = "metrics.json"
SPLIT_CSV = "split.csv"
PREDICTIONS_CSV = "predictions.csv"
CONFIG_JSON = "train_config.json"


@dataclass(frozen=True)
class TrainResult:
    """What a training run made.

    Attributes:
        head: The trained head (already saved in ``out_dir``).
        out_dir: The head folder.
        metrics: The full metrics dict (also ``metrics.json``): per set, with curves.
        fit: The early-stopped fit: its history and chosen epoch.
        refit: The fit on train + validation for that many epochs (the saved head), or None.
        files: Written artifacts by name (``head``, ``metrics``, ``report``, plots...).
        embedded: Files embedded in this run, per view (the rest came from the cache).
        failures: Files that could not be used, with the reason.
    """

    head: MLPHead
    out_dir: Path
    metrics: dict[str, Any]
    fit: FitResult
    refit: FitResult | None = None
    files: dict[str, Path] = field(default_factory=dict)
    embedded: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _cache_for(config: TrainConfig, backbone: Backbone) -> EmbeddingCache:
    root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    identity = {**backbone.identity, "config": backbone.config()}
    if identity.get("sha256"):
        # The weights' checksum identifies the model; where the file lies does not matter.
        identity.pop("source", None)
    return EmbeddingCache(root, backbone=backbone.name, identity=identity, pooling=config.pooling)


def _load_backbone(config: TrainConfig) -> Backbone:
    from scanner.backbones import load_backbone

    return load_backbone(config.backbone, config.model, device=config.device)


def _write_predictions(path: Path, dataset: Dataset, splits: list[str], usable: NDArray[np.bool_],
                       probs: dict[str, NDArray[np.float32]]) -> Path:
    classes = dataset.classes
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        header = ["path", "label", "group", "split"]
        for view in probs:
            header += [f"{view}_pred"] + [f"{view}_p_{c}" for c in classes]
        w.writerow(header)
        for i, item in enumerate(dataset.items):
            if not usable[i]:
                continue
            row: list[Any] = [dataset.relpath(item), item.label, item.group, splits[i]]
            for p in probs.values():
                row += [classes[int(p[i].argmax())]] + [f"{v:.6f}" for v in p[i]]
            w.writerow(row)
    return path


def train_head(config: TrainConfig, *, progress: bool = True,
               backbone: Backbone | None = None) -> TrainResult:
    """Trains, evaluates and writes a head as ``config`` says.

    Args:
        config: The run's settings.
        progress: Show progress bars while embedding (the library never prints otherwise).
        backbone: An already loaded backbone (default: load ``config.backbone`` from
            ``config.model``).

    Raises:
        ConfigError: Bad data layout, too few usable files, or a split missing a class.
        ModelNotFoundError: The backbone could not be loaded.
    """
    t0 = time.monotonic()
    dataset = load_dataset(config.data_dir, config.manifest)
    classes = dataset.classes
    labels = [it.label for it in dataset.items]
    groups = [it.group for it in dataset.items]
    log.info("%d files, %d groups, labels %s (%s)", len(labels), len(set(groups)),
             dataset.counts(), dataset.source)
    splits = assign_splits(labels, groups, val=config.val, test=config.test, seed=config.seed)
    check_disjoint(groups, splits)
    split_arr = np.asarray(splits)
    y = np.asarray([classes.index(lab) for lab in labels], dtype=np.int64)

    backbone = backbone or _load_backbone(config)
    cache = _cache_for(config, backbone)
    files = [it.file for it in dataset.items]
    keys = digests(files)
    band = BandLimit(config.band_limit_hz)
    t_embed = time.monotonic()
    orig = pooled_features(files, backbone, cache=cache, view=ORIGINAL, pooling=config.pooling,
                           file_digests=keys, workers=config.workers, progress=progress)
    # The band-limited view of training clips is needed only when training uses it.
    need_band = np.ones(len(files), bool) if config.band_limit_prob > 0 else split_arr != "train"
    band_idx = np.flatnonzero(need_band)
    band_part = pooled_features([files[i] for i in band_idx], backbone, cache=cache,
                                view=band.name, transform=band, pooling=config.pooling,
                                file_digests=[keys[i] for i in band_idx],
                                workers=config.workers, progress=progress)
    x_band = np.zeros_like(orig.x)
    band_ok = ~need_band
    x_band[band_idx], band_ok[band_idx] = band_part.x, band_part.ok
    embed_s = time.monotonic() - t_embed
    usable = orig.ok & band_ok
    failures = {**orig.failures, **band_part.failures}
    sets = {s: np.flatnonzero((split_arr == s) & usable) for s in SPLITS}
    for s, idx in sets.items():
        missing = [c for k, c in enumerate(classes) if not (y[idx] == k).any()]
        if (s == "train" and missing) or len(idx) == 0:
            raise ConfigError(f"the {s} split has no usable files of {missing or classes}; "
                              "add data or change --val/--test")
        if missing:
            log.warning("the %s split has no %s files", s, ", ".join(missing))

    tr, va, te = sets["train"], sets["val"], sets["test"]
    t_fit = time.monotonic()
    fit_options = {
        "n_classes": len(classes), "alt_prob": config.band_limit_prob, "hidden": config.hidden,
        "dropout": config.dropout, "weight_decay": config.weight_decay,
        "lr": config.learning_rate, "batch_size": config.batch_size,
        "class_weight": config.class_weight, "seed": config.seed,
    }
    use_band = config.band_limit_prob > 0
    # Early stopping and thresholds watch both views of the validation clips.
    x_val, y_val = np.concatenate([orig.x[va], x_band[va]]), np.concatenate([y[va], y[va]])
    fit = fit_mlp(orig.x[tr], y[tr], x_val, y_val, x_train_alt=x_band[tr] if use_band else None,
                  epochs=config.epochs, patience=config.patience, **fit_options)
    backbone_config = {**backbone.identity, **backbone.config()}

    def as_head(f: FitResult, **kw: Any) -> MLPHead:
        return MLPHead(classes=classes, backbone_config=backbone_config, layers=f.layers,
                       mean=f.mean, std=f.std, pooling=config.pooling, **kw)  # type: ignore[arg-type]

    selected = as_head(fit)
    p_val, p_val_band = selected.predict_proba(orig.x[va]), selected.predict_proba(x_band[va])
    thresholds = choose_thresholds(y_val, np.concatenate([p_val, p_val_band]), classes)
    refit = None
    if config.refit:
        tv = np.concatenate([tr, va])
        refit = fit_mlp(orig.x[tv], y[tv], x_val, y_val,
                        x_train_alt=x_band[tv] if use_band else None,
                        epochs=fit.best_epoch, patience=None, **fit_options)
    final = refit if refit is not None else fit
    fit_s = time.monotonic() - t_fit

    draft = as_head(final)
    p_orig, p_band = draft.predict_proba(orig.x), draft.predict_proba(x_band)
    # Validation rows are scored by the early-stopped model (the refit saw them).
    p_orig[va], p_band[va] = p_val, p_val_band
    evaluations = {
        "train": evaluate(y[tr], p_orig[tr], classes),
        "val": evaluate(y[va], p_orig[va], classes),
        "test": evaluate(y[te], p_orig[te], classes),
        "bandlimited_val": evaluate(y[va], p_band[va], classes),
        "bandlimited_test": evaluate(y[te], p_band[te], classes),
    }
    summary = split_summary(labels, groups, splits, classes)
    data_info = {
        "data_dir": str(dataset.root), "source": dataset.source, "files": len(labels),
        "groups": len(set(groups)), "per_label": dataset.counts(),
        "unusable_files": len(failures), "band_limit_view": band.name,
    }
    metrics: dict[str, Any] = {
        "classes": list(classes),
        "sets": evaluations,
        "thresholds": thresholds,
        "fit": fit.summary(),
        "refit": None if refit is None else {"epochs": refit.epochs_run,
                                             "files": int(len(tr) + len(va))},
        "history": fit.history,
        "split": summary,
        "data": data_info,
        "failures": failures,
        "published_test_accuracy": PUBLISHED_TEST_ACCURACY,
        "timing_s": {"embed": round(embed_s, 2), "fit": round(fit_s, 2)},
        "embedded": {ORIGINAL: orig.embedded, band.name: band_part.embedded},
    }
    out = Path(config.out_dir).expanduser()
    extra = {
        "training": {
            "config": config.to_dict(),
            "command": config.command(),
            "data": data_info,
            "split": summary,
            "fit": metrics["fit"],
            "refit": metrics["refit"],
            "published_test_accuracy": PUBLISHED_TEST_ACCURACY,
        },
        "metrics": {name: without_curves({k: v for k, v in m.items()
                                          if k not in ("confusion_matrix", "classes")})
                    for name, m in evaluations.items() if name != "train"},
    }
    head = as_head(final, thresholds=thresholds, name=config.name or out.resolve().name,
                   extra=extra)
    head.save(out)
    written = _write_outputs(out, config, dataset, splits, usable, metrics, fit,
                             {ORIGINAL: p_orig, band.name: p_band})
    log.info("wrote %s in %.1f s (test accuracy %.3f, macro-F1 %.3f; band-limited %.3f)", out,
             time.monotonic() - t0, evaluations["test"]["accuracy"],
             evaluations["test"]["macro_f1"], evaluations["bandlimited_test"]["accuracy"])
    return TrainResult(head, out, metrics, fit, refit, written,
                       {ORIGINAL: orig.embedded, band.name: band_part.embedded}, failures)


def _write_outputs(out: Path, config: TrainConfig, dataset: Dataset, splits: list[str],
                   usable: NDArray[np.bool_], metrics: dict[str, Any], fit: FitResult,
                   probs: dict[str, NDArray[np.float32]]) -> dict[str, Path]:
    from training.plots import write_plots
    from training.report import write_report

    written: dict[str, Path] = {"head": out / "head.json"}
    written["split"] = write_split_csv(out / SPLIT_CSV, (
        (dataset.relpath(it), it.label, it.group, s) for it, s in zip(dataset.items, splits,
                                                                       strict=True)))
    written["predictions"] = _write_predictions(out / PREDICTIONS_CSV, dataset, splits, usable,
                                                probs)
    written["config"] = out / CONFIG_JSON
    written["config"].write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    written["metrics"] = out / METRICS_JSON
    written["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    plots = write_plots(out, history=fit.history, best_epoch=fit.best_epoch,
                        evaluations={k: metrics["sets"][k] for k in ("test", "bandlimited_test")},
                        classes=metrics["classes"])
    written.update({f"plot_{k}": v for k, v in plots.items()})
    written["report"] = write_report(out, config=config, metrics=metrics, plots=plots)
    return written
