"""The band-limit transform: keeps low tones, removes what an 8 kHz recording cannot hold."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from scanner.testing import noise, sine
from training.augment import BandLimit


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x[2000:-2000].astype(np.float64) ** 2)))


def test_passes_low_tones_and_removes_high_ones() -> None:
    bl = BandLimit(4000)
    low, high = sine(1000, 1.0, 16000), sine(6000, 1.0, 16000)
    assert _rms(bl(low)) == pytest.approx(_rms(low), rel=0.01)
    assert _rms(bl(high)) < 1e-3 * _rms(high)


def test_noise_loses_its_upper_half_spectrum() -> None:
    x = noise(2.0, 16000, seed=1)
    y = BandLimit(4000)(x)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[freqs > 4200].sum() < 1e-4 * spec[freqs < 3500].sum()
    # The white noise kept about half its power (the 0-4 kHz half, less the filter's edge).
    assert 0.35 < _rms(y) ** 2 / _rms(x) ** 2 < 0.55


def test_keeps_length_dtype_and_handles_empty_and_short() -> None:
    bl = BandLimit(4000)
    for n in (0, 1, 7, 16001):
        x = noise(n / 16000, 16000, seed=n)
        y = bl(x)
        assert y.shape == x.shape and y.dtype == np.float32


def test_name_validation_and_pickling() -> None:
    assert BandLimit(4000).name == "bandlimit4k"
    assert BandLimit(3500).name == "bandlimit3500hz"
    with pytest.raises(ValueError):
        BandLimit(8000)
    bl = pickle.loads(pickle.dumps(BandLimit(3000)))
    assert bl == BandLimit(3000)


def test_phone_and_codec_channels_keep_length_and_cut_what_they_should() -> None:
    from training.augment import LossyCodec, MuLawPhone

    sr = 16000
    t = np.arange(2 * sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    for channel in (MuLawPhone(), LossyCodec()):
        y = channel(x)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        # the 440 Hz tone survives either channel
        keep = np.abs(np.fft.rfft(y))[880] / np.abs(np.fft.rfft(x))[880]
        assert 0.8 < keep < 1.2
    high = np.abs(np.fft.rfft(MuLawPhone()(x)))[12000] / np.abs(np.fft.rfft(x))[12000]
    assert high < 0.05  # 6 kHz is above an 8 kHz channel's Nyquist frequency
    assert MuLawPhone()(np.zeros(0, np.float32)).shape == (0,)
