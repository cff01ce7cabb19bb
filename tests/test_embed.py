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

from scanner.backbones.fake import FakeBackbone
from scanner.audio.discover import discover
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
    if concurrent == 2:
        assert slow.most_at_once == 2  # a batch started while another one ran
    else:
        assert slow.most_at_once == 1


def test_the_idle_model_gets_a_small_batch_then_full_ones_while_busy(tmp_path):
    files = discover([_folder(tmp_path, n=30)])
    slow = SlowBackbone(delay_s=0.2)
    list(embed_files(files, [slow], workers=0, batch_s=10.0, min_batch_s=3.0))
    sizes = [sum(b) for b in slow.batches]
    assert sizes[0] == pytest.approx(4.0)  # the first two clips reach 3 s: no waiting for 10 s
    assert max(sizes) == pytest.approx(10.0)  # gathered to the full size while the model ran
    assert sum(sizes) == pytest.approx(60.0)


def test_a_model_error_in_the_background_reaches_the_caller(tmp_path):
    files = discover([_folder(tmp_path)])
    slow = SlowBackbone(concurrent=2, fail_on=2)
    with pytest.raises(RuntimeError, match="model failed on batch 2"):
        list(embed_files(files, [slow], workers=0, batch_s=4.0, min_batch_s=4.0))
