"""Issue 14, item 5: peak memory of scanning files that are small on disk and long decoded.

Writes the issue's three cases (seeded, bounded memory while writing):

* ``silence_3h.flac``: three hours of digital silence, 16 kHz mono FLAC (a few hundred KB);
* ``speech_1h.opus``: one hour of quiet tone-and-noise as 6 kbps Opus (about 1.3 MB);
* ``four_1h/``: four one-hour 8 kHz FLACs, faint noise a third of the time (under 4 MB each);

then scans each in a fresh ``scanner scan`` (its own session) while sampling the summed
resident memory of the scanner and its decode workers every 0.1 s. ``--code`` runs another
checkout's ``scanner`` (e.g. the commit before the fix) for a before/after in the same run.

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --code /tmp/before --code . --backbone fake --head H

Results go to ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_robustness import MemorySampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
LIMIT_GIB = 1.0


def _flac(path: Path, hours: float, rate: int, amplitude: float, seed: int,
          sound_s: float = 20.0) -> Path:
    """Each minute: ``sound_s`` seconds of faint noise (``amplitude``), then silence."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(int(hours * 60)):
            x = np.zeros(60 * rate)
            if amplitude:
                x[:int(sound_s * rate)] = amplitude * rng.standard_normal(int(sound_s * rate))
            f.write(x.astype(np.float32))
    return path


def _opus(path: Path, hours: float, bit_rate: int = 6000) -> Path:
    import av

    rate = 48000
    rng = np.random.default_rng(3)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate)
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        for minute in range(int(hours * 60)):
            t = (np.arange(60 * rate) + minute * 60 * rate) / rate
            x = 0.1 * np.sin(2 * np.pi * (200 + 10 * (minute % 20)) * t) \
                + 0.01 * rng.standard_normal(len(t))
            frame = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="flt",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_cases(work: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    cases = {"silence_3h.flac": work / "silence_3h.flac", "speech_1h.opus": work / "speech_1h.opus",
             "four_1h_flac": work / "four_1h"}
    if not cases["silence_3h.flac"].exists():
        _flac(cases["silence_3h.flac"], 3.0, 16000, 0.0, 0)
    if not cases["speech_1h.opus"].exists():
        _opus(cases["speech_1h.opus"], 1.0)
    cases["four_1h_flac"].mkdir(exist_ok=True)
    for i in range(4):
        f = cases["four_1h_flac"] / f"night_{i}.flac"
        if not f.exists():
            _flac(f, 1.0, 8000, 0.00004, 10 + i)  # about one LSB of noise: under 4 MB
    return cases


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


def run_case(code: Path, target: Path, out: Path, scan_args: list[str]) -> dict:
    import pyarrow.parquet as pq

    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    cmd = [sys.executable, "-m", "scanner", "-q", "scan", str(target), "-o", str(out),
           *scan_args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env, cwd=code)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    _, stderr = proc.communicate()
    sampler.stop()
    rows = pq.read_table(out).to_pylist() if out.exists() else []
    report = {
        "exit_code": proc.returncode, "wall_s": round(time.monotonic() - start, 1),
        "peak_sum_rss_gib": round(sampler.peak_rss_kib / 1024**2, 3),
        "peak_main_rss_gib": round(sampler.peak_main_rss_kib / 1024**2, 3),
        "peak_processes": sampler.peak_processes,
        "rows": [{k: r.get(k) for k in ("status", "error_kind", "duration_s", "label")}
                 for r in rows],
    }
    report["within_limit"] = report["peak_sum_rss_gib"] <= LIMIT_GIB
    if proc.returncode not in (0, 4):
        report["stderr_tail"] = stderr[-2000:]
    out.unlink(missing_ok=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/scanner-bench-memory"))
    parser.add_argument("--code", type=Path, action="append",
                        help="a checkout whose scanner to run (repeatable; default: this one)")
    parser.add_argument("--only", action="append", help="case names to run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args, scan_args = parser.parse_known_args()
    codes = args.code or [ROOT]
    cases = make_cases(args.work)
    results: dict = {"limit_gib": LIMIT_GIB, "scan_args": scan_args, "cases": {}}
    for name, target in cases.items():
        if args.only and name not in args.only:
            continue
        entry = {"bytes": _size(target), "runs": {}}
        for code in codes:
            entry["runs"][str(code)] = run_case(code, target, args.work / "out.parquet",
                                                scan_args)
            print(name, code, json.dumps(entry["runs"][str(code)]), flush=True)
        results["cases"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
