"""Container facts read without decoding: whether a WAV's data chunk or an Ogg stream's last
page shows the file was cut, what duration an MP3's Xing/VBRI frame states, and a person's
guess at what a non-audio file is.

libsndfile and FFmpeg both quietly clamp a cut WAV or Ogg file to what is left, so these few
header checks are the only way to tell a truncated recording from a short one.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class ContainerFacts:
    """What a file's container says without decoding it.

    Attributes:
        truncated: Why the container shows the file was cut, or None.
        held_s: Seconds of audio the file still holds, when cheaply known.
        claimed_s: The header's stated duration, when it states one exactly.
        past_4gib_s: A WAV over 4 GiB whose 32-bit sizes are saturated (0xFFFFFFFF): the
            seconds its data really holds. libsndfile stops reading at 4 GiB.
        corrupt: Why the header cannot describe audio (a WAV sample rate of 0 Hz), or None.
        chained: An Ogg file whose first and last pages belong to different logical streams:
            links of a chain, which libsndfile and FFmpeg read only in part.
    """

    truncated: str | None = None
    held_s: float | None = None
    claimed_s: float | None = None
    past_4gib_s: float | None = None
    corrupt: str | None = None
    chained: bool = False

MAX_RATE_HZ = 10_000_000  # the decoders' own bound (scanner.audio.decoders)
_MP4_BRANDS = (b"ftyp",)


def container_facts(path: Path, head: bytes, size_bytes: int) -> ContainerFacts:
    """Check a WAV's data chunk, an Ogg stream's last page and an MP3's Xing/VBRI frame count."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav_facts(path, size_bytes)
    if head[:4] == b"OggS":
        return _ogg_facts(path, head, size_bytes)
    if head[4:8] in _MP4_BRANDS:
        return _mp4_facts(path, size_bytes)
    if head[:4] in _NOT_MPEG:
        return ContainerFacts()  # libsndfile reads their exact length from the header
    return ContainerFacts(claimed_s=_mp3_claimed_s(head))


def _wav_facts(path: Path, size_bytes: int) -> ContainerFacts:
    bytes_per_s = 0
    with open(path, "rb") as f:
        pos = 12
        for _ in range(64):
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                return ContainerFacts()
            chunk, length = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                fmt = f.read(16)
                if len(fmt) == 16:
                    _, ch, rate, avg, align = struct.unpack("<HHIIH", fmt[:14])
                    if not 0 < rate <= MAX_RATE_HZ:
                        return ContainerFacts(corrupt=f"its header gives a sample rate of "
                                                      f"{rate:,} Hz")
                    if ch == 0:
                        return ContainerFacts(corrupt="its header gives 0 channels")
                    bytes_per_s = avg or rate * align
            elif chunk == b"data":
                available = size_bytes - pos - 8
                slack = max(16, bytes_per_s // 100)  # a partial last frame is not worth failing
                if length == 0xFFFFFFFF and available > length and bytes_per_s:
                    return ContainerFacts(past_4gib_s=available / bytes_per_s)
                if length in (0, 0xFFFFFFFF) or length <= available + slack or not bytes_per_s:
                    return ContainerFacts()
                held, claimed = available / bytes_per_s, length / bytes_per_s
                return ContainerFacts(f"the header says {claimed:.1f} s", held, claimed)
            pos += 8 + length + (length & 1)
    return ContainerFacts()


def _ogg_facts(path: Path, head: bytes, size_bytes: int) -> ContainerFacts:
    tail_len = min(size_bytes, 1 << 17)
    with open(path, "rb") as f:
        f.seek(size_bytes - tail_len)
        tail = f.read(tail_len)
    at = tail.rfind(b"OggS")
    while at >= 0:
        header = tail[at:at + 27]
        if len(header) == 27 and header[4] == 0:  # stream structure version 0
            n_seg = header[26]
            lacing = tail[at + 27:at + 27 + n_seg]
            if len(lacing) < n_seg or at + 27 + n_seg + sum(lacing) > len(tail):
                return ContainerFacts("its last Ogg page is cut short")
            if not header[5] & 0x04:
                return ContainerFacts("its Ogg stream has no end marker")
            return ContainerFacts(chained=len(head) >= 18 and header[14:18] != head[14:18])
        at = tail.rfind(b"OggS", 0, at)
    return ContainerFacts()


def _mp4_facts(path: Path, size_bytes: int) -> ContainerFacts:
    """An MP4/M4A whose top-level atoms end without a ``moov`` (its index) was cut off."""
    seen = []
    with open(path, "rb") as f:
        pos = 0
        for _ in range(256):
            if pos + 8 > size_bytes:
                break
            f.seek(pos)
            header = f.read(16)
            size, kind = struct.unpack(">I4s", header[:8])
            if size == 1 and len(header) == 16:
                size = struct.unpack(">Q", header[8:16])[0]
            elif size == 0:  # the atom runs to the end of the file
                size = size_bytes - pos
            if kind == b"moov":
                return ContainerFacts()
            if size < 8:
                return ContainerFacts()  # not atoms after all: let the decoders say
            seen.append(kind)
            pos += size
    if b"mdat" in seen:
        return ContainerFacts("its index ('moov' atom) is missing: the recording was cut off "
                              "before it was finalised")
    return ContainerFacts()


_NOT_MPEG = frozenset({b"fLaC", b"FORM", b"caff", b"riff", b"RF64", b"wvpk", b"MAC "})
"""FLAC, AIFF, CAF, Wave64, RF64, WavPack and Monkey's Audio: no MP3 frame to look for."""
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_claimed_s(head: bytes) -> float | None:
    """The duration an MP3's Xing/Info or VBRI frame states, or None."""
    pos = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        size = 0
        for b in head[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos = 10 + size + (10 if head[5] & 0x10 else 0)
    end = min(len(head) - 4, pos + 8192)
    while True:  # the first frame header: a sync word, MPEG 1/2/2.5, layer III, a valid rate
        pos = head.find(b"\xff", pos, end)
        if pos < 0:
            return None
        b1, b2, b3 = head[pos + 1], head[pos + 2], head[pos + 3]
        version, layer, rate_i = (b1 >> 3) & 3, (b1 >> 1) & 3, (b2 >> 2) & 3
        if b1 & 0xE0 == 0xE0 and version != 1 and layer == 1 and rate_i != 3:
            break
        pos += 1
    rate = _MPEG_RATES[version][rate_i]
    mono = (b3 >> 6) == 3
    per_frame = 1152 if version == 3 else 576
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    xing = head[pos + 4 + side:pos + 4 + side + 12]
    if xing[:4] in (b"Xing", b"Info") and len(xing) == 12 and xing[7] & 1:
        return struct.unpack(">I", xing[8:12])[0] * per_frame / rate
    vbri = head[pos + 36:pos + 36 + 18]
    if vbri[:4] == b"VBRI" and len(vbri) == 18:
        return struct.unpack(">I", vbri[14:18])[0] * per_frame / rate
    return None


def describe_bytes(head: bytes) -> str:
    """A person's guess at what a non-audio file is, from its first bytes."""
    for magic, what in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"),
                        (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip archive")):
        if head.startswith(magic):
            return f"it looks like {what}"
    text = head[:512].decode("utf-8", errors="replace")
    printable = sum((c.isprintable() or c in "\r\n\t") and c != "\ufffd" for c in text)
    return "it looks like text" if text and printable >= 0.95 * len(text) else "unrecognised data"


# --- durations for planning (scanner.audio.decode.plan_tasks) -----------------------------


@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO | None]:
    """``path`` opened for reading if it is a regular file, else None; never blocks (opening
    a FIFO for reading would wait for a writer forever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            yield None
            return
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        yield f

PLAN_HEAD_BYTES = 4096
PLAN_TAIL_BYTES = 1 << 16  # an Ogg page is at most 65,307 bytes


def header_duration_s(path: Path, size_bytes: int) -> float | None:
    """A file's duration from a few bytes of its header (and an Ogg file's last page), for
    planning only: None when the container does not state it cheaply.

    WAV: the data size over the byte rate; FLAC: STREAMINFO's sample count; Ogg Vorbis and
    Opus: the last page's granule position; MP3: the Xing/VBRI frame count, else the first
    frame's bit rate (an estimate, good enough to plan parts: the last part reads to the end).

    This runs in the scanning process, so it never blocks: a file replaced by a FIFO or a
    device since it was listed is opened without waiting and left to a decode worker.
    """
    with open_regular(path) as f:
        if f is None:
            return None
        head = f.read(PLAN_HEAD_BYTES)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav_plan_s(head, size_bytes)
        if head[:4] == b"fLaC":
            return _flac_plan_s(head)
        if head[:4] == b"OggS":
            f.seek(max(0, size_bytes - PLAN_TAIL_BYTES))
            return _ogg_plan_s(head, f.read(PLAN_TAIL_BYTES))
    if head[:4] in _NOT_MPEG:
        return None
    return _mp3_claimed_s(head) or _mp3_cbr_s(head, size_bytes)


def _wav_plan_s(head: bytes, size_bytes: int) -> float | None:
    pos, bytes_per_s = 12, 0
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and pos + 24 <= len(head):
            bytes_per_s = struct.unpack("<I", head[pos + 16:pos + 20])[0]
        elif chunk == b"data":
            available = size_bytes - pos - 8
            held = available if length in (0, 0xFFFFFFFF) else min(length, available)
            return held / bytes_per_s if bytes_per_s else None
        pos += 8 + length + (length & 1)
    return None


def _flac_plan_s(head: bytes) -> float | None:
    if len(head) < 8 + 18 or head[4] & 0x7F != 0:  # the first block must be STREAMINFO
        return None
    info = head[8:8 + 18]
    rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
    total = ((info[13] & 0x0F) << 32) | struct.unpack(">I", info[14:18])[0]
    return total / rate if rate and total else None  # 0 samples: a streamed FLAC, unknown


def _ogg_plan_s(head: bytes, tail: bytes) -> float | None:
    packet = head[28:28 + 19] if len(head) >= 47 else b""
    if packet[:7] == b"\x01vorbis":
        rate = struct.unpack("<I", packet[12:16])[0]
    elif packet[:8] == b"OpusHead":
        rate = 48000  # Opus granule positions count 48 kHz samples, whatever the input rate
    else:
        return None
    serial = head[14:18]
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:at + 27]
        if len(page) == 27 and page[4] == 0 and page[14:18] == serial:
            granule = struct.unpack("<q", page[6:14])[0]
            return granule / rate if granule > 0 and rate else None
        if len(page) == 27 and page[4] == 0:
            return None  # the last page is another stream's: a chain, planned by its decoder
        at = tail.rfind(b"OggS", 0, at)
    return None


_MP3_KBPS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}


def _mp3_cbr_s(head: bytes, size_bytes: int) -> float | None:
    """Size over the first frame's bit rate: exact for CBR, an estimate for VBR."""
    pos = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        size = 0
        for b in head[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos = 10 + size
    pos = head.find(b"\xff", pos)
    while 0 <= pos < len(head) - 3:
        b1, b2 = head[pos + 1], head[pos + 2]
        version, layer, rate_i = (b1 >> 3) & 3, (b1 >> 1) & 3, (b2 >> 2) & 3
        kbps_i = b2 >> 4
        if b1 & 0xE0 == 0xE0 and version != 1 and layer == 1 and rate_i != 3 \
                and 0 < kbps_i < 15:
            kbps = _MP3_KBPS[3 if version == 3 else 2][kbps_i]
            return (size_bytes - pos) * 8 / (kbps * 1000)
        pos = head.find(b"\xff", pos + 1)
    return None
