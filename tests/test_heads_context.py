"""The context head: multi-scale features, numpy inference, save/load checks, registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scanner.errors import ScannerError
from scanner.heads import load_head
from scanner.heads.context import ContextHead, centre_patches, multiscale_features
from scanner.records import Embedding

DIM, SCALES, CLASSES = 8, (1, 3, 7), ("cry", "screaming", "not_screaming")
BACKBONE = {"name": "fake", "embedding_dim": DIM, "window_s": 0.96, "hop_s": 0.48,
            "sample_rate_hz": 16000}


def _head(seed: int = 0, **kw) -> ContextHead:
    rng = np.random.default_rng(seed)
    f = DIM * len(SCALES)
    layers = [(rng.standard_normal((5, f)), rng.standard_normal(5)),
              (rng.standard_normal((3, 5)), rng.standard_normal(3))]
    return ContextHead(classes=CLASSES, backbone_config=BACKBONE, scales=SCALES, layers=layers,
                       mean=rng.standard_normal(f), std=rng.uniform(0.5, 2, f), **kw)


def test_multiscale_features_are_centred_means_clipped_at_the_ends() -> None:
    x = np.random.default_rng(1).standard_normal((10, DIM)).astype(np.float32)
    centre = np.array([0, 4, 9])
    got = multiscale_features(x, centre, (1, 3, 7))
    for row, c in enumerate(centre):
        for k, s in enumerate((1, 3, 7)):
            want = x[max(0, c - s // 2):min(10, c + s // 2 + 1)].mean(axis=0)
            np.testing.assert_allclose(got[row, k * DIM:(k + 1) * DIM], want, atol=1e-5)


def test_multiscale_features_read_only_the_patches_the_widest_scale_reaches() -> None:
    # A chunk of windows deep in a long file must not sum the whole file for every chunk:
    # that made the head quadratic in file length (a 4 h file took 13 times a 1 h one).
    # Patches out of reach are NaN here; a sum over them would poison every feature.
    x = np.random.default_rng(5).standard_normal((5000, DIM)).astype(np.float32)
    centre = np.arange(3000, 3100)
    poisoned = x.copy()
    poisoned[:3000 - 3] = np.nan
    poisoned[3100 + 3:] = np.nan
    got = multiscale_features(poisoned, centre, (1, 3, 7))
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, multiscale_features(x, centre, (1, 3, 7)))
    for row in (0, 57, 99):
        c = centre[row]
        np.testing.assert_allclose(got[row, 2 * DIM:], x[c - 3:c + 4].mean(axis=0), atol=1e-5)
    assert multiscale_features(x, np.zeros(0, np.intp), (3, 7)).shape == (0, 2 * DIM)


def test_prefix_sums_equal_numpy_cumsum_bit_for_bit() -> None:
    from scanner.heads.context import prefix_sums
    x = (np.random.default_rng(6).standard_normal((700, DIM)) * 1e3).astype(np.float32)
    want = np.vstack([np.zeros((1, DIM)), np.cumsum(x.astype(np.float64), axis=0)])
    np.testing.assert_array_equal(prefix_sums(x), want)
    assert prefix_sums(x[:0]).shape == (1, DIM)


def test_long_file_in_chunks_equals_one_pass() -> None:
    from scanner.heads.base import WINDOW_CHUNK
    head = _head()
    n = 2 * WINDOW_CHUNK + 300
    rng = np.random.default_rng(7)
    emb = Embedding(rng.standard_normal((n, DIM)).astype(np.float32), np.arange(n) * 0.48, 0.96)
    starts = np.arange(n) * 0.48
    ends = starts + 1.44
    whole = head.proba_from_features(head.window_features(emb, starts, ends))
    np.testing.assert_allclose(head.predict_windows(emb, starts, ends), whole, atol=1e-6)


def test_centre_patch_is_the_nearest_to_the_window_centre() -> None:
    starts = np.arange(10) * 0.48
    idx = centre_patches(starts, 0.96, np.array([0.0, 0.48, 3.0]), np.array([1.44, 1.92, 4.44]))
    # window [0, 1.44) centres at 0.72 = patch 0's centre (0.48) + 0.24: patches 0 and 1 tie
    centres = starts + 0.48
    for k, (s, e) in enumerate([(0.0, 1.44), (0.48, 1.92), (3.0, 4.44)]):
        assert abs(centres[idx[k]] - (s + e) / 2) == pytest.approx(
            np.abs(centres - (s + e) / 2).min())


def test_predict_windows_reads_neighbours() -> None:
    head = _head()
    rng = np.random.default_rng(2)
    emb = Embedding(rng.standard_normal((30, DIM)).astype(np.float32), np.arange(30) * 0.48, 0.96)
    starts = np.arange(0, 12, 0.48)
    ends = starts + 1.44
    p = head.predict_windows(emb, starts, ends)
    assert p.shape == (len(starts), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    # changing a patch 3 away from a window's centre changes that window (scale 7 sees it)
    c = centre_patches(emb.starts_s, 0.96, starts[10:11], ends[10:11])[0]
    far = emb.embeddings.copy()
    far[c + 3] += 5
    p2 = head.predict_windows(Embedding(far, emb.starts_s, 0.96), starts, ends)
    assert not np.allclose(p[10], p2[10])


def test_one_patch_clip_equals_the_pooled_prediction() -> None:
    head = _head()
    vec = np.random.default_rng(3).standard_normal((1, DIM)).astype(np.float32)
    emb = Embedding(vec, np.zeros(1), 0.96)
    np.testing.assert_allclose(head.predict_windows(emb, np.zeros(1), np.array([0.96])),
                               head.predict_proba(vec), atol=1e-6)


def test_temperature_softens_without_changing_the_ranking() -> None:
    x = np.random.default_rng(4).standard_normal((20, DIM * len(SCALES))).astype(np.float32)
    sharp, soft = _head().proba_from_features(x), _head(temperature=3.0).proba_from_features(x)
    assert (soft.max(axis=1) <= sharp.max(axis=1) + 1e-6).all()
    np.testing.assert_array_equal(soft.argmax(axis=1), sharp.argmax(axis=1))


def test_save_load_round_trip_through_the_registry(tmp_path: Path) -> None:
    head = _head(temperature=1.7, thresholds={"cry": 0.6, "screaming": 0.4},
                 detection={"window_s": 1.44, "hop_s": 0.48, "smooth_windows": 3,
                            "min_event_s": 0.5})
    head.save(tmp_path / "h")
    back = load_head(tmp_path / "h", backbone="fake")
    assert isinstance(back, ContextHead) and back.scales == SCALES
    assert back.detection_thresholds() == {"cry": 0.6, "screaming": 0.4}
    assert back.detection_settings()["min_event_s"] == 0.5
    x = np.random.default_rng(5).standard_normal((4, DIM)).astype(np.float32)
    np.testing.assert_allclose(back.predict_proba(x), head.predict_proba(x), atol=1e-6)
    back.check_backbone(BACKBONE)


def test_load_refuses_non_finite_or_mismatched_weights(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _head().save(tmp_path / "h")
    tensors = load_file(str(folder / "weights.safetensors"))
    bad = dict(tensors, **{"layer1.weight": np.full_like(tensors["layer1.weight"], np.nan)})
    save_file(bad, str(folder / "weights.safetensors"))
    with pytest.raises(ScannerError, match="non-finite"):
        ContextHead.load(folder)
    bad = dict(tensors, **{"layer1.weight": tensors["layer1.weight"][:, :4].copy()})
    save_file(bad, str(folder / "weights.safetensors"))
    with pytest.raises(ScannerError, match="layer 1"):
        ContextHead.load(folder)
    save_file(tensors, str(folder / "weights.safetensors"))
    meta = json.loads((folder / "head.json").read_text())
    meta["preprocessing"]["context_scales_patches"] = [1, 3]
    (folder / "head.json").write_text(json.dumps(meta))
    with pytest.raises(ScannerError):
        ContextHead.load(folder)
