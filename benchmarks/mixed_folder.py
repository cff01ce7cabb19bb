"""Builds a test folder from labelled clips, re-encoded to mixed formats, rates and channel counts.

Each clip is written under ``OUT/<label>/<depth folders>/`` as one of: wav 16-bit, wav
24-bit, wav float, flac, ogg (Vorbis) or mp3, at a rate from 8 to 48 kHz, mono or stereo,
chosen by a seeded generator; a non-audio ``labels.csv`` (path,label,group) sits beside
them. Used by the end-to-end checks and benchmarks; reads a folder with ``manifest.csv``
(``file,label,group``), such as ``../shared/datasets/cry-scream``.

    python benchmarks/mixed_folder.py ../shared/datasets/cry-scream /tmp/mixed --per-label 20
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ENCODINGS = [("wav", "WAV", "PCM_16"), ("wav", "WAV", "PCM_24"), ("wav", "WAV", "FLOAT"),
             ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")]
RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000]


def build(data_dir: Path, out: Path, *, per_label: int | None, seed: int = 0,
          labels: tuple[str, ...] | None = None) -> list[tuple[Path, str, str]]:
    """Writes the folder and returns ``[(path, label, group)]``."""
    rng = np.random.default_rng(seed)
    with open(data_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    written = []
    for label in sorted(labels or by_label):
        items = by_label[label]
        pick = rng.permutation(len(items))[: per_label or len(items)]
        for n, i in enumerate(sorted(pick)):
            r = items[i]
            x, sr = sf.read(data_dir / r["file"], dtype="float32", always_2d=False)
            if x.ndim > 1:
                x = x.mean(axis=1)
            ext, fmt, subtype = ENCODINGS[rng.integers(len(ENCODINGS))]
            rate = int(RATES[rng.integers(len(RATES))])
            if fmt == "MP3" and rate not in (8000, 11025, 16000, 22050, 32000, 44100, 48000):
                rate = 44100
            y = soxr.resample(x, sr, rate) if rate != sr else x
            if rng.random() < 0.4:
                y = np.stack([y, 0.8 * y], axis=1)
            sub = out / label / ("a" if n % 2 else "b") / ("deep" if n % 3 == 0 else "")
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / f"{Path(r['file']).stem}.{ext}"
            sf.write(path, np.clip(y, -1, 1), rate, format=fmt, subtype=subtype)
            written.append((path, label, r["group"]))
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        for path, label, group in written:
            w.writerow([path.relative_to(out), label, group])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-label", type=int, default=20, help="clips per label (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = build(args.data_dir, args.out, per_label=args.per_label or None, seed=args.seed)
    print(f"wrote {len(files)} clips to {args.out}")


if __name__ == "__main__":
    main()
