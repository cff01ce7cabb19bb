"""The review folder without a browser: what is chosen, the snippets' audio and times, escaping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from scanner.errors import ConfigError
from scanner.review import build_review, load_source, select_items
from scanner.review.items import wall_clock

SR = 16000
NASTY = "rec <b>&'\" 20240131_235959.flac"
META = {b"scanner": json.dumps({"classes": ["cry", "screaming", "not_screaming"],
                                "heads": [{"name": "h1"}]}).encode()}


def _recording(folder: Path, name: str, seconds: float, seed: int) -> Path:
    """Noise with a 1 kHz tone from 3 s to 5 s, at 22.05 kHz (the snippet must resample)."""
    rng = np.random.default_rng(seed)
    sr = 22050
    x = 0.05 * rng.standard_normal(int(seconds * sr))
    tone = x[3 * sr:5 * sr]
    tone += 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(tone)) / sr)
    path = folder / name
    sf.write(path, x.astype(np.float32), sr)
    return path


@pytest.fixture()
def scanned(tmp_path: Path) -> dict[str, Path]:
    audio = tmp_path / "audio"
    audio.mkdir()
    recs = [_recording(audio, NASTY, 10.0, 0), _recording(audio, "b.wav", 6.0, 1),
            _recording(audio, "c.wav", 0.8, 2)]
    results = tmp_path / "r.parquet"
    pq.write_table(pa.table({
        "path": [str(p) for p in recs], "status": ["ok"] * 3, "duration_s": [10.0, 6.0, 0.8],
        "label": ["screaming", "cry", "not_screaming"], "confidence": [0.9, 0.7, 0.8],
        "prob_cry": [0.05, 0.7, 0.1], "prob_screaming": [0.9, 0.2, 0.1],
        "prob_not_screaming": [0.05, 0.1, 0.8]}).replace_schema_metadata(META), results)
    events = tmp_path / "r.events.parquet"
    pq.write_table(pa.table({
        "path": [str(recs[0]), str(recs[0]), str(recs[1]), str(recs[2])],
        "label": ["screaming", "cry", "cry", "cry"], "start_s": [3.0, 8.5, 0.2, 0.0],
        "end_s": [5.0, 10.0, 1.4, 0.8], "peak_confidence": [0.95, 0.6, 0.8, 0.55],
        "mean_confidence": [0.9, 0.55, 0.7, 0.5]}).replace_schema_metadata(META), events)
    rng = np.random.default_rng(3)
    n = 400
    p_s = rng.uniform(0, 1, n)
    p_c = (1 - p_s) * rng.uniform(0, 1, n)
    segments = tmp_path / "r.segments.parquet"
    pq.write_table(pa.table({
        "path": [str(recs[0])] * n, "start_s": np.linspace(0, 8.5, n), "end_s": np.linspace(1.44, 10, n),
        "label": ["screaming"] * n, "confidence": p_s, "prob_cry": p_c, "prob_screaming": p_s,
        "prob_not_screaming": 1 - p_s - p_c}).replace_schema_metadata(META), segments)
    return {"results": results, "events": events, "segments": segments, "recs": recs}


def test_top_per_class_reads_the_events_beside_a_results_table(scanned) -> None:
    source = load_source(scanned["results"], "top")
    assert source.kind == "events" and source.head == "h1"
    items = select_items(source, "top", per_class=2)
    assert [(it.label, it.score) for it in items] == [("cry", 0.8), ("cry", 0.6),
                                                     ("screaming", 0.95)]
    assert items[0].wall_clock is None and items[1].wall_clock == "2024-02-01T00:00:07"


def test_sample_per_bin_weights_stand_for_the_population(scanned) -> None:
    source = load_source(scanned["results"], "sample")
    assert source.kind == "segments"
    items = select_items(source, "sample", bins=5, per_bin=3, labels=("screaming",))
    assert len(items) == 15 and {it.label for it in items} == {"screaming"}
    assert sum(it.weight for it in items) == pytest.approx(400)
    for it in items:
        lo, hi = (float(x) for x in it.stratum.split()[1].split("-"))
        assert lo <= it.score <= hi
    again = select_items(source, "sample", bins=5, per_bin=3, labels=("screaming",))
    assert again == items  # seeded


def test_whole_files_without_an_events_table(scanned) -> None:
    scanned["events"].unlink()
    items = select_items(load_source(scanned["results"], "top"), "top")
    assert [(it.label, it.start_s, it.end_s) for it in items] == [("cry", 0.0, 6.0),
                                                                 ("screaming", 0.0, 10.0)]


def test_snippets_hold_the_item_and_its_context(scanned, tmp_path: Path) -> None:
    out = tmp_path / "review"
    result = build_review(scanned["events"], out, select="all", context_s=1.0)
    assert result.items == 4 and result.clip_errors == 0
    data = json.loads((out / "review.json").read_text())
    src, sr = sf.read(scanned["recs"][0], dtype="float32")
    for card in data["items"]:
        clip, rate = sf.read(out / card["clip"], dtype="float32")
        assert rate == SR and clip.ndim == 1
        duration = {str(p): d for p, d in zip(scanned["recs"], (10.0, 6.0, 0.8), strict=True)}[card["path"]]
        want_start = max(0.0, card["start_s"] - 1.0)
        want_end = min(duration, card["end_s"] + 1.0)
        assert card["clip_start_s"] == pytest.approx(want_start, abs=1e-3)
        assert len(clip) / SR == pytest.approx(want_end - want_start, abs=0.01)
        assert (out / card["spectrogram"]).stat().st_size > 1000
    # the tone from 3 s to 5 s of the file is where the first card's clip (from 2 s) says
    first = data["items"][0]
    clip, _ = sf.read(out / first["clip"], dtype="float32")
    spectrum = np.abs(np.fft.rfft(clip[int(1.5 * SR):int(2.5 * SR)]))  # file time 3.5-4.5 s
    assert np.argmax(spectrum) == pytest.approx(1000, abs=2)  # 1 Hz bins
    quiet = clip[:int(0.9 * SR)]  # file time 2.0-2.9 s: noise only
    assert np.sqrt(np.mean(quiet ** 2)) < 0.1


def test_file_names_are_escaped_and_foreign_folders_refused(scanned, tmp_path: Path) -> None:
    out = tmp_path / "review"
    build_review(scanned["events"], out, select="all")
    page = (out / "index.html").read_text()
    assert "<b>" not in page and "rec \\u003cb\\u003e\\u0026'\\\" 2024" in page
    start = page.index('id="review-data">') + len('id="review-data">')
    data = json.loads(page[start:page.index("</script>", start)])
    assert data["items"][0]["path"] == str(scanned["recs"][0])
    build_review(scanned["events"], out, select="all")  # its own folder: rewritten
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a review folder"):
        build_review(scanned["events"], foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_unreadable_audio_gives_a_card_that_says_why(scanned, tmp_path: Path) -> None:
    scanned["recs"][1].write_bytes(b"not audio at all")
    result = build_review(scanned["events"], tmp_path / "review", select="all")
    assert result.clip_errors == 1
    data = json.loads((tmp_path / "review" / "review.json").read_text())
    assert [c.get("error") is not None for c in data["items"]] == [False, False, True, False]


def test_wall_clock_from_file_names() -> None:
    assert wall_clock("/x/cam1_2024-03-05T10-00-00.wav", 90.5) == "2024-03-05T10:01:30"
    assert wall_clock("/x/20240305-100000.flac", 0) == "2024-03-05T10:00:00"
    assert wall_clock("/x/take 3.wav", 5) is None
    assert wall_clock("/x/20241399_999999.wav", 5) is None
    from datetime import datetime

    assert wall_clock("/x/a.wav", 3.0, {"recorded_at": datetime(2024, 1, 1)}) == "2024-01-01T00:00:03"
    assert wall_clock("/x/a.wav", 3.0, {"start_time": datetime(2024, 1, 1, 5)}) == "2024-01-01T05:00:00"
