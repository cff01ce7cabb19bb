"""Streamed discovery: the scan starts on the first file while the walk goes on, counts what
it finds, and ``--resume`` filters the stream with only the earlier rows' keys."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import scanner.audio.discover
from scanner.audio.discover import discover, iter_files
from scanner.engines.discovery import FileStream
from scanner.engines.driver import scan
from scanner.errors import ConfigError
from scanner.records import AudioFile
from scanner.testing import fake_scan_config, noise, write_audio

SR = 16000


def _tree(root: Path, n: int = 12) -> Path:
    for i in range(n):
        write_audio(root / f"d{i % 3}" / f"s{i % 2}" / f"f{i:02d}.wav", noise(0.5, SR, seed=i), SR)
    (root / "notes.txt").write_text("not audio")
    return root


def test_iter_files_finds_what_discover_finds_links_included(tmp_path):
    root = _tree(tmp_path / "in")
    (root / "link.wav").symlink_to(root / "d0" / "s0" / "f00.wav")  # a link to a real file
    outside = tmp_path / "outside.wav"
    write_audio(outside, noise(0.5, SR, seed=99), SR)
    (root / "zlink.wav").symlink_to(outside)  # outside the root: skipped by default
    streamed = list(iter_files([root, root / "d1"]))  # overlapping roots: each file once
    assert sorted(streamed, key=lambda f: str(f.path)) == discover([root, root / "d1"])
    assert len(streamed) == 12 and not any(f.path.name.endswith("link.wav") for f in streamed)


def test_iter_files_checks_every_path_before_yielding(tmp_path):
    root = _tree(tmp_path / "in", 2)
    with pytest.raises(ConfigError, match="does not exist"):
        iter_files([root, tmp_path / "missing"])  # raised on the call, not mid-walk


def _file(i: int) -> AudioFile:
    return AudioFile(path=Path(f"/r/{i:03d}.wav"), size_bytes=10 + i, mtime_ns=5)


def test_stream_yields_before_the_walk_ends_and_counts():
    release = threading.Event()

    def slow_walk():
        yield _file(0)
        assert release.wait(30), "the consumer never took the first file"
        yield from (_file(i) for i in range(1, 5))

    found, totals = [], []
    stream = FileStream(slow_walk(), on_discovered=found.append, on_files=totals.append)
    files = iter(stream)
    assert next(files) == _file(0) and not stream.walked  # the walk is still waiting
    release.set()
    assert list(files) == [_file(i) for i in range(1, 5)]
    stream.close()
    assert found == sorted(found) and found[-1] == 5
    assert totals == [5]


def test_stream_resume_filter_needs_only_earlier_keys():
    done = {"/r/000.wav": (10, 5, None),        # unchanged: skipped
            "/r/001.wav": (999, 5, None),       # changed size: redone
            "/r/002.wav": (12, 5, "timeout"),   # transient error: redone
            "/r/003.wav": (13, 5, "unsupported")}  # a property of the file: skipped
    totals = []
    stream = FileStream((_file(i) for i in range(5)), done=done, on_files=totals.append)
    assert [f.path.name for f in stream] == ["001.wav", "002.wav", "004.wav"]
    assert (stream.skipped, stream.redo, totals) == (2, {"/r/001.wav", "/r/002.wav"}, [3])


def test_walk_errors_reach_the_consumer():
    def broken():
        yield _file(0)
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(FileStream(broken()))


def test_scan_decodes_while_the_walk_is_still_going(tmp_path, fake_head, monkeypatch):
    """The walk holds after its first file until that file has been decoded: a scan that
    listed every file before decoding would never decode it."""
    from scanner.audio.decode import decode_task
    from scanner.engines.local import LocalEngine

    root = _tree(tmp_path / "in", 6)
    real = scanner.audio.discover.iter_files
    decoded = threading.Event()
    waited = []

    def held_walk(*args, **kwargs):
        files = real(*args, **kwargs)

        def walk():
            yield next(files)
            waited.append(decoded.wait(60))
            yield from files

        return walk()

    def decode(task, sample_rate_hz):
        decoded.set()
        return decode_task(task, sample_rate_hz=sample_rate_hz)

    monkeypatch.setattr(scanner.audio.discover, "iter_files", held_walk)
    found, totals = [], []
    out = tmp_path / "r.parquet"
    summary = scan([root], out, fake_scan_config(fake_head, workers=0),
                   engine=LocalEngine(decode=decode), on_discovered=found.append,
                   on_files=totals.append)
    assert waited == [True]
    assert summary.files == 6 and totals == [6] and found[-1] == 6
    rows = pq.read_table(out).column("path").to_pylist()
    assert rows == sorted(os.fspath(f.path) for f in discover([root]))


def test_resume_scans_only_new_files_from_the_stream(tmp_path, fake_head):
    root = _tree(tmp_path / "in", 4)
    out = tmp_path / "r.parquet"
    scan([root], out, fake_scan_config(fake_head, workers=1))
    write_audio(root / "d0" / "new.wav", noise(0.5, SR, seed=50), SR)
    totals = []
    summary = scan([root], out, fake_scan_config(fake_head, workers=1, resume=True),
                   on_files=totals.append)
    assert (summary.files, summary.skipped, totals) == (1, 4, [1])
    assert pq.read_table(out).num_rows == 5
