"""The done criterion through the CLI: scan --segments, then export and report."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_events_real import SCREAM, _clip, _recording

from scanner.cli import cli

pytestmark = pytest.mark.slow


def test_scan_segments_export_report(model_dir, dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    audio = tmp_path / "audio"
    audio.mkdir()
    _recording(dataset_dir, audio, _clip(dataset_dir, SCREAM, 5.0), "speech_scream.flac")
    out = tmp_path / "results.parquet"
    runner = CliRunner()
    res = runner.invoke(cli, ["scan", str(audio), "-o", str(out), "--segments", "--workers", "0",
                              "--threshold", "screaming=0.5"])
    assert res.exit_code == 0, res.output
    events = pq.read_table(tmp_path / "results.events.parquet").to_pylist()
    assert [e["label"] for e in events] == ["screaming"]
    assert abs(events[0]["start_s"] - 10) <= 1.5 and abs(events[0]["end_s"] - 15) <= 1.5
    row = pq.read_table(out).to_pylist()[0]
    assert row["n_events_screaming"] == 1 and row["first_onset_s_screaming"] == events[0]["start_s"]
    assert pq.read_table(tmp_path / "results.segments.parquet").num_rows > 40
    res = runner.invoke(cli, ["export", str(out), "--format", "audacity", "-o", str(tmp_path / "l")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "l" / "speech_scream.txt").read_text().split("\t")[2] == "screaming\n"
    res = runner.invoke(cli, ["report", str(out), "-o", str(tmp_path / "report.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 3
    # --resume with other detection settings refuses and names the difference
    res = runner.invoke(cli, ["scan", str(audio), "-o", str(out), "--segments", "--workers", "0",
                              "--resume"])
    assert res.exit_code == 3 and "thresholds" in res.output and "--resume" in res.output
    # --resume with the same settings keeps the events of files already done
    res = runner.invoke(cli, ["scan", str(audio), "-o", str(out), "--segments", "--workers", "0",
                              "--threshold", "screaming=0.5", "--resume"])
    assert res.exit_code == 0, res.output
    assert pq.read_table(tmp_path / "results.events.parquet").to_pylist() == events
