"""scanner.evaluate.results: matching truth files to scanned paths, and reading a scan's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from scanner.errors import ConfigError
from scanner.evaluate.results import detection_settings, load_results, load_windows, match_references
from scanner.evaluate.truth import Reference

PATHS = ["/data/night/a.flac", "/data/day/a.flac", "/data/day/b.wav", "/data/c.mp3"]


def _ref(file: str) -> Reference:
    return Reference(file=file, label="cry", onset_s=1.0, offset_s=2.0, source="t.csv:2")


@pytest.mark.parametrize(("file", "path"), [
    ("night/a.flac", "/data/night/a.flac"),     # relative path
    ("b.wav", "/data/day/b.wav"),               # name
    ("b", "/data/day/b.wav"),                   # stem (Audacity, per-file Raven)
    ("day/a", "/data/day/a.flac"),              # relative stem (label files in subfolders)
    ("C:/Users/me/data/c.mp3", "/data/c.mp3"),  # a Raven Begin Path from another machine
])
def test_match_by_relative_path_name_or_stem(file: str, path: str) -> None:
    matched, unmatched = match_references([_ref(file)], PATHS)
    assert list(matched) == [path] and unmatched == []


def test_ambiguous_and_unmatched() -> None:
    with pytest.raises(ConfigError, match="'a.flac' .* matches 2 scanned files"):
        match_references([_ref("a.flac")], PATHS)
    matched, unmatched = match_references([_ref("zzz.wav"), _ref("zzz.wav")], PATHS)
    assert matched == {} and unmatched == ["zzz.wav"]


def _scan_tables(tmp_path: Path, fmt: str, meta: dict) -> Path:
    files = pa.table({"path": ["/x/a.flac", "/x/b.flac", "/x/bad.flac"], "status": ["ok", "ok", "error"],
                      "error": [None, None, "not audio"], "duration_s": [60.0, 30.0, None],
                      "prob_cry": [0.1, 0.2, None], "prob_screaming": [0.1, 0.2, None],
                      "prob_not_screaming": [0.8, 0.6, None]})
    events = pa.table({"path": ["/x/a.flac", "/x/a.flac"], "label": ["screaming", "cry"],
                       "start_s": [20.0, 3.0], "end_s": [22.0, 5.0],
                       "peak_confidence": [0.9, 0.8], "mean_confidence": [0.7, 0.6]})
    segments = pa.table({"path": ["/x/a.flac", "/x/a.flac", "/x/b.flac"], "start_s": [0.48, 0.0, 0.0],
                         "end_s": [1.92, 1.44, 1.44], "label": ["cry"] * 3, "confidence": [0.5] * 3,
                         "prob_cry": [0.6, 0.5, 0.1], "prob_screaming": [0.2, 0.3, 0.1],
                         "prob_not_screaming": [0.2, 0.2, 0.8]})
    out = tmp_path / f"r.{fmt}"
    for table, path in ((files, out), (events, tmp_path / f"r.events.{fmt}"),
                        (segments, tmp_path / f"r.segments.{fmt}")):
        if fmt == "parquet":
            pq.write_table(table.replace_schema_metadata({b"scanner": json.dumps(meta).encode()}), path)
        else:
            pcsv.write_csv(table, path)
    if fmt == "csv":
        (tmp_path / "r.csv.meta.json").write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_load_results_and_windows(tmp_path: Path, fmt: str) -> None:
    meta = {"classes": ["cry", "screaming", "not_screaming"],
            "options": {"segments": {"window_s": 1.44, "hop_s": 0.48, "background": "not_screaming"}}}
    scan = load_results(_scan_tables(tmp_path, fmt, meta))
    assert scan.targets == ("cry", "screaming")
    assert scan.durations_s == {"/x/a.flac": 60.0, "/x/b.flac": 30.0}
    assert scan.errors == [{"path": "/x/bad.flac", "error": "not audio"}]
    assert scan.events == {"/x/a.flac": [("cry", 3.0, 5.0), ("screaming", 20.0, 22.0)]}
    assert scan.detection["window_s"] == 1.44
    windows = load_windows(scan)
    assert list(windows["/x/a.flac"].starts_s) == [0.0, 0.48]  # sorted by time
    assert windows["/x/a.flac"].probs[0].tolist() == [0.5, 0.3, 0.2]


def test_detection_settings_prefer_the_detection_key() -> None:
    assert detection_settings({"detection": {"window_s": 2.0}, "options": {"segments": {"window_s": 1.0}}}) \
        == {"window_s": 2.0}
    assert detection_settings({"options": {"segments": None}}) == {}


def test_not_a_results_table_or_no_events(tmp_path: Path) -> None:
    pq.write_table(pa.table({"path": ["a"], "label": ["cry"]}), tmp_path / "e.parquet")
    with pytest.raises(ConfigError, match="not a results table"):
        load_results(tmp_path / "e.parquet")
    pq.write_table(pa.table({"path": ["a"], "status": ["ok"], "duration_s": [1.0]}), tmp_path / "r.parquet")
    with pytest.raises(ConfigError, match="no events table r.events.parquet"):
        load_results(tmp_path / "r.parquet")
