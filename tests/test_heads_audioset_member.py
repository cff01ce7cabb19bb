"""The AudioSet head on embeddings: YAMNet's own last-layer rows turn patch embeddings into the
mapped classes' scores, so it gives what the head on the model's scores gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from scanner.errors import ModelNotFoundError, ScannerError
from scanner.heads import load_head
from scanner.heads.audioset import AudioSetHead
from scanner.records import Embedding


def _clip(dataset_dir: Path, label: str, k: int = 0) -> np.ndarray:
    import librosa

    files = sorted((dataset_dir / label).glob("*.flac"))
    x, sr = sf.read(files[k], dtype="float32", always_2d=True)
    return librosa.resample(x.mean(axis=1), orig_sr=sr, target_sr=16000)


def test_the_score_layer_gives_the_models_own_scores(model_dir: Path, dataset_dir: Path,
                                                      tmp_path: Path) -> None:
    from scanner.backbones import load_backbone
    from training.audioset_member import embedding_head

    backbone = load_backbone("yamnet", str(model_dir / "yamnet" / "yamnet.tflite"))
    on_scores = load_head("audioset")
    folder = embedding_head(model_dir / "yamnet" / "yamnet.tflite").save(tmp_path / "emb")
    on_embeddings = load_head(folder)
    assert isinstance(on_embeddings, AudioSetHead) and on_embeddings.features == "embeddings"
    on_embeddings.check_model(backbone)
    wave = np.concatenate([_clip(dataset_dir, "cry"), _clip(dataset_dir, "screaming"),
                           _clip(dataset_dir, "not_screaming")])
    emb = backbone.embed(wave)
    starts = np.arange(0.0, len(wave) / 16000 - 1.44, 0.48)
    ends = starts + 1.44
    want = on_scores.predict_windows(emb, starts, ends)
    no_scores = Embedding(emb.embeddings, emb.starts_s, emb.window_s)  # as a patch cache holds
    got = on_embeddings.predict_windows(no_scores, starts, ends)
    np.testing.assert_allclose(got, want, atol=0.01)
    assert got[:, 0].max() > 0.5 and got[:, 1].max() > 0.5  # it does hear the cry and the scream
    np.testing.assert_allclose(on_embeddings.predict_file(no_scores), on_scores.predict_file(emb),
                               atol=0.01)


def test_a_score_layer_is_checked(tmp_path: Path) -> None:
    base = load_head("audioset")
    kwargs = dict(classes=base.classes, mapped=base.mapped, weight=base.weight, bias=base.bias)
    index = {n: i for i, n in enumerate(base.score_index)}
    with pytest.raises(ValueError, match="finite"):
        AudioSetHead(score_index=index, score_layer=(np.full((3, 8), np.nan), np.zeros(3)), **kwargs)
    with pytest.raises(ValueError, match="numbers its rows"):
        AudioSetHead(score_index=base.score_index, score_layer=(np.zeros((3, 8)), np.zeros(3)),
                     **kwargs)
    folder = AudioSetHead(score_index=index, score_layer=(np.zeros((3, 8)), np.zeros(3)),
                          **kwargs).save(tmp_path / "h")
    (folder / "weights.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ScannerError):
        load_head(folder)
    with pytest.raises(ModelNotFoundError):
        from training.audioset_member import classifier_layer

        classifier_layer(tmp_path / "missing.tflite")
