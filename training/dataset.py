"""A labelled dataset: which files, their labels, and the recording (group) each comes from.

Two layouts:

- **Label folders**: ``DATA_DIR/<label>/**/<audio>``; every subfolder is a label (at least two).
- **Manifest**: a CSV with a ``path`` (or ``file``) column, a ``label`` column and an optional
  ``group`` column; paths are relative to the CSV's folder. ``DATA_DIR/manifest.csv`` is used
  automatically when it has a ``group`` column (the shared cry-scream dataset has one).

Groups name the source recording, so the split never puts parts of one recording on both
sides. Without a ``group`` column, the group is derived from the file name by
:func:`derive_group`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner import CLASSES
from scanner.errors import ConfigError
from scanner.records import AudioFile

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
# A trailing part index: "-3", "_012", " 7" (repeated: "rec_2-1" -> "rec").
_PART_SUFFIX = re.compile(r"(?:[-_ ]\d+)+$")


@dataclass(frozen=True)
class LabelledFile:
    """One training example: a file, its label, and the recording it comes from."""

    file: AudioFile
    label: str
    group: str

    @property
    def path(self) -> Path:
        return self.file.path


@dataclass(frozen=True)
class Dataset:
    """Labelled files plus where they came from.

    Attributes:
        items: The files, in a stable order (sorted by path).
        classes: Label names in head output order.
        root: Folder the ``path`` column of ``split.csv`` is relative to.
        source: ``folders`` or the manifest's path.
    """

    items: tuple[LabelledFile, ...]
    classes: tuple[str, ...]
    root: Path
    source: str

    def counts(self) -> dict[str, int]:
        """Files per label, in class order."""
        c = Counter(item.label for item in self.items)
        return {k: c[k] for k in self.classes}

    def relpath(self, item: LabelledFile) -> str:
        try:
            return item.path.relative_to(self.root).as_posix()
        except ValueError:
            return item.path.as_posix()


def derive_group(path: Path, root: Path) -> str:
    """The recording a file belongs to, from its name alone.

    The rule: take the file's stem, strip any trailing part indices (``-<digits>``,
    ``_<digits>`` or `` <digits>``, repeatedly), and prefix the folder
    relative to ``root``. So ``cry/baby7_003.wav`` and ``cry/baby7_004.wav`` share the group
    ``cry/baby7``, while a stem made only of digits (``cry/0001.wav``) keeps itself.
    """
    stem = path.stem
    base = _PART_SUFFIX.sub("", stem) or stem
    try:
        parent = path.parent.relative_to(root).as_posix()
    except ValueError:
        parent = path.parent.as_posix()
    return f"{parent}/{base}" if parent not in ("", ".") else base


def class_order(labels: Sequence[str]) -> tuple[str, ...]:
    """The project's class order when the labels are exactly its classes, else sorted."""
    unique = set(labels)
    if unique == set(CLASSES):
        return CLASSES
    return tuple(sorted(unique))


def _audio_file(path: Path) -> AudioFile:
    st = path.stat()
    return AudioFile(path=path.resolve(), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)


def _manifest_has_groups(path: Path) -> bool:
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    return "group" in [h.strip() for h in header]


def load_manifest(manifest: Path) -> list[LabelledFile]:
    """Reads ``path``/``file``, ``label`` and optional ``group`` columns of a CSV.

    Raises:
        ConfigError: A missing column, an empty label, or a listed file that does not exist.
    """
    root = manifest.parent
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        path_col = "path" if "path" in header else "file" if "file" in header else None
        if path_col is None or "label" not in header:
            raise ConfigError(f"{manifest} needs a 'path' (or 'file') and a 'label' column, "
                              f"has {header}")
        rows = list(reader)
    items, missing = [], []
    for i, row in enumerate(rows, start=2):
        rel, label = (row.get(path_col) or "").strip(), (row.get("label") or "").strip()
        if not rel or not label:
            raise ConfigError(f"{manifest}, line {i}: empty path or label")
        path = (root / rel)
        if not path.is_file():
            missing.append(rel)
            continue
        group = (row.get("group") or "").strip() or derive_group(path, root)
        items.append(LabelledFile(_audio_file(path), label, group))
    if missing:
        raise ConfigError(f"{len(missing)} file(s) listed in {manifest} do not exist, "
                          f"e.g. {missing[0]!r}")
    return items


_SITE_NAME = re.compile(
    r"^(?:(?:site|plot|station|recorder|device|deployment|deploy|sensor|mic|unit|loc|location|"
    r"point|transect|am|sm|card|sd)[-_ ]?\w*\d\w*"  # site_03, AM12, SM4-A, card2
    r"|.*(?:19|20)\d{2}[-_]?[01]\d[-_]?[0-3]\d.*"  # a date: 20240517, 2024-05-17
    r"|[0-9a-f]{8,}"  # a device serial number
    r"|\d+)$",  # a bare number
    re.IGNORECASE)


def looks_like_sites(names: Sequence[str]) -> bool:
    """True when folder names read as recording sites, devices or dates rather than labels.

    Labels are words (``cry``, ``dog_bark``); folders of a field deployment are named after
    sites, recorders and days (``site_03``, ``AM12``, ``20240517``). Known class names are
    always labels.
    """
    if not names or any(n in CLASSES for n in names):
        return False
    return sum(bool(_SITE_NAME.match(n)) for n in names) * 2 >= len(names)


def load_folders(data_dir: Path) -> list[LabelledFile]:
    """One label per subfolder of ``data_dir``; audio found by :func:`scanner.audio.discover.discover`.

    Raises:
        ConfigError: The subfolders look like recording sites or dates, not labels (checked
            before any audio is read).
    """
    from scanner.audio.discover import discover

    subs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if looks_like_sites([p.name for p in subs]):
        shown = ", ".join(p.name for p in subs[:4]) + (", ..." if len(subs) > 4 else "")
        raise ConfigError(
            f"the subfolders of {data_dir} ({shown}) look like recording sites, devices or "
            f"dates, not labels; train needs DATA_DIR/<label>/... or --manifest labels.csv "
            f"(path,label[,group])")
    items = []
    for sub in subs:
        for af in discover([sub]):
            items.append(LabelledFile(af, sub.name, derive_group(Path(af.path), data_dir)))
    return items


def load_dataset(data_dir: str | Path, manifest: str | Path | None = None) -> Dataset:
    """Finds the labelled files of a training folder (see the module docstring).

    Raises:
        ConfigError: Fewer than two labels, or no audio at all.
    """
    root = Path(data_dir).expanduser().resolve()
    if manifest is None and (root / MANIFEST_NAME).is_file() and \
            _manifest_has_groups(root / MANIFEST_NAME):
        manifest = root / MANIFEST_NAME
        log.info("using %s (it has a group column) for labels and groups", manifest)
    if manifest is not None:
        manifest_path = Path(manifest).expanduser().resolve()
        items = load_manifest(manifest_path)
        source, root = str(manifest_path), manifest_path.parent
    else:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a folder")
        items = load_folders(root)
        source = "folders"
    items.sort(key=lambda it: str(it.path))
    labels = [it.label for it in items]
    if len(set(labels)) < 2:
        raise ConfigError(f"training needs at least two labels with audio, found "
                          f"{sorted(set(labels)) or 'none'} in {source if manifest else root}")
    dupes = [p for p, n in Counter(str(it.path) for it in items).items() if n > 1]
    if dupes:
        raise ConfigError(f"{len(dupes)} file(s) are listed twice, e.g. {dupes[0]}")
    return Dataset(tuple(items), class_order(labels), root, source)
