"""The shipped detection head on real clips with the real YAMNet (needs ../shared)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scanner.heads import load_head
from training.detect_eval import detect, file_verdict, score_file
from training.scenes import SAMPLE_RATE_HZ, make_scene

pytestmark = pytest.mark.slow


def test_detector_split_is_the_benchmarks(dataset_dir: Path) -> None:
    from training.dataset import load_dataset
    from training.detect import benchmark_split
    from training.detect_config import DetectConfig
    from training.soundscapes import load_manifest, split_groups

    config = DetectConfig(data_dir=str(dataset_dir), out_dir="unused")
    items = load_dataset(dataset_dir).items
    labels, groups = [it.label for it in items], [it.group for it in items]
    mine = dict(zip(groups, benchmark_split(labels, groups, config), strict=True))
    assert mine == split_groups(load_manifest(dataset_dir))


def _test_split_clips(dataset_dir: Path, label: str, n: int) -> list[Path]:
    """Clips of the shipped head's test split (no member was fit on them: tests/test_leakage.py)."""
    with (Path(__file__).parents[1] / "scanner/heads/builtin/detector/context/split.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["label"] == label]
    return [dataset_dir / r["path"] for r in rows[:n]]


def test_default_head_finds_a_real_cry_in_a_minute_of_background(
        dataset_dir: Path, model_dir: Path, monkeypatch) -> None:
    from scanner.backbones import load_backbone
    from training.dataset import load_dataset
    from training.patches import decode_clip, embed_waveforms

    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    head = load_head("detector")
    assert set(head.detection_thresholds()) == {"cry", "screaming"}
    items = {str(it.path): it for it in load_dataset(dataset_dir).items}
    waves = {lab: [decode_clip(items[str(p.resolve())].file)
                   for p in _test_split_clips(dataset_dir, lab, 8)]
             for lab in ("cry", "not_screaming")}
    scene = make_scene(np.random.default_rng(3), duration_s=60.0, background=waves["not_screaming"],
                       events={"cry": waves["cry"]}, n_events=1, snr_db=(12.0, 15.0))
    assert len(scene.events) == 1
    backbone = load_backbone("yamnet")
    patches = embed_waveforms(backbone, [scene.waveform])[0]
    scored = score_file(head, "s", patches, len(scene.waveform) / SAMPLE_RATE_HZ, [])
    from training.detect_eval import segment_config

    settings = head.detection_settings()
    events = detect([scored], head.classes,
                    segment_config(head.detection_thresholds(), settings["min_event_s"],
                                   max_gap_s=settings.get("max_gap_s", 0.0)))["s"]
    truth = scene.events[0]
    assert file_verdict(events, "not_screaming") == "cry"
    assert any(e["label"] == "cry" and e["start_s"] < truth.offset_s and
               truth.onset_s < e["end_s"] for e in events)
