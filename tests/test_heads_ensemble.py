"""The ensemble head: weighted mean of members, window by window; its folder and its checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scanner.errors import HeadMismatchError, ScannerError
from scanner.heads import builtin_heads, load_head
from scanner.heads.context import ContextHead
from scanner.heads.ensemble import EnsembleHead
from scanner.heads.mlp import MLPHead
from scanner.records import Embedding

DIM, CLASSES = 8, ("cry", "screaming", "not_screaming")
BACKBONE = {"name": "fake", "embedding_dim": DIM, "window_s": 0.96, "hop_s": 0.48,
            "sample_rate_hz": 16000}


def _mlp(seed: int = 0) -> MLPHead:
    rng = np.random.default_rng(seed)
    return MLPHead(classes=CLASSES, backbone_config=BACKBONE,
                   layers=[(rng.standard_normal((3, DIM)), rng.standard_normal(3))],
                   mean=np.zeros(DIM), std=np.ones(DIM), name="clip")


def _context(seed: int = 1) -> ContextHead:
    rng = np.random.default_rng(seed)
    f = DIM * 2
    return ContextHead(classes=CLASSES, backbone_config=BACKBONE, scales=(1, 5),
                       layers=[(rng.standard_normal((4, f)), rng.standard_normal(4)),
                               (rng.standard_normal((3, 4)), rng.standard_normal(3))],
                       mean=rng.standard_normal(f), std=rng.uniform(0.5, 2, f), name="ctx")


def _file(n: int = 40, seed: int = 2) -> tuple[Embedding, np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    emb = Embedding(x, np.arange(n) * 0.48, 0.96)
    starts = np.arange(0, (n - 3) * 0.48, 0.48)
    return emb, starts, starts + 1.44


def _ensemble(tmp_path: Path, weights=(1.0, 3.0)) -> Path:
    head = EnsembleHead([_mlp(), _context()], list(weights), folders=["clip", "context"],
                        thresholds={"cry": 0.7, "screaming": 0.6},
                        detection={"min_event_s": 1.5, "max_gap_s": 2.0}, name="mix")
    return head.save(tmp_path / "mix")


def test_windows_and_files_are_the_weighted_mean_of_the_members(tmp_path: Path) -> None:
    head = load_head(_ensemble(tmp_path))
    assert isinstance(head, EnsembleHead) and head.name == "mix"
    assert head.weights == pytest.approx([0.25, 0.75])
    emb, starts, ends = _file()
    a, b = _mlp(), _context()
    want = 0.25 * a.predict_windows(emb, starts, ends) + 0.75 * b.predict_windows(emb, starts, ends)
    got = head.predict_windows(emb, starts, ends)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    pooled = emb.embeddings.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(head.predict_proba(pooled),
                               0.25 * a.predict_proba(pooled) + 0.75 * b.predict_proba(pooled),
                               rtol=1e-5, atol=1e-6)
    assert head.detection_thresholds() == {"cry": 0.7, "screaming": 0.6}
    assert head.detection_settings() == {"min_event_s": 1.5, "max_gap_s": 2.0}


def test_the_identity_covers_the_members_weights(tmp_path: Path) -> None:
    folder = _ensemble(tmp_path)
    before = load_head(folder).sha256
    other = _context(seed=9)
    other.save(folder / "context")  # same files, other weights
    assert load_head(folder).sha256 != before


def test_members_must_agree_and_stay_inside_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes"):
        EnsembleHead([_mlp(), MLPHead(classes=("a", "b", "c"), backbone_config=BACKBONE,
                                      layers=[(np.ones((3, DIM)), np.zeros(3))],
                                      mean=np.zeros(DIM), std=np.ones(DIM))], [1, 1])
    with pytest.raises(ValueError, match="positive"):
        EnsembleHead([_mlp(), _context()], [1, 0])
    folder = _ensemble(tmp_path)
    meta = json.loads((folder / "head.json").read_text())

    def broken(change) -> Path:
        out = tmp_path / f"broken{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folder, out)
        m = json.loads(json.dumps(meta))
        change(m)
        (out / "head.json").write_text(json.dumps(m))
        return out

    shutil.copytree(folder / "clip", tmp_path / "outside")
    cases = {
        "sub-folder": lambda m: m["members"][0].update(folder="../outside"),
        "no head.json": lambda m: m["members"][0].update(folder="missing"),
        "non-empty list": lambda m: m.update(members=[]),
        "needs a 'folder'": lambda m: m["members"].append({"weight": 1}),
        "positive": lambda m: m["members"][0].update(weight=-1),
    }
    for message, change in cases.items():
        with pytest.raises(ScannerError, match=message):
            load_head(broken(change))
    nested = broken(lambda m: m["members"].append({"folder": "inner", "weight": 1}))
    shutil.copytree(folder, nested / "inner")
    with pytest.raises(ScannerError, match="another ensemble"):
        load_head(nested)


def test_a_member_for_another_backbone_is_refused(tmp_path: Path) -> None:
    head = load_head(_ensemble(tmp_path))
    with pytest.raises(HeadMismatchError, match="trained for backbone 'fake'"):
        head.check_backbone({"name": "yamnet", "embedding_dim": 1024})
    with pytest.raises(HeadMismatchError, match="-d"):
        head.check_backbone({**BACKBONE, "embedding_dim": 16})
    head.check_backbone(BACKBONE)


def test_builtin_detector_is_an_ensemble_of_a_temporal_a_context_and_the_audioset_head() -> None:
    from scanner.heads.audioset import AudioSetHead
    from scanner.heads.temporal import TemporalHead

    heads = builtin_heads()
    head = load_head("detector")
    assert isinstance(head, EnsembleHead)
    kinds = sorted(m.kind for m in head.members)
    assert kinds == ["audioset", "context", "temporal"]
    zero_shot = next(m for m in head.members if isinstance(m, AudioSetHead))
    assert zero_shot.features == "embeddings" and zero_shot.score_layer is not None
    base = load_head("audioset")  # the same mapping and calibration as the built-in one
    np.testing.assert_array_equal(zero_shot.weight, base.weight)
    np.testing.assert_array_equal(zero_shot.bias, base.bias)
    assert list(zero_shot.score_index) == list(base.score_index)
    with pytest.raises(ScannerError, match="derives its input"):
        head.predict_proba(np.zeros((1, 1024), np.float32))
    temporal = next(m for m in head.members if isinstance(m, TemporalHead))
    assert temporal.dilations == (1, 2, 4) and temporal.radius == 14
    config = temporal.extra["training"]["config"]
    assert config["arch"] == "temporal" and config["val"] == config["test"] == 0.2
    assert 0 < temporal.temperature < 10
    assert set(head.detection_thresholds()) == {"cry", "screaming"}
    assert set(head.detection_settings()) >= {"min_event_s", "max_gap_s"}
    report = (heads["detector"] / "report.md").read_text()
    assert "scanner train" in report and "--arch temporal" in report
    assert "published method" not in report


def test_calibrating_into_a_copy_keeps_the_members(tmp_path: Path) -> None:
    from training.calibrate_verdicts import _target

    folder = _ensemble(tmp_path)
    written = _target(folder, tmp_path / "copy")
    assert written == tmp_path / "copy" / "head.json"
    copy = load_head(tmp_path / "copy")
    assert isinstance(copy, EnsembleHead) and copy.sha256 == load_head(folder).sha256


def test_write_ensemble_copies_members_unchanged_and_never_replaces_a_folder(tmp_path: Path) -> None:
    from scanner.heads.ensemble import write_ensemble

    clip, ctx = _mlp().save(tmp_path / "clip"), _context().save(tmp_path / "ctx")
    (tmp_path / "ctx" / "report.md").write_text("# the member's own report")
    out = write_ensemble(tmp_path / "heads" / "mix", [clip, ctx], [0.5, 0.5],
                         thresholds={"cry": 0.8, "screaming": 0.7},
                         detection={"min_event_s": 1.5, "max_gap_s": 2.0}, name="mix",
                         extra={"command": "python benchmarks/compare_detectors.py ..."})
    head = load_head(out)
    assert isinstance(head, EnsembleHead) and head.name == "mix"
    assert [load_head(out / sub).sha256 for sub in ("clip", "ctx")] == \
        [load_head(clip).sha256, load_head(ctx).sha256]
    assert (out / "ctx" / "report.md").read_text() == "# the member's own report"
    emb, starts, ends = _file()
    want = 0.5 * _mlp().predict_windows(emb, starts, ends) + 0.5 * _context().predict_windows(
        emb, starts, ends)
    np.testing.assert_allclose(head.predict_windows(emb, starts, ends), want, rtol=1e-5, atol=1e-6)
    assert head.detection_thresholds() == {"cry": 0.8, "screaming": 0.7}
    assert head.extra["command"].startswith("python benchmarks/compare_detectors.py")
    before = (out / "head.json").read_bytes()
    with pytest.raises(ScannerError, match="exists already"):
        write_ensemble(out, [clip, ctx], [0.5, 0.5], thresholds={}, detection={}, name="again")
    assert (out / "head.json").read_bytes() == before
    with pytest.raises(ScannerError, match="distinct folder names"):
        write_ensemble(tmp_path / "dup", [clip, clip], [0.5, 0.5], thresholds={}, detection={},
                       name="dup")
    assert not (tmp_path / "dup").exists()
    assert [p.name for p in (tmp_path / "heads").iterdir()] == ["mix"]  # no temporary left
