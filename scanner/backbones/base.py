"""The backbone interface: a frozen pretrained model that turns 16 kHz mono audio into patch embeddings."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from scanner.constants import SAMPLE_RATE_HZ
from scanner.records import Embedding


class Backbone(ABC):
    """A pretrained embedding model. Subclasses import their framework lazily, inside methods.

    Attributes:
        name: Registry name (``yamnet``, ``wav2vec2``).
        sample_rate_hz: Rate the model expects; decoding resamples to it.
        embedding_dim: Size of one patch embedding.
        window_s: Length of one analysis patch.
        hop_s: Step between patches.
        score_names: Names of the model's own class scores (YAMNet's 521 AudioSet
            classes), or None when it has none.
        concurrent_batches: How many :meth:`embed_batch` calls may run at once from
            different threads (1: one at a time). More lets the next batch start while
            the last calls of one still run.
    """

    name: ClassVar[str]
    sample_rate_hz: ClassVar[int] = SAMPLE_RATE_HZ
    embedding_dim: int
    window_s: float
    hop_s: float
    score_names: tuple[str, ...] | None = None
    concurrent_batches: int = 1

    @classmethod
    @abstractmethod
    def load(cls, source: str | None = None, *, device: str = "auto", threads: int | None = None,
             **options: Any) -> Backbone:
        """Loads the model from ``source`` (a hub handle, a local folder or file), or from the
        default place (``SCANNER_MODEL_DIR``, then the hub) when ``source`` is None.

        Raises:
            ModelNotFoundError: Nothing could be loaded; the message says what was tried.
        """

    @property
    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What a head must match: at least ``name``, ``embedding_dim`` and ``source``."""

    @abstractmethod
    def embed(self, waveform: NDArray[np.float32]) -> Embedding:
        """Embeds one ``[samples]`` waveform at ``sample_rate_hz``; any length, even shorter
        than one patch (it is padded). Long input is processed in bounded chunks."""

    def embed_batch(self, waveforms: Sequence[NDArray[np.float32]]) -> list[Embedding]:
        """Embeds many waveforms; subclasses override this to run few, large model calls.

        Must give the same embeddings as calling :meth:`embed` on each (within float tolerance).
        """
        return [self.embed(w) for w in waveforms]

    @property
    def can_use_gpu(self) -> bool:
        """Whether this model, as loaded, can run on a GPU (an engine reserves GPUs for it)."""
        return False

    def config(self) -> dict[str, Any]:
        """The preprocessing facts a head records and checks."""
        return {
            "name": self.name,
            "sample_rate_hz": self.sample_rate_hz,
            "embedding_dim": self.embedding_dim,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
        }
