"""The frameworks behind YAMNet: a TFLite interpreter, or a TensorFlow SavedModel (local or TF Hub).

Each runner maps one 1-D float32 waveform to ``(scores [N, 521], embeddings [N, 1024])``
as numpy. TensorFlow, TFLite and tensorflow_hub are imported inside the functions here,
so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from scanner.constants import YAMNET_EMBEDDING_DIM, YAMNET_N_MELS, YAMNET_N_SCORES
from scanner.device import available_cores, parse_device
from scanner.errors import ConfigError, ModelNotFoundError, ScannerError

log = logging.getLogger(__name__)

N_SCORES = YAMNET_N_SCORES
EMBEDDING_DIM = YAMNET_EMBEDDING_DIM
N_MELS = YAMNET_N_MELS
CLASS_MAP_CSV = "yamnet_class_map.csv"

Format = Literal["tflite", "saved_model", "hub"]
Outputs = tuple[NDArray[np.float32], NDArray[np.float32]]

def check_device(device: str) -> str:
    """Returns ``device`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (normalised).

    Raises:
        ConfigError: Anything else.
    """
    return str(parse_device(device))


def _by_last_dim(arrays: list[NDArray[Any]], what: str) -> Outputs:
    """Picks scores and embeddings among a model's outputs by shape, not by position."""
    found = {int(a.shape[-1]): a for a in arrays if a.ndim == 2}
    if N_SCORES not in found or EMBEDDING_DIM not in found:
        shapes = [tuple(a.shape) for a in arrays]
        raise ModelNotFoundError(
            f"{what} is not a YAMNet model: expected outputs [N, {N_SCORES}] and "
            f"[N, {EMBEDDING_DIM}] (and [M, {N_MELS}]), got {shapes}")
    return (np.asarray(found[N_SCORES], dtype=np.float32),
            np.asarray(found[EMBEDDING_DIM], dtype=np.float32))


class TFLiteRunner:
    """YAMNet as a ``.tflite`` file, on the CPU (XNNPACK).

    The input tensor is resized to each input's shape; the interpreter only re-plans its
    memory when the shape changes from the previous call.

    Args:
        model: A ``.tflite`` file, or a model's bytes.
        threads: Interpreter threads.
        what: The model's name in messages (default: the path).
    """

    format: Format = "tflite"
    # Per patch, calls of 8-15 s ran 10-15% faster than 60 s ones on one thread (cache).
    call_s = 15.0

    def __init__(self, model: Path | bytes, *, threads: int | None,
                 what: str | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # the deprecated interpreter that ships inside tensorflow
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806
        self._what = what or str(model)
        source = {"model_content": model} if isinstance(model, bytes) else \
            {"model_path": str(model)}
        try:
            self._interpreter = Interpreter(**source, num_threads=threads)
        except (ValueError, RuntimeError) as e:
            raise ModelNotFoundError(f"cannot read the TFLite model {self._what}: {e}") from e
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelNotFoundError(f"{self._what} is not a YAMNet model: {len(inputs)} inputs, "
                                     "not 1")
        self._input = inputs[0]["index"]
        self._outputs = [d["index"] for d in self._interpreter.get_output_details()]
        self._shape: tuple[int, ...] | None = None
        # Measured on 2 shared cores, 200 clips of 5 s: on one thread a call costs ~0.2 ms
        # on top of ~1 ms per patch, less than the GAP_PATCHES rows packing wastes per clip
        # (packed 0.8x as fast); on two threads each call's per-layer barriers stall when
        # the cores are busy (as with decode workers beside it), and packed ran 1.2x faster.
        self.packs = bool(threads and threads > 1)

    def run(self, x: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """The model's outputs for input ``x``, in the model's order (copies)."""
        it = self._interpreter
        if x.shape != self._shape:  # re-planning memory costs: only when the shape changes
            it.resize_tensor_input(self._input, list(x.shape))
            it.allocate_tensors()
            self._shape = x.shape
        try:
            it.set_tensor(self._input, x)
            it.invoke()
        except (ValueError, RuntimeError) as e:
            raise ScannerError(f"YAMNet ({self._what}) failed on input {x.shape}: {e}") from e
        return [it.get_tensor(i).copy() for i in self._outputs]

    def __call__(self, waveform: NDArray[np.float32]) -> Outputs:
        return _by_last_dim(self.run(waveform), self._what)


class TFRunner:
    """YAMNet as a TensorFlow SavedModel (a local folder or a TF Hub handle)."""

    # A TF call has fixed costs (dispatch, GPU launches) worth sharing: with a random-weight
    # model of YAMNet's architecture on one CPU thread, packing 1 s clips ran 1.5x and 5 s
    # clips 1.1x faster than one call per clip.
    packs = True
    call_s = 60.0

    def __init__(self, model: Any, *, format: Format, device_name: str | None, what: str) -> None:
        self.format = format
        self.model = model
        self._device_name = device_name
        self._what = what

    def __call__(self, waveform: NDArray[np.float32]) -> Outputs:
        import tensorflow as tf

        where = tf.device(self._device_name) if self._device_name else contextlib.nullcontext()
        try:
            with where:
                outputs = self.model(tf.constant(waveform, dtype=tf.float32))
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise ScannerError(
                f"YAMNet ({self._what}) failed on {len(waveform)} samples: {e}") from e
        return _by_last_dim([np.asarray(o) for o in outputs], self._what)


def configure_tensorflow(device: str, threads: int | None) -> str | None:
    """Sets TensorFlow's threads and GPUs before a model loads; returns the device to run on.

    With ``cpu`` the GPUs are hidden from TensorFlow; otherwise every GPU grows its memory
    on demand, so torch (Wav2Vec2) can share the card. Both only work before TensorFlow
    starts; later they are skipped with a warning and the placement below still applies.

    Returns:
        A TF device name (``/CPU:0``, ``/GPU:N``), or None to let TensorFlow choose.

    Raises:
        ConfigError: ``cuda`` was asked for and TensorFlow sees no such GPU.
    """
    import tensorflow as tf

    spec = parse_device(device)
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as e:
            log.warning("TensorFlow already started; cannot set threads=%d (%s)", threads, e)
    gpus = tf.config.list_physical_devices("GPU")
    if spec.kind == "cpu":
        if gpus:
            try:
                tf.config.set_visible_devices([], "GPU")
            except RuntimeError as e:
                log.warning("TensorFlow already started; GPUs stay visible (%s)", e)
        return "/CPU:0"
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError) as e:
            log.debug("memory growth unchanged for %s: %s", gpu.name, e)
    if spec.kind == "auto":
        log.info("YAMNet on TensorFlow: %s", "GPU" if gpus else "CPU")
        return None
    index = spec.index or 0
    if index >= len(gpus):
        raise ConfigError(f"device {device!r} asked for, but TensorFlow sees {len(gpus)} GPU(s)")
    return f"/GPU:{index}"


def load_saved_model(path: Path) -> Any:
    """``tf.saved_model.load`` with its errors as ModelNotFoundError."""
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise ModelNotFoundError(f"cannot load the SavedModel {path}: {e}") from e


def load_hub(handle: str) -> tuple[Any, Path | None]:
    """Loads a TF Hub handle (URL or local path; cached under ``TFHUB_CACHE_DIR``).

    Returns:
        The model, and its local folder when it can be found (for the checksum).
    """
    try:
        with warnings.catch_warnings():  # tensorflow_hub 0.16 imports pkg_resources
            warnings.simplefilter("ignore")
            import tensorflow_hub as hub
    except ImportError as e:
        raise ModelNotFoundError(f"tensorflow_hub is not installed, cannot load {handle!r}") from e
    try:
        model = hub.load(handle)
    except Exception as e:  # hub raises anything from OSError to HTTP and TF errors
        raise ModelNotFoundError(f"cannot load {handle!r} from TF Hub: {e}") from e
    try:
        folder: Path | None = Path(hub.resolve(handle))
    except Exception as e:
        log.debug("cannot resolve %s to a local folder: %s", handle, e)
        folder = None
    return model, folder


def saved_model_class_map(model: Any, folder: Path | None) -> Path | None:
    """The class map of a SavedModel: its own ``class_map_path()`` asset, else a csv beside it."""
    if hasattr(model, "class_map_path"):
        try:
            path = Path(model.class_map_path().numpy().decode())
            if path.is_file():
                return path
        except Exception as e:
            log.debug("class_map_path() failed: %s", e)
    if folder is not None:
        for candidate in (folder / CLASS_MAP_CSV, folder.parent / CLASS_MAP_CSV):
            if candidate.is_file():
                return candidate
    return None


def read_class_map(path: Path | None) -> tuple[str, ...] | None:
    """The display names in a ``index,mid,display_name`` csv, in index order, or None."""
    if path is None:
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = sorted((int(r["index"]), r["display_name"]) for r in csv.DictReader(f))
    except (OSError, KeyError, ValueError) as e:
        log.warning("ignoring the class map %s: %s", path, e)
        return None
    if [i for i, _ in rows] != list(range(N_SCORES)):
        log.warning("ignoring the class map %s: expected indices 0..%d", path, N_SCORES - 1)
        return None
    return tuple(name for _, name in rows)


def file_sha256(path: Path | None) -> str | None:
    """SHA-256 of a file, or None when there is none."""
    if path is None or not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_threads(threads: int | None) -> int:
    """``threads``, or one per core when None."""
    return threads if threads else available_cores()
