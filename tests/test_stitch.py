"""Stitching a long file's parts: one buffer per backbone gives exactly what concatenating
the parts gave (rows, events and segments of a multi-part file), holding the patches once."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import scanner.engines.stages as stages
from scanner.config import ScanConfig
from scanner.engines.driver import scan
from scanner.engines.stages import PatchBuffer
from scanner.records import Embedding
from scanner.testing import chirp, noise, sine, write_audio

SR = 16000


class ConcatBuffer:
    """The reference: every part kept in a list, concatenated at the end."""

    added: list[int] = []  # the part numbers seen, by every instance

    def __init__(self, n_parts: int) -> None:
        self.parts: list[Embedding] = []

    def add(self, emb: Embedding, part: int) -> None:
        self.parts.append(emb)
        ConcatBuffer.added.append(part)

    def take(self) -> Embedding:
        full = [p for p in self.parts if p.n_patches] or self.parts[:1]
        scores = None if full[0].scores is None else np.concatenate([p.scores for p in full])
        return Embedding(np.concatenate([p.embeddings for p in full]),
                         np.concatenate([p.starts_s for p in full]), full[0].window_s, scores)


def _parts(sizes: list[int], *, dim: int = 6, scores: bool = True, seed: int = 0
           ) -> list[Embedding]:
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    for k in sizes:
        starts = t + 0.48 * np.arange(k)
        t += 0.48 * k
        out.append(Embedding(rng.standard_normal((k, dim)).astype(np.float32), starts, 0.96,
                             rng.random((k, 3)).astype(np.float32) if scores and k else None))
    return out


@pytest.mark.parametrize("sizes", [
    [10, 10, 10, 7],        # equal parts, a short last one: trimmed to size
    [10, 11, 12, 30, 2],    # parts longer than the first: the buffer grows
    [0, 8, 8, 8],           # an empty first part (no scores on it)
    [9, 9, 0, 0],           # parts past the real end of an estimated duration
    [0, 0, 0],              # nothing at all
])
def test_buffer_gives_the_concatenation_exactly(sizes):
    parts = _parts(sizes)
    buffer, reference = PatchBuffer(len(sizes)), ConcatBuffer(len(sizes))
    for i, part in enumerate(parts):
        buffer.add(part, i)
        reference.add(part, i)
    got, want = buffer.take(), reference.take()
    assert got.window_s == want.window_s and got.n_patches == sum(sizes)
    np.testing.assert_array_equal(got.embeddings, want.embeddings)
    np.testing.assert_array_equal(got.starts_s, want.starts_s)
    if sum(sizes):
        np.testing.assert_array_equal(got.scores, want.scores)
        assert got.embeddings.dtype == np.float32 and got.embeddings.shape[1] == 6
        # what the file keeps is (about) its own size, not the buffer's estimate
        held = got.embeddings.base if got.embeddings.base is not None else got.embeddings
        assert held.shape[0] <= sum(sizes) * 9 // 8 + stages.PATCH_SLACK


def test_buffer_without_scores_keeps_none():
    parts = _parts([5, 5, 3], scores=False)
    buffer = PatchBuffer(3)
    for i, part in enumerate(parts):
        buffer.add(part, i)
    got = buffer.take()
    assert got.scores is None and got.n_patches == 13


def _recording(path, seconds: float = 75.0) -> None:
    """Speech-band noise with tone bursts and chirps: windows of every kind."""
    x = noise(seconds, SR, amplitude=0.05, seed=4)
    for k, at in enumerate(np.arange(3.0, seconds - 4.0, 7.0)):
        burst = sine(500 + 150 * k, 2.5, SR) if k % 2 else chirp(300, 3000, 2.5, SR)
        i = int(at * SR)
        x[i:i + len(burst)] += burst
    write_audio(path, x, SR)


def test_multi_part_scan_is_identical_to_concatenated_parts(tmp_path, fake_head, monkeypatch):
    audio = tmp_path / "in"
    _recording(audio / "long.wav")
    write_audio(audio / "short.wav", sine(700, 2.0, SR), SR)  # a one-part file beside it

    def run(name: str) -> dict[str, list[dict]]:
        out = tmp_path / f"{name}.parquet"
        # 4 s parts: the 75 s file is 19 parts, each decoded past its end and trimmed
        config = ScanConfig(backbones=("fake",), heads={"fake": str(fake_head)}, workers=0,
                            part_s=4.0, batch_s=9.0, segments=True,
                            thresholds={"cry": 0.3, "screaming": 0.3})
        scan([audio], out, config)
        tables = {}
        for kind, path in (("files", out), ("events", out.with_suffix(".events.parquet")),
                           ("segments", out.with_suffix(".segments.parquet"))):
            table = pq.read_table(path)
            tables[kind] = table.drop_columns(
                [c for c in ("seconds_taken",) if c in table.column_names]).to_pylist()
        return tables

    got = run("buffer")
    monkeypatch.setattr(stages, "PatchBuffer", ConcatBuffer)
    ConcatBuffer.added.clear()
    want = run("concatenated")
    assert ConcatBuffer.added == list(range(19))  # the long file went through in 19 parts
    assert got == want
    assert len(got["files"]) == 2 and {r["status"] for r in got["files"]} == {"ok"}
    assert len([s for s in got["segments"] if s["path"].endswith("long.wav")]) > 140
    assert got["events"], "the thresholds are low enough for the bursts to make events"
