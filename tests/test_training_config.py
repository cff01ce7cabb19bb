"""TrainConfig: validation, dict round trip, per-backbone learning rates, the reproduce command."""

from __future__ import annotations

import json
import shlex

import pytest

from scanner.errors import ConfigError
from training.config import TrainConfig, default_lr


def test_dict_round_trip_through_json() -> None:
    cfg = TrainConfig("data", "out", backbone="fake", hidden=(128, 64), seed=3, lr=2e-3)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert back.hidden == (128, 64)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        TrainConfig.from_dict({"data_dir": "d", "out_dir": "o", "bogus": 1})


def test_default_learning_rates() -> None:
    assert TrainConfig("d", "o", backbone="yamnet").learning_rate == 5e-4
    assert TrainConfig("d", "o", backbone="wav2vec2").learning_rate == 1e-4
    assert TrainConfig("d", "o", backbone="wav2vec2", lr=0.01).learning_rate == 0.01
    assert default_lr("fake") == 1e-3


@pytest.mark.parametrize("kwargs", [
    {"val": 0.5, "test": 0.5}, {"val": 0.0}, {"hidden": (0,)}, {"dropout": 1.0},
    {"epochs": 0}, {"lr": -1.0}, {"band_limit_prob": 1.5}, {"band_limit_hz": 9000},
    {"pooling": "median"}, {"weight_decay": -1.0},
])
def test_bad_values(kwargs) -> None:
    with pytest.raises(ConfigError):
        TrainConfig("d", "o", **kwargs)


def test_command_replays_the_config() -> None:
    cfg = TrainConfig("my data", "heads/x", backbone="fake", hidden=(32, 16), dropout=0.1,
                      band_limit_prob=0.0)
    args = shlex.split(cfg.command())
    assert args[:3] == ["scanner", "train", "my data"]
    assert args[args.index("--hidden-sizes") + 1] == "32,16"
    assert args[args.index("--lr") + 1] == "0.001"
    assert args[args.index("--band-limit-prob") + 1] == "0.0"


def test_command_names_folds_and_refit_only_when_it_applies() -> None:
    single = shlex.split(TrainConfig("d", "o", refit=False).command())
    assert "--no-refit" in single and single[single.index("--folds") + 1] == "1"
    folds = shlex.split(TrainConfig("d", "o", folds=5, class_weight="none").command())
    assert "--refit" not in folds and "--no-refit" not in folds
    assert folds[folds.index("--folds") + 1] == "5"
    assert folds[folds.index("--class-weight") + 1] == "none"
    with pytest.raises(ConfigError):
        TrainConfig("d", "o", folds=0)
    with pytest.raises(ConfigError):
        TrainConfig("d", "o", class_weight="heavy")


def test_detector_command_names_the_event_speed_only_when_it_is_used() -> None:
    from training.detect_config import DetectConfig

    plain = shlex.split(DetectConfig("d", "o").command())
    assert "--event-speed" not in plain
    fast = shlex.split(DetectConfig("d", "o", event_speed_semitones=3.0).command())
    assert fast[fast.index("--event-speed") + 1] == "3"
    with pytest.raises(ConfigError, match="--event-speed"):
        DetectConfig("d", "o", event_speed_semitones=13.0)
