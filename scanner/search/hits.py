"""Search: queries against a vector set, one window per stretch of audio, written as a hits table.

A hits table has the events table's columns (``path, label, start_s, end_s,
peak_confidence, mean_confidence``; both confidences hold the cosine similarity) plus
``query`` and ``rank``, so ``scanner review`` and ``scanner export`` read it as events.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from scanner.output.vectors import Vectors
from scanner.search.queries import Query

log = logging.getLogger(__name__)

Method = Literal["auto", "exact", "ivf"]
EXACT_MAX_VECTORS = 1_500_000
"""Up to this many vectors ``auto`` searches exactly, unless a current index is saved.
Measured (benchmarks/bench_search.py on the shared 2-core machine, docs/review.md): at 1M
1024-d vectors exact numpy takes 1.07 s for one query (0.34 s each in a batch of 20),
the IVF index 0.06 s, but building that index took 500 s: it pays off only after hundreds
of queries, so it is built when asked for (``ivf``) or when exact search gets slow."""
CANDIDATES_PER_HIT = 8
"""Neighbours fetched per wanted hit before overlapping windows are merged away."""


class Searcher(Protocol):
    kind: str

    def __len__(self) -> int: ...

    def search(self, queries: NDArray[np.floating], k: int
               ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...


def make_searcher(vectors: Vectors, method: Method = "auto", *, save_index: bool = True
                  ) -> Searcher:
    """``exact`` numpy; ``ivf`` the saved or a new index; ``auto`` a saved current index if
    there is one, else exact up to :data:`EXACT_MAX_VECTORS`, else a new index."""
    from scanner.search.exact import ExactSearch

    if method == "auto" and vectors.source.exists():
        from scanner.search.index import IVFIndex, index_path

        try:
            saved = IVFIndex.load(index_path(vectors.source), vectors.source)
        except Exception:  # noqa: BLE001 - faiss missing or a damaged file: search without it
            saved = None
        if saved is not None and len(saved) == len(vectors):
            return saved
    if method == "exact" or (method == "auto" and len(vectors) <= EXACT_MAX_VECTORS):
        return ExactSearch(vectors.vectors)
    from scanner.search.index import load_or_build

    return load_or_build(vectors.vectors, vectors.source, save=save_index)


def _overlaps(t0: float, t1: float, spans: list[tuple[float, float]]) -> bool:
    return any(t0 < b and t1 > a for a, b in spans)


MAX_PROBE_PATCHES = 16
"""A long query proposes candidates from at most this many of its patches (all are scored)."""


def search(vectors: Vectors, queries: Sequence[Query], *, top: int = 50,
           searcher: Searcher | None = None) -> list[dict[str, Any]]:
    """The ``top`` hits of each query, best first, as hits-table rows.

    A query of P patches matches a run of P consecutive windows of one file, scored by the
    mean cosine of patch i with window i (a missing window, past the file's end, counts 0):
    the searcher proposes runs from each patch's nearest windows, and every run is scored
    exactly. Overlapping runs of one file count once (the best of them), and an event
    query's own stretch of its file is left out.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    searcher = searcher or make_searcher(vectors)
    rows: list[dict[str, Any]] = []
    n = len(vectors)
    if n == 0:
        return rows
    for query in queries:
        k = min(n, top * CANDIDATES_PER_HIT + 16)
        while True:
            found = _pick(vectors, query, *_all_candidates(vectors, query, searcher, k), top)
            if len(found) >= top or k >= n:
                break
            k = min(n, k * 4)
        rows += found
    return rows


def _all_candidates(vectors: Vectors, query: Query, searcher: Searcher, k: int
                    ) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """Candidate runs of every phase of the query, best first: (scores, first rows, lengths)."""
    parts = [(*_candidates(vectors, q, searcher, k), len(q))
             for q in (query.vectors, *query.phases)]
    scores = np.concatenate([p[0] for p in parts])
    firsts = np.concatenate([p[1] for p in parts])
    lengths = np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in parts])
    order = np.argsort(-scores, kind="stable")
    return scores[order], firsts[order], lengths[order]


def _candidates(vectors: Vectors, patches: NDArray[np.float32], searcher: Searcher, k: int
                ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Runs proposed by the searcher, scored exactly: (scores, first rows), best first."""
    from scanner.search.exact import normalise

    q = normalise(patches)
    n_patches = len(q)
    probe = np.unique(np.linspace(0, n_patches - 1, min(n_patches, MAX_PROBE_PATCHES)).astype(int))
    _, idx = searcher.search(q[probe], k)
    first = np.unique((idx - probe[:, None])[(idx >= 0) & (idx - probe[:, None] >= 0)])
    if first.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    n = len(vectors)
    offsets = np.arange(n_patches)
    rows = first[:, None] + offsets[None, :]  # [candidates, patches]
    inside = rows < n
    rows_c = np.minimum(rows, n - 1)
    inside &= vectors.paths[rows_c] == vectors.paths[first][:, None]
    x = normalise(vectors.vectors[rows_c.reshape(-1)]).reshape(*rows_c.shape, -1)
    sims = np.einsum("cpd,pd->cp", x, q) * inside
    scores = sims.mean(axis=1).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return scores[order], first[order]


def _run_end(vectors: Vectors, first: int, n_patches: int) -> float:
    last = min(first + n_patches - 1, len(vectors) - 1)
    while last > first and vectors.paths[last] != vectors.paths[first]:
        last -= 1
    return float(vectors.ends_s[last])


def _pick(vectors: Vectors, query: Query, scores: NDArray[np.float32], firsts: NDArray[np.int64],
          lengths: NDArray[np.int64], top: int) -> list[dict[str, Any]]:
    kept: dict[str, list[tuple[float, float]]] = {}
    out: list[dict[str, Any]] = []
    for s, i, n_patches in zip(scores, firsts, lengths, strict=True):
        path, t0 = str(vectors.paths[i]), float(vectors.starts_s[i])
        t1 = _run_end(vectors, int(i), int(n_patches))
        if query.path == path and t0 < query.end_s and t1 > query.start_s:
            continue
        spans = kept.setdefault(path, [])
        if _overlaps(t0, t1, spans):
            continue
        spans.append((t0, t1))
        out.append({"path": path, "label": query.label, "start_s": t0, "end_s": t1,
                    "peak_confidence": float(s), "mean_confidence": float(s),
                    "query": query.name, "rank": len(out) + 1})
        if len(out) == top:
            break
    return out


def hits_schema(meta: dict[str, Any]) -> Any:
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("label", pa.string()), ("start_s", pa.float64()),
                      ("end_s", pa.float64()), ("peak_confidence", pa.float64()),
                      ("mean_confidence", pa.float64()), ("query", pa.string()),
                      ("rank", pa.int64())],
                     metadata={b"scanner": json.dumps(meta, default=str).encode()})


def write_hits(rows: list[dict[str, Any]], out: Path, *, vectors: Vectors, method: str,
               queries: Sequence[Query]) -> Path:
    """Writes the hits (Parquet, or CSV by suffix with a ``.meta.json``), atomically."""
    import pyarrow as pa

    from scanner import __version__
    from scanner.output.writer import FORMATS, format_for, sidecar_path

    meta = {"tool": "scanner", "tool_version": __version__, "kind": "hits",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "backbones": [vectors.identity], "vectors": str(vectors.source), "method": method,
            "queries": [q.name for q in queries]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = FORMATS.get(format_for(out))()
    table = pa.Table.from_pylist(rows, schema=hits_schema(meta))
    tmp = out.with_name(f".{out.name}.tmp")
    fmt.write(table, tmp)
    if not fmt.keeps_metadata:
        sidecar_path(out).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    return out
