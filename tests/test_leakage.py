"""Which benchmark clips a head was trained on (training/leakage.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from scanner.heads import builtin_heads
from training.leakage import clips_seen, split_overlap


def _head(folder: Path, rows: list[tuple[str, str]], *, final: bool = False,
          refit: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "head.json").write_text(json.dumps({
        "kind": "mlp", "training": {"config": {"final": final, "refit": refit}}}))
    with (folder / "split.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "split"])
        w.writerows([(p, "cry", p, s) for p, s in rows])
    return folder


def test_a_head_was_fit_on_its_training_clips_refit_on_validation_final_on_test(tmp_path):
    rows = [("a.wav", "train"), ("b.wav", "val"), ("c.wav", "test"), ("d.wav", "fold3")]
    assert clips_seen(_head(tmp_path / "plain", rows)) == {"a.wav", "d.wav"}
    assert clips_seen(_head(tmp_path / "refit", rows, refit=True)) == {"a.wav", "b.wav", "d.wav"}
    assert clips_seen(_head(tmp_path / "final", rows, final=True)) == {"a.wav", "b.wav", "c.wav",
                                                                       "d.wav"}
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "head.json").write_text("{}")
    assert clips_seen(tmp_path / "bare") is None


def test_an_ensembles_members_are_checked_one_by_one(tmp_path):
    ens = tmp_path / "ens"
    _head(ens / "clip", [("a.wav", "train"), ("x.wav", "val"), ("c.wav", "test")], final=True)
    _head(ens / "context", [("a.wav", "train"), ("c.wav", "test")])
    (ens / "other").mkdir()
    (ens / "other" / "head.json").write_text("{}")
    (ens / "head.json").write_text(json.dumps({"kind": "ensemble", "members": [
        {"folder": "clip", "weight": 1}, {"folder": "context", "weight": 1},
        {"folder": "other", "weight": 1}]}))
    benchmark = {"val": {"x.wav"}, "test": {"c.wav", "z.wav"}}
    assert split_overlap(ens, benchmark) == {"clip": {"val": 1, "test": 1},
                                             "context": {"val": 0, "test": 0},
                                             "other": {"known": False}}


def test_the_former_default_was_fit_on_every_clip_it_lists():
    folder = builtin_heads()["clip-linear"]
    with (folder / "split.csv").open(newline="") as f:
        listed = {r["path"] for r in csv.DictReader(f)}
    assert clips_seen(folder) == listed  # --final: its test clips too


def test_no_member_of_the_default_detector_saw_a_benchmark_test_or_validation_clip(
        dataset_dir):
    from training.dataset import load_dataset
    from training.detect import benchmark_split
    from training.detect_config import DetectConfig

    config = DetectConfig(data_dir=str(dataset_dir), out_dir="unused")
    dataset = load_dataset(config.data_dir, config.manifest)
    items = list(dataset.items)
    splits = benchmark_split([it.label for it in items], [it.group for it in items], config)
    benchmark = {s: {dataset.relpath(it) for it, p in zip(items, splits, strict=True) if p == s}
                 for s in ("val", "test")}
    assert all(len(v) > 400 for v in benchmark.values())
    folder = builtin_heads()["detector"]
    members = [m["folder"] for m in json.loads((folder / "head.json").read_text())["members"]]
    overlap = split_overlap(folder, benchmark)
    assert set(overlap) == set(members)
    trained = [m for m in members if m != "audioset"]  # audioset: zero-shot, fit on nothing here
    assert trained and overlap["audioset"] == {"known": False}
    for m in trained:
        assert overlap[m] == {"val": 0, "test": 0}, m
        assert len(clips_seen(folder / m)) == 1530  # its training split, v1 and v2
    # the former default, fit on every v1 clip, would not pass
    assert split_overlap(builtin_heads()["clip-linear"], benchmark)["clip-linear"]["test"] > 100
