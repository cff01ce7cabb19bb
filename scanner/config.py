"""The scan's settings as one frozen, serialisable record (written into the table's metadata)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from scanner.constants import DEFAULT_BATCH_S, DEFAULT_DECODE_TIMEOUT_S, DEFAULT_PART_S


@dataclass(frozen=True)
class ScanConfig:
    """Everything that decides what ``scan`` reads and how it computes a row.

    Attributes:
        backbones: Backbone names, e.g. ``("yamnet",)`` or ``("yamnet", "wav2vec2")``.
        models: Model source per backbone (hub handle, folder or file); missing -> default.
        heads: Head per backbone (built-in name or folder); missing -> the backbone's default.
        weights: Ensemble weight per backbone (missing -> 1).
        backbone_options: Extra load options per backbone (``{"wav2vec2": {"layer": 6}}``).
        workers: Decode processes (None: one per core).
        threads: Model threads (None: one per core).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_s: Seconds of audio per model batch (while the model is busy; an idle one
            gets a batch as soon as 15 s are decoded).
        part_s: Long files are decoded in parts of this length (bounded memory).
        max_duration_s: Only the first this-many seconds of each file are analysed.
        decode_timeout_s: A decode that takes longer is stopped and recorded as ``timeout``.
        resume: Skip files already in the output (same path, size and mtime).
        cache: Also store each file's mean-pooled embeddings in the embedding cache that
            ``scanner train`` reads, so a scanned folder trains without embedding again.
        cache_dir: That cache's folder (None: the user cache folder).
        output_format: ``parquet`` or ``csv`` (None: from the output's suffix).
        overwrite: Replace an existing results table (only one this tool wrote).
        detection: The user's detection settings (``window_s``, ``hop_s``,
            ``smooth_windows``, ``min_event_s``, ``max_gap_s``, ``edge_thresholds``); missing
            ones come from the head, then the defaults (see :mod:`scanner.events.detection`).
        thresholds: Per-class event thresholds, over the head's own.
        sensitivity: Scales every class's threshold odds (>1: more events, <1: fewer).
        segments: Also write the per-window table (``OUT.segments.*``); the events table is
            always written.
        embeddings: Also write every patch's embedding (``OUT.embeddings.parquet``).
        timestamp_pattern: How to read a recording's start time from its name (a strptime
            format or a regex with named groups; see :mod:`scanner.timestamps`); metadata
            and the common recorder names are read without it.
        roots: The scanned paths, absolute (recorded in the table's metadata).
        command: The command line (recorded in the metadata; None: ``sys.argv``).
    """

    backbones: tuple[str, ...] = ("yamnet",)
    models: dict[str, str] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    backbone_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    extensions: tuple[str, ...] | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hidden: bool = False
    follow_symlinks: bool = False
    workers: int | None = None
    threads: int | None = None
    device: str = "auto"
    batch_s: float = DEFAULT_BATCH_S
    part_s: float = DEFAULT_PART_S
    max_duration_s: float | None = None
    decode_timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S
    resume: bool = False
    cache: bool = False
    cache_dir: str | None = None
    output_format: str | None = None
    overwrite: bool = False
    detection: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    sensitivity: float = 1.0
    segments: bool = False
    embeddings: bool = False
    timestamp_pattern: str | None = None
    roots: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.backbones:
            raise ValueError("at least one backbone is needed")
        if self.batch_s <= 0 or self.part_s <= 0:
            raise ValueError("batch_s and part_s must be positive")
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {self.max_duration_s}")
        if not self.sensitivity > 0:
            raise ValueError(f"sensitivity must be positive, got {self.sensitivity}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanConfig:
        names = {f.name for f in fields(cls)}
        clean = {k: v for k, v in data.items() if k in names}
        for key in ("backbones", "extensions", "include", "exclude", "roots", "command"):
            if clean.get(key) is not None:
                clean[key] = tuple(clean[key])
        return cls(**clean)
