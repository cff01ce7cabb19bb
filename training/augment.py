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


@dataclass(frozen=True)
class MuLawPhone:
    """A telephone channel: 8 kHz G.711 mu-law (8-bit) and back to 16 kHz.

    Simulates low-rate, low-bit-depth recordings (baby monitors, phone calls).
    """

    rate_hz: int = 8000
    sample_rate_hz: int = SAMPLE_RATE_HZ
    name: str = "mulaw8k"

    def __call__(self, waveform: NDArray[np.float32]) -> NDArray[np.float32]:
        import soxr

        x = np.asarray(waveform, dtype=np.float32)
        if len(x) == 0:
            return x
        low = np.clip(soxr.resample(x, self.sample_rate_hz, self.rate_hz, quality="HQ"), -1, 1)
        mu = 255.0
        code = np.round(np.sign(low) * np.log1p(mu * np.abs(low)) / np.log1p(mu) * 127)
        low = np.sign(code) * np.expm1(np.abs(code) / 127 * np.log1p(mu)) / mu
        y = soxr.resample(low.astype(np.float32), self.rate_hz, self.sample_rate_hz, quality="HQ")
        return _fit_length(y, len(x))


@dataclass(frozen=True)
class LossyCodec:
    """A round trip through a lossy encoder at a low bit rate (MP3 32 kb/s by default), via PyAV."""

    codec: str = "libmp3lame"
    container: str = "mp3"
    bit_rate: int = 32_000
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def name(self) -> str:
        return f"{self.container}{self.bit_rate // 1000}k"

    def __call__(self, waveform: NDArray[np.float32]) -> NDArray[np.float32]:
        import io

        import av

        x = np.asarray(waveform, dtype=np.float32)
        if len(x) == 0:
            return x
        buf = io.BytesIO()
        with av.open(buf, "w", format=self.container) as out:
            stream = out.add_stream(self.codec, rate=self.sample_rate_hz, layout="mono")
            stream.bit_rate = self.bit_rate
            frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate_hz
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        buf.seek(0)
        parts = []
        with av.open(buf, "r") as inp:
            for frame in inp.decode(audio=0):
                parts.append(frame.to_ndarray().reshape(-1, frame.samples).mean(axis=0))
        y = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return _fit_length(y, len(x))


def _fit_length(y: NDArray[np.floating], n: int) -> NDArray[np.float32]:
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    return np.clip(y, -1.0, 1.0).astype(np.float32)
