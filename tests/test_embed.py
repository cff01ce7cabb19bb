"""The embedding stream: batches go to the model in background threads, results come in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from numpy.typing import NDArray

from scanner.audio.discover import discover
from scanner.backbones.fake import FakeBackbone
from scanner.engines.local import embed_files
from scanner.records import Embedding


class SlowBackbone(FakeBackbone):
    """The fake backbone with a slow, uneven embed_batch that records each batch."""

    def __init__(self, *, concurrent: int = 1, delay_s: float = 0.02, fail_on: int | None = None
                 ) -> None:
        super().__init__()
        self.concurrent_batches = concurrent
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.batches: list[list[float]] = []
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(0)

    def embed_batch(self, waveforms: Sequence[NDArray[np.float32]]) -> list[Embedding]:
        with self._lock:
            self.batches.append([len(w) / self.sample_rate_hz for w in waveforms])
            number = len(self.batches)
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
            delay = self.delay_s * self._rng.uniform(0.2, 2.0)
        try:
            time.sleep(delay)  # a later batch may finish first
            if number == self.fail_on:
                raise RuntimeError(f"model failed on batch {number}")
            return [self.embed(w) for w in waveforms]
        finally:
            with self._lock:
                self._running -= 1


def _folder(tmp_path: Path, n: int = 24, seconds: float = 2.0) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        sf.write(tmp_path / f"{i:03d}.wav",
                 (0.2 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    return tmp_path


@pytest.mark.parametrize("concurrent", [1, 2])
def test_results_come_in_file_order_equal_to_one_file_at_a_time(tmp_path, concurrent):
    files = discover([_folder(tmp_path)])
    slow = SlowBackbone(concurrent=concurrent)
    results = list(embed_files(files, [slow], workers=0, batch_s=8.0, min_batch_s=3.0))
    assert [r.file.path for r in results] == [f.path for f in files]
    reference = FakeBackbone()
    for r in results:
        x, _ = sf.read(r.file.path, dtype="float32")
        np.testing.assert_array_equal(r.embeddings["fake"].embeddings,
                                      reference.embed(x).embeddings)
    assert sum(len(b) for b in slow.batches) == len(files)
    assert slow.most_at_once <= concurrent  # never more batches at once than the model allows
    assert all(sum(b) <= 8.0 for b in slow.batches)  # no batch past batch_s


def test_a_model_error_on_a_batch_costs_only_the_file_that_causes_it(tmp_path):
    files = discover([_folder(tmp_path)])
    # the model raises on 2.0 s inputs: every clip here; on its own, each fails again
    failing = SlowBackbone(concurrent=2)
    failing.fail_on_length_s = 2.0
    results = list(embed_files(files, [failing], workers=0, batch_s=4.0, min_batch_s=4.0))
    assert [r.file.path for r in results] == [f.path for f in files]
    assert all(not r.ok and r.failure.kind == "model" for r in results)
    assert "illegal memory access" in results[0].failure.message
    # one bad clip among good ones: only it fails, the others are embedded as usual
    (tmp_path / "odd.wav").unlink(missing_ok=True)
    sf.write(tmp_path / "010.wav", np.zeros(16000 * 3, np.float32), 16000)  # 3 s: fine
    failing.fail_on_length_s = 3.0
    results = list(embed_files(discover([tmp_path]), [failing], workers=0, batch_s=8.0))
    bad = [r for r in results if not r.ok]
    assert [r.file.path.name for r in bad] == ["010.wav"]
    assert all(r.embeddings["fake"].n_patches for r in results if r.ok)
