"""The temporal head: numpy inference matches torch, chunking, save/load checks, registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scanner.errors import ScannerError
from scanner.heads import load_head
from scanner.heads import temporal as temporal_mod
from scanner.heads.temporal import TemporalHead, conv_same
from scanner.records import Embedding

DIM, HIDDEN, CLASSES = 8, 6, ("cry", "screaming", "not_screaming")
BACKBONE = {"name": "fake", "embedding_dim": DIM, "window_s": 0.96, "hop_s": 0.48,
            "sample_rate_hz": 16000}


def _torch_net(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch

    from training.temporal import _network

    torch.manual_seed(seed)
    return _network(DIM, HIDDEN, 5, (1, 2, 4), len(CLASSES), 0.0).eval()


def _head_of(net, **kw) -> TemporalHead:  # type: ignore[no-untyped-def]
    def dense(c):  # type: ignore[no-untyped-def]
        return c.weight.detach().numpy()[:, :, 0], c.bias.detach().numpy()

    rng = np.random.default_rng(1)
    return TemporalHead(classes=CLASSES, backbone_config=BACKBONE, proj=dense(net.proj),
                        blocks=[(c.weight.detach().numpy(), c.bias.detach().numpy())
                                for c in net.blocks],
                        dilations=(1, 2, 4), out=dense(net.out),
                        mean=rng.standard_normal(DIM).astype(np.float32),
                        std=rng.uniform(0.5, 2, DIM).astype(np.float32), **kw)


def test_numpy_forward_equals_torch_on_a_whole_sequence() -> None:
    import torch

    net = _torch_net()
    head = _head_of(net)
    x = np.random.default_rng(2).standard_normal((40, DIM)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy((x - head.mean) / head.std)[None], torch.ones(1, 40))[0]
    np.testing.assert_allclose(head.sequence_logits(x), want.numpy(), atol=1e-5)
    assert head.radius == 2 * (1 + 2 + 4)


def test_conv_same_is_a_zero_padded_cross_correlation() -> None:
    rng = np.random.default_rng(3)
    h = rng.standard_normal((9, 2)).astype(np.float32)
    w = rng.standard_normal((1, 2, 3)).astype(np.float32)
    got = conv_same(h, w, np.zeros(1, np.float32), dilation=2)
    pad = np.vstack([np.zeros((2, 2)), h, np.zeros((2, 2))])
    want = [sum(pad[t + 2 * j] @ w[0, :, j] for j in range(3)) for t in range(9)]
    np.testing.assert_allclose(got[:, 0], want, atol=1e-5)


def test_long_files_run_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    head = _head_of(_torch_net())
    x = np.random.default_rng(4).standard_normal((100, DIM)).astype(np.float32)
    whole = head.patch_proba(x)
    monkeypatch.setattr(temporal_mod, "CHUNK_PATCHES", 9)
    np.testing.assert_allclose(head.patch_proba(x), whole, atol=1e-6)


def test_windows_read_their_centre_patch_and_see_neighbours() -> None:
    head = _head_of(_torch_net())
    rng = np.random.default_rng(5)
    emb = Embedding(rng.standard_normal((30, DIM)).astype(np.float32), np.arange(30) * 0.48, 0.96)
    starts = np.arange(0, 12, 0.48)
    p = head.predict_windows(emb, starts, starts + 1.44)
    assert p.shape == (len(starts), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    far = emb.embeddings.copy()
    far[20] += 5  # 6 patches from window 10's centre (patch 11 or 12), within the radius 14
    p2 = head.predict_windows(Embedding(far, emb.starts_s, 0.96), starts, starts + 1.44)
    assert not np.allclose(p[10], p2[10])
    assert head.predict_windows(emb, np.zeros(0), np.zeros(0)).shape == (0, 3)


def test_save_load_round_trip_and_registry(tmp_path: Path) -> None:
    head = _head_of(_torch_net(), temperature=1.7, thresholds={"cry": 0.7},
                    detection={"min_event_s": 1.0})
    head.save(tmp_path / "t")
    meta = json.loads((tmp_path / "t" / "head.json").read_text())
    assert meta["kind"] == "temporal" and meta["architecture"]["receptive_field_patches"] == 29
    back = load_head(tmp_path / "t", backbone="fake")
    assert isinstance(back, TemporalHead) and back.temperature == 1.7
    assert back.thresholds == {"cry": 0.7}
    x = np.random.default_rng(6).standard_normal((12, DIM)).astype(np.float32)
    np.testing.assert_allclose(back.patch_proba(x), head.patch_proba(x), atol=1e-6)
    # a pooled clip vector: a steady sound
    assert back.predict_proba(x[:2]).shape == (2, 3)


def test_malformed_heads_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    net = _torch_net()
    with pytest.raises(ValueError, match="non-finite"):
        bad = _head_of(net)
        w, b = bad.blocks[0]
        w = w.copy()
        w[0, 0, 0] = np.nan
        TemporalHead(classes=CLASSES, backbone_config=BACKBONE, proj=bad.proj,
                     blocks=[(w, b), *bad.blocks[1:]], dilations=(1, 2, 4), out=bad.out,
                     mean=bad.mean, std=bad.std)
    with pytest.raises(ValueError, match="dilations"):
        h = _head_of(net)
        TemporalHead(classes=CLASSES, backbone_config=BACKBONE, proj=h.proj, blocks=h.blocks,
                     dilations=(1, 2), out=h.out, mean=h.mean, std=h.std)
    with pytest.raises(ValueError, match="takes 8-d patches"):
        h = _head_of(net)
        TemporalHead(classes=CLASSES, backbone_config={**BACKBONE, "embedding_dim": 16},
                     proj=h.proj, blocks=h.blocks, dilations=(1, 2, 4), out=h.out,
                     mean=h.mean, std=h.std)
    _head_of(net).save(tmp_path / "t")
    tensors = load_file(str(tmp_path / "t" / "weights.safetensors"))
    tensors["block1.weight"] = tensors["block1.weight"][:, :, :4].copy()  # even kernel
    save_file(tensors, str(tmp_path / "t" / "weights.safetensors"))
    with pytest.raises(ScannerError, match="malformed"):
        load_head(tmp_path / "t", backbone="fake")
