"""YAMNet (AudioSet, 521 classes): 1024-d embeddings per 0.96 s patch at a 0.48 s hop.

Runs from a local ``.tflite`` file (CPU), a local SavedModel folder, or TF Hub
(``google/yamnet/1``, CPU or GPU). The framing arithmetic and the packing of many short
clips into one model call live in :mod:`scanner.backbones.yamnet_frames`; the frameworks
in :mod:`scanner.backbones.yamnet_runtime`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from scanner.backbones import register_backbone
from scanner.backbones import yamnet_runtime as rt
from scanner.backbones.base import Backbone
from scanner.backbones.sources import MODEL_DIR_ENV, hub_offline, model_dir
from scanner.backbones.yamnet_frames import (
    MIN_SAMPLES,
    PATCH_HOP_SAMPLES,
    SAMPLE_RATE_HZ,
    call_input,
    plan_calls,
)
from scanner.errors import ConfigError, ModelNotFoundError, ScannerError
from scanner.records import Embedding

log = logging.getLogger(__name__)

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/yamnet/1"
TFLITE_NAME = "yamnet.tflite"
SAVED_MODEL_NAME = "saved_model"
HOW_TO_POINT = (f"Set {MODEL_DIR_ENV}=/path/to/models with yamnet/{TFLITE_NAME} (or "
                f"yamnet/{SAVED_MODEL_NAME}/) inside, or pass --model PATH.")
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
    embedding_dim = rt.EMBEDDING_DIM
    window_s = 0.96
    hop_s = 0.48

    def __init__(self, runner: _Runner | Sequence[_Runner], *, source: str, sha256: str | None,
                 score_names: tuple[str, ...] | None, max_call_s: float | None = None,
                 pack: bool | None = None, replicas: int | None = None) -> None:
        runners = list(runner) if isinstance(runner, Sequence) else [runner]
        runner = runners[0]
        call_s = runner.call_s if max_call_s is None else max_call_s
        if call_s < 1.0:
            raise ConfigError(f"max_call_s must be >= 1 s, got {max_call_s}")
        self._runner = runner
        self._runners = runners
        self._pool = None
        if len(runners) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(len(runners), thread_name_prefix="yamnet")
        self._source = source
        self._sha256 = sha256
        self.score_names = score_names
        # Whole patches per call, so a call reads at most call_s seconds of audio.
        self.max_patches = 1 + (int(call_s * SAMPLE_RATE_HZ) - MIN_SAMPLES) // PATCH_HOP_SAMPLES
        self.pack = runner.packs if pack is None else pack

    @classmethod
    def load(cls, source: str | None = None, *, device: str = "auto", threads: int | None = None,
             max_call_s: float | None = None, pack: bool | None = None,
             replicas: int | None = None, **options: Any) -> YAMNetBackbone:
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

        Raises:
            ModelNotFoundError: Nothing could be loaded; says what was tried.
            ConfigError: A bad ``device`` or option.
        """
        if options:
            raise ConfigError(f"unknown yamnet options: {', '.join(sorted(options))}")
        rt.check_device(device)
        if replicas is not None and replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {replicas}")
        settings = {"max_call_s": max_call_s, "pack": pack, "replicas": replicas}
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
            if device.startswith("cuda") or (device == "auto" and _nvidia_gpu_present()):
                log.warning("device=%s: a GPU cannot run the TFLite YAMNet, which runs on the "
                            "CPU; use a SavedModel or the TF Hub model for the GPU", device)
            total = rt.default_threads(threads)
            copies = settings.pop("replicas") or total
            per_copy = max(1, total // copies)
            runners = [rt.TFLiteRunner(path, threads=per_copy) for _ in range(copies)]
            if settings["pack"] is None and copies > 1:
                settings["pack"] = True  # replicas want few, large calls to share out
            class_map = path.with_name(rt.CLASS_MAP_CSV)
            names = rt.read_class_map(class_map if class_map.is_file() else None)
            backbone = cls(runners, source=str(path), sha256=rt.file_sha256(path),
                           score_names=names, **settings)
        else:
            settings.pop("replicas", None)  # TensorFlow runs its own thread pools
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

    def _invoke(self, calls: list, waves: list[NDArray[np.float32]]) -> list[rt.Outputs]:
        """Runs the calls, shared out over the interpreter copies; results in call order."""
        if self._pool is None or len(calls) < 2:
            return [self._runner(call_input(call, waves)) for call in calls]
        out: list[rt.Outputs] = [None] * len(calls)  # type: ignore[list-item]
        todo = iter(range(len(calls)))
        lock = threading.Lock()

        def work(runner: _Runner) -> None:
            # Each copy takes the next call when it is free (one thread per copy, so no
            # interpreter is used by two threads); a copy slowed by a busy core takes fewer.
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                out[i] = runner(call_input(calls[i], waves))

        list(self._pool.map(work, self._runners))
        return out

    def _run(self, waveforms: Sequence[NDArray[np.float32]], *, pack: bool) -> list[Embedding]:
        waves = [_as_waveform(w) for w in waveforms]
        parts: list[list[rt.Outputs]] = [[] for _ in waves]
        calls = list(plan_calls([len(w) for w in waves], max_patches=self.max_patches,
                                pack=pack))
        for call, (scores, embeddings) in zip(calls, self._invoke(calls, waves), strict=True):
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
        out = []
        for clip_parts in parts:
            scores = np.concatenate([s for s, _ in clip_parts])
            embeddings = np.concatenate([e for _, e in clip_parts])
            starts = np.arange(len(embeddings), dtype=np.float64) * self.hop_s
            out.append(Embedding(embeddings, starts, self.window_s, scores))
        return out


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
