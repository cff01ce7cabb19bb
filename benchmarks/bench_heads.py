"""Scan-time cost of heads: ``predict_windows`` on one hour of YAMNet patches, same run.

The heads run on the scan's own windows (1.44 s at 0.48 s) over 7,500 patches of 1,024-d
embeddings (one hour), alternately, ``--repeats`` times each; the figure is the median, and
the ratio to the first head is what to compare across machines.

    python benchmarks/bench_heads.py --heads clip-linear,detector,audioset
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", default="clip-linear,detector")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from scanner.events.segments import SegmentConfig, window_starts
    from scanner.heads import load_head
    from scanner.records import Embedding

    heads = {name: load_head(name) for name in args.heads.split(",")}
    seg = SegmentConfig()
    n = int(args.hours * 3600 / 0.48)
    rng = np.random.default_rng(0)
    emb = Embedding(rng.standard_normal((n, 1024)).astype(np.float32), np.arange(n) * 0.48, 0.96,
                    rng.random((n, 521)).astype(np.float32))
    span = float(emb.starts_s[-1]) + emb.window_s
    starts = window_starts(span, seg.window_s, seg.hop_s)
    ends = np.minimum(starts + seg.window_s, span)
    times: dict[str, list[float]] = {name: [] for name in heads}
    for _ in range(args.repeats):
        for name, head in heads.items():
            t0 = time.perf_counter()
            head.predict_windows(emb, starts, ends)
            times[name].append(time.perf_counter() - t0)
    first = next(iter(heads))
    base = statistics.median(times[first])
    out = {"windows": len(starts), "hours": args.hours,
           "ms_per_hour": {k: round(1000 * statistics.median(v) / args.hours, 1)
                           for k, v in times.items()},
           f"ratio_to_{first}": {k: round(statistics.median(v) / base, 2)
                                 for k, v in times.items()}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
