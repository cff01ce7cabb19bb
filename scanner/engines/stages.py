"""Scheduling helpers every engine uses, written once: part planning with overlap, the
sample-rate check, batching, the model call and stitching a long file's parts back together.

An engine decides *where* and *when* these run (worker processes and a thread here, Ray
tasks and actors there); what they compute is the same, so both engines give the same
:class:`~scanner.records.FileResult` for a file.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.audio.decode import plan_tasks
from scanner.backbones.base import Backbone
from scanner.errors import ConfigError
from scanner.records import (
    AudioFile,
    ClipInfo,
    DecodedClip,
    DecodeFailure,
    DecodeTask,
    Embedding,
    FileResult,
)

log = logging.getLogger(__name__)

MAX_BATCH_FILES = 256
"""Most clips in one model batch, however short they are."""
MIN_BATCH_S = 15.0
"""While the models are idle, a batch goes as soon as it holds this much audio."""
JOIN_MARGIN_S = 0.02
"""Added to a part's overlap: one STFT frame, so the patches before a join read real audio."""

Item = DecodedClip | DecodeFailure
Transform = Callable[[NDArray[np.float32]], NDArray[np.float32]]
Embedded = list[tuple[Item, dict[str, Embedding] | None]]


def sample_rate_of(backbones: Sequence[Backbone]) -> int:
    """The one sample rate every backbone wants.

    Raises:
        ConfigError: The backbones want different rates (they cannot share one decode).
    """
    if not backbones:
        raise ConfigError("at least one backbone is needed")
    rates = {b.sample_rate_hz for b in backbones}
    if len(rates) != 1:
        raise ConfigError(f"backbones want different sample rates {sorted(rates)}")
    return rates.pop()


def overlap_for(backbones: Sequence[Backbone]) -> float:
    """How far each part of a long file is decoded past its end, so that the patches that
    start before the join read real audio (YAMNet: 0.48 s plus one STFT frame)."""
    return max(b.window_s - b.hop_s for b in backbones) + JOIN_MARGIN_S


def with_overlap(task: DecodeTask, overlap_s: float) -> DecodeTask:
    """Extends every part but a file's last by ``overlap_s`` seconds."""
    if task.n_parts > 1 and task.part < task.n_parts - 1 and task.max_s is not None:
        return replace(task, max_s=task.max_s + overlap_s)
    return task


def plan_parts(files: Iterable[AudioFile], *, overlap_s: float, part_s: float,
               max_duration_s: float | None = None) -> Iterator[DecodeTask]:
    """Decode tasks for ``files``: long files in parts of ``part_s``, each part but the last
    extended by ``overlap_s`` (:func:`overlap_for` the backbones; see :class:`Stitcher`)."""
    for task in plan_tasks(files, part_s=part_s, max_duration_s=max_duration_s):
        yield with_overlap(task, overlap_s)


def needs_scores(heads: Iterable[object]) -> bool:
    """Whether any head reads the backbone's own class scores (else they are dropped early)."""
    return any(getattr(h, "features", "embeddings") == "scores" for h in heads)


class Batcher:
    """Gathers decoded items into model batches of about ``batch_s`` seconds of audio.

    Args:
        sample_rate_hz: Rate of the decoded waveforms.
        batch_s: A batch is :attr:`full` at this much audio...
        max_files: ...or at this many items.
        min_batch_s: A batch is :attr:`early` (worth sending to an idle model) at this much.
    """

    def __init__(self, sample_rate_hz: int, batch_s: float, *, max_files: int = MAX_BATCH_FILES,
                 min_batch_s: float = MIN_BATCH_S) -> None:
        self.full_samples = batch_s * sample_rate_hz
        self.early_samples = min(batch_s, min_batch_s) * sample_rate_hz
        self.max_files = max_files
        self.items: list[Item] = []
        self.samples = 0

    def add(self, item: Item) -> None:
        self.items.append(item)
        if isinstance(item, DecodedClip):
            self.samples += len(item.waveform)

    @property
    def full(self) -> bool:
        return self.samples >= self.full_samples or len(self.items) >= self.max_files

    @property
    def early(self) -> bool:
        return self.samples >= self.early_samples

    def take(self) -> list[Item]:
        """The batch gathered so far; the batcher starts empty again."""
        items, self.items, self.samples = self.items, [], 0
        return items


def embed_items(items: Sequence[Item], backbones: Sequence[Backbone],
                transform: Transform | None = None) -> Embedded:
    """Embeds a batch of decoded clips with every backbone (failures pass through with None).

    The one place model calls are made. A model error on a batch is retried one clip at a
    time, so it costs only the clip that causes it: that clip becomes a ``model`` failure (an
    error row for its file), and the scan goes on. Both engines behave so.
    """
    try:
        return _embed(items, backbones, transform)
    except Exception as e:  # noqa: BLE001 - one file's failure must not cost the others
        clips = [item for item in items if isinstance(item, DecodedClip) and len(item.waveform)]
        if len(clips) > 1:
            log.warning("a model batch of %d clips failed (%s: %s); retrying them one by one",
                        len(clips), type(e).__name__, e)
            return [pair for item in items for pair in embed_items([item], backbones, transform)]
        return [(_model_failure(item, e), None) if isinstance(item, DecodedClip) else (item, None)
                for item in items]


def _model_failure(item: DecodedClip, error: Exception) -> DecodeFailure:
    return DecodeFailure(task=item.task, kind="model", decoder=item.decoder,
                         message=f"embedding failed: {type(error).__name__}: {error}",
                         seconds_taken=item.seconds_taken, traceback=traceback.format_exc())


def _embed(items: Sequence[Item], backbones: Sequence[Backbone],
           transform: Transform | None) -> Embedded:
    # A part planned past a file's real end (an estimated duration) decodes to no samples:
    # it contributes no patches rather than a padded silent one.
    clips = [item for item in items if isinstance(item, DecodedClip) and len(item.waveform)]
    waves = [transform(c.waveform) if transform else c.waveform for c in clips]
    per_backbone = {b.name: b.embed_batch(waves) if waves else [] for b in backbones}
    out: Embedded = []
    index = 0
    for item in items:
        embs = None
        if isinstance(item, DecodedClip):
            if len(item.waveform):
                embs = {name: results[index] for name, results in per_backbone.items()}
                index += 1
            else:
                embs = {b.name: _empty(b) for b in backbones}
        out.append((item, embs))
    return out


def _empty(backbone: Backbone) -> Embedding:
    return Embedding(np.zeros((0, backbone.embedding_dim), np.float32), np.zeros(0),
                     backbone.window_s, None)


# -- stitching a long file's parts ----------------------------------------------------------

PATCH_SLACK = 4
"""Patches a part may have beyond the first part's count (rounding at the joins)."""


class PatchBuffer:
    """A long file's patches, part after part, in one buffer sized from its first part.

    The first part's patch count times the number of parts (plus :data:`PATCH_SLACK` a part)
    is all a file of equal parts can have, so the buffer is allocated once and the file's
    embeddings are held exactly once: no list of parts to concatenate at the end (a second
    copy, 31 MB per hour of YAMNet patches), and each part is let go as soon as it is copied.
    A file whose duration was an estimate may have fewer patches: what is left over is
    trimmed off (one copy) when it is more than an eighth; more patches grow the buffer.

    Args:
        n_parts: The file's number of parts (:attr:`~scanner.records.DecodeTask.n_parts`).
    """

    def __init__(self, n_parts: int) -> None:
        self.n_parts = n_parts
        self.n = 0
        self.window_s = 0.0
        self.embeddings: NDArray[np.float32] | None = None
        self.starts_s: NDArray[np.float64] | None = None
        self.scores: NDArray[np.float32] | None = None
        self._empty: Embedding | None = None

    def add(self, emb: Embedding, part: int) -> None:
        """Appends part ``part``'s patches (already in file time)."""
        k = emb.n_patches
        if k == 0:  # a part past the real end of a file whose duration was estimated
            self._empty = self._empty or emb
            return
        if self.embeddings is None:
            capacity = (k + PATCH_SLACK) * max(1, self.n_parts - part)
            self.window_s = emb.window_s
            self.embeddings = np.empty((capacity, emb.embeddings.shape[1]), emb.embeddings.dtype)
            self.starts_s = np.empty(capacity, emb.starts_s.dtype)
            self.scores = None if emb.scores is None else np.empty(
                (capacity, emb.scores.shape[1]), emb.scores.dtype)
        elif self.n + k > len(self.starts_s):
            self._resize(max(self.n + k, len(self.starts_s) * 5 // 4))
        self.embeddings[self.n:self.n + k] = emb.embeddings
        self.starts_s[self.n:self.n + k] = emb.starts_s
        if self.scores is not None:
            self.scores[self.n:self.n + k] = emb.scores
        self.n += k

    def _resize(self, capacity: int) -> None:
        def resized(a: NDArray[Any] | None) -> NDArray[Any] | None:
            if a is None:
                return None
            out = np.empty((capacity, *a.shape[1:]), a.dtype)
            out[:self.n] = a[:self.n]
            return out

        self.embeddings = resized(self.embeddings)
        self.starts_s = resized(self.starts_s)
        self.scores = resized(self.scores)

    def take(self) -> Embedding:
        """The file's patches (views of the buffer); the buffer forgets them."""
        if self.embeddings is None or self.starts_s is None:
            if self._empty is None:
                raise ValueError("no part was added")
            return self._empty
        if len(self.starts_s) - self.n > len(self.starts_s) // 8:
            self._resize(self.n)
        n = self.n
        emb = Embedding(self.embeddings[:n], self.starts_s[:n], self.window_s,
                        None if self.scores is None else self.scores[:n])
        self.embeddings = self.starts_s = self.scores = None
        return emb


def _shift(emb: Embedding, offset_s: float) -> Embedding:
    if offset_s == 0:
        return emb
    return Embedding(emb.embeddings, emb.starts_s + offset_s, emb.window_s, emb.scores)


def _until(emb: Embedding, end_s: float) -> Embedding:
    keep = emb.starts_s < end_s - 1e-6
    if keep.all():
        return emb
    return Embedding(emb.embeddings[keep], emb.starts_s[keep], emb.window_s,
                     None if emb.scores is None else emb.scores[keep])


class Stitcher:
    """Collects the parts of each file and emits one FileResult once its last part is in.

    Parts must arrive in order, a file's parts consecutively (as :func:`plan_parts` makes them).
    A long file's patches go into one :class:`PatchBuffer` per backbone as its parts come,
    so they are held once, never as a list of parts plus their concatenation.

    Args:
        overlap_s: How far parts were decoded past their end (see :func:`with_overlap`);
            patches starting in that overlap belong to the next part and are dropped.
        keep_scores: Keep the backbones' own class scores (only heads that read them need them).
    """

    def __init__(self, overlap_s: float = 0.0, *, keep_scores: bool = True) -> None:
        self.overlap_s = overlap_s
        self.keep_scores = keep_scores
        self._parts: dict[str, PatchBuffer | Embedding] = {}
        self._clip: DecodedClip | None = None
        self._failed: AudioFile | None = None

    def add(self, item: Item, embeddings: Mapping[str, Embedding] | None) -> FileResult | None:
        task = item.task
        if self._failed is not None and self._failed == task.file:
            return None  # a later part of a file that already failed
        self._failed = None
        if isinstance(item, DecodeFailure):
            self._parts, self._clip = {}, None
            if task.n_parts > 1 and task.part < task.n_parts - 1:
                self._failed = task.file
            return FileResult(task.file, failure=item)
        last = task.part == task.n_parts - 1
        if task.part == 0:
            self._parts, self._clip = {}, item
        for name, emb in embeddings.items():
            if not last and task.max_s is not None:
                emb = _until(emb, task.max_s - self.overlap_s)
            if not self.keep_scores and emb.scores is not None:
                # Held until a long file's last part: a third less memory per hour of audio.
                emb = Embedding(emb.embeddings, emb.starts_s, emb.window_s, None)
            emb = _shift(emb, item.offset_s)
            if task.n_parts == 1:
                self._parts[name] = emb  # a whole file as it is
            else:
                self._parts.setdefault(name, PatchBuffer(task.n_parts)).add(emb, task.part)
            del emb
        if not last:
            return None
        first = self._clip or item
        noted = first if first.note_kind else item
        info = ClipInfo(first.orig_sample_rate_hz, first.channels, first.duration_s,
                        first.decoder, first.seconds_taken, item.truncated_to_s,
                        noted.note_kind, noted.note)
        parts, self._parts, self._clip = self._parts, {}, None
        merged = {name: part.take() if isinstance(part, PatchBuffer) else part
                  for name, part in parts.items()}
        return FileResult(task.file, info, merged)

    def add_all(self, embedded: Embedded) -> Iterator[FileResult]:
        """:meth:`add` for each of a batch's items; yields the files they complete."""
        for item, embs in embedded:
            result = self.add(item, embs)
            if result is not None:
                yield result
