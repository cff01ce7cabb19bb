"""Hostile audio (issue 14, items 8, 11, 13): recoverable files are recovered and say so,
absurd samples get their own kind, and every message says what is really wrong.

Every input is generated here: a good file, then the damage a real recorder, copier or
user does to it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from scanner.audio.decode import decode_task
from scanner.config import ScanConfig
from scanner.engines.driver import scan
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask
from scanner.testing import noise, sine, write_audio

SR = 16000


def _task(path: Path, **kw) -> DecodeTask:
    st = os.stat(path)
    return DecodeTask(AudioFile(path, st.st_size, st.st_mtime_ns), **kw)


def _wav(path: Path, seconds: float = 5.0, rate: int = SR) -> Path:
    x = sine(440, seconds, rate, amplitude=0.3) + noise(seconds, rate, amplitude=0.05)
    return write_audio(path, x, rate, subtype="PCM_16")


def _patched(src: Path, dest: Path, patch) -> Path:
    data = bytearray(src.read_bytes())
    patch(data)
    dest.write_bytes(bytes(data))
    return dest


def _set_u32(data: bytearray, at: int, value: int) -> None:
    data[at:at + 4] = struct.pack("<I", value)


# --- item 8: recoverable audio -------------------------------------------------------------


def test_an_unfinalised_wav_is_recovered_whole(tmp_path):
    good = _wav(tmp_path / "good.wav")

    def unfinalise(data: bytearray) -> None:  # a recorder that crashed: sizes never written
        _set_u32(data, 4, 0)
        _set_u32(data, data.find(b"data") + 4, 0)

    clip = decode_task(_task(_patched(good, tmp_path / "crashed.wav", unfinalise)))
    assert isinstance(clip, DecodedClip), clip
    assert clip.duration_s == pytest.approx(5.0, abs=0.01)
    reference = decode_task(_task(good))
    np.testing.assert_allclose(clip.waveform, reference.waveform, atol=1e-4)
    assert clip.note_kind == "recovered" and "soundfile found it empty" in clip.note


def _mp3(path: Path, seconds: float = 7.0) -> Path:
    return write_audio(path, sine(440, seconds, 44100, amplitude=0.4), 44100)


def test_an_mp3_with_garbage_in_the_middle_keeps_the_longest_decode(tmp_path):
    good = _mp3(tmp_path / "good.mp3")

    def garbage(data: bytearray) -> None:
        mid = len(data) // 2
        data[mid:mid + 4096] = np.random.default_rng(0).integers(0, 256, 4096,
                                                                 dtype=np.uint8).tobytes()

    clip = decode_task(_task(_patched(good, tmp_path / "damaged.mp3", garbage)))
    assert isinstance(clip, DecodedClip), clip
    assert clip.duration_s > 5.0  # libsndfile alone stops at about 3.3 s
    assert clip.decoder == "pyav" and clip.note_kind == "recovered"
    assert "corrupt packet" in clip.note and "truncated after 3." in clip.note


def test_an_mp3_cut_short_is_still_truncated(tmp_path):
    good = _mp3(tmp_path / "good.mp3")
    cut = _patched(good, tmp_path / "cut.mp3", lambda d: d.__delitem__(slice(len(d) // 2, None)))
    result = decode_task(_task(cut))
    assert isinstance(result, DecodeFailure) and result.kind == "truncated", result


def _ogg(path: Path, seconds: float, rate: int, freq: float, channels: int = 1) -> Path:
    return write_audio(path, sine(freq, seconds, rate, amplitude=0.4, channels=channels), rate)


@pytest.mark.parametrize("part_s", [None, 2.0])
def test_a_chained_ogg_is_decoded_across_every_link(tmp_path, part_s):
    links = [_ogg(tmp_path / "l1.ogg", 3.0, 44100, 440), _ogg(tmp_path / "l2.ogg", 2.0, 22050,
                                                              880, channels=2),
             _ogg(tmp_path / "l3.ogg", 1.5, 16000, 300)]
    chained = tmp_path / "chained.ogg"
    chained.write_bytes(b"".join(p.read_bytes() for p in links))
    if part_s is None:
        clips = [decode_task(_task(chained))]
    else:  # in parts, as a long file is planned: each part reads across the joins
        clips = [decode_task(_task(chained, start_s=k * part_s,
                                   max_s=part_s if k < 3 else None, part=k, n_parts=4))
                 for k in range(4)]
    assert all(isinstance(c, DecodedClip) for c in clips), clips
    wave = np.concatenate([c.waveform for c in clips])
    assert len(wave) / SR == pytest.approx(6.5, abs=0.05)
    assert clips[0].duration_s == pytest.approx(6.5, abs=0.05) and clips[0].note_kind is None
    # each link's tone is where it belongs on the time line
    for lo, hi, freq in ((0.5, 2.5, 440), (3.5, 4.5, 880), (5.3, 6.2, 300)):
        seg = wave[int(lo * SR):int(hi * SR)]
        spectrum = np.abs(np.fft.rfft(seg))
        assert np.argmax(spectrum) * SR / len(seg) == pytest.approx(freq, abs=5)


def test_a_plain_ogg_is_not_taken_for_a_chain(tmp_path):
    clip = decode_task(_task(_ogg(tmp_path / "one.ogg", 2.0, 44100, 440)))
    assert isinstance(clip, DecodedClip) and clip.note_kind is None
    assert clip.duration_s == pytest.approx(2.0, abs=0.01)


def test_a_recovered_file_says_so_in_its_row(tmp_path, fake_head):
    folder = tmp_path / "in"
    good = _wav(folder / "good.wav")
    _patched(good, folder / "crashed.wav", lambda d: _set_u32(d, d.find(b"data") + 4, 0))
    out = tmp_path / "r.parquet"
    summary = scan([folder], out, ScanConfig(backbones=("fake",), heads={"fake": str(fake_head)},
                                             workers=0))
    rows = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}
    assert summary.errors == 0
    assert rows["crashed.wav"]["status"] == "ok"
    assert rows["crashed.wav"]["error_kind"] == "recovered"
    assert "pyav read 5.0 s" in rows["crashed.wav"]["error"]
    assert rows["good.wav"]["error_kind"] is None
    assert rows["crashed.wav"]["mean_prob_cry"] == pytest.approx(rows["good.wav"]["mean_prob_cry"],
                                                            abs=1e-3)


# --- item 11: absurd float samples ------------------------------------------------------------


@pytest.mark.parametrize("value,kind", [(1e300, "out_of_range"), (-3e38, "out_of_range"),
                                        (40000.0, "out_of_range"), (1.5, None)])
def test_absurd_float_samples_have_a_kind_of_their_own(tmp_path, value, kind):
    x = sine(440, 1.0, SR, amplitude=0.3).astype(np.float64)
    x[8000] = value
    path = tmp_path / "f.wav"
    sf.write(path, x, SR, subtype="DOUBLE" if abs(value) > 3e38 or value == 1e300 else "FLOAT")
    result = decode_task(_task(path))
    if kind is None:  # a moderate over is clipped, as before
        assert isinstance(result, DecodedClip) and result.waveform.max() <= 1.0
        return
    assert isinstance(result, DecodeFailure) and result.kind == kind, result
    assert "far outside [-1, 1]" in result.message and "at 0.50 s" in result.message
    assert "NaN" not in result.message


def test_nan_is_still_non_finite(tmp_path):
    x = sine(440, 1.0, SR).astype(np.float64)
    x[4000] = np.nan
    sf.write(tmp_path / "nan.wav", x, SR, subtype="DOUBLE")
    result = decode_task(_task(tmp_path / "nan.wav"))
    assert isinstance(result, DecodeFailure) and result.kind == "non_finite"


# --- item 13: messages that say what is wrong --------------------------------------------------


@pytest.mark.parametrize("rate,shown", [(0, "0 Hz"), (4_000_000_000, "4,000,000,000 Hz")])
def test_an_impossible_sample_rate_is_a_damaged_header(tmp_path, rate, shown):
    good = _wav(tmp_path / "good.wav", 1.0)

    def bad_rate(data: bytearray) -> None:
        fmt = data.find(b"fmt ")
        _set_u32(data, fmt + 12, rate)
        _set_u32(data, fmt + 16, (rate * 2) & 0xFFFFFFFF)

    result = decode_task(_task(_patched(good, tmp_path / "bad.wav", bad_rate)))
    assert isinstance(result, DecodeFailure) and result.kind == "corrupt"
    assert result.message == f"damaged header: its header gives a sample rate of {shown}"


def test_a_png_named_flac_is_called_an_image(tmp_path):
    png = tmp_path / "photo.flac"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    result = decode_task(_task(png))
    assert result.kind == "not_audio"
    assert result.message == "not an audio file (it looks like a PNG image)"


def test_an_m4a_cut_before_its_moov_atom_is_truncated(tmp_path):
    import av

    path = tmp_path / "rec.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(sine(440, 3.0, 44100)[None, :].astype(np.float32),
                                           format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    data = path.read_bytes()
    moov = data.find(b"moov") - 4
    assert moov > data.find(b"mdat")  # the index comes last, as most recorders write it
    assert isinstance(decode_task(_task(path)), DecodedClip)
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(data[:moov])
    result = decode_task(_task(cut))
    assert result.kind == "truncated" and "'moov' atom" in result.message


@pytest.mark.parametrize("name", ["was.flac", "was.wav", "was.mp3", "was.ogg"])
def test_text_where_audio_was_is_called_text(tmp_path, name):
    path = tmp_path / name
    path.write_text("this file was overwritten by a log\n" * 50)
    result = decode_task(_task(path))
    assert result.kind == "not_audio", result
    assert result.message == "not an audio file (it looks like text)"
