"""Scan progress on stderr: a tqdm bar on a terminal, plain log lines anywhere else.

A log file or a batch system's output (SLURM) keeps every byte written to it, so a bar's
``\\r`` frames pile up into one unreadable line; there a line such as
``12:04:31 INFO 1200/5000 files (24%), 3.1 h of audio, 41 files/s, about 0:01:32 left``
is written every :data:`PLAIN_EVERY_S` seconds instead. While the bar runs, log records
go through ``tqdm.write`` (``logging_redirect_tqdm``), so a warning never lands inside it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger("scanner.progress")

# A plain progress line at most this often when stderr is not a terminal.
PLAIN_EVERY_S = 10.0


def hms(seconds: float) -> str:
    """``h:mm:ss`` for a duration in seconds."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Counts files and audio hours as rows arrive (``on_files`` / ``on_row`` of a scan).

    Args:
        enabled: False shows nothing (``-q``).
        stream: Where the bar goes (default ``sys.stderr`` when the scan starts).
        bar: True a tqdm bar, False plain lines; None: a bar when ``stream`` is a terminal.
        every_s: Seconds between plain lines.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, *, enabled: bool = True, stream: IO[str] | None = None,
                 bar: bool | None = None, every_s: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic, desc: str = "scanning") -> None:
        self.enabled = enabled
        self._stream = stream
        self._want_bar = bar
        self.every_s = every_s
        self._clock = clock
        self.desc = desc
        self.total = 0
        self.done = 0
        self.audio_s = 0.0
        self._bar: Any = None
        self._started = 0.0
        self._last_line = 0.0
        self._exit = contextlib.ExitStack()

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def uses_bar(self) -> bool:
        if self._want_bar is not None:
            return self._want_bar
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):
            return False

    def __enter__(self) -> Progress:
        if self.enabled and self.uses_bar:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._exit.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._exit.close()

    def start(self, total: int) -> None:
        """The number of files to scan is known: show the bar (or the first line later)."""
        self.total = total
        self._started = self._last_line = self._clock()
        if not self.enabled or not self.uses_bar:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="file", file=self.stream, dynamic_ncols=True,
                         desc=self.desc)

    def update(self, row: dict[str, Any]) -> None:
        """One file done (its result row)."""
        self.done += 1
        self.audio_s += row.get("duration_s") or 0.0
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio", refresh=False)
            self._bar.update(1)
            return
        now = self._clock()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain progress line for now."""
        elapsed = (self._clock() if now is None else now) - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.done}/{self.total} files"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {self.audio_s / 3600:.2f} h of audio, {rate:.1f} files/s"
        if rate > 0 and self.total > self.done:
            text += f", about {hms((self.total - self.done) / rate)} left"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
