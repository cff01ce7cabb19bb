"""Scan folders of audio and flag crying and screaming.

The library API a notebook can call; the ``scanner`` command is a thin layer over it::

    from scanner import ScanConfig, scan
    summary = scan(["recordings/"], "results.parquet", ScanConfig())
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cry-scream-scanner")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

CLASSES: tuple[str, ...] = ("cry", "screaming", "not_screaming")
"""The default head's class names, in its output order."""

__all__ = ["CLASSES", "__version__"]
