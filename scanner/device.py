"""Where models run: the one parser of device strings, core counts, and for torch: device
choice, mixed precision, CPU threads and out-of-memory back-off.

torch is imported inside each function, so importing this module stays cheap (the CLI's
``--help`` and decode workers never load torch).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from scanner.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    kind: Literal["auto", "cpu", "cuda"]
    index: int | None = None

    @property
    def wants_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(spec: str | None) -> DeviceSpec:
    """Parses ``auto`` (also None or empty), ``cpu``, ``cuda`` or ``cuda:N``, any case.

    Raises:
        ConfigError: Anything else.
    """
    value = (spec or "auto").strip().lower()
    kind, sep, index = value.partition(":")
    if kind in ("auto", "cpu") and not sep:
        return DeviceSpec(kind)  # type: ignore[arg-type]
    if kind == "cuda" and (not sep or index.isdigit()):
        return DeviceSpec("cuda", int(index) if sep else None)
    raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")


def resolve_torch_device(spec: str = "auto") -> torch.device:
    """Turns ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a usable ``torch.device``.

    Args:
        spec: ``auto`` picks CUDA when a GPU is usable, else the CPU.

    Raises:
        ConfigError: ``spec`` is not understood, or names a CUDA device that does not exist.
    """
    import torch

    value = str(parse_device(spec))
    if value == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        logger.info("device auto -> %s", device)
        return device
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from e
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} was asked for but torch sees no CUDA GPU "
                          f"(torch {torch.__version__}); use --device cpu or --device auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"device {spec!r} does not exist: torch sees {count} CUDA GPU(s)")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``: bfloat16 where the GPU supports it, else
    float16; None on the CPU (CPU autocast is slower than float32 for these models)."""
    import torch

    if device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def set_cpu_threads(threads: int | None, *, decode_workers: int = 0) -> int:
    """Sets torch's intra-op thread count and returns it.

    Args:
        threads: Threads for the model; None means the cores left after the decode
            workers (each worker keeps one core busy), at least 1.
        decode_workers: Number of decode processes running beside the model.

    Raises:
        ConfigError: ``threads`` is below 1.
    """
    import torch

    if threads is None:
        threads = max(1, available_cores() - max(0, decode_workers))
    elif threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    logger.debug("torch CPU threads: %d", threads)
    return threads


def run_with_oom_backoff(fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T],
                         batch_size: int, *, on_shrink: Callable[[int], None] | None = None
                         ) -> list[R]:
    """Calls ``fn`` on consecutive batches of ``items`` and concatenates the results in order.

    When a batch runs out of CUDA memory, the cache is emptied, the batch size is halved and
    the same batch is tried again; the smaller size is kept for the remaining batches.

    Args:
        fn: Maps a batch (a slice of ``items``) to one result per item.
        items: Everything to process.
        batch_size: Starting batch size.
        on_shrink: Called with the new batch size each time it is halved (a caller that
            keeps it for its next call logs it there; without one, a warning is logged here).

    Raises:
        torch.cuda.OutOfMemoryError: Even a batch of one does not fit.
        ValueError: ``batch_size`` is below 1, or ``fn`` returned the wrong number of results.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    results: list[R] = []
    start = 0
    while start < len(items):
        batch = items[start:start + batch_size]
        try:
            out = list(fn(batch))
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            if on_shrink is not None:
                on_shrink(batch_size)
            else:
                logger.warning("CUDA out of memory; retrying with batch size %d", batch_size)
            continue
        if len(out) != len(batch):
            raise ValueError(f"fn returned {len(out)} results for a batch of {len(batch)}")
        results.extend(out)
        start += len(batch)
    return results
