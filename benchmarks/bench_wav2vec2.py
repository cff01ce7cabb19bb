"""Benchmark the Wav2Vec2 model stage alone (no decoding): seconds of audio per second of compute.

For each window length and batch size, times :meth:`Wav2Vec2Backbone.embed_batch` on
``batch`` clips of exactly one window, i.e. one forward pass of ``[batch, window]`` samples
plus the feature extractor and the pooling. Without ``--model`` the model is
wav2vec2-base-sized (``Wav2Vec2Config()`` defaults: 12 layers, 768-d) with random weights:
speed does not depend on the weights.

Example::

    python benchmarks/bench_wav2vec2.py --device cpu --repeats 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from scanner.backbones.wav2vec2 import Wav2Vec2Backbone

SR = 16_000
log = logging.getLogger("bench_wav2vec2")


def _random_base(device: str, threads: int | None, window_s: float) -> Wav2Vec2Backbone:
    """wav2vec2-base's architecture with random weights, without writing it to disk."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from scanner.device import resolve_torch_device, set_cpu_threads

    torch_device = resolve_torch_device(device)
    if threads is not None:
        set_cpu_threads(threads)
    torch.manual_seed(0)
    config = Wav2Vec2Config()
    model = Wav2Vec2Model(config).eval().requires_grad_(False).to(torch_device)
    # The feature extractor that facebook/wav2vec2-base ships.
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    return Wav2Vec2Backbone(model, extractor, torch_device, source="random:Wav2Vec2Config()",
                            layer=config.num_hidden_layers, window_s=window_s, overlap_s=0.0,
                            batch_size=1, config_sha256="")


def bench(backbone: Wav2Vec2Backbone, windows_s: list[float], batch_sizes: list[int],
          repeats: int) -> list[dict[str, Any]]:
    """Times every (window, batch) pair after one warm-up; returns one dict per pair."""
    rng = np.random.default_rng(0)
    rows = []
    for window_s in windows_s:
        for batch in batch_sizes:
            clips = [(0.2 * rng.standard_normal(int(window_s * SR))).astype(np.float32)
                     for _ in range(batch)]
            backbone.batch_size = batch
            backbone.embed_batch(clips)  # warm-up: allocator, kernels, autotuning
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                backbone.embed_batch(clips)
                times.append(time.perf_counter() - start)
            audio_s = window_s * batch
            best, median = min(times), statistics.median(times)
            rows.append({"window_s": window_s, "batch_size": batch, "audio_s": audio_s,
                         "wall_s": round(best, 4), "median_wall_s": round(median, 4),
                         "x_realtime": round(audio_s / best, 2),
                         "median_x_realtime": round(audio_s / median, 2)})
            log.info("window %.0f s, batch %d: %.1fx realtime (best of %d)", window_s, batch,
                     audio_s / best, repeats)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default=None,
                        help="a Hugging Face id or save_pretrained folder "
                             "(default: random weights in wav2vec2-base's shape)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="windows per forward pass (default: 1 2 4 8)")
    parser.add_argument("--windows", type=float, nargs="+", default=[5.0, 10.0],
                        help="window lengths in seconds (default: 5 10)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed runs per case after one warm-up; the best is reported "
                             "(default 2)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/wav2vec2.json"),
                        help="JSON results (default benchmarks/results/wav2vec2.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch
    import transformers

    longest = max(args.windows)
    if args.model is None:
        backbone = _random_base(args.device, args.threads, longest)
    else:
        backbone = Wav2Vec2Backbone.load(args.model, device=args.device, threads=args.threads,
                                         window_s=longest)
    device = backbone._device
    rows = bench(backbone, args.windows, args.batch_sizes, args.repeats)
    report = {
        "benchmark": "wav2vec2", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "autocast": str(backbone._autocast) if backbone._autocast is not None else None,
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "model": backbone.identity, "settings": vars(args) | {"out": str(args.out)},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"device {device}, {torch.get_num_threads()} torch threads, x realtime (best run)")
    print(f"{'batch':>6}" + "".join(f"{f'{w:g} s window':>14}" for w in args.windows))
    for batch in args.batch_sizes:
        cells = [r["x_realtime"] for w in args.windows for r in rows
                 if r["window_s"] == w and r["batch_size"] == batch]
        print(f"{batch:>6}" + "".join(f"{c:>14.1f}" for c in cells))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
