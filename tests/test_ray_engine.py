"""The Ray engine: the same rows as the local engine, on a local 2-CPU Ray instance.

Tests that need Ray skip without it (``pip install -e '.[ray]'``); the packing, planning and
timeout tests run without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from scanner.audio.decode import decode_task
from scanner.audio.discover import discover
from scanner.config import ScanConfig
from scanner.engines import ENGINES
from scanner.engines.driver import scan
from scanner.engines.ray_engine import (
    ActorPlan,
    _with_timeout,
    actor_plan,
    decode_files,
    scan_ray,
    unpack_files,
)
from scanner.errors import ConfigError
from scanner.records import DecodedClip, DecodeFailure, DecodeTask
from scanner.testing import noise, sine

CLASSES = ("cry", "screaming", "not_screaming")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance with 2 CPUs for the module (starting one takes seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             configure_logging=False)
    yield ray
    ray.shutdown()


def _config(head: Path, **kw) -> ScanConfig:
    return ScanConfig(backbones=("fake",), heads={"fake": str(head)}, **kw)


def _rows(out: Path) -> list[dict]:
    # seconds_taken is a timing, different on every run
    return pq.read_table(out).drop_columns(["seconds_taken"]).to_pylist()


def _long_file(folder: Path) -> Path:
    """25 s of 96 kHz stereo float (19 MB): probed and decoded in parts when part_s < 25."""
    sr = 96000
    x = sine(440, 25.0, sr, amplitude=0.3) + noise(25.0, sr, amplitude=0.05, seed=3)
    path = folder / "long.wav"
    sf.write(path, np.stack([x, x], axis=1), sr, subtype="FLOAT")
    return path


# --- without Ray ----------------------------------------------------------------------------


def test_decoded_files_survive_the_trip_through_arrow(audio_folder, tmp_path):
    _long_file(audio_folder)
    (audio_folder / "empty.wav").write_bytes(b"")
    files = discover([audio_folder])
    table = decode_files(_file_rows(files), sample_rate_hz=16000,
                         part_s=10.0, max_duration_s=None, timeout_s=None)
    decoded = unpack_files(table.slice(1))  # a slice, as Ray hands batches
    expected = [[decode_task(t, sample_rate_hz=16000) for t in _tasks(f, 10.0)] for f in files[1:]]
    assert len(decoded) == len(expected) == len(files) - 1
    n_parts = sorted(len(parts) for parts in decoded)
    assert n_parts[-1] == 3 and n_parts[0] == 1  # the long file came in 3 parts, together
    for got, want in zip(decoded, expected, strict=True):
        assert [type(p) for p in got] == [type(p) for p in want]
        for g, w in zip(got, want, strict=True):
            assert g.task == w.task
            if isinstance(w, DecodedClip):
                np.testing.assert_array_equal(g.waveform, w.waveform)
                assert (g.duration_s, g.offset_s, g.orig_sample_rate_hz, g.channels, g.decoder) \
                    == (w.duration_s, w.offset_s, w.orig_sample_rate_hz, w.channels, w.decoder)
            else:
                assert (g.kind, g.message, g.details) == (w.kind, w.message, w.details)
                assert isinstance(g.details, tuple)


def _file_rows(files):
    """The decode stage's input: one row per discovered file."""
    import pyarrow as pa

    from scanner.engines.ray_engine import FILE_SCHEMA

    return pa.Table.from_pylist([{"path": str(f.path), "size_bytes": f.size_bytes,
                                  "mtime_ns": f.mtime_ns} for f in files], schema=FILE_SCHEMA)


def _tasks(file, part_s):
    from scanner.audio.decode import plan_tasks

    return list(plan_tasks([file], part_s=part_s))


def test_the_model_actor_gives_the_local_engine_embeddings_and_isolates_a_model_failure(
        audio_folder, fake_head, tmp_path):
    import scanner.engines.ray_engine as engine
    from scanner.backbones import load_backbone
    from scanner.engines.local import embed_files

    # every file in one model batch; the 2.0 s clip makes the model raise
    config = _config(fake_head, batch_s=1000.0,
                     backbone_options={"fake": {"fail_on_length_s": 2.0}})
    files = discover([audio_folder])
    local = {str(r.file.path): r for r in embed_files(
        files, [load_backbone("fake", fail_on_length_s=2.0)], workers=0, batch_s=1000.0)}
    batch = decode_files(_file_rows(files), sample_rate_hz=16000, part_s=config.part_s,
                         max_duration_s=None, timeout_s=None)
    actor = engine.ModelActor(config.to_dict())  # plain Python: Ray only schedules it
    results = {str(r.file.path): r for r in engine.unpack_results(actor(batch))}
    assert results.keys() == local.keys()
    failed = [p for p, r in results.items() if not r.ok]
    assert len(failed) == 1 and not local[failed[0]].ok
    assert results[failed[0]].failure.kind == local[failed[0]].failure.kind == "model"
    assert "illegal memory access" in results[failed[0]].failure.message
    for path, result in results.items():
        if path in failed:
            continue
        assert replace(result.info, seconds_taken=0) == replace(local[path].info, seconds_taken=0)
        np.testing.assert_array_equal(result.embeddings["fake"].embeddings,
                                      local[path].embeddings["fake"].embeddings)
        np.testing.assert_array_equal(result.embeddings["fake"].starts_s,
                                      local[path].embeddings["fake"].starts_s)


def test_a_slow_decode_becomes_a_timeout_and_a_fast_one_is_untouched(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(440, 1.0, 16000), 16000)
    task = DecodeTask(discover([path])[0])

    def slow(task, sample_rate_hz):
        time.sleep(30)

    start = time.monotonic()
    failure = _with_timeout(slow, task, 16000, 0.5)
    assert isinstance(failure, DecodeFailure) and failure.kind == "timeout"
    assert time.monotonic() - start < 5
    clip = _with_timeout(lambda t, sr: decode_task(t, sample_rate_hz=sr), task, 16000, 0.5)
    assert isinstance(clip, DecodedClip)
    time.sleep(0.7)  # the alarm was disarmed: nothing fires after the decode returned


def test_a_decode_stuck_past_its_timeout_ends_its_worker():
    code = textwrap.dedent("""
        import time
        from pathlib import Path
        import scanner.engines.ray_engine as engine
        from scanner.records import AudioFile, DecodeTask

        engine.HUNG_GRACE_S = 0.5

        def stuck(task, sample_rate_hz):  # as C code that never returns: the alarm is lost
            while True:
                try:
                    time.sleep(10)
                except BaseException:
                    pass

        engine._with_timeout(stuck, DecodeTask(AudioFile(Path("x.wav"), 1, 1)), 16000, 0.5)
    """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 70, proc.stderr.decode()[-2000:]
    assert time.monotonic() - start < 60


def test_actor_plan_puts_one_actor_on_each_gpu_or_leaves_most_cpus_to_decoding():
    gpu = actor_plan({"CPU": 64, "GPU": 8}, ScanConfig())
    assert gpu == ActorPlan(actors=8, num_cpus=1, num_gpus=1, device="auto")
    assert actor_plan({"CPU": 64, "GPU": 8}, ScanConfig(device="cuda:3")).device == "cuda"
    cpu = actor_plan({"CPU": 64, "GPU": 8}, ScanConfig(device="cpu", threads=2))
    assert cpu.num_gpus == 0 and cpu.threads == 2 and 16 <= cpu.actors < 32  # some CPUs decode
    tflite = actor_plan({"CPU": 16, "GPU": 1}, ScanConfig(), gpu_models=False)
    assert tflite.num_gpus == 0 and tflite.actors == 12  # 4 of 16 CPUs decode
    assert actor_plan({"CPU": 2}, ScanConfig()).actors == 1
    assert actor_plan({"CPU": 2}, ScanConfig(threads=8)).num_cpus == 2  # never unschedulable
    with pytest.raises(ConfigError, match="no GPU"):
        actor_plan({"CPU": 8}, ScanConfig(device="cuda"))


def test_without_ray_the_engine_says_how_to_install_it(audio_folder, fake_head, tmp_path,
                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ConfigError, match=r"pip install .*\[ray\]"):
        scan_ray([audio_folder], tmp_path / "r.parquet", _config(fake_head))
    with pytest.raises(ConfigError, match="engine ray"):
        ENGINES.get("local")(address="auto")
    assert ENGINES.names() == ["local", "ray"]


def test_an_address_nobody_answers_at_fails_fast(audio_folder, fake_head, tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        scan_ray([audio_folder], tmp_path / "r.parquet", _config(fake_head),
                 address=f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30
    assert not list(tmp_path.glob("*r.parquet*"))  # nothing was written


# --- on a local Ray instance -----------------------------------------------------------------


def test_same_tables_as_the_local_engine_bad_long_and_model_failing_files_included(
        ray_local, audio_folder, fake_head, tmp_path):
    (audio_folder / "empty.wav").write_bytes(b"")
    (audio_folder / "text.mp3").write_text("this is not audio\n" * 50)
    _long_file(audio_folder)
    # several model batches, 3 parts; the model fails on the 2.0 s clip; every table written
    config = _config(fake_head, part_s=10.0, batch_s=5.0, segments=True, cache=True,
                     cache_dir=str(tmp_path / "cache-local"),
                     backbone_options={"fake": {"fail_on_length_s": 2.0}})
    seen = []
    local = scan([audio_folder], tmp_path / "local.parquet", config)
    ray_ = scan([audio_folder], tmp_path / "ray.parquet",
                ScanConfig.from_dict({**config.to_dict(), "cache_dir": str(tmp_path / "cache-ray")}),
                engine=ENGINES.get("ray")(), on_files=seen.append,
                on_row=lambda r: seen.append(r["path"]))
    assert seen[0] == 9 and sorted(seen[1:]) == sorted(r["path"] for r in _rows(tmp_path / "ray.parquet"))
    assert (ray_.files, ray_.ok, ray_.errors) == (local.files, local.ok, local.errors) == (9, 6, 3)
    assert ray_.audio_s == pytest.approx(local.audio_s)
    rows, expected = _rows(tmp_path / "ray.parquet"), _rows(tmp_path / "local.parquet")
    assert rows == expected  # probabilities, labels, events, errors, durations: all equal
    for kind in ("events", "segments"):
        assert pq.read_table(tmp_path / f"ray.{kind}.parquet").to_pylist() \
            == pq.read_table(tmp_path / f"local.{kind}.parquet").to_pylist()
    model_failed = [r for r in rows if r["error_kind"] == "model"]
    assert len(model_failed) == 1 and "illegal memory access" in model_failed[0]["error"]
    cached = [sorted(p.name for p in (tmp_path / d).rglob("*") if p.is_file())
              for d in ("cache-local", "cache-ray")]
    assert cached[0] == cached[1] and len(cached[0]) >= 6
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["empty.wav"]["error_kind"] == "empty"
    assert by_name["text.mp3"]["status"] == "error"
    assert by_name["long.wav"]["status"] == "ok" and by_name["long.wav"]["duration_s"] == 25.0
    a, b = pq.read_schema(tmp_path / "ray.parquet"), pq.read_schema(tmp_path / "local.parquet")
    assert a.remove_metadata() == b.remove_metadata() and a.metadata.keys() == b.metadata.keys()


def test_discovery_streams_into_ray_a_chunk_at_a_time(ray_local, audio_folder, fake_head,
                                                      tmp_path, monkeypatch):
    import scanner.engines.ray_engine as ray_engine
    from scanner.classify import load_classifier

    monkeypatch.setattr(ray_engine, "STREAM_CHUNK_FILES", 3)
    _long_file(audio_folder)
    config = _config(fake_head, part_s=10.0, segments=True)
    files = discover([audio_folder])
    pulled: list[int] = []

    def stream():
        for i, f in enumerate(files, 1):
            pulled.append(i)
            yield f

    seen = []  # files taken from the stream when each result came back
    for result in ray_engine.ray_results(stream(), config, load_classifier(config)):
        seen.append((len(pulled), result.file.path))
    assert len(seen) == len(files) == 7
    assert max(n for n, _ in seen[:3]) == 3  # the first chunk's results before the next chunk
    assert sorted(p for _, p in seen) == [f.path for f in files]
    # and the tables, a chunk at a time, are the local engine's
    local = scan([audio_folder], tmp_path / "local.parquet", config)
    ray_ = scan([audio_folder], tmp_path / "ray.parquet", config, engine=ENGINES.get("ray")())
    assert (ray_.files, ray_.ok) == (local.files, local.ok) == (7, 7)
    assert _rows(tmp_path / "ray.parquet") == _rows(tmp_path / "local.parquet")
    for kind in ("events", "segments"):
        assert pq.read_table(tmp_path / f"ray.{kind}.parquet").to_pylist() \
            == pq.read_table(tmp_path / f"local.{kind}.parquet").to_pylist()


def test_resume_scans_only_new_files(ray_local, audio_folder, fake_head, tmp_path):
    out = tmp_path / "r.parquet"
    first = scan_ray([audio_folder], out, _config(fake_head))
    assert first.files == 6 and not (tmp_path / ".r.parquet.parts").exists()
    sf.write(audio_folder / "new.flac", sine(660, 2.0, 16000), 16000)
    again = scan_ray([audio_folder], out, _config(fake_head, resume=True))
    assert (again.files, again.skipped, again.ok) == (1, 6, 1)
    rows = _rows(out)
    assert len(rows) == 7 and {r["status"] for r in rows} == {"ok"}
    assert rows == sorted(rows, key=lambda r: r["path"])


def test_a_worker_that_dies_or_hangs_costs_only_its_file(ray_local, audio_folder, fake_head,
                                                        tmp_path):
    sf.write(audio_folder / "boom.wav", sine(440, 1.0, 16000), 16000)
    sf.write(audio_folder / "slow.wav", sine(440, 1.0, 16000), 16000)

    def faulty(task, sample_rate_hz):  # a local function: Ray ships it by value
        if task.file.path.name == "boom.wav":
            os._exit(1)  # as a decoder segfault would
        if task.file.path.name == "slow.wav":
            time.sleep(60)
        return decode_task(task, sample_rate_hz=sample_rate_hz)

    out = tmp_path / "r.parquet"
    summary = scan_ray([audio_folder], out, _config(fake_head, decode_timeout_s=1.0),
                       decode=faulty)
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert len(rows) == 8 and (summary.ok, summary.errors) == (6, 2)
    assert rows["boom.wav"]["error_kind"] == "crashed"
    assert rows["slow.wav"]["error_kind"] == "timeout"
    assert all(r["status"] == "ok" for n, r in rows.items() if n not in {"boom.wav", "slow.wav"})


@pytest.mark.slow
def test_real_yamnet_gives_the_local_engine_labels_and_probabilities(ray_local, model_dir,
                                                                     dataset_dir, tmp_path,
                                                                     monkeypatch):
    import csv

    import soxr

    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))  # reaches the actors by runtime_env
    monkeypatch.setenv("SCANNER_OFFLINE", "1")
    with open(dataset_dir / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    formats = [("wav", "PCM_16", 44100, 2), ("ogg", "VORBIS", 22050, 1),
               ("mp3", "MPEG_LAYER_III", 16000, 1), ("flac", "PCM_16", 8000, 2)]
    folder = tmp_path / "real"
    for label in CLASSES:
        (folder / label).mkdir(parents=True)
        for k, r in enumerate([r for r in manifest if r["label"] == label][:3]):
            ext, subtype, rate, channels = formats[(k + len(label)) % len(formats)]
            x, sr = sf.read(dataset_dir / r["file"], dtype="float32")
            y = soxr.resample(x, sr, rate)
            y = np.stack([y, 0.8 * y], axis=1) if channels == 2 else y
            sf.write(folder / label / f"{Path(r['file']).stem}.{ext}", y, rate, subtype=subtype)
    config = ScanConfig()
    scan([folder], tmp_path / "local.parquet", config)
    scan_ray([folder], tmp_path / "ray.parquet", config)
    local, ray_ = _rows(tmp_path / "local.parquet"), _rows(tmp_path / "ray.parquet")
    assert [r["path"] for r in ray_] == [r["path"] for r in local] and len(local) == 9
    assert all(r["status"] == "ok" for r in ray_)
    assert [r["label"] for r in ray_] == [r["label"] for r in local]
    for a, b in zip(ray_, local, strict=True):
        for c in CLASSES:
            assert abs(a[f"mean_prob_{c}"] - b[f"mean_prob_{c}"]) <= 1e-5
