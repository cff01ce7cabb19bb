"""Discover: turn the paths a person gives into a sorted list of audio files to scan.

The walk never crashes on the file system's surprises: unreadable folders, broken links and
files that vanish mid-walk are logged and skipped. Symlinks are handled conservatively:
linked folders are not entered unless asked, a folder is never entered twice (so a link to a
parent cannot loop), and by default a linked file is taken only when its target lies inside
the folder being scanned.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.errors import ConfigError, InputPathError
from scanner.records import AudioFile

logger = logging.getLogger(__name__)

DEFAULT_EXTENSIONS: tuple[str, ...] = (
    "wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "aif", "aiff", "wma",
)
"""File name extensions (lower case, no dot) scanned when none are given."""

MEDIA_EXTENSIONS: frozenset[str] = frozenset({
    "3g2", "3gp", "aac", "ac3", "aif", "aifc", "aiff", "amr", "ape", "au", "avi", "caf", "dts",
    "eac3", "flac", "flv", "m4a", "m4b", "m4r", "m4v", "mka", "mkv", "mov", "mp2", "mp3", "mp4",
    "mpc", "mpeg", "mpg", "mts", "oga", "ogg", "ogv", "opus", "ra", "rf64", "snd", "spx", "ts",
    "tta", "voc", "w64", "wav", "weba", "webm", "wma", "wmv", "wv",
})
"""Extensions of files that usually hold sound: when such files are skipped because their
extension is not scanned, discovery says how many and how to include them."""


@dataclass(frozen=True)
class _Filters:
    extensions: frozenset[str]
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    hidden: bool
    follow_symlinks: bool


def discover(
    paths: Sequence[str | os.PathLike[str]],
    *,
    extensions: Sequence[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: bool = False,
    follow_symlinks: bool = False,
) -> list[AudioFile]:
    """Find the audio files under ``paths``.

    Args:
        paths: Folders (walked recursively) and files. A file named explicitly is taken as
            is, whatever its extension and the filters. Pipes and devices are skipped (a
            decoder would block on them).
        extensions: File name extensions to keep, case-insensitive, with or without the dot
            (default :data:`DEFAULT_EXTENSIONS`).
        include: ``fnmatch`` globs; when given, a file is kept only if one matches its path
            relative to the scanned folder (with ``/`` separators) or its file name.
        exclude: ``fnmatch`` globs matched the same way; a matching file is dropped and a
            matching folder is not entered.
        hidden: Also scan files and folders whose name starts with a dot.
        follow_symlinks: Enter linked folders and take linked files wherever they point.
            Even then a folder is entered at most once, so link loops end.

    Returns:
        The files, each once (by resolved path), sorted by absolute path.

    Raises:
        InputPathError: A path does not exist or is neither a file nor a folder (a pipe or
            a device would block the decoder forever).
        ConfigError: ``extensions`` is empty.

    Files skipped only for their extension are counted; when some usually hold sound (see
    :data:`MEDIA_EXTENSIONS`), a warning says how many and which ``--ext`` takes them.
    """
    filters = _make_filters(extensions, include, exclude, hidden, follow_symlinks)
    skipped: Counter[str] = Counter()

    found: dict[str, tuple[bool, str]] = {}  # resolved path -> (is a link, path as found)
    for root, is_dir in [_check_root(raw) for raw in paths]:
        for path in _walk(root, filters, skipped) if is_dir else [str(root)]:
            _remember(found, path)

    files = []
    for _, path in sorted(found.values()):
        try:
            st = os.stat(path)
        except OSError as e:
            logger.warning("skipping %s: %s", path, e.strerror or e)
            continue
        files.append(AudioFile(path=Path(path), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns))
    files.sort(key=lambda f: str(f.path))
    _say_skipped(skipped, len(files))
    return files


def iter_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    extensions: Sequence[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: bool = False,
    follow_symlinks: bool = False,
) -> Iterator[AudioFile]:
    """:func:`discover`, streamed: each file is yielded as the walk finds it, so a scan
    starts on the first file while a large tree is still being walked.

    Same arguments, filters and errors as :func:`discover`; the paths are checked before
    anything is yielded. Files come in walk order, not sorted. Each file is taken once by
    resolved path: the first path that reaches it, except that linked files are held back
    until the walk ends, so a real file wins over a link to it, and of several links the
    smaller path (as in :func:`discover`). The skipped-extension warning comes at the end.
    """
    filters = _make_filters(extensions, include, exclude, hidden, follow_symlinks)
    roots = [_check_root(raw) for raw in paths]
    return _stream(roots, filters)


def _stream(roots: list[tuple[Path, bool]], filters: _Filters) -> Iterator[AudioFile]:
    seen: set[str] = set()
    links: dict[str, str] = {}  # resolved path -> smallest linked path that reaches it
    skipped: Counter[str] = Counter()
    n = 0
    for root, is_dir in roots:
        for path in _walk(root, filters, skipped) if is_dir else [str(root)]:
            key = os.path.realpath(path)
            if os.path.islink(path):
                if key not in links or path < links[key]:
                    links[key] = path
            elif key not in seen:
                seen.add(key)
                if (file := _stat(path)) is not None:
                    n += 1
                    yield file
    for key, path in sorted(links.items(), key=lambda kv: kv[1]):
        if key not in seen and (file := _stat(path)) is not None:
            n += 1
            yield file
    _say_skipped(skipped, n)


def _stat(path: str) -> AudioFile | None:
    try:
        st = os.stat(path)
    except OSError as e:
        logger.warning("skipping %s: %s", path, e.strerror or e)
        return None
    return AudioFile(path=Path(path), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)


def _make_filters(extensions: Sequence[str] | None, include: Sequence[str],
                  exclude: Sequence[str], hidden: bool, follow_symlinks: bool) -> _Filters:
    if extensions is None:
        exts = frozenset(DEFAULT_EXTENSIONS)
    else:
        exts = frozenset(e.lower().lstrip(".") for e in extensions if e.strip("."))
        if not exts:
            raise ConfigError("no file extensions to scan were given")
    return _Filters(exts, tuple(include), tuple(exclude), hidden, follow_symlinks)


def _check_root(raw: str | os.PathLike[str]) -> tuple[Path, bool]:
    """A path to scan, absolute, and whether it is a folder; InputPathError if neither."""
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(raw))))
    if not os.path.exists(root):
        why = "a broken symbolic link" if os.path.islink(root) else "does not exist"
        raise InputPathError(f"cannot scan {str(raw)!r}: {why}")
    if root.is_dir():
        return root, True
    if root.is_file():
        return root, False
    raise InputPathError(f"cannot scan {str(raw)!r}: {_what_it_is(root)}, not a "
                         f"regular file or folder")


def _say_skipped(skipped: Counter[str], found: int) -> None:
    media = [(ext, n) for ext, n in skipped.most_common() if ext in MEDIA_EXTENSIONS]
    if not media:
        return
    counts = ", ".join(f"{n} .{ext} file{'s' if n > 1 else ''}" for ext, n in media)
    verb = "were" if sum(n for _, n in media) > 1 else "was"
    logger.warning("%s %s skipped (found %d to scan); add --ext %s to scan them too", counts,
                   verb, found, ",".join(ext for ext, _ in media))


def _what_it_is(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return f"it is {what}"
    return "it is a special file"


def _remember(found: dict[str, tuple[bool, str]], path: str) -> None:
    """Keep one path per resolved file: a real file over a link, then the smaller path."""
    key = os.path.realpath(path)
    entry = (os.path.islink(path), path)
    if key not in found or entry < found[key]:
        found[key] = entry


def _walk(root: Path, filters: _Filters, skipped: Counter[str]) -> Iterator[str]:
    """Paths of the matching files under ``root`` (a folder), as found (no particular order)."""
    root_real = os.path.realpath(root)
    seen_dirs = {root_real}
    stack: list[tuple[str, str]] = [(str(root), "")]  # (folder path, path relative to root)
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            logger.warning("skipping unreadable folder %s: %s", folder, e.strerror or e)
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(".") and not filters.hidden:
                continue
            rel = f"{rel_folder}/{name}" if rel_folder else name
            try:
                link = entry.is_symlink()
                if link and not os.path.exists(entry.path):
                    logger.warning("skipping broken symbolic link %s", entry.path)
                    continue
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError as e:
                logger.warning("skipping %s: %s", entry.path, e.strerror or e)
                continue
            if is_dir:
                if _matches(filters.exclude, rel, name):
                    continue
                if link and not filters.follow_symlinks:
                    logger.debug("not following linked folder %s", entry.path)
                    continue
                real = os.path.realpath(entry.path)
                if real in seen_dirs:
                    logger.debug("not entering %s again (it is %s)", entry.path, real)
                    continue
                seen_dirs.add(real)
                stack.append((entry.path, rel))
                continue
            if not is_file:  # a pipe or device would block the decoder forever
                logger.warning("skipping %s: not a regular file", entry.path)
                continue
            if link and not filters.follow_symlinks and not _inside(entry.path, root_real):
                logger.info("skipping %s: it links outside %s", entry.path, root)
                continue
            if _wanted(filters, rel, name):
                yield entry.path
            else:
                ext = os.path.splitext(name)[1].lower().lstrip(".")
                if ext and ext not in filters.extensions:
                    skipped[ext] += 1


def _inside(path: str, root_real: str) -> bool:
    target = os.path.realpath(path)
    return os.path.commonpath([target, root_real]) == root_real


def _wanted(filters: _Filters, rel: str, name: str) -> bool:
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    if ext not in filters.extensions:
        return False
    if filters.include and not _matches(filters.include, rel, name):
        return False
    return not _matches(filters.exclude, rel, name)


def _matches(globs: Sequence[str], rel: str, name: str) -> bool:
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in globs)
