"""Tests for scanner.audio.decode: formats, rates, channels, parts, the awkward-input corpus, fuzzing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.audio import decode as decode_mod
from scanner.audio.containers import container_facts
from scanner.audio.decode import decode_task, plan_tasks, probe_duration
from scanner.errors import ConfigError, DecodeError
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask
from scanner.testing import NON_FINITE_AT_S, chirp, make_bad_inputs, noise, sine, write_audio

SR = 16000
MP3_OK = "MP3" in sf.available_formats()


def audio_file(path: Path) -> AudioFile:
    st_ = os.stat(path)
    return AudioFile(Path(path), st_.st_size, st_.st_mtime_ns)


def decode(path: Path, **task: object) -> DecodedClip | DecodeFailure:
    return decode_task(DecodeTask(audio_file(path), **task), sample_rate_hz=SR)


def ok(path: Path, **task: object) -> DecodedClip:
    out = decode(path, **task)
    assert isinstance(out, DecodedClip), f"{path.name}: {out}"
    assert out.waveform.dtype == np.float32 and out.waveform.ndim == 1
    assert out.sample_rate_hz == SR and np.isfinite(out.waveform).all()
    return out


def peak_hz(x: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def write_pyav(path: Path, x: np.ndarray, rate: int, codec: str, fmt: str | None = None) -> Path:
    """Encode with FFmpeg (formats libsndfile cannot write): AAC in MP4/ADTS, WMA, Opus, and
    MP3 without a Xing frame."""
    import av

    x = x[:, None] if x.ndim == 1 else x
    layout = "mono" if x.shape[1] == 1 else "stereo"
    options = {"write_xing": "0"} if path.suffix == ".mp3" else {}
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=48000 if "opus" in codec else rate,
                                      layout=layout)
        stream.codec_context.bit_rate = 96000
        for i in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[i:i + 1024].T),
                                               format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# --- formats, rates, channels -----------------------------------------------------------

FORMATS = [("wav", "PCM_16", 2), ("flac", None, 2), ("ogg", None, 800)]
FORMATS += [("mp3", None, 1500)] if MP3_OK else []


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("ext,subtype,tolerance", FORMATS)
def test_rates_and_formats_keep_the_tone(tmp_path: Path, rate: int, ext: str,
                                         subtype: str | None, tolerance: int) -> None:
    if ext == "mp3" and rate > 48000:
        pytest.skip("MP3 has no 96 kHz")
    path = write_audio(tmp_path / f"tone.{ext}", sine(440, 1.0, rate, amplitude=0.5), rate,
                       subtype=subtype)
    clip = ok(path)
    assert clip.orig_sample_rate_hz == rate and clip.channels == 1
    assert abs(len(clip.waveform) - SR) <= tolerance
    assert abs(clip.duration_s - 1.0) <= tolerance / SR
    assert abs(peak_hz(clip.waveform) - 440) < 3
    assert clip.decoder == "soundfile" and clip.offset_s == 0.0 and clip.truncated_to_s is None
    assert 0.25 < np.sqrt(np.mean(clip.waveform[2000:-2000] ** 2)) < 0.45  # sine RMS 0.354


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_subtypes_decode_to_the_same_samples(tmp_path: Path, subtype: str) -> None:
    x = chirp(200, 3000, 0.5, SR, amplitude=0.8)
    clip = ok(write_audio(tmp_path / "x.wav", x, SR, subtype=subtype))
    step = 2 / 256 if subtype == "PCM_U8" else 1e-4
    np.testing.assert_allclose(clip.waveform, x, atol=step)


@pytest.mark.parametrize("channels", range(1, 9))
def test_channels_are_averaged_to_mono(tmp_path: Path, channels: int) -> None:
    rate = 44100
    t = np.arange(rate // 2) / rate
    # channel c has amplitude 0.8*(c+1)/channels: the mean has 0.4*(channels+1)/channels
    x = np.stack([0.8 * (c + 1) / channels * np.sin(2 * np.pi * 440 * t)
                  for c in range(channels)], axis=1).astype(np.float32)
    clip = ok(write_audio(tmp_path / "multi.wav", x, rate, subtype="FLOAT"))
    assert clip.channels == channels and clip.orig_sample_rate_hz == rate
    assert len(clip.waveform) == SR // 2
    amplitude = np.sqrt(2) * np.sqrt(np.mean(clip.waveform[1000:-1000] ** 2))
    assert amplitude == pytest.approx(0.4 * (channels + 1) / channels, rel=0.01)


def test_opposite_channels_cancel(tmp_path: Path) -> None:
    x = sine(440, 0.5, SR)
    clip = ok(write_audio(tmp_path / "st.wav", np.stack([x, -x], axis=1), SR, subtype="FLOAT"))
    assert np.abs(clip.waveform).max() < 1e-6


def test_eight_channels_96k_float(tmp_path: Path) -> None:
    clip = ok(write_audio(tmp_path / "x.wav", sine(1000, 1.0, 96000, amplitude=0.3, channels=8),
                          96000, subtype="FLOAT"))
    assert (clip.channels, clip.orig_sample_rate_hz, len(clip.waveform)) == (8, 96000, SR)
    assert abs(peak_hz(clip.waveform) - 1000) < 3


def test_loud_float_samples_are_clipped(tmp_path: Path) -> None:
    clip = ok(write_audio(tmp_path / "loud.wav", sine(300, 0.5, SR, amplitude=4.0), SR,
                          subtype="FLOAT"))
    assert np.abs(clip.waveform).max() == pytest.approx(1.0)


@pytest.mark.parametrize("ext,codec,fmt", [("m4a", "aac", None), ("aac", "aac", "adts"),
                                           ("wma", "wmav2", "asf"),
                                           ("mka", "libopus", "matroska")])
@pytest.mark.parametrize("rate", [22050, 44100])
def test_pyav_fallback_decodes_what_libsndfile_cannot(tmp_path: Path, ext: str, codec: str,
                                                      fmt: str | None, rate: int) -> None:
    path = write_pyav(tmp_path / f"x.{ext}", sine(440, 2.0, rate, channels=2), rate, codec, fmt)
    with pytest.raises(Exception):  # noqa: B017 - the point is that libsndfile fails
        sf.info(str(path))
    clip = ok(path)
    assert clip.decoder == "pyav" and clip.channels == 2
    assert abs(len(clip.waveform) / SR - 2.0) < 0.1
    assert abs(peak_hz(clip.waveform) - 440) < 3
    assert abs(clip.duration_s - 2.0) < 0.1


def test_opus_in_ogg_and_aiff(tmp_path: Path) -> None:
    for name in ("x.opus", "x.aiff"):
        clip = ok(write_audio(tmp_path / name, sine(440, 1.0, 48000), 48000))
        assert abs(peak_hz(clip.waveform) - 440) < 3 and abs(len(clip.waveform) - SR) < 400


# --- parts, seeking, max duration ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["wav", "flac", "m4a"])
def test_parts_concatenate_to_the_whole(tmp_path: Path, kind: str) -> None:
    rate = 44100
    x = noise(25.0, rate, amplitude=0.2, seed=1)
    path = (write_pyav(tmp_path / "long.m4a", x, rate, "aac") if kind == "m4a"
            else write_audio(tmp_path / f"long.{kind}", x, rate))
    tasks = list(plan_tasks([audio_file(path)], part_s=10.0, probe_over_bytes=0))
    assert [(t.start_s, t.max_s, t.part, t.n_parts) for t in tasks] == [
        (0.0, 10.0, 0, 3), (10.0, 10.0, 1, 3), (20.0, None, 2, 3)]
    whole = ok(path).waveform
    clips = [ok(path, start_s=t.start_s, max_s=t.max_s, part=t.part, n_parts=t.n_parts)
             for t in tasks]
    assert [c.offset_s for c in clips] == [0.0, 10.0, 20.0]
    assert all(abs(c.duration_s - 25.0) < 0.1 for c in clips)
    assert [len(c.waveform) for c in clips[:2]] == [10 * SR, 10 * SR]
    joined = np.concatenate([c.waveform for c in clips])
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    away = np.ones(n, bool)  # the resampler restarts at each cut: ignore 20 ms around them
    for cut in (10 * SR, 20 * SR):
        away[cut - 320:cut + 320] = False
    err = np.abs(joined[:n] - whole[:n])[away]
    assert np.sqrt(np.mean(err**2)) < 0.02 * np.sqrt(np.mean(whole**2))


def test_start_and_max_decode_only_that_part(tmp_path: Path) -> None:
    rate = 22050
    x = np.concatenate([sine(300, 2.0, rate), sine(1200, 2.0, rate), sine(500, 2.0, rate)])
    path = write_audio(tmp_path / "three.flac", x, rate)
    clip = ok(path, start_s=2.0, max_s=2.0)
    assert len(clip.waveform) == 2 * SR and abs(peak_hz(clip.waveform) - 1200) < 3
    assert clip.offset_s == 2.0 and clip.duration_s == pytest.approx(6.0)
    assert clip.truncated_to_s == pytest.approx(4.0)  # a single task with max_s cut the file


def test_max_duration_caps_and_records_the_cut(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "long.wav", noise(25.0, 8000, seed=2), 8000)
    tasks = list(plan_tasks([audio_file(path)], part_s=10.0, probe_over_bytes=0,
                            max_duration_s=15.0))
    assert [(t.start_s, t.max_s, t.part, t.n_parts) for t in tasks] == [
        (0.0, 10.0, 0, 2), (10.0, 5.0, 1, 2)]
    first, last = (ok(path, start_s=t.start_s, max_s=t.max_s, part=t.part, n_parts=t.n_parts)
                   for t in tasks)
    assert first.truncated_to_s is None and last.truncated_to_s == 15.0
    assert len(first.waveform) + len(last.waveform) == 15 * SR

    small = list(plan_tasks([audio_file(path)], max_duration_s=3.0))  # not probed: one task
    assert [(t.start_s, t.max_s, t.n_parts) for t in small] == [(0.0, 3.0, 1)]
    clip = ok(path, max_s=3.0)
    assert len(clip.waveform) == 3 * SR and clip.truncated_to_s == 3.0
    assert clip.duration_s == pytest.approx(25.0)
    assert ok(path, max_s=40.0).truncated_to_s is None


def test_plan_tasks_by_header_duration_and_probe_failures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_audio(tmp_path / "a.wav", sine(440, 1.0, SR), SR)
    junk = tmp_path / "b.wav"
    junk.write_bytes(b"not audio" * 100)
    calls: list[Path] = []
    monkeypatch.setattr(decode_mod, "probe_duration", lambda p: calls.append(p))
    # small files are planned by the duration their header states, without a probe
    tasks = list(plan_tasks([audio_file(good)], part_s=0.1, probe_over_bytes=10**6))
    assert calls == [] and [t.n_parts for t in tasks] == [10] * 10
    # 900 bytes of junk cannot hold 600 s at any bit rate: not probed, one task
    tasks = list(plan_tasks([audio_file(junk)], part_s=600, probe_over_bytes=10**6))
    assert calls == [] and [t.n_parts for t in tasks] == [1]
    tasks = list(plan_tasks([audio_file(junk)], part_s=0.1, probe_over_bytes=10**6))
    assert calls == [junk] and [(t.start_s, t.max_s, t.n_parts) for t in tasks] == [(0, None, 1)]
    for bad in ({"part_s": 0}, {"max_duration_s": -1.0}):
        with pytest.raises(ConfigError):
            list(plan_tasks([audio_file(good)], **bad))


def test_probe_duration(tmp_path: Path) -> None:
    assert probe_duration(write_audio(tmp_path / "a.flac", sine(440, 2.5, 22050), 22050)) \
        == pytest.approx(2.5)
    m4a = write_pyav(tmp_path / "b.m4a", sine(440, 3.0, 44100), 44100, "aac")
    assert probe_duration(m4a) == pytest.approx(3.0, abs=0.05)
    (tmp_path / "c.wav").write_text("hello")
    assert probe_duration(tmp_path / "c.wav") is None
    assert probe_duration(tmp_path / "missing.wav") is None


# --- failures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


CORPUS_NAMES = ["empty", "text", "random", "image", "truncated_wav", "truncated_flac",
                "truncated_mp3", "truncated_ogg", "huge_header", "unsupported", "no_frames",
                "nan", "inf", "silence", "short", "multichannel"]


def test_corpus_names_are_all_tested(corpus) -> None:
    assert sorted(corpus) == sorted(CORPUS_NAMES)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_gives_the_expected_kind(corpus, name: str) -> None:
    item = corpus[name]
    if name == "truncated_mp3" and not MP3_OK:
        pytest.skip("libsndfile without MP3")
    out = decode(item.path)
    if item.expected_kind is None:
        assert isinstance(out, DecodedClip), out
        return
    assert isinstance(out, DecodeFailure), f"{name} decoded: {out}"
    assert out.kind == item.expected_kind, (out.kind, out.message, out.details)
    assert out.seconds_taken >= 0 and out.traceback is None
    expected_message = {"empty": "empty file", "no_frames": "no audio frames",
                        "text": "not an audio file (it looks like text)",
                        "nan": f"non-finite samples (NaN/Inf) at {NON_FINITE_AT_S:.2f} s",
                        "inf": f"non-finite samples (NaN/Inf) at {NON_FINITE_AT_S:.2f} s"}
    if name in expected_message:
        assert out.message == expected_message[name]
    if item.expected_kind == "not_audio":
        assert out.message.startswith("not an audio file (")
        assert [d.split(":")[0] for d in out.details] == ["soundfile", "pyav"]
    if name.startswith("truncated"):
        seconds = float(out.message.split("truncated after ")[1].split(" s")[0])
        # each file was cut at 60% of its bytes: most of its audio is still there
        whole = 8.0 if name == "truncated_ogg" else 3.0
        assert 0.3 * whole < seconds < 0.8 * whole, out.message


def test_truncated_flac_reports_the_audio_before_the_cut(tmp_path: Path) -> None:
    whole = write_audio(tmp_path / "w.flac", noise(10.0, SR, seed=4), SR).read_bytes()
    (tmp_path / "cut.flac").write_bytes(whole[: len(whole) // 2])
    out = decode(tmp_path / "cut.flac")
    assert isinstance(out, DecodeFailure) and out.kind == "truncated"
    assert out.message.startswith("truncated after 4.") or out.message.startswith(
        "truncated after 5."), out.message
    assert "10.0 s" in out.message


def test_part_past_a_stated_end_is_truncated_past_an_estimate_is_empty(tmp_path: Path) -> None:
    whole = write_audio(tmp_path / "w.flac", noise(10.0, SR, seed=5), SR).read_bytes()
    (tmp_path / "cut.flac").write_bytes(whole[: len(whole) // 2])
    out = decode(tmp_path / "cut.flac", start_s=8.0, max_s=2.0, part=4, n_parts=5)
    assert isinstance(out, DecodeFailure) and out.kind == "truncated"
    assert "10.0 s" in out.message

    # an MP3 without a Xing frame has only an estimated length: a part planned past its end
    # holds nothing, and that is no fault of the file
    x = noise(3.0, 22050, seed=6)
    mp3 = write_pyav(tmp_path / "noxing.mp3", x, 22050, "libmp3lame")
    assert container_facts(mp3, mp3.read_bytes()[:65536], 0).claimed_s is None
    past = ok(mp3, start_s=4.0, max_s=2.0, part=2, n_parts=3)
    assert len(past.waveform) == 0 and past.offset_s == 4.0
    assert ok(tmp_path / "w.flac", start_s=12.0, max_s=2.0, part=6, n_parts=7).waveform.size == 0


def test_huge_header_allocates_nothing_big(corpus) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    out = decode(corpus["huge_header"].path)
    took = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert took < 2.0 and peak < 20e6
    assert isinstance(out, DecodeFailure) and out.message.startswith("truncated after 1.0 s")


def test_vanished_file_and_permission_denied_are_io(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_audio(tmp_path / "x.wav", sine(440, 0.2, SR), SR)
    task = DecodeTask(audio_file(path))
    path.unlink()
    out = decode_task(task)
    assert isinstance(out, DecodeFailure) and out.kind == "io" and "not found" in out.message

    write_audio(path, sine(440, 0.2, SR), SR)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(decode_mod, "open", denied, raising=False)  # root ignores chmod
    out = decode_task(task)
    assert isinstance(out, DecodeFailure) and (out.kind, out.message) == ("io",
                                                                           "permission denied")


def test_decoder_chain_order_details_and_internal_errors(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_audio(tmp_path / "x.wav", sine(440, 0.5, SR), SR)
    real = dict(decode_mod.DECODERS)

    def refuses(*args, **kwargs):
        raise DecodeError("nope", kind="unsupported")

    monkeypatch.setattr(decode_mod, "DECODERS", (("soundfile", refuses), ("pyav", real["pyav"])))
    clip = ok(path)
    assert clip.decoder == "pyav" and len(clip.waveform) == SR // 2

    def crashes(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(decode_mod, "DECODERS", (("soundfile", refuses), ("pyav", crashes)))
    out = decode(path)
    assert isinstance(out, DecodeFailure) and out.kind == "unsupported"
    assert out.details == ("soundfile: nope", "pyav: RuntimeError: boom")
    assert "RuntimeError: boom" in out.traceback

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(decode_mod, "DECODERS", (("soundfile", out_of_memory),))
    out = decode(path)
    assert isinstance(out, DecodeFailure) and out.kind == "internal"
    assert "memory" in out.message and "MemoryError" in out.traceback


def test_decoding_imports_no_ml_framework(tmp_path: Path) -> None:
    write_audio(tmp_path / "x.flac", sine(440, 0.5, 22050), 22050)
    code = ("import sys; from pathlib import Path; from scanner.audio.decode import decode_task; "
            "from scanner.audio.discover import discover; from scanner.audio.decode import plan_tasks; "
            f"files = discover([{str(tmp_path)!r}]); "
            "r = [decode_task(t) for t in plan_tasks(files)]; assert len(r[0].waveform) == 8000; "
            "bad = [m for m in ('tensorflow', 'torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- fuzzing ------------------------------------------------------------------------------


def _seeds() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as d:
        x = chirp(300, 2000, 0.5, 8000, amplitude=0.5)
        names = ["s.wav", "s.flac", "s.ogg"] + (["s.mp3"] if MP3_OK else [])
        return {Path(n).suffix: write_audio(Path(d) / n, x, 8000).read_bytes() for n in names}


SEEDS = _seeds()


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes]:
    ext = draw(st.sampled_from(sorted(SEEDS) + [".m4a"]))
    if ext == ".m4a" or draw(st.booleans()) is False and draw(st.booleans()):
        return ext, draw(st.binary(max_size=2000))
    data = bytearray(SEEDS[ext])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return ext, bytes(data[:cut])


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_fuzzed_bytes_never_raise(sample: tuple[str, bytes]) -> None:
    ext, data = sample
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{ext}"
        path.write_bytes(data)
        out = decode_task(DecodeTask(audio_file(path)))
    assert isinstance(out, (DecodedClip, DecodeFailure))
    if isinstance(out, DecodedClip):
        assert np.isfinite(out.waveform).all() and np.abs(out.waveform).max(initial=0) <= 1.0
    else:
        assert out.message and out.kind != "internal", (out.message, out.traceback)


@pytest.mark.parametrize("where", ["open", "demux"])
def test_an_ffmpeg_error_of_any_kind_is_not_called_a_bug(tmp_path: Path, monkeypatch,
                                                         where: str) -> None:
    """FFmpeg errors that are not OSErrors (the fuzz test met "Not yet implemented in FFmpeg,
    patches welcome" on a mangled MP3) are a property of the file, not an internal error."""
    import av

    from scanner.audio import decoders

    error = av.error.PatchWelcomeError(-1163346256, "Not yet implemented in FFmpeg, patches "
                                       "welcome", "x.mp3")
    path = tmp_path / "x.mp3"
    path.write_bytes(b"\x00" * 4096)  # libsndfile rejects it, so FFmpeg is tried
    real_open = av.open

    def failing_open(*args, **kwargs):
        if where == "open":
            raise error
        container = real_open(*args, **kwargs)

        def demux(*a, **k):
            raise error
            yield  # a generator, as PyAV's

        return _Wrapped(container, demux)

    monkeypatch.setattr(av, "open", failing_open)
    if where == "demux":
        write_audio(path.with_suffix(".wav"), sine(440, 1.0, 16000), 16000)
        path = path.with_suffix(".wav")
        monkeypatch.setattr(decode_mod, "DECODERS", (("pyav", decoders.decode_pyav),))
    result = decode_task(DecodeTask(AudioFile(path, path.stat().st_size, 0)))
    assert isinstance(result, DecodeFailure)
    assert result.kind != "internal" and result.traceback is None
    assert "patches welcome" in " ".join(result.details) or "patches welcome" in result.message


class _Wrapped:
    """A PyAV container whose demuxer is replaced."""

    def __init__(self, container, demux) -> None:
        self._container, self.demux = container, demux

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._container.close()


def test_a_header_claiming_an_absurd_duration_plans_one_task(tmp_path: Path) -> None:
    import struct

    path = write_audio(tmp_path / "a.wav", sine(440, 1.0, SR), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    fmt = data.find(b"fmt ")
    data[fmt + 16:fmt + 20] = struct.pack("<I", 1)  # one byte a second: 32,000 s claimed
    path.write_bytes(bytes(data))
    tasks = list(plan_tasks([audio_file(path)], part_s=1.0))
    assert [(t.start_s, t.n_parts) for t in tasks] == [(0.0, 1)]
