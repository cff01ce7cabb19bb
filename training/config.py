"""The training configuration: one frozen record, written beside the head and replayable."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from scanner.errors import ConfigError

DEFAULT_LR: dict[str, float] = {
    # The published recipe's learning rates (Adam, batch 32).
    "yamnet": 5e-4,
    "wav2vec2": 1e-4,
}
FALLBACK_LR = 1e-3
CLASS_WEIGHTS = ("balanced", "sqrt", "none")


def default_lr(backbone: str) -> float:
    """The learning rate used for ``backbone`` when none is given."""
    return DEFAULT_LR.get(backbone, FALLBACK_LR)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (paths as strings so the record is plain JSON).

    Attributes:
        data_dir: Folder with one subfolder per label, or the folder of ``manifest``.
        out_dir: Head folder to write (head.json, weights, metrics, plots, report).
        backbone: Registered backbone name.
        model: Backbone source (file, folder or hub handle); None: the default place.
        manifest: CSV with ``path`` (or ``file``), ``label`` and optional ``group`` columns,
            paths relative to the CSV's folder. None: ``data_dir/manifest.csv`` when it has
            a ``group`` column, else the label subfolders.
        cache_dir: Embedding cache folder; None: the user cache dir.
        val, test: Fractions of the data (by group) held out for validation and test.
        seed: Seeds the split, the weight initialisation, batching and augmentation.
        hidden: Hidden layer sizes (empty: a linear softmax classifier).
        dropout: Dropout after each hidden layer.
        weight_decay: Adam's L2 penalty.
        epochs: Most epochs; training stops earlier after ``patience`` epochs without a
            better validation loss.
        lr: Adam's learning rate; None: :func:`default_lr` for the backbone.
        batch_size: Clips per optimisation step.
        workers: Decode processes (None: one per core).
        device: Backbone device (``auto``, ``cpu``, ``cuda``).
        band_limit_prob: Chance, per clip and epoch, of training on its band-limited view.
        band_limit_hz: Cut-off of the band-limited view and of the band-limited test check.
        pooling: How patch embeddings are pooled into one vector per clip.
        class_weight: Loss weight per class: ``balanced`` (inverse frequency), ``sqrt``
            (its square root) or ``none``.
        refit: After early stopping has chosen the number of epochs on validation, train
            the head again on train + validation for that many epochs (test stays held
            out). Validation metrics and thresholds come from the early-stopped model.
            Unused with ``folds > 1``.
        folds: 1: one train/validation split. K > 1: cross-fitting: train + validation are
            cut into K grouped folds, member i trains on the others and early-stops on
            fold i, and the head averages the K members (every non-test file is
            validation once; the validation metrics are out-of-fold).
        final: After the held-out evaluation, fit the written head again with the same
            recipe on every labelled file, test included (needs ``folds > 1``: the folds
            then cover all files and pick the epochs). The metrics, plots and report
            describe the evaluated model; the head gains the data it was tested on.
        name: Head name; None: the output folder's name.
    """

    data_dir: str
    out_dir: str
    backbone: str = "yamnet"
    model: str | None = None
    manifest: str | None = None
    cache_dir: str | None = None
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    hidden: tuple[int, ...] = field(default=(256,))
    dropout: float = 0.3
    weight_decay: float = 1e-4
    epochs: int = 200
    patience: int = 20
    lr: float | None = None
    batch_size: int = 32
    workers: int | None = None
    device: str = "auto"
    band_limit_prob: float = 0.5
    band_limit_hz: int = 4000
    pooling: str = "mean"
    class_weight: str = "balanced"
    refit: bool = True
    folds: int = 1
    final: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not (0 < self.val < 1 and 0 < self.test < 1 and self.val + self.test < 1):
            raise ConfigError(f"--val {self.val} and --test {self.test} must each be in (0, 1) "
                              "and leave data to train on")
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden layer sizes must be positive, got {list(self.hidden)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ConfigError("--epochs, --patience and --batch-size must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.band_limit_prob <= 1:
            raise ConfigError(f"--band-limit-prob must be in [0, 1], got {self.band_limit_prob}")
        if not 0 < self.band_limit_hz < 8000:
            raise ConfigError(f"--band-limit-hz must be in (0, 8000), got {self.band_limit_hz}")
        if self.pooling not in ("mean", "max"):
            raise ConfigError(f"pooling must be 'mean' or 'max', got {self.pooling!r}")
        if self.folds < 1:
            raise ConfigError(f"--folds must be >= 1, got {self.folds}")
        if self.final and self.folds < 2:
            raise ConfigError("--final needs --folds 2 or more (the folds choose the epochs)")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, "
                              f"got {self.class_weight!r}")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the backbone's default."""
        return self.lr if self.lr is not None else default_lr(self.backbone)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Builds a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        values = dict(data)
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def command(self) -> str:
        """The ``scanner train`` command line that reproduces this run."""
        args = ["scanner", "train", self.data_dir, "-o", self.out_dir,
                "--backbone", self.backbone]
        if self.model:
            args += ["--model", self.model]
        if self.manifest:
            args += ["--manifest", self.manifest]
        if self.cache_dir:
            args += ["--cache-dir", self.cache_dir]
        args += ["--val", str(self.val), "--test", str(self.test), "--seed", str(self.seed),
                 "--hidden-sizes", ",".join(map(str, self.hidden)) or "0",
                 "--dropout", str(self.dropout), "--weight-decay", str(self.weight_decay),
                 "--epochs", str(self.epochs), "--patience", str(self.patience),
                 "--lr", str(self.learning_rate), "--batch-size", str(self.batch_size),
                 "--band-limit-prob", str(self.band_limit_prob),
                 "--band-limit-hz", str(self.band_limit_hz),
                 "--class-weight", self.class_weight,
                 "--folds", str(self.folds)]
        if self.folds == 1:
            args.append("--refit" if self.refit else "--no-refit")
        if self.final:
            args.append("--final")
        if self.pooling != "mean":
            args += ["--pooling", self.pooling]
        if self.name:
            args += ["--name", self.name]
        return shlex.join(args)
