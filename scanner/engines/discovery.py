"""Discovery ahead of the scan: the walk runs in a thread, the scan takes files as they come.

::

    iter_files (walk, thread) -> resume filter -> bounded queue -> the engine (decode, models)

The first file is decoded while a large tree is still being walked. The walk counts the
files it finds (``on_discovered``, for a progress line) and, once it ends, how many are to
be done (``on_files``, the progress bar's total). With ``--resume``, files whose earlier row
still holds (same size and mtime, not a transient error) are skipped here; the filter needs
only the earlier rows' keys, never the full list of files.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from scanner.records import AudioFile

log = logging.getLogger(__name__)

AHEAD_FILES = 100_000
"""Files listed ahead of the scan at most: bounds memory while a huge tree is walked."""
_END = object()

# Error kinds worth another try on --resume; other errors are properties of the file.
TRANSIENT_ERRORS = frozenset({"timeout", "crashed", "io", "internal"})


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class FileStream:
    """Files to scan, walked in a background thread ahead of the consumer.

    Iterate it once, in one thread; the callbacks run in that thread, as files are taken.

    Args:
        files: The walk (see :func:`scanner.audio.discover.iter_files`).
        done: With ``--resume``: by path text, each earlier row's size, mtime (ns) and error
            kind; files it still covers are skipped. None: every file is done.
        on_discovered: Called with the number of files found so far, when it has grown.
        on_files: Called once, when the walk has ended, with the number of files to do
            (rows may have been made already).
        ahead: Most files held between the walk and the scan.
    """

    def __init__(self, files: Iterable[AudioFile], *,
                 done: dict[str, tuple[int, int, str | None]] | None = None,
                 on_discovered: Callable[[int], None] | None = None,
                 on_files: Callable[[int], None] | None = None,
                 ahead: int = AHEAD_FILES) -> None:
        self.found = 0
        self.todo = 0
        self.skipped = 0
        self.redo: set[str] = set()
        self.walked = False
        self._done = done
        self._on_discovered = on_discovered
        self._on_files = on_files
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._walk, args=(files,), name="discover",
                                        daemon=True)
        self._thread.start()

    def _walk(self, files: Iterable[AudioFile]) -> None:
        from scanner.output.rows import path_text

        try:
            for f in files:
                self.found += 1
                if self._done is not None:
                    key = path_text(f.path)
                    prev = self._done.get(key)
                    if prev is not None:
                        if prev[:2] == (f.size_bytes, f.mtime_ns) \
                                and prev[2] not in TRANSIENT_ERRORS:
                            self.skipped += 1
                            continue
                        self.redo.add(key)
                self.todo += 1
                if not self._put(f):
                    return
            self.walked = True
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failed(e))
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[AudioFile]:
        reported = 0
        while True:
            item = self._queue.get()
            if self._on_discovered and self.found != reported:
                reported = self.found
                self._on_discovered(reported)
            if item is _END:
                if self._on_files:
                    self._on_files(self.todo)
                return
            if isinstance(item, _Failed):
                raise item.error
            if self._on_files and self.walked:
                self._on_files(self.todo)
                self._on_files = None
            yield item

    def close(self) -> None:
        """Stops the walk (it may still be running when the scan stops early)."""
        self._stop.set()
        self._thread.join(timeout=5)
