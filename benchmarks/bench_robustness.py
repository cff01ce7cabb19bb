"""Issue 6's done-when measurements: a scan killed with SIGKILL then resumed, and the peak
memory of scanning a one-hour 44.1 kHz stereo wav.

* **kill**: builds a ~265-file mixed folder from the labelled clips (``mixed_folder.py``,
  100 per label: 100 cry, 65 screaming, 100 not_screaming) and scans it once uninterrupted
  (the reference). Then, each time on a fresh output: SIGKILL after ``--kill-after`` seconds
  (the issue's 12 s; repeatable, each later kill hitting the ``--resume`` run that follows),
  SIGKILL as soon as the first part is committed, and SIGKILL at ``--random-kills`` random
  moments; each is followed by ``--resume`` to the end, and checked: every file exactly
  once, with the reference's label and probabilities. A kill that lands after the scan has
  ended is reported as such (``still_running_at_kill: false``).
* **memory**: writes a one-hour 44.1 kHz 16-bit stereo wav (635 MB) and scans it, sampling
  the resident memory of ``scanner`` and its decode workers together every 0.1 s, and
  reading ``/usr/bin/time -v``'s maximum resident set size as well.

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_robustness.py
    python benchmarks/bench_robustness.py --only kill --folder /tmp/mixed265 --kill-after 12

Results go to ``benchmarks/results/robustness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = Path(__file__).resolve().parent / "results" / "robustness.json"
GIB = 1024**3


# --- processes ----------------------------------------------------------------------------


def _session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a scan started with ``start_new_session``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; PSS shares shared pages out fairly."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


class MemorySampler(threading.Thread):
    """Samples the summed RSS/PSS of every process in a session until stopped."""

    def __init__(self, sid: int, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.sid, self.every_s = sid, every_s
        self.peak_rss_kib = self.peak_pss_kib = self.peak_processes = 0
        self.peak_main_rss_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = _session_pids(self.sid)
            sizes = [_memory_kib(p) for p in pids]
            self.peak_rss_kib = max(self.peak_rss_kib, sum(s[0] for s in sizes))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(s[1] for s in sizes))
            self.peak_processes = max(self.peak_processes, len(pids))
            # the main process is the python that runs scanner (time -v is its parent)
            for p, (rss, _) in zip(pids, sizes, strict=True):
                if _is_scanner(p):
                    self.peak_main_rss_kib = max(self.peak_main_rss_kib, rss)
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _is_scanner(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(a.endswith(b"scanner") for a in args[:3]) and b"loky" not in b" ".join(args)


def _kill_session(sid: int) -> int:
    """Kills what is left of a scan's session (its orphaned workers); returns how many."""
    left = _session_pids(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def _scanner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scanner", *args]


# --- kill and resume ------------------------------------------------------------------------


def build_folder(data_dir: Path, dest: Path, per_label: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mixed_folder import build

    build(data_dir, dest, per_label=per_label)
    return dest


def _committed_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    from scanner.output.writer import parts_dir

    parts = parts_dir(out)
    return sum(pq.read_metadata(p).num_rows for p in parts.glob("part-*.parquet")) \
        if parts.exists() else 0


def _run_to_end(args: list[str]) -> dict:
    start = time.monotonic()
    proc = subprocess.run(_scanner_cmd(*args), capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if " files (" in line]
    return {"exit_code": proc.returncode, "wall_s": round(time.monotonic() - start, 2),
            "summary": lines[-1] if lines else proc.stderr[-500:]}


def _run_and_kill(args: list[str], out: Path, when: str) -> dict:
    """Runs a scan and SIGKILLs it: ``when`` is seconds after the start, or ``commit`` for as
    soon as a part is committed beyond those already there."""
    start = time.monotonic()
    before = _committed_rows(out)
    proc = subprocess.Popen(_scanner_cmd(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    if when == "commit":
        while proc.poll() is None and _committed_rows(out) <= before:
            time.sleep(0.02)
    else:
        try:
            proc.wait(timeout=float(when))
        except subprocess.TimeoutExpired:
            pass
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, as the OOM killer would
    proc.wait()
    killed_at_s = time.monotonic() - start
    time.sleep(1.0)
    orphans = len(_session_pids(proc.pid))
    _kill_session(proc.pid)
    return {"kill": when, "killed_at_s": round(killed_at_s, 2), "still_running_at_kill": alive,
            "committed_rows_after_kill": _committed_rows(out),
            "final_table_written": out.exists(), "orphaned_workers_1s_after_kill": orphans}


def _models(table_path: Path) -> list:
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(table_path).metadata[b"scanner"])
    return [meta["backbones"], meta["heads"]]


def _check(out: Path, files: list[str], ref_out: Path | None) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pandas()
    counts = Counter(table["path"])
    check = {
        "rows": len(table), "unique_paths": len(counts),
        "missing": sorted(set(files) - set(counts))[:10],
        "doubled": sorted(p for p, c in counts.items() if c > 1)[:10],
        "unexpected": sorted(set(counts) - set(files))[:10],
        "status": dict(Counter(table["status"])),
    }
    check["each_file_once"] = (check["rows"] == check["unique_paths"] == len(files)
                               and not check["missing"] and not check["unexpected"])
    if ref_out is not None:
        # a head or model changed under the benchmark would show here, not as lost rows
        check["same_models_as_reference"] = _models(out) == _models(ref_out)
        ref = pq.read_table(ref_out).to_pandas().set_index("path")
        got = table.drop_duplicates("path", keep="last").set_index("path").reindex(ref.index)
        probs = [c for c in ref.columns if c.startswith("prob_")]
        check["labels_equal_reference"] = bool((got["label"] == ref["label"]).all())
        check["max_abs_prob_diff_vs_reference"] = float(
            np.nanmax(np.abs(got[probs].to_numpy() - ref[probs].to_numpy())))
    return check


def kill_and_resume(folder: Path, work: Path, kill_after: list[float], scan_args: list[str],
                    random_kills: int, seed: int = 0, reference: bool = True) -> dict:
    """The done-when kill (after ``kill_after`` seconds), a kill right after the first commit,
    and ``random_kills`` kills at random moments; each on a fresh output, then ``--resume``."""
    import numpy as np

    from scanner.audio.discover import discover

    files = sorted(str(f.path) for f in discover([folder]))
    report: dict = {"folder": str(folder), "files": len(files), "scan_args": scan_args}
    ref_out = work / "reference.parquet"
    if reference:
        report["reference"] = _run_to_end(["-q", "scan", str(folder), "-o", str(ref_out),
                                           *scan_args])
    ref_wall_s = report.get("reference", {}).get("wall_s", 12.0)
    rng = np.random.default_rng(seed)
    plans = {"done_when": [f"{s:g}" for s in kill_after], "after_first_commit": ["commit"]}
    for n in range(random_kills):
        plans[f"random_{n}"] = [f"{rng.uniform(0.5, ref_wall_s):.2f}"]
    report["experiments"] = {}
    for name, kills in plans.items():
        out = work / f"{name}.parquet"
        runs = [_run_and_kill(["-q", "scan", str(folder), "-o", str(out), *scan_args,
                               *(["--resume"] if i else [])], out, when)
                for i, when in enumerate(kills)]
        resumed = _run_to_end(["-q", "scan", str(folder), "-o", str(out), *scan_args,
                               "--resume"])
        check = _check(out, files, ref_out if reference else None)
        report["experiments"][name] = {"killed_runs": runs, "resumed_run": resumed,
                                       "check": check}
        print(f"{name}: {runs} -> {resumed['summary']} -> each file once: "
              f"{check['each_file_once']}", file=sys.stderr)
    exps = report["experiments"].values()
    report["all_each_file_once"] = all(e["check"]["each_file_once"] for e in exps)
    report["mid_scan_kills"] = sum(r["still_running_at_kill"] for e in exps
                                   for r in e["killed_runs"])
    return report


# --- memory of a one-hour file ----------------------------------------------------------------


def write_long_wav(path: Path, minutes: float, rate: int = 44100, channels: int = 2) -> Path:
    """A seeded tone-and-noise recording, written a minute at a time (bounded memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        for minute in range(int(np.ceil(minutes))):
            n = int(min(60.0, minutes * 60 - minute * 60) * rate)
            t = (np.arange(n) + minute * 60 * rate) / rate
            tone = 0.2 * np.sin(2 * np.pi * (220 + 20 * (minute % 12)) * t)
            x = tone[:, None] + 0.05 * rng.standard_normal((n, channels))
            f.write(np.clip(x, -1, 1).astype(np.float32))
    return path


def peak_memory(work: Path, minutes: float, scan_args: list[str]) -> dict:
    import pyarrow.parquet as pq
    import soundfile as sf

    wav = write_long_wav(work / "one_hour.wav", minutes)
    out = work / "one_hour.parquet"
    timing = work / "time.txt"
    cmd = _scanner_cmd("-q", "scan", str(wav), "-o", str(out), *scan_args)
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if gnu_time:
        cmd = [gnu_time, "-v", "-o", str(timing), *cmd]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    _, stderr = proc.communicate()
    sampler.stop()
    wall_s = time.monotonic() - start
    row = pq.read_table(out).to_pylist()[0] if out.exists() else {}
    info = sf.info(str(wav))
    report = {
        "file": {"minutes": minutes, "sample_rate": info.samplerate, "channels": info.channels,
                 "bytes": wav.stat().st_size},
        "scan_args": scan_args, "exit_code": proc.returncode, "wall_s": round(wall_s, 1),
        "x_realtime": round(info.duration / wall_s, 1),
        "row": {k: row.get(k) for k in ("status", "error", "duration_s", "sample_rate",
                                        "channels", "decoder", "label", "confidence")},
        "peak_sum_rss_gib": round(sampler.peak_rss_kib / 1024**2, 3),
        "peak_sum_pss_gib": round(sampler.peak_pss_kib / 1024**2, 3),
        "peak_main_rss_gib": round(sampler.peak_main_rss_kib / 1024**2, 3),
        "peak_processes": sampler.peak_processes,
        "limit_gib": 1.5,
    }
    if gnu_time and timing.exists():
        for line in timing.read_text().splitlines():
            if "Maximum resident set size" in line:
                report["time_v_max_rss_gib"] = round(int(line.split()[-1]) / 1024**2, 3)
    report["within_limit"] = sampler.peak_rss_kib / 1024**2 <= 1.5
    if proc.returncode != 0:
        report["stderr_tail"] = stderr[-2000:]
    return report


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--only", choices=["kill", "memory"], help="run one measurement")
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "cry-scream",
                        help="labelled clips with manifest.csv (default ../shared/datasets/cry-scream)")
    parser.add_argument("--folder", type=Path,
                        help="an existing folder to scan instead of building one")
    parser.add_argument("--per-label", type=int, default=100,
                        help="clips per label when building the folder (default 100: 265 files)")
    parser.add_argument("--kill-after", type=float, action="append",
                        help="seconds before SIGKILL; repeat to kill the resumed runs too "
                             "(default: 12)")
    parser.add_argument("--scan-args", default="",
                        help="extra 'scanner scan' options for the kill test")
    parser.add_argument("--random-kills", type=int, default=6,
                        help="extra runs killed at random moments within the reference scan's "
                             "wall time, each then resumed (default 6)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the uninterrupted reference scan")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="length of the long wav (default 60)")
    parser.add_argument("--memory-args", default="", help="extra 'scanner scan' options for "
                                                          "the memory test")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args()

    if "SCANNER_MODEL_DIR" not in os.environ and (SHARED / "models").exists():
        os.environ["SCANNER_MODEL_DIR"] = str(SHARED / "models")
    os.environ.setdefault("SCANNER_OFFLINE", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_robustness_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
                     "python": sys.version.split()[0]}
    try:
        if args.only in (None, "kill"):
            folder = args.folder or build_folder(args.data, work / "mixed", args.per_label)
            results["kill_and_resume"] = kill_and_resume(
                folder, work, args.kill_after or [12.0], shlex.split(args.scan_args),
                args.random_kills, reference=not args.no_reference)
        if args.only in (None, "memory"):
            results["one_hour_memory"] = peak_memory(work, args.minutes,
                                                     shlex.split(args.memory_args))
            print(json.dumps({k: v for k, v in results["one_hour_memory"].items()
                              if "gib" in k or k == "row"}), file=sys.stderr)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
