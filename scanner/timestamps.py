"""When a recording started: from its metadata or its file name.

:func:`recorded_at` tries, in order:

1. ``pattern``, the user's ``--timestamp-pattern``, searched in the file name, then in the
   whole path. Either a strptime format (``site3_%Y%m%d_%H%M%S``; it may match anywhere in the
   name) or a regular expression with named groups ``year``, ``month``, ``day`` and
   optionally ``hour``, ``minute``, ``second`` (``(?P<year>\\d{4})...``). It is a regex when it
   holds ``(?P<``.
2. Metadata in a WAV (RIFF/RF64) header: a GUANO ``guan`` chunk's ``Timestamp``, a BWF
   ``bext`` chunk's ``OriginationDate``/``OriginationTime``, an AudioMoth comment
   (``Recorded at 03:04:05 01/05/2024 (UTC)``, in ``LIST/INFO/ICMT``).
3. The file name: AudioMoth ``YYYYMMDD_HHMMSS``, Song Meter ``PREFIX_YYYYMMDD_HHMMSS``
   (both also with ``-`` or ``T``), and ISO-like stamps (``2024-05-01T03-04-05``,
   ``2024-05-01 03:04:05``).

Only chunk headers and small chunks are read (a few kilobytes and a seek past the audio),
so it is cheap enough for every file of a scan. A stamp that names its zone (GUANO with an
offset, AudioMoth's ``(UTC+1)``) gives an aware datetime; others are naive: the recorder's
own clock, zone unknown.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import struct
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from scanner.errors import ConfigError

log = logging.getLogger(__name__)

# Header reading bounds: chunks larger than this are skipped, not read (a 'data' chunk, a
# huge iXML); at most this many chunks are looked at.
MAX_CHUNK_BYTES = 64 * 1024
MAX_CHUNKS = 64
# Stamps outside this range are taken for a misparse (a serial number that looks like a date).
EARLIEST_YEAR, LATEST_YEAR = 1990, 2100

_NAME_PATTERNS = (
    # AudioMoth 20240501_030405, Song Meter SMM01234_20240501_030405, also 20240501T030405
    re.compile(r"(?<!\d)(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})[_T-]"
               r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})(?!\d)"),
    # ISO-like 2024-05-01T03-04-05, 2024-05-01 03:04:05, 2024-05-01_03.04.05
    re.compile(r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T _]"
               r"(?P<hour>\d{2})[-:.](?P<minute>\d{2})[-:.](?P<second>\d{2})(?!\d)"),
)
_AUDIOMOTH_COMMENT = re.compile(
    r"Recorded at (?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) "
    r"(?P<day>\d{2})/(?P<month>\d{2})/(?P<year>\d{4})"
    r"(?: \(UTC(?:(?P<sign>[+-])(?P<tzh>\d{1,2})(?::?(?P<tzm>\d{2}))?)?\))?")
_STRPTIME_FIELDS = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}",
    "I": r"\d{1,2}", "M": r"\d{1,2}", "S": r"\d{1,2}", "f": r"\d{1,6}", "j": r"\d{1,3}",
    "p": r"(?:AM|PM|am|pm)", "b": r"[A-Za-z]{3}", "B": r"[A-Za-z]+", "z": r"(?:Z|[+-]\d{2}:?\d{2})",
    "%": "%",
}


def recorded_at(path: Path, *, pattern: str | None = None) -> datetime | None:
    """When the recording at ``path`` started, or None when neither metadata nor name says.

    Args:
        path: The audio file (read only for WAV metadata; a missing or unreadable file just
            falls back to its name).
        pattern: A strptime format or a regex with named groups (see the module docstring).

    Raises:
        ConfigError: ``pattern`` is not a valid strptime format or regex.
    """
    path = Path(path)
    if pattern:
        found = _from_user_pattern(path, pattern)
        if found is not None:
            return found
    found = from_metadata(path)
    if found is not None:
        return found
    return from_name(path.name)


# -- file names -------------------------------------------------------------------------------

def from_name(name: str) -> datetime | None:
    """A stamp in a file name (AudioMoth, Song Meter or ISO-like), or None."""
    for regex in _NAME_PATTERNS:
        for match in regex.finditer(name):
            found = _from_groups(match.groupdict())
            if found is not None:
                return found
    return None


def _from_groups(groups: dict[str, str | None]) -> datetime | None:
    try:
        value = datetime(int(groups["year"] or 0), int(groups["month"] or 0),
                         int(groups["day"] or 0), int(groups.get("hour") or 0),
                         int(groups.get("minute") or 0), int(groups.get("second") or 0))
    except (ValueError, KeyError, TypeError):
        return None
    return value if EARLIEST_YEAR <= value.year <= LATEST_YEAR else None


@lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> tuple[re.Pattern[str], str | None]:
    """``pattern`` as a regex, and the strptime format to apply to its match (None for a regex).

    Raises:
        ConfigError: An invalid regex, one without a ``year`` group, or a strptime format
            without ``%Y``/``%y``.
    """
    if "(?P<" in pattern:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"--timestamp-pattern {pattern!r} is not a valid regex: {e}") from e
        missing = {"year", "month", "day"} - set(regex.groupindex)
        if missing:
            raise ConfigError(f"--timestamp-pattern {pattern!r} needs named groups year, month "
                              f"and day (missing: {', '.join(sorted(missing))})")
        return regex, None
    parts, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%" and i + 1 < len(pattern):
            code = pattern[i + 1]
            if code not in _STRPTIME_FIELDS:
                raise ConfigError(f"--timestamp-pattern {pattern!r}: %{code} is not supported "
                                  f"(use {', '.join('%' + c for c in _STRPTIME_FIELDS)})")
            parts.append(_STRPTIME_FIELDS[code])
            i += 2
        else:
            parts.append(re.escape(char))
            i += 1
    if "%Y" not in pattern and "%y" not in pattern:
        raise ConfigError(f"--timestamp-pattern {pattern!r} has no year (%Y or %y); give a "
                          "strptime format such as 'site_%Y%m%d_%H%M%S' or a regex with named "
                          "groups year, month, day")
    return re.compile("".join(parts)), pattern


def _from_user_pattern(path: Path, pattern: str) -> datetime | None:
    regex, fmt = compile_pattern(pattern)
    for text in (path.name, path.as_posix()):
        for match in regex.finditer(text):
            if fmt is None:
                found = _from_groups(match.groupdict())
            else:
                try:
                    found = datetime.strptime(match.group(), fmt)
                except ValueError:
                    found = None
            if found is not None:
                return found
    return None


# -- WAV metadata -----------------------------------------------------------------------------

def from_metadata(path: Path) -> datetime | None:
    """A stamp from a WAV header's GUANO, ``bext`` or AudioMoth comment, or None."""
    try:
        chunks = _riff_chunks(Path(path))
    except OSError as e:
        log.debug("no header timestamp for %s: %s", path, e)
        return None
    for reader, chunk_id in ((_from_guano, b"guan"), (_from_bext, b"bext"),
                             (_from_info, b"LIST")):
        for body in chunks.get(chunk_id, []):
            found = reader(body)
            if found is not None:
                return found
    return None


def _riff_chunks(path: Path) -> dict[bytes, list[bytes]]:
    """The small chunks of a RIFF/RF64 WAV (id -> bodies); {} for any other file."""
    out: dict[bytes, list[bytes]] = {}
    # Non-blocking, and only a regular file: a FIFO swapped in since discovery must not block.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        return out
    with os.fdopen(fd, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
            return out
        for _ in range(MAX_CHUNKS):
            header = f.read(8)
            if len(header) < 8:
                break
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            if size <= MAX_CHUNK_BYTES:
                body = f.read(size)
                if len(body) < size:
                    break
                out.setdefault(chunk_id, []).append(body)
            elif size == 0xFFFFFFFF:  # an RF64 data chunk: its size is in ds64; nothing follows we need
                break
            else:
                f.seek(size, 1)
            if size % 2:
                f.seek(1, 1)
    return out


def _from_guano(body: bytes) -> datetime | None:
    text = body.decode("utf-8", "replace")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Timestamp" and value.strip():
            return _parse_iso(value.strip())
    return None


def _parse_iso(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if EARLIEST_YEAR <= value.year <= LATEST_YEAR else None


def _from_bext(body: bytes) -> datetime | None:
    # EBU Tech 3285: Description[256] Originator[32] OriginatorReference[32]
    # OriginationDate[10] "yyyy-mm-dd" OriginationTime[8] "hh-mm-ss" (any separator)
    if len(body) < 338:
        return None
    date = body[320:330].decode("ascii", "replace")
    time = body[330:338].decode("ascii", "replace")
    match = re.fullmatch(r"(\d{4})\D(\d{2})\D(\d{2})", date)
    clock = re.fullmatch(r"(\d{2})\D(\d{2})\D(\d{2})", time)
    if not match:
        return None
    hms = clock.groups() if clock else ("0", "0", "0")
    return _from_groups(dict(zip(("year", "month", "day", "hour", "minute", "second"),
                                 (*match.groups(), *hms), strict=True)))


def _from_info(body: bytes) -> datetime | None:
    if body[:4] != b"INFO":
        return None
    pos = 4
    while pos + 8 <= len(body):
        sub_id, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
        value = body[pos + 8:pos + 8 + size]
        pos += 8 + size + (size % 2)
        if sub_id in (b"ICMT", b"ICRD"):
            found = from_audiomoth_comment(value.decode("utf-8", "replace"))
            if found is not None:
                return found
    return None


def from_audiomoth_comment(text: str) -> datetime | None:
    """The start time in an AudioMoth comment (``Recorded at 03:04:05 01/05/2024 (UTC)``)."""
    match = _AUDIOMOTH_COMMENT.search(text)
    if not match:
        return None
    found = _from_groups(match.groupdict())
    if found is None or "(UTC" not in match.group():
        return found
    offset = timedelta(0)
    if match.group("sign"):
        offset = timedelta(hours=int(match.group("tzh")), minutes=int(match.group("tzm") or 0))
        offset = -offset if match.group("sign") == "-" else offset
    return found.replace(tzinfo=timezone(offset))
