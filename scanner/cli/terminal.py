"""The terminal: the one place logging is configured, and native libraries kept off stderr.

Log lines are short (``12:04:31 WARNING message``, no module names) and their messages are
escaped, so a file name holding control characters cannot move the cursor or fake a line.

Native libraries write straight to file descriptor 2, around Python: the TFLite runtime
("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."), libmpg123 inside libsndfile
("Note: Illegal Audio-MPEG-Header ..."), TensorFlow's C++ logging, FFmpeg. They ignore
``-q`` and print into the progress bar. :func:`native_stderr_to_log` points fd 2 at a pipe
that a thread reads into ``DEBUG`` log records (shown with ``-v``), while Python's
``sys.stderr`` keeps the real terminal. Child processes (decode workers) inherit fd 2, so
their native messages land in the same pipe.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import selectors
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger("scanner.native")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_DATEFMT = "%H:%M:%S"
# Third-party loggers that speak at INFO/WARNING about things a user cannot act on.
NOISY_LOGGERS = ("tensorflow", "absl", "h5py", "numba", "matplotlib", "urllib3", "libav", "jax",
                 "transformers", "torch", "ray", "filelock", "fsspec", "PIL")
# The pipe reader wakes this often to see whether the command has ended.
POLL_S = 0.05
# The longest the end of a command waits for the reader to log what is still in the pipe.
DRAIN_TIMEOUT_S = 1.0

# C0 controls, DEL and C1 controls (U+0080-U+009F, which some terminals also obey).
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_CONTROL.update({ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})


def escape(text: str) -> str:
    """``text`` safe to print on a terminal: control characters as ``\\xNN`` escapes."""
    return text.translate(_CONTROL)


class EscapingFormatter(logging.Formatter):
    """A formatter whose messages cannot hold control characters (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)


def level_for(verbosity: int) -> int:
    """-1 (``-q``): warnings and errors; 0: info; 1 (``-v``): debug."""
    return {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)


def setup_logging(verbosity: int) -> None:
    """Configures the root logger for the command line (``-v`` debug, ``-q`` warnings only).

    Called again when a subcommand repeats ``-v``/``-q``; the handler writes to whatever
    ``sys.stderr`` is when it is set up.
    """
    level = level_for(verbosity)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT, datefmt=LOG_DATEFMT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR if level > logging.DEBUG else logging.NOTSET)
    if level > logging.DEBUG:
        # Read by TensorFlow's C++ logging when it starts (it starts after this, lazily).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _stderr_fd() -> int | None:
    """The descriptor behind ``sys.stderr``, or None when it has none (a test runner's buffer)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Inside: writes to fd 2 that do not go through ``sys.stderr`` become DEBUG log records.

    ``sys.stderr`` is moved to a copy of the original descriptor when it wrote to fd 2, so
    Python's own output (logging, the progress bar, Click) still reaches the terminal;
    faulthandler writes there too, so a crash still prints its stack. Without a usable fd 2
    (closed, or not a descriptor), or on Windows, nothing changes.
    """
    if os.name == "nt":  # selectors cannot wait on a pipe there
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    read_fd, write_fd = os.pipe()
    old_stderr = sys.stderr
    moved = _stderr_fd() == 2
    if moved:
        with contextlib.suppress(OSError, ValueError):
            old_stderr.flush()
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, errors="backslashreplace",
                               encoding=getattr(old_stderr, "encoding", None) or "utf-8")
        _retarget_handlers(old_stderr, sys.stderr)
    reader = _PipeReader(read_fd)
    reader.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    was_enabled = faulthandler.is_enabled()
    faulthandler.enable(file=saved)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        if was_enabled:
            faulthandler.enable(file=2)
        else:
            faulthandler.disable()
        # Children (a lingering resource tracker) may still hold the pipe: read what is
        # there, then stop, rather than wait for an end of file that may never come.
        reader.stop.set()
        reader.join(DRAIN_TIMEOUT_S)
        if moved:
            replacement, sys.stderr = sys.stderr, old_stderr
            _retarget_handlers(replacement, old_stderr)
            with contextlib.suppress(OSError, ValueError):
                replacement.close()
        os.close(saved)


def _retarget_handlers(old: object, new: object) -> None:
    """Stream handlers that wrote to ``old`` write to ``new``."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


class _PipeReader(threading.Thread):
    """Reads the pipe behind fd 2 into DEBUG records until told to stop and the pipe is empty."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="native-stderr", daemon=True)
        self.fd = fd
        self.stop = threading.Event()

    def run(self) -> None:
        pending = b""
        # a selector, not select(): a process with many open files (Ray) can get fds >= 1024
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            try:
                while True:
                    if not selector.select(POLL_S):
                        if self.stop.is_set():
                            break
                        continue
                    chunk = os.read(self.fd, 1 << 16)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        _emit(line)
            finally:
                _emit(pending)
                os.close(self.fd)


def _emit(raw: bytes) -> None:
    line = raw.decode("utf-8", errors="replace").strip()
    if line:
        log.debug("native: %s", line)
