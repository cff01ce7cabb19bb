"""Benchmark embedding export: what ``VectorSink`` adds to a scan, and its size on disk.

Runs the scan's stages (decode, YAMNet, classify, the results table) over real audio and, in the
same run, feeds every result to a :class:`~scanner.output.vectors.VectorSink` (committing
every 256 files, as the driver does), timing the two apart. Reports the sink's time as a
share of the scan's, and the vector table's bytes per hour of audio.

Example::

    SCANNER_MODEL_DIR=../shared/models PYTHONPATH=. python benchmarks/bench_vectors.py \\
        ../shared/datasets/cry-scream --limit 400
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from scanner.audio.discover import discover
from scanner.config import ScanConfig
from scanner.engines.driver import load_classifier, make_row, results_schema
from scanner.engines.local import embed_files
from scanner.output.vectors import VectorSink, vectors_path
from scanner.output.writer import TableSink

log = logging.getLogger("bench_vectors")
COMMIT_FILES = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=400, help="Files (every k-th, spread out).")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    files = discover([args.folder])
    files = files[:: max(1, len(files) // args.limit)][: args.limit]
    config = ScanConfig()
    classifier = load_classifier(config)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.parquet"
        t = time.perf_counter()
        table = TableSink(out, results_schema(config, classifier))
        rows: list[dict] = []
        scan_s = time.perf_counter() - t
        sink = VectorSink(out, classifier, config, resume=False)
        sink_s = time.perf_counter() - t - scan_s
        audio_s = 0.0
        n = 0
        t = time.perf_counter()
        for result in embed_files(files, classifier.backbones, workers=args.workers):
            row = make_row(result, classifier)
            rows.append(row)
            if len(rows) == COMMIT_FILES:
                table.write(rows)
                rows = []
            t1 = time.perf_counter()
            scan_s += t1 - t
            sink.add(result, row, None)
            n += 1
            if n % COMMIT_FILES == 0:
                sink.commit(n // COMMIT_FILES)
            audio_s += row["duration_s"] or 0.0
            t = time.perf_counter()
            sink_s += t - t1
        t1 = time.perf_counter()
        table.write(rows)
        table.finish()
        t2 = time.perf_counter()
        scan_s += t2 - t1
        counts = sink.finish(set())
        sink_s += time.perf_counter() - t2
        size = vectors_path(out).stat().st_size
    report = {"files": n, "audio_h": round(audio_s / 3600, 3), "scan_s": round(scan_s, 2),
              "export_s": round(sink_s, 3), "export_share_of_scan": round(sink_s / scan_s, 4),
              "vectors": counts, "bytes": size,
              "mb_per_audio_hour": round(size / 1e6 / (audio_s / 3600), 2)}
    log.info("%s", json.dumps(report))


if __name__ == "__main__":
    main()
