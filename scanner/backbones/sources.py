"""Where models come from: an explicit ``--model``, the ``SCANNER_MODEL_DIR`` folder, or a hub."""

from __future__ import annotations

import os
from pathlib import Path

MODEL_DIR_ENV = "SCANNER_MODEL_DIR"


def model_dir() -> Path | None:
    """The folder named by ``SCANNER_MODEL_DIR`` (laid out like ``yamnet/``, ``wav2vec2-base/``), if set."""
    value = os.environ.get(MODEL_DIR_ENV)
    return Path(value).expanduser() if value else None


def hub_offline() -> bool:
    """True when the user asked for no hub access (``HF_HUB_OFFLINE`` or ``SCANNER_OFFLINE``)."""
    return any(
        os.environ.get(var, "").lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "SCANNER_OFFLINE")
    )
