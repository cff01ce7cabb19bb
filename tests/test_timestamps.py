"""Recording start times from WAV headers (GUANO, bext, AudioMoth comments) and file names."""

from __future__ import annotations

import io
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from scanner.errors import ConfigError
from scanner.timestamps import compile_pattern, from_name, recorded_at


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def _wav(path: Path, *, before: list[bytes] = (), after: list[bytes] = (),
         seconds: float = 0.5) -> Path:
    """A real 16 kHz WAV (soundfile writes it) with extra chunks before and after 'data'."""
    buf = io.BytesIO()
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000,
             format="WAV", subtype="PCM_16")
    raw = buf.getvalue()
    chunks, pos = [], 12
    while pos + 8 <= len(raw):
        size = struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        chunks.append(raw[pos:pos + 8 + size + size % 2])
        pos += 8 + size + size % 2
    fmt = [c for c in chunks if c[:4] == b"fmt "]
    data = [c for c in chunks if c[:4] == b"data"]
    body = b"WAVE" + b"".join(fmt) + b"".join(before) + b"".join(data) + b"".join(after)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _bext(date: str, time: str) -> bytes:
    body = (b"description".ljust(256, b"\0") + b"recorder".ljust(32, b"\0")
            + b"ref".ljust(32, b"\0") + date.encode() + time.encode()
            + struct.pack("<Q", 0) + struct.pack("<H", 1) + b"\0" * 254)
    return _chunk(b"bext", body)


def _info_comment(text: str) -> bytes:
    value = text.encode() + b"\0"
    return _chunk(b"LIST", b"INFO" + _chunk(b"ICMT", value))


def test_generated_files_still_decode(tmp_path):
    path = _wav(tmp_path / "x.wav", before=[_bext("2024-05-01", "03:04:05")],
                after=[_chunk(b"guan", b"GUANO|Version: 1.0\nTimestamp: 2024-05-01T03:04:05\n")])
    audio, sr = sf.read(path)
    assert sr == 16000 and len(audio) == 8000


def test_bext_origination_date_and_time(tmp_path):
    path = _wav(tmp_path / "take.wav", before=[_bext("2023-11-30", "22-15-07")])
    assert recorded_at(path) == datetime(2023, 11, 30, 22, 15, 7)


def test_guano_timestamp_after_the_audio_with_offset(tmp_path):
    guano = b"GUANO|Version: 1.0\nMake: Wildlife Acoustics\nTimestamp: 2022-06-15T21:30:00-05:00\n"
    path = _wav(tmp_path / "sm4.wav", after=[_chunk(b"guan", guano)], seconds=2.0)
    found = recorded_at(path)
    assert found == datetime(2022, 6, 15, 21, 30, tzinfo=timezone(timedelta(hours=-5)))


def test_audiomoth_comment_with_and_without_offset(tmp_path):
    utc = _wav(tmp_path / "a.wav", before=[_info_comment(
        "Recorded at 03:04:05 01/05/2024 (UTC) by AudioMoth 24F319055FDF2B5E at medium gain")])
    assert recorded_at(utc) == datetime(2024, 5, 1, 3, 4, 5, tzinfo=timezone.utc)
    plus = _wav(tmp_path / "b.wav", before=[_info_comment(
        "Recorded at 23:59:00 31/12/2023 (UTC+1) by AudioMoth 24F3")])
    assert recorded_at(plus) == datetime(2023, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=1)))


def test_metadata_wins_over_the_name(tmp_path):
    path = _wav(tmp_path / "20200101_000000.wav", before=[_bext("2024-05-01", "03:04:05")])
    assert recorded_at(path) == datetime(2024, 5, 1, 3, 4, 5)


@pytest.mark.parametrize(("name", "expected"), [
    ("20240501_030405.WAV", datetime(2024, 5, 1, 3, 4, 5)),          # AudioMoth
    ("SMM01234_20240501_030405.wav", datetime(2024, 5, 1, 3, 4, 5)),  # Song Meter
    ("S4A07259_20191231_235959_-3.flac", datetime(2019, 12, 31, 23, 59, 59)),
    ("2024-05-01T03-04-05.flac", datetime(2024, 5, 1, 3, 4, 5)),
    ("cam 2024-05-01 03:04:05.wav", datetime(2024, 5, 1, 3, 4, 5)),
    ("night_20240501T030405.ogg", datetime(2024, 5, 1, 3, 4, 5)),
    ("site3_99999999_999999.wav", None),   # not a date
    ("clip_0001.wav", None),
    ("123420240501_030405.wav", None),     # digits run on: not a stamp
])
def test_names(name, expected):
    assert from_name(name) == expected


def test_no_stamp_and_no_file(tmp_path):
    assert recorded_at(tmp_path / "missing.wav") is None
    assert recorded_at(_wav(tmp_path / "plain.wav")) is None
    flac = tmp_path / "20240501_030405.flac"
    sf.write(flac, np.zeros(1600, np.float32), 16000)
    assert recorded_at(flac) == datetime(2024, 5, 1, 3, 4, 5)


def test_user_strptime_pattern(tmp_path):
    path = tmp_path / "site3-01.05.24-0304.wav"
    assert recorded_at(path) is None
    assert recorded_at(path, pattern="%d.%m.%y-%H%M") == datetime(2024, 5, 1, 3, 4)


def test_user_regex_pattern_over_the_path(tmp_path):
    folder = tmp_path / "2024" / "05" / "01"
    folder.mkdir(parents=True)
    path = folder / "rec_030405.wav"
    pattern = (r"(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/rec_"
               r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})")
    assert recorded_at(path, pattern=pattern) == datetime(2024, 5, 1, 3, 4, 5)


def test_bad_patterns_are_config_errors():
    with pytest.raises(ConfigError, match="year"):
        compile_pattern("rec_%H%M%S")
    with pytest.raises(ConfigError, match="not supported"):
        compile_pattern("%Y%Q")
    with pytest.raises(ConfigError, match="missing: day"):
        compile_pattern(r"(?P<year>\d{4})(?P<month>\d{2})")
    with pytest.raises(ConfigError, match="not a valid regex"):
        compile_pattern(r"(?P<year>\d{4}")
