"""Waveform transforms for training views: the band-limited (telephone-bandwidth) view.

Most real cry clips were recorded at 8 kHz while the other classes are mostly 16 kHz, so
a head can learn "no energy above 4 kHz" instead of the sound. Training on band-limited
copies of every clip (and checking test accuracy with every clip band-limited) removes
that shortcut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scanner.output.cache import ORIGINAL_VIEW

SAMPLE_RATE_HZ = 16_000
ORIGINAL = ORIGINAL_VIEW
"""Name of the untransformed view (cache key and metrics label)."""


@dataclass(frozen=True)
class BandLimit:
    """Low-passes a waveform at ``cutoff_hz`` by resampling down to ``2 * cutoff_hz`` and back.

    soxr's anti-aliasing filter is what an 8 kHz recording went through, so a 16 kHz clip
    band-limited at 4 kHz looks, spectrally, like the 8 kHz clips. A module-level frozen
    dataclass, so it pickles into decode workers.

    Args:
        cutoff_hz: Highest frequency kept (the Nyquist frequency of the intermediate rate).
        sample_rate_hz: Rate of the waveforms it is applied to.
    """

    cutoff_hz: int = 4000
    sample_rate_hz: int = SAMPLE_RATE_HZ

    def __post_init__(self) -> None:
        if not 0 < 2 * self.cutoff_hz < self.sample_rate_hz:
            raise ValueError(f"cutoff_hz must be in (0, {self.sample_rate_hz // 2}), "
                             f"got {self.cutoff_hz}")

    @property
    def name(self) -> str:
        """Cache and report name, e.g. ``bandlimit4k`` (``bandlimit3500hz`` when not whole kHz)."""
        if self.cutoff_hz % 1000 == 0:
            return f"bandlimit{self.cutoff_hz // 1000}k"
        return f"bandlimit{self.cutoff_hz}hz"

    def __call__(self, waveform: NDArray[np.float32]) -> NDArray[np.float32]:
        """``[samples]`` at ``sample_rate_hz`` -> the same length, band-limited."""
        import soxr

        x = np.asarray(waveform, dtype=np.float32)
        if len(x) == 0:
            return x
        low = soxr.resample(x, self.sample_rate_hz, 2 * self.cutoff_hz, quality="HQ")
        y = soxr.resample(low, 2 * self.cutoff_hz, self.sample_rate_hz, quality="HQ")
        if len(y) >= len(x):
            y = y[: len(x)]
        else:
            y = np.pad(y, (0, len(x) - len(y)))
        return np.clip(y, -1.0, 1.0).astype(np.float32)
