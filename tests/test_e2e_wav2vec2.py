"""Wav2Vec2 through the CLI: train and scan with a tiny random model, and both backbones at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scanner.cli import EXIT_LOAD_FAILED, cli
from scanner.testing import chirp, noise, sine, verdict_problems, write_audio

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory) -> Path:
    """A 2-layer, 32-d group-norm Wav2Vec2 (like base, no attention mask), saved to a folder."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny_w2v")
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(32, 32), conv_kernel=(20, 16),
                            conv_stride=(20, 16), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="group")
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Three separable 'classes' named like the real ones: tones, noise, chirps (8 clips each)."""
    root = tmp_path_factory.mktemp("labelled")
    sr = 16000
    for i in range(8):
        d = 1.0 + 0.25 * i
        write_audio(root / "cry" / f"tone{i}.wav", sine(300 + 40 * i, d, sr), sr)
        write_audio(root / "screaming" / f"noise{i}.wav", noise(d, sr, amplitude=0.3, seed=i), sr)
        write_audio(root / "not_screaming" / f"chirp{i}.wav", chirp(100, 3000 + 50 * i, d, sr), sr)
    return root


def test_train_and_scan_with_wav2vec2_then_both_backbones(tiny_w2v, labelled, tmp_path,
                                                          model_dir, monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SCANNER_OFFLINE", "1")
    runner = CliRunner()
    head = tmp_path / "w2v-head"
    result = runner.invoke(cli, ["-q", "train", str(labelled), "--backbone", "wav2vec2",
                                 "--model", str(tiny_w2v), "-o", str(head), "--epochs", "30",
                                 "--cache-dir", str(tmp_path / "cache"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert (head / "head.json").is_file()

    out = tmp_path / "w2v.parquet"
    result = runner.invoke(cli, ["-q", "scan", str(labelled), "--backbone", "wav2vec2",
                                 "--model", str(tiny_w2v), "--head", str(head), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pylist()
    assert len(table) == 24 and {r["status"] for r in table} == {"ok"}
    for r in table:
        assert abs(r["mean_prob_cry"] + r["mean_prob_screaming"] + r["mean_prob_not_screaming"] - 1) < 1e-5
        assert r["backbone"] == "wav2vec2"

    both = tmp_path / "both.parquet"
    result = runner.invoke(cli, ["-q", "scan", str(labelled), "--backbone", "yamnet,wav2vec2",
                                 "--model", f"wav2vec2={tiny_w2v}", "--head", f"wav2vec2={head}",
                                 "--weights", "yamnet=1,wav2vec2=3", "-o", str(both)])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(both).to_pylist()
    assert len(rows) == 24
    single = {r["path"]: r for r in table}
    classes = ("cry", "screaming", "not_screaming")
    for r in rows:
        assert r["backbone"] == "yamnet+wav2vec2"
        w2v = np.array([r[f"wav2vec2_mean_prob_{c}"] for c in classes])
        yam = np.array([r[f"yamnet_mean_prob_{c}"] for c in classes])
        # The wav2vec2 columns are the single-backbone scan's; the ensemble is the weighted mean.
        np.testing.assert_allclose(w2v, [single[r["path"]][f"mean_prob_{c}"] for c in classes],
                                   atol=1e-5)
        ens = np.array([r[f"mean_prob_{c}"] for c in classes])
        np.testing.assert_allclose(ens, 0.25 * yam + 0.75 * w2v, atol=1e-5)
        assert verdict_problems(r) == [], r["path"]  # the label comes from the file's events


def test_head_for_another_layer_or_backbone_is_refused(tiny_w2v, labelled, tmp_path,
                                                       fake_head):
    runner = CliRunner()
    out = str(tmp_path / "r.parquet")
    result = runner.invoke(cli, ["scan", str(labelled), "--backbone", "wav2vec2", "--model",
                                 str(tiny_w2v), "--head", str(fake_head), "-o", out])
    assert result.exit_code == EXIT_LOAD_FAILED
    assert "trained for backbone 'fake'" in result.output
    result = runner.invoke(cli, ["scan", str(labelled), "--layer", "1", "-o", out])
    assert result.exit_code == 2 and "only apply to --backbone wav2vec2" in result.output
