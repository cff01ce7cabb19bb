"""The embedding-export sink: FileResults from the fake backbone in, r.embeddings.parquet out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.backbones import load_backbone
from scanner.classify import Classifier, Model
from scanner.errors import ScannerError
from scanner.heads import load_head
from scanner.output.vectors import VectorSink, read_metadata, read_vectors, vectors_path
from scanner.records import AudioFile, DecodeFailure, DecodeTask

try:  # the driver's rewrite moves FileResult to scanner.records
    from scanner.records import ClipInfo, FileResult  # type: ignore[attr-defined]
except ImportError:
    from scanner.engines.local import ClipInfo, FileResult


def _result(path: Path, seconds: float, seed: int, backbone) -> tuple[FileResult, dict]:
    rng = np.random.default_rng(seed)
    wave = (0.2 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    file = AudioFile(path, 1000 + seed, seed)
    info = ClipInfo(16000, 1, seconds, "soundfile", 0.01)
    result = FileResult(file, info, {"fake": backbone.embed(wave)})
    return result, {"path": str(path), "status": "ok", "duration_s": seconds}


def _failed(path: Path) -> tuple[FileResult, dict]:
    file = AudioFile(path, 1, 1)
    failure = DecodeFailure(DecodeTask(file), "not_audio", "not audio")
    return FileResult(file, failure=failure), {"path": str(path), "status": "error",
                                               "duration_s": None}


@pytest.fixture()
def classifier(fake_head: Path) -> Classifier:
    return Classifier([Model(load_backbone("fake"), load_head(fake_head, backbone="fake"))])


def test_sink_writes_every_patch_as_float16_with_identity(tmp_path: Path, classifier: Classifier
                                                          ) -> None:
    backbone = classifier.backbones[0]
    out = tmp_path / "r.parquet"
    sink = VectorSink(out, classifier, None, resume=False)
    a, row_a = _result(tmp_path / "a.wav", 3.0, 1, backbone)
    b, row_b = _result(tmp_path / "b.wav", 5.3, 2, backbone)
    bad, row_bad = _failed(tmp_path / "bad.wav")
    sink.add(b, row_b, None)
    sink.commit(1)
    sink.add(a, row_a, None)
    sink.add(bad, row_bad, None)
    assert sink.finish(drop_paths=set()) == {"fake": a.embeddings["fake"].n_patches
                                             + b.embeddings["fake"].n_patches}
    path = vectors_path(out)
    assert path == tmp_path / "r.embeddings.parquet" and path.is_file()
    assert not list(tmp_path.glob(".*"))  # no parts folder or temporary file left
    table = pq.read_table(path)
    assert table.schema.field("vector").type == pa.list_(pa.float16(), 16)
    assert table.column_names == ["path", "start_s", "end_s", "backbone", "vector"]
    meta = json.loads(table.schema.metadata[b"scanner"])
    assert meta["backbone"]["name"] == "fake" and meta["backbone"]["window_s"] == 0.96
    assert meta["vector_dtype"] == "float16"

    vec = read_vectors(path)
    assert list(dict.fromkeys(vec.paths)) == [row_a["path"], row_b["path"]]  # sorted by path
    for result, row in ((a, row_a), (b, row_b)):
        emb = result.embeddings["fake"]
        mine = vec.paths == row["path"]
        np.testing.assert_allclose(vec.starts_s[mine], emb.starts_s, atol=1e-3)
        np.testing.assert_allclose(vec.ends_s[mine],
                                   np.minimum(emb.starts_s + emb.window_s, row["duration_s"]),
                                   atol=1e-3)
        np.testing.assert_allclose(vec.vectors[mine].astype(np.float32), emb.embeddings,
                                   rtol=2e-3, atol=1e-3)
    assert vec.ends_s.max() <= 5.3 + 1e-9


def test_resume_keeps_committed_parts_and_drops_redone_files(tmp_path: Path,
                                                             classifier: Classifier) -> None:
    backbone = classifier.backbones[0]
    out = tmp_path / "r.parquet"
    a, row_a = _result(tmp_path / "a.wav", 2.0, 1, backbone)
    b, row_b = _result(tmp_path / "b.wav", 2.0, 2, backbone)
    first = VectorSink(out, classifier, None, resume=False)
    first.add(a, row_a)
    first.commit(1)
    first.add(b, row_b)  # never committed: lost with the crash
    first.abort()
    assert not vectors_path(out).exists()

    second = VectorSink(out, classifier, None, resume=True)
    second.add(b, row_b)
    second.finish()
    assert set(read_vectors(vectors_path(out)).paths) == {row_a["path"], row_b["path"]}

    # a third run redoes a.wav with other audio: its old vectors are replaced, not kept beside
    a2, _ = _result(tmp_path / "a.wav", 1.0, 9, backbone)
    third = VectorSink(out, classifier, None, resume=True)
    third.add(a2, row_a | {"duration_s": 1.0})
    third.finish(drop_paths={row_a["path"]})
    vec = read_vectors(vectors_path(out))
    mine = vec.paths == row_a["path"]
    assert mine.sum() == a2.embeddings["fake"].n_patches
    np.testing.assert_allclose(vec.vectors[mine].astype(np.float32),
                               a2.embeddings["fake"].embeddings, rtol=2e-3, atol=1e-3)


def test_paths_per_backbone_and_foreign_tables_refused(tmp_path: Path) -> None:
    assert vectors_path(tmp_path / "r.csv") == tmp_path / "r.embeddings.parquet"
    assert vectors_path(tmp_path / "r.parquet", "wav2vec2") == \
        tmp_path / "r.embeddings.wav2vec2.parquet"
    other = tmp_path / "events.parquet"
    pq.write_table(pa.table({"path": ["x"], "start_s": [0.0]}), other)
    with pytest.raises(ScannerError, match="not an embeddings table"):
        read_metadata(other)
