"""The tables' schema and metadata, the same for every engine.

The metadata (key ``scanner`` in the Parquet footer, or the CSV's ``.meta.json`` sidecar)
records the tool, the command line, the scanned roots, the models, the detection settings and
a ``fingerprint`` of everything that changes a row: ``--resume`` refuses to add rows made
with a different fingerprint (see :mod:`scanner.output.guard`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.classify import Classifier
    from scanner.config import ScanConfig
    from scanner.events.segments import SegmentConfig

METADATA_KEY = b"scanner"
TOOL = "scanner"

# ScanConfig fields that change what a row holds (the rest change only speed or which files).
ROW_SETTINGS = ("backbones", "models", "heads", "weights", "backbone_options", "max_duration_s",
                "segments")


def fingerprint(config: ScanConfig, classifier: Classifier, detection: SegmentConfig,
                columns: list[str]) -> dict[str, Any]:
    """Everything that changes a row: models (sha256), heads (sha256), detection, columns."""
    options = config.to_dict()
    return {
        "backbones": [{k: v for k, v in m.backbone.identity.items() if k != "source"}
                      | {"config": m.backbone.config()} for m in classifier.models],
        "heads": [{"name": m.head.name, "kind": m.head.kind,
                   "sha256": getattr(m.head, "sha256", None)} for m in classifier.models],
        "weights": classifier.weights,
        "settings": {k: options[k] for k in ROW_SETTINGS if k not in ("models", "heads")},
        "detection": _detection_key(detection),
        "columns": columns,
    }


def _detection_key(detection: SegmentConfig) -> dict[str, Any]:
    """The detection settings as a fingerprint holds them. A gap of 0, empty per-class
    minimum event lengths and edge thresholds, and a minimum event fraction of 1 are left out,
    and so are short-recording settings without short-recording thresholds, so a table written
    before they existed still resumes under the same settings."""
    out = detection.to_dict()
    if not out.get("max_gap_s"):
        out.pop("max_gap_s", None)
    if out.get("min_event_fraction") == 1.0:
        out.pop("min_event_fraction", None)
    if not out.get("short_thresholds") or not out.get("short_max_s"):
        out.pop("short_thresholds", None)
        out.pop("short_max_s", None)
    for key in ("class_min_event_s", "edge_thresholds"):
        if not out.get(key):
            out.pop(key, None)
    return out


def table_metadata(config: ScanConfig, classifier: Classifier, detection: SegmentConfig,
                   columns: list[str] | None = None) -> dict[bytes, bytes]:
    """The ``scanner`` metadata entry written into every table of one scan."""
    from scanner import __version__

    meta = {
        "tool": TOOL,
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": config.command or sys.argv,
        "roots": list(config.roots),
        "classes": list(classifier.classes),
        "backbones": [m.backbone.identity for m in classifier.models],
        "heads": [{"name": m.head.name, "kind": m.head.kind, "backbone": m.head.backbone,
                   "sha256": getattr(m.head, "sha256", None),
                   "weight": classifier.weights[m.backbone.name]} for m in classifier.models],
        "detection": detection.to_dict(),
        "options": config.to_dict(),
    }
    if columns is not None:
        meta["fingerprint"] = fingerprint(config, classifier, detection, columns)
    return {METADATA_KEY: json.dumps(meta, default=str).encode()}


def results_schema(config: ScanConfig, classifier: Classifier, detection: SegmentConfig):
    """The file table's arrow schema, with the scan's metadata and fingerprint."""
    from scanner.events.detection import verdict_columns
    from scanner.output.rows import arrow_schema, column_types

    names = [m.backbone.name for m in classifier.models]
    columns = column_types(classifier.classes, names)
    columns.update(verdict_columns(classifier.classes, detection.background))
    meta = table_metadata(config, classifier, detection, list(columns))
    return arrow_schema(columns, meta)


def read_metadata(schema_metadata: dict[bytes, bytes] | None) -> dict[str, Any] | None:
    """The ``scanner`` entry of a table's metadata, or None when the table is not ours."""
    raw = (schema_metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("tool") == TOOL else None
