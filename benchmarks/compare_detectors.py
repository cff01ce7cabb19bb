"""Compares heads as detectors on the project's soundscapes, thresholds chosen on validation.

For each head (a built-in name or a folder; ``A+B+C`` is the mean of heads' window
probabilities, ``A@2+B@1`` a weighted mean): per-class thresholds and minimum event lengths
and the gap bridged are chosen on validation soundscapes (best mean event F1 within
``--fa-budget`` false alarms per hour, :func:`training.detect_eval.choose_detection`), then
applied to test soundscapes and to the held-out test clips (the file verdict the scan gives,
also band-limited to 4 kHz). The
soundscapes are the benchmark generator's (``benchmarks/soundscapes.py build``), one set per
seed of each split, embedded once with YAMNet and cached (``--cache-dir``); the split is the
detection training's (``--val``/``--test``/``--seed`` of ``scanner train --detector``).

    SCANNER_MODEL_DIR=../shared/models python benchmarks/compare_detectors.py \\
        ../shared/datasets/cry-scream --heads clip-linear,detector \\
        --out benchmarks/results/detectors.jsonl

The defaults are the project's benchmark: 15 h of validation soundscapes (seeds 1, 10, 11, 12
and 13 of the validation split) and 10 h of test soundscapes (seeds 0-4 of the test split).
Choosing thresholds runs sed_eval a few hundred times: about 15 minutes per head on 2 cores.
A head fit on clips of the benchmark's validation or test split (``training.leakage``) is
flagged in the log and in its row (``trained_on_benchmark_clips``).

``--own-settings`` scores single heads at their stored operating point instead (a few
minutes). ``--false-alarms N`` puts every false alarm down to the background clip under it
and names what YAMNet's AudioSet classifier hears there (``training.false_alarms``; rows get
``false_alarm_sources``, the log the N clips with most per class):

    SCANNER_MODEL_DIR=../shared/models python benchmarks/compare_detectors.py \\
        ../shared/datasets/cry-scream --heads detector --own-settings --false-alarms 8

``--short-recordings`` also chooses, on the validation clips (both views), how recordings of
at most 60 s are judged: the minimum event fraction and thresholds of their own
(:func:`training.detect_eval.choose_short_recordings`); ``--save`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("compare_detectors")


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {"mean_event_f1": round(m["mean_event_f1"], 3),
            "mean_file_flag_f1": round(m["mean_file_flag_f1"], 3),
            "false_alarms_per_hour": round(m["false_alarms_per_hour"], 2),
            **{f"event_f1_{c}": round(v["event_f1"], 3) for c, v in m["per_class"].items()},
            "found_by_snr": {c: {b["snr_db"]: f"{b['found']}/{b['events']}"
                                 for b in v["found_by_snr"]} for c, v in m["per_class"].items()}}


SETTING_KEYS = ("min_event_s", "smooth_windows", "max_gap_s", "class_min_event_s",
                "edge_thresholds", "min_event_fraction", "short_thresholds", "short_max_s")


def own_settings(spec: str, names: list[str], load_head: Any
                 ) -> tuple[dict[str, float], dict[str, Any]]:
    """A single head's stored thresholds and event settings (``--own-settings``).

    As in a scan, a setting the head does not store takes the scan's default
    (:class:`~scanner.events.segments.SegmentConfig`), and a threshold on the background
    class is ignored (``clip-linear`` stores thresholds and no detection block).
    """
    from scanner.events.segments import SegmentConfig
    from training.detect import BACKGROUND

    head = load_head(names[0])
    thresholds, stored = head.detection_thresholds(), head.detection_settings()
    thresholds = {c: p for c, p in thresholds.items() if c != BACKGROUND}
    if not thresholds:
        raise SystemExit(f"{spec}: the head stores no thresholds; leave out --own-settings")
    defaults = SegmentConfig()
    return dict(thresholds), {k: stored[k] if k in stored else getattr(defaults, k)
                              for k in SETTING_KEYS}


class _FalseAlarmTracer:
    """The benchmark's false alarms, each put down to the bed clip under it
    (:mod:`training.false_alarms`); beds are mixed again once per split, not embedded."""

    def __init__(self, args: argparse.Namespace, manifest: list, where: dict[str, str],
                 config: Any, classes: tuple[str, ...], scenes: dict[str, list]) -> None:
        from training.detect import BACKGROUND
        from training.false_alarms import AudioSetScorer
        from training.scene_sets import benchmark_beds

        self.args, self.classes, self.background = args, classes, BACKGROUND
        self.scenes = {s.name: s for split in scenes.values() for s in split}
        self.beds: dict[str, list[dict[str, Any]]] = {}
        for split, hours, seeds in (("val", args.val_hours, args.val_seeds),
                                    ("test", args.test_hours, args.test_seeds)):
            clips = [c for c in manifest if where.get(c.group) == split]
            for seed in (int(x) for x in seeds.split(",")):
                beds = benchmark_beds(split, clips, hours=hours, minutes=config.eval_minutes,
                                      seed=seed, classes=classes, background_class=BACKGROUND)
                self.beds.update({f"seed{seed}_{k}": b for k, b in beds.items()})
        self.scorer = AudioSetScorer.for_model(
            config.model, {n: sc.patches for n, sc in self.scenes.items()})

    def sources(self, split: str, files: list, seg: Any) -> dict[str, list[dict[str, Any]]]:
        from training.detect_eval import detect
        from training.false_alarms import sources_table, trace_sets

        out = trace_sets({split: (files, detect(files, self.classes, seg))}, self.beds,
                         self.classes, self.background, self.scorer)[split]
        log.info("%s false alarms by the background clip under them:\n%s", split,
                 "\n".join(sources_table(out, self.args.false_alarms)))
        return out


def member_weights(spec: str) -> tuple[list[str], list[float]]:
    """``A@2+B@1`` -> (["A", "B"], [2.0, 1.0]); a member without ``@`` weighs 1."""
    names, weights = [], []
    for part in spec.split("+"):
        name, _, weight = part.rpartition("@") if "@" in part else (part, "", "1")
        try:
            value = float(weight)
        except ValueError:
            raise SystemExit(f"{spec}: {weight!r} is not a weight") from None
        if not value > 0:
            raise SystemExit(f"{spec}: weights must be positive")
        names.append(name)
        weights.append(value)
    return names, weights


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir")
    ap.add_argument("--heads", default="clip-linear,detector",
                    help="comma-separated heads; A+B+C averages heads, A@2+B@1 with weights")
    ap.add_argument("--val-seeds", default="1,10,11,12,13")
    ap.add_argument("--test-seeds", default="0,1,2,3,4")
    ap.add_argument("--val-hours", type=float, default=3.0, help="hours per validation seed")
    ap.add_argument("--test-hours", type=float, default=2.0, help="hours per test seed")
    ap.add_argument("--fa-budget", type=float, default=5.0)
    ap.add_argument("--save", type=Path, metavar="FOLDER",
                    help="with one averaged spec (A+B...) in --heads: write it as an ensemble head, "
                         "with the thresholds, minimum event and gap chosen here")
    ap.add_argument("--name", default="detector", help="the saved ensemble's name")
    ap.add_argument("--cache-dir", help="patch and scene cache (default: the user cache)")
    ap.add_argument("--model", help="YAMNet file (default: from SCANNER_MODEL_DIR)")
    ap.add_argument("--out", type=Path, help="append one JSON line per head here")
    ap.add_argument("--min-event-fraction", type=float, default=1.0,
                    help="in a short recording, the minimum event length is at most this "
                         "fraction of it (the held-out clips; the soundscapes are too long to "
                         "notice); saved with --save")
    ap.add_argument("--short-recordings", action="store_true",
                    help="choose the minimum event fraction and the thresholds of recordings of "
                         "at most 60 s on the validation clips (both views); saved with --save")
    ap.add_argument("--own-settings", action="store_true",
                    help="use each head's stored thresholds and event settings (a head that has "
                         "them, such as the built-in detector) instead of choosing them on "
                         "validation")
    ap.add_argument("--false-alarms", type=int, default=0, metavar="N",
                    help="trace each split's false alarms to the background clip under them "
                         "(and the AudioSet classes YAMNet hears there); rows get every clip, "
                         "the log the N with most per class")
    args = ap.parse_args(argv)
    if args.save is not None and (args.heads.count(",") or "+" not in args.heads):
        ap.error("--save takes exactly one averaged spec in --heads (A+B...)")
    if not 0 < args.min_event_fraction <= 1:
        ap.error("--min-event-fraction must be in (0, 1]")
    if args.short_recordings and args.min_event_fraction != 1.0:
        ap.error("--short-recordings chooses the minimum event fraction; leave out "
                 "--min-event-fraction")
    if args.own_settings and (args.save is not None or "+" in args.heads
                              or args.min_event_fraction != 1.0):
        ap.error("--own-settings takes single heads, not averaged specs, --save or "
                 "--min-event-fraction (the head's own settings hold its fraction)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from scanner.backbones import load_backbone
    from scanner.heads import load_head
    from scanner.output.cache import file_digest
    from training.detect import BACKGROUND, _reference, prepare
    from training.detect_config import DetectConfig
    from training.detect_eval import (
        ScoredFile,
        choose_detection,
        choose_short_recordings,
        clip_macro_f1,
        evaluate_files,
        score_file,
        segment_config,
    )
    from training.patches import PatchCache
    from training.scene_sets import benchmark_set
    from training.soundscapes import load_manifest

    config = DetectConfig(data_dir=args.data_dir, out_dir="unused", cache_dir=args.cache_dir,
                          model=args.model, train_scene_hours=0.0)
    prep = prepare(config, progress=False)
    backbone = load_backbone(config.backbone, config.model)
    cache = PatchCache(config.cache_dir, backbone)
    where = {it.group: str(s) for it, s in zip(prep.items, prep.splits, strict=True)}
    manifest = load_manifest(Path(prep.dataset.source).parent)
    classes = prep.classes

    def soundscapes(split: str, hours: float, seeds: str) -> list:
        clips = [c for c in manifest if where.get(c.group) == split]
        digests = sorted(file_digest(prep.items[i].path) for i in prep.rows[split])
        out = []
        for seed in (int(s) for s in seeds.split(",")):
            scenes = benchmark_set(split, clips, hours=hours, minutes=config.eval_minutes,
                                   seed=seed, digests=digests, classes=classes,
                                   background_class=BACKGROUND, backbone=backbone, cache=cache)
            out += [replace(s, name=f"seed{seed}_{s.name}") for s in scenes]
        return out

    val = soundscapes("val", args.val_hours, args.val_seeds)
    test = soundscapes("test", args.test_hours, args.test_seeds)
    tracer = _FalseAlarmTracer(args, manifest, where, config, classes, {"val": val, "test": test}) \
        if args.false_alarms > 0 else None
    log.info("validation: %d recordings, %d events; test: %d recordings, %d events", len(val),
             sum(len(s.events) for s in val), len(test), sum(len(s.events) for s in test))

    def scored(head, scenes) -> list[ScoredFile]:
        return [score_file(head, s.name, s.patches, s.duration_s, _reference(s)) for s in scenes]

    def clips(head, view: str, split: str = "test") -> tuple[list[ScoredFile], list[int]]:
        rows = [i for i in prep.rows[split] if prep.patches[view][i] is not None]
        return [score_file(head, f"{view}:{i}", prep.patches[view][i], 1e9, [])
                for i in rows], rows

    def mean(parts: list[list[ScoredFile]], weights: list[float]) -> list[ScoredFile]:
        total = sum(weights)
        return [replace(files[0], probs=(sum(w * f.probs for w, f in zip(weights, files,
                                                                          strict=True)) / total
                                         ).astype(np.float32))
                for files in zip(*parts, strict=True)]

    def clip_f1(files: list[ScoredFile], rows: list[int], seg) -> float:
        return round(clip_macro_f1(files, prep.y[rows].tolist(), classes, seg), 3)

    cache_scores: dict[str, tuple] = {}

    def scores_of(name: str) -> tuple:
        if name not in cache_scores:
            head = load_head(name)
            cache_scores[name] = (scored(head, val), scored(head, test), clips(head, "original"),
                                  clips(head, "bandlimit4k"), clips(head, "original", "val"),
                                  clips(head, "bandlimit4k", "val"))
        return cache_scores[name]

    from scanner.heads import builtin_heads
    from training.leakage import split_overlap

    benchmark_clips = {s: {prep.dataset.relpath(prep.items[i]) for i in prep.rows[s]}
                       for s in ("val", "test")}

    def leaks(names: list[str]) -> dict[str, Any]:
        """Members trained on clips of the benchmark's validation or test split."""
        out = {}
        for n in names:
            for member, seen in split_overlap(builtin_heads().get(n) or Path(n),
                                              benchmark_clips).items():
                if seen.get("val") or seen.get("test"):
                    out[f"{n}:{member}" if member != Path(n).name else n] = seen
                    log.warning("%s was trained on %d validation and %d test clips of this "
                                "benchmark: its thresholds and figures here are optimistic",
                                n, seen["val"], seen["test"])
        return out

    for spec in args.heads.split(","):
        t0 = time.monotonic()
        names, weights = member_weights(spec)
        parts = [scores_of(n) for n in names]
        v, te, co, cb, vo, vb = parts[0]
        if len(parts) > 1:
            v, te = mean([p[0] for p in parts], weights), mean([p[1] for p in parts], weights)
            co, cb, vo, vb = ((mean([p[k][0] for p in parts], weights), parts[0][k][1])
                              for k in (2, 3, 4, 5))
        if args.own_settings:
            thresholds, settings = own_settings(spec, names, load_head)
        else:
            thresholds, settings, _ = choose_detection(v, classes, background=BACKGROUND,
                                                       fa_budget_per_hour=args.fa_budget)
            if args.min_event_fraction != 1.0:
                settings["min_event_fraction"] = args.min_event_fraction
        seg = segment_config(thresholds, **settings)
        short = None
        if args.short_recordings:
            short = choose_short_recordings(vo[0] + vb[0], prep.y[vo[1] + vb[1]].tolist(),
                                            classes, seg)
            settings = {k: v for k, v in settings.items()
                        if k not in ("short_thresholds", "short_max_s")}
            settings["min_event_fraction"] = short.fraction
            if short.thresholds:
                settings.update(short_thresholds=short.thresholds, short_max_s=seg.short_max_s)
            seg = segment_config(thresholds, **settings)
        row = {"head": spec, "thresholds": thresholds, **settings,
               **({"short_recordings": {"val_clips_macro_f1": short.best,
                                        "val_clips_macro_f1_long_thresholds": short.without,
                                        "by_fraction": short.by_fraction}} if short else {}),
               "val": _brief(evaluate_files(v, classes, seg)),
               "test": _brief(evaluate_files(te, classes, seg)),
               "test_clips_macro_f1": clip_f1(*co, seg),
               "test_clips_macro_f1_bandlimited": clip_f1(*cb, seg),
               "val_recordings": len(val), "test_recordings": len(test),
               "trained_on_benchmark_clips": leaks(names)}
        if tracer is not None:
            row["false_alarm_sources"] = {split: tracer.sources(split, files, seg)
                                          for split, files in (("val", v), ("test", te))}
        row["seconds"] = round(time.monotonic() - t0)
        log.info("%s", json.dumps(row))
        if args.save is not None:
            from scanner.heads.ensemble import write_ensemble
            from training.detect_eval import SMOOTH_WINDOWS
            from training.windows import HOP_S, WINDOW_S

            members = [builtin_heads().get(n) or Path(n) for n in names]
            detection = {"window_s": WINDOW_S, "hop_s": HOP_S, "smooth_windows": SMOOTH_WINDOWS,
                         **{k: v for k, v in settings.items()
                            if v or k not in ("class_min_event_s", "edge_thresholds",
                                              "short_thresholds")}}
            write_ensemble(args.save, members, [w / sum(weights) for w in weights],
                           thresholds=thresholds,
                           detection=detection, name=args.name,
                           extra={"benchmark": {k: row[k] for k in row if k != "head"},
                                  "command": " ".join(["python", *sys.argv])})
            log.info("wrote the ensemble head %s", args.save)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
