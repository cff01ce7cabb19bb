"""Pooled embeddings of labelled files, per view, through the cache.

Only the files the cache does not hold are decoded and embedded (by
:func:`scanner.engines.local.embed_files`, the stream ``scan`` uses); their pooled vectors are
stored for the next run. A file that cannot be decoded is reported, never replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.heads.base import pool
from scanner.output.cache import EmbeddingCache, file_digest
from scanner.records import AudioFile
from training.augment import ORIGINAL

log = logging.getLogger(__name__)

Transform = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass(frozen=True)
class Features:
    """Pooled vectors of a list of files, in that order.

    Attributes:
        x: ``[n, dim]`` float32; rows of failed files are zeros.
        ok: ``[n]`` bool, False where the file could not be decoded or embedded.
        failures: Path -> reason, for the failed files.
        embedded: How many files were embedded now (the rest came from the cache).
    """

    x: NDArray[np.float32]
    ok: NDArray[np.bool_]
    failures: dict[str, str] = field(default_factory=dict)
    embedded: int = 0


def digests(files: Sequence[AudioFile]) -> list[str]:
    """Content digest of each file (see :func:`scanner.output.cache.file_digest`)."""
    return [file_digest(f.path) for f in files]


def pooled_features(files: Sequence[AudioFile], backbone: Backbone, *,
                    cache: EmbeddingCache | None, view: str = ORIGINAL,
                    transform: Transform | None = None, pooling: str = "mean",
                    file_digests: Sequence[str] | None = None, workers: int | None = None,
                    progress: bool = False) -> Features:
    """Pooled ``[dim]`` embeddings of ``files`` for one view, embedding only cache misses.

    Args:
        files: Files to embed.
        backbone: The loaded model.
        cache: Where pooled vectors are kept between runs (None: embed everything).
        view: Name of the view (``original`` or ``transform.name``), part of the cache key.
        transform: Applied to each decoded 16 kHz waveform before embedding.
        pooling: How patches are pooled.
        file_digests: Precomputed content digests of ``files`` (computed when None).
        workers: Decode processes for :func:`scanner.engines.local.embed_files`.
        progress: Show a progress bar over the files being embedded.
    """
    if (transform is None) != (view == ORIGINAL):
        raise ValueError(f"view {view!r} and transform {transform!r} do not match")
    keys = list(file_digests) if file_digests is not None else digests(files)
    dim = backbone.embedding_dim
    x = np.zeros((len(files), dim), dtype=np.float32)
    ok = np.zeros(len(files), dtype=bool)
    todo: list[int] = []
    for i, key in enumerate(keys):
        vec = cache.get(key, view) if cache is not None else None
        if vec is not None and vec.shape == (dim,):
            x[i], ok[i] = vec, True
        else:
            todo.append(i)
    failures: dict[str, str] = {}
    if todo:
        log.info("embedding %d of %d files with %s (view %s)", len(todo), len(files),
                 backbone.name, view)
        _embed_missing(files, keys, todo, backbone, cache, view, transform, pooling,
                       workers, progress, x, ok, failures)
    else:
        log.info("all %d files (view %s) came from the cache", len(files), view)
    return Features(x, ok, failures, embedded=len(todo))


def _embed_missing(files: Sequence[AudioFile], keys: Sequence[str], todo: list[int],
                   backbone: Backbone, cache: EmbeddingCache | None, view: str,
                   transform: Transform | None, pooling: str, workers: int | None,
                   progress: bool, x: NDArray[np.float32], ok: NDArray[np.bool_],
                   failures: dict[str, str]) -> None:
    from tqdm.auto import tqdm

    from scanner.engines.local import embed_files

    index = {files[i].path: i for i in todo}
    stream = embed_files([files[i] for i in todo], [backbone], workers=workers,
                         transform=transform)
    with tqdm(total=len(todo), desc=f"embed {view}", unit="file", disable=not progress,
              leave=False) as bar:
        for result in stream:
            i = index[result.file.path]
            bar.update(1)
            if not result.ok:
                failures[str(result.file.path)] = f"{result.failure.kind}: {result.failure.message}"
                continue
            emb = result.embeddings[backbone.name]
            if emb.n_patches == 0:
                failures[str(result.file.path)] = "empty: no patches"
                continue
            vec = pool(emb.embeddings, pooling)  # type: ignore[arg-type]
            x[i], ok[i] = vec, True
            if cache is not None:
                cache.put(keys[i], view, vec, n_patches=emb.n_patches)
    for path in failures:
        log.warning("skipping %s: %s", path, failures[path])
