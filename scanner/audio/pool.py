"""Parallel decoding: joblib's process pool (loky) feeding an ordered, bounded stream.

The model runs in the main process while workers decode the next files; at most
``in_flight`` tasks are queued or held, so memory stays bounded however many files there
are. A task that hangs past ``timeout_s`` or kills its worker (segfault, out of memory)
costs only that file: the pool is rebuilt, the other in-flight tasks are retried one at a
time to find the culprit, and the culprit becomes a ``timeout``/``crashed`` failure row.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from queue import Empty

from scanner.audio.decode import decode_task
from scanner.constants import SAMPLE_RATE_HZ
from scanner.device import available_cores
from scanner.records import DecodedClip, DecodeFailure, DecodeTask

log = logging.getLogger(__name__)

_WORKER_ENV = {
    # Decode workers are single-threaded; keep BLAS/OpenMP pools from oversubscribing cores.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def default_workers() -> int:
    """One decode worker per core the process may use (its CPU affinity)."""
    return max(1, available_cores())


def _lower_priority() -> None:
    """Decode workers yield the cores to the model: decoding runs several times faster than
    the model and works ahead through the queue, so it fills the model's gaps instead of
    slowing its calls."""
    try:
        os.nice(10)
    except OSError:  # not permitted here: run at normal priority
        pass


def _decode_in_worker(task: DecodeTask, sample_rate_hz: int) -> DecodedClip | DecodeFailure:
    return decode_task(task, sample_rate_hz=sample_rate_hz)


def _boot() -> None:
    """Run once per worker by :meth:`DecodePool.start`: the imports the first decode needs."""
    import soundfile  # noqa: F401


@dataclass
class _Pending:
    task: DecodeTask
    future: Future | None = None
    started: float = field(default_factory=time.monotonic)
    isolated: bool = False


class DecodePool:
    """Decodes tasks in worker processes and yields results in task order.

    Args:
        workers: Worker processes; 0 decodes in this process (no isolation, for debugging).
        sample_rate_hz: Target rate of the decoded waveforms.
        timeout_s: A task running longer than this is abandoned as ``timeout`` (None: no limit).
        in_flight: Tasks submitted ahead of the consumer (default ``2 * workers + 2``).
        decode: The per-task function run in the workers (tests swap in faulty ones).
    """

    def __init__(self, *, workers: int | None = None, sample_rate_hz: int = SAMPLE_RATE_HZ,
                 timeout_s: float | None = None, in_flight: int | None = None,
                 decode: Callable[[DecodeTask, int], DecodedClip | DecodeFailure] | None = None
                 ) -> None:
        self.decode = decode or _decode_in_worker
        self.workers = default_workers() if workers is None else max(0, workers)
        self.sample_rate_hz = sample_rate_hz
        self.timeout_s = timeout_s
        self.in_flight = in_flight or 2 * max(1, self.workers) + 2
        self._executor = None

    def _get_executor(self):
        if self._executor is None:
            from joblib.externals.loky import get_reusable_executor

            self._executor = get_reusable_executor(
                max_workers=self.workers, env=_WORKER_ENV, reuse=False, timeout=60,
                initializer=_lower_priority)
        return self._executor

    def start(self) -> DecodePool:
        """Starts the worker processes now rather than at the first task.

        Booting a worker (a new interpreter and its imports) takes a few tenths of a second:
        started before the models load, the workers are ready when the first files come.
        """
        if self.workers:
            executor = self._get_executor()
            for _ in range(self.workers):
                executor.submit(_boot)
        return self

    def _restart(self) -> None:
        if self._executor is not None:
            # First drop the tasks loky has not yet handed to a worker (as CPython's
            # shutdown(cancel_futures=True) does): left queued, loky's manager thread looks
            # them up after its kill_workers shutdown removed them, and dies on a KeyError.
            work_ids = getattr(self._executor, "_work_ids", None)
            while work_ids is not None:
                try:
                    work_ids.get_nowait()
                except Empty:
                    break
            self._executor.shutdown(wait=False, kill_workers=True)
        self._executor = None

    def _submit(self, pending: _Pending) -> None:
        pending.future = self._get_executor().submit(
            self.decode, pending.task, self.sample_rate_hz)
        pending.started = time.monotonic()

    def imap(self, tasks: Iterable[DecodeTask]) -> Iterator[DecodedClip | DecodeFailure]:
        """Yields one DecodedClip or DecodeFailure per task, in the order of ``tasks``."""
        if self.workers == 0:
            for task in tasks:
                yield self.decode(task, self.sample_rate_hz)
            return
        source = iter(tasks)
        queue: deque[_Pending] = deque()
        exhausted = False
        try:
            while True:
                # After a crash, unfinished tasks run one at a time until the culprit is found.
                isolating = any(p.isolated for p in queue)
                while not exhausted and not isolating and len(queue) < self.in_flight:
                    try:
                        pending = _Pending(next(source))
                    except StopIteration:
                        exhausted = True
                        break
                    self._submit(pending)
                    queue.append(pending)
                if not queue:
                    return
                head = queue[0]
                if head.future is None:
                    self._submit(head)
                result = self._wait(head, queue)
                if result is not None:
                    queue.popleft()
                    yield result
        finally:
            if queue:
                # Stopped early (Ctrl-C, or the consumer closed the stream): kill the workers,
                # which fails the queued futures. Not Future.cancel(): loky's manager thread
                # then dies on set_exception() of a cancelled future before killing the
                # workers, and interpreter exit waits forever on a worker blocked writing its
                # result into a pipe nobody reads.
                self._restart()

    def _wait(self, head: _Pending,
              queue: deque[_Pending]) -> DecodedClip | DecodeFailure | None:
        """Waits for the head task; returns its result, or None after a pool rebuild."""
        from joblib.externals.loky.process_executor import BrokenProcessPool

        try:
            remaining = None
            if self.timeout_s is not None:
                remaining = max(0.0, self.timeout_s - (time.monotonic() - head.started))
            return head.future.result(timeout=remaining)
        except FutureTimeout:
            log.error("decoding %s took over %g s: abandoned", head.task.file.path, self.timeout_s)
            self._restart()
            self._isolate(queue, skip=head)
            return DecodeFailure(task=head.task, kind="timeout", seconds_taken=self.timeout_s,
                                 message=f"decoding took longer than {self.timeout_s:g} s")
        except BrokenProcessPool as e:
            self._restart()
            if head.isolated:
                log.error("decoding %s crashed its worker process: %s", head.task.file.path, e)
                self._isolate(queue, skip=head)
                return DecodeFailure(task=head.task, kind="crashed",
                                     message="the decoder crashed its worker process "
                                             "(segfault or out of memory)")
            log.warning("a decode worker died; retrying %d files one at a time", len(queue))
            self._isolate(queue, skip=None)
            return None

    @staticmethod
    def _isolate(queue: deque[_Pending], skip: _Pending | None) -> None:
        """After a rebuild, every unfinished task except ``skip`` runs again, one at a time."""
        for pending in queue:
            if pending is skip:
                continue
            future = pending.future
            if future is not None and future.done() and not future.cancelled() \
                    and future.exception() is None:
                continue  # finished before the crash: its result stands
            pending.isolated = True
            pending.future = None

    def close(self) -> None:
        self._restart()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
