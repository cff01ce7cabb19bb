"""``train_detector``: a detection head trained on windows of clips, weak bags and soundscapes.

The stages:

1. load the labelled clips (and the weak bags), split by group into train/val/test; the
   weak bags' groups only ever train;
2. every patch of every clip, as recorded and band-limited to 4 kHz (cached);
3. training soundscapes mixed from training clips only, each through a random channel
   (band-limit, 8 kHz mu-law, MP3 32 kb/s) and gain; long validation and test
   soundscapes from their own splits' clips (cached);
4. windows with labels (:mod:`training.windows`): clip windows where the sound is, scene
   windows from event times;
5. fit (early stopping on validation windows); then multiple-instance selection of the
   weak bags' scream windows and hard-negative mining of background windows the first
   fit took for events, and a second fit with both. ``arch="context"`` fits an MLP on
   multi-scale means; ``arch="temporal"`` fits a dilated convolution on whole patch
   sequences (:mod:`training.temporal`), each window's label on its centre patch;
6. temperature calibration on validation windows;
7. per-class thresholds and the minimum event length on validation soundscapes
   (best event F1 within a false-alarm budget per hour);
8. evaluation on test clips (file verdicts from events, as the scan gives them; also
   band-limited) and test soundscapes; the head, metrics, plots and report are written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.errors import ConfigError
from scanner.events.segments import SegmentConfig
from scanner.heads.base import Head
from scanner.heads.context import ContextHead, mlp_logits
from scanner.heads.temporal import TemporalHead
from scanner.output.cache import file_digest
from training.augment import BandLimit
from training.calibration import class_reliability, fit_temperature, reliability, softmax_t
from training.dataset import LabelledFile, load_dataset, load_manifest
from training.detect_config import DetectConfig
from training.detect_eval import (
    ScoredFile,
    choose_detection,
    choose_short_recordings,
    detect,
    evaluate_files,
    file_verdict,
    score_file,
    segment_config,
)
from training.fit import fit_mlp
from training.metrics import evaluate
from training.patches import PatchCache, Patches, clip_patches, decode_clip
from training.scene_sets import EmbeddedScene, SceneSpec, benchmark_beds, benchmark_set, scene_set
from training.split import assign_groups, check_disjoint, split_summary
from training.temporal import (
    LabelledSequence,
    TemporalFit,
    clip_sequence,
    fit_temporal,
    scene_sequence,
    select_sequence_positives,
)
from training.windows import IGNORE, WindowSet, clip_windows, features_of, select_bag_positives, windows_of

log = logging.getLogger(__name__)

BACKGROUND = "not_screaming"
VIEWS = ("original", "bandlimit4k")
TRAIN_EVENTS_PER_MINUTE = 2.0


@dataclass(frozen=True)
class DetectResult:
    head: Head
    out_dir: Path
    metrics: dict[str, Any]


def _scene_windows(scenes: list[EmbeddedScene], scales: tuple[int, ...], offset: int
                   ) -> WindowSet:
    parts = []
    for i, s in enumerate(scenes):
        starts, ends = windows_of(s.patches)
        x, energy = features_of(s.patches, starts, ends, scales)
        parts.append(WindowSet(x, s.labels, np.full(len(starts), offset + i, np.int64), energy))
    return WindowSet.concat(parts)


def _reference(scene: EmbeddedScene) -> list[dict[str, Any]]:
    return [{"label": e.label, "start_s": e.onset_s, "end_s": e.offset_s, "snr_db": e.snr_db}
            for e in scene.events]


def _fit(config: DetectConfig, train: WindowSet, val: WindowSet, n_classes: int,
         repeat: NDArray[np.int64] | None = None):
    keep = train.y != IGNORE
    x, y = train.x[keep], train.y[keep]
    if repeat is not None:
        idx = np.repeat(np.arange(len(x)), repeat[keep])
        x, y = x[idx], y[idx]
    vk = val.y != IGNORE
    log.info("fitting on %d windows (%s), early stopping on %d", len(y),
             np.bincount(y, minlength=n_classes).tolist(), int(vk.sum()))
    fit = fit_mlp(x, y, val.x[vk], val.y[vk], n_classes=n_classes, hidden=config.hidden,
                  dropout=config.dropout, weight_decay=config.weight_decay, lr=config.lr,
                  batch_size=config.batch_size, epochs=config.epochs, patience=config.patience,
                  class_weight=config.class_weight, seed=config.seed)
    return fit


def _weak_items(config: DetectConfig, groups: set[str]) -> list[LabelledFile]:
    if not config.mil or not config.weak_dir:
        return []
    items = load_manifest(Path(config.weak_dir).expanduser().resolve() / "manifest.csv")
    shared = {it.group for it in items} & groups
    if shared:
        log.warning("dropping %d weak groups that also name labelled groups", len(shared))
        items = [it for it in items if it.group not in shared]
    return items


def _waves_for(items: list[LabelledFile], rows: NDArray[np.int64], classes: tuple[str, ...]
               ) -> tuple[list[NDArray[np.float32]], dict[str, list[NDArray[np.float32]]]]:
    bg: list[NDArray[np.float32]] = []
    ev: dict[str, list[NDArray[np.float32]]] = {c: [] for c in classes if c != BACKGROUND}
    for i in rows:
        w = decode_clip(items[i].file)
        if w is None:
            continue
        (bg if items[i].label == BACKGROUND else ev[items[i].label]).append(w)
    return bg, ev


@dataclass
class Prepared:
    """Everything a fit reads, made once: the split, every clip's patches, the scenes."""

    dataset: Any
    items: list[LabelledFile]
    classes: tuple[str, ...]
    y: NDArray[np.int64]
    splits: NDArray[np.str_]
    rows: dict[str, NDArray[np.int64]]
    patches: dict[str, list[Patches | None]]
    weak: list[LabelledFile]
    weak_patches: dict[str, list[Patches | None]]
    train_scenes: list[EmbeddedScene]
    val_scenes: list[EmbeddedScene]
    test_scenes: list[EmbeddedScene]
    backbone_config: dict[str, Any]
    beds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """By validation and test recording, its bed clips (``training.false_alarms``)."""


def benchmark_split(labels: list[str], groups: list[str], config: DetectConfig) -> list[str]:
    """Each clip's split (``train``, ``val``, ``test``) by group, the benchmark's rule
    (training.soundscapes.split_groups): with the defaults, the project's validation and test
    soundscapes come from exactly these validation and test splits."""
    fractions = {"train": round(1.0 - config.val - config.test, 10), "val": config.val,
                 "test": config.test}
    return assign_groups(labels, groups, fractions, seed=config.seed)


def prepare(config: DetectConfig, *, progress: bool = True,
            backbone: Backbone | None = None) -> Prepared:
    """Loads and splits the data, embeds every clip's patches and makes the scenes (cached)."""
    from scanner.backbones import load_backbone

    dataset = load_dataset(config.data_dir, config.manifest)
    classes = dataset.classes
    if BACKGROUND not in classes:
        raise ConfigError(f"detection needs a {BACKGROUND!r} class (the background), "
                          f"found {list(classes)}")
    items = list(dataset.items)
    labels, groups = [it.label for it in items], [it.group for it in items]
    splits = np.asarray(benchmark_split(labels, groups, config))
    check_disjoint(groups, list(splits))
    y = np.asarray([classes.index(lab) for lab in labels], np.int64)
    weak = _weak_items(config, set(groups))
    backbone = backbone or load_backbone(config.backbone, config.model, device=config.device)
    cache = PatchCache(config.cache_dir, backbone)
    views = {VIEWS[0]: None, VIEWS[1]: BandLimit(4000)}
    patches = clip_patches([it.file for it in items], backbone, cache=cache, views=views,
                           progress=progress)
    weak_patches = clip_patches([it.file for it in weak], backbone, cache=cache, views=views,
                                progress=progress) if weak else {v: [] for v in VIEWS}
    rows = {s: np.flatnonzero(splits == s) for s in ("train", "val", "test")}
    digests = {s: sorted(file_digest(items[i].path) for i in rows[s]) for s in rows}

    def scenes(split: str, spec: SceneSpec) -> list[EmbeddedScene]:
        if spec.n_scenes == 0:
            return []
        bg_w, ev_w = _waves_for(items, rows[split], classes)
        return scene_set(split, spec, background=bg_w, events=ev_w, digests={split: digests[split]},
                         classes=classes, background_class=BACKGROUND, backbone=backbone,
                         cache=cache, progress=progress)

    beds: dict[str, list[dict[str, Any]]] = {}

    def benchmark(split: str, hours: float, seed: int) -> list[EmbeddedScene]:
        from training.soundscapes import Clip, load_manifest

        # the generator draws clips by position: the benchmark lists them in manifest order
        where = {it.group: str(s) for it, s in zip(items, splits, strict=True)}
        src = Path(dataset.source)
        if src.name == "manifest.csv" and src.is_file():
            clips = [c for c in load_manifest(src.parent) if where.get(c.group) == split]
        else:
            clips = [Clip(path=items[i].path, label=items[i].label, group=items[i].group,
                          seconds=0.0, file=dataset.relpath(items[i])) for i in rows[split]]
        made: dict[str, list[dict[str, Any]]] = {}
        scenes = benchmark_set(split, clips, hours=hours, minutes=config.eval_minutes,
                               seed=seed, digests=digests[split], classes=classes,
                               background_class=BACKGROUND, backbone=backbone, cache=cache,
                               progress=progress, beds=made)
        # the bed clips, so false alarms can be traced to them; a cached set is mixed again
        # for them (not embedded)
        beds.update(made or benchmark_beds(split, clips, hours=hours,
                                           minutes=config.eval_minutes, seed=seed,
                                           classes=classes, background_class=BACKGROUND))
        return scenes

    n_train_scenes = int(round(config.train_scene_hours * 3600 / config.train_scene_s))
    return Prepared(dataset, items, classes, y, splits, rows, patches, weak, weak_patches,
                    scenes("train", SceneSpec(n_train_scenes, config.train_scene_s,
                                              TRAIN_EVENTS_PER_MINUTE, 0.2, True, config.seed,
                                              config.event_speed_semitones)),
                    # validation: another seed than the benchmark's, test: the benchmark's
                    benchmark("val", config.val_hours, config.seed + 1),
                    benchmark("test", config.test_hours, config.seed),
                    {**backbone.identity, **backbone.config()}, beds)


def train_detector(config: DetectConfig, *, progress: bool = True,
                   backbone: Backbone | None = None) -> DetectResult:
    """Trains, calibrates, tunes and evaluates a context head for detection; writes it."""
    t0 = time.monotonic()
    prep = prepare(config, progress=progress, backbone=backbone)
    head, metrics = fit_detector(config, prep)
    metrics["timing_s"] = {"total": round(time.monotonic() - t0, 1)}
    out = Path(config.out_dir).expanduser()
    head.save(out)
    _write(out, config, metrics, prep.items, prep.dataset, [str(s) for s in prep.splits])
    log.info("wrote %s in %.0f s: test soundscapes mean event F1 %.3f, %.1f false alarms/h; "
             "test clips macro-F1 %.3f", out, time.monotonic() - t0,
             metrics["soundscapes"]["test"]["mean_event_f1"],
             metrics["soundscapes"]["test"]["false_alarms_per_hour"],
             metrics["clips"]["test_events"]["macro_f1"])
    return DetectResult(head, out, metrics)


def _fit_context_head(config: DetectConfig, prep: Prepared
                      ) -> tuple[ContextHead, dict[str, Any], dict[str, Any]]:
    """The context MLP: fit (with MIL and hard negatives) and temperature calibration."""
    classes, items, y, rows = prep.classes, prep.items, prep.y, prep.rows
    bg = classes.index(BACKGROUND)
    weak, weak_patches, patches = prep.weak if config.mil else [], prep.weak_patches, prep.patches

    def clips(split: str, view: str) -> WindowSet:
        r = rows[split]
        return clip_windows([patches[view][i] for i in r], y[r].tolist(), background=bg,
                            scales=config.scales, sources=r.tolist())

    n_train_scenes = int(round(config.train_scene_hours * 3600 / config.train_scene_s))
    train_scenes = prep.train_scenes[:n_train_scenes]
    val_scenes = prep.val_scenes
    offset = len(items)
    train = WindowSet.concat([clips("train", v) for v in VIEWS]
                             + [_scene_windows(train_scenes, config.scales, offset)])
    val = WindowSet.concat([clips("val", v) for v in VIEWS]
                           + [_scene_windows(val_scenes, config.scales, offset + 10_000)])
    fit = _fit(config, train, val, len(classes))
    recipe: dict[str, Any] = {"round1_best_epoch": fit.best_epoch}

    if weak or config.hard_negative_weight > 1:
        repeat = np.ones(len(train), np.int64)
        if config.hard_negative_weight > 1:
            p = softmax_t(mlp_logits(fit.layers, fit.mean, fit.std, train.x))
            hard = (train.y == bg) & (1 - p[:, bg] >= 0.5)
            repeat[hard] = config.hard_negative_weight
            recipe["hard_negatives"] = int(hard.sum())
        if weak:
            target = classes.index("screaming")
            bags = WindowSet.concat([clip_windows(weak_patches[v], [target] * len(weak),
                                                  background=bg, scales=config.scales,
                                                  sources=list(range(len(weak))), weak=True)
                                     for v in VIEWS])
            p = softmax_t(mlp_logits(fit.layers, fit.mean, fit.std, bags.x))
            bags = bags.relabel(select_bag_positives(bags, p, target))
            chosen = bags.y == target
            recipe["weak_windows_selected"] = int(chosen.sum())
            recipe["weak_bags_used"] = int(len(np.unique(bags.source[chosen])))
            recipe["weak_bags"] = len(weak)
            train = WindowSet.concat([train, bags.take(chosen)])
            repeat = np.concatenate([repeat, np.ones(int(chosen.sum()), np.int64)])
        fit = _fit(config, train, val, len(classes), repeat)
        recipe["round2_best_epoch"] = fit.best_epoch
    recipe.update(best_epoch=fit.best_epoch, epochs_run=fit.epochs_run,
                  class_weights=fit.class_weights)

    vk = val.y != IGNORE
    val_logits = mlp_logits(fit.layers, fit.mean, fit.std, val.x[vk])
    calib = _calibration(val_logits, val.y[vk], classes)
    temperature = calib["temperature"]

    out = Path(config.out_dir).expanduser()
    head = ContextHead(classes=classes, backbone_config=prep.backbone_config,
                       scales=config.scales, layers=fit.layers, mean=fit.mean, std=fit.std,
                       temperature=temperature, name=config.name or out.resolve().name)
    return head, recipe, calib


def _calibration(val_logits: NDArray[np.float32], val_y: NDArray[np.int64],
                 classes: tuple[str, ...]) -> dict[str, Any]:
    """A temperature fitted on validation windows, with reliability before and after."""
    temperature = fit_temperature(val_logits, val_y)
    calib = {"temperature": temperature,
             "before": reliability(softmax_t(val_logits), val_y),
             "after": reliability(softmax_t(val_logits, temperature), val_y),
             "per_class_after": {c: class_reliability(softmax_t(val_logits, temperature),
                                                      val_y, k)
                                 for k, c in enumerate(classes)}}
    log.info("temperature %.3f: validation ECE %.3f -> %.3f", temperature,
             calib["before"]["ece"], calib["after"]["ece"])
    return calib


def _fit_temporal_head(config: DetectConfig, prep: Prepared
                       ) -> tuple[TemporalHead, dict[str, Any], dict[str, Any]]:
    """The temporal head: fit on whole sequences (clips, weak bags, scenes), hard negatives
    and weak-bag windows from a first fit, then temperature calibration."""
    classes, y, rows = prep.classes, prep.y, prep.rows
    bg = classes.index(BACKGROUND)
    weak = prep.weak if config.mil else []

    def clips(split: str) -> list[LabelledSequence]:
        return [clip_sequence(prep.patches[v][i], int(y[i]), background=bg)
                for v in VIEWS for i in rows[split]
                if prep.patches[v][i] is not None and prep.patches[v][i].n]

    n_train_scenes = int(round(config.train_scene_hours * 3600 / config.train_scene_s))
    train = clips("train") + [scene_sequence(s.patches, s.labels)
                              for s in prep.train_scenes[:n_train_scenes]]
    val = clips("val") + [scene_sequence(s.patches, s.labels) for s in prep.val_scenes]
    kw = {"n_classes": len(classes), "targets": [k for k, c in enumerate(classes) if k != bg],
          "hidden": config.hidden[0], "kernel": config.kernel,
          "dilations": config.dilations, "dropout": config.dropout,
          "weight_decay": config.weight_decay, "lr": config.lr,
          "batch_size": config.batch_size, "epochs": config.epochs,
          "patience": config.patience, "class_weight": config.class_weight,
          "seed": config.seed}
    log.info("fitting a temporal head on %d sequences, early stopping on %d", len(train), len(val))
    fit = fit_temporal(train, val, **kw)
    recipe: dict[str, Any] = {"round1_best_epoch": fit.best_epoch}

    def as_head(f: TemporalFit) -> TemporalHead:
        return TemporalHead(classes=classes, backbone_config=prep.backbone_config,
                            proj=f.proj, blocks=f.blocks, dilations=config.dilations, out=f.out,
                            mean=f.mean, std=f.std,
                            name=config.name or Path(config.out_dir).expanduser().resolve().name)

    if weak or config.hard_negative_weight > 1:
        first = as_head(fit)
        if config.hard_negative_weight > 1:
            hard = 0
            for s in train:
                p = first.patch_proba(s.x)
                mask = (s.y == bg) & (1 - p[:, bg] >= 0.5)
                s.weight[mask] = config.hard_negative_weight
                hard += int(mask.sum())
            recipe["hard_negatives"] = hard
        if weak:
            target = classes.index("screaming")
            bags, used = [], set()
            for v in VIEWS:
                for k, p in enumerate(prep.weak_patches[v]):
                    if p is None or not p.n:
                        continue
                    bag = clip_sequence(p, target, background=bg, weak=True)
                    chosen = select_sequence_positives(bag, first.patch_proba(bag.x), target)
                    if (chosen == target).any():
                        bags.append(replace(bag, y=chosen))
                        used.add(k)
            recipe["weak_windows_selected"] = int(sum((b.y == target).sum() for b in bags))
            recipe["weak_bags_used"] = len(used)
            recipe["weak_bags"] = len(weak)
            train = train + bags
        fit = fit_temporal(train, val, **kw)
        recipe["round2_best_epoch"] = fit.best_epoch
    recipe.update(best_epoch=fit.best_epoch, epochs_run=fit.epochs_run,
                  class_weights=fit.class_weights, validation_loss=fit.val_loss,
                  validation_mean_ap=fit.val_ap)

    head = as_head(fit)
    logits = [(head.sequence_logits(s.x), s.y) for s in val]
    vy = np.concatenate([t for _, t in logits])
    keep = vy != IGNORE
    calib = _calibration(np.concatenate([lo for lo, _ in logits])[keep], vy[keep], classes)
    head.temperature = calib["temperature"]
    return head, recipe, calib


def fit_detector(config: DetectConfig, prep: Prepared) -> tuple[Head, dict[str, Any]]:
    """Windows, fits (with MIL and hard negatives), calibration, thresholds, evaluation."""
    classes, items, y, rows = prep.classes, prep.items, prep.y, prep.rows
    weak, patches = prep.weak if config.mil else [], prep.patches
    n_train_scenes = int(round(config.train_scene_hours * 3600 / config.train_scene_s))
    val_scenes, test_scenes = prep.val_scenes, prep.test_scenes
    fit_head = _fit_temporal_head if config.arch == "temporal" else _fit_context_head
    head, recipe, calib = fit_head(config, prep)

    def scored(scene_list: list[EmbeddedScene]) -> list[ScoredFile]:
        return [score_file(head, s.name, s.patches, s.duration_s, _reference(s))
                for s in scene_list]

    val_files, test_files = scored(val_scenes), scored(test_scenes)
    thresholds, settings, sweep = choose_detection(val_files, classes, background=BACKGROUND,
                                                   fa_budget_per_hour=config.fa_budget_per_hour)
    seg = segment_config(thresholds, **settings)
    val_clips, val_y = _clip_files(head, patches, rows["val"], y)
    short = choose_short_recordings(val_clips, val_y, classes, seg)
    fraction = short.fraction
    seg = replace(seg, min_event_fraction=fraction, short_thresholds=short.thresholds)
    log.info("short recordings: minimum event fraction %g, thresholds %s (validation clips "
             "macro-F1 %.3f, %.3f with the long recordings' thresholds; best by fraction: %s)",
             fraction, short.thresholds or "as long ones", short.best, short.without,
             short.by_fraction)
    detection = {"window_s": seg.window_s, "hop_s": seg.hop_s,
                 "smooth_windows": seg.smooth_windows, "min_event_s": seg.min_event_s,
                 "max_gap_s": seg.max_gap_s,
                 **({"class_min_event_s": dict(seg.class_min_event_s)}
                    if seg.class_min_event_s else {}),
                 **({"edge_thresholds": dict(seg.edge_thresholds)} if seg.edge_thresholds else {}),
                 **({"min_event_fraction": fraction} if fraction != 1.0 else {}),
                 **({"short_thresholds": dict(short.thresholds), "short_max_s": seg.short_max_s}
                    if short.thresholds else {})}
    head.thresholds, head.detection = thresholds, detection

    soundscapes = {"val": evaluate_files(val_files, classes, seg),
                   "test": evaluate_files(test_files, classes, seg),
                   "test_default_thresholds": evaluate_files(test_files, classes,
                                                             segment_config({}, 1.0))}
    clip_sets = _clip_metrics(head, items, patches, rows, y, classes, seg,
                              _versions(prep.dataset))
    false_alarms = _false_alarms(config, prep, {"val": val_files, "test": test_files}, seg)
    labels, groups = [it.label for it in items], [it.group for it in items]
    splits = prep.splits
    metrics = {
        "classes": list(classes), "thresholds": thresholds, "detection": detection,
        "recipe": recipe, "calibration": calib, "sweep": sweep, "soundscapes": soundscapes,
        "min_event_fraction": {"chosen": fraction, "val_clips_macro_f1": short.by_fraction},
        "short_recordings": {"max_s": seg.short_max_s, "thresholds": dict(short.thresholds),
                             "val_clips_macro_f1": short.best,
                             "val_clips_macro_f1_long_thresholds": short.without},
        "false_alarm_sources": false_alarms,
        "clips": clip_sets,
        "split": split_summary(labels, groups, [str(s) for s in splits], classes),
        "data": {"files": len(items), "groups": len(set(groups)), "per_label": prep.dataset.counts(),
                 "weak_bags": len(weak), "train_scene_hours": n_train_scenes
                 * config.train_scene_s / 3600,
                 "val_hours": sum(s.duration_s for s in val_scenes) / 3600,
                 "test_hours": sum(s.duration_s for s in test_scenes) / 3600,
                 "eval_minutes": list(config.eval_minutes)},
    }
    head.extra = {"training": {"config": config.to_dict(), "command": config.command(),
                               "recipe": recipe},
                  "metrics": {"soundscapes_test": _brief(soundscapes["test"]),
                              "clips_test": {k: clip_sets[k]["macro_f1"]
                                             for k in clip_sets}}}
    return head, metrics


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {"mean_event_f1": m["mean_event_f1"], "mean_file_flag_f1": m["mean_file_flag_f1"],
            "false_alarms_per_hour": m["false_alarms_per_hour"],
            "per_class": {c: {"event_f1": v["event_f1"], "file_flag_f1": v["file_flag"]["f1"],
                              "false_alarms_per_hour": v["false_alarms_per_hour"]}
                          for c, v in m["per_class"].items()}}


def _false_alarms(config: DetectConfig, prep: Prepared, files: dict[str, list[ScoredFile]],
                  seg: SegmentConfig) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each soundscape set's false alarms by the bed clip under them, with what YAMNet's
    AudioSet classifier hears there when the backbone is YAMNet's TFLite model."""
    from training.false_alarms import AudioSetScorer, trace_sets

    scenes = {s.name: s.patches for s in (*prep.val_scenes, *prep.test_scenes)}
    scorer = AudioSetScorer.for_model(config.model, scenes) if config.backbone == "yamnet" \
        else None
    return trace_sets({k: (v, detect(v, prep.classes, seg)) for k, v in files.items()},
                      prep.beds, prep.classes, BACKGROUND, scorer)


def _clip_files(head: Head, patches: dict[str, list[Patches | None]], rows: NDArray[np.int64],
                y: NDArray[np.int64]) -> tuple[list[ScoredFile], list[int]]:
    """One split's clips in both views (as recorded, band-limited), scored like a scan."""
    files, labels = [], []
    for view in VIEWS:
        for i in rows:
            if patches[view][i] is not None:
                files.append(score_file(head, f"{view}:{i}", patches[view][i], 1e9, []))
                labels.append(int(y[i]))
    return files, labels


def _clip_metrics(head: Head, items: list[LabelledFile],
                  patches: dict[str, list[Patches | None]], rows: dict[str, NDArray[np.int64]],
                  y: NDArray[np.int64], classes: tuple[str, ...], seg,
                  versions: dict[str, str]) -> dict[str, Any]:
    """Test clips scored the way the scan labels files (events), and by the pooled mean."""
    out: dict[str, Any] = {}
    for view, tag in ((VIEWS[0], ""), (VIEWS[1], "_bandlimited")):
        r = [i for i in rows["test"] if patches[view][i] is not None]
        files = [score_file(head, str(i), patches[view][i], 1e9, []) for i in r]
        events = detect(files, classes, seg)
        verdict = [classes.index(file_verdict(events[str(i)], BACKGROUND)) for i in r]
        onehot = np.eye(len(classes), dtype=np.float32)[verdict]
        out[f"test_events{tag}"] = evaluate(y[r], onehot, classes, curves=False)
        pooled = head.predict_proba(np.stack([patches[view][i].embeddings.astype(np.float32)
                                              .mean(axis=0) for i in r]))
        out[f"test_pooled{tag}"] = evaluate(y[r], pooled, classes, curves=False)
        new = [k for k, i in enumerate(r) if versions.get(str(items[i].path)) == "v2"]
        if new:
            out[f"test_events_v2{tag}"] = evaluate(y[r][new], onehot[new], classes, curves=False)
    return out


def _versions(dataset) -> dict[str, str]:
    """Path -> the manifest's ``version`` column (v1, v2), where the dataset has one."""
    import csv

    src = Path(dataset.source)
    if not src.is_file():
        return {}
    with src.open(newline="") as f:
        rows = list(csv.DictReader(f))
    col = "path" if rows and "path" in rows[0] else "file"
    return {str((src.parent / r[col]).resolve()): r.get("version", "") for r in rows}


def _write(out: Path, config: DetectConfig, metrics: dict[str, Any], items: list[LabelledFile],
           dataset, splits: list[str]) -> None:
    from training.detect_report import write_detect_report
    from training.split import write_split_csv

    write_split_csv(out / "split.csv", ((dataset.relpath(it), it.label, it.group, s)
                                        for it, s in zip(items, splits, strict=True)))
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_detect_report(out, config=config, metrics=metrics)
