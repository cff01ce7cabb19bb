"""Head format round trip, the registry, built-in heads and backbone checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scanner.errors import HeadMismatchError, ScannerError
from scanner.heads import HEADS, builtin_heads, load_head
from scanner.heads.mlp import MLPHead
from scanner.records import Embedding


def test_mlp_round_trip_gives_same_probabilities(fake_head):
    head = load_head(fake_head)
    assert isinstance(head, MLPHead)
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32) - 5
    p = head.predict_proba(x)
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    again = MLPHead.load(head.save(fake_head.parent / "copy"))
    np.testing.assert_array_equal(again.predict_proba(x), p)
    assert again.classes == ("cry", "screaming", "not_screaming")


def test_mlp_matches_a_hand_computed_forward_pass():
    w0, b0 = np.array([[1.0, -1.0], [0.5, 0.5]]), np.array([0.0, -1.0])
    w1, b1 = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 0.0])
    head = MLPHead(classes=("a", "b"), backbone_config={"name": "fake", "embedding_dim": 2},
                   layers=[(w0, b0), (w1, b1)], mean=np.array([1.0, 1.0]),
                   std=np.array([2.0, 2.0]))
    # x = [3, 1] -> standardised [1, 0] -> hidden relu([1, -0.5]) = [1, 0] -> softmax([1, 0])
    p = head.predict_proba(np.array([[3.0, 1.0]]))
    np.testing.assert_allclose(p[0], [np.e / (np.e + 1), 1 / (np.e + 1)], rtol=1e-6)


def test_head_files_hold_no_pickle(fake_head):
    meta = json.loads((fake_head / "head.json").read_text())
    assert meta["format"] == "scanner-head" and meta["backbone"]["name"] == "fake"
    assert sorted(p.name for p in fake_head.iterdir()) == ["head.json", "weights.safetensors"]


def test_wrong_backbone_is_a_clear_error(fake_head):
    head = load_head(fake_head)
    with pytest.raises(HeadMismatchError, match="trained for backbone 'fake'"):
        head.check_backbone({"name": "yamnet", "embedding_dim": 1024})
    with pytest.raises(HeadMismatchError, match="16-d"):
        head.check_backbone({"name": "fake", "embedding_dim": 32})


def test_missing_or_broken_head_folder(tmp_path):
    with pytest.raises(ScannerError, match="neither a built-in head"):
        load_head(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "head.json").write_text("{not json")
    with pytest.raises(ScannerError, match="not valid JSON"):
        load_head(tmp_path / "bad")


def test_every_builtin_head_loads_and_predicts():
    heads = builtin_heads()
    assert "audioset" in heads
    for name in heads:
        head = load_head(name)
        assert head.kind in HEADS
        assert set(head.classes) == {"cry", "screaming", "not_screaming"}
        rng = np.random.default_rng(0)
        emb = Embedding(rng.standard_normal((8, 1024)).astype(np.float32), np.arange(8) * 0.48,
                        0.96, rng.uniform(0, 1, (8, 521)).astype(np.float32))
        p = head.predict_file(emb)
        assert p.shape == (1, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
        starts = np.arange(0.0, 2.5, 0.48)
        w = head.predict_windows(emb, starts, starts + 1.44)
        assert w.shape == (len(starts), 3) and np.allclose(w.sum(axis=1), 1, atol=1e-5)


def test_audioset_head_follows_the_mapped_scores():
    head = load_head("audioset")
    cry = [head.score_index[n] for n in ("Crying, sobbing", "Baby cry, infant cry")]
    scream = head.score_index["Screaming"]
    x = np.full((3, 521), 1e-5, np.float32)
    x[0, cry[1]] = 0.9
    x[1, scream] = 0.9
    labels = [head.classes[i] for i in head.predict_proba(x).argmax(axis=1)]
    assert labels == ["cry", "screaming", "not_screaming"]


def test_head_refuses_another_layer_or_window():
    cfg = {"name": "wav2vec2", "embedding_dim": 2, "layer": 12, "window_s": 10.0}
    head = MLPHead(classes=("a", "b"), backbone_config=cfg,
                   layers=[(np.eye(2), np.zeros(2))], mean=np.zeros(2), std=np.ones(2))
    head.check_backbone(dict(cfg))
    with pytest.raises(HeadMismatchError, match="layer=12"):
        head.check_backbone({**cfg, "layer": 6})
    with pytest.raises(HeadMismatchError, match="window_s"):
        head.check_backbone({**cfg, "window_s": 5.0})


def test_builtin_default_is_the_detection_head_and_clip_linear_the_former_default():
    from scanner.heads import default_head_name
    from scanner.heads.ensemble import EnsembleHead

    heads = builtin_heads()
    assert {"default", "detector", "clip-linear", "audioset"} <= set(heads)
    assert default_head_name("yamnet") == "detector"
    assert heads["default"] == heads["detector"]
    assert load_head(None).sha256 == load_head("default").sha256 == load_head("detector").sha256
    detector = load_head("detector")
    assert isinstance(detector, EnsembleHead)
    assert set(detector.detection_thresholds()) == {"cry", "screaming"}
    assert all(0 < t < 1 for t in detector.detection_thresholds().values())
    assert set(detector.detection_settings()) - {"class_min_event_s"} == {
        "window_s", "hop_s", "smooth_windows", "min_event_s", "max_gap_s", "edge_thresholds",
        "min_event_fraction", "short_thresholds", "short_max_s"}
    assert 0 < detector.detection_settings()["min_event_fraction"] < 1
    # clips (at most 60 s) have thresholds of their own, chosen on the validation clips
    short = detector.detection_settings()["short_thresholds"]
    assert set(short) <= {"cry", "screaming"} and all(0 < t < 1 for t in short.values())
    assert detector.detection_settings()["short_max_s"] == 60.0
    edges = detector.detection_settings()["edge_thresholds"]
    assert set(edges) == {"cry", "screaming"}
    assert all(0 < edges[c] < t for c, t in detector.detection_thresholds().items())
    report = (heads["detector"] / "report.md").read_text()
    assert "scanner train" in report and "--detector" in report
    assert "published method" not in report
    old = load_head("clip-linear")
    assert old.kind == "mlp" and old.name == "clip-linear"
    assert "published method" not in (heads["clip-linear"] / "report.md").read_text()
