"""Embedding export (``scan --embeddings``): one vector per backbone patch, with path and time.

Beside ``results.parquet`` the scan writes ``results.embeddings.parquet`` (one backbone) or
``results.embeddings.<backbone>.parquet`` (several; their dimensions differ). Columns:

| column | type | meaning |
| --- | --- | --- |
| ``path`` | string | the file, as in the results table |
| ``start_s``, ``end_s`` | float64 | the patch in file time (YAMNet: 0.96 s at a 0.48 s hop) |
| ``backbone`` | string | the backbone's registry name |
| ``vector`` | fixed_size_list<float16>[dim] | the patch embedding |

Vectors are stored as **float16**: half the size of float32, and cosine similarities of
YAMNet embeddings move by less than 1e-3 (values outside float16's range, +-65504, are
clipped). The Parquet metadata (key ``scanner``) holds the backbone's identity and settings
(``name``, ``sha256``, ``window_s``, ``hop_s``, ``embedding_dim``...), which ``scanner
search`` checks before it compares a query with these vectors. Vectors are the backbone's
own patches, not the head's windows: they stay valid whatever head later reads them.

Like the results table, the vectors are committed in parts as the scan goes (one part per
commit) and merged into the final table, written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ScannerError
from scanner.output.writer import ParquetFormat, TableSink

if TYPE_CHECKING:
    from scanner.classify import Classifier
    from scanner.records import FileResult

log = logging.getLogger(__name__)

VECTOR_DTYPE = np.float16
FLOAT16_MAX = float(np.finfo(np.float16).max)
KIND = "embeddings"
IDENTITY_KEYS = ("name", "sha256", "format", "embedding_dim", "sample_rate_hz", "window_s",
                 "hop_s", "layer", "do_normalize")
"""What two vector sets (or a vector set and a loaded backbone) must agree on to be compared.
``source`` is left out: the same model file sits at different paths on different machines."""


def vectors_path(out: Path, backbone: str | None = None) -> Path:
    """``r.parquet`` -> ``r.embeddings.parquet``; with ``backbone`` (several backbones),
    ``r.embeddings.<backbone>.parquet``. Always Parquet, even beside a CSV table."""
    out = Path(out)
    kind = KIND if backbone is None else f"{KIND}.{backbone}"
    return out.with_name(f"{out.stem}.{kind}.parquet")


def backbone_identity(backbone: Any) -> dict[str, Any]:
    """A loaded backbone's identity and settings, as recorded beside its vectors."""
    return {**backbone.identity, **backbone.config()}


def identity_mismatch(recorded: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """The identity keys on which ``recorded`` and ``actual`` disagree (both present)."""
    out = []
    for key in IDENTITY_KEYS:
        a, b = recorded.get(key), actual.get(key)
        if a is None or b is None:
            continue
        if isinstance(a, float) or isinstance(b, float):
            same = abs(float(a) - float(b)) < 1e-9
        else:
            same = a == b
        if not same:
            out.append(f"{key}={a!r} vs {b!r}")
    return out


def vector_schema(dim: int, identity: Mapping[str, Any], options: Mapping[str, Any] | None = None
                  ) -> Any:
    """The arrow schema of a vector table for ``dim``-d vectors, with its metadata."""
    import pyarrow as pa

    from scanner import __version__

    meta = {"tool": "scanner", "tool_version": __version__, "kind": KIND,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "vector_dtype": "float16", "backbone": dict(identity), "backbones": [dict(identity)],
            "options": dict(options or {})}
    return pa.schema([("path", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                      ("backbone", pa.string()),
                      ("vector", pa.list_(pa.float16(), dim))],
                     metadata={b"scanner": json.dumps(meta, default=str).encode()})


def vector_table(schema: Any, paths: Sequence[str], starts_s: NDArray[np.floating],
                 ends_s: NDArray[np.floating], backbone: str, vectors: NDArray[np.floating]) -> Any:
    """An arrow table of ``[n, dim]`` vectors (cast to float16, clipped to its range)."""
    import pyarrow as pa

    v = np.clip(np.nan_to_num(np.asarray(vectors, np.float32)), -FLOAT16_MAX, FLOAT16_MAX)
    v = v.astype(VECTOR_DTYPE)
    dim = schema.field("vector").type.list_size
    if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(f"vectors must be [n, {dim}], got {list(v.shape)}")
    v = np.ascontiguousarray(v)
    flat = pa.Array.from_buffers(pa.float16(), v.size, [None, pa.py_buffer(v)])  # no copy
    return pa.Table.from_arrays(
        [pa.array(list(paths), pa.string()), pa.array(np.asarray(starts_s, np.float64)),
         pa.array(np.asarray(ends_s, np.float64)), pa.array([backbone] * len(v), pa.string()),
         pa.FixedSizeListArray.from_arrays(flat, dim)], schema=schema)


DICTIONARY_COLUMNS = ["path", "backbone"]
"""Only these are dictionary-encoded: a dictionary of float16 values costs 3x the write time
and saves nothing (measured on 3,600 x 1024 vectors: 0.68 s against 0.20 s)."""


class _VectorParquet(ParquetFormat):
    def write(self, table: Any, path: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=10_000, use_dictionary=DICTIONARY_COLUMNS)


class _PartSink(TableSink):
    """A :class:`TableSink` that commits arrow tables (vectors are too many for Python rows)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.format = _VectorParquet()

    def write_table(self, table: Any) -> None:
        if table.num_rows == 0:
            return
        self._n_parts += 1
        final = self.parts / f"part-{self._n_parts:06d}.parquet"
        tmp = self.parts / f".tmp-{self._n_parts:06d}.parquet"
        self.format.write(table, tmp)
        os.replace(tmp, final)


class VectorSink:
    """The per-file chain's vector output: every patch of every ok file, committed in parts.

    Args:
        out: The results table's path; vectors go to :func:`vectors_path` beside it.
        classifier: The scan's models; one vector table per backbone.
        config: The scan's settings (its ``to_dict()`` is recorded in the metadata).
        resume: Keep an earlier run's vectors and add to them (as the results table does).
    """

    def __init__(self, out: Path, classifier: Classifier, config: Any, *, resume: bool) -> None:
        options = config.to_dict() if hasattr(config, "to_dict") else {}
        backbones = classifier.backbones
        several = len(backbones) > 1
        self.sinks: dict[str, _PartSink] = {}
        self.schemas: dict[str, Any] = {}
        for b in backbones:
            schema = vector_schema(b.embedding_dim, backbone_identity(b), options)
            path = vectors_path(out, b.name if several else None)
            self.schemas[b.name] = schema
            self.sinks[b.name] = _PartSink(path, schema, fmt="parquet", resume=resume)
        # per backbone: (path, starts_s, ends_s, [patches, dim]) of each file since the last commit
        self._pending: dict[str, list[tuple[str, Any, Any, Any]]] = {name: [] for name in self.sinks}

    @property
    def paths(self) -> dict[str, Path]:
        """The final vector table of each backbone."""
        return {name: sink.out for name, sink in self.sinks.items()}

    def add(self, result: FileResult, row: Mapping[str, Any], analysis: Any = None) -> None:
        """Adds one file's patch vectors (nothing for a failed file).

        Args:
            result: The file's embeddings (``starts_s`` in file time).
            row: Its results row (``status``, ``path``, ``duration_s``).
            analysis: The file's window analysis; unused (vectors are the backbone's own
                patches), accepted so every sink of the chain is called alike.
        """
        if row.get("status") != "ok" or not result.ok:
            return
        duration = row.get("duration_s")
        info = getattr(result, "info", None)
        if info is not None and info.truncated_to_s is not None:
            duration = min(duration or np.inf, info.truncated_to_s)
        for name in self.schemas:
            emb = result.embeddings.get(name)
            if emb is None or emb.n_patches == 0:
                continue
            starts = np.asarray(emb.starts_s, np.float64)
            ends = starts + emb.window_s
            if duration is not None:
                ends = np.minimum(ends, max(float(duration), 0.0))
            self._pending[name].append((row["path"], np.round(starts, 3),
                                        np.round(np.maximum(ends, starts), 3),
                                        np.asarray(emb.embeddings)))

    def commit(self, number: int | None = None) -> None:
        """Writes what was added since the last commit as one part per backbone.

        ``number`` is the driver's commit count, for the log only: parts are numbered by
        the sink itself (after the highest part already on disk, so resumed runs never reuse one).
        """
        for name, files in self._pending.items():
            if files:
                paths = [p for p, starts, _, _ in files for _ in range(len(starts))]
                self.sinks[name].write_table(vector_table(
                    self.schemas[name], paths, np.concatenate([f[1] for f in files]),
                    np.concatenate([f[2] for f in files]), name,
                    np.concatenate([f[3] for f in files])))
                log.debug("vectors: committed %d files for %s (commit %s)", len(files), name,
                          number)
        self._pending = {name: [] for name in self.sinks}

    def abort(self) -> None:
        """Leaves committed parts for ``--resume``; drops what was not committed."""
        self._pending = {name: [] for name in self.sinks}
        for sink in self.sinks.values():
            sink.abort()

    def finish(self, drop_paths: Iterable[str] = ()) -> dict[str, int]:
        """Writes each final vector table atomically; returns the vectors per backbone."""
        self.commit()
        drop = set(drop_paths)
        return {name: sink.finish(drop_paths=drop) for name, sink in self.sinks.items()}


# -- reading ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vectors:
    """A vector table in memory.

    Attributes:
        paths: ``[n]`` file of each vector.
        starts_s, ends_s: ``[n]`` the patch in file time.
        vectors: ``[n, dim]`` float16 (as stored).
        identity: The backbone identity recorded with them.
        source: The table read.
    """

    paths: NDArray[np.object_]
    starts_s: NDArray[np.float64]
    ends_s: NDArray[np.float64]
    vectors: NDArray[np.float16]
    identity: dict[str, Any]
    source: Path

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``scanner`` metadata of a vector table (ScannerError if it is not one)."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ScannerError(f"cannot read embeddings table {path}: {e}") from e
    raw = (schema.metadata or {}).get(b"scanner")
    meta = json.loads(raw) if raw else {}
    if meta.get("kind") != KIND or "vector" not in schema.names:
        raise ScannerError(f"{path} is not an embeddings table (scan with --embeddings "
                           f"writes r.embeddings.parquet)")
    return meta


def read_vectors(path: str | os.PathLike[str]) -> Vectors:
    """Reads a vector table written by :class:`VectorSink` (ScannerError if it is not one)."""
    import pyarrow.parquet as pq

    path = Path(path)
    meta = read_metadata(path)
    table = pq.read_table(path, columns=["path", "start_s", "end_s", "vector"])
    col = table.column("vector").combine_chunks()
    dim = col.type.list_size
    values = col.values.to_numpy(zero_copy_only=False)
    if len(col) and col.offset:
        values = values[col.offset * dim:]
    vectors = np.asarray(values[: len(col) * dim], VECTOR_DTYPE).reshape(len(col), dim)
    paths = np.asarray(table.column("path").to_pylist(), dtype=object)
    starts = table.column("start_s").to_numpy()
    ends = table.column("end_s").to_numpy()
    order = np.lexsort((starts, paths.astype(str)))
    if np.any(order != np.arange(len(order))):  # search reads a file's windows in time order
        paths, starts, ends, vectors = paths[order], starts[order], ends[order], vectors[order]
    return Vectors(paths, starts, ends, vectors, dict(meta.get("backbone") or {}), path)
