"""How decoded files and FileResults travel between Ray's tasks, actors and the driver.

Ray Data moves Arrow tables: a decoded file is one row (its parts' samples end to end and
their records as JSON), and a FileResult is one row (its info or failure as JSON, its
embeddings as an ``.npz`` blob, read back with ``allow_pickle=False``: no pickle).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from scanner.records import (
    AudioFile,
    ClipInfo,
    DecodedClip,
    DecodeFailure,
    DecodeTask,
    Embedding,
    FileResult,
)

Item = DecodedClip | DecodeFailure

FILE_SCHEMA = pa.schema([("path", pa.string()), ("size_bytes", pa.int64()),
                         ("mtime_ns", pa.int64())])
"""One discovered file (an AudioFile)."""
DECODED_SCHEMA = FILE_SCHEMA.append(pa.field("waveform", pa.large_list(pa.float32()))) \
    .append(pa.field("parts", pa.string()))
"""One decoded file: all its parts' samples end to end, and their records as JSON."""
RESULT_SCHEMA = FILE_SCHEMA.append(pa.field("record", pa.string())) \
    .append(pa.field("arrays", pa.large_binary()))
"""One FileResult: its info or failure as JSON, its embeddings as an ``.npz`` blob."""


def pack_files(decoded: Sequence[Sequence[Item]]) -> pa.Table:
    """Decoded files (each: its parts' records, in order) -> DECODED_SCHEMA rows."""
    waves = [p.waveform for parts in decoded for p in parts if isinstance(p, DecodedClip)]
    lengths = [sum(len(p.waveform) for p in parts if isinstance(p, DecodedClip))
               for parts in decoded]
    offsets = np.zeros(len(decoded) + 1, np.int64)
    offsets[1:] = np.cumsum(lengths)
    values = np.concatenate(waves).astype(np.float32, copy=False) if waves \
        else np.zeros(0, np.float32)
    files = [parts[0].task.file for parts in decoded]
    return pa.table({
        "path": [str(f.path) for f in files],
        "size_bytes": [f.size_bytes for f in files],
        "mtime_ns": [f.mtime_ns for f in files],
        "waveform": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)),
        "parts": [json.dumps([_part_record(p) for p in parts], default=_plain)
                  for parts in decoded],
    }, schema=DECODED_SCHEMA)


def unpack_files(batch: pa.Table) -> list[list[Item]]:
    """DECODED_SCHEMA rows -> each file's records, as decode_task made them."""
    out = []
    waves = _list_values(batch.column("waveform"))
    for path, size, mtime, wave, parts in zip(
            batch.column("path").to_pylist(), batch.column("size_bytes").to_pylist(),
            batch.column("mtime_ns").to_pylist(), waves, batch.column("parts").to_pylist(),
            strict=True):
        file = AudioFile(Path(path), size, mtime)
        items: list[Item] = []
        pos = 0
        for record in json.loads(parts):
            task = DecodeTask(file=file, **record.pop("task"))
            n = record.pop("samples")
            if record.pop("record") == "clip":
                # a copy: Ray's buffers are read-only and a backbone may write to its input
                items.append(DecodedClip(task=task, waveform=np.array(wave[pos:pos + n]),
                                         **record))
                pos += n
            else:
                items.append(DecodeFailure(task=task, **{**record,
                                                         "details": tuple(record["details"])}))
        out.append(items)
    return out


def _part_record(item: Item) -> dict[str, Any]:
    record = {f.name: getattr(item, f.name) for f in fields(item)
              if f.name not in ("task", "waveform")}
    record["task"] = {f.name: getattr(item.task, f.name) for f in fields(DecodeTask)
                      if f.name != "file"}
    record["record"] = "clip" if isinstance(item, DecodedClip) else "failure"
    record["samples"] = len(item.waveform) if isinstance(item, DecodedClip) else 0
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _list_values(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Each row of a ``large_list<float32>`` column as a numpy view (no copy)."""
    out = []
    for chunk in column.chunks:
        values = chunk.values.to_numpy(zero_copy_only=False)
        offsets = chunk.offsets.to_numpy()  # of a sliced chunk: into the unsliced values
        out += [values[offsets[i]:offsets[i + 1]] for i in range(len(chunk))]
    return out


def pack_results(results: Sequence[FileResult]) -> pa.Table:
    """FileResults -> RESULT_SCHEMA rows (info/failure as JSON, embeddings as ``.npz``)."""
    import io

    records, blobs = [], []
    for result in results:
        record: dict[str, Any] = {"info": None, "failure": None, "window_s": {}}
        if result.failure is not None:
            failure = {f.name: getattr(result.failure, f.name) for f in fields(DecodeFailure)
                       if f.name != "task"}
            failure["task"] = {f.name: getattr(result.failure.task, f.name)
                               for f in fields(DecodeTask) if f.name != "file"}
            record["failure"] = failure
        if result.info is not None:
            record["info"] = {f.name: getattr(result.info, f.name) for f in fields(ClipInfo)}
        arrays: dict[str, np.ndarray] = {}
        for k, (name, emb) in enumerate(result.embeddings.items()):
            record["window_s"][name] = emb.window_s
            arrays[f"{k}.embeddings"] = emb.embeddings
            arrays[f"{k}.starts_s"] = emb.starts_s
            if emb.scores is not None:
                arrays[f"{k}.scores"] = emb.scores
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        records.append(json.dumps(record, default=_plain))
        blobs.append(buffer.getvalue())
    return pa.table({
        "path": [str(r.file.path) for r in results],
        "size_bytes": [r.file.size_bytes for r in results],
        "mtime_ns": [r.file.mtime_ns for r in results],
        "record": records,
        "arrays": pa.array(blobs, pa.large_binary()),
    }, schema=RESULT_SCHEMA)


def unpack_results(batch: pa.Table) -> list[FileResult]:
    """RESULT_SCHEMA rows -> FileResults, as the actor made them."""
    import io

    out = []
    for path, size, mtime, record, blob in zip(
            batch.column("path").to_pylist(), batch.column("size_bytes").to_pylist(),
            batch.column("mtime_ns").to_pylist(), batch.column("record").to_pylist(),
            batch.column("arrays").to_pylist(), strict=True):
        file = AudioFile(Path(path), size, mtime)
        meta = json.loads(record)
        failure = None
        if meta["failure"] is not None:
            f = meta["failure"]
            failure = DecodeFailure(task=DecodeTask(file=file, **f.pop("task")),
                                    **{**f, "details": tuple(f["details"])})
        info = ClipInfo(**meta["info"]) if meta["info"] is not None else None
        embeddings = {}
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            for k, (name, window_s) in enumerate(meta["window_s"].items()):
                scores = arrays[f"{k}.scores"] if f"{k}.scores" in arrays.files else None
                embeddings[name] = Embedding(arrays[f"{k}.embeddings"], arrays[f"{k}.starts_s"],
                                             float(window_s), scores)
        out.append(FileResult(file, info, embeddings, failure))
    return out
