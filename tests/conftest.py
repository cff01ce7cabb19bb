"""Shared fixtures: where ../shared is, seeded audio folders, a head for the fake backbone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
YAMNET_TFLITE = MODELS / "yamnet" / "yamnet.tflite"
DATASET = SHARED / "datasets" / "cry-scream"

# The command line hides the test backbone 'fake' from users; the suite (and the scanners it
# starts in subprocesses, which inherit this) may name it.
os.environ.setdefault("SCANNER_TEST_BACKBONES", "1")


def _require(path: Path) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI: ../shared must be present")
        pytest.skip(f"{path} not available (../shared is absent)")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real models folder (../shared/models), for end-to-end tests."""
    _require(YAMNET_TFLITE)
    return MODELS


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The real labelled clips (../shared/datasets/cry-scream)."""
    _require(DATASET / "manifest.csv")
    return DATASET


@pytest.fixture()
def audio_folder(tmp_path: Path) -> Path:
    """Six short seeded clips (tones and noise) in nested folders, plus a non-audio file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "audio"
    for i, (sub, kind, sr, ext) in enumerate([
        ("a", "tone", 16000, "wav"), ("a", "noise", 22050, "flac"), ("b/c", "tone", 8000, "wav"),
        ("b/c", "noise", 44100, "ogg"), ("b", "tone", 48000, "flac"), ("", "noise", 16000, "wav"),
    ]):
        t = np.arange(int(sr * (1.0 + 0.5 * i))) / sr
        x = 0.3 * np.sin(2 * np.pi * 440 * t) if kind == "tone" else 0.2 * rng.standard_normal(len(t))
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{kind}_{i}.{ext}", x.astype(np.float32), sr)
    (root / "labels.csv").write_text("file,label\n")
    return root


@pytest.fixture()
def fake_head(tmp_path: Path) -> Path:
    """A small random MLP head for the fake backbone, saved as a head folder."""
    from scanner.backbones import load_backbone
    from scanner.heads.mlp import MLPHead

    backbone = load_backbone("fake")
    rng = np.random.default_rng(1)
    head = MLPHead(classes=("cry", "screaming", "not_screaming"),
                   backbone_config={**backbone.config(), **backbone.identity},
                   layers=[(rng.standard_normal((8, 16)), rng.standard_normal(8)),
                           (rng.standard_normal((3, 8)), rng.standard_normal(3))],
                   mean=np.full(16, -5.0), std=np.full(16, 3.0), name="fake-head")
    return head.save(tmp_path / "fake-head")
