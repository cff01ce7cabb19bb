"""Compare detection recipes on one prepared data set: ``python -m training.recipes``.

Each recipe is a :class:`~training.detect_config.DetectConfig` with some options changed;
all share the split, the cached patches and the scenes, so the figures differ only by the
recipe. A built-in head (``clip-linear``, the whole-clip linear head) is scored on the same
soundscapes, with thresholds chosen the same way. One JSON line per recipe goes to
``--out`` as soon as it is done (the last column of the report's recipe table).

    python -m training.recipes ../shared/datasets/cry-scream --weak ../shared/datasets/scream-weak \\
        --cache-dir ~/.cache/scanner/embeddings --out recipes.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from training.detect import BACKGROUND, Prepared, _reference, fit_detector, prepare
from training.detect_config import DetectConfig
from training.detect_eval import choose_detection, evaluate_files, score_file, segment_config

log = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "window MLP (3 patches), clip windows only": {
        "scales": (3,), "train_scene_hours": 0.0, "mil": False, "hard_negative_weight": 1},
    "context (3, 7, 21), clip windows only": {
        "train_scene_hours": 0.0, "mil": False, "hard_negative_weight": 1},
    "context + training soundscapes": {"mil": False, "hard_negative_weight": 1},
    "context + soundscapes + MIL weak screams": {"hard_negative_weight": 1},
    "context + soundscapes + MIL + hard negatives x3": {},
    "... with class weight balanced": {"class_weight": "balanced"},
    "... with class weight none": {"class_weight": "none"},
    "temporal convolution (kernel 5, dilations 1, 2, 4) + soundscapes + MIL + hard negatives": {
        "arch": "temporal", "hidden": (128,), "lr": 1e-3, "batch_size": 16, "epochs": 30,
        "patience": 5},
}


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    return {"mean_event_f1": m["mean_event_f1"], "mean_file_flag_f1": m["mean_file_flag_f1"],
            "false_alarms_per_hour": m["false_alarms_per_hour"],
            **{f"event_f1_{c}": v["event_f1"] for c, v in m["per_class"].items()}}


def score_builtin(name: str, prep: Prepared, fa_budget: float) -> dict[str, Any]:
    """A built-in head on the prepared soundscapes, thresholds chosen on validation."""
    from scanner.heads import load_head

    head = load_head(name)
    val = [score_file(head, s.name, s.patches, s.duration_s, _reference(s))
           for s in prep.val_scenes]
    test = [score_file(head, s.name, s.patches, s.duration_s, _reference(s))
            for s in prep.test_scenes]
    thresholds, settings, _ = choose_detection(val, prep.classes, background=BACKGROUND,
                                               fa_budget_per_hour=fa_budget)
    seg = segment_config(thresholds, **settings)
    own = segment_config(head.detection_thresholds(), 1.0)
    return {"recipe": f"built-in `{name}`", "thresholds": thresholds, **settings,
            "val": _summary(evaluate_files(val, prep.classes, seg)),
            "test": _summary(evaluate_files(test, prep.classes, seg)),
            "test_own_thresholds": _summary(evaluate_files(test, prep.classes, own))}


def run(base: DetectConfig, out: Path, names: list[str], builtin: list[str]) -> None:
    prep = prepare(base, progress=False)
    with out.open("a") as f:
        for name in builtin:
            row = score_builtin(name, prep, base.fa_budget_per_hour)
            f.write(json.dumps(row) + "\n")
            f.flush()
        for name in names:
            config = replace(base, **RECIPES[name])
            head, m = fit_detector(config, prep)
            row = {"recipe": name, "thresholds": m["thresholds"],
                   "min_event_s": m["detection"]["min_event_s"],
                   "max_gap_s": m["detection"].get("max_gap_s", 0.0),
                   "val": _summary(m["soundscapes"]["val"]),
                   "test": _summary(m["soundscapes"]["test"]),
                   "val_ece": m["calibration"]["after"]["ece"],
                   "test_clip_macro_f1": m["clips"]["test_events"]["macro_f1"],
                   "test_clip_macro_f1_bandlimited":
                       m["clips"]["test_events_bandlimited"]["macro_f1"]}
            f.write(json.dumps(row) + "\n")
            f.flush()
            log.info("%s: validation mean event F1 %.3f, %.1f FA/h", name,
                     row["val"]["mean_event_f1"], row["val"]["false_alarms_per_hour"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir")
    ap.add_argument("--weak")
    ap.add_argument("--cache-dir")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--recipes", default="all",
                    help="comma-separated recipe numbers (1-based, in RECIPES order) or 'all'")
    ap.add_argument("--builtin", default="clip-linear",
                    help="comma-separated built-in heads to score too ('' for none)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = list(RECIPES)
    if args.recipes != "all":
        names = [names[int(i) - 1] for i in args.recipes.split(",")]
    base = DetectConfig(data_dir=args.data_dir, out_dir=str(args.out.with_suffix("")) + "-head",
                        weak_dir=args.weak, cache_dir=args.cache_dir)
    run(base, args.out, names, [b for b in args.builtin.split(",") if b])


if __name__ == "__main__":
    main()
