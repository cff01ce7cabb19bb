"""End-to-end throughput of ``scanner scan`` against the obvious way, with each stage alone.

Measures, on one folder, back to back in the same run:

* ``scanner scan`` as a user runs it (a subprocess: imports, model load and start-up included);
* the seed's way, one file at a time: ``librosa.load(sr=16000)``, one model call per file,
  the head, one row appended, a table written at the end (also a subprocess, same model);
* the stages alone: decode+resample on one core, and the model on already decoded audio
  with the scan's thread setting, whole (before) and cut at its patch tensor (after), in
  ``embed_batch`` calls and streamed as the scan drives it; the best of these is the
  model stage's best, and ``shared_cpu_bound`` is what a scan could reach at most when
  decoding and the model share the same cores;

and, with ``--scaling``, how wall time grows with the number of short files (100, 1,000,
5,000 generated clips) and with file length (one 10 s clip vs one 1 h file).

With ``--bound``, only what the shared-CPU bound needs, in one run: a one-file scan
(start-up), the scan of the folder, and the stages (decode on one core, the model streamed
as the scan drives it) on ``--stage-files`` of its files; it reports the scan's throughput
after start-up (``audio / (wall - one-file wall)``) as a fraction of the bound.

    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_scan.py --folder /tmp/mixed265
    SCANNER_MODEL_DIR=../shared/models python benchmarks/bench_scan.py --folder DIR --bound
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED_SCRIPT = r'''
import sys, time
t0 = time.monotonic()
import librosa, numpy as np, pandas as pd
from scanner.backbones import load_backbone
from scanner.audio.discover import discover
from scanner.heads import load_head
folder, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
backbone = load_backbone("yamnet", threads=threads)
head = load_head(None, backbone="yamnet")
rows = []
for f in discover([folder]):
    y, _ = librosa.load(f.path, sr=16000)          # decode + resample, one file
    emb = backbone.embed(y.astype(np.float32))      # one model call per file
    p = head.predict_file(emb)[0]
    rows.append({"path": str(f.path), "label": head.classes[int(p.argmax())],
                 **{f"prob_{c}": float(v) for c, v in zip(head.classes, p)}})
pd.DataFrame(rows).to_parquet(out)
print(time.monotonic() - t0)
'''


def _run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def audio_seconds(folder: Path) -> tuple[int, float]:
    import soundfile as sf

    from scanner.audio.discover import discover

    files = discover([folder])
    return len(files), sum(sf.info(str(f.path)).duration for f in files)


def end_to_end(folder: Path, threads: int, repeats: int, workers: int | None = None) -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        scan_cmd = [sys.executable, "-m", "scanner", "-q", "scan", str(folder),
                    "-o", f"{tmp}/scan.parquet", "--overwrite", "--threads", str(threads)]
        if workers is not None:
            scan_cmd += ["--workers", str(workers)]
        seed_cmd = [sys.executable, "-c", SEED_SCRIPT, str(folder), f"{tmp}/seed.parquet",
                    str(threads)]
        scan_t, seed_t = [], []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            scan_t.append(_run(scan_cmd, env))
            seed_t.append(_run(seed_cmd, env))
        import pandas as pd

        a = pd.read_parquet(f"{tmp}/scan.parquet").set_index("path")
        b = pd.read_parquet(f"{tmp}/seed.parquet").set_index("path")
        agree = float((a.loc[b.index, "label"] == b["label"]).mean())
    return {"scan_s": min(scan_t), "seed_s": min(seed_t), "speedup": min(seed_t) / min(scan_t),
            "scan_runs": scan_t, "seed_runs": seed_t, "label_agreement": agree}


def _batched(embed, waves: list, batch_s: float) -> float:
    """Seconds to run ``embed`` over ``waves`` in batches of about ``batch_s`` of audio."""
    start = time.monotonic()
    batch, n = [], 0
    for w in waves:
        batch.append(w)
        n += len(w)
        if n >= batch_s * 16000:
            embed(batch)
            batch, n = [], 0
    if batch:
        embed(batch)
    return time.monotonic() - start


def _streamed(backbone, clips: list, batch_s: float) -> float:
    """Seconds for the scan's model stage (background batches, see ``ModelStage``) on clips
    already decoded: the model as the scan drives it, with nothing else to do."""
    from scanner.engines.local import ModelStage

    start = time.monotonic()
    with ModelStage([backbone]) as stage:
        batch, n = [], 0
        for c in clips:
            batch.append(c)
            n += len(c.waveform)
            if n >= batch_s * 16000:
                stage.submit(batch)
                batch, n = [], 0
                while stage.queued > stage.threads:
                    stage.next()
        if batch:
            stage.submit(batch)
        while stage.queued:
            stage.next()
    return time.monotonic() - start


def stages(folder: Path, threads: int, *, sample: int | None = None,
           quick: bool = False) -> dict:
    """Each stage alone (see the module docstring). ``sample``: on that many files, spread
    over the folder; ``quick``: only the cut model, streamed and in 60 s batches."""
    from scanner.audio.decode import decode_task, plan_tasks
    from scanner.audio.discover import discover
    from scanner.backbones import load_backbone

    files = discover([folder])
    if sample:
        step = max(1, len(files) // sample)  # spread over the folder: every format and length
        files = files[::step][:sample]
    start = time.monotonic()
    clips = [decode_task(t) for t in plan_tasks(files)]
    decode_s = time.monotonic() - start
    clips = [c for c in clips if hasattr(c, "waveform")]
    waves = [c.waveform for c in clips]
    audio = sum(len(w) for w in waves) / 16000
    out: dict = {"audio_s": audio, "decode_x_realtime_one_core": audio / decode_s}
    # before: the whole TFLite model on packed waveforms; after: cut at the patch tensor
    for name, split in (("whole_model", False), ("cut_model", None)):
        if quick and name == "whole_model":
            continue
        backbone = load_backbone("yamnet", threads=threads, split=split)
        backbone.embed_batch(waves[:8])  # warm-up
        measured = {f"embed_batch_{b}s": audio / _batched(backbone.embed_batch, waves, b)
                    for b in ((60,) if quick else (30, 60, 120))}
        measured["streamed_60s"] = audio / _streamed(backbone, clips, 60)
        if not quick:
            start = time.monotonic()
            for w in waves:
                backbone.embed(w)
            measured["per_file"] = audio / (time.monotonic() - start)
        out[name] = measured
    out["model_x_realtime_best"] = max(out["cut_model"].values())
    out.update(shared_cpu_bound(out["model_x_realtime_best"], out["decode_x_realtime_one_core"],
                                threads, os.cpu_count() or 1))
    return out


def shared_cpu_bound(model_x: float, decode_x: float, threads: int, cores: int) -> dict:
    """The fastest a scan can go when the model (``model_x`` realtime on ``threads`` busy
    cores) and decoding (``decode_x`` realtime per core) share ``cores``: per second of
    audio it needs ``1 / model_x`` of wall time for the model, and ``threads / model_x +
    1 / decode_x`` core-seconds in all, which ``cores`` cores take ``/ cores`` to give."""
    wall = max(1 / model_x, (threads / model_x + 1 / decode_x) / cores)
    return {"shared_cpu_bound_x_realtime": 1 / wall,
            "shared_cpu_bound_fraction": 1 / wall / model_x}


def bound(folder: Path, threads: int, audio_s: float, stage_files: int | None) -> dict:
    """The scan after start-up against the shared-CPU bound, measured in one run."""
    from scanner.audio.discover import discover

    env = dict(os.environ)
    one = next(iter(discover([folder]))).path
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, "-m", "scanner", "-q", "scan", "--threads", str(threads)]
        startup = _run([*base, str(one), "-o", f"{tmp}/one.parquet"], env)
        wall = _run([*base, str(folder), "-o", f"{tmp}/scan.parquet"], env)
        startup = min(startup, _run([*base, str(one), "-o", f"{tmp}/one2.parquet"], env))
    measured = stages(folder, threads, sample=stage_files, quick=True)
    after = audio_s / (wall - startup)
    return {"one_file_s": startup, "scan_s": wall, "after_startup_x_realtime": after,
            "stages": measured,
            "fraction_of_bound": after / measured["shared_cpu_bound_x_realtime"]}


def scaling(threads: int) -> list[dict]:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    out = []
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(f"{n} clips of 3 s", n, 3.0) for n in (100, 1000, 5000)]
        cases += [("one 10 s file", 1, 10.0), ("one 1 h file", 1, 3600.0)]
        for name, n, seconds in cases:
            folder = Path(tmp) / name.replace(" ", "_")
            folder.mkdir()
            base = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
            for i in range(n):
                sf.write(folder / f"{i:05d}.flac", np.roll(base, i * 97), 16000)
            wall = _run([sys.executable, "-m", "scanner", "-q", "scan", str(folder), "-o",
                         f"{tmp}/r.parquet", "--overwrite", "--threads", str(threads)], env)
            out.append({"case": name, "files": n, "audio_s": n * seconds, "wall_s": wall,
                        "x_realtime": n * seconds / wall})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="folder of audio to scan")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="model threads (scan --threads), for the scan and the stages")
    parser.add_argument("--workers", type=int, default=None,
                        help="decode workers of the scan (default: scan's own, one per core)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scaling", action="store_true", help="also run the scaling table")
    parser.add_argument("--bound", action="store_true",
                        help="only the scan after start-up against the shared-CPU bound")
    parser.add_argument("--stage-files", type=int, default=None,
                        help="with --bound: measure the stages on this many of the files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scan.json"))
    args = parser.parse_args()
    n, audio = audio_seconds(args.folder)
    result = {"folder": str(args.folder), "files": n, "audio_s": audio, "threads": args.threads,
              "workers": args.workers, "cpu_count": os.cpu_count()}
    if args.bound:
        result["bound"] = bound(args.folder, args.threads, audio, args.stage_files)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    result["end_to_end"] = end_to_end(args.folder, args.threads, args.repeats, args.workers)
    result["stages"] = stages(args.folder, args.threads)
    result["end_to_end"]["scan_x_realtime"] = audio / result["end_to_end"]["scan_s"]
    result["end_to_end"]["fraction_of_model_best"] = (
        result["end_to_end"]["scan_x_realtime"] / result["stages"]["model_x_realtime_best"])
    if args.scaling:
        result["scaling"] = scaling(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
