"""Fuzzed audio files: every mangled file gets exactly one row, with a known error kind."""


import tempfile
import typing
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.config import ScanConfig
from scanner.engines.driver import load_classifier, scan
from scanner.errors import ErrorKind
from scanner.testing import (
    chirp,
    fake_scan_config,
    rows_by_name,
    sine,
    write_audio,
)

SR = 16000
CLASSES = ("cry", "screaming", "not_screaming")
UNICODE_NAME = "música infantil – 子守唄.wav"
ERROR_KINDS = set(typing.get_args(ErrorKind))


def _fake(head: Path, **kw) -> ScanConfig:
    return fake_scan_config(head, **kw)


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return rows_by_name(rows)


# --- fuzzing ----------------------------------------------------------------------------------


def _seed_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as d:
        x = chirp(300, 2000, 0.6, 8000, amplitude=0.5)
        return {ext: write_audio(Path(d) / f"s{ext}", x, 8000).read_bytes()
                for ext in (".wav", ".flac", ".ogg")}


SEED_FILES = _seed_files()


@st.composite
def damaged_file(draw: st.DrawFn) -> tuple[str, bytes]:
    ext = draw(st.sampled_from(sorted(SEED_FILES) + [".mp3", ".m4a"]))
    if ext not in SEED_FILES or draw(st.integers(0, 3)) == 0:
        return ext, draw(st.binary(max_size=3000))
    data = bytearray(SEED_FILES[ext])
    for _ in range(draw(st.integers(0, 10))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return ext, bytes(data[:draw(st.integers(0, len(data)))])


@pytest.fixture(scope="module")
def fuzz_classifier(tmp_path_factory):
    from scanner.backbones import load_backbone
    from scanner.heads.mlp import MLPHead

    backbone = load_backbone("fake")
    rng = np.random.default_rng(1)
    head = MLPHead(classes=CLASSES, backbone_config={**backbone.config(), **backbone.identity},
                   layers=[(rng.standard_normal((8, 16)), rng.standard_normal(8)),
                           (rng.standard_normal((3, 8)), rng.standard_normal(3))],
                   mean=np.full(16, -5.0), std=np.full(16, 3.0), name="fuzz-head")
    folder = head.save(tmp_path_factory.mktemp("head") / "fuzz-head")
    config = _fake(folder, workers=0)
    return config, load_classifier(config)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(damaged_file(), min_size=1, max_size=6))
def test_fuzzed_folder_gives_one_row_per_file(fuzz_classifier, files):
    config, classifier = fuzz_classifier
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "in"
        folder.mkdir()
        written = [folder / "good.wav"]
        sf.write(written[0], sine(440, 0.5, SR), SR)
        for i, (ext, data) in enumerate(files):
            written.append(folder / f"f{i}{ext}")
            written[-1].write_bytes(data)
        out = Path(d) / "r.parquet"
        summary = scan([folder], out, config, classifier=classifier)
        rows = pq.read_table(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in written)
    assert summary.files == len(written) == summary.ok + summary.errors
    for r in rows:
        assert r["status"] in ("ok", "error")
        if r["status"] == "error":
            assert r["error"] and r["error_kind"] in ERROR_KINDS
            assert r["error_kind"] != "internal", r["error"]
        else:
            assert abs(sum(r[f"mean_prob_{c}"] for c in CLASSES) - 1) < 1e-5
    assert _by_name(rows)["good.wav"]["status"] == "ok"

