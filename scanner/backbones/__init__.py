"""Backbone registry. Importing this package imports no deep-learning framework."""

from __future__ import annotations

from typing import Any

from scanner.backbones.base import Backbone
from scanner.registry import Registry

BACKBONES: Registry[type[Backbone]] = Registry("backbone")
register_backbone = BACKBONES.register

# Registration happens at import; the modules import their frameworks lazily.
from scanner.backbones import fake, wav2vec2, yamnet  # noqa: E402,F401


def load_backbone(name: str, source: str | None = None, **options: Any) -> Backbone:
    """Loads the registered backbone ``name`` from ``source`` (see :meth:`Backbone.load`)."""
    return BACKBONES.get(name).load(source, **options)


__all__ = ["BACKBONES", "Backbone", "load_backbone", "register_backbone"]
