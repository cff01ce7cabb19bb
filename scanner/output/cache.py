"""On-disk cache of pooled embeddings, so retraining with other hyperparameters embeds nothing.

An entry is keyed by what decides its value: the file's content (a BLAKE2b digest of its
bytes, so renamed or copied files hit and edited files miss), the backbone's identity and
config, the pooling, and the view (``original`` or a transform name such as
``bandlimit4k``). Entries are small ``.npz`` files read with ``allow_pickle=False``::

    <cache_dir>/<backbone>-<identity hash>/identity.json
    <cache_dir>/<backbone>-<identity hash>/<digest[:2]>/<digest>.<view>.<pooling>.npz
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
ORIGINAL_VIEW = "original"
"""The view of a file as decoded, with no augmentation."""


def default_cache_dir() -> Path:
    """``<user cache dir>/scanner/embeddings`` (platformdirs)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("scanner")) / "embeddings"


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b (32-byte) hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _identity_tag(backbone: str, identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return f"{backbone}-{hashlib.blake2b(blob, digest_size=8).hexdigest()}"


class EmbeddingCache:
    """Pooled embeddings of one backbone (identity) and pooling, by file digest and view.

    Args:
        root: Cache folder (created on first write).
        backbone: Backbone name (readable part of the folder name).
        identity: Everything that makes the backbone's output what it is (its
            :attr:`~scanner.backbones.base.Backbone.identity` and :meth:`config`).
        pooling: ``mean`` or ``max``.
    """

    def __init__(self, root: str | os.PathLike[str], *, backbone: str, identity: dict[str, Any],
                 pooling: str = "mean") -> None:
        self.root = Path(root).expanduser()
        self.identity = dict(identity)
        self.pooling = pooling
        self.folder = self.root / _identity_tag(backbone, self.identity)
        self.hits = 0
        self.misses = 0
        self.writes = 0

    @classmethod
    def for_backbone(cls, root: str | os.PathLike[str] | None, backbone: Any, *,
                     pooling: str = "mean") -> EmbeddingCache:
        """The cache of ``backbone``'s pooled embeddings under ``root`` (None: the default).

        Shared by ``train`` and ``scan --cache``, so a scanned folder trains without
        embedding again.
        """
        identity = {**backbone.identity, "config": backbone.config()}
        if identity.get("sha256"):
            # The weights' checksum identifies the model; where the file lies does not matter.
            identity.pop("source", None)
        return cls(root if root is not None else default_cache_dir(), backbone=backbone.name,
                   identity=identity, pooling=pooling)

    def path(self, digest: str, view: str) -> Path:
        """Where the entry for a file digest and view lives."""
        return self.folder / digest[:2] / f"{digest}.{view}.{self.pooling}.npz"

    def get(self, digest: str, view: str) -> NDArray[np.float32] | None:
        """The cached ``[dim]`` vector, or None (a missing or unreadable entry is a miss)."""
        path = self.path(digest, view)
        try:
            with np.load(path, allow_pickle=False) as data:
                vector = np.asarray(data["pooled"], dtype=np.float32)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable cache entry %s: %s", path, e)
            self.misses += 1
            return None
        self.hits += 1
        return vector

    def put(self, digest: str, view: str, vector: NDArray[np.float32], *,
            n_patches: int | None = None) -> Path:
        """Stores a ``[dim]`` vector atomically (a temporary file renamed into place)."""
        path = self.path(digest, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        ident = self.folder / "identity.json"
        if not ident.exists():
            ident.write_text(json.dumps(self.identity, indent=2, sort_keys=True, default=str))
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, pooled=np.asarray(vector, dtype=np.float32),
                         n_patches=np.int64(-1 if n_patches is None else n_patches))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1
        return path
