"""The local engine: decode worker processes on this machine, the models in this process.

:func:`embed_files` is the stream ``scan`` and ``train`` share: decoded clips from the
worker pool are gathered into batches of about ``batch_s`` seconds of audio (:class:`Batcher`),
each batch goes through every backbone (:func:`embed_items`, in background threads so the
models never wait for the rows), and the parts of a long file are stitched back together
(:class:`Stitcher`), so the consumer sees one :class:`FileResult` per file, in discovery order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from scanner.audio.pool import DecodePool
from scanner.backbones.base import Backbone
from scanner.engines.stages import (
    MAX_BATCH_FILES,
    MIN_BATCH_S,
    Batcher,
    Embedded,
    Item,
    Stitcher,
    Transform,
    embed_items,
    overlap_for,
    plan_parts,
    sample_rate_of,
)
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask, FileResult

if TYPE_CHECKING:
    from scanner.classify import Classifier
    from scanner.config import ScanConfig

log = logging.getLogger(__name__)

Decode = Callable[[DecodeTask, int], DecodedClip | DecodeFailure]

IN_FLIGHT = 32
"""Decode tasks queued ahead of the models (each at most one part of a long file)."""


HEAP_MMAP_THRESHOLD = 4 << 20
"""Blocks this large or larger get their own mapping, returned to the system when freed."""


def steady_heap() -> None:
    """Fixes glibc's mmap threshold at :data:`HEAP_MMAP_THRESHOLD` in this process.

    By default glibc raises the threshold (up to 32 MiB) each time a mapped block is freed,
    so after the first few decoded parts (7.7 MB each) every later one comes from the heap,
    which then fragments around a long file's growing patch buffer: measured, 13 MiB of
    resident memory per hour of audio beyond the patches' own 29 MiB (4 h 8 kHz FLAC: the
    scanner's peak 472 -> 418 MiB). A no-op where there is no glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(ctypes.c_int(-3), ctypes.c_int(HEAP_MMAP_THRESHOLD))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError, TypeError):  # not glibc
        log.debug("mallopt is not available; the heap keeps its defaults")


def parts_in_flight(workers: int, in_flight: int = IN_FLIGHT) -> int:
    """Parts of a long file queued ahead of the models: one being decoded by each worker and
    as many again ready, not :data:`IN_FLIGHT` (32 two-minute parts are 250 MB of decoded
    audio waiting in this process while the model, slower than decoding, catches up)."""
    return max(1, min(in_flight, 2 * max(1, workers) + 2))


def _bounded_parts(tasks: Iterable[DecodeTask], pool: DecodePool, in_flight: int
                   ) -> Iterator[DecodeTask]:
    """``tasks``, setting how many the pool holds ahead by what is pulled: a long file's parts
    are few at a time (:func:`parts_in_flight`), whole short files many. The pool reads its
    ``in_flight`` before pulling each task."""
    parts = parts_in_flight(pool.workers, in_flight)
    for task in tasks:
        pool.in_flight = parts if task.n_parts > 1 else in_flight
        yield task


def embed_files(files: Iterable[AudioFile], backbones: Sequence[Backbone], *,
                workers: int | None = None, batch_s: float | None = None,
                max_batch_files: int = MAX_BATCH_FILES, part_s: float | None = None,
                max_duration_s: float | None = None, decode_timeout_s: float | None = None,
                in_flight: int = IN_FLIGHT, transform: Transform | None = None,
                keep_scores: bool = True, min_batch_s: float = MIN_BATCH_S,
                pool: DecodePool | None = None, decode: Decode | None = None
                ) -> Iterator[FileResult]:
    """Yields one FileResult per file, in order, embedding with every backbone.

    Args:
        files: Files to read (see :func:`scanner.audio.discover.discover`).
        backbones: Models to run; each decoded clip is decoded once and fed to all.
        workers: Decode processes (None: one per core; 0: decode in this process).
        batch_s: Seconds of audio gathered before the models run while they are busy
            (None: :class:`~scanner.config.ScanConfig`'s default).
        max_batch_files: Most clips per batch, however short they are.
        part_s: Long files are decoded and embedded in parts of this length (None: the
            ScanConfig default).
        max_duration_s: Decode at most this much of each file.
        decode_timeout_s: A file whose decoding takes longer becomes a ``timeout`` failure.
        in_flight: Decode tasks queued ahead of the models: enough to fill the next batch
            while the current one runs, few enough to bound memory (parts are <= part_s).
        transform: Applied to each decoded 16 kHz waveform before embedding (augmentation).
        keep_scores: Keep the backbones' own class scores (only heads that read them need them).
        min_batch_s: While the models are idle, a batch goes as soon as it holds this much
            audio instead of waiting for ``batch_s`` (the first batch, or decoding behind).
        pool: A decode pool already started (see :meth:`DecodePool.start`); it is closed
            when the stream ends. None: one is made from ``workers``, ``decode_timeout_s``,
            ``in_flight`` and ``decode``.
        decode: The per-task decode run in the workers (tests inject faulty ones).
    """
    from scanner.config import ScanConfig

    sample_rate_hz = sample_rate_of(backbones)
    steady_heap()
    batch_s = ScanConfig.batch_s if batch_s is None else batch_s
    part_s = ScanConfig.part_s if part_s is None else part_s
    tasks = plan_parts(files, overlap_s=overlap_for(backbones), part_s=part_s,
                       max_duration_s=max_duration_s)
    stitcher = Stitcher(overlap_for(backbones), keep_scores=keep_scores)
    # Batches go out early while the model has nothing to do, full-sized while it is busy.
    batcher = Batcher(sample_rate_hz, batch_s, max_files=max_batch_files, min_batch_s=min_batch_s)
    if pool is None:
        pool = DecodePool(workers=workers, sample_rate_hz=sample_rate_hz,
                          timeout_s=decode_timeout_s, in_flight=in_flight, decode=decode)
    elif pool.sample_rate_hz != sample_rate_hz:
        pool.close()
        raise ValueError(f"the decode pool makes {pool.sample_rate_hz} Hz audio, the backbones "
                         f"want {sample_rate_hz} Hz")
    with pool, ModelStage(backbones, transform) as stage:
        for item in pool.imap(_bounded_parts(tasks, pool, pool.in_flight)):
            batcher.add(item)
            if batcher.full or (batcher.early and stage.idle):
                stage.submit(batcher.take())
                while stage.queued > stage.threads:  # bounds the audio held in batches
                    yield from stitcher.add_all(stage.next())
            while stage.ready:
                yield from stitcher.add_all(stage.next())
        if batcher.items:
            stage.submit(batcher.take())
        while stage.queued:
            yield from stitcher.add_all(stage.next())


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

    def submit(self, batch: Sequence[Item]) -> None:
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

    def next(self) -> Embedded:
        """The oldest batch's results (waits for them; a model error is already a failure)."""
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


class LocalEngine:
    """Schedules the stages on this machine: decode worker processes, the models here.

    Args:
        decode: The per-task decode run in the workers (tests inject faulty ones).
    """

    name = "local"

    def __init__(self, *, decode: Decode | None = None) -> None:
        self.decode = decode
        self._pool: DecodePool | None = None

    def prepare(self, config: ScanConfig, sample_rate_hz: int | None) -> None:
        """Boots the decode workers while files are listed and the models load."""
        if sample_rate_hz is not None:
            self._pool = DecodePool(workers=config.workers, sample_rate_hz=sample_rate_hz,
                                    timeout_s=config.decode_timeout_s, in_flight=IN_FLIGHT,
                                    decode=self.decode).start()

    def results(self, todo: Sequence[AudioFile], config: ScanConfig, classifier: Classifier
                ) -> Iterator[FileResult]:
        """One FileResult per file of ``todo``, in order."""
        from scanner.engines.stages import needs_scores

        pool, self._pool = self._pool, None
        if pool is not None and pool.sample_rate_hz != sample_rate_of(classifier.backbones):
            pool.close()
            pool = None
        yield from embed_files(todo, classifier.backbones, workers=config.workers, pool=pool,
                               batch_s=config.batch_s, part_s=config.part_s,
                               max_duration_s=config.max_duration_s,
                               decode_timeout_s=config.decode_timeout_s, decode=self.decode,
                               keep_scores=needs_scores(m.head for m in classifier.models))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
