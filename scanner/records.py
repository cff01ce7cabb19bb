"""Frozen records that flow between the stages: discover -> decode -> embed -> classify -> write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ErrorKind


@dataclass(frozen=True)
class AudioFile:
    """A discovered file. ``path`` is absolute; size and mtime identify its version for ``--resume``."""

    path: Path
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class DecodeTask:
    """One unit of decoding work: a whole file, or one bounded part of a long one.

    ``start_s``/``max_s`` bound the part in the file's own time line; ``part``/``n_parts``
    tell the pipeline when a file's last part has arrived.
    """

    file: AudioFile
    start_s: float = 0.0
    max_s: float | None = None
    part: int = 0
    n_parts: int = 1


@dataclass(frozen=True)
class DecodedClip:
    """Mono audio at the target rate, with the original file's facts for the table.

    Attributes:
        waveform: ``[samples]`` float32 in [-1, 1] at ``sample_rate_hz``.
        duration_s: Duration of the whole original file (not only this part).
        offset_s: Where this part starts in the file.
    """

    task: DecodeTask
    waveform: NDArray[np.float32]
    sample_rate_hz: int
    orig_sample_rate_hz: int
    channels: int
    duration_s: float
    decoder: str
    seconds_taken: float
    offset_s: float = 0.0
    truncated_to_s: float | None = None  # set when --max-duration cut the file

    @property
    def file(self) -> AudioFile:
        return self.task.file


@dataclass(frozen=True)
class DecodeFailure:
    """A task that produced no audio, and why (every decoder's reason, in order)."""

    task: DecodeTask
    kind: ErrorKind
    message: str
    decoder: str | None = None
    seconds_taken: float = 0.0
    details: tuple[str, ...] = field(default_factory=tuple)
    traceback: str | None = None

    @property
    def file(self) -> AudioFile:
        return self.task.file


@dataclass(frozen=True)
class Embedding:
    """A backbone's output for one waveform, as numpy (no framework type leaks out).

    Attributes:
        embeddings: ``[patches, dim]`` float32, one row per analysis patch.
        starts_s: ``[patches]`` start time of each patch, relative to the waveform.
        window_s: Length of each patch in seconds.
        scores: ``[patches, n_scores]`` the backbone's own class scores (YAMNet's
            AudioSet scores), or None for backbones without them.
    """

    embeddings: NDArray[np.float32]
    starts_s: NDArray[np.float64]
    window_s: float
    scores: NDArray[np.float32] | None = None

    @property
    def n_patches(self) -> int:
        return int(self.embeddings.shape[0])


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

    Every engine yields these; the driver's per-file chain turns each into rows.

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
