"""Engines: where and when the shared stages run. The driver does the rest.

* ``local`` (:class:`scanner.engines.local.LocalEngine`): decode worker processes on this
  machine, the models in this process.
* ``ray`` (:class:`scanner.engines.ray_engine.RayEngine`): a Ray Dataset of files, decoding in
  CPU tasks, the models in an actor pool (GPUs when the cluster has them and a model can use
  them).

Each engine yields one :class:`~scanner.records.FileResult` per file; the driver
(:func:`scanner.engines.driver.scan`) runs discovery, resume, the per-file chain
(:mod:`scanner.engines.chain`: rows, events, segments, cache, vectors), commits and the final
tables, the same for both. The registry's entries import their engine lazily, so listing the
engines (the CLI's ``--engine`` choices) imports neither Ray nor a model framework.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from scanner.errors import ConfigError
from scanner.registry import Registry

if TYPE_CHECKING:
    from scanner.engines.driver import Engine

EngineFactory = Callable[..., "Engine"]
ENGINES: Registry[EngineFactory] = Registry("engine")


@ENGINES.register("local")
def local_engine(*, address: str | None = None, **options: object) -> Engine:
    """The local engine (``address`` must be None: it belongs to the Ray engine)."""
    if address is not None:
        raise ConfigError("a Ray address was given but the engine is 'local'; use --engine ray")
    from scanner.engines.local import LocalEngine

    return LocalEngine(**options)


@ENGINES.register("ray")
def ray_engine(*, address: str | None = None, **options: object) -> Engine:
    """The Ray engine (``address`` None starts a local Ray instance)."""
    from scanner.engines.ray_engine import RayEngine

    return RayEngine(address=address, **options)
