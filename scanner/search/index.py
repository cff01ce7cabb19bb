"""An approximate index for large vector sets: faiss IVF with float16 storage, kept beside the vectors.

Chosen by measurement (docs/review.md): on the shared 2-core development machine,
building usearch's HNSW (float16) over 100,000 random 1024-d vectors took 230 s, faiss IVF
(float16 scalar quantiser, 316 lists) 3.6 s, with the same query time (~1 ms) and the
same top hit for all 20 queries. The
index is built once and saved as ``.<vectors>.faiss`` with a JSON note of the vector
table's size and mtime, so a later search over the same table loads it instead.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ConfigError, ScannerError
from scanner.search.exact import normalise

log = logging.getLogger(__name__)

TRAIN_PER_LIST = 40
"""Training vectors per inverted list (faiss warns below 39); k-means costs
``lists x TRAIN_PER_LIST x lists x dim`` per iteration, so lists grow as sqrt(n)."""
PROBE_FRACTION = 1 / 32
"""Share of the lists a query visits (each holds about sqrt(n) vectors)."""
MIN_PROBES = 8
INDEX_FORMAT = 1


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise ConfigError("searching this many vectors needs faiss: pip install "
                          "'cry-scream-scanner[search]' (or faiss-cpu), or pass --method exact"
                          ) from e
    return faiss


def index_path(vectors: Path) -> Path:
    """``r.embeddings.parquet`` -> ``.r.embeddings.parquet.faiss`` (hidden, beside it)."""
    return vectors.with_name(f".{vectors.name}.faiss")


def _note_path(index: Path) -> Path:
    return index.with_name(index.name + ".json")


def _source_stamp(vectors: Path) -> dict[str, Any]:
    st = vectors.stat()
    return {"format": INDEX_FORMAT, "tool": "scanner", "source": vectors.name,
            "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class IVFIndex:
    """faiss ``IndexIVFScalarQuantizer`` (fp16) over unit vectors: inner product = cosine.

    Args:
        index: A trained, filled faiss index.
        nprobe: Lists visited per query (None: :data:`PROBE_FRACTION` of them).
    """

    kind = "ivf"

    def __init__(self, index: Any, nprobe: int | None = None) -> None:
        self.index = index
        nlist = index.nlist
        self.index.nprobe = nprobe or min(nlist, max(MIN_PROBES, math.ceil(nlist * PROBE_FRACTION)))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: NDArray[np.floating], *, nlist: int | None = None, seed: int = 0
              ) -> IVFIndex:
        """Trains the coarse quantiser on a seeded sample and adds every vector."""
        faiss = _faiss()
        n, dim = vectors.shape
        nlist = nlist or max(1, min(65_536, int(math.sqrt(n)), n // TRAIN_PER_LIST))
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(quantiser, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, nlist * TRAIN_PER_LIST * 2), replace=False))
        index.train(normalise(vectors[sample]))
        step = 262_144
        for i in range(0, n, step):
            index.add(normalise(vectors[i:i + step]))
        index.quantizer_trains_alone = 0
        ivf = cls(index)
        ivf._quantiser = quantiser  # the Python wrapper must outlive the index that uses it
        log.info("built an IVF index: %d vectors, %d lists, %d probed", n, nlist, ivf.index.nprobe)
        return ivf

    def search(self, queries: NDArray[np.floating], k: int
               ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Approximate top ``k`` by cosine of each ``[q, dim]`` query: (cosines, rows)."""
        k = min(k, len(self))
        scores, rows = self.index.search(normalise(np.atleast_2d(queries)), k)
        keep = rows >= 0  # fewer than k found in the probed lists
        if not keep.all():
            scores = np.where(keep, scores, -np.inf)
        return scores.astype(np.float32), rows.astype(np.int64)

    def save(self, path: Path, vectors: Path) -> None:
        """Writes the index (temporary name, then rename) with a note tying it to ``vectors``."""
        faiss = _faiss()
        note = _note_path(path)
        if path.exists() and not note.exists():
            raise ScannerError(f"{path} exists and was not written by scanner; not overwriting it")
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        note.write_text(json.dumps({**_source_stamp(vectors), "ntotal": len(self)}) + "\n")

    @classmethod
    def load(cls, path: Path, vectors: Path) -> IVFIndex | None:
        """The saved index of ``vectors``, or None when there is none or it is stale."""
        note = _note_path(path)
        if not (path.is_file() and note.is_file()):
            return None
        try:
            stamp = json.loads(note.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        stamp.pop("ntotal", None)
        if stamp != _source_stamp(vectors):
            log.info("%s is older than %s: rebuilding it", path, vectors)
            return None
        return cls(_faiss().read_index(str(path)))


def load_or_build(vectors: NDArray[np.floating], source: Path, *, save: bool = True) -> IVFIndex:
    """The saved index of the table ``source`` if it is current, else a new one (saved)."""
    path = index_path(source)
    index = IVFIndex.load(path, source)
    if index is not None and len(index) == len(vectors):
        log.info("using the saved index %s", path)
        return index
    index = IVFIndex.build(vectors)
    if save:
        try:
            index.save(path, source)
        except OSError as e:
            log.warning("could not save the index beside %s: %s", source, e)
    return index
