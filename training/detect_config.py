"""The detection training configuration: one frozen record, written beside the head, replayable."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, fields
from typing import Any

from scanner.errors import ConfigError
from training.config import CLASS_WEIGHTS

ARCHS = ("context", "temporal")
"""Detection head architectures ``scanner train --detector --arch`` builds."""


@dataclass(frozen=True)
class DetectConfig:
    """Everything that decides a detection training run (``scanner train --detector``).

    Attributes:
        data_dir, out_dir, manifest, cache_dir, backbone, model, device: As for
            :class:`training.config.TrainConfig`.
        weak_dir: A folder with a ``manifest.csv`` of weakly labelled clips (bags whose
            label says where they come from, not what every moment holds); trained by
            multiple-instance learning, never used for evaluation.
        val, test: Fractions of groups for validation (calibration, thresholds, early
            stopping) and test (the reported figures). The defaults (0.2, 0.2) with seed 0
            give the project benchmark's split (``training.soundscapes.split_groups``).
        scales: Context scales (odd patch counts); ``(3,)`` is a plain window MLP.
        hidden, dropout, weight_decay, lr, batch_size, epochs, patience: The network and
            its fit.
        class_weight: Loss weight per class (``balanced``, ``sqrt``, ``none``).
        train_scene_hours: Hours of training soundscapes (0: clip windows only).
        train_scene_s: Length of one training scene.
        event_speed_semitones: Vari-speed augmentation of the training scenes' events: each
            is played faster or slower by up to this many semitones
            (:func:`training.scenes.varispeed`; 0: as recorded).
        val_hours, test_hours: Hours of validation and test soundscapes, made by the
            project benchmark's generator (``training.soundscapes.generate``) from each
            split's clips; the test set with ``test_hours`` 2 and seed 0 is the benchmark's.
        eval_minutes: Length range of those recordings, in minutes.
        mil: Use the weak bags (needs ``weak_dir``).
        hard_negative_weight: Weight (as copies) of background windows the first fit
            finds target-like (1: no mining; needs a second fit).
        fa_budget_per_hour: Threshold choice: the best event F1 whose false alarms per
            hour (all classes together) stay within this on validation soundscapes.
        seed: Seeds everything.
        name: Head name.
        arch: ``context`` (an MLP on multi-scale means of patches) or ``temporal`` (a dilated
            convolution over the patch sequence, :mod:`scanner.heads.temporal`; its width is
            the first of ``hidden``, and ``scales`` is not used).
        kernel, dilations: The temporal head's kernel (odd, in patches) and one dilation per
            residual block.
    """

    data_dir: str
    out_dir: str
    weak_dir: str | None = None
    manifest: str | None = None
    cache_dir: str | None = None
    backbone: str = "yamnet"
    model: str | None = None
    device: str = "auto"
    val: float = 0.2
    test: float = 0.2
    scales: tuple[int, ...] = (3, 7, 21)
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.3
    weight_decay: float = 1e-3
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 60
    patience: int = 8
    class_weight: str = "sqrt"
    train_scene_hours: float = 3.0
    train_scene_s: float = 120.0
    event_speed_semitones: float = 0.0
    val_hours: float = 3.0
    test_hours: float = 2.0
    eval_minutes: tuple[float, float] = (10.0, 30.0)
    mil: bool = True
    hard_negative_weight: int = 3
    fa_budget_per_hour: float = 5.0
    seed: int = 0
    name: str | None = None
    arch: str = "context"
    kernel: int = 5
    dilations: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "eval_minutes", tuple(float(m) for m in self.eval_minutes))
        if not (0 < self.val < 1 and 0 < self.test < 1 and self.val + self.test < 1):
            raise ConfigError(f"--val {self.val} and --test {self.test} must each be in (0, 1) "
                              "and leave data to train on")
        if not self.scales or any(s < 1 or s % 2 == 0 for s in self.scales):
            raise ConfigError(f"--scales must be odd patch counts, got {list(self.scales)}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}")
        if self.train_scene_hours < 0 or self.val_hours <= 0 or self.test_hours <= 0:
            raise ConfigError("--scene-hours must be >= 0, --val-hours and --test-hours > 0")
        lo, hi = self.eval_minutes
        if not 0 < lo <= hi:
            raise ConfigError(f"--eval-minutes must be LOW,HIGH with 0 < LOW <= HIGH, "
                              f"got {lo},{hi}")
        if self.arch not in ARCHS:
            raise ConfigError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.arch == "temporal" and (
                not self.hidden or self.kernel < 1 or self.kernel % 2 == 0
                or not self.dilations or any(d < 1 for d in self.dilations)):
            raise ConfigError("--arch temporal needs a width (--hidden-sizes), an odd --kernel "
                              f"and positive --dilations, got {list(self.hidden)}, "
                              f"{self.kernel}, {list(self.dilations)}")
        if self.hard_negative_weight < 1:
            raise ConfigError("--hard-negative-weight must be >= 1")
        if not 0 <= self.event_speed_semitones <= 12:
            raise ConfigError(f"--event-speed must be 0-12 semitones, "
                              f"got {self.event_speed_semitones}")
        if self.mil and not self.weak_dir:
            object.__setattr__(self, "mil", False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scales"], out["hidden"] = list(self.scales), list(self.hidden)
        out["eval_minutes"] = list(self.eval_minutes)
        out["dilations"] = list(self.dilations)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown detection config keys: {', '.join(unknown)}")
        return cls(**data)

    def command(self) -> str:
        """The ``scanner train --detector`` command line that reproduces this run."""
        args = ["scanner", "train", self.data_dir, "-o", self.out_dir, "--detector"]
        if self.weak_dir:
            args += ["--weak", self.weak_dir]
        for flag, value in (("--manifest", self.manifest), ("--cache-dir", self.cache_dir),
                            ("--model", self.model), ("--name", self.name)):
            if value:
                args += [flag, value]
        args += ["--backbone", self.backbone, "--val", str(self.val), "--test", str(self.test),
                 *(["--scales", ",".join(map(str, self.scales))] if self.arch == "context" else []),
                 "--hidden-sizes", ",".join(map(str, self.hidden)) or "0",
                 "--dropout", str(self.dropout), "--weight-decay", str(self.weight_decay),
                 "--lr", str(self.lr), "--batch-size", str(self.batch_size),
                 "--epochs", str(self.epochs), "--patience", str(self.patience),
                 "--class-weight", self.class_weight,
                 "--scene-hours", str(self.train_scene_hours),
                 *(["--event-speed", f"{self.event_speed_semitones:g}"]
                   if self.event_speed_semitones else []),
                 "--val-hours", f"{self.val_hours:g}", "--test-hours", f"{self.test_hours:g}",
                 "--eval-minutes", ",".join(f"{m:g}" for m in self.eval_minutes),
                 "--hard-negative-weight", str(self.hard_negative_weight),
                 "--fa-budget", str(self.fa_budget_per_hour), "--seed", str(self.seed)]
        if self.arch != "context":
            args += ["--arch", self.arch, "--kernel", str(self.kernel),
                     "--dilations", ",".join(map(str, self.dilations))]
        if self.weak_dir and not self.mil:
            args.append("--no-mil")
        return shlex.join(args)
