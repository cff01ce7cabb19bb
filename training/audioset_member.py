"""The zero-shot AudioSet head on embeddings: ``python -m training.audioset_member OUT``.

YAMNet's score for an AudioSet class is ``sigmoid(embedding @ w + b)``, one row of its last
layer. This writes the built-in ``audioset`` head (its class mapping and calibrated weights
unchanged) with the rows of its mapped classes copied out of the TFLite model as a score
layer, so the head reads patch embeddings: it can sit in an ensemble beside heads on
embeddings (the built-in ``detector``'s ``audioset/`` member) and be scored on cached
embeddings. The rows are dequantised from the model's int8 weights; the scores they give
match the model's own to within 0.005 (``tests/test_heads_audioset_member.py``).

    python -m training.audioset_member heads/audioset-emb --model ../shared/models/yamnet/yamnet.tflite
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ModelNotFoundError

log = logging.getLogger(__name__)

N_CLASSES = 521  # YAMNet's AudioSet classes


def _interpreter(model: Path):  # type: ignore[no-untyped-def]
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    return interpreter


def classifier_layer(model: Path) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """YAMNet's last layer from a ``.tflite`` file: ``weight [521, dim]`` (dequantised) and
    ``bias [521]``.

    Raises:
        ModelNotFoundError: No such file, or no single ``[521, dim]`` weight and ``[521]`` bias.
    """
    if not Path(model).is_file():
        raise ModelNotFoundError(f"{model}: no such TFLite model")
    interpreter = _interpreter(Path(model))
    weights, biases = [], []
    for d in interpreter.get_tensor_details():
        shape = tuple(int(v) for v in d["shape"])
        if len(shape) == 2 and shape[0] == N_CLASSES and shape[1] > 1:
            q = interpreter.get_tensor(d["index"]).astype(np.float32)
            params = d.get("quantization_parameters") or {}
            scales = np.asarray(params.get("scales", []), np.float32)
            zeros = np.asarray(params.get("zero_points", []), np.float32)
            if scales.size == N_CLASSES:  # per-row (per-channel) int8
                q = (q - zeros[:, None]) * scales[:, None]
            elif scales.size == 1:
                q = (q - zeros[0]) * scales[0]
            weights.append(q)
        elif shape == (N_CLASSES,) and np.dtype(d["dtype"]) == np.float32:
            try:
                biases.append(interpreter.get_tensor(d["index"]).astype(np.float32))
            except ValueError:  # an activation, not a constant
                continue
    if len(weights) != 1 or len(biases) != 1:
        raise ModelNotFoundError(f"{model}: expected one [{N_CLASSES}, dim] weight and one "
                                 f"[{N_CLASSES}] bias, found {len(weights)} and {len(biases)}")
    return weights[0], biases[0]


def embedding_head(model: Path, name: str = "audioset"):  # type: ignore[no-untyped-def]
    """The built-in ``audioset`` head with a score layer from ``model``."""
    from scanner.heads import load_head
    from scanner.heads.audioset import AudioSetHead

    base = load_head("audioset")
    assert isinstance(base, AudioSetHead)
    w, b = classifier_layer(model)
    names = list(base.score_index)
    rows = [base.score_index[n] for n in names]
    extra = dict(base.extra)
    extra["score_layer_source"] = {"model": Path(model).name, "rows": dict(zip(names, rows, strict=True))}
    return AudioSetHead(classes=base.classes, score_index={n: i for i, n in enumerate(names)},
                        mapped=base.mapped, weight=base.weight, bias=base.bias,
                        pooling=base.pooling, name=name, extra=extra,
                        score_layer=(w[rows], b[rows]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="new head folder")
    ap.add_argument("--model", type=Path, help="YAMNet .tflite (default: from SCANNER_MODEL_DIR)")
    ap.add_argument("--name", default="audioset")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.out.exists():
        ap.error(f"{args.out} exists already")
    model = args.model
    if model is None:
        from scanner.backbones.sources import model_dir

        model = Path(model_dir() or ".") / "yamnet" / "yamnet.tflite"
    embedding_head(model, args.name).save(args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
