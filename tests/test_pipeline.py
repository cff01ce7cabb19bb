"""The local engine end to end with the framework-free fake backbone."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from scanner.audio.discover import discover
from scanner.backbones import load_backbone
from scanner.config import ScanConfig
from scanner.engines.driver import scan
from scanner.engines.local import embed_files
from scanner.testing import verdict_problems


def _config(head, **kw):
    return ScanConfig(backbones=("fake",), heads={"fake": str(head)}, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_one_row_per_audio_file_in_sorted_order(audio_folder, fake_head, tmp_path, workers):
    out = tmp_path / "r.parquet"
    summary = scan([audio_folder], out, _config(fake_head, workers=workers))
    table = pq.read_table(out).to_pylist()
    audio = sorted(p for p in audio_folder.rglob("*") if p.suffix in {".wav", ".flac", ".ogg"})
    assert [r["path"] for r in table] == [str(p) for p in audio]
    assert summary.files == 6 and summary.ok == 6 and summary.errors == 0
    for r in table:
        assert r["status"] == "ok" and r["error"] is None
        assert verdict_problems(r) == [], r["path"]
        assert r["backbone"] == "fake" and r["head"] == "fake-head"
    rates = {r["path"].rsplit("/", 1)[1]: r["sample_rate"] for r in table}
    assert rates["tone_2.wav"] == 8000 and rates["noise_3.ogg"] == 44100
    durations = [round(r["duration_s"], 2) for r in table]
    assert sorted(durations) == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]


def test_results_do_not_depend_on_workers(audio_folder, fake_head, tmp_path):
    tables = []
    for workers in (0, 1, 2):
        out = tmp_path / f"r{workers}.parquet"
        scan([audio_folder], out, _config(fake_head, workers=workers, batch_s=2.0))
        t = pq.read_table(out).drop_columns(["seconds_taken"])
        tables.append(t.to_pylist())
    assert tables[0] == tables[1] == tables[2]


def test_bad_file_is_an_error_row_and_the_scan_goes_on(audio_folder, fake_head, tmp_path):
    (audio_folder / "empty.wav").write_bytes(b"")
    (audio_folder / "text.mp3").write_text("this is not audio\n" * 50)
    out = tmp_path / "r.csv"
    summary = scan([audio_folder], out, _config(fake_head, workers=1))
    import pyarrow.csv as pacsv

    rows = {r["path"].rsplit("/", 1)[1]: r for r in pacsv.read_csv(out).to_pylist()}
    assert len(rows) == 8 and summary.errors == 2 and summary.ok == 6
    assert rows["empty.wav"]["status"] == "error" and rows["empty.wav"]["error_kind"] == "empty"
    assert rows["text.mp3"]["status"] == "error" and rows["text.mp3"]["error"]
    assert rows["tone_0.wav"]["status"] == "ok"


def test_long_file_is_embedded_in_parts_like_a_whole(tmp_path):
    sr = 96000  # 25 s of 96 kHz stereo float is 19 MB: large enough to be planned in parts
    t = np.arange(sr * 25) / sr
    noise = np.random.default_rng(3).standard_normal(len(t))
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)
    sf.write(tmp_path / "long.wav", np.stack([x, x], axis=1), sr, subtype="FLOAT")
    files = discover([tmp_path])
    backbone = load_backbone("fake")
    whole = next(embed_files(files, [backbone], workers=0, part_s=1000.0))
    parts = next(embed_files(files, [backbone], workers=0, part_s=9.6))
    a, b = whole.embeddings["fake"], parts.embeddings["fake"]
    # Parts are decoded a little past their end, so every patch of the whole is there once.
    np.testing.assert_allclose(b.starts_s, a.starts_s, atol=1e-6)
    np.testing.assert_allclose(b.embeddings, a.embeddings, atol=0.05)


def test_resume_skips_done_files(audio_folder, fake_head, tmp_path):
    out = tmp_path / "r.parquet"
    first = scan([audio_folder], out, _config(fake_head, workers=0))
    rng = np.random.default_rng(5)
    sf.write(audio_folder / "new.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    second = scan([audio_folder], out, _config(fake_head, workers=0, resume=True))
    assert first.files == 6 and second.files == 1 and second.skipped == 6
    paths = pq.read_table(out).column("path").to_pylist()
    assert len(paths) == 7 == len(set(paths))


def test_scan_cache_lets_train_embed_nothing(tmp_path, fake_head):
    """Files scanned with --cache train without being embedded again."""
    from scanner.testing import chirp, noise, sine, write_audio
    from training.config import TrainConfig
    from training.train import train_head

    data = tmp_path / "data"
    for i in range(6):
        d = 1.0 + 0.2 * i
        write_audio(data / "tone" / f"t{i}.wav", sine(300 + 50 * i, d, 16000), 16000)
        write_audio(data / "noise" / f"n{i}.wav", noise(d, 16000, seed=i), 16000)
        write_audio(data / "chirp" / f"c{i}.wav", chirp(100, 3000, d, 16000), 16000)
    cache = tmp_path / "cache"
    scan([data], tmp_path / "r.parquet",
         _config(fake_head, workers=0, cache=True, cache_dir=str(cache)))
    assert len(list(cache.rglob("*.original.mean.npz"))) == 18
    result = train_head(TrainConfig(str(data), str(tmp_path / "head"), backbone="fake",
                                    cache_dir=str(cache), workers=0, folds=3, epochs=20,
                                    band_limit_prob=0.0), progress=False)
    assert result.embedded["original"] == 0


def test_long_file_parts_are_few_in_flight_short_files_many(tmp_path):
    from scanner.audio.decode import plan_tasks
    from scanner.audio.pool import DecodePool
    from scanner.engines.local import IN_FLIGHT, _bounded_parts, parts_in_flight
    from scanner.testing import noise, write_audio

    write_audio(tmp_path / "a_long.wav", noise(60.0, 16000, seed=1), 16000)
    for i in range(40):
        write_audio(tmp_path / f"b_short_{i:02d}.wav", noise(0.2, 16000, seed=i), 16000)
    files = discover([tmp_path])
    pulled: list[int] = []

    def source():
        for task in plan_tasks(files, part_s=2.0):
            pulled.append(task.n_parts)
            yield task

    ahead = {1: 0, 30: 0}  # by kind: most tasks pulled and not yet taken
    taken = {1: 0, 30: 0}
    with DecodePool(workers=1, in_flight=IN_FLIGHT) as pool:
        for item in pool.imap(_bounded_parts(source(), pool, IN_FLIGHT)):
            n = item.task.n_parts
            ahead[n] = max(ahead[n], pulled.count(n) - taken[n])
            taken[n] += 1
    assert pulled == [30] * 30 + [1] * 40  # the long file's parts, then the short files
    assert ahead[30] <= parts_in_flight(1) == 4
    assert ahead[1] > 2 * parts_in_flight(1)  # short files fill the pool as before
