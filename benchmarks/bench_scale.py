"""Scale run: ``scanner scan`` on 100,000 files and a 24 h recording, measured for linearity,
memory and ``--resume`` start-up.

Generates (cheaply: a few dozen template clips, hard-linked, so the disk holds little) a tree
of short files of 1–10 s in mixed formats (wav, flac, ogg, mp3; 8–44.1 kHz) in nested folders
(``NNN/NN/clip_NNNNNN.ext``), one long recording (``long/day.flac``, 24 h by default) and, to
reach ``--total-hours``, one-hour recordings beside it. Then, each as a user runs it (a
subprocess, real YAMNet from ``SCANNER_MODEL_DIR``), with the peak memory of the scanner and
its decode workers sampled from ``/proc`` (VmRSS summed over the process tree):

* ``one``: one file (start-up: imports, model load, worker boot);
* ``small``: the first ``--small`` short files (their folders);
* ``scale``: all ``--files`` short files;
* ``long``: the long recordings;
* ``resume``: ``--resume`` on the scale table (every file done: listing, the resume filter and
  the final tables are all it does);
* ``tables``: the final table alone on ``--files`` synthetic rows (``finish`` time and Arrow's
  peak memory while merging, a ``--resume`` open), in scan order and interleaved;

and reports per-file cost after start-up (``(wall - one) / files``) at both sizes and their
ratio, and checks that the scale table holds the same rows (and events) for the small run's
files as the small run did (every column but ``seconds_taken``).

Full run (about 1,000 h of audio; hours on 2 cores)::

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_scale.py \\
        --files 100000 --small 5000 --long-hours 24 --total-hours 1000

The final table alone (seconds)::

    python benchmarks/bench_scale.py --tables-only --files 100000

The long recordings alone, one file per scan (1 h and 4 h, peak memory and speed), and the
same scans by another checkout in the same run (``--before``: its ``scanner``, e.g. main
before a change), alternating so that both see the same machine load::

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_scale.py --only long \
        --hours 1,4 --before ../main --out benchmarks/results/scale_long_memory.json

Proof run on a shared machine (ratios within one run)::

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_scale.py \\
        --files 20000 --small 2000 --long-hours 1 --total-hours 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

FORMATS = (("wav", 16000), ("flac", 8000), ("ogg", 22050), ("mp3", 44100))
SHORT_S = tuple(range(1, 11))
PER_FOLDER = 100  # files per leaf folder; 10 leaves per top folder
LONG_RATE_HZ = 8000  # the long recordings: 8 kHz FLAC keeps a day at ~1 GB


def _signal(seconds: float, sample_rate: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.2 * np.sin(2 * np.pi * (300 + 40 * (seed % 17)) * t)
    return (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _templates(folder: Path) -> list[Path]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (ext, rate) in enumerate(FORMATS):
        for seconds in SHORT_S:
            path = folder / f"t{seconds:02d}s.{ext}"
            if not path.exists():
                sf.write(path, _signal(seconds, rate, 10 * i + seconds), rate)
            out.append(path)
    return out


def _long(path: Path, hours: float, seed: int) -> None:
    """A long FLAC written in one-minute blocks (never whole in memory)."""
    import soundfile as sf

    if path.exists() and abs(sf.info(str(path)).duration - hours * 3600) < 1:
        return
    block = _signal(60.0, LONG_RATE_HZ, seed)
    tmp = path.with_name(path.name + ".tmp.flac")
    with sf.SoundFile(tmp, "w", LONG_RATE_HZ, 1, format="FLAC") as f:
        for _ in range(int(round(hours * 60))):
            f.write(block)
    os.replace(tmp, path)


def generate(root: Path, files: int, long_hours: float, total_hours: float) -> dict:
    """The tree (kept between runs: only what is missing is made)."""
    templates = _templates(root / ".templates")
    short_s = 0.0
    for i in range(files):
        template = templates[(i * 7919) % len(templates)]  # a fixed mix of formats and lengths
        path = root / "short" / f"{i // (10 * PER_FOLDER):03d}" / f"{i // PER_FOLDER % 10:02d}" \
            / f"clip_{i:06d}{template.suffix}"
        short_s += float(template.stem[1:3])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(template, path)
    long_dir = root / "long"
    long_dir.mkdir(parents=True, exist_ok=True)
    _long(long_dir / "day.flac", long_hours, 1)
    filler = max(0, int(total_hours - long_hours - short_s / 3600))
    if filler:
        _long(root / ".templates" / "hour.flac", 1.0, 2)
        for k in range(filler):
            path = long_dir / f"hour_{k:04d}.flac"
            if not path.exists():
                os.link(root / ".templates" / "hour.flac", path)
    return {"short_files": files, "short_audio_h": short_s / 3600, "long_hours": long_hours,
            "filler_hours": filler, "total_audio_h": short_s / 3600 + long_hours + filler}


def short_folders(root: Path, files: int) -> list[Path]:
    """The leaf folders holding the first ``files`` short files (a multiple of 100)."""
    return [root / "short" / f"{i // (10 * PER_FOLDER):03d}" / f"{i // PER_FOLDER % 10:02d}"
            for i in range(0, files, PER_FOLDER)]


def _tree_rss_kib(pid: int, own: list[int] | None = None) -> int:
    """VmRSS of ``pid`` and all its descendants, from /proc (``own``: ``[pid's own]``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        if p == pid and own is not None:
                            own[:] = [int(line.split()[1])]
        except OSError:
            continue
    return total


def run_scan(args: list[str], *, sample_s: float = 0.5, cwd: Path | None = None) -> dict:
    """``scanner scan ARGS`` as a subprocess: wall time and the peak RSS of its process tree
    (``cwd``: the checkout whose ``scanner`` runs; default this one)."""
    cmd = [sys.executable, "-m", "scanner", "-q", "scan", *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=cwd)
    peak = [0, 0]  # the whole tree, the scanner process alone

    def sample() -> None:
        own = [0]
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid, own))
            peak[1] = max(peak[1], own[0])
            time.sleep(sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.monotonic() - start
    sampler.join()
    if proc.returncode not in (0, 1):  # 1: some files had errors (rows say which)
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr[-2000:]}")
    return {"wall_s": wall, "peak_rss_mib": peak[0] / 1024,
            "scanner_peak_rss_mib": peak[1] / 1024, "summary": stderr.strip()[-300:]}


def same_rows(small: Path, scale: Path) -> dict:
    """Whether the scale table's rows for the small run's files equal the small run's rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = {}
    for kind, suffix in (("files", ".parquet"), ("events", ".events.parquet")):
        a = pq.read_table(small.with_suffix(suffix) if kind == "events" else small)
        b = pq.read_table(scale.with_suffix(suffix) if kind == "events" else scale)
        b = b.filter(pc.is_in(b.column("path"), value_set=pq.read_table(
            small, columns=["path"]).column("path")))
        drop = [c for c in ("seconds_taken",) if c in a.column_names]
        a, b = a.drop_columns(drop).to_pylist(), b.drop_columns(drop).to_pylist()
        out[kind] = {"rows": len(a), "equal": a == b}
    return out


def table_costs(n_rows: int, per_part: int = 256, *, interleaved: bool = False) -> dict:
    """The final table alone: ``n_rows`` file rows committed in parts of ``per_part``, then
    ``finish`` (time, Arrow's peak allocation while merging), then a ``--resume`` open and
    its keys. ``interleaved``: every part spans the whole path range (the merge's worst
    case) instead of the consecutive ranges a scan commits."""
    import resource
    import tempfile

    import pyarrow as pa

    from scanner.output.rows import arrow_schema, column_types
    from scanner.output.writer import TableSink

    classes = ("cry", "screaming", "not_screaming")
    schema = arrow_schema(column_types(classes, ["yamnet"]), {b"scanner": b"{}"})

    def row(i: int) -> dict:
        where = f"site{i % 97:02d}/day{i // 1000:03d}" if interleaved \
            else f"day{i // 1000:03d}/site{i % 97:02d}"
        return {"path": f"/data/{where}/clip_{i:06d}.flac", "status": "ok", "label": "cry",
                "confidence": 0.9, "size_bytes": 1000 + i, "mtime": 10**18 + i,
                "duration_s": 5.0, "sample_rate": 16000, "channels": 1, "decoder": "soundfile",
                "seconds_taken": 0.01, "mean_prob_cry": 0.9, "mean_prob_screaming": 0.05,
                "mean_prob_not_screaming": 0.05, "backbone": "yamnet", "head": "default"}

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.parquet"
        sink = TableSink(out, schema)
        for start in range(0, n_rows, per_part):
            sink.write([row(i) for i in range(start, min(n_rows, start + per_part))])
        pool, previous = pa.proxy_memory_pool(pa.default_memory_pool()), pa.default_memory_pool()
        pa.set_memory_pool(pool)
        try:
            start = time.monotonic()
            sink.finish()
            finish_s = time.monotonic() - start
        finally:
            pa.set_memory_pool(previous)
        start = time.monotonic()
        keys = TableSink(out, schema, resume=True).previous_keys()
        resume_s = time.monotonic() - start
    return {"rows": n_rows, "parts": -(-n_rows // per_part), "interleaved": interleaved,
            "finish_s": finish_s, "finish_arrow_peak_mib": pool.max_memory() / 2**20,
            "resume_open_and_keys_s": resume_s, "keys": len(keys),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def long_only(root: Path, hours: list[float], before: Path | None, threads: int) -> dict:
    """One scan per long recording (``root/long-only/hN/rec.flac``), each also by ``before``
    when given (alternating, in the same run), with peak memory, speed and the per-hour cost
    between the shortest and the longest."""
    out: dict = {"cpu_count": os.cpu_count(), "threads": threads, "file": "8 kHz FLAC mono",
                 "runs": {}}
    work = root / ".results-long"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sides = {"after": None, **({"before": before.resolve()} if before else {})}
    for h in hours:
        folder = root / "long-only" / f"h{h:g}"
        folder.mkdir(parents=True, exist_ok=True)
        _long(folder / "rec.flac", h, 1)
        for side, cwd in sides.items():
            r = run_scan([str(folder), "-o", str(work / f"{side}_h{h:g}.parquet"), "--threads",
                          str(threads), "--overwrite"], cwd=cwd)
            r["x_realtime"] = h * 3600 / r["wall_s"]
            out["runs"].setdefault(side, {})[f"{h:g}"] = r
            print(side, f"{h:g} h", f"{r['peak_rss_mib']:.0f} MiB", f"{r['wall_s']:.1f} s",
                  flush=True)
    if len(hours) > 1:
        lo, hi = f"{min(hours):g}", f"{max(hours):g}"
        for side, runs in out["runs"].items():
            out.setdefault("mib_per_hour", {})[side] = (
                (runs[hi]["peak_rss_mib"] - runs[lo]["peak_rss_mib"]) / (max(hours) - min(hours)))
    if before:
        import pyarrow.parquet as pq

        same = {}
        for h in hours:
            tables = [pq.read_table(work / f"{side}_h{h:g}.parquet").drop_columns(
                ["seconds_taken"]).to_pylist() for side in ("after", "before")]
            events = [pq.read_table(work / f"{side}_h{h:g}.events.parquet").to_pylist()
                      for side in ("after", "before")]
            same[f"{h:g}"] = tables[0] == tables[1] and events[0] == events[1]
        out["same_rows_and_events"] = same
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/scanner-scale"),
                        help="where the generated tree lives (kept between runs)")
    parser.add_argument("--files", type=int, default=100_000, help="short files in all")
    parser.add_argument("--small", type=int, default=5_000, help="short files of the small run")
    parser.add_argument("--long-hours", type=float, default=24.0)
    parser.add_argument("--total-hours", type=float, default=1_000.0,
                        help="one-hour files are added to reach this much audio")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale.json"))
    parser.add_argument("--skip-long", action="store_true", help="do not scan the long files")
    parser.add_argument("--tables-only", action="store_true",
                        help="only the final-table and resume costs on --files synthetic rows")
    parser.add_argument("--only", choices=["long"],
                        help="long: only the long recordings of --hours, one scan each")
    parser.add_argument("--hours", default="1,4",
                        help="with --only long: recording lengths in hours, comma-separated")
    parser.add_argument("--before", type=Path,
                        help="with --only long: also scan with this checkout (same run)")
    args = parser.parse_args()
    if args.only == "long":
        result = long_only(args.root, [float(h) for h in args.hours.split(",")], args.before,
                           args.threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    if args.tables_only:
        print(json.dumps([table_costs(args.files, interleaved=i) for i in (False, True)],
                         indent=2))
        return
    if args.small % PER_FOLDER or args.files % PER_FOLDER or args.small > args.files:
        parser.error(f"--small and --files must be multiples of {PER_FOLDER}, small <= files")

    started = time.monotonic()
    result: dict = {"cpu_count": os.cpu_count(), "threads": args.threads,
                    "tree": generate(args.root, args.files, args.long_hours, args.total_hours)}
    result["tree"]["generate_s"] = time.monotonic() - started
    work = args.root / ".results"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    common = ["--threads", str(args.threads), "--overwrite"]
    first = short_folders(args.root, PER_FOLDER)[0]
    one = next(p for p in sorted(first.iterdir()))
    runs = {"one": run_scan([str(one), "-o", str(work / "one.parquet"), *common])}
    runs["small"] = run_scan([*map(str, short_folders(args.root, args.small)), "-o",
                              str(work / "small.parquet"), *common])
    runs["scale"] = run_scan([str(args.root / "short"), "-o", str(work / "scale.parquet"),
                              *common])
    runs["resume"] = run_scan([str(args.root / "short"), "-o", str(work / "scale.parquet"),
                               "--resume", "--threads", str(args.threads)])
    if not args.skip_long:
        runs["long"] = run_scan([str(args.root / "long"), "-o", str(work / "long.parquet"),
                                 *common])
        runs["long"]["audio_h"] = args.long_hours + result["tree"]["filler_hours"]
        runs["long"]["x_realtime"] = runs["long"]["audio_h"] * 3600 / runs["long"]["wall_s"]
    startup = runs["one"]["wall_s"]
    for name, n in (("small", args.small), ("scale", args.files)):
        runs[name]["files"] = n
        runs[name]["per_file_ms"] = 1000 * (runs[name]["wall_s"] - startup) / n
    result["runs"] = runs
    result["per_file_ratio_scale_over_small"] = (runs["scale"]["per_file_ms"]
                                                 / runs["small"]["per_file_ms"])
    result["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs.values())
    result["same_rows"] = same_rows(work / "small.parquet", work / "scale.parquet")
    result["tables"] = [table_costs(args.files, interleaved=i) for i in (False, True)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
