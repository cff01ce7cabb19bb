"""Where the events land in recordings built from real clips (real YAMNet, shipped heads).

A 25 s recording is 10 s of clean speech, 5 s of a real scream and 10 s of other clean
speech (clips of ../shared/datasets/cry-scream, found by their manifest group). Scanned
with the head ``scanner scan`` uses by default (and with the zero-shot ``audioset`` head)
and the default :class:`SegmentConfig`, it must give exactly one ``screaming`` event
starting and ending within 1.5 s of the scream; a 2 s scream must be placed within 1 s;
and the same speech without the scream must give no ``screaming`` event.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from scanner.config import ScanConfig
from scanner.engines.local import embed_files
from scanner.events.export import export
from scanner.events.segments import FileSegments, SegmentConfig, analyse_file, event_columns
from scanner.output.rows import arrow_schema
from scanner.records import AudioFile

pytestmark = pytest.mark.slow

SR = 16_000
# Clean read speech (the "clnsp" recordings) and a scream that lasts past 5 s.
SPEECH = ("name:clnsp0", "name:clnsp1", "name:clnsp10")
SCREAM = "name:femalescream-034"


def _clip(dataset: Path, group: str, seconds: float) -> np.ndarray:
    """The first ``seconds`` of the clip of manifest group ``group``, mono 16 kHz."""
    with (dataset / "manifest.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["group"] == group)
    x, sr = sf.read(dataset / row["file"], dtype="float32", always_2d=True)
    assert sr == SR, f"{row['file']} is {sr} Hz; pick a 16 kHz clip"
    x = x.mean(axis=1)[: int(seconds * SR)]
    assert len(x) == int(seconds * SR), f"{row['file']} is shorter than {seconds} s"
    return x


@pytest.fixture(scope="module", params=[None, "audioset"], ids=["scan-default", "audioset"])
def classifier(request, model_dir):
    from scanner.engines.driver import load_classifier

    heads = {"yamnet": request.param} if request.param else {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCANNER_MODEL_DIR", str(model_dir))
        return load_classifier(ScanConfig(threads=1, heads=heads))


def _analyse(classifier, path: Path, config: SegmentConfig | None = None) -> FileSegments:
    st = path.stat()
    (result,) = embed_files([AudioFile(path.resolve(), st.st_size, st.st_mtime_ns)],
                            classifier.backbones, workers=0)
    assert result.ok, result.failure
    return analyse_file(classifier, result.embeddings, result.info.duration_s,
                        config or SegmentConfig())


def _recording(dataset: Path, tmp_path: Path, middle: np.ndarray, name: str) -> Path:
    wave = np.concatenate([_clip(dataset, SPEECH[0], 10.0), middle,
                           _clip(dataset, SPEECH[1], 10.0)])
    path = tmp_path / name
    sf.write(path, wave, SR, subtype="PCM_16")
    return path


@pytest.mark.parametrize(("scream_s", "tolerance_s"), [(5.0, 1.5), (2.0, 1.0)])
def test_scream_between_speech_is_one_event_and_exports(classifier, dataset_dir, tmp_path,
                                                        scream_s, tolerance_s):
    path = _recording(dataset_dir, tmp_path, _clip(dataset_dir, SCREAM, scream_s),
                      "speech_scream.flac")
    fs = _analyse(classifier, path)
    screams = [e for e in fs.events if e["label"] == "screaming"]
    assert len(screams) == 1, fs.events
    (event,) = screams
    assert abs(event["start_s"] - 10.0) <= tolerance_s, event
    assert abs(event["end_s"] - (10.0 + scream_s)) <= tolerance_s, event
    assert fs.summary["n_events_screaming"] == 1
    assert fs.summary["first_onset_s"] <= event["start_s"]

    events = tmp_path / "results.events.parquet"
    _, rows = fs.rows(str(path.resolve()))
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(event_columns())), events)
    result = export(events, "audacity", tmp_path / "labels", labels=["screaming"])
    (label_file,) = result.paths
    assert label_file.name == "speech_scream.txt"
    start, end, label = label_file.read_text().strip().split("\t")
    assert label == "screaming"
    assert (float(start), float(end)) == pytest.approx((event["start_s"], event["end_s"]))


def test_speech_alone_makes_no_scream_event(classifier, dataset_dir, tmp_path):
    path = _recording(dataset_dir, tmp_path, _clip(dataset_dir, SPEECH[2], 5.0), "speech.flac")
    fs = _analyse(classifier, path)
    assert [e for e in fs.events if e["label"] == "screaming"] == []
    assert fs.summary["n_events_screaming"] == 0
