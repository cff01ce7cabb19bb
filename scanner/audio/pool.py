"""Parallel decoding: joblib's process pool (loky) feeding an ordered, bounded stream.

The model runs in the main process while workers decode the next files; at most
``in_flight`` tasks are queued or held, so memory stays bounded however many files there
are. A task that kills its worker (segfault, out of memory) costs only that file: the
pool is rebuilt, the other in-flight tasks are retried one at a time to find the culprit,
and the culprit becomes a ``crashed`` failure row. A task that runs past ``timeout_s``
becomes a ``timeout`` row; its clock starts when a worker picks it up (each worker touches
a stamp file as it starts a task), never while it waits in the queue, and its worker is
killed.

Workers never outlive the scan: every rebuild and :meth:`DecodePool.close` kills them with
SIGKILL (a worker blocked opening a FIFO ignores politer requests), and each worker watches
its parent and exits when the parent dies, even by SIGKILL.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
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


PARENT_POLL_S = 0.5
"""How often a worker checks that the scan that started it is still alive."""
QUEUE_POLL_S = 0.2
"""How often a task waiting for a worker is checked for having started."""
NEVER_STARTED_FACTOR = 10
"""A task not picked up by any worker within this many timeouts is a timeout too (no hang)."""


def _init_worker() -> None:
    """Runs once in each worker: a lower priority, and an exit when the parent dies.

    Decode workers yield the cores to the model: decoding runs several times faster than the
    model and works ahead through the queue, so it fills the model's gaps instead of slowing
    its calls. A worker whose parent was killed (SIGKILL, out of memory) is adopted by init;
    it notices within ``PARENT_POLL_S`` and exits instead of lingering for loky's idle timeout
    (a thread polling ``getppid`` rather than ``PR_SET_PDEATHSIG``, which fires when the
    *thread* that forked the worker ends, and loky forks from short-lived threads too).
    """
    try:
        os.nice(10)
    except OSError:  # not permitted here: run at normal priority
        pass
    # SIGTERM or SIGHUP sent to the whole process group is the parent's to handle: it commits
    # its rows, then kills the workers (SIGKILL, as loky does).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _decode_in_worker(task: DecodeTask, sample_rate_hz: int) -> DecodedClip | DecodeFailure:
    return decode_task(task, sample_rate_hz=sample_rate_hz)


def _stamped(stamp: str, decode: Callable[[DecodeTask, int], DecodedClip | DecodeFailure],
             task: DecodeTask, sample_rate_hz: int) -> DecodedClip | DecodeFailure:
    """Runs in a worker: marks the moment the task starts (the file's mtime), then decodes."""
    try:
        with open(stamp, "x"):
            pass
    except OSError:  # no stamp: the task is timed from its submission, as a fallback
        pass
    return decode(task, sample_rate_hz)


def _boot() -> None:
    """Run once per worker by :meth:`DecodePool.start`: the imports the first decode needs."""
    import soundfile  # noqa: F401


@dataclass
class _Pending:
    task: DecodeTask
    future: Future | None = None
    submitted: float = field(default_factory=time.monotonic)
    stamp: str | None = None
    isolated: bool = False


class DecodePool:
    """Decodes tasks in worker processes and yields results in task order.

    Args:
        workers: Worker processes; 0 decodes in this process (no isolation, for debugging).
        sample_rate_hz: Target rate of the decoded waveforms.
        timeout_s: A task running longer than this (from the moment a worker starts it) is
            abandoned as ``timeout`` and its worker killed (None: no limit).
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
        self._stamps: str | None = None
        self._seq = 0

    def _get_executor(self):
        if self._executor is None:
            from joblib.externals.loky import get_reusable_executor

            self._executor = get_reusable_executor(
                max_workers=self.workers, env=_WORKER_ENV, reuse=False, timeout=60,
                initializer=_init_worker)
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
        """Kills every worker and forgets the executor; the next task starts a new one."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # First drop the tasks loky has not yet handed to a worker (as CPython's
        # shutdown(cancel_futures=True) does): left queued, loky's manager thread looks
        # them up after its kill_workers shutdown removed them, and dies on a KeyError.
        work_ids = getattr(executor, "_work_ids", None)
        while work_ids is not None:
            try:
                work_ids.get_nowait()
            except Empty:
                break
        processes = list((getattr(executor, "_processes", None) or {}).values())
        # SIGKILL first: loky's own kill can miss a worker blocked in open() on a FIFO, and
        # its manager thread, which interpreter exit joins, then waits for that worker forever.
        for process in processes:
            _kill(process.pid)
        executor.shutdown(wait=False, kill_workers=True)
        for process in processes:
            process.join(timeout=2.0)

    def _submit(self, pending: _Pending) -> None:
        stamp = self._stamp_path()
        if stamp is None:
            pending.future = self._get_executor().submit(
                self.decode, pending.task, self.sample_rate_hz)
        else:
            pending.future = self._get_executor().submit(
                _stamped, stamp, self.decode, pending.task, self.sample_rate_hz)
        pending.stamp = stamp
        pending.submitted = time.monotonic()

    def _stamp_path(self) -> str | None:
        """A fresh stamp file name for the next task (None when untimed, or no temp folder)."""
        if self.timeout_s is None:
            return None
        if self._stamps is None:
            try:
                self._stamps = tempfile.mkdtemp(prefix="scanner-decode-")
            except OSError as e:
                log.debug("no stamp folder (%s): tasks are timed from submission", e)
                return None
        self._seq += 1
        return os.path.join(self._stamps, str(self._seq))

    @staticmethod
    def _started_at(pending: _Pending) -> float | None:
        """When a worker started the task (monotonic clock), or None while it is queued."""
        if pending.stamp is None:
            return pending.submitted
        try:
            started_wall = os.stat(pending.stamp).st_mtime
        except OSError:
            return None
        return time.monotonic() - max(0.0, time.time() - started_wall)

    @staticmethod
    def _forget(pending: _Pending) -> None:
        if pending.stamp is not None:
            try:
                os.unlink(pending.stamp)
            except OSError:
                pass

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
                if not isolating:  # after a timeout, the others go back in parallel
                    for pending in queue:
                        if pending.future is None:
                            self._submit(pending)
                head = queue[0]
                if head.future is None:
                    self._submit(head)
                result = self._wait(head, queue)
                if result is not None:
                    self._forget(queue.popleft())
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
            if self.timeout_s is None:
                return head.future.result()
            while not head.future.done():
                started = self._started_at(head)
                now = time.monotonic()
                if started is None:  # still queued: its clock has not started
                    if now - head.submitted > NEVER_STARTED_FACTOR * self.timeout_s:
                        return self._timed_out(head, queue, now - head.submitted,
                                               "no decode worker took it up within")
                    wait = QUEUE_POLL_S
                else:
                    wait = self.timeout_s - (now - started)
                    if wait <= 0:
                        return self._timed_out(head, queue, now - started,
                                               "decoding took longer than")
                try:
                    return head.future.result(timeout=wait)
                except FutureTimeout:
                    continue
            return head.future.result()
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

    def _timed_out(self, head: _Pending, queue: deque[_Pending], seconds: float,
                   why: str) -> DecodeFailure:
        log.error("decoding %s: %s %g s: abandoned, its worker killed", head.task.file.path,
                  why, self.timeout_s)
        self._restart()
        # the culprit is known: the others simply run again, in parallel
        self._isolate(queue, skip=head, one_at_a_time=False)
        return DecodeFailure(task=head.task, kind="timeout", seconds_taken=seconds,
                             message=f"{why} {self.timeout_s:g} s")

    def _isolate(self, queue: deque[_Pending], skip: _Pending | None, *,
                 one_at_a_time: bool = True) -> None:
        """After a rebuild, every unfinished task except ``skip`` runs again (after a crash,
        one at a time, to find the culprit)."""
        for pending in queue:
            if pending is skip:
                continue
            future = pending.future
            if future is not None and future.done() and not future.cancelled() \
                    and future.exception() is None:
                continue  # finished before the rebuild: its result stands
            self._forget(pending)
            pending.isolated = pending.isolated or one_at_a_time
            pending.future = None

    def close(self) -> None:
        """Kills the workers and removes the stamp folder; safe to call more than once."""
        self._restart()
        if self._stamps is not None:
            shutil.rmtree(self._stamps, ignore_errors=True)
            self._stamps = None

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
