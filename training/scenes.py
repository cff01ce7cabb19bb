"""Soundscapes for training and tuning a detector, mixed in the audio domain, in memory.

A scene is a bed of background clips end to end at varied levels over a faint noise floor,
with cries and screams inserted at known times at 0-15 dB SNR (event level against the bed
under it). Every window of a scene gets a label from the known event times and the
energies of the tracks: a window is the event's class when the event overlaps at least
half of it and is not buried (its energy there is at most ``BURIED_DB`` under the bed's), it
is background when no event touches it, and it is left out otherwise. A scene is mixed
from clips of *one* split only, so no soundscape lends validation or test clips to
training.

The same generator makes the long validation soundscapes on which thresholds are chosen
(``make_eval_set``); ``training.soundscapes`` (the project's benchmark) writes such sets
to disk for ``scanner evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from training.patches import SAMPLE_RATE_HZ

BED_LEVEL_DB = (-38.0, -16.0)
"""RMS level range of each background clip in a bed, dBFS."""
NOISE_FLOOR_DB = (-65.0, -45.0)
SNR_DB = (0.0, 15.0)
ACTIVE_BELOW_PEAK_DB = 30.0
"""An event clip's sound runs from its first to its last 0.1 s frame within this of its peak."""
BURIED_DB = 6.0
"""A window whose event energy is more than this under the bed's is left out of training."""
MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class Event:
    """One inserted clip: its class and extent in scene time (its sound, not its silences)."""

    label: str
    onset_s: float
    offset_s: float
    snr_db: float
    source: int = -1


@dataclass
class Scene:
    """A mixed soundscape.

    Attributes:
        waveform: ``[samples]`` float32 at 16 kHz (bed + events).
        events: What was inserted where.
        event_tracks: Class -> ``[samples]`` the inserted events of that class alone.
        bed: ``[samples]`` the background alone.
    """

    waveform: NDArray[np.float32]
    events: list[Event]
    event_tracks: dict[str, NDArray[np.float32]] = field(repr=False)
    bed: NDArray[np.float32] = field(repr=False)

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / SAMPLE_RATE_HZ


def rms_db(x: NDArray[np.floating]) -> float:
    p = float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0
    return 10 * np.log10(p) if p > 0 else -120.0


def active_span(x: NDArray[np.floating], below_peak_db: float = ACTIVE_BELOW_PEAK_DB
                ) -> tuple[int, int]:
    """Sample range from the first to the last 0.1 s frame within ``below_peak_db`` of the peak."""
    frame = SAMPLE_RATE_HZ // 10
    n = max(1, len(x) // frame)
    e = np.array([np.mean(np.square(x[i * frame:(i + 1) * frame], dtype=np.float64))
                  for i in range(n)]) + 1e-20
    db = 10 * np.log10(e)
    on = np.flatnonzero(db >= db.max() - below_peak_db)
    return int(on[0] * frame), int(min(len(x), (on[-1] + 1) * frame))


def _noise(rng: np.random.Generator, n: int, level_db: float) -> NDArray[np.float32]:
    from scipy.signal import lfilter

    white = rng.standard_normal(n)
    brown = lfilter([0.05], [1, -0.95], white)
    x = brown / (np.std(brown) + 1e-12) + 0.5 * white
    return (x * 10 ** (level_db / 20) / (np.std(x) + 1e-12)).astype(np.float32)


def make_bed(rng: np.random.Generator, background: Sequence[NDArray[np.float32]],
             n_samples: int) -> NDArray[np.float32]:
    """Background clips end to end (random order, level and gaps of 0-2 s) over a noise floor."""
    bed = _noise(rng, n_samples, float(rng.uniform(*NOISE_FLOOR_DB)))
    pos = 0
    while pos < n_samples:
        clip = background[int(rng.integers(len(background)))]
        if len(clip) == 0:
            continue
        level = float(rng.uniform(*BED_LEVEL_DB))
        piece = clip * 10 ** ((level - rms_db(clip)) / 20)
        end = min(n_samples, pos + len(piece))
        bed[pos:end] += piece[:end - pos]
        pos = end + int(rng.uniform(0, 2.0) * SAMPLE_RATE_HZ)
    return bed


def varispeed(x: NDArray[np.float32], semitones: float) -> NDArray[np.float32]:
    """``x`` played faster (``semitones`` > 0) or slower, as a tape would: pitch and tempo
    change together by ``2 ** (semitones / 12)``. Another baby's cry is higher or lower and
    quicker or slower; this makes new event instances from the few distinct clips there are.
    """
    if semitones == 0.0 or len(x) == 0:
        return x
    import soxr

    rate = 2.0 ** (semitones / 12.0)
    # resampled to fewer samples (rate > 1), then read at the original rate: faster, higher
    y = soxr.resample(x.astype(np.float32), SAMPLE_RATE_HZ * rate, SAMPLE_RATE_HZ, quality="HQ")
    return np.asarray(y, np.float32)


def make_scene(rng: np.random.Generator, *, duration_s: float,
               background: Sequence[NDArray[np.float32]],
               events: dict[str, Sequence[NDArray[np.float32]]], n_events: int,
               snr_db: tuple[float, float] = SNR_DB, speed_semitones: float = 0.0) -> Scene:
    """A scene of ``duration_s`` with ``n_events`` non-overlapping events.

    Args:
        rng: Seeded generator (the scene is a pure function of it and the inputs).
        duration_s: Scene length.
        background: 16 kHz waveforms of background clips.
        events: Class -> 16 kHz waveforms of its clips; each event's class is drawn
            uniformly among the classes, then a clip of it.
        n_events: Events to insert (fewer when they do not fit).
        snr_db: Range of the event-to-bed level ratio over the event's sound.
        speed_semitones: Each event is played faster or slower (:func:`varispeed`) by a
            shift drawn uniformly from this many semitones either side (0: as recorded; no
            draw, so a scene without it is the same as before the option existed).
    """
    n = int(duration_s * SAMPLE_RATE_HZ)
    bed = make_bed(rng, background, n)
    tracks = {c: np.zeros(n, np.float32) for c in events}
    taken = np.zeros(n, bool)
    placed: list[Event] = []
    classes = sorted(c for c in events if len(events[c]))
    gap = SAMPLE_RATE_HZ  # at least 1 s between events
    for _ in range(n_events):
        if not classes:
            break
        label = classes[int(rng.integers(len(classes)))]
        k = int(rng.integers(len(events[label])))
        clip = events[label][k]
        if speed_semitones > 0:
            clip = varispeed(clip, float(rng.uniform(-speed_semitones, speed_semitones)))
        a, b = active_span(clip)
        sound = clip[a:b]
        if len(sound) < SAMPLE_RATE_HZ // 4 or len(sound) + 2 * gap >= n:
            continue
        for _attempt in range(20):
            at = int(rng.integers(gap, n - len(sound) - gap))
            if not taken[at - gap:at + len(sound) + gap].any():
                break
        else:
            continue
        snr = float(rng.uniform(*snr_db))
        level = rms_db(bed[at:at + len(sound)]) + snr
        tracks[label][at:at + len(sound)] += sound * 10 ** ((level - rms_db(sound)) / 20)
        taken[at:at + len(sound)] = True
        placed.append(Event(label, at / SAMPLE_RATE_HZ, (at + len(sound)) / SAMPLE_RATE_HZ,
                            snr, k))
    mix = bed + sum(tracks.values(), np.zeros(n, np.float32))
    peak = float(np.abs(mix).max()) if n else 0.0
    if peak > 0.99:  # keep the mix in range; levels shift together, SNRs stay
        scale = 0.99 / peak
        mix, bed = mix * scale, bed * scale
        tracks = {c: t * scale for c, t in tracks.items()}
    placed.sort(key=lambda e: e.onset_s)
    return Scene(mix.astype(np.float32), placed, tracks, bed.astype(np.float32))


def window_labels(scene: Scene, starts_s: NDArray[np.float64], ends_s: NDArray[np.float64],
                  classes: Sequence[str], background: str) -> NDArray[np.int64]:
    """Class index of each window, or -1 for a window left out (see the module docstring)."""
    sr = SAMPLE_RATE_HZ
    bed_sq = np.concatenate([[0.0], np.cumsum(np.square(scene.bed, dtype=np.float64))])
    cls_sq = {c: np.concatenate([[0.0], np.cumsum(np.square(t, dtype=np.float64))])
              for c, t in scene.event_tracks.items()}
    bg = classes.index(background)
    out = np.full(len(starts_s), bg, np.int64)
    for k, (s, e) in enumerate(zip(starts_s, ends_s, strict=True)):
        lo, hi = int(s * sr), max(int(s * sr) + 1, int(e * sr))
        touched = [ev for ev in scene.events if ev.offset_s > s - 0.25 and ev.onset_s < e + 0.25]
        if not touched:
            continue
        out[k] = -1
        bed_e = bed_sq[min(hi, len(bed_sq) - 1)] - bed_sq[lo]
        for ev in touched:
            overlap = min(e, ev.offset_s) - max(s, ev.onset_s)
            if overlap < MIN_OVERLAP * min(e - s, ev.offset_s - ev.onset_s):
                continue
            sq = cls_sq[ev.label]
            ev_e = sq[min(hi, len(sq) - 1)] - sq[lo]
            if ev_e > 0 and 10 * np.log10(ev_e / max(bed_e, 1e-20)) >= -BURIED_DB:
                out[k] = classes.index(ev.label)
    return out


Channel = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def channel_choices(band_limit_hz: int = 4000) -> dict[str, Channel | None]:
    """The recording channels a training scene is passed through, by name (None: as mixed)."""
    from training.augment import BandLimit, LossyCodec, MuLawPhone

    return {"original": None, "bandlimit": BandLimit(band_limit_hz), "mulaw8k": MuLawPhone(),
            "mp3": LossyCodec()}
