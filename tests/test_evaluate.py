"""scanner evaluate end to end: on generated soundscapes, it agrees with sed_eval run directly."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_soundscapes import write_tiny_dataset

from scanner.cli import cli
from training.soundscapes import SoundscapeConfig, write_set

CLASSES = ["cry", "screaming"]
SET_CONFIG = SoundscapeConfig(minutes=(1.0, 1.5), events_per_recording=(2, 4), snr_db=(5.0, 15.0),
                              background_only_fraction=0.25)


def _direct(set_dir: Path, results: Path) -> dict:
    """The same metrics computed here from the raw tables, with sed_eval and plain counting."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sed_eval

    files = {Path(r["path"]).name: r["duration_s"] for r in pq.read_table(results).to_pylist()
             if r["status"] == "ok"}
    with (set_dir / "truth.csv").open(newline="") as f:
        truth = [{"file": r["file"], "event_label": r["label"], "onset": float(r["onset"]),
                  "offset": float(r["offset"])} for r in csv.DictReader(f)]
    events_table = pq.read_table(results.with_name(results.stem + ".events.parquet")).to_pylist()
    system = [{"file": Path(r["path"]).name, "event_label": r["label"], "onset": r["start_s"],
               "offset": r["end_s"]} for r in events_table]
    event = sed_eval.sound_event.EventBasedMetrics(CLASSES, t_collar=1.0, percentage_of_length=0.2)
    onset = sed_eval.sound_event.EventBasedMetrics(CLASSES, t_collar=1.0, evaluate_offset=False)
    segment = sed_eval.sound_event.SegmentBasedMetrics(CLASSES, time_resolution=1.0)
    for name, duration in files.items():
        ref = [e for e in truth if e["file"] == name]
        est = [e for e in system if e["file"] == name]
        event.evaluate(ref, est)
        onset.evaluate(ref, est)
        segment.evaluate(ref, est, evaluated_length_seconds=duration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev, on, seg = (m.results()["class_wise"] for m in (event, onset, segment))
    out = {}
    covered = sum(e["offset"] - e["onset"] for e in truth)  # generated events never overlap
    free_h = (sum(files.values()) - covered) / 3600
    for c in CLASSES:
        pos = {e["file"] for e in truth if e["event_label"] == c}
        flagged = {e["file"] for e in system if e["event_label"] == c}
        tp = len(pos & flagged)
        file_f1 = 2 * tp / (len(pos) + len(flagged)) if pos or flagged else math.nan
        alarms = sum(1 for e in system if e["event_label"] == c and not any(
            e["file"] == r["file"] and e["onset"] < r["offset"] and e["offset"] > r["onset"] for r in truth))
        out[c] = {"event": ev[c]["f_measure"], "event_onset": on[c]["f_measure"],
                  "segment": seg[c]["f_measure"], "file_f1": file_f1,
                  "fa_per_hour": alarms / free_h, "n_sys": sum(1 for e in system if e["event_label"] == c)}
    return out


def _same(ours: float | None, theirs: float) -> bool:
    if ours is None:
        return math.isnan(theirs)
    return ours == pytest.approx(theirs, abs=1e-5)


def _check(set_dir: Path, results: Path, metrics_json: Path) -> dict:
    report = json.loads(metrics_json.read_text())
    direct = _direct(set_dir, results)
    for c in CLASSES:
        ours, theirs = report["metrics"]["classes"][c], direct[c]
        for kind in ("event", "event_onset", "segment"):
            for key, name in (("f1", "f_measure"), ("precision", "precision"), ("recall", "recall")):
                assert _same(ours[kind][key], theirs[kind][name]), (c, kind, key)
        assert _same(ours["file"]["f1"], theirs["file_f1"])
        assert ours["false_alarms"]["per_hour"] == pytest.approx(theirs["fa_per_hour"], abs=1e-4)
        assert ours["event"]["n_sys"] == theirs["n_sys"]
    assert sum(direct[c]["n_sys"] for c in CLASSES) > 0  # the scan found something to score
    return report


def _scan_and_evaluate(set_dir: Path, tmp_path: Path, scan_args: list[str]) -> tuple[Path, Path, str]:
    runner = CliRunner()
    out = tmp_path / "r.parquet"
    res = runner.invoke(cli, ["scan", str(set_dir), "-o", str(out), "--segments", "--workers", "0",
                              *scan_args])
    assert res.exit_code == 0, res.output
    metrics = tmp_path / "metrics.json"
    res = runner.invoke(cli, ["evaluate", str(out), "--truth", str(set_dir / "truth.csv"), "-o",
                              str(metrics), "--sweep"])
    assert res.exit_code == 0, res.output
    return out, metrics, res.output


def _check_sweep(report: dict, *, require_row: bool = False) -> None:
    """The scan's own settings make its events again; so does a sweep row at its thresholds."""
    assert report["sweep_reproduces_scan"] is True
    thresholds = {report["detection"].get("thresholds", {}).get(c, 0.5) for c in CLASSES}
    row = next((r for r in report["sweep"] if {r["threshold"]} == thresholds), None)
    assert row is not None or not require_row
    for c in CLASSES if row is not None else ():
        m = report["metrics"]["classes"][c]
        assert row["classes"][c]["event_f1"] == m["event"]["f1"]
        assert row["classes"][c]["file_f1"] == m["file"]["f1"]
        assert row["classes"][c]["n_events"] == m["event"]["n_sys"]
    # the thresholds change the events (not always their number: low ones merge runs)
    assert len({json.dumps(r["classes"], sort_keys=True) for r in report["sweep"]}) > 2


def test_evaluate_agrees_with_sed_eval_fake_backbone(tmp_path: Path, fake_head: Path) -> None:
    data = write_tiny_dataset(tmp_path / "clips")
    set_dir = tmp_path / "set"
    write_set(data, set_dir, split="test", hours=4 * 1.25 / 60, config=SET_CONFIG, seed=1, split_seed=1,
              fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    out, metrics, output = _scan_and_evaluate(set_dir, tmp_path, [
        "--backbone", "fake", "--head", str(fake_head), "--threshold", "cry=0.4,screaming=0.4"])
    report = _check(set_dir, out, metrics)
    assert report["n_reference_events"] > 0 and report["metrics"]["files"] == 4
    assert "threshold sweep" in output and "cry" in output
    _check_sweep(report, require_row=True)


def test_edge_thresholds_reach_the_table_and_the_sweep(tmp_path: Path, fake_head: Path) -> None:
    data = write_tiny_dataset(tmp_path / "clips")
    set_dir = tmp_path / "set"
    write_set(data, set_dir, split="test", hours=4 * 1.25 / 60, config=SET_CONFIG, seed=1, split_seed=1,
              fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    _, plain, _ = _scan_and_evaluate(set_dir, tmp_path / "plain", [
        "--backbone", "fake", "--head", str(fake_head), "--threshold", "cry=0.9,screaming=0.9"])
    out, metrics, _ = _scan_and_evaluate(set_dir, tmp_path / "edges", [
        "--backbone", "fake", "--head", str(fake_head), "--threshold", "cry=0.9,screaming=0.9",
        "--edge-threshold", "cry=0.2,screaming=0.2"])
    report = _check(set_dir, out, metrics)
    assert report["detection"]["edge_thresholds"] == {"cry": 0.2, "screaming": 0.2}
    assert report["sweep_reproduces_scan"] is True

    def seconds(m: Path) -> float:
        events = pq.read_table(m.parent / "r.events.parquet").to_pylist()
        return sum(e["end_s"] - e["start_s"] for e in events)

    assert seconds(metrics) > seconds(plain)  # the same events, grown
    res = CliRunner().invoke(cli, ["scan", str(set_dir), "-o", str(tmp_path / "x.parquet"),
                                   "--backbone", "fake", "--edge-threshold", "cry=2"])
    assert res.exit_code == 2 and "--edge-threshold" in res.output


@pytest.mark.slow
def test_evaluate_agrees_with_sed_eval_real_soundscapes(tmp_path: Path, model_dir: Path, dataset_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    set_dir = tmp_path / "set"
    write_set(dataset_dir, set_dir, split="test", hours=3 * 1.25 / 60, config=SET_CONFIG, seed=2)
    out, metrics, _ = _scan_and_evaluate(set_dir, tmp_path, [])
    report = _check(set_dir, out, metrics)
    assert report["n_reference_events"] > 0
    assert sum(report["metrics"]["classes"][c]["event"]["n_sys"] for c in CLASSES) > 0
    _check_sweep(report)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    results = tmp_path / "r.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"path": ["/a.wav"], "status": ["ok"], "duration_s": [5.0],
                             "prob_cry": [0.1], "prob_not_screaming": [0.9]}), results)
    pq.write_table(pa.table({"path": ["/a.wav"], "label": ["cry"], "start_s": [1.0], "end_s": [2.0],
                             "peak_confidence": [0.9], "mean_confidence": [0.8]}),
                   tmp_path / "r.events.parquet")
    bad = tmp_path / "truth.csv"
    bad.write_text("file,label,onset\na.wav,cry,1\n")
    res = runner.invoke(cli, ["evaluate", str(results), "--truth", str(bad)])
    assert res.exit_code == 3 and "missing offset" in res.output and "Traceback" not in res.output
    good = tmp_path / "good.csv"
    good.write_text("file,label,onset,offset\na.wav,cry,1.2,2.1\n")
    res = runner.invoke(cli, ["evaluate", str(results), "--truth", str(good), "--sweep"])
    assert res.exit_code == 3 and "segments table" in res.output
    res = runner.invoke(cli, ["evaluate", str(results), "--truth", str(good), "--thresholds", "0.5,2"])
    assert res.exit_code == 2 and "thresholds in [0, 1]" in res.output
    res = runner.invoke(cli, ["evaluate", str(results), "--truth", str(good)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[2].split()[:2] == ["cry", "1.000"]
