"""The Ray engine against the local engine on one folder: same rows? how fast? where is the limit?

Runs, in one process and back to back:

* the local engine (``scanner.engines.driver.scan``) and the Ray engine (``scan_ray``) on the
  folder, and compares their rows: paths, status, labels, and the largest difference of any
  probability;
* each stage alone on one core, for the scale estimate in docs/ray.md: decoding (per file and
  per second of audio, the mix of formats and rates of the folder) and the model (YAMNet
  ``embed_batch`` with one thread on the decoded audio);
* the per-file costs around the model: discovery, packing a decoded file into a Ray row and
  back, the head and row, and the driver's share (rows to Arrow, committed parts, final table).

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_ray.py /tmp/mixed60
    python benchmarks/bench_ray.py /tmp/mixed60 --address auto   # on a running cluster

Prints one JSON object (``--out`` also writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

PROBS = ("prob_cry", "prob_screaming", "prob_not_screaming")


def compare(local: list[dict], ray_: list[dict]) -> dict:
    """How far the Ray rows are from the local ones, file by file."""
    a = {r["path"]: r for r in local}
    b = {r["path"]: r for r in ray_}
    both = sorted(set(a) & set(b))
    diffs = [abs(a[p][c] - b[p][c]) for p in both for c in PROBS
             if a[p][c] is not None and b[p][c] is not None]
    return {
        "files_local": len(a), "files_ray": len(b), "same_paths": set(a) == set(b),
        "same_status": all(a[p]["status"] == b[p]["status"] for p in both),
        "labels_equal": sum(a[p]["label"] == b[p]["label"] for p in both),
        "max_abs_prob_diff": max(diffs, default=0.0),
        "ok": sum(r["status"] == "ok" for r in ray_),
    }


def engines(folder: Path, address: str | None) -> dict:
    import pyarrow.parquet as pq
    import ray

    from scanner.config import ScanConfig
    from scanner.engines.driver import load_classifier, scan
    from scanner.engines.ray_engine import scan_ray

    config = ScanConfig()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        classifier = load_classifier(config)
        load_s = time.monotonic() - start
        local = scan([folder], f"{tmp}/local.parquet", config, classifier=classifier)
        start = time.monotonic()
        ray.init(address=address, **({} if address else {"include_dashboard": False}))
        init_s = time.monotonic() - start
        try:
            remote = scan_ray([folder], f"{tmp}/ray.parquet", config, classifier=classifier)
            cluster = ray.cluster_resources()
        finally:
            ray.shutdown()
        result = compare(pq.read_table(f"{tmp}/local.parquet").to_pylist(),
                         pq.read_table(f"{tmp}/ray.parquet").to_pylist())
    return {
        "comparison": result,
        "cluster": {k: v for k, v in cluster.items() if k in ("CPU", "GPU", "memory")},
        "model_load_s": load_s,
        "local": {"wall_s": local.wall_s, "files_per_hour": 3600 * local.files / local.wall_s,
                  "x_realtime": local.x_realtime},
        "ray": {"init_s": init_s, "wall_s": remote.wall_s,
                "files_per_hour": 3600 * remote.files / remote.wall_s,
                "x_realtime": remote.x_realtime},
        "audio_s": local.audio_s, "files": local.files,
    }


def stages(folder: Path) -> dict:
    """Each stage alone on one core: decode (this folder's formats) and YAMNet (1 thread)."""
    from scanner.audio.decode import decode_task, plan_tasks
    from scanner.audio.discover import discover
    from scanner.backbones import load_backbone
    from scanner.records import DecodedClip

    files = discover([folder])
    start = time.process_time()
    clips = [decode_task(t) for t in plan_tasks(files)]
    decode_cpu_s = time.process_time() - start
    waves = [c.waveform for c in clips if isinstance(c, DecodedClip)]
    audio_s = sum(len(w) for w in waves) / 16000
    backbone = load_backbone("yamnet", threads=1)
    backbone.embed_batch(waves[:4])  # warm-up
    start = time.monotonic()
    for i in range(0, len(waves), 16):
        backbone.embed_batch(waves[i:i + 16])
    model_s = time.monotonic() - start
    return {
        "files": len(files), "audio_s": audio_s, "mean_file_s": audio_s / max(1, len(waves)),
        "decode_cpu_s_per_file": decode_cpu_s / len(files),
        "decode_x_realtime_per_core": audio_s / decode_cpu_s,
        "decode_files_per_hour_per_core": 3600 * len(files) / decode_cpu_s,
        "yamnet_tflite_x_realtime_per_thread": audio_s / model_s,
        "yamnet_tflite_files_per_hour_per_thread": 3600 * len(waves) / model_s,
    }


def overheads(folder: Path) -> dict:
    """Per-file costs around the model, in ms: what bounds files/hour once models are fast."""
    import tempfile

    import pyarrow as pa

    from scanner.audio.decode import decode_task, plan_tasks
    from scanner.audio.discover import discover
    from scanner.config import ScanConfig
    from scanner.engines.driver import load_classifier, make_row, results_schema
    from scanner.engines.local import Stitcher, embed_items
    from scanner.engines.ray_engine import pack_files, unpack_files
    from scanner.output.writer import TableSink

    def timed(fn, n: int) -> tuple[object, float]:
        start = time.perf_counter()
        value = fn()
        return value, 1000 * (time.perf_counter() - start) / n

    files, discover_ms = timed(lambda: discover([folder]), 1)
    n = len(files)
    discover_ms /= n
    decoded = [[decode_task(t) for t in plan_tasks([f])] for f in files]
    table, pack_ms = timed(lambda: pack_files(decoded), n)
    _, unpack_ms = timed(lambda: unpack_files(table), n)
    config = ScanConfig()
    classifier = load_classifier(config)
    stitcher = Stitcher()
    results = [stitcher.add(item, embs) for parts in decoded
               for item, embs in embed_items(parts, classifier.backbones)]
    rows, row_ms = timed(lambda: [make_row(r, classifier) for r in results if r], n)
    schema = results_schema(config, classifier)
    _, arrow_ms = timed(lambda: pa.Table.from_pylist(rows, schema=schema).to_pylist(), n)
    many = rows * (20_000 // len(rows))
    with tempfile.TemporaryDirectory() as tmp:
        sink = TableSink(Path(tmp) / "r.parquet", schema)

        def write() -> None:
            for i in range(0, len(many), 256):
                sink.write(many[i:i + 256])
            sink.finish()

        _, sink_ms = timed(write, len(many))
    return {"discover_ms": discover_ms, "pack_ms": pack_ms, "unpack_ms": unpack_ms,
            "head_and_row_ms": row_ms, "arrow_round_trip_ms": arrow_ms,
            "driver_sink_ms": sink_ms,
            "mean_file_bytes": sum(f.size_bytes for f in files) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of audio to scan")
    parser.add_argument("--address", help="Ray cluster address (default: a local instance)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = {"folder": str(args.folder), "cpu_count": os.cpu_count()}
    result.update(engines(args.folder, args.address))
    result["stages"] = stages(args.folder)
    result["overheads_per_file"] = overheads(args.folder)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
