"""Decoder backends: libsndfile (soundfile) and FFmpeg (PyAV), streaming into mono at one rate.

Each backend reads one bounded part of a file block by block and streams it through a
:class:`MonoSink` (channel mean, then soxr resampling), so memory stays bounded by the part,
never by what a header claims. Backends raise :class:`~scanner.errors.DecodeError` for what
they cannot read and return a :class:`RawDecode` for the rest; judging whether what came back
is complete (truncated? non-finite?) is :mod:`scanner.audio.decode`'s job.

No TensorFlow or torch here: this runs in decode worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from numpy.typing import NDArray

from scanner.errors import DecodeError

BLOCK_BYTES = 1 << 22
"""About 4 MiB of float32 per block read, whatever the channel count."""
MIN_RATE_HZ = 1000  # lower rates are corrupt headers; upsampling them would explode memory
MAX_RATE_HZ = 10_000_000
SMALL_BLOCK = 4096  # frames; how closely the end of a corrupt file is found
MAX_BAD_PACKETS = 20  # FFmpeg skips a few corrupt packets, as its command line does
OUT_OF_RANGE_PEAK = 1000.0
"""Float samples beyond this (60 dB over full scale) are not audio but garbage or unscaled
integers; below it, overs are clipped to [-1, 1] as before."""
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


@dataclass(frozen=True)
class RawDecode:
    """What a backend read from one part of a file.

    Attributes:
        waveform: ``[samples]`` float32 mono at the target rate.
        frames_read: Frames read at the original rate (this part only).
        total_frames: The whole file's frame count as the decoder reports it, if any.
        total_exact: Whether ``total_frames`` comes from a header that states it exactly
            (FLAC, MP4), so that reading fewer frames means the file was cut.
        more_after: The part ended at ``max_s`` and the file goes on.
        stopped_by: A decoder error that ended reading early.
        non_finite_at_s: Time in the file of the first NaN/Inf sample (reading stops there).
        out_of_range_at_s: Time of the first finite sample beyond ``OUT_OF_RANGE_PEAK``, and
            ``out_of_range_peak`` its value (reading stops there).
        skipped_packets: Corrupt packets FFmpeg skipped before good audio went on.
    """

    waveform: NDArray[np.float32]
    orig_sample_rate_hz: int
    channels: int
    frames_read: int
    total_frames: int | None
    total_exact: bool
    more_after: bool = False
    stopped_by: str | None = None
    non_finite_at_s: float | None = None
    out_of_range_at_s: float | None = None
    out_of_range_peak: float | None = None
    skipped_packets: int = 0


class MonoSink:
    """Mixes blocks to mono, checks they are finite and resamples them as a stream."""

    def __init__(self, orig_sample_rate_hz: int, sample_rate_hz: int, *, start_s: float) -> None:
        self.orig_sample_rate_hz = orig_sample_rate_hz
        self.start_s = start_s
        self.frames = 0
        self.non_finite_at_s: float | None = None
        self.out_of_range_at_s: float | None = None
        self.out_of_range_peak: float | None = None
        self._chunks: list[NDArray[np.float32]] = []
        self._stream = None
        if orig_sample_rate_hz != sample_rate_hz:
            self._stream = soxr.ResampleStream(orig_sample_rate_hz, sample_rate_hz, 1,
                                               dtype="float32", quality="HQ")

    def push(self, block: NDArray[np.floating], *, check_peak: bool = False) -> bool:
        """Add ``[frames, channels]`` samples; False (and nothing added) if one is NaN/Inf,
        or, with ``check_peak`` (float sources), beyond ``OUT_OF_RANGE_PEAK``."""
        # A float64 sum is finite when every sample is (float32 input cannot overflow it),
        # and costs far less than an elementwise mask; the mask only locates the culprit.
        # Float64 input (a DOUBLE file) can overflow the sum with finite samples: the mask
        # then finds no NaN/Inf and the peak check below names them.
        if not np.isfinite(block.sum(dtype=np.float64)):
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                self.non_finite_at_s = self._at(first)
                return False
            check_peak = True
        if check_peak and len(block):
            peak = float(max(block.max(), -block.min()))
            if peak > OUT_OF_RANGE_PEAK:
                first = int(np.flatnonzero((np.abs(block) > OUT_OF_RANGE_PEAK).any(axis=1))[0])
                self.out_of_range_at_s = self._at(first)
                self.out_of_range_peak = float(np.abs(block[first]).max())
                return False
        channels = block.shape[1]
        if channels == 1:
            mono = block[:, 0].astype(np.float32)
        else:  # a matrix-vector product: much faster than a mean along a short axis
            mono = block.astype(np.float32, copy=False) @ np.full(channels, 1 / channels,
                                                                  np.float32)
        mono = np.clip(mono, -1.0, 1.0, out=mono)
        self.frames += len(mono)
        if self._stream is not None:
            mono = self._stream.resample_chunk(mono)
        if len(mono):
            self._chunks.append(mono)
        return True

    def _at(self, frame: int) -> float:
        return self.start_s + (self.frames + frame) / self.orig_sample_rate_hz

    @property
    def stopped(self) -> bool:
        """Whether a bad sample (NaN/Inf or out of range) ended the stream."""
        return self.non_finite_at_s is not None or self.out_of_range_at_s is not None

    def finish(self) -> NDArray[np.float32]:
        """The whole waveform, with the resampler's tail flushed."""
        if self._stream is not None:
            self._chunks.append(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        out = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)


def _check_rate(rate_hz: float, channels: int) -> None:
    if rate_hz <= 0:  # no stream parameters at all: what was opened holds no audio
        raise DecodeError("no sample rate: no audio stream could be read", kind="not_audio")
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise DecodeError(f"implausible sample rate {rate_hz:g} Hz", kind="corrupt")
    if channels < 1:
        raise DecodeError(f"implausible channel count {channels}", kind="unsupported")


def _want_frames(max_s: float | None, rate_hz: int) -> int | None:
    return None if max_s is None else max(0, round(max_s * rate_hz))


# --- libsndfile -------------------------------------------------------------------------

_SF_NOT_AUDIO = ("format not recognised", "unknown format", "not a regular file")


def _sf_message(e: Exception) -> str:
    text = getattr(e, "error_string", "") or str(e)
    text = text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text
    text = text.strip()
    if "SF_INFO struct incomplete" in text:  # libsndfile's words for a header it cannot use
        return "its header is damaged or incomplete (no usable sample rate, channels or format)"
    return text or f"libsndfile error {getattr(e, 'code', '?')}"


def decode_soundfile(path: Path, *, start_s: float, max_s: float | None,
                     sample_rate_hz: int) -> RawDecode:
    """Read ``[start_s, start_s + max_s)`` of ``path`` with libsndfile."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except sf.LibsndfileError as e:
        msg = _sf_message(e)
        # libsndfile says "not a regular file" when its MPEG probe rejects a file that exists
        kind = "not_audio" if any(s in msg.lower() for s in _SF_NOT_AUDIO) else \
            "corrupt" if msg.startswith("its header is damaged") else "unsupported"
        raise DecodeError(msg, kind=kind) from e
    with f:
        rate, channels = f.samplerate, f.channels
        _check_rate(rate, channels)
        total = f.frames if 0 < f.frames < 2**62 else None
        want = _want_frames(max_s, rate)
        start = round(start_s * rate)
        sink = MonoSink(rate, sample_rate_hz, start_s=start_s)
        raw = dict(orig_sample_rate_hz=rate, channels=channels, total_frames=total,
                   total_exact=f.format in ("FLAC", "AIFF", "CAF", "W64"))
        if start and total is not None and start >= total:
            return RawDecode(sink.finish(), frames_read=0, **raw)
        if start:
            if not f.seekable():
                raise DecodeError("libsndfile cannot seek in this file", kind="unsupported")
            try:
                f.seek(start)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise DecodeError(f"cannot seek to {start_s:.1f} s: {_sf_message(e)}",
                                  kind="unsupported") from e
        block = max(SMALL_BLOCK, BLOCK_BYTES // (4 * channels))
        # DOUBLE samples read as float32 would turn 1e300 into inf: read them as they are
        is_float = f.subtype in _FLOAT_SUBTYPES
        dtype = "float64" if f.subtype == "DOUBLE" else "float32"
        stopped = None
        # f.read, not sf.blocks: blocks() yields stale buffer contents after a short read
        while want is None or sink.frames < want:
            n = block if want is None else min(block, want - sink.frames)
            try:
                data = f.read(n, dtype=dtype, always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                stopped = _sf_message(e)
                if block == SMALL_BLOCK or not _reseek(f, start + sink.frames):
                    break
                block = SMALL_BLOCK  # a failed block yields nothing: re-read it in small steps
                continue
            stopped = None
            if not len(data) or not sink.push(data, check_peak=is_float):
                break
        more = want is not None and sink.frames >= want and (total is None or start + want < total)
        return RawDecode(sink.finish(), frames_read=sink.frames, more_after=more,
                         stopped_by=stopped, non_finite_at_s=sink.non_finite_at_s,
                         out_of_range_at_s=sink.out_of_range_at_s,
                         out_of_range_peak=sink.out_of_range_peak, **raw)


def _reseek(f: Any, frame: int) -> bool:
    try:
        f.seek(frame)
    except Exception:
        return False
    return True


# --- FFmpeg -----------------------------------------------------------------------------

_EXACT_DURATION_FORMATS = ("flac", "mov", "mp4")  # demuxers whose duration is a header fact


def _frame_to_float(frame: Any) -> NDArray[np.floating]:
    """An ``av.AudioFrame`` as ``[samples, channels]`` floats in [-1, 1]."""
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels or 1
    arr = arr.T if frame.format.is_planar else arr.reshape(-1, channels)
    base = frame.format.name.rstrip("p")
    if base in ("flt", "dbl"):
        return arr
    if base == "u8":
        return (arr.astype(np.float32) - 128.0) / 128.0
    scale = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}.get(base)
    if scale is None:
        raise DecodeError(f"FFmpeg produced an unknown sample format {frame.format.name}",
                          kind="unsupported")
    return arr.astype(np.float32) / np.float32(scale)


def decode_pyav(path: Path, *, start_s: float, max_s: float | None,
                sample_rate_hz: int) -> RawDecode:
    """Read ``[start_s, start_s + max_s)`` of ``path`` with FFmpeg (PyAV)."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        raise DecodeError("FFmpeg does not recognise the format", kind="not_audio") from e
    except EOFError as e:
        raise DecodeError("the file ends before any audio", kind="truncated") from e
    except OSError as e:  # FFmpeg's errors are OSErrors; permission and missing files too
        kind = "io" if isinstance(e, (PermissionError, FileNotFoundError)) else "unsupported"
        raise DecodeError(str(e), kind=kind) from e
    except av.error.FFmpegError as e:  # the rest, such as "not yet implemented in FFmpeg"
        raise DecodeError(f"FFmpeg cannot open it: {e.strerror or e}", kind="unsupported") from e
    try:
        return _decode_container(container, start_s, max_s, sample_rate_hz)
    except av.error.FFmpegError as e:
        raise DecodeError(f"FFmpeg: {e.strerror or e}", kind="unsupported") from e


def _decode_container(container: Any, start_s: float, max_s: float | None,
                      sample_rate_hz: int) -> RawDecode:
    with container:
        if not container.streams.audio:
            others = sorted({s.type for s in container.streams})
            holds = f"; it holds {', '.join(others)}" if others else ""
            raise DecodeError(f"no audio stream{holds}", kind="not_audio")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None:
            raise DecodeError("no decoder for its audio codec", kind="unsupported")
        rate = int(ctx.sample_rate or 0)
        channels = int(ctx.layout.nb_channels or getattr(ctx, "channels", 0) or 0)
        _check_rate(rate, channels)
        if stream.duration and stream.time_base:
            total = round(float(stream.duration * stream.time_base) * rate)
        elif container.duration:
            total = round(container.duration / 1_000_000 * rate)
        else:
            total = None
        exact = any(name in container.format.name.split(",") for name in _EXACT_DURATION_FORMATS)
        reader = _PyavReader(container, stream, rate, sample_rate_hz, start_s, max_s)
        if not reader.run(seek=start_s > 0):
            # no timestamps after the seek: decode from the start and count samples instead
            container.seek(0)
            reader = _PyavReader(container, stream, rate, sample_rate_hz, start_s, max_s)
            reader.run(seek=False)
        sink = reader.sink
        return RawDecode(sink.finish(), orig_sample_rate_hz=rate, channels=channels,
                         frames_read=sink.frames, total_frames=total, total_exact=exact,
                         more_after=reader.more_after, stopped_by=reader.stopped_by,
                         non_finite_at_s=sink.non_finite_at_s,
                         out_of_range_at_s=sink.out_of_range_at_s,
                         out_of_range_peak=sink.out_of_range_peak,
                         skipped_packets=reader.skipped if reader.stopped_by is None else 0)


class _PyavReader:
    """Decodes packets from a position, dropping samples before the part and after its end."""

    def __init__(self, container: Any, stream: Any, rate: int, sample_rate_hz: int,
                 start_s: float, max_s: float | None) -> None:
        self.container, self.stream, self.rate = container, stream, rate
        self.start = round(start_s * rate)
        self.want = _want_frames(max_s, rate)
        self.sink = MonoSink(rate, sample_rate_hz, start_s=start_s)
        self.more_after = False
        self.stopped_by: str | None = None
        self.skipped = 0  # corrupt packets passed over

    def run(self, *, seek: bool) -> bool:
        """Decode the part; False when a seek left frames without timestamps."""
        import av

        stream, tb = self.stream, self.stream.time_base
        origin = stream.start_time or 0
        if seek:
            try:
                self.container.seek(int(self.start / self.rate / tb) + origin, stream=stream,
                                    backward=True)
            except av.error.FFmpegError:
                self.container.seek(0)
                seek = False
        pos: int | None = None if seek else 0  # file position (frames) of the next sample
        bad = 0
        packets = self.container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:  # the demuxer gave up: the stream ends here
                self.stopped_by = f"{e.strerror or e} (reading packets)"
                return True
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                bad += 1
                self.skipped = bad
                self.stopped_by = f"{e.strerror or e} (packet {bad})"
                if bad > MAX_BAD_PACKETS:
                    return True
                continue
            for frame in frames:
                if frame.sample_rate != self.rate:
                    raise DecodeError(f"the sample rate changes mid-stream ({self.rate} -> "
                                      f"{frame.sample_rate} Hz)", kind="unsupported")
                if pos is None:
                    if frame.pts is None:
                        return False
                    pos = round(float((frame.pts - origin) * tb) * self.rate)
                block = _frame_to_float(frame)
                is_float = frame.format.name.rstrip("p") in ("flt", "dbl")
                lo = max(0, self.start - pos)
                pos += len(block)
                if lo >= len(block):
                    continue
                block = block[lo:]
                if self.want is not None and self.sink.frames + len(block) >= self.want:
                    cut = self.want - self.sink.frames
                    self.more_after = len(block) > cut
                    self.sink.push(block[:cut], check_peak=is_float)
                    self.more_after = self.more_after or not self._at_end()
                    self.stopped_by = None
                    return True
                if not self.sink.push(block, check_peak=is_float):
                    return True
                # a corrupt packet followed by good audio was a glitch, not the end
                self.stopped_by = None
        return True

    def _at_end(self) -> bool:
        """Whether the stream has no packet with data after the current one."""
        try:
            return next(iter(self.container.demux(self.stream))).size == 0
        except Exception:  # StopIteration, or a corrupt tail: nothing more to decode
            return True
