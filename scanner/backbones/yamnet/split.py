"""YAMNet's TFLite file cut in two at the patch tensor: the log-mel front end and the patch network.

The converted model turns a waveform into log-mel frames, frames those into 0.96 s patches
(``[N, 96, 64, 1]``, the first convolution's input) and runs MobileNet on each patch. Many
short clips packed into one waveform pay for the patches that straddle two clips (2 per
clip, see :mod:`scanner.backbones.yamnet.frames`). Cut in two, the front end (about a
quarter of the work) still runs on packed waveforms, but the network runs only on the
patches clips need, taken from any number of clips: on 3 s clips that is a quarter less
work for the expensive half.

Both halves keep the original ops and weights, so their results equal the whole model's.
:func:`split_yamnet` gives up on a model it does not recognise, and :func:`load_split`
checks the halves against the whole model on a test waveform; either way the caller then
keeps the whole model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanner.backbones.yamnet.frames import PATCH_FRAMES, PATCH_HOP_FRAMES
from scanner.backbones.yamnet.runtime import EMBEDDING_DIM, N_MELS, N_SCORES, Outputs, TFLiteRunner

log = logging.getLogger(__name__)

PATCH_SHAPE = (PATCH_FRAMES, N_MELS, 1)


@dataclass(frozen=True)
class SplitModel:
    """The two halves, as TFLite flatbuffers."""

    frontend: bytes  # waveform -> log-mel frames [M, 64]
    network: bytes  # patches [N, 96, 64, 1] -> scores [N, 521], embeddings [N, 1024]


def _flatbuffers() -> tuple[Any, Any]:
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:  # the converter tools that ship inside tensorflow
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils, schema


def load_split(path: Path) -> SplitModel | None:
    """Reads and cuts a YAMNet ``.tflite`` file, and checks that the halves give the whole
    model's outputs on a test waveform; None (the caller keeps the whole model) otherwise."""
    try:
        content = path.read_bytes()
    except OSError:
        return None
    split = split_yamnet(content)
    if split is None:
        return None
    x = (0.1 * np.random.default_rng(0).standard_normal(40_000)).astype(np.float32)
    try:
        whole = TFLiteRunner(content, threads=1, what=str(path))(x)
        halves = SplitRunner(split, threads=1, what=str(path))(x)
    except Exception as e:  # noqa: BLE001 - the whole model is the fallback, and is checked
        log.debug("the cut YAMNet model does not run: %s", e, exc_info=True)
        return None
    if not all(a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5)
               for a, b in zip(whole, halves, strict=True)):
        log.warning("%s: the model cut at its patch tensor does not match the whole model; "
                    "running it whole", path)
        return None
    return split


def split_yamnet(content: bytes) -> SplitModel | None:
    """Cuts a YAMNet ``.tflite`` model at its patch tensor; None if it is not laid out as expected.

    Args:
        content: The model file's bytes.
    """
    try:
        return _split(content)
    except Exception as e:  # an unexpected layout: the whole model still works
        log.debug("cannot split the YAMNet TFLite model: %s", e, exc_info=True)
        return None


def _split(content: bytes) -> SplitModel | None:
    fb, schema = _flatbuffers()
    model = fb.read_model_from_bytearray(bytearray(content))
    if len(model.subgraphs) != 1:
        return None
    graph = model.subgraphs[0]
    outputs = {int(graph.tensors[t].shape[-1]): int(t) for t in graph.outputs}
    if len(graph.inputs) != 1 or sorted(outputs) != [N_MELS, N_SCORES, EMBEDDING_DIM]:
        return None
    waveform = int(graph.inputs[0])
    conv = schema.BuiltinOperator.CONV_2D
    first_conv = next((op for op in graph.operators
                       if fb.get_builtin_code_from_operator_code(
                           model.operatorCodes[op.opcodeIndex]) == conv), None)
    if first_conv is None:
        return None
    cut = int(first_conv.inputs[0])
    signature = graph.tensors[cut].shapeSignature
    if signature is None or tuple(signature[1:]) != PATCH_SHAPE:
        return None
    producer = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    network_ops = _needed(graph, producer, [outputs[N_SCORES], outputs[EMBEDDING_DIM]], stop=cut)
    frontend_ops = _needed(graph, producer, [outputs[N_MELS]], stop=None)
    if cut not in {int(t) for i in network_ops for t in graph.operators[i].inputs}:
        return None
    operators = graph.operators
    model.signatureDefs = []
    graph.inputs = np.array([cut], np.int32)
    graph.outputs = np.array([outputs[N_SCORES], outputs[EMBEDDING_DIM]], np.int32)
    graph.operators = [operators[i] for i in network_ops]
    network = bytes(fb.convert_object_to_bytearray(model))
    graph.inputs = np.array([waveform], np.int32)
    graph.outputs = np.array([outputs[N_MELS]], np.int32)
    graph.operators = [operators[i] for i in frontend_ops]
    frontend = bytes(fb.convert_object_to_bytearray(model))
    return SplitModel(frontend, network)


def _needed(graph: Any, producer: dict[int, int], outputs: list[int], *, stop: int | None
            ) -> list[int]:
    """Indices of the ops that ``outputs`` depend on (not looking past ``stop``), in order."""
    needed: set[int] = set()
    todo = list(outputs)
    while todo:
        tensor = todo.pop()
        if tensor == stop or tensor not in producer or producer[tensor] in needed:
            continue
        needed.add(producer[tensor])
        todo += [int(t) for t in graph.operators[producer[tensor]].inputs if t >= 0]
    return sorted(needed)


def patch_view(frames: NDArray[np.float32], patches: int) -> NDArray[np.float32]:
    """The first ``patches`` patches of log-mel ``frames`` ``[M, 64]``, as a ``[patches, 96, 64]``
    view (patch ``j`` is frames ``[48 j, 48 j + 96)``, as in the model)."""
    need = PATCH_FRAMES + PATCH_HOP_FRAMES * (patches - 1)
    if len(frames) < need:
        raise ValueError(f"{len(frames)} log-mel frames cannot make {patches} patches")
    windows = np.lib.stride_tricks.sliding_window_view(frames[:need], PATCH_FRAMES, axis=0)
    return windows[::PATCH_HOP_FRAMES].transpose(0, 2, 1)


class SplitRunner:
    """The two halves on TFLite interpreters (one copy: never used by two threads at once).

    Args:
        split: The halves (see :func:`split_yamnet`).
        threads: Threads of each interpreter.
        what: The model's name, for messages.
    """

    format = "tflite"
    packs = True  # the front end still runs on packed waveforms: few, large calls
    call_s = TFLiteRunner.call_s
    network_patches = 16
    """Patches per network call: on one thread, 16 ran faster than 32 or 64 (cache)."""

    def __init__(self, split: SplitModel, *, threads: int | None, what: str) -> None:
        self.frontend = TFLiteRunner(split.frontend, threads=threads, what=f"{what} (front end)")
        self.network = TFLiteRunner(split.network, threads=threads, what=f"{what} (network)")

    def frames(self, waveform: NDArray[np.float32]) -> NDArray[np.float32]:
        """Log-mel frames ``[M, 64]`` of a waveform."""
        return self.frontend.run(waveform)[0]

    def patches(self, patches: NDArray[np.float32]) -> Outputs:
        """Scores and embeddings of ``[N, 96, 64]`` log-mel patches."""
        return self.network(np.ascontiguousarray(patches, dtype=np.float32)[..., None])

    def __call__(self, waveform: NDArray[np.float32]) -> Outputs:
        """The whole model's outputs for one waveform (as many patches as it makes)."""
        frames = self.frames(waveform)
        return self.patches(patch_view(frames, 1 + (len(frames) - PATCH_FRAMES) // PATCH_HOP_FRAMES))
