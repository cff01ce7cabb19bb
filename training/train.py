"""``train_head``: a labelled folder in, a head folder with metrics, plots and a report out.

The stages: load the dataset -> split by group -> pooled embeddings of every file, as-is
and band-limited, through the cache -> fit (one split with early stopping and an optional
refit, or K cross-fitted members) -> thresholds on validation -> evaluate every split and
the band-limited test set -> write the head (head.json + weights.safetensors),
``split.csv``, ``predictions.csv``, ``metrics.json``, the plots and ``report.md``.
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
from scanner.heads.mlp import MLPHead, softmax
from scanner.output.cache import EmbeddingCache
from training.augment import ORIGINAL, BandLimit
from training.config import TrainConfig
from training.dataset import Dataset, load_dataset
from training.ensemble import cross_fit, forward
from training.features import digests, pooled_features
from training.fit import Layers, fit_mlp
from training.metrics import choose_thresholds, evaluate, without_curves
from training.split import assign_folds, assign_splits, check_disjoint, split_summary

log = logging.getLogger(__name__)

SMALL_TEST_FILES = 30
"""A test split with fewer clips (or fewer than 5 of a class) gives figures too noisy to trust."""
SPLIT_TOLERANCE = 0.03
"""A split fraction further than this from the requested one is reported."""

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
        files: Written artifacts by name (``head``, ``metrics``, ``report``, plots...).
        embedded: Files embedded in this run, per view (the rest came from the cache).
        failures: Files that could not be used, with the reason.
    """

    head: MLPHead
    out_dir: Path
    metrics: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    embedded: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Views:
    """Pooled features of every file: ``x[view]`` is ``[n, dim]``; ``usable`` marks rows
    that every needed view has."""

    x: dict[str, NDArray[np.float32]]
    usable: NDArray[np.bool_]
    failures: dict[str, str]
    embedded: dict[str, int]


@dataclass(frozen=True)
class _Model:
    """A fitted network plus its honest validation probabilities and its training record."""

    layers: Layers
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    val_rows: NDArray[np.int64]
    val_proba: dict[str, NDArray[np.float32]]
    histories: list[dict[str, list[float]]]
    best_epochs: list[int]
    summary: dict[str, Any]


def _cache_for(config: TrainConfig, backbone: Backbone) -> EmbeddingCache:
    return EmbeddingCache.for_backbone(config.cache_dir, backbone, pooling=config.pooling)


def _load_backbone(config: TrainConfig) -> Backbone:
    from scanner.backbones import load_backbone

    return load_backbone(config.backbone, config.model, device=config.device)


def _embed(config: TrainConfig, dataset: Dataset, splits: NDArray[np.str_], backbone: Backbone,
           band: BandLimit, progress: bool) -> _Views:
    cache = _cache_for(config, backbone)
    files = [it.file for it in dataset.items]
    keys = digests(files)
    orig = pooled_features(files, backbone, cache=cache, view=ORIGINAL, pooling=config.pooling,
                           file_digests=keys, workers=config.workers, progress=progress)
    # The band-limited view of training clips is needed only when training uses it (with
    # folds, every non-test file is also validation once).
    need = np.ones(len(files), bool)
    if config.band_limit_prob == 0 and config.folds == 1:
        need = splits != "train"
    idx = np.flatnonzero(need)
    part = pooled_features([files[i] for i in idx], backbone, cache=cache, view=band.name,
                           transform=band, pooling=config.pooling,
                           file_digests=[keys[i] for i in idx], workers=config.workers,
                           progress=progress)
    x_band = np.zeros_like(orig.x)
    band_ok = ~need
    x_band[idx], band_ok[idx] = part.x, part.ok
    return _Views({ORIGINAL: orig.x, band.name: x_band}, orig.ok & band_ok,
                  {**orig.failures, **part.failures},
                  {ORIGINAL: orig.embedded, band.name: part.embedded})


def _fit_options(config: TrainConfig, n_classes: int) -> dict[str, Any]:
    return {"n_classes": n_classes, "hidden": config.hidden, "dropout": config.dropout,
            "weight_decay": config.weight_decay, "lr": config.learning_rate,
            "batch_size": config.batch_size, "class_weight": config.class_weight,
            "epochs": config.epochs}


def _fit_split(config: TrainConfig, x: dict[str, NDArray[np.float32]], y: NDArray[np.int64],
               tr: NDArray[np.int64], va: NDArray[np.int64], n_classes: int) -> _Model:
    """Early stopping on one validation split (both views), then optionally a refit on
    train + validation for the chosen number of epochs."""
    orig, band = x.values()
    use_band = config.band_limit_prob > 0
    x_val = np.concatenate([orig[va], band[va]])
    y_val = np.concatenate([y[va], y[va]])
    options = {**_fit_options(config, n_classes), "alt_prob": config.band_limit_prob,
               "seed": config.seed}
    fit = fit_mlp(orig[tr], y[tr], x_val, y_val, x_train_alt=band[tr] if use_band else None,
                  patience=config.patience, **options)
    val_proba = {view: softmax(forward(fit.layers, fit.mean, fit.std, v[va]))
                 for view, v in x.items()}
    summary: dict[str, Any] = {"mode": "split", **fit.summary(), "refit": None}
    final = fit
    if config.refit:
        tv = np.concatenate([tr, va])
        options["epochs"] = fit.best_epoch
        final = fit_mlp(orig[tv], y[tv], x_val, y_val, x_train_alt=band[tv] if use_band else None,
                        patience=None, **options)
        summary["refit"] = {"epochs": final.epochs_run, "files": int(len(tv))}
    return _Model(final.layers, final.mean, final.std, va, val_proba, [fit.history],
                  [fit.best_epoch], summary)


def _fit_folds(config: TrainConfig, x: dict[str, NDArray[np.float32]], y: NDArray[np.int64],
               dev: NDArray[np.int64], folds: NDArray[np.int64], n_classes: int) -> _Model:
    """K cross-fitted members on train + validation, merged into one network."""
    band_view = list(x)[1]
    cf = cross_fit({view: v[dev] for view, v in x.items()}, y[dev], folds,
                   alt_view=band_view, alt_prob=config.band_limit_prob, seed=config.seed,
                   patience=config.patience, **_fit_options(config, n_classes))
    val_proba = {view: softmax(logits) for view, logits in cf.oof_logits.items()}
    return _Model(cf.layers, cf.mean, cf.std, dev, val_proba, [m.history for m in cf.members],
                  [m.best_epoch for m in cf.members], {"mode": "folds", **cf.summary()})


def _fit_all(config: TrainConfig, x: dict[str, NDArray[np.float32]], y: NDArray[np.int64],
             labels: list[str], groups: list[str], usable: NDArray[np.bool_],
             n_classes: int) -> _Model:
    """The same cross-fitting recipe over every usable file, test included (``--final``)."""
    every = np.flatnonzero(usable)
    folds = np.asarray(assign_folds([labels[i] for i in every], [groups[i] for i in every],
                                    config.folds, seed=config.seed))
    log.info("final fit on all %d files (%d folds)", len(every), config.folds)
    return _fit_folds(config, x, y, every, folds, n_classes)


def split_warnings(summary: dict[str, Any], config: TrainConfig, y_test: NDArray[np.int64],
                   classes: tuple[str, ...]) -> list[str]:
    """What a user must know about the split: fractions that moved, a test set too small."""
    out: list[str] = []
    n = sum(s["files"] for s in summary.values())
    if config.folds == 1 and n:
        got = {s: summary.get(s, {}).get("files", 0) / n for s in ("train", "val", "test")}
        want = {"train": 1 - config.val - config.test, "val": config.val, "test": config.test}
        if any(abs(got[s] - want[s]) > SPLIT_TOLERANCE for s in want):
            out.append("the split by recording group became train {train:.2f} / val {val:.2f} / "
                       "test {test:.2f} of the files (asked: --val {v} --test {t}); whole "
                       "groups cannot be cut".format(**got, v=config.val, t=config.test))
    counts = np.bincount(y_test, minlength=len(classes))
    small = [c for c, k in zip(classes, counts, strict=True) if 0 < k < 5]
    if len(y_test) < SMALL_TEST_FILES or small:
        few = ", ".join(f"{c}: {counts[classes.index(c)]}" for c in small)
        why = f"only {len(y_test)} test clips" + (f" ({few})" if small else "")
        out.append(f"{why}: the test figures are too noisy to trust (a 1.000 on so few clips "
                   "says little); add data or raise --test")
    return out


def fit_warnings(fit: dict[str, Any], config: TrainConfig) -> list[str]:
    """Training that the epoch cap stopped, not the validation loss."""
    epochs = fit.get("best_epochs") or [fit.get("best_epoch")]
    if any(e is not None and e >= config.epochs for e in epochs):
        return [f"kept epoch {config.epochs} of {config.epochs}: the epoch cap stopped "
                f"training while the validation loss was still falling; raise --epochs"]
    return []


def train_head(config: TrainConfig, *, progress: bool = True,
               backbone: Backbone | None = None, add: tuple[str, ...] = ()) -> TrainResult:
    """Trains, evaluates and writes a head as ``config`` says.

    Args:
        config: The run's settings.
        progress: Show progress bars while embedding (the library never prints otherwise).
        backbone: An already loaded backbone (default: load ``config.backbone`` from
            ``config.model``).
        add: Verdicts files of ``scanner review`` whose reviewed stretches join the data
            (see :mod:`training.verdicts`; cut into ``OUT/verdict_clips/``).

    Raises:
        ConfigError: Bad data layout, too few usable files, or a split missing a class.
        ModelNotFoundError: The backbone could not be loaded.
    """
    from scanner.extras import require

    require("torch", "train")  # before hours of embedding, not after
    t0 = time.monotonic()
    dataset = load_dataset(config.data_dir, config.manifest)
    if add:
        from training.verdicts import add_verdicts

        dataset = add_verdicts(dataset, add, Path(config.out_dir).expanduser() / "verdict_clips")
    classes = dataset.classes
    labels = [it.label for it in dataset.items]
    groups = [it.group for it in dataset.items]
    log.info("%d files, %d groups, labels %s (%s)", len(labels), len(set(groups)),
             dataset.counts(), dataset.source)
    split_arr = np.asarray(assign_splits(labels, groups, val=config.val, test=config.test,
                                         seed=config.seed), dtype=object)
    if config.folds > 1:
        dev_all = np.flatnonzero(split_arr != "test")
        fold_of = assign_folds([labels[i] for i in dev_all], [groups[i] for i in dev_all],
                               config.folds, seed=config.seed)
        split_arr[dev_all] = [f"fold{f}" for f in fold_of]
    splits = [str(s) for s in split_arr]
    check_disjoint(groups, splits)
    y = np.asarray([classes.index(lab) for lab in labels], dtype=np.int64)

    backbone = backbone or _load_backbone(config)
    band = BandLimit(config.band_limit_hz)
    t_embed = time.monotonic()
    views = _embed(config, dataset, split_arr, backbone, band, progress)
    embed_s = time.monotonic() - t_embed
    names = ["train", "val"] if config.folds == 1 else [f"fold{i}" for i in range(config.folds)]
    sets = {s: np.flatnonzero((split_arr == s) & views.usable) for s in [*names, "test"]}
    for s, idx in sets.items():
        missing = [c for k, c in enumerate(classes) if not (y[idx] == k).any()]
        if (s != "test" and missing) or len(idx) == 0:
            raise ConfigError(f"the {s} split has no usable files of {missing or classes}; "
                              "add data or change --val/--test/--folds")
        if missing:
            log.warning("the %s split has no %s files", s, ", ".join(missing))

    t_fit = time.monotonic()
    te = sets["test"]
    if config.folds > 1:
        dev = np.flatnonzero((split_arr != "test") & views.usable)
        folds = np.asarray([int(splits[i][4:]) for i in dev])
        model = _fit_folds(config, views.x, y, dev, folds, len(classes))
        tr = dev
    else:
        tr = sets["train"]
        model = _fit_split(config, views.x, y, tr, sets["val"], len(classes))
    fit_s = time.monotonic() - t_fit

    va = model.val_rows
    y_val2 = np.concatenate([y[va], y[va]])
    thresholds = choose_thresholds(y_val2, np.concatenate(list(model.val_proba.values())),
                                   classes)
    proba = {view: softmax(forward(model.layers, model.mean, model.std, v))
             for view, v in views.x.items()}
    fitted = evaluate(y[tr], proba[ORIGINAL][tr], classes)
    for view in proba:  # validation rows keep their out-of-sample probabilities
        proba[view][va] = model.val_proba[view]
    p_orig, p_band = proba[ORIGINAL], proba[band.name]
    evaluations = {
        "train": fitted,
        "val": evaluate(y[va], p_orig[va], classes),
        "test": evaluate(y[te], p_orig[te], classes),
        "bandlimited_val": evaluate(y[va], p_band[va], classes),
        "bandlimited_test": evaluate(y[te], p_band[te], classes),
    }
    summary = split_summary(labels, groups, splits, classes)
    warnings = split_warnings(summary, config, y[te], classes)
    warnings += fit_warnings(model.summary, config)
    for w in warnings:
        log.warning("%s", w)
    data_info = {
        "data_dir": config.data_dir,
        # as the user gave it: an absolute path of the training machine means nothing elsewhere
        "source": dataset.source.replace(str(dataset.root), config.data_dir.rstrip("/"), 1),
        "files": len(labels),
        "groups": len(set(groups)), "per_label": dataset.counts(),
        "unusable_files": len(views.failures), "band_limit_view": band.name,
        **({"verdicts": list(add)} if add else {}),
    }
    metrics: dict[str, Any] = {
        "classes": list(classes),
        "sets": evaluations,
        "thresholds": thresholds,
        "fit": model.summary,
        "histories": model.histories,
        "split": summary,
        "data": data_info,
        "failures": views.failures,
        "warnings": warnings,
        "timing_s": {"embed": round(embed_s, 2), "fit": round(fit_s, 2)},
        "embedded": views.embedded,
    }
    shipped = model
    if config.final:
        shipped = _fit_all(config, views.x, y, labels, groups, views.usable, len(classes))
        thresholds = choose_thresholds(np.concatenate([y[shipped.val_rows]] * 2),
                                       np.concatenate(list(shipped.val_proba.values())), classes)
        metrics["final_fit"] = {
            "files": int(len(shipped.val_rows)), **shipped.summary,
            "out_of_fold_all_files": evaluate(y[shipped.val_rows],
                                              shipped.val_proba[ORIGINAL], classes),
        }
        metrics["thresholds"] = thresholds
    out = Path(config.out_dir).expanduser()
    extra = {
        "training": {
            "config": config.to_dict(), "command": config.command(), "data": data_info,
            "split": summary, "fit": model.summary, "warnings": warnings,
        },
        "metrics": {name: without_curves({k: v for k, v in m.items()
                                          if k not in ("confusion_matrix", "classes")})
                    for name, m in evaluations.items() if name != "train"},
    }
    head = MLPHead(classes=classes, backbone_config={**backbone.identity, **backbone.config()},
                   layers=shipped.layers, mean=shipped.mean, std=shipped.std,
                   pooling=config.pooling,  # type: ignore[arg-type]
                   thresholds=thresholds, name=config.name or out.resolve().name, extra=extra)
    head.save(out)
    written = _write_outputs(out, config, dataset, splits, views.usable, metrics, model, proba)
    log.info("wrote %s in %.1f s (test accuracy %.3f, macro-F1 %.3f; band-limited %.3f)", out,
             time.monotonic() - t0, evaluations["test"]["accuracy"],
             evaluations["test"]["macro_f1"], evaluations["bandlimited_test"]["accuracy"])
    return TrainResult(head, out, metrics, written, views.embedded, views.failures)


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


def _write_outputs(out: Path, config: TrainConfig, dataset: Dataset, splits: list[str],
                   usable: NDArray[np.bool_], metrics: dict[str, Any], model: _Model,
                   probs: dict[str, NDArray[np.float32]]) -> dict[str, Path]:
    from training.plots import write_plots
    from training.report import write_report
    from training.split import write_split_csv

    written: dict[str, Path] = {"head": out / "head.json"}
    written["split"] = write_split_csv(out / SPLIT_CSV, (
        (dataset.relpath(it), it.label, it.group, s)
        for it, s in zip(dataset.items, splits, strict=True)))
    written["predictions"] = _write_predictions(out / PREDICTIONS_CSV, dataset, splits, usable,
                                                probs)
    written["config"] = out / CONFIG_JSON
    written["config"].write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    written["metrics"] = out / METRICS_JSON
    written["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    plots = write_plots(out, histories=model.histories, best_epochs=model.best_epochs,
                        evaluations={k: metrics["sets"][k] for k in ("test", "bandlimited_test")},
                        classes=metrics["classes"])
    written.update({f"plot_{k}": v for k, v in plots.items()})
    written["report"] = write_report(out, config=config, metrics=metrics, plots=plots)
    return written
