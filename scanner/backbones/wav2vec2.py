"""Wav2Vec2 (transformers/torch): one embedding per analysis window, the time-mean of one hidden layer.

Windows are ``window_s`` long (10 s by default) at a hop of ``window_s - overlap_s`` (no
overlap by default). Each window is its own forward pass, so a window's embedding never sees
the audio around it and a long clip costs the same per second as a short one. The last
window of a long clip is moved back to END at the clip's end (overlapping its neighbour)
instead of being padded, and a clip shorter than one window is one window of its own length:
wav2vec2-base normalises its first convolution over the whole input (group norm), so
padding would change every frame.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.backbones import register_backbone
from scanner.backbones.base import Backbone
from scanner.backbones.sources import MODEL_DIR_ENV, hub_offline, model_dir
from scanner.errors import ConfigError, ModelNotFoundError
from scanner.records import Embedding

logger = logging.getLogger(__name__)

DEFAULT_HUB_ID = "facebook/wav2vec2-base"
MODEL_SUBDIR = "wav2vec2-base"  # its folder under SCANNER_MODEL_DIR
# Keys of config.json that change with the transformers version, not with the model.
_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "_commit_hash", "torch_dtype",
                         "dtype", "_attn_implementation_autoset")


def window_starts(n_samples: int, window: int, hop: int) -> NDArray[np.int64]:
    """Start sample of each window over ``n_samples``.

    One window at 0 when the clip is no longer than ``window``; otherwise windows every
    ``hop`` samples, plus a last one ending exactly at the clip's end when the regular ones
    leave a tail (25 s, 10 s windows, 10 s hop -> 0, 10, 15 s).
    """
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return np.asarray(starts, dtype=np.int64)


def min_input_samples(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Fewest samples that give the convolutional feature encoder one output frame (400 for base)."""
    need = 1
    for kernel, stride in zip(reversed(conv_kernel), reversed(conv_stride), strict=True):
        need = (need - 1) * stride + kernel
    return need


def _resolve_source(source: str | None) -> tuple[str, bool]:
    """(what to pass to ``from_pretrained``, whether it is a local folder)."""
    if source is None:
        folder = model_dir()
        if folder is not None and (folder / MODEL_SUBDIR).is_dir():
            return str((folder / MODEL_SUBDIR).resolve()), True
        return DEFAULT_HUB_ID, False
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"wav2vec2 model {source!r} is a file; pass the folder written by "
                f"save_pretrained (config.json + model weights)")
        return str(path.resolve()), True
    # A hub id is "name" or "org/name"; anything else that does not exist is a missing folder.
    if path.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1 or "\\" in source:
        raise ModelNotFoundError(f"wav2vec2 model folder {source!r} does not exist")
    return source, False


def _not_found(source: str, local: bool, offline: bool) -> str:
    where = "folder" if local else "Hugging Face model"
    hint = (f"Pass --model PATH to a folder written by save_pretrained (config.json, "
            f"model.safetensors, optionally preprocessor_config.json), or put that folder at "
            f"${MODEL_DIR_ENV}/{MODEL_SUBDIR}/.")
    if not local:
        hint += (" Hub downloads are off (HF_HUB_OFFLINE/SCANNER_OFFLINE) and it is not cached."
                 if offline else " Downloading it failed (no network?).")
    return f"cannot load wav2vec2 {where} {source!r}. {hint}"


def _config_sha256(source: str, config: Any) -> str:
    """SHA-256 of the model's config.json, or of its stable keys when the file cannot be found."""
    try:
        from transformers.utils import cached_file

        path = cached_file(source, "config.json", local_files_only=True)
        if path:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except Exception as e:  # noqa: BLE001 - any failure falls back to hashing the dict
        logger.debug("config.json of %s not found for hashing: %s", source, e)
    values = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


@register_backbone("wav2vec2")
class Wav2Vec2Backbone(Backbone):
    """A frozen Wav2Vec2 encoder; one ``[hidden_size]`` row per window (mean over its frames).

    ``layer`` counts like transformers 4's ``hidden_states``: 0 is the input of the first
    transformer layer, ``k`` the output of layer ``k``, and the last (``-1``) the model's
    ``last_hidden_state`` (with the final layer norm of stable-layer-norm models). Layers
    after the chosen one are dropped at load, so a middle layer is also cheaper.
    Build it with :meth:`load`.
    """

    name = "wav2vec2"

    def __init__(self, model: Any, extractor: Any, device: Any, *, source: str, layer: int,
                 window_s: float, overlap_s: float, batch_size: int, config_sha256: str) -> None:
        import torch

        from scanner.device import autocast_dtype

        config = model.config
        self._model = model
        self._extractor = extractor
        self._device = device
        self._autocast = autocast_dtype(device)
        self._source = source
        self._config_sha256 = config_sha256
        self.layer = layer
        self.window_s = float(window_s)
        self.hop_s = float(window_s - overlap_s)
        self.batch_size = batch_size
        self._window = int(round(self.window_s * self.sample_rate_hz))
        self._hop = int(round(self.hop_s * self.sample_rate_hz))
        self._min_samples = min_input_samples(config.conv_kernel, config.conv_stride)
        # Padding is harmless only where the model takes a mask and has no group norm over time.
        self._pad_with_mask = (config.feat_extract_norm == "layer"
                               and bool(getattr(extractor, "return_attention_mask", False)))
        self._last = layer == config.num_hidden_layers
        self._adapter = bool(config.add_adapter) and self._last
        self.embedding_dim = int(config.output_hidden_size if self._adapter else config.hidden_size)
        self._captured: list[torch.Tensor] = []
        if not self._last:
            layers = model.encoder.layers
            model.encoder.layers = layers[:max(layer, 1)]
            if layer == 0:
                layers[0].register_forward_pre_hook(
                    lambda _m, args: self._captured.append(args[0]))
            else:
                layers[layer - 1].register_forward_hook(
                    lambda _m, _a, out: self._captured.append(
                        out[0] if isinstance(out, tuple) else out))

    @classmethod
    def load(cls, source: str | None = None, *, device: str = "auto", threads: int | None = None,
             window_s: float = 10.0, overlap_s: float = 0.0, layer: int = -1, batch_size: int = 8,
             **options: Any) -> Wav2Vec2Backbone:
        """Loads a Wav2Vec2 model with transformers (never remote code).

        Args:
            source: A Hugging Face model id or a folder written by ``save_pretrained``; None
                means ``$SCANNER_MODEL_DIR/wav2vec2-base/`` if it exists, else
                ``facebook/wav2vec2-base`` from the hub (only its cache when offline).
            device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
            threads: torch CPU threads; None leaves torch's setting alone.
            window_s: Window length; each window is one embedding.
            overlap_s: Overlap of consecutive windows (hop = window_s - overlap_s).
            layer: Hidden layer to pool, 0..num_hidden_layers, negative from the end.
            batch_size: Windows per forward pass (halved on CUDA out-of-memory, and the
                smaller size kept for later calls).

        Raises:
            ModelNotFoundError: Nothing could be loaded from ``source``.
            ConfigError: Bad options, or the model is not a 16 kHz Wav2Vec2.
        """
        if options:
            raise ConfigError(f"unknown wav2vec2 option(s): {', '.join(sorted(options))}")
        if not window_s > 0 or not 0 <= overlap_s < window_s:
            raise ConfigError(f"need window_s > 0 and 0 <= overlap_s < window_s, got "
                              f"window_s={window_s}, overlap_s={overlap_s}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")

        from scanner.extras import require

        require("torch", "wav2vec2")
        require("transformers", "wav2vec2")
        from transformers import AutoConfig, Wav2Vec2FeatureExtractor, Wav2Vec2Model

        from scanner.device import resolve_torch_device, set_cpu_threads

        torch_device = resolve_torch_device(device)
        if threads is not None:
            set_cpu_threads(threads)
        src, local = _resolve_source(source)
        offline = hub_offline()
        local_only = local or offline
        try:
            config = AutoConfig.from_pretrained(src, local_files_only=local_only,
                                                trust_remote_code=False)
        except Exception as e:
            raise ModelNotFoundError(_not_found(src, local, offline)) from e
        if config.model_type != "wav2vec2":
            raise ConfigError(f"{src!r} is a {config.model_type!r} model, not wav2vec2")
        n_layers = int(config.num_hidden_layers)
        index = layer if layer >= 0 else n_layers + 1 + layer
        if not 0 <= index <= n_layers:
            raise ConfigError(f"layer {layer} is out of range for a model with {n_layers} "
                              f"layers (use 0..{n_layers} or -1..-{n_layers + 1})")
        try:
            model = Wav2Vec2Model.from_pretrained(src, config=config, local_files_only=local_only)
        except Exception as e:
            raise ModelNotFoundError(_not_found(src, local, offline)) from e
        extractor = cls._load_extractor(src, local, local_only, config, Wav2Vec2FeatureExtractor)
        if extractor.sampling_rate != cls.sample_rate_hz or extractor.feature_size != 1:
            raise ConfigError(f"{src!r} expects {extractor.sampling_rate} Hz, "
                              f"{extractor.feature_size}-channel input; the scanner feeds 16 kHz mono")
        if window_s * cls.sample_rate_hz < min_input_samples(config.conv_kernel, config.conv_stride):
            raise ConfigError(f"window_s={window_s} is shorter than the model's receptive field")
        model.requires_grad_(False)
        model.eval()
        model.to(torch_device)
        logger.info("wav2vec2 %s on %s: layer %d of %d, window %.2f s, hop %.2f s", src,
                    torch_device, index, n_layers, window_s, window_s - overlap_s)
        return cls(model, extractor, torch_device, source=src, layer=index, window_s=window_s,
                   overlap_s=overlap_s, batch_size=batch_size,
                   config_sha256=_config_sha256(src, config))

    @staticmethod
    def _load_extractor(src: str, local: bool, local_only: bool, config: Any,
                        extractor_cls: Any) -> Any:
        """The folder's feature extractor, or the transformers default for this kind of model."""
        if not local or (Path(src) / "preprocessor_config.json").is_file():
            try:
                return extractor_cls.from_pretrained(src, local_files_only=local_only)
            except Exception as e:  # noqa: BLE001 - a missing preprocessor has a sound default
                logger.info("no feature extractor config for %s (%s); using defaults", src, e)
        # HF's convention for fairseq checkpoints: layer-norm models (large-lv60) were trained
        # on normalised audio with masks, group-norm ones (base) on raw audio without.
        layer_norm = config.feat_extract_norm == "layer"
        return extractor_cls(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                             do_normalize=layer_norm, return_attention_mask=layer_norm)

    @property
    def can_use_gpu(self) -> bool:
        return True  # torch: any CUDA device

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "source": self._source, "embedding_dim": self.embedding_dim,
                "layer": self.layer, "window_s": self.window_s, "hop_s": self.hop_s,
                "config_sha256": self._config_sha256}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "layer": self.layer,
                "do_normalize": bool(self._extractor.do_normalize)}

    def embed(self, waveform: NDArray[np.float32]) -> Embedding:
        return self.embed_batch([waveform])[0]

    def embed_batch(self, waveforms: Sequence[NDArray[np.float32]]) -> list[Embedding]:
        """Embeds many clips, batching equal-length windows across clips.

        Full windows all have one length and batch freely. Shorter clips batch with padding
        and an attention mask on models that take one, else only with clips of the exact
        same length, so padding never reaches an embedding.
        """
        from scanner.device import run_with_oom_backoff

        clips = [np.asarray(w, dtype=np.float32) for w in waveforms]
        groups: dict[int, list[tuple[int, int, NDArray[np.float32]]]] = defaultdict(list)
        starts: list[NDArray[np.int64]] = []
        for i, x in enumerate(clips):
            if x.ndim != 1 or x.size == 0:
                raise ValueError(f"waveform {i} must be a non-empty 1-D array, got shape {x.shape}")
            s = window_starts(x.size, self._window, self._hop)
            starts.append(s)
            length = min(self._window, x.size)
            key = -1 if self._pad_with_mask and length < self._window else length
            groups[key].extend((i, j, x[a:a + length]) for j, a in enumerate(s))
        out = [np.empty((len(s), self.embedding_dim), dtype=np.float32) for s in starts]
        for key, jobs in groups.items():
            if key == -1:  # longest first, so each padded batch holds similar lengths
                jobs.sort(key=lambda job: -job[2].size)
            vectors = run_with_oom_backoff(
                lambda batch: self._forward([job[2] for job in batch]), jobs, self.batch_size,
                on_shrink=self._shrink_batch)
            for (i, j, _), vector in zip(jobs, vectors, strict=True):
                out[i][j] = vector
        return [
            Embedding(out[i], starts[i].astype(np.float64) / self.sample_rate_hz,
                      self.window_s if x.size >= self._window else x.size / self.sample_rate_hz)
            for i, x in enumerate(clips)
        ]

    def _shrink_batch(self, size: int) -> None:
        """CUDA ran out of memory: ``size`` windows a forward pass from now on, in this call
        and every later one (without this, every batch would hit the same error again)."""
        if size < self.batch_size:
            logger.warning("wav2vec2: CUDA out of memory at %d windows a batch; using %d from "
                           "now on", self.batch_size, size)
            self.batch_size = size

    def _prepare(self, windows: Sequence[NDArray[np.float32]]
                 ) -> tuple[NDArray[np.float32], NDArray[np.int32] | None]:
        """What the feature extractor's ``__call__`` gives (``padding="longest"``), ~100x faster.

        Each window is normalised to zero mean and unit variance over its own samples when
        ``do_normalize``; padding holds ``padding_value``. Returns ``[batch, samples]`` input
        values and, on masked models, the ``[batch, samples]`` attention mask.
        """
        sizes = np.array([w.size for w in windows])
        values = np.full((len(windows), int(sizes.max())), self._extractor.padding_value,
                         dtype=np.float32)
        for row, w in zip(values, windows, strict=True):
            if self._extractor.do_normalize:  # same formula and epsilon as transformers
                w = (w - w.mean()) / np.sqrt(w.var() + 1e-7)
            row[:w.size] = w
        if not self._pad_with_mask:
            return values, None
        mask = (np.arange(values.shape[1])[None, :] < sizes[:, None]).astype(np.int32)
        return values, mask

    def _forward(self, windows: Sequence[NDArray[np.float32]]) -> list[NDArray[np.float32]]:
        """``[batch]`` windows (equal length unless masked) -> ``[batch]`` ``[dim]`` vectors."""
        import torch

        # Below the receptive field the encoder gives no frame at all; zero-fill to its minimum.
        windows = [w if w.size >= self._min_samples else np.pad(w, (0, self._min_samples - w.size))
                   for w in windows]
        values, mask_np = self._prepare(windows)
        inputs = torch.from_numpy(values)
        mask = torch.from_numpy(mask_np).to(self._device) if mask_np is not None else None
        autocast = (torch.autocast(device_type=self._device.type, dtype=self._autocast)
                    if self._autocast is not None else contextlib.nullcontext())
        self._captured.clear()
        with torch.inference_mode(), autocast:
            result = self._model(inputs.to(self._device), attention_mask=mask)
            hidden = (result.last_hidden_state if self._last else self._captured.pop()).float()
            n_frames = self._model._get_feat_extract_output_lengths(
                torch.tensor([w.size for w in windows], device=self._device),
                add_adapter=self._adapter)
            frames = torch.arange(hidden.shape[1], device=self._device)
            valid = (frames[None, :] < n_frames[:, None]).unsqueeze(-1)
            means = (hidden * valid).sum(dim=1) / n_frames[:, None].to(hidden.dtype)
        self._captured.clear()
        return list(means.cpu().numpy().astype(np.float32))
