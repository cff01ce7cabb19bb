"""Scan folders of audio and find crying and screaming: whether, when and how much.

The library API a notebook can call; the ``scanner`` command is a thin layer over it::

    from scanner import ScanConfig, scan
    summary = scan(["recordings/"], "results.parquet", ScanConfig())
    # results.parquet: one row per file; results.events.parquet: one row per event

The names below are imported on first use, so ``import scanner`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cry-scream-scanner")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

CLASSES: tuple[str, ...] = ("cry", "screaming", "not_screaming")
"""The default head's class names, in its output order."""

_LAZY = {
    "scan": "scanner.engines.driver",
    "ScanSummary": "scanner.engines.driver",
    "ScanInterrupted": "scanner.engines.driver",
    "ScanConfig": "scanner.config",
    "load_classifier": "scanner.classify",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scanner' has no attribute {name!r}")


__all__ = ["CLASSES", "ScanConfig", "ScanInterrupted", "ScanSummary", "__version__",
           "load_classifier", "scan"]
