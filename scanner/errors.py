"""The project's exceptions: one base class, caught at the boundary (a row's ``error`` or the CLI)."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "empty",
    "not_audio",
    "truncated",
    "non_finite",
    "unsupported",
    "timeout",
    "io",
    "too_long",
    "crashed",
    "model",
    "internal",
]


class ScannerError(Exception):
    """Base class of every error this package raises on purpose."""


class DecodeError(ScannerError):
    """A file could not be turned into a waveform.

    Args:
        message: What a person reads in the ``error`` column.
        kind: A short machine-readable code for the ``error_kind`` column.
    """

    def __init__(self, message: str, *, kind: ErrorKind = "unsupported") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


class ModelNotFoundError(ScannerError):
    """No backbone model could be loaded from the places that were tried."""


class HeadMismatchError(ScannerError):
    """A head was used with a backbone or preprocessing it was not trained for."""


class ConfigError(ScannerError):
    """An option or a combination of options that cannot work."""


class OutputError(ScannerError):
    """An output that must not be written: a file the tool did not write, a table another
    scan is writing, or an existing table without ``--overwrite``/``--resume``."""
