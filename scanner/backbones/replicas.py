"""Copies of a model that run side by side: one thread owns each copy and takes calls from one queue.

A TFLite interpreter must not be used by two threads at once, and ``invoke`` releases the
GIL, so copies on their own threads run in parallel. All calls go through one first-in,
first-out queue shared by every batch: when a batch's last call keeps one copy busy, the
other copies already take the next batch's calls instead of waiting for it (which per-batch
sharing cannot do), so several batches may be submitted at once from different threads.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

Job = Callable[[Any], Any]
"""A function of one copy (the runner) that makes one call with it."""

_STOP = None


def _serve(runner: object, jobs: queue.SimpleQueue) -> None:
    """One copy's thread: runs jobs with its runner until told to stop."""
    while True:
        item = jobs.get()
        if item is _STOP:
            return
        job, future = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(job(runner))
        except BaseException as e:  # handed to the caller, who decides
            future.set_exception(e)


def _stop(jobs: queue.SimpleQueue, n: int) -> None:
    for _ in range(n):
        jobs.put(_STOP)


class Replicas:
    """Runs jobs on several copies of a model, each copy always on its own thread.

    Args:
        runners: The copies (for example one TFLite interpreter each).
        name: Prefix of the threads' names.

    The threads are daemons and stop when this object is garbage-collected or
    :meth:`close` is called.
    """

    def __init__(self, runners: Sequence[Any], *, name: str = "replica") -> None:
        if not runners:
            raise ValueError("Replicas needs at least one runner")
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.size = len(runners)
        for i, runner in enumerate(runners):
            # the threads hold the runner and the queue, never self, so self can be collected
            threading.Thread(target=_serve, args=(runner, self._jobs), daemon=True,
                             name=f"{name}-{i}").start()
        self._finalizer = weakref.finalize(self, _stop, self._jobs, self.size)

    def submit(self, job: Job) -> Future:
        """Queues ``job(runner)`` for the first free copy."""
        future: Future = Future()
        self._jobs.put((job, future))
        return future

    def map(self, jobs: Sequence[Job]) -> list[Any]:
        """Runs every job (in queue order, on whichever copy is free); results in job order.

        If a job raises, the first such error is raised once all of them have finished.
        """
        futures = [self.submit(job) for job in jobs]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stops the threads once the jobs already queued are done."""
        self._finalizer()
