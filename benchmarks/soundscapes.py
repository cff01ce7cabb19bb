"""Builds the detection benchmark's soundscapes: long recordings with known cries and screams.

Beds of background clips end to end at varied levels over faint noise, cry and scream clips
inserted at known times at 0-15 dB SNR, a fifth of the recordings background only, each
10-30 minutes; only clips of the chosen split's groups (``training.soundscapes``).

    python benchmarks/soundscapes.py build ../shared/datasets/cry-scream /tmp/sc/test --split test --hours 2
    scanner scan /tmp/sc/test -o /tmp/sc/r.parquet --segments
    scanner evaluate /tmp/sc/r.parquet --truth /tmp/sc/test/truth.csv --sweep
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.soundscapes import DEFAULT_FRACTIONS, SoundscapeConfig, write_set  # noqa: E402


def _range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    return float(lo), float(hi or lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write one set: FLAC files, truth.csv, manifest.json")
    b.add_argument("dataset", type=Path, help="labelled folder with manifest.csv")
    b.add_argument("out", type=Path, help="folder to write the set to")
    b.add_argument("--split", default="test", choices=list(DEFAULT_FRACTIONS))
    b.add_argument("--hours", type=float, default=2.0, help="about this much audio in all")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--split-seed", type=int, default=0, help="seed of the split by group")
    b.add_argument("--minutes", type=_range, default=None, help="LOW,HIGH length of a recording")
    b.add_argument("--events", type=_range, default=None, help="LOW,HIGH events in a recording")
    b.add_argument("--snr", type=_range, default=None, help="LOW,HIGH dB")
    b.add_argument("--background-only", type=float, default=None, help="fraction without events")
    b.add_argument("--version", action="append", default=None,
                   help="use only clips of this manifest version (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    defaults = SoundscapeConfig()
    config = SoundscapeConfig(
        minutes=args.minutes or defaults.minutes,
        events_per_recording=tuple(int(v) for v in args.events) if args.events
        else defaults.events_per_recording,
        snr_db=args.snr or defaults.snr_db,
        background_only_fraction=defaults.background_only_fraction if args.background_only is None
        else args.background_only)
    truth = write_set(args.dataset, args.out, split=args.split, hours=args.hours, config=config,
                      seed=args.seed, split_seed=args.split_seed, versions=args.version)
    logging.getLogger(__name__).info("truth: %s", truth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
