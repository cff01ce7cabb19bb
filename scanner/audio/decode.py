"""Decode: a :class:`~scanner.records.DecodeTask` in, mono float32 audio at the model's rate out.

Decoders are tried in order (libsndfile, then FFmpeg through PyAV) and every failure is kept,
so a file that cannot be read gives one :class:`~scanner.records.DecodeFailure` whose
``details`` list each decoder's reason. :func:`decode_task` never raises: it runs in worker
processes, where an exception would cost the whole batch. Long files are cut into parts by
:func:`plan_tasks`, so no task holds more than ``part_s`` seconds of audio in memory.

This module must not import TensorFlow or torch.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from scanner.audio.containers import ContainerFacts, container_facts, describe_bytes
from scanner.audio.decoders import RawDecode, decode_pyav, decode_soundfile
from scanner.constants import DEFAULT_PART_S, SAMPLE_RATE_HZ
from scanner.errors import ConfigError, DecodeError, ErrorKind
from scanner.records import AudioFile, DecodedClip, DecodeFailure, DecodeTask

logger = logging.getLogger(__name__)

Backend = Callable[..., RawDecode]
DECODERS: tuple[tuple[str, Backend], ...] = (
    ("soundfile", decode_soundfile),
    ("pyav", decode_pyav),
)
"""Decoders in the order they are tried: libsndfile first, FFmpeg for what it cannot read."""

HEAD_BYTES = 65536
TRUNCATION_SLACK_S = 0.25  # MP3/AAC encoder delay and padding make stated and decoded differ
TRUNCATION_SLACK_FRACTION = 0.01
MERGE_TAIL_FRACTION = 0.05
_DECISIVE: frozenset[str] = frozenset({"io", "empty", "truncated", "non_finite"})
"""Failures another decoder would only repeat: stop trying."""
_PRIORITY: tuple[ErrorKind, ...] = (
    "io", "empty", "non_finite", "truncated", "unsupported", "internal", "not_audio",
)
"""When every decoder failed, the kind reported is the first of theirs in this order."""


def decode_task(task: DecodeTask, *, sample_rate_hz: int = SAMPLE_RATE_HZ) -> DecodedClip | DecodeFailure:
    """Decode one task to mono float32 at ``sample_rate_hz``; never raises.

    Only ``[task.start_s, task.start_s + task.max_s)`` of the file is decoded. Channels are
    averaged, the rate converted with soxr (HQ), samples clipped to [-1, 1].

    Args:
        task: The file and the part of it to decode.
        sample_rate_hz: Rate of the returned waveform.

    Returns:
        A :class:`DecodedClip`, or a :class:`DecodeFailure` whose ``kind`` is one of
        ``empty``, ``not_audio``, ``truncated``, ``non_finite``, ``unsupported``, ``io`` or
        ``internal`` (a bug or running out of memory; ``traceback`` is set).
    """
    start = time.perf_counter()
    try:
        return _decode(task, sample_rate_hz, start)
    except MemoryError:
        return _failure(task, "internal", "ran out of memory while decoding", start,
                        trace=traceback.format_exc())
    except Exception as e:  # the worker must survive anything; the traceback keeps the bug
        return _failure(task, "internal", f"unexpected error while decoding: "
                        f"{type(e).__name__}: {e}", start, trace=traceback.format_exc())


def _decode(task: DecodeTask, sample_rate_hz: int, start: float) -> DecodedClip | DecodeFailure:
    path = Path(task.file.path)
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except FileNotFoundError:
        return _failure(task, "io", "file not found (moved or deleted since it was listed)", start)
    except PermissionError:
        return _failure(task, "io", "permission denied", start)
    except IsADirectoryError:
        return _failure(task, "io", "it is a folder, not a file", start)
    except OSError as e:
        return _failure(task, "io", f"cannot read the file: {e.strerror or e}", start)
    if size == 0 or not head:
        return _failure(task, "empty", "empty file", start)

    try:
        facts = container_facts(path, head, size)
    except Exception:  # the check is a bonus; a header it cannot parse is the decoders' job
        logger.debug("container check failed for %s", path, exc_info=True)
        facts = ContainerFacts()
    if facts.truncated:
        held = facts.held_s if facts.held_s is not None else probe_duration(path)
        after = f" after {held:.1f} s" if held is not None else ""
        return _failure(task, "truncated", f"truncated{after} ({facts.truncated})", start)

    decoders = DECODERS
    if facts.past_4gib_s is not None:  # libsndfile would stop at 4 GiB and call it the end
        decoders = tuple(d for d in DECODERS if d[0] != "soundfile") or DECODERS
    failures: list[tuple[str, ErrorKind, str]] = []
    traces: list[str] = []
    for name, backend in decoders:
        try:
            raw = backend(path, start_s=task.start_s, max_s=task.max_s,
                          sample_rate_hz=sample_rate_hz)
            result = _judge(task, raw, name, facts, sample_rate_hz, start)
        except MemoryError:
            raise
        except DecodeError as e:
            result = (e.kind, str(e))
        except Exception as e:
            traces.append(traceback.format_exc())
            result = ("internal", f"{type(e).__name__}: {e}")
        if isinstance(result, DecodedClip):
            if failures:
                logger.debug("%s: decoded by %s after %s", path, name, failures)
            return result
        failures.append((name, *result))
        if result[0] in _DECISIVE:
            break
    return _summarise(task, failures, head, start, traces)


def _judge(task: DecodeTask, raw: RawDecode, decoder: str, facts: ContainerFacts,
           sample_rate_hz: int, start: float) -> DecodedClip | tuple[ErrorKind, str]:
    """Accept what a decoder read, or say why it is not the whole part."""
    rate = raw.orig_sample_rate_hz
    if raw.non_finite_at_s is not None:
        return "non_finite", f"non-finite samples (NaN/Inf) at {raw.non_finite_at_s:.2f} s"
    read_s = raw.frames_read / rate
    end_s = task.start_s + read_s
    stated_s = raw.total_frames / rate if raw.total_exact and raw.total_frames else None
    stated_s = stated_s if stated_s is not None else facts.claimed_s
    if raw.frames_read == 0:
        if task.start_s > 0 and stated_s is not None and stated_s > task.start_s + 0.5:
            return "truncated", (f"truncated after at most {task.start_s:.1f} s "
                                 f"(the header says {stated_s:.1f} s)")
        if task.start_s > 0:
            # the plan came from an estimated duration (MP3 without a Xing frame) that was
            # too long: this part is past the end, which is no fault of the file
            logger.debug("%s: nothing after %.1f s", task.file.path, task.start_s)
            return _clip(task, raw, decoder, sample_rate_hz, start, task.start_s)
        if stated_s:
            return "truncated", f"truncated after 0.0 s (the header says {stated_s:.1f} s)"
        if raw.stopped_by:
            return "unsupported", f"no audio could be decoded ({raw.stopped_by})"
        return "empty", "no audio frames"

    expected_s = None
    if stated_s is not None:
        expected_s = max(0.0, stated_s - task.start_s)
        if task.max_s is not None:
            expected_s = min(expected_s, task.max_s)
    if expected_s is not None:
        slack = max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * expected_s)
        if read_s < expected_s - slack:
            why = f"the header says {stated_s:.1f} s"
            why += f"; {raw.stopped_by}" if raw.stopped_by else ""
            return "truncated", f"truncated after {end_s:.1f} s ({why})"
    elif raw.stopped_by and not raw.more_after:
        return "truncated", f"truncated after {end_s:.1f} s ({raw.stopped_by})"
    if raw.stopped_by:
        logger.warning("%s: decoding error after the expected end, ignored: %s",
                       task.file.path, raw.stopped_by)

    if task.start_s == 0 and task.max_s is None:
        duration_s = read_s  # the whole file was read: the truth, whatever a header says
    elif task.max_s is None or not raw.more_after:
        duration_s = end_s  # this part reached the end
    elif raw.total_frames:
        duration_s = raw.total_frames / rate
    else:
        duration_s = stated_s if stated_s is not None else end_s
    return _clip(task, raw, decoder, sample_rate_hz, start, duration_s)


def _clip(task: DecodeTask, raw: RawDecode, decoder: str, sample_rate_hz: int, start: float,
          duration_s: float) -> DecodedClip:
    cut = task.max_s is not None and task.part == task.n_parts - 1 and raw.more_after
    return DecodedClip(
        task=task, waveform=raw.waveform, sample_rate_hz=sample_rate_hz,
        orig_sample_rate_hz=raw.orig_sample_rate_hz, channels=raw.channels,
        duration_s=float(duration_s), decoder=decoder,
        seconds_taken=time.perf_counter() - start, offset_s=task.start_s,
        truncated_to_s=task.start_s + task.max_s if cut and task.max_s is not None else None,
    )


def _summarise(task: DecodeTask, failures: list[tuple[str, ErrorKind, str]], head: bytes,
               start: float, traces: list[str]) -> DecodeFailure:
    kinds = [k for _, k, _ in failures]
    kind = next((k for k in _PRIORITY if k in kinds), "internal")
    # later decoders are the broader fallback: their reason is usually the more specific one
    decoder, _, reason = next(f for f in reversed(failures) if f[1] == kind)
    if kind == "not_audio":
        stream_reason = next((m for _, k, m in failures if k == kind and "stream" in m), None)
        message = f"not an audio file ({stream_reason or describe_bytes(head)})"
    elif kind == "unsupported":
        message = f"unsupported audio format or codec ({reason})"
    elif kind == "truncated" and not reason.startswith("truncated"):
        message = f"truncated ({reason})"
    else:
        message = reason
    return DecodeFailure(
        task=task, kind=kind, message=message, decoder=decoder,
        seconds_taken=time.perf_counter() - start,
        details=tuple(f"{name}: {msg}" for name, _, msg in failures),
        traceback="\n".join(traces) or None,
    )


def _failure(task: DecodeTask, kind: ErrorKind, message: str, start: float, *,
             trace: str | None = None) -> DecodeFailure:
    return DecodeFailure(task=task, kind=kind, message=message,
                         seconds_taken=time.perf_counter() - start, traceback=trace)


def probe_duration(path: str | os.PathLike[str]) -> float | None:
    """A file's duration in seconds from its header (libsndfile, then FFmpeg), or None.

    Cheap: nothing is decoded. For MP3 without a Xing header the value is an estimate.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            facts = container_facts(Path(path), head, os.stat(path).st_size)
            if facts.past_4gib_s is not None:
                return facts.past_4gib_s
    except Exception:
        pass
    try:
        import soundfile as sf

        info = sf.info(os.fspath(path))
        if 0 < info.frames < 2**62 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:
        pass
    try:
        import av

        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1_000_000
    except Exception:
        pass
    return None


def plan_tasks(files: Iterable[AudioFile], *, part_s: float = DEFAULT_PART_S,
               probe_over_bytes: int = 4_000_000,
               max_duration_s: float | None = None) -> Iterator[DecodeTask]:
    """Turn files into decode tasks, cutting long files into parts of ``part_s`` seconds.

    Files up to ``probe_over_bytes`` are one task each (they cannot hold much audio); larger
    ones are probed and split into consecutive parts, so a 10-hour recording is decoded in
    bounded pieces. A file whose probe fails is one task: decoding reports its error.

    Args:
        files: Discovered files, in the order tasks should come.
        part_s: Longest part, in seconds.
        probe_over_bytes: Files larger than this are probed for their duration.
        max_duration_s: Decode at most this many seconds of each file (the clip that reaches
            the cap records it in ``truncated_to_s``).

    Yields:
        Tasks, a file's parts consecutively and in order.

    Raises:
        ConfigError: ``part_s`` or ``max_duration_s`` is not positive.
    """
    if not part_s > 0:
        raise ConfigError(f"part length must be positive, got {part_s!r} s")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ConfigError(f"max duration must be positive, got {max_duration_s!r} s")
    for file in files:
        duration_s = probe_duration(file.path) if file.size_bytes > probe_over_bytes else None
        if duration_s is None:
            yield DecodeTask(file, max_s=max_duration_s)
            continue
        length_s = duration_s if max_duration_s is None else min(duration_s, max_duration_s)
        # a last part under 5% of part_s joins the one before: an estimated duration (MP3
        # without a Xing frame) that is slightly long must not plan a part past the end
        n_parts = max(1, math.ceil(length_s / part_s - MERGE_TAIL_FRACTION))
        if n_parts == 1:
            yield DecodeTask(file, max_s=max_duration_s)
            continue
        for k in range(n_parts):
            if k < n_parts - 1:
                max_s: float | None = part_s
            else:  # the last part reads to the end (a probe can underestimate), or to the cap
                max_s = None if max_duration_s is None else max_duration_s - k * part_s
            yield DecodeTask(file, start_s=k * part_s, max_s=max_s, part=k, n_parts=n_parts)
