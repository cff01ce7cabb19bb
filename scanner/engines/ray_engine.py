"""The Ray engine: the local engine's stages, scheduled on a Ray cluster with Ray Data.

::

    driver: discover, --resume filter          -> a Dataset of file rows, a few files per block
            (the stream taken STREAM_CHUNK_FILES at a time: one Dataset pass per chunk)
    CPU tasks: decode_files (plan_parts, decode_task)   -> one row per file: its audio, its records
    actor pool: ModelActor (Batcher, embed_items, Stitcher; one model load per actor, a GPU
                each when the cluster has GPUs)         -> one FileResult per file (embeddings)
    driver: FileResults stream back -> the driver's per-file chain (rows, events, segments,
            cache, vectors), exactly as for the local engine

Only the scheduling lives here: every stage is the function the local engine calls, and
everything after embedding runs in the driver's chain, so both engines give the same tables.
A file's embeddings travel back as an ``.npz`` blob (no pickle; about 30 MB per hour of audio).

A long file is decoded in parts (``plan_tasks``) by one task and travels as one row: its
``waveform`` is the parts' samples end to end and ``parts`` a JSON list of each part's record
without its samples. The actor that gets the file so has all of its parts and the Stitcher
completes it in the same call; no part can reach another actor. The price is one large row
per long file (16 kHz float32: 230 MB per hour of audio; ``--max-duration`` bounds it).

Discovery streams into the engine as into the local one: the driver takes
:data:`STREAM_CHUNK_FILES` files from the walk, runs them through one Dataset pass, and takes
the next chunk, so a tree of a million files is never listed whole here, and the first pass
starts while the walk goes on. Each pass starts its own actor pool (one model load per actor
and pass: about a second for YAMNet, against minutes of work for a chunk).

Failures: a bad file is a failure made by the shared decode function; a model error on one
file is a ``model`` failure for that file (:func:`~scanner.engines.stages.embed_items`). A worker
that dies (a decoder segfault, a decode stuck in C code past the timeout, a lost node) loses
its block; the block's files come back missing and are run again one file per block, and a
file lost again becomes a ``crashed`` row, as in the local engine.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scanner.audio.decode import decode_task
from scanner.config import ScanConfig
from scanner.device import parse_device
from scanner.engines.driver import ScanSummary, scan
from scanner.engines.ray_packing import (
    FILE_SCHEMA,
    pack_files,
    pack_results,
    unpack_files,
    unpack_results,
)
from scanner.engines.stages import (
    Batcher,
    Stitcher,
    embed_items,
    needs_scores,
    overlap_for,
    plan_parts,
    sample_rate_of,
)
from scanner.errors import ConfigError
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask, FileResult

if TYPE_CHECKING:
    from scanner.classify import Classifier

log = logging.getLogger(__name__)

Item = DecodedClip | DecodeFailure
Decode = Callable[[DecodeTask, int], Item]

INSTALL_HINT = ("the Ray engine needs Ray: pip install 'cry-scream-scanner[ray]' "
                "(in a checkout: pip install -e '.[ray]')")
MAX_FILES_PER_BLOCK = 32  # a decode task's files; a worker that dies costs this many at first
ACTOR_BATCH_FILES = 32  # files per actor call; the actor then batches by batch_s like embed_files
DECODE_RETRIES = 1  # Ray Data's default (-1) would retry a file that kills its worker forever
MODEL_RETRIES = 1
DECODE_CPU_SHARE = 0.2  # of a CPU-only cluster's cores left to decoding (see actor_plan)
HUNG_GRACE_S = 60.0  # past timeout + this, a decode stuck in C code takes its worker down
FORWARDED_ENV = ("SCANNER_MODEL_DIR", "SCANNER_OFFLINE", "HF_HUB_OFFLINE", "HF_HOME",
                 "TFHUB_CACHE_DIR")
STREAM_CHUNK_FILES = 10_000
"""Files taken from discovery for one Dataset pass (bounds the files held by the driver)."""
CRASHED_MESSAGE = ("a Ray worker died on this file every time it ran (a decoder or model "
                   "crash, or a decode stuck past the timeout)")

def scan_ray(paths: Sequence[str | Path], out: str | Path, config: ScanConfig | None = None, *,
             address: str | None = None, classifier: Classifier | None = None,
             on_files: Callable[[int], None] | None = None,
             on_row: Callable[[dict[str, Any]], None] | None = None,
             decode: Decode | None = None) -> ScanSummary:
    """Scans ``paths`` on Ray and writes the same tables as the local engine.

    Args:
        paths: Folders (walked recursively) and files, on storage every Ray node mounts.
        out: Output table (``.parquet`` or ``.csv``), written by this process.
        config: Scan settings (defaults: YAMNet with its default head).
        address: Ray cluster address (``auto``, ``HOST:6379``, ``ray://HOST:10001``); None
            starts a local Ray instance (or uses ``RAY_ADDRESS``, or a running ``ray.init``).
        classifier: Already loaded models (else loaded from ``config``); the driver's chain
            applies them; the actors load their own backbones from ``config``.
        on_files: Called once with the number of files to process.
        on_row: Called with each row as it arrives.
        decode: The per-task decode run in the tasks (tests swap in faulty ones).

    Returns:
        A summary. Raises ScanInterrupted on Ctrl-C after keeping the committed rows, and
        ConfigError when Ray is missing or the cluster cannot be reached.
    """
    return scan(paths, out, config, classifier=classifier, on_files=on_files, on_row=on_row,
                engine=RayEngine(address=address, decode=decode))


class RayEngine:
    """Schedules the stages on a Ray cluster (see the module docstring).

    Args:
        address: See :func:`scan_ray`.
        decode: The per-task decode run in the tasks (tests swap in faulty ones).
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, decode: Decode | None = None) -> None:
        self.address = address
        self.decode = decode

    def prepare(self, config: ScanConfig, sample_rate_hz: int | None) -> None:
        require_ray()
        _check_reachable(self.address)  # before the output is touched

    def results(self, todo: Iterable[AudioFile], config: ScanConfig, classifier: Classifier
                ) -> Iterator[FileResult]:
        sample_rate_of(classifier.backbones)
        return ray_results(todo, config, classifier, address=self.address, decode=self.decode)

    def close(self) -> None:
        pass


def require_ray() -> None:
    """Raises ConfigError, saying how to install Ray, when it cannot be imported."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ConfigError(INSTALL_HINT) from e


@dataclass(frozen=True)
class ActorPlan:
    """Where the models run: how many actors, and what each one reserves."""

    actors: int
    num_cpus: int
    num_gpus: int
    device: str

    @property
    def threads(self) -> int:
        return self.num_cpus


def actor_plan(resources: Mapping[str, float], config: ScanConfig, *,
               gpu_models: bool = True) -> ActorPlan:
    """One actor per GPU when the cluster has GPUs; else CPU actors on ~80% of the cores.

    Args:
        resources: ``ray.cluster_resources()``.
        config: The scan's settings (``device``, ``threads``).
        gpu_models: Whether any of the models can use a GPU (``Backbone.can_use_gpu``; a
            TFLite model cannot: it gets CPU actors even on GPU nodes).

    Raises:
        ConfigError: A CUDA device was asked for and the cluster has no GPU.
    """
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0)) if gpu_models else 0
    wanted = parse_device(config.device)
    threads = min(config.threads or 1, cpus)
    if wanted.wants_cuda and gpu_models and not gpus:
        raise ConfigError(f"device {config.device!r} was asked for but the Ray cluster has no GPU")
    device = str(wanted)
    if gpus and wanted.kind != "cpu":
        # Ray gives each actor its own GPU through CUDA_VISIBLE_DEVICES: inside, it is "cuda".
        return ActorPlan(gpus, threads, 1, "cuda" if wanted.wants_cuda else device)
    # Measured on a mixed folder (docs/ray.md): decoding ~1,700x realtime per core, the
    # TFLite YAMNet 180-450x per thread, so on CPUs the model needs most of the cores.
    decode_cpus = max(1, math.ceil(cpus * DECODE_CPU_SHARE))
    return ActorPlan(max(1, (cpus - decode_cpus) // threads), threads, 0, device)


def ray_results(todo: Iterable[AudioFile], config: ScanConfig, classifier: Classifier, *,
                address: str | None = None, decode: Decode | None = None
                ) -> Iterator[FileResult]:
    """One FileResult per file, made on Ray, in no particular order (the writer sorts).

    ``todo`` is taken :data:`STREAM_CHUNK_FILES` files at a time (never listed whole). For
    each chunk: a pass over its files; a pass, one file per block, over the files a dead
    worker lost; then a ``crashed`` failure for each file lost twice. Ray is started (or
    reached at ``address``) only when there are files, and shut down after if this started it.

    Args:
        todo: Files to scan (the driver's discovery stream; iterated once).
        config: Scan settings; the actors load their backbones from it.
        classifier: The driver's models: their sample rate, overlap and GPU use.
        address: See :func:`scan_ray`.
        decode: The per-task decode run in the tasks (tests swap in faulty ones).
    """
    source = iter(todo)
    chunk = list(islice(source, STREAM_CHUNK_FILES))
    if not chunk:
        return
    with _ray_session(address):
        import ray

        resources = ray.cluster_resources()
        plan = actor_plan(resources, config,
                          gpu_models=any(b.can_use_gpu for b in classifier.backbones))
        log.info("Ray: up to %d model actor(s) (%d CPU, %d GPU each), decoding on the other "
                 "CPUs", plan.actors, plan.num_cpus, plan.num_gpus)
        cpus = max(1, int(resources.get("CPU", 1)))
        while chunk:
            yield from _results(chunk, config, classifier, decode or _decode, plan, cpus)
            chunk = list(islice(source, STREAM_CHUNK_FILES))


def _results(todo: list[AudioFile], config: ScanConfig, classifier: Classifier,
             decode: Decode, plan: ActorPlan, cpus: int) -> Iterator[FileResult]:
    per_block = max(1, min(MAX_FILES_PER_BLOCK, math.ceil(len(todo) / (4 * cpus))))
    keep_scores = needs_scores(m.head for m in classifier.models)
    seen: set[str] = set()
    lost = todo
    for files_per_block, batch_files in ((per_block, ACTOR_BATCH_FILES), (1, 1)):
        if not lost:
            break
        if lost is not todo:
            log.warning("%d files were lost with a Ray worker; running them one at a time",
                        len(lost))
        for result in _run_dataset(lost, config, sample_rate_of(classifier.backbones),
                                   overlap_for(classifier.backbones), plan, files_per_block,
                                   batch_files, decode, keep_scores):
            key = str(result.file.path)
            if key not in seen:  # a retried task may deliver a file twice
                seen.add(key)
                yield result
        lost = [f for f in lost if str(f.path) not in seen]
    for file in lost:
        yield FileResult(file, failure=DecodeFailure(task=DecodeTask(file), kind="crashed",
                                                     message=CRASHED_MESSAGE))


def _run_dataset(files: list[AudioFile], config: ScanConfig, sample_rate_hz: int,
                 overlap_s: float, plan: ActorPlan, files_per_block: int, batch_files: int,
                 decode: Decode, keep_scores: bool) -> Iterator[FileResult]:
    import ray

    blocks = [pa.Table.from_pylist([{"path": str(f.path), "size_bytes": f.size_bytes,
                                     "mtime_ns": f.mtime_ns} for f in files[i:i + files_per_block]],
                                   schema=FILE_SCHEMA)
              for i in range(0, len(files), files_per_block)]
    actor_config = ScanConfig.from_dict({**config.to_dict(), "threads": plan.threads,
                                         "device": plan.device})
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    model_args: dict[str, Any] = {"num_cpus": plan.num_cpus, "max_task_retries": MODEL_RETRIES}
    if plan.num_gpus:
        model_args["num_gpus"] = plan.num_gpus
    if env:  # the actors may run on nodes that did not inherit this process's environment
        model_args["runtime_env"] = {"env_vars": env}
    with _data_context(), warnings.catch_warnings():
        # max_retries/max_task_retries have no named parameter (Ray 2.60) and are needed.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        # a pass whose every block was lost leaves the actors no input: expected, not a problem
        warnings.filterwarnings("ignore", message=".*minimum number of concurrent actors")
        ds = ray.data.from_arrow(blocks)
        ds = ds.map_batches(decode_files, batch_size=None, batch_format="pyarrow", num_cpus=1,
                            fn_kwargs={"sample_rate_hz": sample_rate_hz, "part_s": config.part_s,
                                       "max_duration_s": config.max_duration_s,
                                       "timeout_s": config.decode_timeout_s,
                                       "overlap_s": overlap_s, "decode": decode},
                            max_retries=DECODE_RETRIES)
        ds = ds.map_batches(ModelActor, batch_size=batch_files, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.actors),
                            fn_constructor_kwargs={"config": actor_config.to_dict(),
                                                   "keep_scores": keep_scores},
                            **model_args)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            yield from unpack_results(batch)


# --- decoding: CPU tasks ----------------------------------------------------------------


def decode_files(batch: pa.Table, *, sample_rate_hz: int, part_s: float,
                 max_duration_s: float | None, timeout_s: float | None,
                 overlap_s: float = 0.0, decode: Decode | None = None) -> pa.Table:
    """Decodes a block of files (``path``, ``size_bytes``, ``mtime_ns``) into DECODED_SCHEMA rows.

    Each file's parts (:func:`~scanner.engines.stages.plan_parts`, as the local engine plans
    them, with the backbones' ``overlap_s``) are decoded in order, stopping at the first
    failure (the Stitcher would drop the later parts).
    """
    decode = decode or _decode
    decoded = []
    for path, size, mtime in zip(batch.column("path").to_pylist(),
                                 batch.column("size_bytes").to_pylist(),
                                 batch.column("mtime_ns").to_pylist(), strict=True):
        parts: list[Item] = []
        for task in plan_parts([AudioFile(Path(path), size, mtime)], overlap_s=overlap_s,
                               part_s=part_s, max_duration_s=max_duration_s):
            parts.append(_with_timeout(decode, task, sample_rate_hz, timeout_s))
            if isinstance(parts[-1], DecodeFailure):
                break
        decoded.append(parts)
    return pack_files(decoded)


def _decode(task: DecodeTask, sample_rate_hz: int) -> Item:
    return decode_task(task, sample_rate_hz=sample_rate_hz)


class _DecodeTimeout(BaseException):
    """Raised by the alarm; a BaseException so that decode_task's ``except Exception`` lets it by."""


def _with_timeout(decode: Decode, task: DecodeTask, sample_rate_hz: int,
                  timeout_s: float | None) -> Item:
    """``decode(task)``, or a ``timeout`` failure after ``timeout_s``.

    The alarm interrupts Python code (the decoders' loops); a decode stuck in C code does
    not return to Python, so a watchdog ends the worker ``HUNG_GRACE_S`` later and the file
    is found lost, as when the local engine kills a worker.
    """
    if not timeout_s or not hasattr(signal, "SIGALRM") \
            or threading.current_thread() is not threading.main_thread():
        return decode(task, sample_rate_hz)
    armed = True

    def on_alarm(signum: int, frame: Any) -> None:
        if armed:
            raise _DecodeTimeout

    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    watchdog = threading.Timer(timeout_s + HUNG_GRACE_S, _end_hung_worker, args=(task,))
    watchdog.daemon = True
    watchdog.start()
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        result = decode(task, sample_rate_hz)
        armed = False
        return result
    except _DecodeTimeout:
        return DecodeFailure(task=task, kind="timeout",
                             message=f"decoding took longer than {timeout_s:g} s",
                             seconds_taken=time.perf_counter() - start)
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        watchdog.cancel()


def _end_hung_worker(task: DecodeTask) -> None:
    log.error("%s: decoding is stuck past its timeout; ending this worker", task.file.path)
    os._exit(70)



# --- models: an actor pool --------------------------------------------------------------


class ModelActor:
    """Ray Data callable class: loads the backbones once, then turns decoded files into
    FileResults (RESULT_SCHEMA rows) with the same Batcher, model call and Stitcher as the
    local engine.

    Args:
        config: ``ScanConfig.to_dict()`` (the scan's settings, with this actor's threads and
            device).
        keep_scores: Keep the backbones' own class scores (a head reads them).
    """

    def __init__(self, config: dict[str, Any], keep_scores: bool = True) -> None:
        from scanner.backbones import load_backbone

        self.config = ScanConfig.from_dict(config)
        self.backbones = [load_backbone(name, self.config.models.get(name),
                                        device=self.config.device, threads=self.config.threads,
                                        **self.config.backbone_options.get(name, {}))
                          for name in self.config.backbones]
        self.sample_rate_hz = sample_rate_of(self.backbones)
        self.keep_scores = keep_scores

    def __call__(self, batch: pa.Table) -> pa.Table:
        stitcher = Stitcher(overlap_for(self.backbones), keep_scores=self.keep_scores)
        batcher = Batcher(self.sample_rate_hz, self.config.batch_s)
        results: list[FileResult] = []
        for parts in unpack_files(batch):
            for part in parts:
                batcher.add(part)
            if batcher.full:  # whole files only: a file's parts stay in one model batch
                results += stitcher.add_all(embed_items(batcher.take(), self.backbones))
        if batcher.items:
            results += stitcher.add_all(embed_items(batcher.take(), self.backbones))
        return pack_results(results)


# --- Ray session --------------------------------------------------------------------------


@contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Connects to ``address`` (None: a local instance) unless Ray is already initialised;
    shuts down only what it started."""
    import ray

    if ray.is_initialized():
        if address is not None:
            log.info("Ray is already initialised in this process; %s is not used", address)
        yield
        return
    _check_reachable(address)
    kwargs: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot start or reach Ray at {address or 'a local instance'}: {e}") \
            from e
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """Fails fast on a ``HOST:PORT`` nobody answers at: ``ray.init`` retries it for minutes."""
    match = re.fullmatch(r"\[?([\w.:-]+?)\]?:(\d+)", address or "")
    if match is None:  # None, "auto", "ray://...": Ray says quickly what is wrong
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from e


@contextmanager
def _data_context() -> Iterator[None]:
    """Ray Data settings for one scan, restored afterwards."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    settings = {
        # A block whose worker died is dropped, not fatal: its files are found missing.
        "max_errored_blocks": -1,
        # The caller shows progress (on_row); Ray's bars would interleave with it.
        "enable_progress_bars": False,
        "print_on_execution_start": False,
    }
    saved = {k: getattr(ctx, k) for k in settings if hasattr(ctx, k)}
    for key in saved:
        setattr(ctx, key, settings[key])
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(ctx, key, value)
