"""Engines: how the shared stages are scheduled. Each runs discover -> decode -> embed -> head -> rows.

* ``local`` (:func:`scanner.engines.driver.scan`): decode worker processes on this machine, the
  models in this process.
* ``ray`` (:func:`scanner.engines.ray_engine.scan_ray`): a Ray Dataset of files, decoding in
  CPU tasks, the models in an actor pool (GPUs when the cluster has them).

Both take the same arguments and return the same :class:`~scanner.engines.driver.ScanSummary`, and
write the same table. The entries import their engine lazily, so listing the engines (the
CLI's ``--engine`` choices) imports neither Ray nor a model framework.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.errors import ConfigError
from scanner.registry import Registry

if TYPE_CHECKING:
    from scanner.classify import Classifier
    from scanner.config import ScanConfig
    from scanner.engines.driver import ScanSummary

Engine = Callable[..., "ScanSummary"]
ENGINES: Registry[Engine] = Registry("engine")


@ENGINES.register("local")
def run_local(paths: Sequence[str | Path], out: str | Path, config: ScanConfig | None = None, *,
              classifier: Classifier | None = None, address: str | None = None,
              on_files: Callable[[int], None] | None = None,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> ScanSummary:
    """The local engine (``address`` must be None: it belongs to the Ray engine)."""
    if address is not None:
        raise ConfigError("a Ray address was given but the engine is 'local'; use --engine ray")
    from scanner.engines.driver import scan

    return scan(paths, out, config, classifier=classifier, on_files=on_files, on_row=on_row)


@ENGINES.register("ray")
def run_ray(paths: Sequence[str | Path], out: str | Path, config: ScanConfig | None = None, *,
            classifier: Classifier | None = None, address: str | None = None,
            on_files: Callable[[int], None] | None = None,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> ScanSummary:
    """The Ray engine (``address`` None starts a local Ray instance)."""
    from scanner.engines.ray_engine import scan_ray

    return scan_ray(paths, out, config, address=address, classifier=classifier,
                    on_files=on_files, on_row=on_row)
