"""train_head end to end on generated audio (tones, noise, chirps) with the fake backbone:
accuracy, written artifacts, cache reuse across runs, and determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scanner.backbones.fake import CountingBackbone, FakeBackbone
from scanner.heads.mlp import MLPHead
from scanner.testing import chirp, noise, sine, write_audio
from training.config import TrainConfig
from training.split import read_split_csv
from training.train import train_head

CLASSES = ("chirp", "noise", "tone")


def make_corpus(root: Path, *, recordings: int = 12, parts: int = 2, seed: int = 0) -> Path:
    """``root/<class>/<rec>_<part>.wav``: seeded tones, noise and chirps, some at 8 kHz."""
    rng = np.random.default_rng(seed)
    for rec in range(recordings):
        for part in range(parts):
            sr = 8000 if rng.random() < 0.3 else 16000
            dur = float(rng.uniform(0.8, 1.5))
            amp = float(rng.uniform(0.2, 0.6))
            f = float(rng.uniform(200, 3000))
            clips = {
                "tone": sine(f, dur, sr, amplitude=amp),
                "noise": noise(dur, sr, amplitude=amp / 3, seed=int(rng.integers(1 << 30))),
                "chirp": chirp(f / 4, min(f * 3, 0.45 * sr), dur, sr, amplitude=amp),
            }
            for label, x in clips.items():
                write_audio(root / label / f"{label}{rec}_{part}.wav", x, sr)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "data")


@pytest.fixture(scope="module")
def first_run(corpus: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    config = TrainConfig(str(corpus), str(tmp / "head"), backbone="fake",
                         cache_dir=str(tmp / "cache"), hidden=(32,), epochs=150, patience=25,
                         workers=0, seed=0)
    backbone = CountingBackbone()
    result = train_head(config, progress=False, backbone=backbone)
    return config, result, backbone


def test_reaches_high_accuracy_also_band_limited(first_run) -> None:
    _, result, backbone = first_run
    sets = result.metrics["sets"]
    assert result.head.classes == CLASSES
    assert sets["test"]["accuracy"] >= 0.9
    assert sets["test"]["macro_f1"] >= 0.9
    assert sets["bandlimited_test"]["accuracy"] >= 0.85
    # 72 files, original view + band-limited view of every file.
    assert backbone.calls == 144
    assert result.embedded == {"original": 72, "bandlimit4k": 72}


def test_writes_head_split_metrics_plots_and_report(first_run, corpus: Path) -> None:
    config, result, _ = first_run
    out = Path(config.out_dir)
    for name in ("head.json", "weights.safetensors", "split.csv", "predictions.csv",
                 "metrics.json", "report.md", "train_config.json"):
        assert (out / name).is_file(), name
    assert len(list(out.glob("*.png"))) >= 6
    meta = json.loads((out / "head.json").read_text())
    assert meta["training"]["command"] == config.command()
    assert meta["training"]["config"] == config.to_dict()
    assert meta["metrics"]["test"]["accuracy"] == result.metrics["sets"]["test"]["accuracy"]
    assert set(meta["thresholds"]) == set(CLASSES)
    assert TrainConfig.from_dict(json.loads((out / "train_config.json").read_text())) == config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sets"]["bandlimited_test"]["n"] == metrics["split"]["test"]["files"]
    rows = read_split_csv(out / "split.csv")
    assert len(rows) == 72
    sides: dict[str, set[str]] = {}
    for r in rows:
        sides.setdefault(r["group"], set()).add(r["split"])
        assert (corpus / r["path"]).is_file()
    assert all(len(s) == 1 for s in sides.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_saved_head_reproduces_the_predictions(first_run, corpus: Path) -> None:
    config, result, _ = first_run
    head = MLPHead.load(config.out_dir)
    backbone = FakeBackbone()
    with open(Path(config.out_dir) / "predictions.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:5]
    import soundfile as sf
    import soxr

    for r in rows:
        wave, sr = sf.read(corpus / r["path"], dtype="float32")
        if sr != 16000:
            wave = soxr.resample(wave, sr, 16000)
        p = head.predict_proba(head.pooled(backbone.embed(wave)))[0]
        expected = [float(r[f"original_p_{c}"]) for c in CLASSES]
        np.testing.assert_allclose(p, expected, atol=2e-3)


def test_second_run_embeds_nothing_and_same_seed_same_weights(first_run, tmp_path) -> None:
    config, result, _ = first_run
    backbone = CountingBackbone()
    again = train_head(TrainConfig.from_dict({**config.to_dict(), "out_dir": str(tmp_path / "b")}),
                       progress=False, backbone=backbone)
    assert backbone.calls == 0
    assert again.embedded == {"original": 0, "bandlimit4k": 0}
    for (wa, ba), (wb, bb) in zip(result.head.layers, again.head.layers, strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    other = train_head(TrainConfig.from_dict({**config.to_dict(), "out_dir": str(tmp_path / "c"),
                                              "hidden": [16, 8], "dropout": 0.1,
                                              "band_limit_prob": 0.0}),
                       progress=False, backbone=backbone)
    assert backbone.calls == 0
    assert len(other.head.layers) == 3


def test_refit_and_cross_fitting(first_run, tmp_path) -> None:
    config, result, _ = first_run
    split_sizes = result.metrics["split"]
    refit = result.metrics["fit"]["refit"]
    assert refit["files"] == split_sizes["train"]["files"] + split_sizes["val"]["files"]
    assert refit["epochs"] == result.metrics["fit"]["best_epoch"]
    plain = train_head(TrainConfig.from_dict({**config.to_dict(), "out_dir": str(tmp_path / "p"),
                                              "refit": False}), progress=False)
    # Without a refit the saved head is the early-stopped model.
    assert plain.metrics["fit"]["refit"] is None
    assert not np.array_equal(plain.head.layers[0][0], result.head.layers[0][0])
    # Early stopping and validation are the same model either way.
    assert plain.metrics["sets"]["val"] == result.metrics["sets"]["val"]
    assert plain.metrics["thresholds"] == result.metrics["thresholds"]

    folds = train_head(TrainConfig.from_dict({**config.to_dict(), "out_dir": str(tmp_path / "f"),
                                              "folds": 3, "epochs": 60}), progress=False)
    rows = read_split_csv(tmp_path / "f" / "split.csv")
    assert {r["split"] for r in rows} == {"fold0", "fold1", "fold2", "test"}
    test_paths = {r["path"] for r in rows if r["split"] == "test"}
    assert test_paths == {r["path"] for r in read_split_csv(Path(config.out_dir) / "split.csv")
                          if r["split"] == "test"}
    sets = folds.metrics["sets"]
    assert sets["val"]["n"] == 72 - len(test_paths)
    # Fewer epochs than the other runs, to stay fast: well above chance (1/3) is enough here.
    assert sets["test"]["accuracy"] >= 0.8 and sets["val"]["accuracy"] >= 0.8
    assert folds.metrics["fit"]["members"] == 3
    assert folds.head.layers[0][0].shape[0] == 3 * 32
    assert "Cross-fitted" in (tmp_path / "f" / "report.md").read_text()


def test_too_few_groups_is_a_config_error(tmp_path: Path) -> None:
    from scanner.errors import ConfigError

    for label in ("a", "b"):
        write_audio(tmp_path / "data" / label / "x.wav", sine(440, 0.5, 16000), 16000)
    with pytest.raises(ConfigError, match="split"):
        train_head(TrainConfig(str(tmp_path / "data"), str(tmp_path / "h"), backbone="fake",
                               cache_dir=str(tmp_path / "c"), workers=0), progress=False)


def test_final_fit_uses_every_file_and_keeps_the_held_out_metrics(corpus: Path, tmp_path: Path):
    common = dict(backbone="fake", cache_dir=str(tmp_path / "cache"), workers=0, folds=3,
                  hidden=(32,), dropout=0.0, epochs=100, patience=20)
    held = train_head(TrainConfig(str(corpus), str(tmp_path / "held"), **common), progress=False)
    final = train_head(TrainConfig(str(corpus), str(tmp_path / "final"), final=True, **common),
                       progress=False)
    n_files = sum(1 for _ in corpus.rglob("*.wav"))
    assert final.metrics["final_fit"]["files"] == n_files
    assert "final_fit" not in held.metrics
    # The evaluation is the same run; only the written head saw the test files too.
    assert final.metrics["sets"]["test"] == held.metrics["sets"]["test"]
    assert not np.allclose(final.head.layers[0][0], held.head.layers[0][0])
    assert final.metrics["final_fit"]["out_of_fold_all_files"]["accuracy"] > 0.8
    assert "--final" in final.head.extra["training"]["command"]
    with pytest.raises(Exception, match="--final needs --folds"):
        TrainConfig(str(corpus), str(tmp_path / "x"), final=True)


def test_split_and_fit_warnings_say_what_happened() -> None:
    from training.train import fit_warnings, split_warnings

    config = TrainConfig(data_dir="d", out_dir="o", val=0.15, test=0.15, epochs=60)
    summary = {"train": {"files": 70}, "val": {"files": 20}, "test": {"files": 10}}
    warnings = split_warnings(summary, config, np.array([0] * 8 + [1] * 2), ("a", "b"))
    assert any("became train 0.70 / val 0.20 / test 0.10" in w for w in warnings)
    assert any("only 10 test clips" in w and "b: 2" in w for w in warnings)
    fine = {"train": {"files": 700}, "val": {"files": 150}, "test": {"files": 150}}
    assert split_warnings(fine, config, np.array([0] * 75 + [1] * 75), ("a", "b")) == []
    assert fit_warnings({"best_epoch": 60}, config)[0].startswith("kept epoch 60 of 60")
    assert fit_warnings({"best_epochs": [12, 30]}, config) == []
