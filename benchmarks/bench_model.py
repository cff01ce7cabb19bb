"""Benchmark the YAMNet model stage alone (no decoding): seconds of audio per second of compute.

Measures, for each thread count:
  * ``long``: :meth:`embed` on one ``--seconds`` clip (one model call up to 60 s);
  * ``1s_calls``: :meth:`embed` on 1 s clips, one call each;
  * ``batch_loop``: :meth:`embed` looped over ``--clips`` clips of ``--clip-seconds``;
  * ``batch``: :meth:`embed_batch` on the same clips (the backbone's default: packed for
    TensorFlow, one call per clip for TFLite);
  * ``batch_packed``: :meth:`embed_batch` with packing forced on.

Example::

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_model.py --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scanner.backbones.yamnet import YAMNetBackbone

SR = 16_000
log = logging.getLogger("bench_model")


def _clips(n: int, seconds: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    size = int(seconds * SR)
    return [(0.2 * rng.standard_normal(size)).astype(np.float32) for _ in range(n)]


def _timed(cases: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Wall times of ``repeats`` runs of every case, after one warm-up run of each.

    The cases take turns (one run of each per round), so a burst of other work on a
    shared machine slows all of them alike rather than whichever ran at that moment.
    """
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(repeats):
        for case, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[case].append(time.perf_counter() - start)
    return times


def bench(model: str | None, threads: int, *, seconds: float, clips: int, clip_seconds: float,
          repeats: int) -> dict[str, Any]:
    """Runs every case for one thread count; returns ``{case: {audio_s, wall_s, x_realtime}}``."""
    backbone = YAMNetBackbone.load(model, device="cpu", threads=threads)
    (long_clip,) = _clips(1, seconds, 0)
    short = _clips(max(1, int(seconds)), 1.0, 1)
    many = _clips(clips, clip_seconds, 2)
    default_pack = backbone.pack

    def batch_packed() -> None:
        backbone.pack = True
        try:
            backbone.embed_batch(many)
        finally:
            backbone.pack = default_pack

    cases: dict[str, tuple[float, Callable[[], Any]]] = {
        "long": (seconds, lambda: backbone.embed(long_clip)),
        "1s_calls": (len(short) * 1.0, lambda: [backbone.embed(w) for w in short]),
        "batch_loop": (clips * clip_seconds, lambda: [backbone.embed(w) for w in many]),
        "batch": (clips * clip_seconds, lambda: backbone.embed_batch(many)),
        "batch_packed": (clips * clip_seconds, batch_packed),
    }
    times = _timed({case: fn for case, (_, fn) in cases.items()}, repeats)
    results = {}
    for case, (audio_s, _) in cases.items():
        # The best run is the one least slowed by other work; the JSON keeps the median too.
        best_s, median_s = min(times[case]), statistics.median(times[case])
        results[case] = {"audio_s": audio_s, "wall_s": round(best_s, 5),
                         "median_wall_s": round(median_s, 5),
                         "x_realtime": round(audio_s / best_s, 1),
                         "median_x_realtime": round(audio_s / median_s, 1)}
        log.info("threads=%d %s: %.0fx realtime (best of %d)", threads, case,
                 audio_s / best_s, repeats)
    return {"identity": backbone.identity, "default_pack": default_pack,
            "max_patches_per_call": backbone.max_patches, "cases": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default=None,
                        help="a .tflite file, SavedModel folder or hub handle "
                             "(default: SCANNER_MODEL_DIR, then TF Hub)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="model thread counts to try (default: 1 2)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of the long clip, and of 1 s clips in total (default 60)")
    parser.add_argument("--clips", type=int, default=200, help="short clips (default 200)")
    parser.add_argument("--clip-seconds", type=float, default=5.0,
                        help="length of each short clip (default 5)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per case; the best is reported (default 5)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model.json"),
                        help="JSON results (default benchmarks/results/model.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    runs = {str(t): bench(args.model, t, seconds=args.seconds, clips=args.clips,
                          clip_seconds=args.clip_seconds, repeats=args.repeats)
            for t in args.threads}
    report = {
        "benchmark": "model", "machine": platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "settings": vars(args) | {"out": str(args.out)},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    cases = list(next(iter(runs.values()))["cases"])
    print(f"{'case':<14}" + "".join(f"{'threads=' + t:>14}" for t in runs) + "   (x realtime, best run)")
    for case in cases:
        print(f"{case:<14}" + "".join(f"{runs[t]['cases'][case]['x_realtime']:>14.0f}"
                                      for t in runs))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
