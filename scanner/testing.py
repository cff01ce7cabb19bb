"""Seeded test audio: tones, noise and chirps as arrays, files in any libsndfile format, and a
corpus of awkward inputs (empty, not audio, truncated, NaN, ...) with the error each must give.

Only numpy and soundfile, so any test (and the pipeline's) can use it cheaply.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from scanner.errors import ErrorKind


def sine(freq_hz: float, duration_s: float, sample_rate_hz: int, *, amplitude: float = 0.5,
         channels: int = 1) -> NDArray[np.float32]:
    """A sine tone, ``[samples]`` when ``channels == 1`` else ``[samples, channels]``."""
    t = np.arange(int(round(duration_s * sample_rate_hz))) / sample_rate_hz
    return _channels(amplitude * np.sin(2 * np.pi * freq_hz * t), channels)


def noise(duration_s: float, sample_rate_hz: int, *, amplitude: float = 0.1, seed: int = 0,
          channels: int = 1) -> NDArray[np.float32]:
    """Gaussian white noise with standard deviation ``amplitude``, seeded."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate_hz))
    shape = (n, channels) if channels > 1 else n
    return (amplitude * rng.standard_normal(shape)).astype(np.float32)


def chirp(f0_hz: float, f1_hz: float, duration_s: float, sample_rate_hz: int, *,
          amplitude: float = 0.5, channels: int = 1) -> NDArray[np.float32]:
    """A linear sweep from ``f0_hz`` to ``f1_hz``."""
    t = np.arange(int(round(duration_s * sample_rate_hz))) / sample_rate_hz
    phase = 2 * np.pi * (f0_hz * t + (f1_hz - f0_hz) * t**2 / (2 * max(duration_s, 1e-9)))
    return _channels(amplitude * np.sin(phase), channels)


def _channels(x: NDArray[np.float64], channels: int) -> NDArray[np.float32]:
    x = x.astype(np.float32)
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)


def write_audio(path: str | Path, samples: NDArray[np.floating], sample_rate_hz: int, *,
                subtype: str | None = None, format: str | None = None) -> Path:
    """Write ``samples`` (``[samples]`` or ``[samples, channels]``) with soundfile.

    The format follows the extension unless given; ``.mp3`` defaults to MPEG layer III and
    ``.ogg``/``.oga`` to Vorbis. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if format is None and ext == ".mp3":
        format = "MP3"
    if format is None and ext in (".ogg", ".oga", ".opus"):
        format = "OGG"
    if subtype is None and format == "MP3":
        subtype = "MPEG_LAYER_III"
    if subtype is None and format == "OGG":
        subtype = "OPUS" if ext == ".opus" else "VORBIS"
    sf.write(path, samples, sample_rate_hz, subtype=subtype, format=format)
    return path


@dataclass(frozen=True)
class BadInput:
    """One file of the awkward-input corpus.

    Attributes:
        path: Where it was written.
        expected_kind: The :data:`~scanner.errors.ErrorKind` decoding must report, or None
            when the file must decode.
        description: What is odd about it.
    """

    path: Path
    expected_kind: ErrorKind | None
    description: str


NON_FINITE_AT_S = 1.23
"""Where the NaN and Inf corpus files hold their first bad sample."""


def make_bad_inputs(folder: str | Path) -> dict[str, BadInput]:
    """Write the awkward-input corpus into ``folder`` (about 0.5 MB), keyed by a short name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sr = 16000
    out: dict[str, BadInput] = {}

    def add(name: str, filename: str, kind: ErrorKind | None, description: str) -> Path:
        path = folder / filename
        out[name] = BadInput(path, kind, description)
        return path

    add("empty", "empty.wav", "empty", "zero bytes").write_bytes(b"")
    add("text", "notes.wav", "not_audio", "plain text with an audio extension").write_text(
        "These are my notes, not a recording.\n" * 40)
    add("random", "noise_bytes.mp3", "not_audio", "random bytes").write_bytes(
        np.random.default_rng(7).bytes(6000))
    add("image", "picture.flac", "not_audio", "a PNG image").write_bytes(
        bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(200))

    tone = sine(440, 3.0, sr, amplitude=0.4)
    for ext in ("wav", "flac", "mp3"):
        whole = write_audio(folder / f"_whole.{ext}", tone, sr).read_bytes()
        (folder / f"_whole.{ext}").unlink()
        add(f"truncated_{ext}", f"truncated.{ext}", "truncated",
            f"a 3 s {ext} cut at 60% of its bytes").write_bytes(whole[: int(len(whole) * 0.6)])
    long_noise = noise(8.0, sr, amplitude=0.3, seed=3)
    whole = write_audio(folder / "_whole.ogg", long_noise, sr).read_bytes()
    (folder / "_whole.ogg").unlink()
    add("truncated_ogg", "truncated.ogg", "truncated", "an 8 s Ogg Vorbis cut at 60%").write_bytes(
        whole[: int(len(whole) * 0.6)])

    wav = bytearray(write_audio(folder / "_one.wav", sine(440, 1.0, sr), sr,
                                subtype="PCM_16").read_bytes())
    (folder / "_one.wav").unlink()
    data_at = wav.find(b"data")
    huge = bytearray(wav)
    huge[data_at + 4:data_at + 8] = struct.pack("<I", 0xFFFFFF00)  # claims ~4 GB of samples
    huge[4:8] = struct.pack("<I", 0xFFFFFFF0)
    add("huge_header", "huge_header.wav", "truncated",
        "a 1 s wav whose header claims 4 GB").write_bytes(bytes(huge))
    odd = bytearray(wav)
    odd[20:22] = struct.pack("<H", 0x1234)  # a format tag no decoder knows
    add("unsupported", "unknown_codec.wav", "unsupported",
        "a wav with an unknown codec tag").write_bytes(bytes(odd))
    write_audio(add("no_frames", "header_only.wav", "empty", "a valid header, no samples"),
                np.zeros(0, np.float32), sr, subtype="PCM_16")

    for name, bad in (("nan", np.nan), ("inf", np.inf)):
        x = sine(220, 2.0, sr, amplitude=0.3)
        x[int(NON_FINITE_AT_S * sr)] = bad
        write_audio(add(name, f"{name}.wav", "non_finite", f"a float wav with one {name} sample"),
                    x, sr, subtype="FLOAT")

    write_audio(add("silence", "silence.wav", None, "2 s of digital silence"),
                np.zeros(2 * sr, np.float32), sr, subtype="PCM_16")
    write_audio(add("short", "short.wav", None, "0.1 s, shorter than a model window"),
                sine(440, 0.1, sr), sr, subtype="PCM_16")
    write_audio(add("multichannel", "eight_channels_96k.wav", None, "8 channels, 96 kHz, float"),
                sine(1000, 0.5, 96000, amplitude=0.2, channels=8), 96000, subtype="FLOAT")
    return out


def verdict_problems(row: dict, classes: tuple[str, ...] = ("cry", "screaming", "not_screaming"),
                     background: str = "not_screaming") -> list[str]:
    """What is wrong with an ok row's verdict (empty when it is consistent).

    The label is an event class exactly when the file has events, with a confidence no higher
    than that class's peak window probability; otherwise the background, with confidence one
    minus the highest window probability of any event class.
    """
    targets = [c for c in classes if c != background]
    problems = []
    if row.get("n_events"):
        if row["label"] not in targets or not row[f"has_{row['label']}"]:
            problems.append(f"label {row['label']!r} with {row['n_events']} events")
        elif row["confidence"] > row[f"max_prob_{row['label']}"] + 1e-9:
            problems.append("confidence above the class's peak window probability")
    elif "n_events" in row and row["n_events"] is not None:
        if row["label"] != background or any(row[f"has_{c}"] for c in targets):
            problems.append(f"label {row['label']!r} without events")
        elif abs(row["confidence"] - (1 - max(row[f"max_prob_{c}"] for c in targets))) > 1e-9:
            problems.append("background confidence is not 1 - the highest window probability")
    means = [row[f"mean_prob_{c}"] for c in classes]
    if abs(sum(means) - 1) > 1e-5:
        problems.append("mean probabilities do not sum to 1")
    return problems


def fake_scan_config(head: Any, **kw: Any) -> Any:
    """A ScanConfig for the fake backbone with the head folder ``head`` (pipeline tests)."""
    from scanner.config import ScanConfig

    return ScanConfig(backbones=("fake",), heads={"fake": str(head)}, **kw)


def rows_by_name(rows: list[dict]) -> dict[str, dict]:
    """Table rows keyed by their file's name."""
    from pathlib import Path

    return {Path(r["path"]).name: r for r in rows}


def deleting_after_discovery(victim: Path) -> Any:
    """``discover`` as it is, but ``victim`` is deleted once the files are listed."""
    import scanner.audio.discover

    real_discover = scanner.audio.discover.discover

    def discover_then_delete(*args, **kwargs):
        files = real_discover(*args, **kwargs)
        victim.unlink()
        return files

    return discover_then_delete
