"""Search by example: exact and indexed cosine search, clip and event queries, the hits table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from scanner.backbones import load_backbone
from scanner.backbones.fake import FakeBackbone
from scanner.errors import ConfigError
from scanner.output.vectors import Vectors, read_vectors, vector_schema, vector_table, vectors_path
from scanner.search import exact as exact_mod
from scanner.search import run_search
from scanner.search.exact import ExactSearch
from scanner.search.index import IVFIndex, index_path, load_or_build

SR = 16000


def _brute(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1)[:, :k]


def test_exact_search_matches_brute_force_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr(exact_mod, "CHUNK_ROWS", 97)  # many chunks, ragged last one
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 32)).astype(np.float32)
    q = x[[5, 500, 999]] + 0.01 * rng.standard_normal((3, 32)).astype(np.float32)
    scores, idx = ExactSearch(x).search(q, 7)
    np.testing.assert_array_equal(idx, _brute(x, q, 7))
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=2e-3)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    return (centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def _vector_file(tmp_path: Path, x: np.ndarray, name: str = "r.parquet") -> Path:
    ident = {"name": "fake", "embedding_dim": x.shape[1], "window_s": 0.96, "hop_s": 0.48}
    schema = vector_schema(x.shape[1], ident)
    n = len(x)
    table = vector_table(schema, [f"/a/f{i // 10:04d}.wav" for i in range(n)],
                         np.arange(n) % 10 * 0.48, np.arange(n) % 10 * 0.48 + 0.96, "fake", x)
    path = vectors_path(tmp_path / name)
    pq.write_table(table, path)
    return path


def test_ivf_index_recall_and_saved_beside_the_vectors(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    x = _clustered(20_000, 64, 1)
    path = _vector_file(tmp_path, x)
    vec = read_vectors(path)
    q = x[::1000] + 0.05 * np.random.default_rng(2).standard_normal((20, 64)).astype(np.float32)
    index = load_or_build(vec.vectors, path)
    _, got = index.search(q, 10)
    want = ExactSearch(vec.vectors).search(q, 10)[1]
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.9
    assert index_path(path).is_file()
    again = IVFIndex.load(index_path(path), path)
    assert again is not None and len(again) == len(x)
    np.testing.assert_array_equal(again.search(q, 10)[1], got)
    pq.write_table(pq.read_table(path).slice(0, 100), path)  # the table changed: stale index
    assert IVFIndex.load(index_path(path), path) is None


def _tone_sequence(seconds: float, seed: int) -> np.ndarray:
    """A new random tone every 0.24 s, so every 0.96 s patch of the file differs."""
    rng = np.random.default_rng(seed)
    step = int(0.24 * SR)
    n = int(seconds * SR)
    t = np.arange(step) / SR
    parts = [0.3 * np.sin(2 * np.pi * rng.uniform(200, 7000) * t) for _ in range(n // step + 1)]
    return np.concatenate(parts)[:n].astype(np.float32)


def _scanned(tmp_path: Path, backbone) -> tuple[list[Path], Path]:
    """Three recordings and their exported vectors (what scan --embeddings writes)."""
    files, tables = [], []
    schema = vector_schema(backbone.embedding_dim, {**backbone.identity, **backbone.config()})
    for i in range(3):
        path = tmp_path / "audio" / f"rec {i} <b>.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _tone_sequence(12.0, i), SR)
        wave, _ = sf.read(path, dtype="float32")
        emb = backbone.embed(wave)
        tables.append(vector_table(schema, [str(path)] * emb.n_patches, emb.starts_s,
                                   np.minimum(emb.starts_s + emb.window_s, 12.0), backbone.name,
                                   emb.embeddings))
        files.append(path)
    out = vectors_path(tmp_path / "r.parquet")
    pq.write_table(pa.concat_tables(tables), out)
    return files, out


@pytest.mark.parametrize("t0", [4.8, 4.9, 7.3])
def test_a_clip_cut_from_a_scanned_file_finds_that_window_first(tmp_path: Path, t0: float) -> None:
    backbone = load_backbone("fake")
    files, vec_path = _scanned(tmp_path, backbone)
    wave, _ = sf.read(files[1], dtype="float32")
    clip = tmp_path / "clip.wav"
    sf.write(clip, wave[int(t0 * SR):int((t0 + 0.96) * SR)], SR)
    result = run_search(vec_path, tmp_path / "hits.parquet", like=[clip], top=5,
                        backbone=backbone, label="screaming")
    hits = pq.read_table(result.out).to_pylist()
    assert hits[0]["path"] == str(files[1])
    assert abs(hits[0]["start_s"] - t0) <= backbone.hop_s / 2 + 1e-6
    assert hits[0]["label"] == "screaming" and hits[0]["rank"] == 1
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    sims = [h["peak_confidence"] for h in hits]
    assert sims == sorted(sims, reverse=True) and len(hits) == 5
    for a in hits:  # overlapping windows of one file are merged into the best
        for b in hits:
            if a is not b and a["path"] == b["path"]:
                assert a["end_s"] <= b["start_s"] or b["end_s"] <= a["start_s"]


def test_vectors_of_another_backbone_setting_are_refused(tmp_path: Path) -> None:
    _, vec_path = _scanned(tmp_path, load_backbone("fake"))
    clip = tmp_path / "clip.wav"
    sf.write(clip, _tone_sequence(2.0, 7), SR)
    other = FakeBackbone(window_s=1.2, hop_s=0.6)
    with pytest.raises(ConfigError, match="window_s"):
        run_search(vec_path, tmp_path / "hits.parquet", like=[clip], backbone=other)


def test_event_queries_reuse_stored_vectors_and_skip_their_own_span(tmp_path: Path) -> None:
    from scanner.events.export import read_annotations

    backbone = load_backbone("fake")
    files, vec_path = _scanned(tmp_path, backbone)
    # the same 2 s of file 0 is copied into file 2 at 6.0 s: the event there is found in file 2
    w0, _ = sf.read(files[0], dtype="float32")
    w2, _ = sf.read(files[2], dtype="float32")
    w2[int(6.0 * SR):int(8.0 * SR)] = w0[int(2.4 * SR):int(4.4 * SR)]
    sf.write(files[2], w2, SR)
    _, vec_path = _rescanned(tmp_path, files, backbone)
    events = tmp_path / "events.parquet"
    pq.write_table(pa.table({"path": [str(files[0])], "label": ["cry"], "start_s": [2.4],
                             "end_s": [4.4], "peak_confidence": [0.9],
                             "mean_confidence": [0.8]}), events)
    out = tmp_path / "hits.csv"
    runner = CliRunner()
    from scanner.cli import cli

    res = runner.invoke(cli, ["search", str(vec_path), "--events", str(events), "--top", "3",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    annotations, source, _ = read_annotations(out)
    assert source == "events" and len(annotations) == 3
    best = max(annotations, key=lambda a: a.peak_confidence or 0.0)
    assert best.path == str(files[2]) and 6.0 - 0.5 <= best.start_s <= 8.0
    assert all(a.label == "cry" for a in annotations)
    for a in annotations:  # never the query's own stretch
        assert not (a.path == str(files[0]) and a.start_s < 4.4 and a.end_s > 2.4)


def _rescanned(tmp_path: Path, files: list[Path], backbone) -> tuple[list[Path], Path]:
    schema = vector_schema(backbone.embedding_dim, {**backbone.identity, **backbone.config()})
    tables = []
    for path in files:
        wave, _ = sf.read(path, dtype="float32")
        emb = backbone.embed(wave)
        tables.append(vector_table(schema, [str(path)] * emb.n_patches, emb.starts_s,
                                   emb.starts_s + emb.window_s, backbone.name, emb.embeddings))
    out = vectors_path(tmp_path / "r.parquet")
    pq.write_table(pa.concat_tables(tables), out)
    return files, out


def test_cli_needs_a_query(tmp_path: Path) -> None:
    from scanner.cli import cli

    x = _clustered(50, 16, 0)
    path = _vector_file(tmp_path, x)
    res = CliRunner().invoke(cli, ["search", str(path), "-o", str(tmp_path / "h.parquet")])
    assert res.exit_code == 2
    assert "--like" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_real_yamnet_clip_search(tmp_path: Path, model_dir: Path, dataset_dir: Path,
                                 monkeypatch) -> None:
    """2 s cuts of a 30 s recording of real clips find their own stretch with real YAMNet,
    on and off the 0.48 s patch grid."""
    import csv

    from scanner.audio.decode import decode_task
    from scanner.records import AudioFile, DecodeTask

    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    backbone = load_backbone("yamnet")
    with (dataset_dir / "manifest.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["version"] == "v1"][::40][:12]
    waves = []
    for r in rows:
        p = dataset_dir / r["file"]
        st = p.stat()
        clip = decode_task(DecodeTask(AudioFile(p, st.st_size, st.st_mtime_ns)))
        waves.append(clip.waveform[: 5 * SR])
    schema = vector_schema(1024, {**backbone.identity, **backbone.config()})
    tables, recs = [], []
    for i in range(2):
        rec = tmp_path / f"rec{i}.flac"
        sf.write(rec, np.concatenate(waves[i * 6:(i + 1) * 6]), SR)
        wave, _ = sf.read(rec, dtype="float32")
        emb = backbone.embed(wave)
        tables.append(vector_table(schema, [str(rec)] * emb.n_patches, emb.starts_s,
                                   emb.starts_s + emb.window_s, "yamnet", emb.embeddings))
        recs.append((rec, wave))
    vec_path = vectors_path(tmp_path / "r.parquet")
    pq.write_table(pa.concat_tables(tables), vec_path)
    for t0 in (7.3, 18.0, 21.1):
        clip = tmp_path / "clip.wav"
        sf.write(clip, recs[1][1][int(t0 * SR):int((t0 + 2.0) * SR)], SR)
        run_search(vec_path, tmp_path / "hits.parquet", like=[clip], top=3, backbone=backbone)
        top = pq.read_table(tmp_path / "hits.parquet").to_pylist()[0]
        assert top["path"] == str(recs[1][0]) and abs(top["start_s"] - t0) < 0.48
    assert isinstance(read_vectors(vec_path), Vectors)
