"""Search by example: the windows nearest (cosine) to query clips or to events, from exported vectors.

``run_search`` is the library call behind ``scanner search``: read ``r.embeddings.parquet``,
make query vectors (a clip embedded with the same backbone, checked against the recorded
identity; or an event's own stored vectors), search exactly or with an index, write a hits
table that ``scanner review`` and ``scanner export`` read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.search.hits import EXACT_MAX_VECTORS, Method, make_searcher, search, write_hits
from scanner.search.queries import Query, clip_queries, event_queries


@dataclass(frozen=True)
class SearchResult:
    """What :func:`run_search` did."""

    out: Path
    hits: int
    queries: int
    vectors: int
    method: str


def run_search(embeddings: str | os.PathLike[str], out: str | os.PathLike[str], *,
               like: list[str | os.PathLike[str]] | tuple = (), events: str | None = None,
               top: int = 50, method: Method = "auto", model: str | None = None,
               label: str | None = None, backbone: Any = None) -> SearchResult:
    """Searches ``embeddings`` for the ``top`` windows nearest to each query; writes ``out``.

    Args:
        embeddings: A vector table from ``scan --embeddings``.
        out: The hits table (``.parquet`` or ``.csv``).
        like: Query clips, embedded with the vectors' backbone (``model``: where it loads from).
        events: An events (or hits) table whose rows are queries, from the stored vectors.
        top: Hits per query.
        method: ``exact``, ``ivf`` (faiss index, saved beside the vectors) or ``auto``.
        label: The hits' label for clip queries (events keep their own).
        backbone: An already loaded backbone for the clips (checked like a loaded one).

    Raises:
        ConfigError: No query, another backbone, or a bad events table.
    """
    from scanner.errors import ConfigError
    from scanner.events.export import read_table
    from scanner.output.vectors import read_vectors

    if not like and not events:
        raise ConfigError("give at least one query: --like CLIP or --events TABLE")
    vectors = read_vectors(Path(embeddings).expanduser())
    queries: list[Query] = clip_queries(list(like), vectors, backbone=backbone, model=model,
                                        label=label)
    if events:
        queries += event_queries(read_table(Path(events).expanduser()), vectors)
    if not queries:
        raise ConfigError("none of the queries could be made (see the warnings)")
    searcher = make_searcher(vectors, method)
    rows = search(vectors, queries, top=top, searcher=searcher)
    path = write_hits(rows, Path(out).expanduser(), vectors=vectors, method=searcher.kind,
                      queries=queries)
    return SearchResult(path, len(rows), len(queries), len(vectors), searcher.kind)


__all__ = ["EXACT_MAX_VECTORS", "Query", "SearchResult", "clip_queries", "event_queries",
           "make_searcher", "run_search", "search", "write_hits"]
