"""Decode files in parallel and embed them in batches: the stream that ``scan`` and ``train`` share.

Decoded clips from the worker pool are gathered into batches of about ``batch_s`` seconds
of audio, each batch goes through every backbone's ``embed_batch`` (few, large model
calls), and the parts of a long file are stitched back together, so the consumer sees one
:class:`FileResult` per file, in discovery order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.decode import plan_tasks
from scanner.decode_pool import DecodePool
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask, Embedding

log = logging.getLogger(__name__)

Transform = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass(frozen=True)
class ClipInfo:
    """Facts about the original file, for the results table."""

    orig_sample_rate_hz: int
    channels: int
    duration_s: float
    decoder: str
    seconds_taken: float
    truncated_to_s: float | None = None


@dataclass(frozen=True)
class FileResult:
    """Everything the backbones made of one file, or why there is nothing.

    Attributes:
        embeddings: By backbone name, every patch of the file (``starts_s`` in file time).
    """

    file: AudioFile
    info: ClipInfo | None = None
    embeddings: Mapping[str, Embedding] = field(default_factory=dict)
    failure: DecodeFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _merge(parts: list[Embedding]) -> Embedding:
    parts = [p for p in parts if p.n_patches] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    scores = None if parts[0].scores is None else np.concatenate([p.scores for p in parts])
    return Embedding(np.concatenate([p.embeddings for p in parts]),
                     np.concatenate([p.starts_s for p in parts]), parts[0].window_s, scores)


def _shift(emb: Embedding, offset_s: float) -> Embedding:
    if offset_s == 0:
        return emb
    return Embedding(emb.embeddings, emb.starts_s + offset_s, emb.window_s, emb.scores)


def overlap_for(backbones: Sequence[Backbone]) -> float:
    """How far each part of a long file is decoded past its end, so that the patches that
    start before the join read real audio (YAMNet: 0.48 s plus one STFT frame)."""
    return max(b.window_s - b.hop_s for b in backbones) + 0.02


def with_overlap(task: DecodeTask, overlap_s: float) -> DecodeTask:
    """Extends every part but a file's last by ``overlap_s`` seconds."""
    if task.n_parts > 1 and task.part < task.n_parts - 1 and task.max_s is not None:
        return replace(task, max_s=task.max_s + overlap_s)
    return task


def _until(emb: Embedding, end_s: float) -> Embedding:
    keep = emb.starts_s < end_s - 1e-6
    if keep.all():
        return emb
    return Embedding(emb.embeddings[keep], emb.starts_s[keep], emb.window_s,
                     None if emb.scores is None else emb.scores[keep])


class Stitcher:
    """Collects the parts of each file and emits one FileResult once its last part is in.

    Args:
        overlap_s: How far parts were decoded past their end (see :func:`with_overlap`);
            patches starting in that overlap belong to the next part and are dropped.
    """

    def __init__(self, overlap_s: float = 0.0, *, keep_scores: bool = True) -> None:
        self.overlap_s = overlap_s
        self.keep_scores = keep_scores
        self._parts: dict[str, list[Embedding]] = {}
        self._clip: DecodedClip | None = None
        self._failed: AudioFile | None = None

    def add(self, item: DecodedClip | DecodeFailure,
            embeddings: Mapping[str, Embedding] | None) -> FileResult | None:
        task = item.task
        if self._failed is not None and self._failed == task.file:
            return None  # a later part of a file that already failed
        self._failed = None
        if isinstance(item, DecodeFailure):
            self._parts, self._clip = {}, None
            if task.n_parts > 1 and task.part < task.n_parts - 1:
                self._failed = task.file
            return FileResult(task.file, failure=item)
        if task.part == 0:
            self._parts = {name: [] for name in embeddings}
            self._clip = item
        last = task.part == task.n_parts - 1
        for name, emb in embeddings.items():
            if not last and task.max_s is not None:
                emb = _until(emb, task.max_s - self.overlap_s)
            if not self.keep_scores and emb.scores is not None:
                # Held until a long file's last part: a third less memory per hour of audio.
                emb = Embedding(emb.embeddings, emb.starts_s, emb.window_s, None)
            self._parts[name].append(_shift(emb, item.offset_s))
        if task.part < task.n_parts - 1:
            return None
        first = self._clip or item
        info = ClipInfo(first.orig_sample_rate_hz, first.channels, first.duration_s,
                        first.decoder, first.seconds_taken, item.truncated_to_s)
        merged = {name: _merge(parts) for name, parts in self._parts.items()}
        self._parts, self._clip = {}, None
        return FileResult(task.file, info, merged)


def embed_items(items: Sequence[DecodedClip | DecodeFailure], backbones: Sequence[Backbone],
                transform: Transform | None = None
                ) -> list[tuple[DecodedClip | DecodeFailure, dict[str, Embedding] | None]]:
    """Embeds a batch of decoded clips with every backbone (failures pass through with None).

    The one place model calls are made, shared by the local and the Ray engines.
    """
    # A part planned past a file's real end (an estimated duration) decodes to no samples:
    # it contributes no patches rather than a padded silent one.
    clips = [item for item in items if isinstance(item, DecodedClip) and len(item.waveform)]
    waves = [transform(c.waveform) if transform else c.waveform for c in clips]
    per_backbone = {b.name: b.embed_batch(waves) if waves else [] for b in backbones}
    out = []
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


def embed_files(files: Iterable[AudioFile], backbones: Sequence[Backbone], *,
                workers: int | None = None, batch_s: float = 60.0, max_batch_files: int = 256,
                part_s: float = 120.0, max_duration_s: float | None = None,
                decode_timeout_s: float | None = None, in_flight: int = 32,
                transform: Transform | None = None,
                keep_scores: bool = True) -> Iterator[FileResult]:
    """Yields one FileResult per file, in order, embedding with every backbone.

    Args:
        files: Files to read (see :func:`scanner.discover.discover`).
        backbones: Models to run; each decoded clip is decoded once and fed to all.
        workers: Decode processes (None: one per core; 0: decode in this process).
        batch_s: Seconds of audio gathered before the models run.
        max_batch_files: Most clips per batch, however short they are.
        part_s: Long files are decoded and embedded in parts of this length.
        max_duration_s: Decode at most this much of each file.
        decode_timeout_s: A file whose decoding takes longer becomes a ``timeout`` failure.
        in_flight: Decode tasks queued ahead of the models: enough to fill the next batch
            while the current one runs, few enough to bound memory (parts are <= part_s).
        transform: Applied to each decoded 16 kHz waveform before embedding (augmentation).
        keep_scores: Keep the backbones' own class scores (only heads that read them need them).
    """
    if not backbones:
        raise ValueError("embed_files needs at least one backbone")
    rates = {b.sample_rate_hz for b in backbones}
    if len(rates) != 1:
        raise ValueError(f"backbones want different sample rates {sorted(rates)}")
    sample_rate_hz = rates.pop()
    overlap_s = overlap_for(backbones)
    tasks = (with_overlap(t, overlap_s)
             for t in plan_tasks(files, part_s=part_s, max_duration_s=max_duration_s))
    stitcher = Stitcher(overlap_s, keep_scores=keep_scores)
    batch: list[DecodedClip | DecodeFailure] = []
    samples = 0

    def flush() -> Iterator[FileResult]:
        for item, embs in embed_items(batch, backbones, transform):
            result = stitcher.add(item, embs)
            if result is not None:
                yield result
        batch.clear()

    with DecodePool(workers=workers, sample_rate_hz=sample_rate_hz,
                    timeout_s=decode_timeout_s, in_flight=in_flight) as pool:
        for item in pool.imap(tasks):
            batch.append(item)
            if isinstance(item, DecodedClip):
                samples += len(item.waveform)
            if samples >= batch_s * sample_rate_hz or len(batch) >= max_batch_files:
                yield from flush()
                samples = 0
        yield from flush()
