"""Chained Ogg files: several complete Ogg streams ("links") one after another in one file.

Internet radio dumps and concatenated recordings are chained; each link may have its own
sample rate and channel count. libsndfile reads only the first link and FFmpeg stops where
the codec parameters change, so a chained file would come out ``ok`` with part of its
duration. :func:`decode_chain` finds the links from the page headers (no decoding), reads
each with libsndfile through a window on the file (no copy), resamples each to the target
rate and joins them on one time line.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np

from scanner.audio.decoders import BLOCK_BYTES, MonoSink, RawDecode
from scanner.errors import DecodeError

_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, segments
_BOS, _EOS = 0x02, 0x04


def link_ranges(path: Path) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of the links of an Ogg file, in order.

    A link starts at a beginning-of-stream page that follows pages of an earlier link (the
    first pages of a multiplexed link are all BOS pages, and stay one link).
    """
    size = os.stat(path).st_size
    starts = [0]
    with open(path, "rb") as f:
        pos, in_link = 0, False
        while pos + _PAGE_HEADER.size <= size:
            f.seek(pos)
            header = f.read(_PAGE_HEADER.size)
            capture, _, flags, _, _, _, _, n_seg = _PAGE_HEADER.unpack(header)
            if capture != b"OggS":
                break  # damage: what follows belongs to the link being read
            lacing = f.read(n_seg)
            if flags & _BOS:
                if in_link:
                    starts.append(pos)
                    in_link = False
            else:
                in_link = True
            pos += _PAGE_HEADER.size + n_seg + sum(lacing)
    return [(lo, hi) for lo, hi in zip(starts, [*starts[1:], size], strict=True)]


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``[start, end)`` of an open file."""

    def __init__(self, f: io.BufferedReader, start: int, end: int) -> None:
        self._f, self._start, self._end, self._pos = f, start, end, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end - self._start}
        self._pos = max(0, min(self._end - self._start, base[whence] + offset))
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._start - self._pos
        n = left if n is None or n < 0 else min(n, left)
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data


def decode_chain(path: Path, *, start_s: float, max_s: float | None,
                 sample_rate_hz: int) -> RawDecode:
    """Read ``[start_s, start_s + max_s)`` of a chained Ogg file, across its links."""
    import soundfile as sf

    out: list[np.ndarray] = []
    end_s = None if max_s is None else start_s + max_s
    read_s = 0.0
    with open(path, "rb") as f:
        links = []
        for k, (lo, hi) in enumerate(link_ranges(path)):
            try:
                links.append(sf.SoundFile(_Window(f, lo, hi)))
            except (sf.LibsndfileError, RuntimeError) as e:
                for link in links:
                    link.close()
                raise DecodeError(f"cannot read link {k + 1} of a chained Ogg file: {e}",
                                  kind="unsupported") from e
        total_s = sum(link.frames / link.samplerate for link in links)
        rate, channels = links[0].samplerate, links[0].channels
        sink = None
        t0 = 0.0  # where the current link starts on the file's time line
        try:
            for link in links:
                duration = link.frames / link.samplerate
                lo_s = max(start_s, t0)
                hi_s = t0 + duration if end_s is None else min(end_s, t0 + duration)
                if hi_s > lo_s:
                    link.seek(round((lo_s - t0) * link.samplerate))
                    sink = MonoSink(link.samplerate, sample_rate_hz, start_s=lo_s)
                    want = round((hi_s - lo_s) * link.samplerate)
                    block = max(4096, BLOCK_BYTES // (4 * link.channels))
                    while sink.frames < want:
                        data = link.read(min(block, want - sink.frames), dtype="float32",
                                         always_2d=True)
                        if not len(data) or not sink.push(data):
                            break
                    out.append(sink.finish())
                    read_s += sink.frames / link.samplerate
                    if sink.stopped:
                        break
                t0 += duration
        finally:
            for link in links:
                link.close()
    more_after = end_s is not None and end_s < total_s - 1e-6
    return _result(out, rate, channels, read_s, total_s, more_after,
                   sink if sink is not None and sink.stopped else None)


def _result(out: list[np.ndarray], rate: int, channels: int, read_s: float, total_s: float,
            more_after: bool, sink: MonoSink | None) -> RawDecode:
    waveform = np.concatenate(out) if out else np.zeros(0, np.float32)
    return RawDecode(waveform.astype(np.float32, copy=False), orig_sample_rate_hz=rate,
                     channels=channels, frames_read=round(read_s * rate),
                     total_frames=round(total_s * rate), total_exact=True,
                     more_after=more_after,
                     non_finite_at_s=sink.non_finite_at_s if sink else None,
                     out_of_range_at_s=sink.out_of_range_at_s if sink else None,
                     out_of_range_peak=sink.out_of_range_peak if sink else None)
