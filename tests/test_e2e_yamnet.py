"""End to end with the real YAMNet TFLite from ../shared/models, found through SCANNER_MODEL_DIR only."""

from __future__ import annotations

import csv
import json
import shutil

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scanner.cli import cli


@pytest.fixture()
def env_models(model_dir, monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SCANNER_OFFLINE", "1")


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_scan_generated_audio_with_real_yamnet(audio_folder, tmp_path, env_models, suffix):
    out = tmp_path / f"r.{suffix}"
    result = CliRunner().invoke(cli, ["-q", "scan", str(audio_folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out) if suffix == "parquet" else pacsv.read_csv(out)
    rows = table.to_pylist()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    for col in ("path", "status", "error", "duration_s", "sample_rate", "channels", "label",
                "confidence", "mean_prob_cry", "mean_prob_screaming", "mean_prob_not_screaming", "backbone",
                "head"):
        assert col in table.column_names
    # Tones and noise are neither crying nor screaming.
    assert {r["label"] for r in rows} == {"not_screaming"}
    assert all(r["backbone"] == "yamnet" for r in rows)
    meta = (json.loads(table.schema.metadata[b"scanner"]) if suffix == "parquet"
            else json.loads((tmp_path / "r.csv.meta.json").read_text()))
    assert meta["backbones"][0]["format"] == "tflite"
    assert meta["options"]["backbones"] == ["yamnet"]


def test_real_clips_are_mostly_labelled_right(dataset_dir, tmp_path, env_models):
    """Four real clips per class, copied with their label folders: the default head gets them."""
    with open(dataset_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked: dict[str, list[str]] = {}
    for r in rows:
        if len(picked.setdefault(r["label"], [])) < 4 and \
                r["group"] not in {x[1] for x in picked[r["label"]]}:
            picked[r["label"]].append((r["file"], r["group"]))
    for label, files in picked.items():
        (tmp_path / "data" / label).mkdir(parents=True)
        for file, _ in files:
            shutil.copy(dataset_dir / file, tmp_path / "data" / label)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["-q", "scan", str(tmp_path / "data"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pylist()
    assert len(table) == 12
    right = sum(r["label"] == r["path"].split("/")[-2] for r in table)
    assert right >= 10, [(r["path"].split("/")[-2:], r["label"]) for r in table]


def test_clips_use_the_default_heads_short_recording_thresholds(dataset_dir, tmp_path, env_models):
    """Held-out test clips the soundscapes' thresholds get wrong and the clip thresholds right:
    two bursty 7 s cries (cry 0.6 finds them, 0.8 does not) and two negatives, a cat and a
    creaking door (screaming 0.9 drops them, 0.8 calls them screams)."""
    files = {"cry/37105492-58b1-432e-a1ce-ea154425abab-1430744728397-1.7-f-26--a0fda42d.flac": "cry",
             "cry/dc5429de-26b4-48e2-bc47-bc607b9bba06-1430741828918-1.7-f-72--d4939f7c.flac": "cry",
             "not_screaming/2-69131-B-038c7031.flac": "not_screaming",
             "not_screaming/4-108352-A-33-d5c4e651.flac": "not_screaming"}
    for file in files:
        (tmp_path / "data" / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dataset_dir / file, tmp_path / "data" / file)

    def labels(*extra: str) -> dict[str, str]:
        out = tmp_path / f"r{len(extra)}.parquet"
        result = CliRunner().invoke(cli, ["-q", "scan", str(tmp_path / "data"), "-o", str(out),
                                          *extra])
        assert result.exit_code == 0, result.output
        return {r["path"].split("/data/")[1]: r["label"] for r in pq.read_table(out).to_pylist()}

    assert labels() == files
    long = labels("--short-max", "0")  # every clip judged by the soundscapes' thresholds
    assert [long[f] for f in files] == ["not_screaming", "not_screaming", "screaming", "screaming"]
