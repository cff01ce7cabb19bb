"""Make the bundled sample clips: synthetic, seeded, a few seconds each, in several formats.

Run from anywhere: ``python sample_audio/make_samples.py``. The clips are made here from
numbers (no recordings), so they can ship with the project. They exercise the scanner's
plumbing (formats, rates, channels, nesting, a non-audio file); they are rough imitations, and
a model's labels for them say little about real recordings.

Re-running rewrites every clip byte for byte the same: the two things libsndfile makes up
(the timestamp in a float WAV's PEAK chunk, an Ogg stream's random serial number) are fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.typing import NDArray
from scipy.signal import lfilter

HERE = Path(__file__).resolve().parent
SEED = 20240611

Array = NDArray[np.float64]


def _envelope(n: int, rate: int, attack_s: float, release_s: float) -> Array:
    env = np.ones(n)
    a, r = min(n, int(attack_s * rate)), min(n, int(release_s * rate))
    env[:a] = np.linspace(0, 1, a)
    env[n - r:] = np.minimum(env[n - r:], np.linspace(1, 0, r))
    return env


def _harmonics(f0: Array, rate: int, n_harmonics: int, tilt: float,
               rng: np.random.Generator) -> Array:
    """A harmonic tone following the pitch contour ``f0`` (one value per sample)."""
    phase = 2 * np.pi * np.cumsum(f0) / rate
    out = np.zeros_like(f0)
    for k in range(1, n_harmonics + 1):
        audible = (k * f0 < 0.45 * rate).astype(float)  # no aliasing above Nyquist
        out += audible * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**tilt
    return out


def _resonate(x: Array, rate: int, freq_hz: float, bandwidth_hz: float) -> Array:
    """A two-pole resonator (a formant)."""
    r = np.exp(-np.pi * bandwidth_hz / rate)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq_hz / rate), r * r]
    return lfilter([1 - r], a, x)


def cry_like(duration_s: float, rate: int, rng: np.random.Generator) -> Array:
    """Infant-cry-like bursts: arched 400-600 Hz pitch, vibrato, breathy gaps between bursts."""
    n = int(duration_s * rate)
    out = np.zeros(n)
    t = 0.1
    while t < duration_s - 0.4:
        burst_s = rng.uniform(0.6, 1.1)
        m = min(int(burst_s * rate), n - int(t * rate))
        u = np.linspace(0, 1, m)
        f0 = 420 + 170 * np.sin(np.pi * u) ** 0.7 + rng.uniform(-20, 20)
        f0 *= 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(5, 8) * u * burst_s)
        voice = _harmonics(f0, rate, 12, 1.2, rng)
        voice = _resonate(voice, rate, 1100, 300) + 0.6 * _resonate(voice, rate, 2800, 500)
        voice += 0.05 * rng.standard_normal(m)
        start = int(t * rate)
        out[start:start + m] += voice * _envelope(m, rate, 0.05, 0.15)
        t += burst_s + rng.uniform(0.2, 0.4)  # the in-breath
    return 0.5 * out / np.abs(out).max()


def scream_like(duration_s: float, rate: int, rng: np.random.Generator) -> Array:
    """Scream-like bursts: high arched pitch (700 -> 1400 Hz), rough (70 Hz flutter), noisy."""
    n = int(duration_s * rate)
    out = np.zeros(n)
    t = 0.05
    while t < duration_s - 0.5:
        burst_s = rng.uniform(1.0, 1.6)
        m = min(int(burst_s * rate), n - int(t * rate))
        u = np.linspace(0, 1, m)
        f0 = rng.uniform(700, 900) + rng.uniform(300, 600) * np.sin(np.pi * u) ** 0.5
        f0 *= 1 + 0.04 * np.sin(2 * np.pi * rng.uniform(4, 7) * u * burst_s)
        f0 *= 1 + 0.01 * rng.standard_normal(m)
        voice = _harmonics(f0, rate, 10, 0.7, rng)
        # roughness and breath noise are what tell a scream from a siren's clean sweep
        voice *= 1 + 0.5 * np.sin(2 * np.pi * 70 * u * burst_s)
        voice = (_resonate(voice, rate, 1000, 250) + 0.8 * _resonate(voice, rate, 1600, 300)
                 + 0.5 * _resonate(voice, rate, 3000, 500))
        breath = _resonate(rng.standard_normal(m), rate, 2500, 1500)
        voice += np.abs(voice).max() * breath / 3
        start = int(t * rate)
        out[start:start + m] += voice * _envelope(m, rate, 0.03, 0.25)
        t += burst_s + rng.uniform(0.15, 0.35)
    return 0.8 * np.tanh(3 * out / np.abs(out).max())


VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240),
          (660, 1720, 2410), (490, 1350, 1690)]
"""Formants (F1, F2, F3 in Hz) of a few English vowels."""


def speech_like(duration_s: float, rate: int, rng: np.random.Generator) -> Array:
    """One talker's speech-like syllables: glottal pulses through vowel formants, with
    noise-burst consonants and pauses."""
    n = int(duration_s * rate)
    out = np.zeros(n)
    base = rng.uniform(95, 230)
    pos = int(rng.uniform(0, 0.3) * rate)
    while pos < n:
        if rng.random() < 0.6:  # a consonant: a short burst of high noise
            c = min(int(rng.uniform(0.03, 0.07) * rate), n - pos)
            burst = _resonate(rng.standard_normal(c), rate, rng.uniform(2500, 0.2 * rate), 1500)
            out[pos:pos + c] += 0.3 * burst / np.abs(burst).max() * _envelope(c, rate, 0.005, 0.01)
            pos += c
        m = min(int(rng.uniform(0.12, 0.3) * rate), n - pos)
        if m <= 0:
            break
        u = np.linspace(0, 1, m)
        f0 = base * (1 + rng.uniform(-0.15, 0.15) + rng.uniform(-0.1, 0.1) * u)
        f0 *= 1 + 0.01 * rng.standard_normal(m)
        pulses = (np.diff(np.floor(np.cumsum(f0) / rate), prepend=0) > 0).astype(float)
        source = lfilter([1], [1, -0.95], pulses) + 0.02 * rng.standard_normal(m)
        f1, f2, f3 = VOWELS[rng.integers(len(VOWELS))]
        syllable = (_resonate(source, rate, f1, 80) + 0.6 * _resonate(source, rate, f2, 100)
                    + 0.3 * _resonate(source, rate, f3, 150))
        out[pos:pos + m] += syllable / np.abs(syllable).max() * _envelope(m, rate, 0.03, 0.06)
        pos += m + int(rng.exponential(0.08) * rate)
        if rng.random() < 0.12:
            pos += int(rng.uniform(0.2, 0.5) * rate)
    return 0.4 * out / np.abs(out).max()


def room_noise(duration_s: float, rate: int, rng: np.random.Generator) -> Array:
    """Pink-ish background noise with a 50 Hz mains hum."""
    n = int(duration_s * rate)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum /= np.sqrt(np.maximum(freqs, 20))
    x = np.fft.irfft(spectrum, n)
    x = 0.05 * x / x.std() + 0.01 * np.sin(2 * np.pi * 50 * np.arange(n) / rate)
    return x


def tone(duration_s: float, rate: int, rng: np.random.Generator) -> Array:
    """A steady 440 Hz tone."""
    t = np.arange(int(duration_s * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * 440 * t) * _envelope(len(t), rate, 0.01, 0.01)


def silence(duration_s: float, rate: int, rng: np.random.Generator) -> Array:
    """Digital silence."""
    return np.zeros(int(duration_s * rate))


# (file, generator, seconds, rate, channels, subtype, seed). The imitations are crude, so the
# seeds were picked among the first few for YAMNet to hear each clip as what it imitates.
CLIPS = [
    ("nursery/cry_like.wav", cry_like, 4.0, 16000, 1, "PCM_16", 0),
    ("nursery/night/cry_like_8k.flac", cry_like, 5.0, 8000, 1, None, 1),
    ("street/scream_like.ogg", scream_like, 3.0, 44100, 2, "VORBIS", 2),
    ("street/alley/scream_like.mp3", scream_like, 3.0, 48000, 1, "MPEG_LAYER_III", 1),
    ("office/speech_like.flac", speech_like, 4.0, 22050, 1, None, 1),
    ("office/room_noise.wav", room_noise, 3.0, 8000, 1, "FLOAT", 5),
    ("tones/tone_440.flac", tone, 2.0, 48000, 2, None, 6),
    ("silence.wav", silence, 2.0, 16000, 1, "PCM_16", 7),
]

README = """Sample clips for trying the scanner, made by make_samples.py (numbers, not recordings).

nursery/   cry-like harmonic bursts (16 kHz WAV, 8 kHz FLAC)
street/    scream-like loud sweeps (44.1 kHz stereo Ogg Vorbis, 48 kHz MP3)
office/    speech-like syllables (22.05 kHz FLAC) and room noise (8 kHz float WAV)
tones/     a 440 Hz tone (48 kHz stereo FLAC)
silence.wav

They are rough imitations for testing the plumbing; a model's labels for them say little about
real recordings. This file is not audio: the scanner must skip it.
"""


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _make_reproducible(path: Path) -> None:
    """Zero a float WAV's PEAK timestamp; give every Ogg page a fixed serial (and its CRC)."""
    data = bytearray(path.read_bytes())
    if data[:4] == b"RIFF" and (at := data.find(b"PEAK")) > 0:
        data[at + 12:at + 16] = bytes(4)
    pos = 0
    while data[pos:pos + 4] == b"OggS":
        n_seg = data[pos + 26]
        end = pos + 27 + n_seg + sum(data[pos + 27:pos + 27 + n_seg])
        data[pos + 14:pos + 18] = SEED.to_bytes(4, "little")
        data[pos + 22:pos + 26] = bytes(4)
        data[pos + 22:pos + 26] = _ogg_crc(bytes(data[pos:end])).to_bytes(4, "little")
        pos = end
    path.write_bytes(bytes(data))


def main() -> None:
    """Write every clip (skipping MP3 where libsndfile cannot write it) and the README."""
    can_mp3 = "MP3" in sf.available_formats()
    for name, make, seconds, rate, channels, subtype, seed in CLIPS:
        if name.endswith(".mp3") and not can_mp3:
            continue
        rng = np.random.default_rng([SEED, seed])
        x = make(seconds, rate, rng)
        if channels == 2:  # a slightly different right channel, as from two microphones
            x = np.stack([x, 0.8 * np.roll(x, int(0.0007 * rate))], axis=1)
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x.astype(np.float32), rate, subtype=subtype)
        _make_reproducible(path)
    (HERE / "README.txt").write_text(README)


if __name__ == "__main__":
    main()
