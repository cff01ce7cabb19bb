"""Protects outputs: never replace a file this tool did not write, one scan per output at a
time, and ``--resume`` only with the settings that made the earlier rows.

* A path ``-o`` names (and each table beside it: ``.events``, ``.segments``, ``.embeddings``)
  may be replaced only when it is a results table this tool wrote — its Parquet footer, or its
  CSV's ``.meta.json`` sidecar, says so — and only with ``--overwrite`` or ``--resume``. Any
  other file (a recording, someone's spreadsheet) is refused, whatever the options.
* A scan holds an exclusive lock (``.OUT.lock``, :mod:`filelock`) for its whole life. A second
  scan of the same output refuses and names the holder. The lock is an ``flock``: the kernel
  releases it when its process dies, so a stale lock is simply taken over.
* ``--resume`` compares the earlier table's fingerprint (models, heads, detection settings,
  columns) with this scan's and refuses, naming the differences, when they differ.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.errors import ConfigError, OutputError
from scanner.output.schema import read_metadata

if TYPE_CHECKING:
    from scanner.config import ScanConfig

log = logging.getLogger(__name__)

SIBLINGS = ("events", "segments", "embeddings")
"""Tables written beside ``OUT`` as ``OUT.<kind>.<suffix>``."""


def sibling(out: Path, kind: str) -> Path:
    """``results.parquet`` -> ``results.events.parquet`` (``.csv`` likewise)."""
    return out.with_name(f"{out.stem}.{kind}{out.suffix}")


def table_metadata_of(path: Path) -> dict[str, Any] | None:
    """The ``scanner`` metadata of a table at ``path``; None when it is not a table we wrote."""
    if path.suffix.lower() == ".csv":
        side = path.with_name(path.name + ".meta.json")
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("tool") == "scanner" else None
    try:
        import pyarrow.parquet as pq

        return read_metadata(pq.read_schema(path).metadata)
    except Exception:  # noqa: BLE001 - not Parquet, unreadable, truncated: not ours
        return None


class OutputGuard:
    """Checks and locks one scan's outputs (see the module docstring)."""

    def __init__(self, out: Path, config: ScanConfig) -> None:
        self.out = out
        self.config = config
        self.lock_path = out.with_name(f".{out.name}.lock")
        self.holder_path = out.with_name(f".{out.name}.lock.json")

    def targets(self) -> list[Path]:
        return [self.out] + [sibling(self.out, kind) for kind in SIBLINGS]

    def check_before_start(self) -> None:
        """Raises OutputError for an output that must not be written (before anything runs)."""
        if self.out.is_dir():
            raise OutputError(f"{self.out} is a folder; -o takes a file name such as "
                              f"{self.out / 'results.parquet'}")
        for path in self.targets():
            if not (path.exists() or path.is_symlink()):
                continue
            if path.is_symlink() or not path.is_file():
                raise OutputError(f"{path} exists and is not a results table written by "
                                  f"scanner; refusing to replace it (choose another -o)")
            if table_metadata_of(path) is None:
                raise OutputError(f"{path} exists and is not a results table written by "
                                  f"scanner; refusing to replace it, even with --overwrite "
                                  f"(choose another -o)")
            if not (self.config.overwrite or self.config.resume):
                raise OutputError(f"{path} already exists: add --resume to continue that scan "
                                  f"or --overwrite to replace it")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the output's lock; raises OutputError when another scan holds it."""
        from filelock import FileLock, Timeout

        self.out.parent.mkdir(parents=True, exist_ok=True)  # an OSError: the CLI's one line
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputError(f"{self.out} is being written by another scan "
                              f"({self._holder()}); wait for it to finish or choose another -o"
                              ) from None
        try:
            self._write_holder()
            yield
        finally:
            try:
                self.holder_path.unlink()
            except OSError:
                pass
            lock.release()
            try:
                self.lock_path.unlink()
            except OSError:
                pass

    def _write_holder(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            tmp = self.holder_path.with_name(self.holder_path.name + ".tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.holder_path)
        except OSError:
            pass  # the lock itself is what counts; the note only names the holder

    def _holder(self) -> str:
        try:
            info = json.loads(self.holder_path.read_text())
            return f"process {int(info['pid'])} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def check_resume(self, schema: Any) -> None:
        """With ``--resume``: raises ConfigError when the earlier rows were made otherwise."""
        if not self.config.resume:
            return
        earlier = self._earlier_fingerprint()
        if earlier is None:
            return
        current = (read_metadata(schema.metadata) or {}).get("fingerprint", {})
        earlier, renamed = _current_head_names(earlier)
        diffs = describe_differences(earlier, current)
        if diffs:
            hint = "".join(f"; it was made with the former default head, now {n!r}: add --head {n}"
                           for n in renamed if n not in _head_names(current))
            raise ConfigError(f"--resume: {self.out} was made with other settings ("
                              + "; ".join(diffs) + "); rerun with the same settings, or use "
                              "--overwrite or another -o to start afresh" + hint)

    def _earlier_fingerprint(self) -> dict[str, Any] | None:
        from scanner.output.writer import parts_dir

        candidates = [self.out] if self.out.exists() else []
        parts = parts_dir(self.out)
        if parts.is_dir():
            candidates += sorted(parts.glob("part-*.parquet"))[:1]
        for path in candidates:
            meta = table_metadata_of(path)
            if meta is not None:
                return meta.get("fingerprint") or {}
        return None


def _head_names(fingerprint: dict[str, Any]) -> set[str]:
    heads = fingerprint.get("heads")
    return {str(h.get("name")) for h in heads if isinstance(h, dict)} if isinstance(heads, list) else set()


def _current_head_names(fingerprint: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fingerprint with built-in heads renamed since it was written under their current
    names (same weights), and those names."""
    from scanner.heads import renamed_head

    heads = fingerprint.get("heads")
    if not isinstance(heads, list):
        return fingerprint, []
    entries = [(renamed_head(h) if isinstance(h, dict) else None, h) for h in heads]
    names = [str(new["name"]) for new, _ in entries if new is not None]
    if not names:
        return fingerprint, []
    return {**fingerprint, "heads": [new or old for new, old in entries]}, names


def describe_differences(earlier: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints, one entry per top-level key."""
    out = []
    for key in sorted(set(earlier) | set(current)):
        a, b = earlier.get(key), current.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            inner = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            out.append(f"{key}: " + ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in inner))
        elif key == "columns" and isinstance(a, list) and isinstance(b, list):
            added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
            out.append("columns: " + ", ".join(filter(None, [
                f"added {added}" if added else "", f"removed {removed}" if removed else ""]))
                       or "columns: reordered")
        else:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
