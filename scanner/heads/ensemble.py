"""A head that averages other heads of one backbone: window by window, and for whole files.

A folder of kind ``ensemble`` holds its members as sub-folders (each a head folder of its
own, checked at load like any other) and, in ``head.json``, their weights and the detection
thresholds and settings chosen for the average on validation soundscapes::

    {"format": "scanner-head", "kind": "ensemble", "name": "...",
     "members": [{"folder": "clip", "weight": 0.5}, {"folder": "context", "weight": 0.5}],
     "thresholds": {...}, "detection": {...}}

So a whole-clip head, good at short clips, and a context head, which sees its neighbours in
a long recording, give one probability per window, and the scan's events come from that.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ScannerError
from scanner.heads import register_head
from scanner.heads.base import Head
from scanner.heads.mlp import FORMAT, FORMAT_VERSION, HEAD_JSON
from scanner.records import Embedding


@register_head("ensemble")
class EnsembleHead(Head):
    """The weighted mean of its members' probabilities.

    Args:
        members: Heads of one backbone with the same classes in the same order.
        weights: One positive weight per member (normalised to sum to 1).
        thresholds, detection: As in :class:`~scanner.heads.context.ContextHead`, for the mean.
        name: Head name.
        extra: Anything else for ``head.json``.
        folders: Each member's sub-folder name (how :meth:`metadata` lists them).
    """

    kind = "ensemble"

    def __init__(self, members: Sequence[Head], weights: Sequence[float], *,
                 thresholds: dict[str, float] | None = None,
                 detection: dict[str, Any] | None = None, name: str = "ensemble",
                 extra: dict[str, Any] | None = None,
                 folders: Sequence[str] | None = None) -> None:
        if len(members) < 1 or len(weights) != len(members):
            raise ValueError(f"an ensemble needs one weight per member, got {len(members)} "
                             f"members and {len(weights)} weights")
        if not all(math.isfinite(float(w)) and float(w) > 0 for w in weights):
            raise ValueError(f"ensemble weights must be positive numbers, got {list(weights)}")
        first = members[0]
        for m in members[1:]:
            if tuple(m.classes) != tuple(first.classes):
                raise ValueError(f"ensemble members disagree on classes: {list(first.classes)} "
                                 f"and {list(m.classes)}")
            if m.backbone != first.backbone:
                raise ValueError(f"ensemble members read different backbones: {first.backbone!r} "
                                 f"and {m.backbone!r}")
            if m.features != first.features:
                raise ValueError("ensemble members read different backbone outputs")
        total = float(sum(float(w) for w in weights))
        self.members = list(members)
        self.weights = [float(w) / total for w in weights]
        self.classes = tuple(first.classes)
        self.backbone = first.backbone
        self.features = first.features
        self.pooling = "mean"
        self.backbone_config = dict(getattr(first, "backbone_config", {}) or {})
        self.thresholds = {k: float(v) for k, v in (thresholds or {}).items()}
        self.detection = dict(detection or {})
        self.name = name
        self.extra = dict(extra or {})
        self.folders = list(folders or [f"member{i}" for i in range(len(members))])

    @property
    def input_dim(self) -> int | None:
        return self.members[0].input_dim

    def _mean(self, parts: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
        out = np.zeros_like(np.asarray(parts[0], np.float32))
        for w, p in zip(self.weights, parts, strict=True):
            out += np.float32(w) * np.asarray(p, np.float32)
        return out

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The mean for pooled features all members read as they are; an ensemble with a
        member that derives its own input (an AudioSet head's score layer) is asked through
        :meth:`predict_file` and :meth:`predict_windows` instead."""
        if any(getattr(m, "derived_features", False) for m in self.members):
            raise ScannerError(f"ensemble {self.name!r} has a member that derives its input from "
                               "the patches: use predict_file or predict_windows")
        return self._mean([m.predict_proba(x) for m in self.members])

    def predict_file(self, emb: Embedding) -> NDArray[np.float32]:
        return self._mean([m.predict_file(emb) for m in self.members])

    def predict_windows(self, emb: Embedding, starts_s: NDArray[np.float64],
                        ends_s: NDArray[np.float64]) -> NDArray[np.float32]:
        return self._mean([m.predict_windows(emb, starts_s, ends_s) for m in self.members])

    def check_backbone(self, backbone_config: dict[str, Any]) -> None:
        for m in self.members:
            m.check_backbone(backbone_config)

    def check_model(self, backbone: Any) -> None:
        for m in self.members:
            m.check_model(backbone)

    def metadata(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                "name": self.name, "classes": list(self.classes),
                "backbone": self.backbone_config,
                "members": [{"folder": f, "weight": w, "name": m.name, "kind": m.kind}
                            for f, w, m in zip(self.folders, self.weights, self.members,
                                               strict=True)],
                "thresholds": self.thresholds, "detection": self.detection, **self.extra}

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes ``head.json`` and each member into its sub-folder (members need ``save``)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for sub, m in zip(self.folders, self.members, strict=True):
            save = getattr(m, "save", None)
            if save is None:
                raise ScannerError(f"ensemble member {m.name!r} ({m.kind}) cannot be saved")
            save(out / sub)
        (out / HEAD_JSON).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> EnsembleHead:
        """Reads an ensemble folder and each member (checked as its own kind); ScannerError
        on anything malformed, a member outside the folder included."""
        from scanner.heads import HEADS
        from scanner.heads.checks import check_kind, read_head_json

        src = Path(folder)
        meta = read_head_json(src / HEAD_JSON)
        if meta.get("format") != FORMAT or meta.get("kind") != cls.kind:
            raise ScannerError(f"{src / HEAD_JSON} is not an ensemble head of this tool "
                               f"(format={meta.get('format')!r}, kind={meta.get('kind')!r})")
        entries = meta.get("members")
        if not isinstance(entries, list) or not entries:
            raise ScannerError(f"{src / HEAD_JSON}: 'members' must be a non-empty list")
        members, weights, folders = [], [], []
        root = src.resolve()
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("folder"), str):
                raise ScannerError(f"{src / HEAD_JSON}: each member needs a 'folder'")
            sub = (src / entry["folder"]).resolve()
            if sub.parent != root:
                raise ScannerError(f"{src / HEAD_JSON}: member folder {entry['folder']!r} "
                                   "must be a sub-folder of the ensemble")
            member_meta = sub / HEAD_JSON
            if not member_meta.is_file():
                raise ScannerError(f"{src}: member {entry['folder']!r} has no {HEAD_JSON}")
            kind = check_kind(read_head_json(member_meta), member_meta, HEADS.names())
            if kind == cls.kind:
                raise ScannerError(f"{src}: an ensemble cannot hold another ensemble")
            members.append(HEADS.get(kind).load(sub))
            weights.append(entry.get("weight", 1.0))
            folders.append(entry["folder"])
        known = {"format", "format_version", "kind", "name", "classes", "backbone", "members",
                 "thresholds", "detection", "tool_version"}
        try:
            head = cls(members, [float(w) for w in weights], thresholds=meta.get("thresholds"),
                       detection=meta.get("detection"), name=meta.get("name", src.name),
                       extra={k: v for k, v in meta.items() if k not in known}, folders=folders)
        except (TypeError, ValueError) as e:
            raise ScannerError(f"head {src} is malformed: {e}") from e
        if meta.get("classes") not in (None, list(head.classes)):
            raise ScannerError(f"head {src}: 'classes' {meta.get('classes')} differ from its "
                               f"members' {list(head.classes)}")
        return head


def write_ensemble(folder: str | os.PathLike[str], member_dirs: Sequence[str | os.PathLike[str]],
                   weights: Sequence[float], *, thresholds: dict[str, float],
                   detection: dict[str, Any], name: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """Makes an ensemble head folder from existing head folders, copied in unchanged (so each
    member keeps its identity), with the thresholds and detection settings chosen for their
    mean. ``folder`` must not exist yet; it is written under a temporary name and renamed, so
    a failure leaves nothing half-made. Returns the folder."""
    import shutil
    import tempfile

    from scanner.heads import load_head

    out = Path(folder)
    if out.exists():
        raise ScannerError(f"{out} exists already: an ensemble is written into a new folder")
    sources = [Path(d) for d in member_dirs]
    subs = [s.resolve().name for s in sources]
    if len(set(subs)) != len(subs):
        raise ScannerError(f"ensemble members need distinct folder names, got {subs}")
    head = EnsembleHead([load_head(s) for s in sources], weights, thresholds=thresholds,
                        detection=detection, name=name, extra=extra, folders=subs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for src, sub in zip(sources, subs, strict=True):
            shutil.copytree(src, tmp / sub, symlinks=False)
        (tmp / HEAD_JSON).write_text(json.dumps(head.metadata(), indent=2) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
