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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.base import Backbone
from training.patches import PatchCache, Patches, embed_waveforms
from training.scenes import Event, channel_choices, make_scene, window_labels
from training.windows import windows_of

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
    """

    n_scenes: int
    duration_s: float
    events_per_minute: float = 1.0
    background_only: float = 0.2
    channels: bool = False
    seed: int = 0


@dataclass(frozen=True)
class EmbeddedScene:
    name: str
    patches: Patches
    labels: NDArray[np.int64]
    events: list[Event]
    duration_s: float
    channel: str


def _key(spec: SceneSpec, split: str, digests: dict[str, Sequence[str]]) -> str:
    blob = json.dumps({"spec": asdict(spec), "split": split, "clips": digests,
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
                           n_events=n_events)
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
