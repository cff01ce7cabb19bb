"""One row per file: the results table's columns, and how a FileResult becomes a row."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scanner.classify import Prediction
    from scanner.records import FileResult

BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "string"),
    ("status", "string"),
    ("error", "string"),
    ("error_kind", "string"),
    ("duration_s", "float64"),
    ("sample_rate", "int64"),
    ("channels", "int64"),
    ("decoder", "string"),
    ("seconds_taken", "float64"),
    ("size_bytes", "int64"),
    ("mtime", "timestamp"),
    ("label", "label"),
    ("confidence", "float64"),
)


def column_types(classes: Sequence[str], backbones: Sequence[str]) -> dict[str, str]:
    """Column name -> arrow type name, in table order (without the event summary, which
    :func:`scanner.events.detection.verdict_columns` adds).

    ``mean_prob_<class>``: the whole file's mean-pooled probabilities. With several
    backbones, each backbone's own come as ``<backbone>_mean_prob_<class>``.
    """
    cols = dict(BASE_COLUMNS)
    for c in classes:
        cols[f"mean_prob_{c}"] = "float64"
    if len(backbones) > 1:
        for b in backbones:
            for c in classes:
                cols[f"{b}_mean_prob_{c}"] = "float64"
    cols["backbone"] = "string"
    cols["head"] = "string"
    return cols


def arrow_schema(columns: dict[str, str], metadata: dict[str, str] | None = None):
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
             "bool": pa.bool_(), "timestamp": pa.timestamp("ns", tz="UTC"),
             "label": pa.dictionary(pa.int32(), pa.string())}
    return pa.schema([(name, types[t]) for name, t in columns.items()], metadata=metadata)


def path_text(path: str | os.PathLike[str]) -> str:
    """A path as the table's text: valid UTF-8, unique and reversible (see :func:`text_path`).

    POSIX names are bytes; one that is not UTF-8 (a Latin-1 name from an old disk) reaches
    Python with surrogate escapes, which Arrow refuses. Its odd bytes are written as ``\\xNN``
    so the row still names the file and ``--resume`` still recognises it. On POSIX, so that
    such a name never collides with one that holds the characters ``\\xNN`` literally, a
    backslash in a name is written doubled (``\\\\``); backslashes are Windows' separators and
    are left alone there.
    """
    text = os.fspath(path)
    if os.sep == "\\":
        return text
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def text_path(text: str) -> str:
    """The inverse of :func:`path_text`: the path as Python names it (surrogate escapes)."""
    if os.sep == "\\" or "\\" not in text:
        return text
    import re

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        return "\\" if token == "\\\\" else bytes([int(token[2:], 16)]).decode(
            "utf-8", "surrogateescape")

    return re.sub(r"\\\\|\\x[0-9a-f]{2}", one, text)


def build_row(result: FileResult, prediction: Prediction | None, *, classes: Sequence[str],
              backbone: str, head: str, error: str | None = None,
              error_kind: str | None = None) -> dict[str, Any]:
    """The table row for one file. ``prediction`` is None for a file that failed."""
    info, failure = result.info, result.failure
    row: dict[str, Any] = {
        "path": path_text(result.file.path),
        "status": "ok",
        "error": None,
        "error_kind": None,
        "duration_s": info.duration_s if info else None,
        "sample_rate": info.orig_sample_rate_hz if info else None,
        "channels": info.channels if info else None,
        "decoder": info.decoder if info else (failure.decoder if failure else None),
        "seconds_taken": info.seconds_taken if info else (failure.seconds_taken if failure else None),
        "size_bytes": result.file.size_bytes,
        "mtime": result.file.mtime_ns,
        "label": None,
        "confidence": None,
        "backbone": backbone,
        "head": head,
    }
    if failure is not None or error is not None:
        row["status"] = "error"
        row["error"] = error or failure.message
        row["error_kind"] = error_kind or (failure.kind if failure else "internal")
        return row
    if info and info.truncated_to_s is not None:
        row["error"] = f"cut to the first {info.truncated_to_s:g} s (--max-duration)"
        row["error_kind"] = "too_long"
    probs = prediction.probs[0]
    best = int(np.argmax(probs))
    row["label"] = classes[best]
    row["confidence"] = float(probs[best])
    for c, p in zip(classes, probs, strict=True):
        row[f"mean_prob_{c}"] = float(p)
    if len(prediction.per_backbone) > 1:
        for b, p_b in prediction.per_backbone.items():
            for c, p in zip(classes, p_b[0], strict=True):
                row[f"{b}_mean_prob_{c}"] = float(p)
    return row
