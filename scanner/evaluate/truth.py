"""Reference annotations: a truth CSV, Raven selection tables or Audacity label files.

Every reader turns a file into :class:`Reference` rows (file, label, onset and offset in
seconds). A reader decides for itself whether it applies to a file (``applies``), so
:func:`read_truth` is a loop over the readers, for one file or for every ``.csv``/``.txt``
file under a folder.

- **CSV**: columns ``file,label,onset,offset``; ``file`` is the audio file's path relative
  to the scanned folder, or its name.
- **Raven selection table** (tab-separated, ``Begin Time (s)``/``End Time (s)``): one table
  per audio file, named ``<audio stem>[.Table.N].selections.txt``, or one combined table with
  a ``Begin File`` or ``Begin Path`` column. The label is the first of :data:`RAVEN_LABEL_COLUMNS`
  present. Raven writes a selection once per view (spectrogram and waveform), so rows are
  kept once per selection number. Where a ``File Offset (s)`` column is present the onset is
  taken from it (a combined table's begin times run over the file sequence, not the file).
- **Audacity label track** (``<audio stem>.txt``, ``start<TAB>end<TAB>label``): lines that
  start with a backslash hold a label's frequency range and are skipped.

`crowsetta <https://github.com/vocalpy/crowsetta>`_ reads Raven and Audacity files too, and
was tried: it rejects a table without selections and an empty label track (a file the
annotator found nothing in, which a detection reference must be able to say), fails on
Audacity's frequency lines, and pulls in pandas and pandera for what is a tab-separated
text file. So the readers here use the ``csv`` module.
"""

from __future__ import annotations

import csv
import io
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from scanner.errors import ConfigError

CSV_COLUMNS: tuple[str, ...] = ("file", "label", "onset", "offset")
RAVEN_BEGIN = "Begin Time (s)"
RAVEN_END = "End Time (s)"
RAVEN_FILE_COLUMNS: tuple[str, ...] = ("Begin Path", "Begin File")
RAVEN_OFFSET = "File Offset (s)"
RAVEN_LABEL_COLUMNS: tuple[str, ...] = ("Annotation", "Label", "Class", "Species", "Tags")
# ``rec.Table.1.selections.txt`` and ``rec.selections.txt`` both annotate ``rec``
_RAVEN_NAME = re.compile(r"^(?P<stem>.+?)(\.Table\.\d+)?\.selections\.txt$", re.IGNORECASE)


@dataclass(frozen=True)
class Reference:
    """One annotated event.

    Attributes:
        file: The audio file as the annotation names it: a relative path, a name, or a stem
            (Raven and Audacity files name only the stem); matched to the scanned paths later.
        label: The annotated class.
        onset_s, offset_s: The event's extent in file time, seconds.
        source: Where it was read (``truth.csv:12``), for messages.
    """

    file: str
    label: str
    onset_s: float
    offset_s: float
    source: str = ""


def _number(text: str | None, what: str, where: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {what} {text!r} is not a number of seconds")
    return value


def _reference(file: str, label: str, on: float, off: float, where: str) -> Reference:
    if not file.strip():
        raise ConfigError(f"{where}: no file named")
    if not label.strip():
        raise ConfigError(f"{where}: no label")
    if on < 0 or off <= on:
        raise ConfigError(f"{where}: onset {on:g} s and offset {off:g} s are not an event "
                          f"(need 0 <= onset < offset)")
    return Reference(file=file.strip().replace("\\", "/"), label=label.strip(), onset_s=on,
                     offset_s=off, source=where)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read truth file {path}: {e}") from e


class TruthReader(ABC):
    """Reads one kind of annotation file."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def applies(cls, path: Path, head: str) -> bool:
        """Whether this reader reads ``path``, whose first line is ``head``."""

    @abstractmethod
    def read(self, path: Path, text: str) -> list[Reference]: ...


class CsvTruth(TruthReader):
    """``file,label,onset,offset``, one row per event."""

    name = "csv"

    @classmethod
    def applies(cls, path: Path, head: str) -> bool:
        return path.suffix.lower() == ".csv"

    def read(self, path: Path, text: str) -> list[Reference]:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or ()]
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise ConfigError(f"{path}: truth CSV needs the columns {','.join(CSV_COLUMNS)}; "
                              f"missing {', '.join(missing)}")
        reader.fieldnames = columns
        out = []
        for n, row in enumerate(reader, start=2):
            where = f"{path.name}:{n}"
            on, off = _number(row["onset"], "onset", where), _number(row["offset"], "offset", where)
            out.append(_reference(row["file"] or "", row["label"] or "", on, off, where))
        return out


class RavenTruth(TruthReader):
    """A Raven selection table: per audio file, or combined with ``Begin File``/``Begin Path``."""

    name = "raven"

    @classmethod
    def applies(cls, path: Path, head: str) -> bool:
        return path.suffix.lower() == ".txt" and RAVEN_BEGIN in head.split("\t")

    def read(self, path: Path, text: str) -> list[Reference]:
        reader = csv.DictReader(io.StringIO(text), delimiter="\t")
        columns = reader.fieldnames or []
        if RAVEN_END not in columns:
            raise ConfigError(f"{path}: Raven table without an {RAVEN_END!r} column")
        label_col = next((c for c in RAVEN_LABEL_COLUMNS if c in columns), None)
        if label_col is None:
            raise ConfigError(f"{path}: Raven table without a label column (one of "
                              f"{', '.join(RAVEN_LABEL_COLUMNS)})")
        file_col = next((c for c in RAVEN_FILE_COLUMNS if c in columns), None)
        own = _RAVEN_NAME.match(path.name)
        if file_col is None and own is None:
            raise ConfigError(f"{path}: a Raven table has a {' or '.join(RAVEN_FILE_COLUMNS)} column, "
                              f"or is named <audio stem>.selections.txt")
        out: list[Reference] = []
        seen: set[tuple[str, str]] = set()
        for n, row in enumerate(reader, start=2):
            where = f"{path.name}:{n}"
            file = (row.get(file_col) or "").strip() if file_col else own.group("stem")  # type: ignore[union-attr]
            if file_col == "Begin Path":  # an absolute path from the annotator's machine
                file = file.replace("\\", "/")
            selection = (row.get("Selection") or "").strip()
            if selection:
                if (file, selection) in seen:
                    continue
                seen.add((file, selection))
            begin = _number(row.get(RAVEN_BEGIN), "begin time", where)
            end = _number(row.get(RAVEN_END), "end time", where)
            if (row.get(RAVEN_OFFSET) or "").strip():
                offset = _number(row[RAVEN_OFFSET], "file offset", where)
                begin, end = offset, offset + end - begin
            out.append(_reference(file, row.get(label_col) or "", begin, end, where))
        return out


class AudacityTruth(TruthReader):
    """An Audacity label track, ``<audio stem>.txt``."""

    name = "audacity"

    @classmethod
    def applies(cls, path: Path, head: str) -> bool:
        return path.suffix.lower() == ".txt" and RAVEN_BEGIN not in head.split("\t")

    def read(self, path: Path, text: str) -> list[Reference]:
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("\\"):
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise ConfigError(f"{path.name}:{n}: an Audacity label line is "
                                  f"start<TAB>end<TAB>label, got {line[:60]!r}")
            where = f"{path.name}:{n}"
            out.append(_reference(path.stem, parts[2], _number(parts[0], "start", where),
                                  _number(parts[1], "end", where), where))
        return out


READERS: tuple[type[TruthReader], ...] = (CsvTruth, RavenTruth, AudacityTruth)


def read_file(path: Path) -> list[Reference]:
    """The references in one annotation file (the first reader that applies).

    Raises:
        ConfigError: No reader applies, or the file is malformed.
    """
    text = _read_text(path)
    head = text.split("\n", 1)[0].rstrip("\r")
    for reader in READERS:
        if reader.applies(path, head):
            return reader().read(path, text)
    raise ConfigError(f"{path}: not a truth file (a .csv with {','.join(CSV_COLUMNS)}, a Raven "
                      f"selection table or an Audacity label track .txt)")


def _with_folder(refs: Iterable[Reference], prefix: str) -> list[Reference]:
    """Label files in a subfolder name files relative to the truth folder."""
    return [Reference(f"{prefix}/{r.file}" if "/" not in r.file else r.file, r.label, r.onset_s,
                      r.offset_s, r.source) for r in refs]


def read_truth(path: str | Path) -> list[Reference]:
    """Every reference in a truth file, or in the ``.csv``/``.txt`` files under a folder.

    In a folder, an Audacity or per-file Raven table in a subfolder (``a/rec.txt``) names
    ``a/rec``, so label files may mirror a nested audio tree.

    Raises:
        ConfigError: The path is missing, a folder holds no annotation file, or a file is malformed.
    """
    root = Path(path)
    if root.is_file():
        return read_file(root)
    if not root.is_dir():
        raise ConfigError(f"truth {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".txt"))
    if not files:
        raise ConfigError(f"truth folder {root} holds no .csv or .txt annotation file")
    out: list[Reference] = []
    for f in files:
        prefix = f.parent.relative_to(root).as_posix()
        refs = read_file(f)
        out.extend(refs if f.suffix.lower() == ".csv" or prefix == "." else _with_folder(refs, prefix))
    return out
