"""The checks ``benchmarks/gpu.sh`` runs on a lent GPU machine, each printing one JSON line.

* ``decode``: decode + resample throughput of the decode pool with 1..N workers on a
  generated folder of mixed formats (CPU only; on the GPU machine it has 16 cores);
* ``oom``: the Wav2Vec2 backbone's batch halving against a real card: a wav2vec2-base-sized
  model (random weights) on CUDA with a starting batch far too large, then the batch size it
  kept and the rows it made (equal to a batch-of-one run's);
* ``savedmodel``: the YAMNet SavedModel path on the GPU, when ``SCANNER_MODEL_DIR`` holds
  ``yamnet/saved_model/saved_model.pb`` (TF Hub's; it cannot be built offline): its speed
  and its agreement with the TFLite model.

    python benchmarks/gpu_checks.py decode --workers 1 2 4 8 12 15
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


def _folder(root: Path, n: int) -> Path:
    import numpy as np
    import soundfile as sf

    formats = (("wav", 16000), ("flac", 44100), ("ogg", 22050), ("mp3", 48000))
    rng = np.random.default_rng(0)
    for i in range(n):
        ext, rate = formats[i % len(formats)]
        seconds = 2 + i % 9
        t = np.arange(seconds * rate) / rate
        x = 0.2 * np.sin(2 * np.pi * (200 + i) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"c{i:04d}.{ext}", np.stack([x, x], 1).astype(np.float32), rate)
    return root


def decode(args: argparse.Namespace) -> None:
    from scanner.audio.decode import plan_tasks
    from scanner.audio.discover import discover
    from scanner.audio.pool import DecodePool
    from scanner.records import DecodedClip

    with tempfile.TemporaryDirectory() as tmp:
        files = discover([_folder(Path(tmp), args.files)])
        tasks = list(plan_tasks(files))
        for workers in args.workers:
            with DecodePool(workers=workers).start() as pool:
                next(iter(pool.imap(tasks[:workers])), None)  # workers booted and warm
                start = time.monotonic()
                audio = sum(len(c.waveform) for c in pool.imap(tasks)
                            if isinstance(c, DecodedClip)) / 16000
                wall = time.monotonic() - start
            print(json.dumps({"check": "decode", "workers": workers, "cores": os.cpu_count(),
                              "files": len(tasks), "audio_s": audio,
                              "x_realtime": audio / wall}), flush=True)


def oom(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from scanner.backbones.wav2vec2 import Wav2Vec2Backbone

    if not torch.cuda.is_available():
        print(json.dumps({"check": "oom", "skipped": "no CUDA device"}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp)  # wav2vec2-base size, random
        from transformers import Wav2Vec2FeatureExtractor

        Wav2Vec2FeatureExtractor().save_pretrained(tmp)
        rng = np.random.default_rng(0)
        waves = [(0.1 * rng.standard_normal(16000 * 10)).astype(np.float32)
                 for _ in range(args.clips)]
        big = Wav2Vec2Backbone.load(tmp, device="cuda", window_s=10.0,
                                    batch_size=args.start_batch)
        halvings: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: halvings.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("scanner.device").addHandler(handler)
        torch.cuda.reset_peak_memory_stats()
        start = time.monotonic()
        rows = big.embed_batch(waves)
        wall = time.monotonic() - start
        second = time.monotonic()
        big.embed_batch(waves)  # does a second call start from the big batch again?
        second = time.monotonic() - second
        one = Wav2Vec2Backbone.load(tmp, device="cuda", window_s=10.0, batch_size=1)
        ref = one.embed_batch(waves[:4])
        diff = max(float(np.abs(a.embeddings - b.embeddings).max()) for a, b in zip(rows, ref, strict=False))
        print(json.dumps({"check": "oom", "gpu": torch.cuda.get_device_name(),
                          "start_batch": args.start_batch, "halvings": halvings,
                          "second_call_s": second, "first_call_s": wall,
                          "clips": len(waves), "x_realtime": 10 * len(waves) / wall,
                          "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                          "max_abs_diff_vs_batch_1": diff}), flush=True)


def savedmodel(args: argparse.Namespace) -> None:
    root = Path(os.environ.get("SCANNER_MODEL_DIR", "../shared/models"))
    saved = root / "yamnet" / "saved_model"
    if not (saved / "saved_model.pb").exists():
        print(json.dumps({"check": "savedmodel", "skipped": f"no {saved}/saved_model.pb"}))
        return
    import numpy as np

    from scanner.backbones import load_backbone

    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(16000 * 10)).astype(np.float32) for _ in range(64)]
    out = {"check": "savedmodel"}
    results = {}
    for name, source in (("savedmodel", str(saved)), ("tflite", str(root / "yamnet" / "yamnet.tflite"))):
        backbone = load_backbone("yamnet", source=source)
        backbone.embed_batch(waves[:2])
        start = time.monotonic()
        results[name] = backbone.embed_batch(waves)
        out[f"{name}_x_realtime"] = 10 * len(waves) / (time.monotonic() - start)
    out["max_abs_diff"] = max(float(np.abs(a.embeddings - b.embeddings).max())
                              for a, b in zip(results["savedmodel"], results["tflite"], strict=True))
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("decode")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 12, 15])
    p.add_argument("--files", type=int, default=400)
    p = sub.add_parser("oom")
    p.add_argument("--start-batch", type=int, default=4096)
    p.add_argument("--clips", type=int, default=256)
    sub.add_parser("savedmodel")
    args = parser.parse_args()
    {"decode": decode, "oom": oom, "savedmodel": savedmodel}[args.check](args)


if __name__ == "__main__":
    sys.exit(main())
