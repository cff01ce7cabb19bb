"""The CLI's boundary: however a command ends, one clear line and a documented exit code.

:func:`run` wraps the whole ``scanner`` command line. It turns SIGTERM and SIGHUP into the
same path as Ctrl-C (the scan commits its rows, stops its workers and says how to resume),
maps what escapes a command to an exit code, and makes sure the process really ends, even
when a library's exit handler would wait forever.

Exit codes (the README's list):

====  ======================================================================================
0     every file was scanned (or the command did what it was asked)
1     an internal error (a bug): one line; ``-v`` shows the traceback
2     bad usage: an unknown option, a path that does not exist or is not a file or folder
3     a model, head or setting could not be loaded (the message says what to do)
4     the scan finished, but some files have ``status = error``
5     a file or folder could not be read or written (read-only, disk full, name too long,
      permission denied, a path through a regular file); the message names it
129   hung up (SIGHUP); rows done so far are kept, rerun with ``--resume``
130   interrupted (Ctrl-C); rows done so far are kept, rerun with ``--resume``
143   terminated (SIGTERM); rows done so far are kept, rerun with ``--resume``
====  ======================================================================================
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import click

from scanner.cli import (  # noqa: F401 - re-exported: every exit code in one list
    EXIT_FILE_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_LOAD_FAILED,
    EXIT_OK,
    EXIT_USAGE,
)

log = logging.getLogger("scanner")

EXIT_INTERNAL = 1
EXIT_IO = 5
EXIT_HANGUP = 128 + signal.SIGHUP  # 129
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_GRACE_S = 5.0
"""After a command ends, the interpreter gets this long to shut down before it is ended hard."""

_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "a file name is longer than the file system allows",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "it already exists",
    errno.EMFILE: "too many open files (raise 'ulimit -n')",
    errno.EIO: "an input/output error (a failing disk or a lost connection)",
}


class _Signals:
    """SIGTERM and SIGHUP act like Ctrl-C once; a second one ends the process at once."""

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                # an ignored signal stays ignored: `nohup scanner scan ...` must survive a
                # closed terminal
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue
                signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not the main thread, or not on this platform
                pass

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            os._exit(128 + signum)
        self.received = signum
        raise KeyboardInterrupt(signal.Signals(signum).name)


def shown(text: object) -> str:
    """``text`` for a terminal line: control characters (ANSI escapes, newlines) escaped."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def describe_os_error(e: OSError) -> str:
    """One line for a failed file operation: what failed, on which path, and why."""
    reason = _HINTS.get(e.errno or -1) or e.strerror or type(e).__name__
    if e.errno in (errno.EEXIST, errno.ENOTDIR) and e.filename is not None \
            and os.path.lexists(e.filename) and not os.path.isdir(e.filename):
        reason = "a file is in the way where a folder is needed"
    where = ""
    if e.filename is not None:
        where = f" {shown(os.fsdecode(e.filename))}"
        if e.filename2 is not None:
            where += f" -> {shown(os.fsdecode(e.filename2))}"
    detail = f" ({e.strerror})" if e.strerror and e.strerror.lower() != reason.lower() else ""
    return f"cannot use{where}: {reason}{detail}"


def run(command: click.BaseCommand, *, prog_name: str,
        args: list[str] | None = None) -> NoReturn:
    """Runs ``command`` as the program and exits with its documented code; never returns."""
    signals = _Signals()
    signals.install()
    code = invoke(command, prog_name=prog_name, args=args)
    if code == EXIT_INTERRUPTED and signals.received is not None:
        code = 128 + signals.received
    exit_now(code)


def invoke(command: click.BaseCommand, *, prog_name: str = "scanner",
           args: list[str] | None = None) -> int:
    """Runs ``command`` and returns its exit code; nothing but one line escapes to the user."""
    try:
        rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        _error(logging.WARNING, "interrupted")
        return EXIT_INTERRUPTED
    except BaseException as e:  # noqa: BLE001 - this is the boundary
        return _failed(e)
    return rv if isinstance(rv, int) else EXIT_OK


def _failed(e: BaseException) -> int:
    from scanner.errors import ScannerError

    if isinstance(e, SystemExit):
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else 1)
    if isinstance(e, ScannerError):
        _error(logging.ERROR, shown(e), e)
        return EXIT_LOAD_FAILED
    if isinstance(e, OSError):
        _error(logging.ERROR, describe_os_error(e), e)
        return EXIT_IO
    if isinstance(e, MemoryError):
        _error(logging.ERROR, "out of memory; try fewer --workers or a smaller --batch-seconds", e)
        return EXIT_INTERNAL
    _error(logging.ERROR, f"internal error: {type(e).__name__}: {shown(e)} (rerun with -v for "
                          f"the traceback, and please report it)", e)
    return EXIT_INTERNAL


def _error(level: int, message: str, e: BaseException | None = None) -> None:
    if not logging.getLogger().handlers:  # the command never got to configure logging
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    log.log(level, "%s", message)
    if e is not None:
        log.debug("traceback:", exc_info=e)


def exit_now(code: int, *, grace_s: float = EXIT_GRACE_S,
             hard_exit: Callable[[int], None] = os._exit) -> NoReturn:
    """Exits with ``code``; if interpreter shutdown hangs (a library's exit handler waiting
    on a stuck process), the process is ended after ``grace_s`` seconds anyway."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    timer = threading.Timer(grace_s, hard_exit, args=(code,))
    timer.daemon = True
    timer.start()
    sys.exit(code)
