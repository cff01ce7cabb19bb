"""Per-patch embeddings of labelled clips (and of generated soundscapes), cached on disk.

Detection heads train on windows, so they need every patch of a clip, not its mean. A
clip's patches are stored once per view (``original``, ``bandlimit4k``, ``lowrate``...)
with each patch's energy (for energy-aware positive selection), as ``.npz`` read with
``allow_pickle=False``::

    <cache_dir>/patches/<backbone>-<identity hash>/<digest[:2]>/<digest>.<view>.npz

Embeddings are kept as float16 (YAMNet's are in [0, ~6], so the rounding is far below the
differences a head learns) to keep hours of patches in memory.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.output.cache import EmbeddingCache, default_cache_dir, file_digest
from scanner.records import AudioFile, DecodedClip, DecodeTask

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
SILENCE_DB = -100.0
"""Energy given to a patch of digital silence."""
EMBED_BATCH_S = 600.0
"""Seconds of audio handed to the backbone per call of :meth:`Backbone.embed_batch`."""

Transform = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass(frozen=True)
class Patches:
    """Every patch of one waveform.

    Attributes:
        embeddings: ``[patches, dim]`` float16.
        energy_db: ``[patches]`` RMS level of each patch's samples, dBFS.
        hop_s, window_s: Patch hop and length (patch ``i`` starts at ``i * hop_s``).
    """

    embeddings: NDArray[np.float16]
    energy_db: NDArray[np.float32]
    hop_s: float
    window_s: float

    @property
    def n(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def starts_s(self) -> NDArray[np.float64]:
        return np.arange(self.n, dtype=np.float64) * self.hop_s


def patch_energy_db(waveform: NDArray[np.float32], n_patches: int, hop_s: float,
                    window_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> NDArray[np.float32]:
    """``[n_patches]`` RMS dBFS of the samples under each patch (zeros past the end)."""
    hop, win = int(round(hop_s * sample_rate_hz)), int(round(window_s * sample_rate_hz))
    sq = np.concatenate([[0.0], np.cumsum(np.asarray(waveform, np.float64) ** 2)])
    lo = np.minimum(np.arange(n_patches) * hop, len(waveform))
    hi = np.minimum(lo + win, len(waveform))
    mean_sq = (sq[hi] - sq[lo]) / win
    return np.where(mean_sq > 0, 10 * np.log10(np.maximum(mean_sq, 1e-20)),
                    SILENCE_DB).astype(np.float32)


def embed_waveforms(backbone: Backbone, waveforms: Sequence[NDArray[np.float32]], *,
                    batch_s: float = EMBED_BATCH_S) -> list[Patches]:
    """Patches of each waveform, embedded in calls of about ``batch_s`` seconds."""
    out: list[Patches] = []
    batch: list[NDArray[np.float32]] = []
    held = 0.0

    def flush() -> None:
        for wave, emb in zip(batch, backbone.embed_batch(batch), strict=True):
            n = emb.n_patches
            out.append(Patches(emb.embeddings.astype(np.float16),
                               patch_energy_db(wave, n, backbone.hop_s, backbone.window_s),
                               backbone.hop_s, backbone.window_s))
        batch.clear()

    for wave in waveforms:
        batch.append(np.asarray(wave, np.float32))
        held += len(wave) / SAMPLE_RATE_HZ
        if held >= batch_s:
            flush()
            held = 0.0
    if batch:
        flush()
    return out


class PatchCache:
    """Per-patch embeddings by file digest and view, for one backbone identity."""

    def __init__(self, root: str | os.PathLike[str] | None, backbone: Backbone) -> None:
        pooled = EmbeddingCache.for_backbone(root, backbone)
        base = Path(root).expanduser() if root is not None else default_cache_dir()
        self.folder = base / "patches" / pooled.folder.name
        self.hop_s, self.window_s = backbone.hop_s, backbone.window_s

    def path(self, digest: str, view: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.{view}.npz"

    def get(self, digest: str, view: str) -> Patches | None:
        try:
            with np.load(self.path(digest, view), allow_pickle=False) as data:
                return Patches(data["embeddings"].astype(np.float16),
                               data["energy_db"].astype(np.float32), self.hop_s, self.window_s)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable cache entry %s: %s", self.path(digest, view), e)
            return None

    def put(self, digest: str, view: str, patches: Patches) -> None:
        path = self.path(digest, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, embeddings=patches.embeddings, energy_db=patches.energy_db)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def decode_clip(file: AudioFile) -> NDArray[np.float32] | None:
    """The whole file as 16 kHz mono float32 (the scan's decoder), or None when unreadable."""
    from scanner.audio.decode import decode_task

    result = decode_task(DecodeTask(file), sample_rate_hz=SAMPLE_RATE_HZ)
    if not isinstance(result, DecodedClip):
        log.warning("skipping %s: %s", file.path, result.message)
        return None
    return result.waveform


def clip_patches(files: Sequence[AudioFile], backbone: Backbone, *, cache: PatchCache,
                 views: dict[str, Transform | None], progress: bool = False
                 ) -> dict[str, list[Patches | None]]:
    """Patches of every file for every view (``None`` for a transform-free view's name).

    Only cache misses are decoded and embedded. A file that cannot be decoded is ``None``
    in every view.
    """
    from tqdm.auto import tqdm

    keys = [file_digest(f.path) for f in files]
    out: dict[str, list[Patches | None]] = {v: [cache.get(k, v) for k in keys] for v in views}
    todo = [i for i in range(len(files)) if any(out[v][i] is None for v in views)]
    if not todo:
        return out
    log.info("embedding every patch of %d of %d files (%s)", len(todo), len(files),
             ", ".join(views))
    chunk = 64
    with tqdm(total=len(todo), desc="embed patches", unit="file", disable=not progress,
              leave=False) as bar:
        for start in range(0, len(todo), chunk):
            idx = todo[start:start + chunk]
            waves = {i: decode_clip(files[i]) for i in idx}
            good = [i for i in idx if waves[i] is not None]
            for view, transform in views.items():
                need = [i for i in good if out[view][i] is None]
                inputs = [waves[i] if transform is None else transform(waves[i]) for i in need]
                for i, p in zip(need, embed_waveforms(backbone, inputs), strict=True):
                    cache.put(keys[i], view, p)
                    out[view][i] = p
            bar.update(len(idx))
    return out
