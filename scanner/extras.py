"""Optional extras: the frameworks a lean install leaves out, and the message when one is missing.

The core install scans with the TFLite YAMNet (``ai-edge-litert``) and needs neither
TensorFlow nor torch. A path that needs more calls :func:`require` just before its import,
so a missing framework is one line naming the extra to install, not an ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from scanner.errors import ModelNotFoundError

DISTRIBUTION = "cry-scream-scanner"

# extra -> what needs it, in messages (pyproject.toml says what each one installs).
EXTRAS = {
    "tf": "YAMNet as a SavedModel or from TF Hub",
    "wav2vec2": "the Wav2Vec2 backbone",
    "train": "scanner train",
    "ray": "the Ray engine",
    "eval": "scanner evaluate",
}


class MissingExtraError(ModelNotFoundError):
    """A feature needs a package from an optional extra that is not installed.

    A :class:`ModelNotFoundError`, so a loader that tries several sources (YAMNet: the local
    folder, then TF Hub) lists it among the others; the CLI exits 3.

    Args:
        module: The module that could not be imported.
        extra: The extra that provides it.
        purpose: What needed it, for the message (default: the extra's description).
    """

    def __init__(self, module: str, extra: str, purpose: str | None = None) -> None:
        self.module, self.extra = module, extra
        what = purpose or EXTRAS.get(extra, extra)
        super().__init__(f"{what} needs {module}, which is not installed: "
                         f"pip install '{DISTRIBUTION}[{extra}]'")


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Imports ``module``, or raises :class:`MissingExtraError` naming ``extra``.

    Raises:
        MissingExtraError: ``module`` (or a package it needs) cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(module, extra, purpose) from e
