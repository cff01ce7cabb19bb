"""Long synthetic recordings with known events: the detection benchmark's test sets.

A soundscape is a bed of background clips laid end to end at varied levels over a faint
noise floor, with cry and scream clips inserted at known times and signal-to-noise ratios.
Its truth is exact by construction, so event detection can be scored on hours of audio
that look like the tool's real input (a night of a baby monitor) without hand annotation.

Every clip comes from one split of the labelled folder, and splits are made by group
(source recording), so a training set of soundscapes never borrows a clip, or a part of
a recording, from a validation or test set. :func:`write_set` writes one set: FLAC files,
``truth.csv`` (``file,label,onset,offset``, seconds) and ``manifest.json`` (the config,
seeds, split and the groups used).

Each event clip is first trimmed to its active region (:data:`TRIM_TOP_DB` below its
loudest frame), so the truth's onset and offset are where the sound is, not where the
clip's leading silence starts. Its gain sets the drawn SNR: its power over its active
frames against the power of the bed (noise floor included) under the same span.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
BACKGROUND = "not_screaming"
EVENT_CLASSES: tuple[str, ...] = ("cry", "screaming")
DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.6, "val": 0.2, "test": 0.2}
# An event clip is trimmed where its frames fall this far below its loudest frame
# (librosa's rule); the same rule marks the "active" frames its SNR is measured on.
TRIM_TOP_DB = 30.0
FRAME = 1024  # samples per trim/activity frame (64 ms at 16 kHz)
HOP = 256  # 16 ms
FADE_S = 0.01  # fade in/out of every clip, so joins never click
EDGE_S = 1.0  # no event starts within this of a recording's start or ends within it of its end
GAP_S = 2.0  # least silence-of-events between two events, so they stay separate in the truth
PEAK = 0.99  # a mix louder than this is scaled down as a whole (SNRs unchanged)
MAX_PLACEMENT_TRIES = 200
TRUTH_COLUMNS = ("file", "label", "onset", "offset")


@dataclass(frozen=True)
class SoundscapeConfig:
    """How the recordings of a set are drawn (every range is inclusive, drawn uniformly).

    Attributes:
        minutes: Each recording's length, in minutes.
        events_per_recording: Number of events in a recording that has events.
        snr_db: Event power over its active frames against the bed under it, in dB.
        background_only_fraction: Fraction of recordings with no event at all.
        bed_gain_db: RMS level of each background clip in the bed, dB full scale.
        noise_db: RMS level of the white noise floor under the bed, dB full scale.
        sample_rate_hz: Sample rate of the written recordings.
        background: The label of the clips that make the bed.
    """

    minutes: tuple[float, float] = (10.0, 30.0)
    events_per_recording: tuple[int, int] = (1, 6)
    snr_db: tuple[float, float] = (0.0, 15.0)
    background_only_fraction: float = 0.2
    bed_gain_db: tuple[float, float] = (-30.0, -10.0)
    noise_db: float = -60.0
    sample_rate_hz: int = SAMPLE_RATE_HZ
    background: str = BACKGROUND

    def __post_init__(self) -> None:
        for name in ("minutes", "events_per_recording", "snr_db", "bed_gain_db"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name} must be a (low, high) range with low <= high, got {(lo, hi)}")
        if self.minutes[0] <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        if self.events_per_recording[0] < 0:
            raise ValueError(f"events_per_recording must be >= 0, got {self.events_per_recording}")
        if not 0.0 <= self.background_only_fraction <= 1.0:
            raise ValueError("background_only_fraction must be in [0, 1], "
                             f"got {self.background_only_fraction}")
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SoundscapeConfig:
        ranges = ("minutes", "events_per_recording", "snr_db", "bed_gain_db")
        return cls(**{k: tuple(v) if k in ranges else v for k, v in data.items()})


@dataclass(frozen=True)
class Clip:
    """One labelled clip of the manifest.

    Attributes:
        path: Absolute path of the audio file.
        label: Its class.
        group: Its source recording (clips of one group always share a split).
        seconds: Its length, from the manifest.
        version: The dataset release it came with (``v1``, ``v2``, ...).
        file: Its path relative to the dataset folder.
        source_repo: Where it came from.
    """

    path: Path
    label: str
    group: str
    seconds: float
    version: str = ""
    file: str = ""
    source_repo: str = ""


@dataclass(frozen=True)
class Soundscape:
    """One generated recording.

    Attributes:
        name: File stem, unique in its set.
        waveform: ``[samples]`` float32 mono at ``sample_rate_hz``, peak at most :data:`PEAK`.
        events: ``(label, onset_s, offset_s)`` of every inserted event, by onset.
        bed_groups: Groups of the background clips used, sorted.
        event_groups: Groups of the event clips used, sorted.
        sample_rate_hz: Sample rate of ``waveform``.
        event_details: Per event: its clip (relative file), group and drawn SNR.
        bed_details: Per background clip of the bed: its clip, group, start, end and level,
            so a false alarm can be traced to the clip under it.
    """

    name: str
    waveform: NDArray[np.float32]
    events: list[tuple[str, float, float]]
    bed_groups: tuple[str, ...]
    event_groups: tuple[str, ...]
    sample_rate_hz: int = SAMPLE_RATE_HZ
    event_details: list[dict[str, Any]] = field(default_factory=list)
    bed_details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate_hz


def load_manifest(dataset_dir: str | Path) -> list[Clip]:
    """The clips of a labelled folder's ``manifest.csv`` (``file,label,group,seconds,version,...``).

    Raises:
        ConfigError: No manifest, or one without the ``file``, ``label`` and ``group`` columns.
    """
    root = Path(dataset_dir)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise ConfigError(f"{manifest} not found: a soundscape set needs a labelled folder's manifest.csv")
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"file", "label", "group"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{manifest} lacks the column(s) {', '.join(sorted(missing))}")
        clips = [Clip(path=root / row["file"], label=row["label"], group=row["group"],
                      seconds=float(row.get("seconds") or 0.0), version=row.get("version") or "",
                      file=row["file"], source_repo=row.get("source_repo") or "")
                 for row in reader]
    return clips


def split_groups(clips: Sequence[Clip], *, fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
                 seed: int = 0) -> dict[str, str]:
    """Group -> split: whole groups, stratified by label (``training.split.assign_groups``)."""
    from training.split import assign_groups

    labels = [c.label for c in clips]
    groups = [c.group for c in clips]
    parts = assign_groups(labels, groups, dict(fractions), seed=seed)
    return dict(zip(groups, parts, strict=True))


def clips_of_split(clips: Iterable[Clip], groups: Mapping[str, str], split: str) -> list[Clip]:
    """The clips whose group belongs to ``split``."""
    return [c for c in clips if groups.get(c.group) == split]


def db_to_amplitude(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def frame_power(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """Mean square of each :data:`FRAME`-sample frame at a :data:`HOP` step (``[frames]``)."""
    import librosa

    if len(x) < FRAME:
        return np.array([float(np.mean(np.square(x, dtype=np.float64)))]) if len(x) else np.zeros(1)
    return librosa.feature.rms(y=x, frame_length=FRAME, hop_length=HOP, center=False)[0].astype(
        np.float64) ** 2


def active_power(x: NDArray[np.floating], top_db: float = TRIM_TOP_DB) -> float:
    """Mean power of the frames within ``top_db`` of the loudest frame."""
    power = frame_power(x)
    peak = float(power.max()) if power.size else 0.0
    if peak <= 0.0:
        return 0.0
    return float(power[power >= peak * 10.0 ** (-top_db / 10.0)].mean())


def trim_active(x: NDArray[np.float32], top_db: float = TRIM_TOP_DB) -> NDArray[np.float32]:
    """``x`` without its leading and trailing frames below ``top_db`` of its loudest one."""
    import librosa

    if len(x) < FRAME:
        return x
    trimmed, _ = librosa.effects.trim(x, top_db=top_db, frame_length=FRAME, hop_length=HOP)
    return np.ascontiguousarray(trimmed, dtype=np.float32)


def fade(x: NDArray[np.float32], sample_rate_hz: int) -> NDArray[np.float32]:
    """``x`` with a linear fade of :data:`FADE_S` at both ends."""
    n = min(int(FADE_S * sample_rate_hz), len(x) // 2)
    if n == 0:
        return x
    y = x.copy()
    ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


class _ClipAudio:
    """Decodes clips to mono float32 at one rate, each once per generator."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._cache: dict[Path, NDArray[np.float32]] = {}

    def __call__(self, clip: Clip) -> NDArray[np.float32]:
        if clip.path not in self._cache:
            import soundfile as sf
            import soxr

            try:
                x, sr = sf.read(clip.path, dtype="float32", always_2d=True)
            except (OSError, RuntimeError) as e:
                raise ConfigError(f"cannot read clip {clip.path}: {e}") from e
            y = x.mean(axis=1)
            if sr != self.sample_rate_hz:
                y = soxr.resample(y, sr, self.sample_rate_hz)
            self._cache[clip.path] = np.ascontiguousarray(y, dtype=np.float32)
        return self._cache[clip.path]


def _bed(rng: np.random.Generator, background: Sequence[Clip], n_samples: int,
         config: SoundscapeConfig, audio: _ClipAudio) -> tuple[NDArray[np.float32], list[dict[str, Any]]]:
    sr = config.sample_rate_hz
    bed = (db_to_amplitude(config.noise_db) * rng.standard_normal(n_samples)).astype(np.float32)
    placed: list[dict[str, Any]] = []
    pos = silent = 0
    while pos < n_samples:
        clip = background[int(rng.integers(len(background)))]
        x = audio(clip)
        rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
        if rms <= 0.0:
            silent += 1
            if silent > MAX_PLACEMENT_TRIES:
                raise ConfigError("the background clips are silent: no bed can be made")
            continue
        level_db = float(rng.uniform(*config.bed_gain_db))
        piece = fade((x * (db_to_amplitude(level_db) / rms)).astype(np.float32), sr)[: n_samples - pos]
        bed[pos:pos + len(piece)] += piece
        placed.append({"clip": clip.file or str(clip.path), "group": clip.group, "start": pos / sr,
                       "end": (pos + len(piece)) / sr, "level_db": round(level_db, 2)})
        pos += len(piece)
    return bed, placed


def _place(rng: np.random.Generator, length: int, n_samples: int, taken: list[tuple[int, int]],
           sample_rate_hz: int) -> int | None:
    edge, gap = int(EDGE_S * sample_rate_hz), int(GAP_S * sample_rate_hz)
    last = n_samples - edge - length
    if last < edge:
        return None
    for _ in range(MAX_PLACEMENT_TRIES):
        start = int(rng.integers(edge, last + 1))
        if all(start + length + gap <= a or start >= b + gap for a, b in taken):
            return start
    return None


def generate(clips: Sequence[Clip], n_recordings: int, config: SoundscapeConfig = SoundscapeConfig(),
             *, seed: int, classes: Sequence[str] = EVENT_CLASSES, prefix: str = "soundscape"
             ) -> Iterator[Soundscape]:
    """Yields ``n_recordings`` soundscapes made only from ``clips`` (pass one split's clips).

    Background clips (``config.background``) make the beds; clips of ``classes`` the events,
    each class drawn with equal chance. Deterministic for a seed: recording ``i`` depends only
    on ``seed``, ``i``, ``n_recordings`` (which recordings are background only), the config
    and the clips.

    Raises:
        ConfigError: No background clip, or no clip of any class when events are asked for.
    """
    background = [c for c in clips if c.label == config.background]
    by_class = {k: [c for c in clips if c.label == k] for k in classes}
    by_class = {k: v for k, v in by_class.items() if v}
    if not background:
        raise ConfigError(f"no {config.background!r} clip to make a bed from")
    if config.events_per_recording[1] > 0 and not by_class and config.background_only_fraction < 1:
        raise ConfigError(f"no clip of {', '.join(classes)} to insert as events")
    sr = config.sample_rate_hz
    audio = _ClipAudio(sr)
    order = np.random.default_rng([seed, 0]).permutation(n_recordings)
    n_bg = round(config.background_only_fraction * n_recordings) if by_class else n_recordings
    background_only = set(order[:n_bg].tolist())
    width = max(4, len(str(n_recordings - 1)))
    for i in range(n_recordings):
        rng = np.random.default_rng([seed, 1, i])
        n_samples = int(round(float(rng.uniform(*config.minutes)) * 60.0 * sr))
        bed, placed = _bed(rng, background, n_samples, config, audio)
        mix = bed.copy()
        n_events = 0 if i in background_only else int(rng.integers(config.events_per_recording[0],
                                                                     config.events_per_recording[1] + 1))
        taken: list[tuple[int, int]] = []
        details: list[dict[str, Any]] = []
        for _ in range(n_events):
            label = sorted(by_class)[int(rng.integers(len(by_class)))]
            clip = by_class[label][int(rng.integers(len(by_class[label])))]
            x = trim_active(audio(clip))
            p_event = active_power(x)
            start = _place(rng, len(x), n_samples, taken, sr)
            if p_event <= 0.0 or start is None:
                log.debug("skipped event %s in %s: silent or no room", clip.file, i)
                continue
            snr = float(rng.uniform(*config.snr_db))
            p_bed = float(np.mean(np.square(bed[start:start + len(x)], dtype=np.float64)))
            gain = math.sqrt(p_bed * 10.0 ** (snr / 10.0) / p_event)
            mix[start:start + len(x)] += fade((x * gain).astype(np.float32), sr)
            taken.append((start, start + len(x)))
            details.append({"label": label, "onset": start / sr, "offset": (start + len(x)) / sr,
                            "clip": clip.file or str(clip.path), "group": clip.group,
                            "snr_db": round(snr, 3)})
        peak = float(np.max(np.abs(mix))) if len(mix) else 0.0
        if peak > PEAK:
            mix *= PEAK / peak
        details.sort(key=lambda d: d["onset"])
        yield Soundscape(
            name=f"{prefix}_{i:0{width}d}", waveform=mix.astype(np.float32, copy=False),
            events=[(d["label"], d["onset"], d["offset"]) for d in details],
            bed_groups=tuple(sorted({b["group"] for b in placed})),
            event_groups=tuple(sorted({d["group"] for d in details})),
            sample_rate_hz=sr, event_details=details, bed_details=placed)


def recordings_for_hours(hours: float, config: SoundscapeConfig) -> int:
    """How many recordings of the config's mean length make about ``hours`` of audio (at least 1)."""
    mean_min = (config.minutes[0] + config.minutes[1]) / 2.0
    return max(1, round(hours * 60.0 / mean_min))


def write_truth(path: Path, rows: Iterable[tuple[str, str, float, float]]) -> Path:
    """Writes ``file,label,onset,offset`` rows (seconds to the millisecond)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRUTH_COLUMNS)
        for file, label, onset, offset in rows:
            w.writerow([file, label, f"{onset:.3f}", f"{offset:.3f}"])
    return path


def write_set(dataset_dir: str | Path, out_dir: str | Path, *, split: str = "test", hours: float = 2.0,
              config: SoundscapeConfig = SoundscapeConfig(), seed: int = 0, split_seed: int = 0,
              classes: Sequence[str] = EVENT_CLASSES, versions: Sequence[str] | None = None,
              fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> Path:
    """Writes one set of soundscapes from ``split``'s clips; returns its ``truth.csv``.

    ``out_dir`` gets ``<split>_NNNN.flac`` (16-bit FLAC), ``truth.csv`` and ``manifest.json``.
    The split is made over every clip of the manifest (``split_seed``), before ``versions``
    filters them, so a group's split never depends on which versions a set uses.

    Raises:
        ConfigError: An unknown split, or a split without the clips a set needs.
    """
    import soundfile as sf
    from tqdm import tqdm

    if split not in fractions:
        raise ConfigError(f"unknown split {split!r}: expected one of {', '.join(fractions)}")
    all_clips = load_manifest(dataset_dir)
    groups = split_groups(all_clips, fractions=fractions, seed=split_seed)
    wanted = {*classes, config.background}
    clips = [c for c in clips_of_split(all_clips, groups, split)
             if c.label in wanted and (versions is None or c.version in versions)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = recordings_for_hours(hours, config)
    truth: list[tuple[str, str, float, float]] = []
    recordings: list[dict[str, Any]] = []
    bed_used: set[str] = set()
    event_used: set[str] = set()
    for scape in tqdm(generate(clips, n, config, seed=seed, classes=classes, prefix=split),
                      total=n, desc=f"soundscapes ({split})", unit="rec"):
        name = f"{scape.name}.flac"
        sf.write(out / name, scape.waveform, scape.sample_rate_hz, subtype="PCM_16")
        truth.extend((name, label, on, off) for label, on, off in scape.events)
        bed_used.update(scape.bed_groups)
        event_used.update(scape.event_groups)
        recordings.append({"file": name, "duration_s": round(scape.duration_s, 3),
                           "events": scape.event_details, "bed": scape.bed_details})
    truth_path = write_truth(out / "truth.csv", truth)
    manifest = {
        "dataset": str(Path(dataset_dir)), "split": split, "hours": hours, "seed": seed,
        "split_seed": split_seed, "fractions": dict(fractions), "classes": list(classes),
        "versions": list(versions) if versions is not None else None, "config": config.to_dict(),
        "split_groups": sorted(g for g, s in groups.items() if s == split),
        "bed_groups": sorted(bed_used), "event_groups": sorted(event_used), "recordings": recordings,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info("wrote %d soundscapes (%d events) to %s", n, len(truth), out)
    return truth_path
