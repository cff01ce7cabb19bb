"""Sets of embedded soundscapes for one split, cached on disk.

Mixing and embedding hours of soundscapes is the expensive part of detection training, so
each scene's patches, window labels and events are kept in
``<cache_dir>/scenes/<backbone tag>/<key>/<index>.npz`` (``allow_pickle=False``), where the
key hashes everything that decides the scenes: the clips' content digests, the split,
the seed and the generation settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from training.patches import PatchCache, Patches, embed_waveforms
from training.scenes import MIN_OVERLAP, Event, channel_choices, make_scene, window_labels
from training.windows import windows_of

if TYPE_CHECKING:
    from training.soundscapes import Soundscape, SoundscapeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneSpec:
    """How a split's scenes are made.

    Attributes:
        n_scenes: How many.
        duration_s: Length of each.
        events_per_minute: Mean event rate of a scene that has events.
        background_only: Fraction of scenes with no event at all.
        channels: Pass each scene through a random recording channel (band-limit,
            8 kHz mu-law, MP3 32 kb/s, or none) and a random gain.
        seed: Seeds the mixing.
        speed_semitones: Vari-speed of each event, up to this many semitones either side
            (:func:`training.scenes.varispeed`; 0: as recorded).
    """

    n_scenes: int
    duration_s: float
    events_per_minute: float = 1.0
    background_only: float = 0.2
    channels: bool = False
    seed: int = 0
    speed_semitones: float = 0.0


@dataclass(frozen=True)
class EmbeddedScene:
    name: str
    patches: Patches
    labels: NDArray[np.int64]
    events: list[Event]
    duration_s: float
    channel: str


def _key(spec: SceneSpec, split: str, digests: dict[str, Sequence[str]]) -> str:
    fields = asdict(spec)
    if not spec.speed_semitones:  # scenes made before the option keep their cache key
        del fields["speed_semitones"]
    blob = json.dumps({"spec": fields, "split": split, "clips": digests,
                       "version": 1}, sort_keys=True).encode()
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


def _save(path: Path, s: EmbeddedScene, classes: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ev = np.array([[classes.index(e.label), e.onset_s, e.offset_s, e.snr_db] for e in s.events],
                  np.float64).reshape(-1, 4)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, embeddings=s.patches.embeddings, energy_db=s.patches.energy_db,
                 labels=s.labels, events=ev, duration_s=np.float64(s.duration_s),
                 channel=np.array(s.channel))
    os.replace(tmp, path)


def _load(path: Path, name: str, classes: Sequence[str], hop_s: float, window_s: float
          ) -> EmbeddedScene | None:
    try:
        with np.load(path, allow_pickle=False) as d:
            events = [Event(classes[int(r[0])], float(r[1]), float(r[2]), float(r[3]))
                      for r in d["events"]]
            return EmbeddedScene(name, Patches(d["embeddings"], d["energy_db"], hop_s, window_s),
                                 d["labels"].astype(np.int64), events, float(d["duration_s"]),
                                 str(d["channel"]))
    except FileNotFoundError:
        return None


def scene_set(split: str, spec: SceneSpec, *, background: Sequence[NDArray[np.float32]],
              events: dict[str, Sequence[NDArray[np.float32]]], digests: dict[str, Sequence[str]],
              classes: Sequence[str], background_class: str, backbone: Backbone,
              cache: PatchCache, progress: bool = False) -> list[EmbeddedScene]:
    """The split's scenes, mixed and embedded once, then read from the cache."""
    from tqdm.auto import tqdm

    folder = cache.folder.parent.parent / "scenes" / cache.folder.name / _key(spec, split, digests)
    out: list[EmbeddedScene] = []
    chans = channel_choices()
    names = list(chans)
    made = 0
    for i in tqdm(range(spec.n_scenes), desc=f"scenes {split}", disable=not progress,
                  leave=False):
        name = f"{split}_{i:03d}"
        got = _load(folder / f"{i:03d}.npz", name, classes, backbone.hop_s, backbone.window_s)
        if got is not None:
            out.append(got)
            continue
        rng = np.random.default_rng([spec.seed, i, sum(map(ord, split))])
        bg_only = rng.random() < spec.background_only
        n_events = 0 if bg_only else max(1, int(rng.poisson(spec.events_per_minute
                                                             * spec.duration_s / 60)))
        scene = make_scene(rng, duration_s=spec.duration_s, background=background, events=events,
                           n_events=n_events, speed_semitones=spec.speed_semitones)
        wave, channel = scene.waveform, "original"
        if spec.channels:
            channel = names[int(rng.integers(len(names)))]
            gain = 10 ** (float(rng.uniform(-12, 6)) / 20)
            wave = np.clip(wave * gain, -1, 1).astype(np.float32)
            if chans[channel] is not None:
                wave = chans[channel](wave)
        patches = embed_waveforms(backbone, [wave])[0]
        starts, ends = windows_of(patches)
        labels = window_labels(scene, starts, ends, classes, background_class)
        rec = EmbeddedScene(name, patches, labels, scene.events, scene.duration_s, channel)
        _save(folder / f"{i:03d}.npz", rec, classes)
        out.append(rec)
        made += 1
    if made:
        log.info("made %d %s scenes (%.1f h) in %s", made, split,
                 made * spec.duration_s / 3600, folder)
    return out


def labels_from_events(events: Sequence[Event], starts_s: NDArray[np.float64],
                       ends_s: NDArray[np.float64], classes: Sequence[str],
                       background: str) -> NDArray[np.int64]:
    """Window labels from event times alone (no tracks): the event's class where it covers at
    least half the window (or half of itself when shorter), background where no event comes
    within 0.25 s, ``-1`` between."""
    out = np.full(len(starts_s), classes.index(background), np.int64)
    for k, (s, e) in enumerate(zip(starts_s, ends_s, strict=True)):
        for ev in events:
            if ev.offset_s > s - 0.25 and ev.onset_s < e + 0.25:
                overlap = min(e, ev.offset_s) - max(s, ev.onset_s)
                if overlap >= MIN_OVERLAP * min(e - s, ev.offset_s - ev.onset_s):
                    out[k] = classes.index(ev.label)
                    break
                out[k] = -1
    return out


def _benchmark_recordings(split: str, clips: Sequence[Any], *, hours: float,
                          minutes: tuple[float, float], seed: int, classes: Sequence[str],
                          background_class: str
                          ) -> tuple[SoundscapeConfig, int, Callable[[], Iterator[Soundscape]]]:
    """The benchmark generator's config, recording count and a function yielding them."""
    from training.soundscapes import SoundscapeConfig, generate, recordings_for_hours

    config = SoundscapeConfig(minutes=minutes, background=background_class)
    n = recordings_for_hours(hours, config)
    targets = tuple(c for c in classes if c != background_class)
    return config, n, lambda: generate(clips, n, config, seed=seed, classes=targets, prefix=split)


def benchmark_beds(split: str, clips: Sequence[Any], *, hours: float,
                   minutes: tuple[float, float], seed: int, classes: Sequence[str],
                   background_class: str) -> dict[str, list[dict[str, Any]]]:
    """By recording name, the bed clips (``Soundscape.bed_details``) of the recordings
    :func:`benchmark_set` makes with the same arguments: mixed again, not embedded, so a
    cached set's false alarms can be traced to the clips under them."""
    _, _, recordings = _benchmark_recordings(split, clips, hours=hours, minutes=minutes,
                                             seed=seed, classes=classes,
                                             background_class=background_class)
    return {s.name: [dict(b) for b in s.bed_details] for s in recordings()}


def benchmark_set(split: str, clips: Sequence[Any], *, hours: float, minutes: tuple[float, float],
                  seed: int, digests: Sequence[str], classes: Sequence[str],
                  background_class: str, backbone: Backbone, cache: PatchCache,
                  progress: bool = False, beds: dict[str, list[dict[str, Any]]] | None = None
                  ) -> list[EmbeddedScene]:
    """Soundscapes of the project's benchmark generator (``training.soundscapes.generate``)
    from one split's clips, embedded and cached like :func:`scene_set`.

    With the benchmark's settings (2 h of the test split, seed 0, 10-30 min) these are the
    recordings ``benchmarks/soundscapes.py build --split test`` writes. ``beds``, when given,
    gets each recording's bed clips if the set is made here (the cache keeps none: for a
    cached set, :func:`benchmark_beds`).
    """
    from tqdm.auto import tqdm

    config, n, recordings = _benchmark_recordings(split, clips, hours=hours, minutes=minutes,
                                                  seed=seed, classes=classes,
                                                  background_class=background_class)
    blob = json.dumps({"generator": "training.soundscapes", "config": config.to_dict(), "n": n,
                       "seed": seed, "split": split, "clips": list(digests),
                       "order": [str(getattr(c, "file", "")) for c in clips], "version": 2},
                      sort_keys=True).encode()
    folder = (cache.folder.parent.parent / "scenes" / cache.folder.name
              / hashlib.blake2b(blob, digest_size=10).hexdigest())
    names = [f"{split}_{i:04d}" for i in range(n)]
    cached = [_load(folder / f"{name}.npz", name, classes, backbone.hop_s, backbone.window_s)
              for name in names]
    if all(c is not None for c in cached):
        return [c for c in cached if c is not None]
    out = []
    for scape in tqdm(recordings(), total=n, desc=f"soundscapes {split}", disable=not progress,
                      leave=False):
        events = [Event(label, on, off, float(d["snr_db"]))
                  for (label, on, off), d in zip(scape.events, scape.event_details, strict=True)]
        patches = embed_waveforms(backbone, [scape.waveform])[0]
        starts, ends = windows_of(patches)
        rec = EmbeddedScene(scape.name, patches,
                            labels_from_events(events, starts, ends, classes, background_class),
                            events, scape.duration_s, "original")
        _save(folder / f"{scape.name}.npz", rec, classes)
        out.append(rec)
        if beds is not None:
            beds[scape.name] = [dict(b) for b in scape.bed_details]
    log.info("made %d %s soundscapes (%.1f h) in %s", n, split,
             sum(s.duration_s for s in out) / 3600, folder)
    return out
