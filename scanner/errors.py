"""The project's exceptions: one base class, caught at the boundary (a row's ``error`` or the CLI)."""

from __future__ import annotations

from typing import Literal

# On an error row, why the file gave nothing; on an ``ok`` row, a note (``too_long``: cut by
# --max-duration; ``recovered``: one decoder failed and another read more, kept;
# ``partial``: only part of the file could be decoded, the rest is said in ``error``).
ErrorKind = Literal[
    "empty",
    "not_audio",
    "truncated",
    "non_finite",
    "out_of_range",
    "corrupt",
    "unsupported",
    "timeout",
    "io",
    "too_long",
    "recovered",
    "partial",
    "crashed",
    "model",
    "internal",
]


class ScannerError(Exception):
    """Base class of every error this package raises on purpose.

    ``exit_code`` is the code the CLI exits with when this error ends a command (3: a model,
    head or setting could not be loaded; see :mod:`scanner.cli.boundary`).
    """

    exit_code: int = 3


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


class InputPathError(ConfigError):
    """A path named on the command line cannot be scanned (missing, a pipe, a device): usage."""

    exit_code = 2


class HeadError(ScannerError):
    """A head folder is malformed or holds values it cannot classify with (NaN, zero std)."""


class OutputError(ScannerError):
    """An output that must not be written: a file the tool did not write, a table another
    scan is writing, or an existing table without ``--overwrite``/``--resume``."""

    exit_code = 5
