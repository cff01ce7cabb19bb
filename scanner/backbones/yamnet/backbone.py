"""YAMNet (AudioSet, 521 classes): 1024-d embeddings per 0.96 s patch at a 0.48 s hop.

Runs from a local ``.tflite`` file (CPU), a local SavedModel folder, or TF Hub
(``google/yamnet/1``, CPU or GPU). The framing arithmetic and the packing of many short
clips into one model call live in :mod:`scanner.backbones.yamnet.frames`; the frameworks
in :mod:`scanner.backbones.yamnet.runtime`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from scanner.backbones import register_backbone
from scanner.backbones.base import Backbone
from scanner.backbones.replicas import Replicas
from scanner.backbones.sources import MODEL_DIR_ENV, hub_offline, model_dir
from scanner.backbones.yamnet import runtime as rt
from scanner.backbones.yamnet.frames import (
    MIN_SAMPLES,
    PATCH_HOP_SAMPLES,
    Call,
    call_input,
    n_patches,
    plan_calls,
)
from scanner.backbones.yamnet.split import SplitRunner, load_split, patch_view
from scanner.constants import SAMPLE_RATE_HZ, YAMNET_EMBEDDING_DIM, YAMNET_HOP_S, YAMNET_PATCH_S
from scanner.device import parse_device
from scanner.errors import ConfigError, ModelNotFoundError, ScannerError
from scanner.records import Embedding

log = logging.getLogger(__name__)

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/yamnet/1"
TFLITE_NAME = "yamnet.tflite"
SAVED_MODEL_NAME = "saved_model"
HOW_TO_POINT = (f"Set {MODEL_DIR_ENV}=/path/to/models with yamnet/{TFLITE_NAME} (or "
                f"yamnet/{SAVED_MODEL_NAME}/) inside, or pass --model PATH.")
SPLIT_GROUP_S = 120.0
"""Audio whose log-mel patches the cut model holds at once (about 6 MB per 120 s)."""
# Hub-style ids such as "google/yamnet/1" (owner/name/version) mean tfhub.dev.
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)+/\d+$")


class _Runner(Protocol):
    format: rt.Format
    packs: bool  # whether packing short clips into one call pays off
    call_s: float  # the call length that runs fastest, within bounded memory

    def __call__(self, waveform: NDArray[np.float32]) -> rt.Outputs: ...


@register_backbone("yamnet")
class YAMNetBackbone(Backbone):
    """Google's YAMNet: MobileNet-v1 on 64-band log-mel patches, trained on AudioSet.

    Use :meth:`load`; the constructor takes an already loaded runner.
    """

    name = "yamnet"
    sample_rate_hz = SAMPLE_RATE_HZ
    embedding_dim = YAMNET_EMBEDDING_DIM
    window_s = YAMNET_PATCH_S
    hop_s = YAMNET_HOP_S

    def __init__(self, runner: _Runner | Sequence[_Runner], *, source: str, sha256: str | None,
                 score_names: tuple[str, ...] | None, max_call_s: float | None = None,
                 pack: bool | None = None, replicas: int | None = None) -> None:
        runners = list(runner) if isinstance(runner, Sequence) else [runner]
        runner = runners[0]
        call_s = runner.call_s if max_call_s is None else max_call_s
        if call_s < 1.0:
            raise ConfigError(f"max_call_s must be >= 1 s, got {max_call_s}")
        self._runner = runner
        self._replicas = Replicas(runners, name="yamnet") if len(runners) > 1 else None
        # Batches share the copies' queue, so the next batch may be submitted while one runs.
        self.concurrent_batches = 2 if self._replicas is not None else 1
        self._source = source
        self._sha256 = sha256
        self.score_names = score_names
        # Whole patches per call, so a call reads at most call_s seconds of audio.
        self.max_patches = 1 + (int(call_s * SAMPLE_RATE_HZ) - MIN_SAMPLES) // PATCH_HOP_SAMPLES
        self.pack = runner.packs if pack is None else pack

    @classmethod
    def load(cls, source: str | None = None, *, device: str = "auto", threads: int | None = None,
             max_call_s: float | None = None, pack: bool | None = None,
             replicas: int | None = None, split: bool | None = None,
             **options: Any) -> YAMNetBackbone:
        """Loads YAMNet from ``source``, or from ``SCANNER_MODEL_DIR`` then TF Hub when None.

        Args:
            source: A ``.tflite`` file, a SavedModel folder (``saved_model.pb`` inside), a
                folder laid out like ``SCANNER_MODEL_DIR`` or its ``yamnet/``, a TF Hub URL,
                or a hub id such as ``google/yamnet/1``.
            device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. TFLite always runs on the CPU.
            threads: CPU threads for the model (None: one per core for TFLite, TensorFlow's
                default otherwise).
            max_call_s: Most seconds of audio in one model call (bounds memory; None:
                15 s for TFLite, 60 s for TensorFlow, the faster choices measured).
            pack: Run several short clips in one call in :meth:`embed_batch` (None: where
                it measured faster: TensorFlow, and TFLite on more than one thread).
            replicas: TFLite only: copies of the interpreter, each on ``threads // replicas``
                threads, run side by side from Python threads (``invoke`` releases the GIL).
                None: one copy per thread, the faster choice measured on 2 cores
                (single-threaded interpreters need no per-layer barriers).
            split: TFLite only: run the model as two halves, the log-mel front end on packed
                waveforms and the patch network on the patches clips need (see
                :mod:`scanner.backbones.yamnet.split`). None: where the file can be cut and
                the halves match the whole model on a test input; False: never.

        Raises:
            ModelNotFoundError: Nothing could be loaded; says what was tried.
            ConfigError: A bad ``device`` or option.
        """
        if options:
            raise ConfigError(f"unknown yamnet options: {', '.join(sorted(options))}")
        rt.check_device(device)
        if replicas is not None and replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {replicas}")
        settings = {"max_call_s": max_call_s, "pack": pack, "replicas": replicas, "split": split}
        if source is not None:
            return cls._from_source(str(source), device, threads, settings)
        tried = []
        root = model_dir()
        if root is not None:
            found = _find_local(root / "yamnet")
            if found is not None:
                return cls._from_local(*found, device, threads, settings)
            tried.append(f"{MODEL_DIR_ENV}={root} (no yamnet/{SAVED_MODEL_NAME}/saved_model.pb "
                         f"or yamnet/{TFLITE_NAME})")
        else:
            tried.append(f"{MODEL_DIR_ENV} (not set)")
        if hub_offline():
            tried.append(f"TF Hub {DEFAULT_HUB_HANDLE} (skipped: SCANNER_OFFLINE/HF_HUB_OFFLINE)")
            raise ModelNotFoundError(f"no YAMNet model found; tried {'; '.join(tried)}. "
                                     + HOW_TO_POINT)
        try:
            return cls._from_hub(DEFAULT_HUB_HANDLE, device, threads, settings)
        except ModelNotFoundError as e:
            tried.append(str(e))
            raise ModelNotFoundError(f"no YAMNet model found; tried {'; '.join(tried)}. "
                                     + HOW_TO_POINT) from e

    @classmethod
    def _from_source(cls, source: str, device: str, threads: int | None,
                     settings: dict[str, Any]) -> YAMNetBackbone:
        path = Path(source).expanduser()
        if source.startswith(("http://", "https://")):
            return cls._from_hub(source, device, threads, settings)
        if not path.exists() and _HUB_ID.match(source):
            return cls._from_hub(f"https://tfhub.dev/{source}", device, threads, settings)
        if not path.exists():
            raise ModelNotFoundError(f"YAMNet model {source!r}: no such file or folder. "
                                     + HOW_TO_POINT)
        found = _find_local(path)
        if found is None:
            raise ModelNotFoundError(
                f"{source!r} is not a YAMNet model: expected a .tflite file, a folder with "
                f"saved_model.pb, or a folder with {TFLITE_NAME} or yamnet/. " + HOW_TO_POINT)
        return cls._from_local(*found, device, threads, settings)

    @classmethod
    def _from_local(cls, fmt: rt.Format, path: Path, device: str, threads: int | None,
                    settings: dict[str, Any]) -> YAMNetBackbone:
        if fmt == "tflite":
            wanted = parse_device(device)
            if wanted.wants_cuda or (wanted.kind == "auto" and _nvidia_gpu_present()):
                log.warning("device=%s: a GPU cannot run the TFLite YAMNet, which runs on the "
                            "CPU; use a SavedModel or the TF Hub model for the GPU", device)
            total = rt.default_threads(threads)
            copies = settings.pop("replicas") or total
            per_copy = max(1, total // copies)
            split = load_split(path) if settings.pop("split") is not False else None
            if split is not None:
                runners: list[_Runner] = [SplitRunner(split, threads=per_copy, what=str(path))
                                          for _ in range(copies)]
            else:
                runners = [rt.TFLiteRunner(path, threads=per_copy) for _ in range(copies)]
            if settings["pack"] is None and (copies > 1 or split is not None):
                settings["pack"] = True  # replicas want few, large calls to share out
            class_map = path.with_name(rt.CLASS_MAP_CSV)
            names = rt.read_class_map(class_map if class_map.is_file() else None)
            backbone = cls(runners, source=str(path), sha256=rt.file_sha256(path),
                           score_names=names, **settings)
        else:
            settings.pop("replicas", None)  # TensorFlow runs its own thread pools
            settings.pop("split", None)
            device_name = rt.configure_tensorflow(device, threads)
            model = rt.load_saved_model(path)
            runner = rt.TFRunner(model, format="saved_model", device_name=device_name,
                                 what=str(path))
            names = rt.read_class_map(rt.saved_model_class_map(model, path))
            backbone = cls(runner, source=str(path),
                           sha256=rt.file_sha256(path / "saved_model.pb"), score_names=names,
                           **settings)
        backbone._check()
        return backbone

    @classmethod
    def _from_hub(cls, handle: str, device: str, threads: int | None,
                  settings: dict[str, Any]) -> YAMNetBackbone:
        settings.pop("replicas", None)
        settings.pop("split", None)
        device_name = rt.configure_tensorflow(device, threads)
        model, folder = rt.load_hub(handle)
        runner = rt.TFRunner(model, format="hub", device_name=device_name, what=handle)
        names = rt.read_class_map(rt.saved_model_class_map(model, folder))
        sha = rt.file_sha256(folder / "saved_model.pb") if folder else None
        backbone = cls(runner, source=handle, sha256=sha, score_names=names, **settings)
        backbone._check()
        return backbone

    def _check(self) -> None:
        """One silent patch through the model: fails at load, not mid-scan, on a wrong model."""
        try:
            scores, embeddings = self._runner(np.zeros(PATCH_HOP_SAMPLES, np.float32))
        except ScannerError as e:
            raise ModelNotFoundError(f"{self._source} does not run as YAMNet: {e}") from e
        if scores.shape[0] != 1 or embeddings.shape[0] != 1:
            raise ModelNotFoundError(
                f"{self._source} is not YAMNet: {embeddings.shape[0]} patches for 0.48 s, not 1")
        log.info("YAMNet loaded from %s (%s, %s)", self._source, self._runner.format,
                 "with its class map" if self.score_names else "no class map")

    @property
    def can_use_gpu(self) -> bool:
        """TensorFlow (a SavedModel, TF Hub) can; the TFLite runtime has no GPU path here."""
        return self._runner.format != "tflite"

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "source": self._source, "format": self._runner.format,
                "sha256": self._sha256, "embedding_dim": self.embedding_dim}

    def embed(self, waveform: NDArray[np.float32]) -> Embedding:
        """Embeds one waveform; a long one runs in calls of at most ``max_patches`` patches,
        split at patch boundaries so the result equals one call over the whole waveform."""
        return self._run([waveform], pack=False)[0]

    def embed_batch(self, waveforms: Sequence[NDArray[np.float32]]) -> list[Embedding]:
        """Embeds many waveforms in few calls (packed when :attr:`pack`); each result equals
        :meth:`embed` of that waveform, patch for patch."""
        return self._run(waveforms, pack=self.pack)

    def _map(self, jobs: list[Callable[[Any], Any]]) -> list[Any]:
        """Runs ``job(runner)`` for each job, shared out over the copies; results in job order."""
        if self._replicas is None:
            return [job(self._runner) for job in jobs]
        # Each copy takes the next job when it is free: a copy slowed by a busy core takes
        # fewer, and a copy done with this batch already starts on the next one's jobs.
        # Never run a copy here: its own thread may be using it for another batch.
        return self._replicas.map(jobs)

    def _run(self, waveforms: Sequence[NDArray[np.float32]], *, pack: bool) -> list[Embedding]:
        waves = [_as_waveform(w) for w in waveforms]
        if not waves:
            return []
        calls = plan_calls([len(w) for w in waves], max_patches=self.max_patches, pack=pack)
        if isinstance(self._runner, SplitRunner):
            outputs = self._run_split(calls, waves)
        else:
            outputs = self._run_whole(calls, waves)
        out = []
        for scores, embeddings in outputs:
            starts = np.arange(len(embeddings), dtype=np.float64) * self.hop_s
            out.append(Embedding(embeddings, starts, self.window_s, scores))
        return out

    def _run_whole(self, calls: list[Call], waves: list[NDArray[np.float32]]
                   ) -> list[rt.Outputs]:
        """Each call's waveform through the whole model; each clip's rows, in clip order."""
        parts: list[list[rt.Outputs]] = [[] for _ in waves]
        results = self._map([partial(_whole, call, waves) for call in calls])
        for call, (scores, embeddings) in zip(calls, results, strict=True):
            # The TFLite conversion computes its padding with a float32 reciprocal of the
            # hop, so for some lengths of exactly 15600 + k * 7680 samples it returns one
            # more patch than TF Hub's YAMNet: one that only re-reads the last patch's
            # audio shifted by a hop. It is dropped, so every runtime gives the same patches.
            if not call.patches <= embeddings.shape[0] <= call.patches + 1:
                raise ScannerError(f"YAMNet returned {embeddings.shape[0]} patches for "
                                   f"{call.n_samples} samples, expected {call.patches}")
            for seg, offset in zip(call.segments, call.offsets, strict=True):
                rows = slice(offset, offset + seg.patches)
                parts[seg.clip].append((scores[rows], embeddings[rows]))
        return [(np.concatenate([s for s, _ in p]), np.concatenate([e for _, e in p]))
                for p in parts]

    def _run_split(self, calls: list[Call], waves: list[NDArray[np.float32]]
                   ) -> list[rt.Outputs]:
        """The front end on each call's waveform, then the network on only the patches the
        clips need (none straddles two clips), in calls of ``network_patches``.

        Calls go in groups of about ``SPLIT_GROUP_S`` of audio, so the log-mel patches held
        at once stay bounded however long a waveform is.
        """
        size = self._runner.network_patches
        group = max(1, round(SPLIT_GROUP_S * SAMPLE_RATE_HZ / (self.max_patches * PATCH_HOP_SAMPLES)))
        scores, embeddings = [], []
        for first in range(0, len(calls), group):
            some = calls[first:first + group]
            frames = self._map([partial(_frames, call, waves) for call in some])
            pieces = []
            for call, call_frames in zip(some, frames, strict=True):
                patches = patch_view(call_frames, call.patches)
                pieces += [patches[o:o + seg.patches]
                           for seg, o in zip(call.segments, call.offsets, strict=True)]
            patches = np.concatenate(pieces)  # segments come in clip order
            for s, e in self._map([partial(_network, patches[k:k + size])
                                   for k in range(0, len(patches), size)]):
                scores.append(s)
                embeddings.append(e)
        ends = np.cumsum([n_patches(len(w)) for w in waves])[:-1]
        return list(zip(np.split(np.concatenate(scores), ends),
                        np.split(np.concatenate(embeddings), ends), strict=True))


def _whole(call: Call, waves: list[NDArray[np.float32]], runner: _Runner) -> rt.Outputs:
    return runner(call_input(call, waves))


def _frames(call: Call, waves: list[NDArray[np.float32]], runner: SplitRunner
            ) -> NDArray[np.float32]:
    return runner.frames(call_input(call, waves))


def _network(patches: NDArray[np.float32], runner: SplitRunner) -> rt.Outputs:
    return runner.patches(patches)


def _nvidia_gpu_present() -> bool:
    """Whether the NVIDIA driver lists a GPU (checked without importing a framework)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def _find_local(path: Path) -> tuple[rt.Format, Path] | None:
    """What a local path holds: a TFLite file or a SavedModel folder, looking one level down."""
    if path.is_file():
        if path.suffix == ".tflite":
            return "tflite", path
        if path.name == "saved_model.pb":
            return "saved_model", path.parent
        return None
    if not path.is_dir():
        return None
    if (path / "saved_model.pb").is_file():
        return "saved_model", path
    if (path / SAVED_MODEL_NAME / "saved_model.pb").is_file():
        return "saved_model", path / SAVED_MODEL_NAME
    if (path / TFLITE_NAME).is_file():
        return "tflite", path / TFLITE_NAME
    if (path / "yamnet").is_dir():
        return _find_local(path / "yamnet")
    return None


def _as_waveform(waveform: NDArray[np.float32]) -> NDArray[np.float32]:
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"YAMNet takes a 1-D waveform [samples], got shape {x.shape}")
    return x
