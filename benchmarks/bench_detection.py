"""What detection costs: the per-file chain with and without events, against the whole scan.

For each input (a folder of clips, and one long generated recording) it runs, in one process:

1. a full scan (``scan``: decode, embed, chain, write), timed;
2. the embeddings once more (``embed_files``), kept in memory;
3. on those results, the chain's work with detection — windows, the head on every window,
   smoothing, events, the verdict, the event rows — and without it (the whole-file mean only,
   which is what a scan did before detection was on by default), each best of ``--repeats``.

The cost of detection is (3 with - 3 without) / 1: the share of wall time detection adds.

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_detection.py --folder /tmp/mixed265 \\
        --long-hours 1 --out benchmarks/results/detection.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf


def _long_recording(path: Path, hours: float) -> Path:
    """``hours`` of noise with tones (a bed), written in chunks (bounded memory)."""
    rng = np.random.default_rng(0)
    sr = 16000
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for minute in range(int(round(hours * 60))):
            t = np.arange(60 * sr) / sr
            x = 0.05 * rng.standard_normal(len(t)) + 0.1 * np.sin(2 * np.pi * (200 + minute) * t)
            f.write(x.astype(np.float32))
    return path


def measure(paths: list[Path], repeats: int) -> dict[str, Any]:
    from scanner.audio.discover import discover
    from scanner.classify import load_classifier
    from scanner.config import ScanConfig
    from scanner.engines.chain import FileChain, make_row
    from scanner.engines.driver import scan
    from scanner.engines.local import embed_files
    from scanner.events.detection import resolve_detection

    config = ScanConfig()
    classifier = load_classifier(config)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = scan(paths, Path(tmp) / "r.parquet", config, classifier=classifier)
        scan_s = time.perf_counter() - start
    files = discover(paths)
    results = list(embed_files(files, classifier.backbones, workers=config.workers))
    chain = FileChain(classifier, resolve_detection(classifier), [])

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for r in results:
                fn(r)
            times.append(time.perf_counter() - t0)
        return min(times)

    without = best(lambda r: make_row(r, classifier))
    with_detection = best(chain.process)
    return {"files": summary.files, "audio_s": summary.audio_s, "events": summary.events,
            "scan_wall_s": scan_s, "chain_without_detection_s": without,
            "chain_with_detection_s": with_detection,
            "detection_s": with_detection - without,
            "detection_share_of_scan": (with_detection - without) / scan_s,
            "ms_per_hour_of_audio": 1000 * (with_detection - without) / (summary.audio_s / 3600)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="a folder of clips (mixed_folder.py)")
    parser.add_argument("--long-hours", type=float, default=1.0,
                        help="also one generated recording this long (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.folder:
        report["folder"] = {"path": str(args.folder), **measure([args.folder], args.repeats)}
    if args.long_hours > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = _long_recording(Path(tmp) / "long.wav", args.long_hours)
            report["long_file"] = {"hours": args.long_hours, **measure([path], args.repeats)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
