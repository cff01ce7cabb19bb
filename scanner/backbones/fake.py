"""A framework-free backbone for tests: cheap spectral features that tell tones, noise and chirps apart."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.backbones import register_backbone
from scanner.backbones.base import Backbone
from scanner.records import Embedding


@register_backbone("fake")
class FakeBackbone(Backbone):
    """Log energies in ``embedding_dim`` linear frequency bands per patch (0.96 s, hop 0.48 s).

    Deterministic, fast and dependency-free, so pipeline, training and writer tests run
    without TensorFlow or torch. ``source`` is ignored.

    Args:
        fail_on_length_s: Raise a RuntimeError (as a model crash on one input would) for a
            waveform of this many seconds; set through ``backbone_options``, so it reaches
            every engine's model process (tests of per-file model failures).
    """

    name = "fake"

    def __init__(self, embedding_dim: int = 16, window_s: float = 0.96, hop_s: float = 0.48,
                 fail_on_length_s: float | None = None) -> None:
        self.embedding_dim = embedding_dim
        self.window_s = window_s
        self.hop_s = hop_s
        self.fail_on_length_s = fail_on_length_s

    @classmethod
    def load(cls, source: str | None = None, *, device: str = "auto", threads: int | None = None,
             **options: Any) -> FakeBackbone:
        return cls(**options)

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "source": "fake", "embedding_dim": self.embedding_dim}

    def embed(self, waveform: NDArray[np.float32]) -> Embedding:
        win = int(round(self.window_s * self.sample_rate_hz))
        hop = int(round(self.hop_s * self.sample_rate_hz))
        x = np.asarray(waveform, dtype=np.float32)
        if self.fail_on_length_s is not None \
                and abs(len(x) / self.sample_rate_hz - self.fail_on_length_s) < 0.01:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        n = 1 if len(x) <= win else 1 + int(np.ceil((len(x) - win) / hop))
        x = np.pad(x, (0, max(0, (n - 1) * hop + win - len(x))))
        frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n]
        spec = np.abs(np.fft.rfft(frames * np.hanning(win), axis=1)) ** 2
        bands = np.array_split(spec, self.embedding_dim, axis=1)
        feats = np.stack([np.log(b.mean(axis=1) + 1e-10) for b in bands], axis=1)
        starts = np.arange(n, dtype=np.float64) * self.hop_s
        return Embedding(feats.astype(np.float32), starts, self.window_s)


class CountingBackbone(FakeBackbone):
    """The fake backbone, counting the waveforms it embeds (tests of caching and reuse)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def embed(self, waveform: NDArray[np.float32]) -> Embedding:
        self.calls += 1
        return super().embed(waveform)
