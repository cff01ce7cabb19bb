"""Decode files in parallel and embed them in batches: the stream that ``scan`` and ``train`` share.

Decoded clips from the worker pool are gathered into batches of about ``batch_s`` seconds
of audio, each batch goes through every backbone's ``embed_batch`` (few, large model
calls), and the parts of a long file are stitched back together, so the consumer sees one
:class:`FileResult` per file, in discovery order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from scanner.audio.decode import plan_tasks
from scanner.audio.pool import DecodePool
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask, Embedding

log = logging.getLogger(__name__)

IN_FLIGHT = 32
"""Decode tasks queued ahead of the models (each at most one part of a long file)."""

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
    note_kind: str | None = None  # "recovered"/"partial" from decoding (DecodedClip.note_kind)
    note: str | None = None


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
        noted = first if first.note_kind else item
        info = ClipInfo(first.orig_sample_rate_hz, first.channels, first.duration_s,
                        first.decoder, first.seconds_taken, item.truncated_to_s,
                        noted.note_kind, noted.note)
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
                decode_timeout_s: float | None = None, in_flight: int = IN_FLIGHT,
                transform: Transform | None = None,
                keep_scores: bool = True, min_batch_s: float = 15.0,
                pool: DecodePool | None = None) -> Iterator[FileResult]:
    """Yields one FileResult per file, in order, embedding with every backbone.

    Args:
        files: Files to read (see :func:`scanner.audio.discover.discover`).
        backbones: Models to run; each decoded clip is decoded once and fed to all.
        workers: Decode processes (None: one per core; 0: decode in this process).
        batch_s: Seconds of audio gathered before the models run while they are busy.
        max_batch_files: Most clips per batch, however short they are.
        part_s: Long files are decoded and embedded in parts of this length.
        max_duration_s: Decode at most this much of each file.
        decode_timeout_s: A file whose decoding takes longer becomes a ``timeout`` failure.
        in_flight: Decode tasks queued ahead of the models: enough to fill the next batch
            while the current one runs, few enough to bound memory (parts are <= part_s).
        transform: Applied to each decoded 16 kHz waveform before embedding (augmentation).
        keep_scores: Keep the backbones' own class scores (only heads that read them need them).
        min_batch_s: While the models are idle, a batch goes as soon as it holds this much
            audio instead of waiting for ``batch_s`` (the first batch, or decoding behind).
        pool: A decode pool already started (see :meth:`DecodePool.start`); it is closed
            when the stream ends. None: one is made from ``workers``, ``decode_timeout_s``
            and ``in_flight``.
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
    # Batches go out early while the model has nothing to do, full-sized while it is busy.
    early = min_batch_s * sample_rate_hz

    def finished(done: list[tuple[DecodedClip | DecodeFailure, dict[str, Embedding] | None]]
                 ) -> Iterator[FileResult]:
        for item, embs in done:
            result = stitcher.add(item, embs)
            if result is not None:
                yield result

    if pool is None:
        pool = DecodePool(workers=workers, sample_rate_hz=sample_rate_hz,
                          timeout_s=decode_timeout_s, in_flight=in_flight)
    elif pool.sample_rate_hz != sample_rate_hz:
        pool.close()
        raise ValueError(f"the decode pool makes {pool.sample_rate_hz} Hz audio, the backbones "
                         f"want {sample_rate_hz} Hz")
    with pool, ModelStage(backbones, transform) as stage:
        for item in pool.imap(tasks):
            batch.append(item)
            if isinstance(item, DecodedClip):
                samples += len(item.waveform)
            if samples >= batch_s * sample_rate_hz or len(batch) >= max_batch_files \
                    or (samples >= early and stage.idle):
                stage.submit(batch)
                batch, samples = [], 0
                while stage.queued > stage.threads:  # bounds the audio held in batches
                    yield from finished(stage.next())
            while stage.ready:
                yield from finished(stage.next())
        if batch:
            stage.submit(batch)
        while stage.queued:
            yield from finished(stage.next())


class ModelStage:
    """Runs :func:`embed_items` on batches in background threads, results in batch order.

    While the models embed one batch, the caller gathers the next from the decode pool and
    turns the last one's results into rows, so the models never wait for that work. Up to
    the backbones' ``concurrent_batches`` batches run at once (with YAMNet's interpreter
    copies, the next batch's calls start while the last calls of one still run).
    """

    def __init__(self, backbones: Sequence[Backbone], transform: Transform | None = None
                 ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.backbones = list(backbones)
        self.transform = transform
        self.threads = max(1, min(b.concurrent_batches for b in self.backbones))
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="embed")
        self._queue: deque[Future] = deque()

    def submit(self, batch: Sequence[DecodedClip | DecodeFailure]) -> None:
        self._queue.append(self._executor.submit(embed_items, list(batch), self.backbones,
                                                 self.transform))

    @property
    def queued(self) -> int:
        """Batches submitted and not yet taken with :meth:`next`."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Whether a batch submitted now would start at once."""
        return sum(not f.done() for f in self._queue) < self.threads

    @property
    def ready(self) -> bool:
        """Whether :meth:`next` would return without waiting."""
        return bool(self._queue) and self._queue[0].done()

    def next(self) -> list[tuple[DecodedClip | DecodeFailure, dict[str, Embedding] | None]]:
        """The oldest batch's results (waits for them; re-raises a model error)."""
        return self._queue.popleft().result()

    def close(self) -> None:
        """Drops batches not yet started and waits for the running ones (a model that is not
        thread-safe must be free again when this returns)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._queue.clear()

    def __enter__(self) -> ModelStage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
