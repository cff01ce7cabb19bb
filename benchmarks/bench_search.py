"""Benchmark ``scanner search``: latency on N random 1024-d windows, exact numpy and faiss IVF.

For each size: the exact search (``ExactSearch``: one query, and a batch of 20 per query),
the IVF index's build time and per-query latency, and its recall@10 against the exact
answer for queries that are stored vectors plus noise. Vectors are float16, as
``scan --embeddings`` stores them. Random data is the hard case for an index (no
clusters), so its recall here is a floor.

Example::

    nice -n 10 python benchmarks/bench_search.py --sizes 100000 300000 1000000 -o bench_search.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from scanner.search.exact import ExactSearch
from scanner.search.index import IVFIndex

log = logging.getLogger("bench_search")
DIM = 1024
N_QUERIES = 20
K = 10


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float16)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        out[i:i + m] = rng.standard_normal((m, DIM), dtype=np.float32)
    return out


def _timed(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _exact(x: np.ndarray, queries: np.ndarray, repeats: int
           ) -> tuple[float, float, float, np.ndarray]:
    t = time.perf_counter()
    exact = ExactSearch(x)
    prep_s = time.perf_counter() - t
    one = _timed(lambda: exact.search(queries[:1], K), repeats)
    batch = _timed(lambda: exact.search(queries, K), max(1, repeats // 2)) / N_QUERIES
    return prep_s, one, batch, exact.search(queries, K)[1]


def bench(n: int, *, seed: int = 0, repeats: int = 5) -> dict[str, Any]:
    x = _vectors(n, seed)
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(n, N_QUERIES, replace=False)
    queries = x[rows].astype(np.float32) + 0.5 * rng.standard_normal((N_QUERIES, DIM)).astype(np.float32)

    prep_s, exact_one, exact_batch, truth = _exact(x, queries, repeats)

    t = time.perf_counter()
    index = IVFIndex.build(x)
    build_s = time.perf_counter() - t
    ivf_one = _timed(lambda: index.search(queries[:1], K), repeats * 4)
    ivf_batch = _timed(lambda: index.search(queries, K), repeats) / N_QUERIES
    _, got = index.search(queries, K)
    recall = float(np.mean([len(set(g) & set(w)) / K for g, w in zip(got, truth, strict=True)]))
    self_hit = float(np.mean(got[:, 0] == rows))
    result = {"n": n, "dim": DIM, "k": K, "exact_prepare_s": round(prep_s, 3),
              "exact_query_s": round(exact_one, 4), "exact_batch20_per_query_s": round(exact_batch, 4),
              "ivf_build_s": round(build_s, 2), "ivf_lists": index.index.nlist,
              "ivf_probes": index.index.nprobe, "ivf_query_s": round(ivf_one, 5),
              "ivf_batch20_per_query_s": round(ivf_batch, 5), "ivf_recall_at_10": round(recall, 3),
              "ivf_top1_is_source": round(self_hit, 3)}
    log.info("%s", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import faiss

    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "faiss_threads": faiss.omp_get_max_threads(),
                          "load_avg_at_start": os.getloadavg()},
              "results": [bench(n, repeats=args.repeats) for n in args.sizes]}
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    log.info("done:\n%s", text)


if __name__ == "__main__":
    main()
