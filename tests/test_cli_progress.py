"""Discovery in the scan's progress: a count of the files found while the tree is walked, on
its own, and the main bar's total set when the walk ends."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from click.testing import CliRunner

from scanner.cli import cli
from scanner.cli.progress import Progress
from scanner.testing import noise, write_audio

SR = 16000


def _tree(root: Path, n: int) -> Path:
    for i in range(n):
        write_audio(root / f"site{i % 4}" / f"day{i % 3}" / f"clip_{i:03d}.wav",
                    noise(0.3 + 0.1 * (i % 3), SR, seed=i), SR)
    (root / "site0" / "notes.txt").write_text("not audio")
    return root


def test_scan_cli_reports_the_discovery_count(tmp_path, fake_head):
    root = _tree(tmp_path / "in", 23)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["scan", str(root), "-o", str(out), "--backbone", "fake",
                                      "--head", str(fake_head), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert re.search(r"INFO found 23 files, 23 to scan\n", result.output), result.output
    assert "23 files (23 ok, 0 errors)" in result.output
    # --resume: every file is found, none is left to scan
    again = CliRunner().invoke(cli, ["scan", str(root), "-o", str(out), "--backbone", "fake",
                                     "--head", str(fake_head), "--workers", "0", "--resume"])
    assert again.exit_code == 0, again.output
    assert "found 23 files, 0 to scan" in again.output
    quiet = CliRunner().invoke(cli, ["-q", "scan", str(root), "-o", str(out), "--backbone",
                                     "fake", "--head", str(fake_head), "--workers", "0",
                                     "--overwrite"])
    assert quiet.exit_code == 0 and "found" not in quiet.output


def test_plain_discovery_lines_every_few_seconds_then_stop_at_the_walk_end(caplog):
    now = [0.0]
    progress = Progress(stream=io.StringIO(), every_s=10.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="scanner.progress")
    with progress:
        for n in range(1, 30_001, 1000):  # 30 s of walking, rows arriving meanwhile
            now[0] += 1.0
            progress.found(n)
            progress.update({"duration_s": 60.0})
        progress.start(28_000)  # 1,001 files already done (--resume)
        progress.found(30_001)  # after the walk: no more discovery lines
    lines = [r.getMessage() for r in caplog.records if r.name == "scanner.progress"]
    found = [x for x in lines if x.startswith("found")]
    # the clock starts at the first call (t=1): lines at t=11 and t=21, then the walk's end
    assert found == ["found 10,001 files so far", "found 20,001 files so far",
                     "found 29,001 files, 28,000 to scan"]
    rows = [x for x in lines if not x.startswith("found")]
    assert rows[0].startswith("11 files (found 10,001 so far), 0.18 h of audio")
    assert "left" not in rows[0]  # no total yet, so no estimate


def test_bar_counts_discovery_on_its_own_and_gets_its_total_when_the_walk_ends():
    stream = io.StringIO()
    with Progress(stream=stream, bar=True) as progress:
        progress.found(5)
        progress.update({"duration_s": 1.0})  # a row before the walk has ended
        progress.found(12_345)
        assert progress._bar is None  # one bar at a time: the count, while the walk goes on
        progress.start(12_000)
        assert progress._found_bar is None
        assert progress._bar.total == 12_000 and progress._bar.n == 1
        progress.update({"duration_s": 1.0})
    text = stream.getvalue()
    # the count's last frame ends its own line before the main bar starts
    assert re.search(r"\rfound: 12345 files \[[^\r]*1 scanned[^\r]*\]\n\rscanning:", text), text
    assert "2/12000" in text
