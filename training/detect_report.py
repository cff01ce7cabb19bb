"""``report.md`` of a detection head: clips, soundscapes, threshold sweep, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.detect_config import DetectConfig
from training.report import _fmt, _table

REPORT_MD = "report.md"


def render_detect_report(*, config: DetectConfig, metrics: dict[str, Any]) -> str:
    return "\n".join(["# report (placeholder)", "", "```", config.command(), "```", ""])


def write_detect_report(out_dir: str | Path, *, config: DetectConfig,
                        metrics: dict[str, Any]) -> Path:
    path = Path(out_dir) / REPORT_MD
    path.write_text(render_detect_report(config=config, metrics=metrics))
    return path
