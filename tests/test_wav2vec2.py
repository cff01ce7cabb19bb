"""Wav2Vec2 backbone, on tiny randomly initialised models saved with ``save_pretrained``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from scanner.backbones import BACKBONES, load_backbone  # noqa: E402
from scanner.backbones.wav2vec2 import (  # noqa: E402
    Wav2Vec2Backbone,
    min_input_samples,
    window_starts,
)
from scanner.errors import ConfigError, ModelNotFoundError  # noqa: E402

SR = 16_000
N_LAYERS = 2
DIM = 32


def _tiny_model(folder: Path, *, layer_norm: bool, seed: int, save_extractor: bool) -> Path:
    """A 2-layer, 32-d Wav2Vec2 with a 320-sample frame stride (like base), saved to ``folder``."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=DIM, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32), conv_kernel=(20, 16), conv_stride=(20, 16),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if layer_norm else "group", do_stable_layer_norm=layer_norm,
    )
    torch.manual_seed(seed)
    Wav2Vec2Model(config).save_pretrained(folder)
    if save_extractor:
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                                 do_normalize=layer_norm,
                                 return_attention_mask=layer_norm).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def group_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Group-norm model like wav2vec2-base, saved without a preprocessor_config.json."""
    return _tiny_model(tmp_path_factory.mktemp("w2v_group"), layer_norm=False, seed=0,
                       save_extractor=False)


@pytest.fixture(scope="module")
def layer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stable-layer-norm model whose saved extractor normalises and returns a mask."""
    return _tiny_model(tmp_path_factory.mktemp("w2v_layer"), layer_norm=True, seed=1,
                       save_extractor=True)


def _audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _reference(folder: Path, x: np.ndarray, *, layer: int = -1) -> np.ndarray:
    """Independent reference: transformers directly on the whole clip, time-mean of a layer."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(folder).eval()
    values = x
    if (folder / "preprocessor_config.json").is_file():
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
        values = extractor(x, sampling_rate=SR, return_tensors="np")["input_values"][0]
    with torch.inference_mode():
        out = model(torch.from_numpy(np.asarray(values, dtype=np.float32))[None],
                    output_hidden_states=True)
    hidden = out.last_hidden_state if layer in (-1, N_LAYERS) else out.hidden_states[layer]
    return hidden[0].mean(dim=0).numpy()


def test_registered() -> None:
    assert BACKBONES.get("wav2vec2") is Wav2Vec2Backbone


def test_window_starts() -> None:
    assert window_starts(5, 10, 10).tolist() == [0]
    assert window_starts(10, 10, 10).tolist() == [0]
    assert window_starts(20, 10, 10).tolist() == [0, 10]
    assert window_starts(25, 10, 10).tolist() == [0, 10, 15]
    assert window_starts(25, 10, 5).tolist() == [0, 5, 10, 15]
    assert window_starts(26, 10, 5).tolist() == [0, 5, 10, 15, 16]
    assert min_input_samples((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == 400


def test_load_from_folder(group_dir: Path) -> None:
    bb = load_backbone("wav2vec2", str(group_dir), window_s=2.0)
    assert bb.embedding_dim == DIM
    ident = bb.identity
    assert ident["name"] == "wav2vec2"
    assert ident["source"] == str(group_dir.resolve())
    assert ident["layer"] == N_LAYERS  # -1 is recorded as its index, so -1 and 2 match
    assert ident["config_sha256"] == hashlib.sha256(
        (group_dir / "config.json").read_bytes()).hexdigest()
    cfg = bb.config()
    assert (cfg["layer"], cfg["window_s"], cfg["hop_s"], cfg["embedding_dim"]) == (2, 2.0, 2.0, DIM)
    # No preprocessor_config.json: the group-norm default does not normalise.
    assert cfg["do_normalize"] is False
    assert load_backbone("wav2vec2", str(group_dir), layer=1).config()["layer"] == 1


def test_default_source_from_model_dir(group_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(group_dir, tmp_path / "wav2vec2-base")
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(tmp_path))
    bb = load_backbone("wav2vec2", None, window_s=2.0)
    assert bb.identity["source"] == str((tmp_path / "wav2vec2-base").resolve())
    x = _audio(1.0, seed=3)
    np.testing.assert_allclose(bb.embed(x).embeddings[0], _reference(group_dir, x), atol=1e-5)


def test_model_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(tmp_path))  # has no wav2vec2-base/
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_backbone("wav2vec2", str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match="--model"):
        load_backbone("wav2vec2", "scanner-tests/no-such-model")
    with pytest.raises(ModelNotFoundError, match="facebook/wav2vec2-base.*HF_HUB_OFFLINE"):
        load_backbone("wav2vec2", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="folder"):
        load_backbone("wav2vec2", str(tmp_path / "empty"))


def test_bad_options(group_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_backbone("wav2vec2", str(group_dir), hop=3)
    with pytest.raises(ConfigError, match="overlap_s"):
        load_backbone("wav2vec2", str(group_dir), window_s=2.0, overlap_s=2.0)
    with pytest.raises(ConfigError, match="layer 3"):
        load_backbone("wav2vec2", str(group_dir), layer=3)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            load_backbone("wav2vec2", str(group_dir), device="cuda")


def test_long_clip_windows(group_dir: Path) -> None:
    bb = load_backbone("wav2vec2", str(group_dir))  # default 10 s windows, no overlap
    x = _audio(25.0, seed=4)
    emb = bb.embed(x)
    assert emb.embeddings.shape == (3, DIM)
    assert emb.embeddings.dtype == np.float32
    assert emb.starts_s.tolist() == [0.0, 10.0, 15.0]
    assert emb.window_s == 10.0
    # Each row is the model on exactly that stretch: the last one ends at the clip's end.
    for row, start in zip(emb.embeddings, (0, 10, 15), strict=True):
        np.testing.assert_allclose(row, _reference(group_dir, x[start * SR:(start + 10) * SR]),
                                   atol=1e-5)


def test_overlap(group_dir: Path) -> None:
    bb = load_backbone("wav2vec2", str(group_dir), window_s=2.0, overlap_s=1.0)
    assert bb.hop_s == 1.0
    assert bb.embed(_audio(5.0, seed=5)).starts_s.tolist() == [0.0, 1.0, 2.0, 3.0]


def _record_batches(bb: Wav2Vec2Backbone, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    seen: list[list[int]] = []
    forward = bb._forward

    def spy(windows):  # noqa: ANN001, ANN202
        seen.append([w.size for w in windows])
        return forward(windows)

    monkeypatch.setattr(bb, "_forward", spy)
    return seen


MIXED_S = (5.0, 0.3, 0.3, 1.1, 2.0, 3.7, 0.75, 1.1)


def test_batched_equals_single_group_norm(group_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bb = load_backbone("wav2vec2", str(group_dir), window_s=2.0, batch_size=4)
    clips = [_audio(s, seed=10 + i) for i, s in enumerate(MIXED_S)]
    single = [bb.embed(c) for c in clips]
    batches = _record_batches(bb, monkeypatch)
    batched = bb.embed_batch(clips)
    # Group norm: never pad, so every forward pass holds one length only...
    assert all(len(set(b)) == 1 for b in batches)
    # ...yet equal lengths from different clips do share passes.
    assert max(len(b) for b in batches) > 1
    for a, b in zip(single, batched, strict=True):
        assert a.starts_s.tolist() == b.starts_s.tolist()
        assert a.window_s == b.window_s
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
    # A short clip is the model on that clip alone: no padding leaked in.
    np.testing.assert_allclose(batched[1].embeddings[0], _reference(group_dir, clips[1]), atol=1e-5)


def test_batched_equals_single_layer_norm_mask(layer_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bb = load_backbone("wav2vec2", str(layer_dir), window_s=2.0, batch_size=4)
    assert bb.config()["do_normalize"] is True
    clips = [_audio(s, seed=20 + i) for i, s in enumerate(MIXED_S)]
    single = [bb.embed(c) for c in clips]
    batches = _record_batches(bb, monkeypatch)
    batched = bb.embed_batch(clips)
    assert any(len(set(b)) > 1 for b in batches)  # short clips were padded together
    for a, b in zip(single, batched, strict=True):
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4)
    np.testing.assert_allclose(batched[3].embeddings[0], _reference(layer_dir, clips[3]),
                               atol=1e-4)


@pytest.mark.parametrize("which", ["group", "layer"])
@pytest.mark.parametrize("layer", [0, 1])
def test_layer_selection(which: str, layer: int, group_dir: Path, layer_dir: Path) -> None:
    folder = group_dir if which == "group" else layer_dir
    x = _audio(1.5, seed=30)
    last = load_backbone("wav2vec2", str(folder), window_s=2.0).embed(x).embeddings[0]
    picked = load_backbone("wav2vec2", str(folder), window_s=2.0, layer=layer).embed(x)
    assert not np.allclose(picked.embeddings[0], last, atol=1e-3)
    np.testing.assert_allclose(picked.embeddings[0], _reference(folder, x, layer=layer), atol=1e-5)
    np.testing.assert_allclose(last, _reference(folder, x), atol=1e-5)


def test_short_clips(group_dir: Path) -> None:
    bb = load_backbone("wav2vec2", str(group_dir))
    emb = bb.embed(_audio(0.3, seed=40))
    assert emb.embeddings.shape == (1, DIM)
    assert emb.starts_s.tolist() == [0.0]
    assert emb.window_s == pytest.approx(0.3)
    assert np.isfinite(emb.embeddings).all()
    # Shorter than the receptive field (320 samples here) still gives one finite row.
    tiny = bb.embed(_audio(0.01, seed=41))
    assert tiny.embeddings.shape == (1, DIM) and np.isfinite(tiny.embeddings).all()
    with pytest.raises(ValueError, match="non-empty"):
        bb.embed(np.zeros(0, dtype=np.float32))


def test_prepare_matches_feature_extractor(layer_dir: Path) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    bb = load_backbone("wav2vec2", str(layer_dir), window_s=2.0)
    windows = [_audio(s, seed=50 + i) for i, s in enumerate((1.0, 0.4, 0.7))]
    values, mask = bb._prepare(windows)
    ref = Wav2Vec2FeatureExtractor.from_pretrained(layer_dir)(
        windows, sampling_rate=SR, padding="longest", return_attention_mask=True,
        return_tensors="np")
    np.testing.assert_allclose(values, ref["input_values"], atol=1e-5)
    np.testing.assert_array_equal(mask, ref["attention_mask"])


def test_oom_halved_batch_size_is_kept_for_later_calls(group_dir, monkeypatch, caplog) -> None:
    import logging

    bb = load_backbone("wav2vec2", str(group_dir), window_s=0.5, batch_size=8, device="cpu")
    clips = [_audio(5.0, seed=3), _audio(2.0, seed=4)]  # 10 + 4 full windows of 0.5 s
    expected = bb.embed_batch(clips)
    forward, sizes = bb._forward, []

    def tight_forward(windows):  # noqa: ANN001, ANN202 - a card that fits two windows
        sizes.append(len(windows))
        if len(windows) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(windows)

    monkeypatch.setattr(bb, "_forward", tight_forward)
    caplog.set_level(logging.WARNING, logger="scanner.backbones.wav2vec2")
    first = bb.embed_batch(clips)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2 and bb.batch_size == 2
    shrinks = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert shrinks == ["wav2vec2: CUDA out of memory at 8 windows a batch; using 4 from now on",
                       "wav2vec2: CUDA out of memory at 4 windows a batch; using 2 from now on"]
    sizes.clear()
    caplog.clear()
    second = bb.embed_batch(clips)
    assert sizes == [2] * 7  # the big sizes are never tried again
    assert not caplog.records
    for a, b, c in zip(expected, first, second, strict=True):
        np.testing.assert_allclose(b.embeddings, a.embeddings, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(c.embeddings, b.embeddings)
