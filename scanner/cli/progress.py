"""Scan progress on stderr: a tqdm bar on a terminal, plain log lines anywhere else.

A log file or a batch system's output (SLURM) keeps every byte written to it, so a bar's
``\\r`` frames pile up into one unreadable line; there a line such as
``12:04:31 INFO 1200/5000 files (24%), 3.1 h of audio, 41 files/s, about 0:01:32 left``
is written every :data:`PLAIN_EVERY_S` seconds instead. While the bar runs, log records
go through ``tqdm.write`` (``logging_redirect_tqdm``), so a warning never lands inside it.

Discovery has its own count (``on_discovered`` of a scan): while a large tree is walked, a
second bar (or a plain line every few seconds) says ``found 12,345 files``; it stops when the
walk ends, and the main bar's total is set then (rows may have been made already).
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
        self.found_files = 0
        self.walked = False
        self.done = 0
        self.audio_s = 0.0
        self._bar: Any = None
        self._found_bar: Any = None
        self._found_called = False
        self._started: float | None = None
        self._last_line = 0.0
        self._last_found = 0.0
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

    def _begin(self) -> float:
        now = self._clock()
        if self._started is None:
            self._started = self._last_line = self._last_found = now
        return now

    def _tqdm(self, **kw: Any) -> Any:
        from tqdm import tqdm

        return tqdm(file=self.stream, dynamic_ncols=True, **kw)

    def found(self, n: int) -> None:
        """The walk has found ``n`` files so far (``on_discovered`` of a scan)."""
        self.found_files = n
        self._found_called = True
        now = self._begin()
        if not self.enabled or self.walked:
            return
        if self.uses_bar:
            if self._found_bar is None and self._bar is None:
                self._found_bar = self._tqdm(desc="found", unit=" files")
            if self._found_bar is not None:
                self._found_bar.update(n - self._found_bar.n)
        elif now - self._last_found >= self.every_s:
            self._last_found = now
            log.info("found %s files so far", f"{n:,}")

    def start(self, total: int) -> None:
        """The walk has ended and ``total`` files are to be scanned: the bar gets its total."""
        self.total = total
        self.walked = True
        self._begin()
        if not self.enabled:
            return
        if not self.uses_bar:
            if self._found_called:
                log.info("found %s files, %s to scan", f"{self.found_files:,}", f"{total:,}")
            return
        if self._found_bar is not None:  # one bar at a time: the count stops, the bar starts
            self._found_bar.update(self.found_files - self._found_bar.n)
            self._found_bar.close()
            self._found_bar = None
        if self._bar is None:
            self._bar = self._main_bar(total)
        else:
            self._bar.total = total
            self._bar.refresh()

    def _main_bar(self, total: int | None) -> Any:
        bar = self._tqdm(total=total, unit="file", desc=self.desc, initial=self.done)
        if self.done:
            bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio")
        return bar

    def update(self, row: dict[str, Any]) -> None:
        """One file done (its result row)."""
        self.done += 1
        self.audio_s += row.get("duration_s") or 0.0
        now = self._begin()
        if not self.enabled:
            return
        if self._found_bar is not None:  # rows before the walk has ended: on the count's line
            self._found_bar.set_postfix_str(f"{self.done:,} scanned, "
                                            f"{self.audio_s / 3600:.2f} h audio", refresh=False)
            self._found_bar.update(0)  # redrawn at tqdm's own pace
            return
        if self._bar is None and self.uses_bar:
            self._bar = self._main_bar(self.total if self.walked else None)
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio", refresh=False)
            self._bar.update(1)
            return
        if now - self._last_line >= self.every_s:
            self._last_line = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain progress line for now."""
        now = self._clock() if now is None else now
        elapsed = now - (now if self._started is None else self._started)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if not self.walked:  # the total is not known yet
            text = f"{self.done} files (found {self.found_files:,} so far)"
        else:
            text = f"{self.done}/{self.total} files"
        if self.walked and self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {self.audio_s / 3600:.2f} h of audio, {rate:.1f} files/s"
        if rate > 0 and self.walked and self.total > self.done:
            text += f", about {hms((self.total - self.done) / rate)} left"
        return text

    def close(self) -> None:
        for name in ("_found_bar", "_bar"):
            bar = getattr(self, name)
            if bar is not None:
                bar.close()
                setattr(self, name, None)
