"""Model copies on their own threads, fed from one queue (scanner.backbones.replicas)."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from scanner.backbones.replicas import Replicas


class Copy:
    """A stand-in model copy that records which threads used it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.threads: set[str] = set()

    def run(self, x: float) -> tuple[str, float]:
        self.threads.add(threading.current_thread().name)
        time.sleep(0.002)
        if x < 0:
            raise ValueError(f"negative input {x}")
        return self.name, 2 * x


def test_results_come_in_job_order_and_each_copy_stays_on_one_thread() -> None:
    copies = [Copy("a"), Copy("b")]
    replicas = Replicas(copies, name="t")
    out = replicas.map([lambda c, x=x: c.run(x) for x in range(40)])
    assert [v for _, v in out] == [2 * x for x in range(40)]
    assert {name for name, _ in out} == {"a", "b"}  # both copies took calls
    assert all(len(c.threads) == 1 for c in copies)
    assert copies[0].threads != copies[1].threads
    replicas.close()


def test_an_error_is_raised_after_every_job_finished() -> None:
    copy = Copy("a")
    replicas = Replicas([copy, Copy("b")])
    done: list[float] = []

    def job(x: float):
        def run(c: Copy) -> tuple[str, float]:
            result = c.run(x)
            done.append(x)
            return result
        return run

    with pytest.raises(ValueError, match="negative input -1"):
        replicas.map([job(x) for x in (1.0, -1.0, 2.0, 3.0)])
    assert sorted(done) == [1.0, 2.0, 3.0]
    # the copies still work afterwards
    assert [v for _, v in replicas.map([job(4.0)])] == [8.0]


def test_threads_stop_when_closed_or_collected() -> None:
    def ours() -> int:
        return sum(t.name.startswith("stop-test-") for t in threading.enumerate())

    replicas = Replicas([Copy("a"), Copy("b")], name="stop-test-closed")
    assert ours() == 2
    replicas.close()
    other = Replicas([Copy("c")], name="stop-test-collected")
    assert ours() >= 1
    del other
    gc.collect()
    deadline = time.monotonic() + 5
    while ours() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ours() == 0


def test_needs_a_runner() -> None:
    with pytest.raises(ValueError):
        Replicas([])
