"""Scan-time cost of heads: ``predict_windows`` on one hour of YAMNet patches, same run.

The heads run on the scan's own windows (1.44 s at 0.48 s) over random 1,024-d patch
embeddings (7,500 patches an hour), alternately, ``--repeats`` times each; the figure is the
median, and the ratio to the first head is what to compare across machines. With several
``--hours`` each length is timed the same way, and ``linearity`` is the cost per hour at each
length over the cost per hour at the first: 1.0 is linear in file length.

    python benchmarks/bench_heads.py --heads clip-linear,detector,audioset
    python benchmarks/bench_heads.py --heads detector --hours 1,4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _windows(hours: float) -> tuple[np.ndarray, np.ndarray]:
    from scanner.events.segments import SegmentConfig, window_starts
    seg = SegmentConfig()
    n = int(hours * 3600 / 0.48)
    span = (n - 1) * 0.48 + 0.96
    starts = window_starts(span, seg.window_s, seg.hop_s)
    return starts, np.minimum(starts + seg.window_s, span)


def _time_heads(heads: dict[str, object], hours: float, repeats: int) -> dict[str, float]:
    """Median milliseconds per hour of audio of each head's ``predict_windows``."""
    from scanner.records import Embedding
    n = int(hours * 3600 / 0.48)
    rng = np.random.default_rng(0)
    emb = Embedding(rng.standard_normal((n, 1024)).astype(np.float32), np.arange(n) * 0.48, 0.96,
                    rng.random((n, 521)).astype(np.float32))
    starts, ends = _windows(hours)
    times: dict[str, list[float]] = {name: [] for name in heads}
    for _ in range(repeats):
        for name, head in heads.items():
            t0 = time.perf_counter()
            head.predict_windows(emb, starts, ends)  # type: ignore[attr-defined]
            times[name].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) / hours for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", default="clip-linear,detector")
    ap.add_argument("--hours", default="1", help="file length(s) in hours, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from scanner.heads import load_head

    heads = {name: load_head(name) for name in args.heads.split(",")}
    lengths = [float(h) for h in args.hours.split(",")]
    per_hour = {h: _time_heads(heads, h, args.repeats) for h in lengths}
    first, base = next(iter(heads)), lengths[0]
    out: dict[str, object] = {
        "hours": lengths,
        "windows": {h: _windows(h)[0].size for h in lengths},
        "ms_per_hour": {k: round(v, 1) for k, v in per_hour[base].items()},
        f"ratio_to_{first}": {k: round(v / per_hour[base][first], 2)
                              for k, v in per_hour[base].items()}}
    if len(lengths) > 1:
        out["ms_per_hour_by_length"] = {h: {k: round(v, 1) for k, v in per_hour[h].items()}
                                        for h in lengths}
        out["linearity"] = {h: {k: round(v / per_hour[base][k], 2) for k, v in per_hour[h].items()}
                            for h in lengths[1:]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
