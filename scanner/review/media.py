"""A card's media: the item plus context cut from its file as a small FLAC, and a spectrogram PNG.

Snippets are 16 kHz mono 16-bit FLAC (``soundfile``): about 25 kB per second of audio,
played by every current browser from disk. The spectrogram is a log-power STFT (25 ms
Hann window, 10 ms hop, up to 8 kHz) drawn with matplotlib's ``Figure`` (Agg, no pyplot),
in file time, with the item's stretch shaded and its edges marked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.errors import DecodeError

log = logging.getLogger(__name__)

SNIPPET_RATE_HZ = 16_000
CONTEXT_S = 1.0
"""Audio kept before and after the item, so an onset is heard in its surroundings."""
MAX_SNIPPET_S = 30.0
"""A longer item (a whole file, a long event) is cut to its first this-many seconds."""
N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
FIG_SIZE_IN = (6.0, 1.7)
DPI = 100


@dataclass(frozen=True)
class Snippet:
    """A cut snippet: where it starts in its file and how long it is."""

    start_s: float
    duration_s: float
    waveform: NDArray[np.float32]


def cut(path: str | Path, start_s: float, end_s: float, *, context_s: float = CONTEXT_S,
        max_s: float = MAX_SNIPPET_S) -> Snippet:
    """Decodes ``[start_s - context_s, end_s + context_s]`` of ``path`` (clipped to the file
    and to ``max_s``) to 16 kHz mono.

    Raises:
        DecodeError: The file cannot be read (the card then says why).
    """
    from scanner.audio.decode import decode_task
    from scanner.records import AudioFile, DecodeFailure, DecodeTask

    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DecodeError(f"cannot read {p}: {e}", kind="io") from e
    t0 = max(0.0, start_s - context_s)
    length = min(max(end_s, start_s) + context_s, t0 + max_s) - t0
    clip = decode_task(DecodeTask(AudioFile(p, st.st_size, st.st_mtime_ns), start_s=t0,
                                  max_s=length), sample_rate_hz=SNIPPET_RATE_HZ)
    if isinstance(clip, DecodeFailure):
        raise DecodeError(clip.message, kind=clip.kind)
    wave = clip.waveform
    return Snippet(t0, len(wave) / SNIPPET_RATE_HZ, wave)


def write_flac(snippet: Snippet, out: Path) -> Path:
    """Writes the snippet as 16-bit mono FLAC."""
    import soundfile as sf

    sf.write(out, snippet.waveform, SNIPPET_RATE_HZ, format="FLAC", subtype="PCM_16")
    return out


def log_spectrogram(wave: NDArray[np.float32]) -> NDArray[np.float32]:
    """``[freqs, frames]`` log10 power of a 25 ms / 10 ms STFT (at least one frame)."""
    x = np.pad(np.asarray(wave, np.float32), (0, max(0, N_FFT - len(wave))))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2
    return np.log10(power.T + 1e-10).astype(np.float32)


def write_spectrogram(snippet: Snippet, start_s: float, end_s: float, out: Path) -> Path:
    """Draws the snippet's spectrogram in file time with ``[start_s, end_s]`` marked."""
    from matplotlib.figure import Figure

    spec = log_spectrogram(snippet.waveform)
    t0, t1 = snippet.start_s, snippet.start_s + max(snippet.duration_s, 1e-3)
    fig = Figure(figsize=FIG_SIZE_IN, dpi=DPI)
    ax = fig.add_axes((0.06, 0.22, 0.93, 0.74))
    top = np.percentile(spec, 99.5)
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 6, vmax=top,
              extent=(t0, t1, 0, SNIPPET_RATE_HZ / 2000), interpolation="nearest")
    ax.axvspan(start_s, min(end_s, t1), color="#4fc3f7", alpha=0.18, lw=0)
    for edge in (start_s, min(end_s, t1)):
        ax.axvline(edge, color="#4fc3f7", lw=1.5)
    ax.set_xlim(t0, t1)
    ax.set_ylabel("kHz", fontsize=7, labelpad=1)
    ax.tick_params(labelsize=7, pad=1)
    ax.set_xlabel("seconds in file", fontsize=7, labelpad=1)
    fig.savefig(out, format="png")
    return out
