"""The embedding cache: keyed by content, backbone identity, pooling and view; reused by
``pooled_features`` so a second pass embeds nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.backbones.fake import CountingBackbone, FakeBackbone
from scanner.output.cache import EmbeddingCache, file_digest
from scanner.testing import noise, sine, write_audio
from training.augment import ORIGINAL, BandLimit
from training.dataset import load_dataset
from training.features import pooled_features


def _cache(root: Path, **identity) -> EmbeddingCache:
    return EmbeddingCache(root, backbone="fake", identity={"name": "fake", **identity})


def test_put_get_and_keys(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    vec = np.arange(4, dtype=np.float32)
    assert cache.get("ab" * 32, ORIGINAL) is None
    cache.put("ab" * 32, ORIGINAL, vec, n_patches=3)
    np.testing.assert_array_equal(cache.get("ab" * 32, ORIGINAL), vec)
    assert cache.get("ab" * 32, "bandlimit4k") is None
    assert cache.get("cd" * 32, ORIGINAL) is None
    assert _cache(tmp_path, source="other").get("ab" * 32, ORIGINAL) is None
    other_pool = EmbeddingCache(tmp_path, backbone="fake", identity={"name": "fake"},
                                pooling="max")
    assert other_pool.get("ab" * 32, ORIGINAL) is None
    assert _cache(tmp_path).get("ab" * 32, ORIGINAL) is not None
    assert (cache.folder / "identity.json").is_file()
    assert (cache.hits, cache.writes) == (1, 1)
    with np.load(cache.path("ab" * 32, ORIGINAL), allow_pickle=False) as data:
        assert int(data["n_patches"]) == 3


def test_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    path = cache.put("ee" * 32, ORIGINAL, np.ones(3, np.float32))
    path.write_bytes(b"garbage")
    assert cache.get("ee" * 32, ORIGINAL) is None


def test_digest_follows_content_not_name(tmp_path: Path) -> None:
    a = write_audio(tmp_path / "a.wav", sine(440, 0.3, 16000), 16000)
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())
    c = write_audio(tmp_path / "c.wav", sine(441, 0.3, 16000), 16000)
    assert file_digest(a) == file_digest(b) != file_digest(c)


def _files(root: Path) -> list:
    for i in range(3):
        write_audio(root / "tone" / f"t{i}.wav", sine(400 + 100 * i, 0.6, 16000), 16000)
        write_audio(root / "hiss" / f"h{i}.wav", noise(0.6, 16000, seed=i), 16000)
    (root / "hiss" / "broken.wav").write_bytes(b"RIFF....not really")
    return [it.file for it in load_dataset(root).items]


@pytest.mark.parametrize("transform", [None, BandLimit(4000)])
def test_second_pass_embeds_nothing(tmp_path: Path, transform) -> None:
    files = _files(tmp_path / "data")
    view = transform.name if transform else ORIGINAL
    backbone = CountingBackbone()
    cache = _cache(tmp_path / "cache")
    first = pooled_features(files, backbone, cache=cache, view=view, transform=transform,
                            workers=0)
    assert backbone.calls == 6 and first.embedded == 7
    assert first.ok.sum() == 6 and len(first.failures) == 1
    assert "broken.wav" in next(iter(first.failures))
    backbone.calls = 0
    second = pooled_features(files, backbone, cache=_cache(tmp_path / "cache"), view=view,
                             transform=transform, workers=0)
    # Only the undecodable file is tried again; nothing is embedded.
    assert backbone.calls == 0 and second.embedded == 1
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.ok, second.ok)


def test_views_differ_and_match_direct_embedding(tmp_path: Path) -> None:
    files = [f for f in _files(tmp_path / "data") if "broken" not in str(f.path)]
    backbone = FakeBackbone()
    cache = _cache(tmp_path / "cache")
    orig = pooled_features(files, backbone, cache=cache, workers=0)
    band = pooled_features(files, backbone, cache=cache, view="bandlimit4k",
                           transform=BandLimit(4000), workers=0)
    assert not np.allclose(orig.x, band.x)
    import soundfile as sf

    wave, sr = sf.read(files[0].path, dtype="float32")
    assert sr == 16000
    np.testing.assert_allclose(orig.x[0], backbone.embed(wave).embeddings.mean(0), rtol=1e-5)
    with pytest.raises(ValueError):
        pooled_features(files, backbone, cache=cache, view="bandlimit4k", workers=0)
