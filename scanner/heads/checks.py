"""Checks a head folder before it classifies anything: structure, shapes and finite values.

A head with a NaN or infinite weight, or a zero standard deviation, labels every file with
confidence NaN; a malformed ``head.json`` would otherwise surface as a ``KeyError`` deep in
loading. Every problem here raises :class:`~scanner.errors.HeadError` with one line naming
the file and what is wrong, which the CLI turns into exit code 3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import HeadError

HEAD_JSON = "head.json"
_LAYER_KEY = re.compile(r"layer(\d+)\.(weight|bias)$")


def read_head_json(path: Path) -> dict[str, Any]:
    """``head.json`` as a dict, or HeadError (missing, unreadable, not JSON, not an object)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HeadError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HeadError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise HeadError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise HeadError(f"{path} must hold a JSON object, not a {type(meta).__name__}")
    return meta


def check_kind(meta: Mapping[str, Any], path: Path, known: list[str]) -> str:
    """The head's ``kind`` (default ``mlp``), or HeadError naming the known kinds."""
    kind = meta.get("kind", "mlp")
    if not isinstance(kind, str) or kind not in known:
        raise HeadError(f"{path}: unknown head kind {kind!r} (known: {', '.join(known)})")
    return kind


def check_classes(meta: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    """Two or more distinct, non-empty class names."""
    classes = meta.get("classes")
    if classes is None:
        raise HeadError(f"{path} names no classes ('classes' is missing)")
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise HeadError(f"{path}: 'classes' must be a list of non-empty names, got {classes!r}")
    duplicated = sorted({c for c in classes if classes.count(c) > 1})
    if duplicated:
        raise HeadError(f"{path}: class names appear more than once: {', '.join(duplicated)}")
    if len(classes) < 2:
        raise HeadError(f"{path}: a head needs at least two classes, got {classes!r}")
    return tuple(classes)


def check_backbone(meta: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The ``backbone`` object, which must at least name the backbone."""
    backbone = meta.get("backbone")
    if not isinstance(backbone, dict) or not isinstance(backbone.get("name"), str):
        raise HeadError(f"{path}: 'backbone' must be an object with a 'name'")
    return backbone


def check_finite(name: str, values: NDArray[np.floating], path: Path) -> None:
    """Every value finite, or HeadError saying how many are not."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise HeadError(f"{path}: {name} holds {int(bad.sum())} non-finite value(s) "
                        f"(NaN or infinity); the head cannot be used")


def load_safetensors(path: Path) -> dict[str, NDArray[Any]]:
    """A safetensors file as numpy arrays (no pickle), or HeadError."""
    from safetensors.numpy import load_file

    if not path.is_file():
        raise HeadError(f"{path} is missing")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a corrupt file
        raise HeadError(f"cannot read {path}: {e}") from e


def check_mlp(meta: Mapping[str, Any], tensors: Mapping[str, NDArray[Any]], src: Path) -> int:
    """Checks an MLP head's tensors against each other and its ``head.json``.

    Expects ``input.mean``, ``input.std`` (``[in]``, std > 0) and ``layer{i}.weight``
    (``[out, in]``) / ``layer{i}.bias`` (``[out]``) for ``i = 0..n-1``, nothing else, each
    layer's input the previous one's output, the last one's output one per class, and
    every value finite.

    Returns:
        The number of layers.
    """
    weights = src / "weights.safetensors"
    classes = check_classes(meta, src / HEAD_JSON)
    check_backbone(meta, src / HEAD_JSON)
    pre = meta.get("preprocessing", {})
    if not isinstance(pre, dict):
        raise HeadError(f"{src / HEAD_JSON}: 'preprocessing' must be an object")
    for name in ("input.mean", "input.std"):
        if name not in tensors:
            raise HeadError(f"{weights} has no {name!r} tensor")
    layers = {}
    extra = []
    for key in tensors:
        m = _LAYER_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
        elif key not in ("input.mean", "input.std"):
            extra.append(key)
    if extra:
        raise HeadError(f"{weights} holds tensors an MLP head does not use: {', '.join(extra)}")
    n_layers = len(layers)
    if n_layers == 0:
        raise HeadError(f"{weights} holds no layers")
    for i in sorted(layers):
        if layers[i] != {"weight", "bias"}:
            raise HeadError(f"{weights}: layer{i}.weight and layer{i}.bias must both be there")
    if sorted(layers) != list(range(n_layers)):
        raise HeadError(f"{weights}: layers must be numbered 0 to {n_layers - 1}, found "
                        f"{', '.join(map(str, sorted(layers)))}")
    width = None
    for i in range(n_layers):
        w, b = tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise HeadError(f"{weights}: layer{i} has weight {list(w.shape)} and bias "
                            f"{list(b.shape)}; expected [out, in] and [out]")
        if width is not None and w.shape[1] != width:
            raise HeadError(f"{weights}: layer{i} takes {w.shape[1]} inputs but layer{i - 1} "
                            f"gives {width}")
        width = int(w.shape[0])
    if width != len(classes):
        raise HeadError(f"{weights}: the last layer gives {width} outputs for {len(classes)} "
                        f"classes ({', '.join(classes)})")
    dim = int(tensors["layer0.weight"].shape[1])
    for name in ("input.mean", "input.std"):
        if tensors[name].shape != (dim,):
            raise HeadError(f"{weights}: {name} has shape {list(tensors[name].shape)}, "
                            f"expected [{dim}] (the first layer's input)")
    for name, values in tensors.items():
        if not np.issubdtype(values.dtype, np.floating):
            raise HeadError(f"{weights}: {name} is {values.dtype}, not floating point")
        check_finite(name, values, weights)
    std = tensors["input.std"]
    if (std <= 0).any():
        raise HeadError(f"{weights}: input.std has {int((std <= 0).sum())} value(s) <= 0; "
                        f"standardising by them gives NaN or infinity")
    thresholds = meta.get("thresholds")
    if thresholds is not None and not (
            isinstance(thresholds, dict)
            and all(isinstance(v, (int, float)) and np.isfinite(v) for v in thresholds.values())):
        raise HeadError(f"{src / HEAD_JSON}: 'thresholds' must map class names to numbers")
    return n_layers


def read_mlp(src: Path) -> tuple[dict[str, Any], dict[str, NDArray[Any]], int]:
    """Reads and checks an MLP head folder: ``(head.json, tensors, number of layers)``."""
    meta = read_head_json(src / HEAD_JSON)
    tensors = load_safetensors(src / "weights.safetensors")
    return meta, tensors, check_mlp(meta, tensors, src)
