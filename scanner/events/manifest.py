"""Writing a set of files without ever replacing one the tool did not write.

An export writes many files (label tracks, selection tables, an index), sometimes beside the
user's audio. :class:`WriteSet` checks every target before anything is written, writes each
atomically (a short temporary name in the same folder, then ``os.replace``), and records the
SHA-256 of what it wrote in a manifest (``.scanner-export.json`` in the export folder):

- a target that does not exist is written;
- a target that exists and the manifest names with the same content is replaced only with
  ``overwrite=True``;
- any other existing target (not in the manifest, or edited since: a label track corrected in
  Audacity) is never replaced, with or without ``overwrite``.

File names are kept within the file system's 255-byte limit (:func:`fit_name`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scanner.errors import ScannerError
from scanner.escape import escape_terminal

log = logging.getLogger(__name__)

MANIFEST_NAME = ".scanner-export.json"
NAME_MAX_BYTES = 255  # one path component on ext4, XFS, APFS, NTFS (in UTF-16 units there)
HASH_CHARS = 8
MAX_LISTED = 3  # refused files named in the error message


class ExportError(ScannerError):
    """An export that would replace files it did not write, or that cannot be written."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fit_name(stem: str, suffix: str, *, key: str) -> str:
    """``stem + suffix``, with the stem cut (and a hash of ``key`` added) to fit 255 bytes."""
    name = stem + suffix
    if len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX_BYTES:
        return name
    tag = "~" + hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]
    room = NAME_MAX_BYTES - len((tag + suffix).encode("utf-8", "surrogateescape"))
    cut = stem.encode("utf-8", "surrogateescape")[:max(room, 0)]
    return cut.decode("utf-8", "ignore") + tag + suffix


@dataclass(frozen=True)
class WriteReport:
    """What :meth:`WriteSet.write` did."""

    written: list[Path]
    replaced: list[Path]
    removed: list[Path]


class WriteSet:
    """The files of one export, checked against the manifest of ``folder`` and written together.

    Args:
        folder: The export folder; its manifest lists every file the tool wrote for it,
            inside it (relative paths) or elsewhere, e.g. beside the audio (absolute paths).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.manifest_path = self.folder / MANIFEST_NAME
        self._known: dict[str, list[str]] = self._load()

    def _load(self) -> dict[str, list[str]]:
        if not self.manifest_path.is_file():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            files = data["files"]
            return {str(k): [str(h) for h in v] for k, v in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring the unreadable export manifest %s (%s): no file in %s is "
                        "taken as written by scanner", escape_terminal(str(self.manifest_path)),
                        e, escape_terminal(str(self.folder)))
            return {}

    def _key(self, path: Path) -> str:
        path = Path(os.path.abspath(path))
        folder = Path(os.path.abspath(self.folder))
        try:
            return path.relative_to(folder).as_posix()
        except ValueError:
            return str(path)

    def _ours(self, path: Path) -> bool:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return False
        return digest in self._known.get(self._key(path), [])

    def check(self, files: Mapping[Path, str], *, overwrite: bool) -> None:
        """Raises :class:`ExportError` naming the targets that must not be replaced."""
        foreign, earlier = [], []
        for path in files:
            if not os.path.lexists(path):
                continue
            if path.is_dir() or path.is_symlink() or not self._ours(path):
                foreign.append(path)
            elif not overwrite:
                earlier.append(path)
        if foreign:
            raise ExportError(
                f"{len(foreign)} file(s) exist that scanner did not write (or that were changed "
                f"since), e.g. {_listed(foreign)}; they are never replaced: move them away or "
                "export into another folder (-o)")
        if earlier:
            raise ExportError(
                f"{len(earlier)} file(s) of an earlier export exist, e.g. {_listed(earlier)}; "
                "pass --overwrite to replace them")

    def write(self, files: Mapping[Path, str], *, overwrite: bool = False) -> WriteReport:
        """Checks, then writes ``files`` (path -> text); with ``overwrite``, also removes files
        of an earlier export into this folder that this one no longer writes (if unchanged).

        Raises:
            ExportError: A target must not be replaced, or a write failed (the OS's reason).
        """
        self.check(files, overwrite=overwrite)
        new = {self._key(p): sha256_text(text) for p, text in files.items()}
        stale = [k for k in self._known if k not in new] if overwrite else []
        # Before writing: the manifest accepts old and new content, so a crash half-way
        # leaves every file recognisable as ours.
        merged = {k: sorted(set(self._known.get(k, [])) | {h}) for k, h in new.items()}
        self._save({**self._known, **merged})
        written, replaced = [], []
        try:
            for path, text in files.items():
                existed = path.exists()
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write(path, text)
                (replaced if existed else written).append(path)
            removed = self._remove(stale)
        except OSError as e:
            raise ExportError(f"cannot write {e.filename or self.folder}: "
                              f"{e.strerror or e}") from e
        kept = {k: v for k, v in self._known.items() if k not in stale}
        self._known = {**kept, **{k: [h] for k, h in new.items()}}
        self._save(self._known)
        return WriteReport(written, replaced, removed)

    def _remove(self, keys: list[str]) -> list[Path]:
        removed = []
        for key in keys:
            path = Path(key) if os.path.isabs(key) else self.folder / key
            if path.is_file() and not path.is_symlink() and self._ours(path):
                path.unlink()
                removed.append(path)
        return removed

    def _save(self, known: dict[str, list[str]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"tool": "scanner", "what": "files written by scanner export",
                           "files": dict(sorted(known.items()))}, indent=1, ensure_ascii=False)
        try:
            _atomic_write(self.manifest_path, text + "\n")
        except OSError as e:
            raise ExportError(f"cannot write {self.manifest_path}: {e.strerror or e}") from e


def _atomic_write(path: Path, text: str) -> None:
    # A short temporary name: the target's own name may already be 255 bytes long.
    tmp = path.with_name(f".scanner-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _listed(paths: list[Path]) -> str:
    shown = ", ".join(escape_terminal(str(p)) for p in paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")
