"""Query vectors: a clip embedded with the vectors' own backbone, or an event's stored vectors."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ConfigError, DecodeError, ScannerError
from scanner.output.vectors import Vectors, backbone_identity, identity_mismatch

log = logging.getLogger(__name__)

DEFAULT_CLIP_LABEL = "similar"
"""The hits' label for a clip query without ``--label`` (review's "other class" corrects it)."""


@dataclass(frozen=True)
class Query:
    """One thing to look for.

    Attributes:
        name: What the hits' ``query`` column says (the clip's path, or ``path@start-end``).
        label: The hits' ``label``.
        vectors: ``[patches, dim]`` float32, the query's patches in time order: a hit is a
            run of as many consecutive stored windows, scored by their mean cosine.
        phases: The same clip embedded from later starts (sub-hop shifts): a clip cut off
            the stored windows' grid matches them best in the phase that is on it.
        path, start_s, end_s: For an event query, its own stretch, left out of its hits.
    """

    name: str
    label: str
    vectors: NDArray[np.float32]
    phases: tuple[NDArray[np.float32], ...] = ()
    path: str | None = None
    start_s: float = 0.0
    end_s: float = 0.0


def load_backbone_for(vectors: Vectors, model: str | None = None) -> Any:
    """Loads the backbone that made ``vectors`` and checks it is the same model and settings.

    Raises:
        ConfigError: The loaded backbone differs (another file, window or hop).
    """
    from scanner.backbones import load_backbone

    name = vectors.identity.get("name")
    if not name:
        raise ConfigError(f"{vectors.source} records no backbone; cannot embed a query for it")
    options = {k: vectors.identity[k] for k in ("layer",) if k in vectors.identity}
    backbone = load_backbone(name, model, **options)
    check_backbone(vectors, backbone)
    return backbone


def check_backbone(vectors: Vectors, backbone: Any) -> None:
    """Raises ConfigError unless ``backbone`` is the one recorded with ``vectors``."""
    bad = identity_mismatch(vectors.identity, backbone_identity(backbone))
    if bad:
        raise ConfigError(f"the vectors in {vectors.source} were made with another "
                          f"{vectors.identity.get('name')} ({'; '.join(bad)}); embed queries "
                          f"with the same model (--model) or scan again")


PHASES = 4
"""Sub-hop starts a clip is embedded from (YAMNet: every 0.12 s of its 0.48 s hop)."""


def embed_clip(path: str | os.PathLike[str], backbone: Any, *, phases: int = PHASES
               ) -> list[NDArray[np.float32]]:
    """``[patches, dim]`` embeddings of a clip (decoded to the backbone's rate), from its
    start and from ``phases - 1`` later starts within one hop (while a patch still fits)."""
    from scanner.audio.decode import decode_task
    from scanner.records import AudioFile, DecodeFailure, DecodeTask

    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise ScannerError(f"cannot read query clip {p}: {e}") from e
    clip = decode_task(DecodeTask(AudioFile(p, st.st_size, st.st_mtime_ns)),
                       sample_rate_hz=backbone.sample_rate_hz)
    if isinstance(clip, DecodeFailure):
        raise DecodeError(f"query clip {p}: {clip.message}", kind=clip.kind)
    wave = clip.waveform
    rate = backbone.sample_rate_hz
    out = []
    for k in range(max(1, phases)):
        shift = int(round(k * backbone.hop_s / max(1, phases) * rate))
        if k and len(wave) - shift < backbone.window_s * rate:
            break
        out.append(np.asarray(backbone.embed(wave[shift:]).embeddings, np.float32))
    return out


def clip_queries(clips: list[str | os.PathLike[str]], vectors: Vectors, *, backbone: Any = None,
                 model: str | None = None, label: str | None = None) -> list[Query]:
    """One query per clip: its patch embeddings (the backbone is loaded once)."""
    if not clips:
        return []
    if backbone is None:
        backbone = load_backbone_for(vectors, model)
    else:
        check_backbone(vectors, backbone)
    out = []
    for clip in clips:
        first, *later = embed_clip(clip, backbone)
        out.append(Query(str(Path(clip).expanduser().resolve()), label or DEFAULT_CLIP_LABEL,
                         first, tuple(later)))
    return out


def event_queries(table: Any, vectors: Vectors) -> list[Query]:
    """One query per event row (``path``, ``start_s``, ``end_s``[, ``label``]): the stored
    vectors of that file that overlap it, in time order; no audio is decoded or embedded."""
    need = {"path", "start_s", "end_s"}
    if not need <= set(table.column_names):
        raise ConfigError(f"an events table needs columns {sorted(need)}, has {table.column_names}")
    by_path: dict[str, NDArray[np.intp]] = {}
    order = np.argsort(vectors.paths, kind="stable")
    paths_sorted = vectors.paths[order]
    out, missing = [], 0
    for row in table.to_pylist():
        path, t0, t1 = str(row["path"]), float(row["start_s"]), float(row["end_s"])
        if path not in by_path:
            lo = np.searchsorted(paths_sorted, path, side="left")
            hi = np.searchsorted(paths_sorted, path, side="right")
            by_path[path] = order[lo:hi]
        rows = by_path[path]
        rows = rows[(vectors.starts_s[rows] < t1) & (vectors.ends_s[rows] > t0)]
        if len(rows) == 0:
            missing += 1
            continue
        rows = rows[np.argsort(vectors.starts_s[rows], kind="stable")]
        vec = vectors.vectors[rows].astype(np.float32)
        label = str(row.get("label") or DEFAULT_CLIP_LABEL)
        out.append(Query(f"{path}@{t0:.2f}-{t1:.2f}", label, vec, path=path, start_s=t0, end_s=t1))
    if missing:
        log.warning("%d event(s) have no vectors in %s (another scan?): skipped", missing,
                    vectors.source)
    return out
