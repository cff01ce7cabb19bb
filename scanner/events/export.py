"""Annotations out of a results table, for the tools people review audio with.

One :class:`Exporter` per format, registered by name (``audacity``, ``raven``, ``jsonl``,
``csv``, ``kaleidoscope``; ``json`` is a deprecated alias of ``jsonl``), so adding a format
is one class in :mod:`scanner.events.formats`. Exporters read :class:`Annotation` records
from an events table (``results.events.parquet``) or a file table: a file table whose scan
wrote events beside it exports those events, otherwise each file becomes one annotation
spanning the whole file with its file-level label.

Per-file formats (Audacity, Raven) mirror the scanned tree: ``<root>/a/b/day1.wav`` becomes
``<out>/a/b/day1.txt``, and ``index.csv`` maps each audio file to its label file. With
``beside_audio`` the tables go next to the audio instead. Nothing the tool did not write is
ever replaced (:mod:`scanner.events.manifest`).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from scanner.errors import ScannerError
from scanner.escape import escape_terminal
from scanner.events.annotations import (  # noqa: F401 - re-exported: the export API in one place
    Annotation,
    FileInfo,
    Loaded,
    Source,
    load,
    read_annotations,
    read_table,
    scan_roots,
    select,
    table_metadata,
)
from scanner.events.manifest import MANIFEST_NAME, WriteSet, fit_name
from scanner.registry import Registry

log = logging.getLogger(__name__)

FORMAT_ALIASES = {"json": "jsonl"}  # old name -> new name, kept for one release
INDEX_NAME = "index.csv"


@dataclass(frozen=True)
class Layout:
    """Where per-file outputs go: mirrored under ``out_dir`` relative to ``roots``, or beside
    the audio (``beside_audio``)."""

    out_dir: Path
    roots: tuple[str, ...] = ()
    beside_audio: bool = False

    def root_of(self, path: str) -> str | None:
        """The longest root holding ``path``, or None."""
        pure = PurePosixPath(path)
        for root in sorted(self.roots, key=len, reverse=True):
            try:
                if pure.relative_to(root).parts:
                    return root
            except ValueError:
                continue
        return None

    def relative(self, path: str) -> PurePosixPath:
        """``path`` relative to the longest root holding it (its parts made safe to join)."""
        pure = PurePosixPath(path)
        root = self.root_of(path)
        if root is not None:
            return _safe(pure.relative_to(root).parts)
        return _safe(pure.parts[1:] if pure.is_absolute() else pure.parts)

    def targets(self, paths: Iterable[str], suffix: str, *, reserved: Iterable[str] = ()
                ) -> dict[str, Path]:
        """One output file per audio path: ``<stem><suffix>`` in its mirrored (or own) folder.

        Stems that clash in one folder (``a.wav`` and ``a.flac``, or a reserved name) use the
        whole file name; names past 255 bytes are cut and carry a hash of the path.
        """
        by_folder: dict[Path, list[str]] = defaultdict(list)
        for p in sorted(set(paths)):
            folder = Path(p).parent if self.beside_audio else \
                self.out_dir.joinpath(*self.relative(p).parts[:-1])
            by_folder[folder].append(p)
        taken_root = {r.casefold() for r in reserved}
        out = {}
        for folder, members in by_folder.items():
            taken = set(taken_root) if folder == self.out_dir else set()
            stems = defaultdict(int)
            for p in members:
                stems[(Path(p).stem + suffix).casefold()] += 1
            for p in members:
                name = Path(p).name
                stem = Path(p).stem if stems[(Path(p).stem + suffix).casefold()] == 1 else name
                candidate = fit_name(stem, suffix, key=p)
                if candidate.casefold() in taken:
                    tag = hashlib.sha1(p.encode("utf-8", "surrogateescape")).hexdigest()[:8]
                    candidate = fit_name(f"{name}~{tag}", suffix, key=p)
                taken.add(candidate.casefold())
                out[p] = folder / candidate
        return out


def _safe(parts: Sequence[str]) -> PurePosixPath:
    clean = ["_parent_" if part == ".." else part for part in parts if part not in ("", ".")]
    return PurePosixPath(*clean) if clean else PurePosixPath("_")


@dataclass(frozen=True)
class Rendered:
    """An exporter's output: file -> text, and for per-file formats audio path -> its file."""

    files: dict[Path, str]
    index: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: files, how many annotations, what it read, and warnings."""

    paths: list[Path]
    n_annotations: int
    source: Source
    table: Path
    out_dir: Path
    warnings: list[str] = field(default_factory=list)


class Exporter(ABC):
    """Renders annotations in one format; :func:`export` writes what it returns."""

    name: ClassVar[str]
    description: ClassVar[str]
    per_file: ClassVar[bool] = False
    reserved: ClassVar[tuple[str, ...]] = ()  # names it writes at the top of the export folder

    @abstractmethod
    def render(self, annotations: Sequence[Annotation], files: Mapping[str, FileInfo],
               layout: Layout) -> Rendered: ...


EXPORTERS: Registry[type[Exporter]] = Registry("export format")


def resolve_format(name: str) -> str:
    """A registered format for ``name``, any case; a deprecated alias logs a warning.

    Raises:
        KeyError: No such format.
    """
    key = name.strip().lower()
    if key in FORMAT_ALIASES:
        new = FORMAT_ALIASES[key]
        log.warning("--format %s is deprecated and will be removed in the next release: it "
                    "writes JSON Lines, use --format %s", key, new)
        key = new
    EXPORTERS.get(key)
    return key


def filter_warnings(labels: Sequence[str], classes: Sequence[str], n_kept: int,
                    n_total: int, min_confidence: float | None) -> list[str]:
    """Why an export is empty or a ``--label`` matches nothing, in words for the user."""
    out = []
    for label in labels:
        if label not in classes:
            near = difflib.get_close_matches(label, classes, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            out.append(f"--label {label!r} matches no class of this table (classes: "
                       f"{', '.join(classes) or 'none'}){hint}")
    if n_kept == 0 and not out:
        if n_total == 0:
            out.append("the table holds no annotations (no events and no labelled files)")
        else:
            why = f" at --min-confidence {min_confidence}" if min_confidence is not None else ""
            which = f"of {', '.join(labels)}" if labels else "other than the background class"
            out.append(f"none of the {n_total} annotations is {which}{why}: nothing exported")
    return out


# -- exporting ------------------------------------------------------------------------------

def default_out_dir(results: Path, fmt: str) -> Path:
    """``results.parquet`` -> ``results-audacity/`` beside it."""
    results = Path(results)
    stem = results.stem.removesuffix(".events")
    return results.with_name(f"{stem}-{fmt}")


def index_text(index: Mapping[str, Path], counts: Mapping[str, int], out_dir: Path) -> str:
    """``index.csv``: ``audio_path,label_file,annotations`` (label file relative to the
    export folder when inside it), formula-neutralised like every CSV the tool writes."""
    import pyarrow as pa

    def shown(p: Path) -> str:
        try:
            return p.relative_to(out_dir).as_posix()
        except ValueError:
            return str(p)

    paths = sorted(index)
    return csv_text(pa.table({"audio_path": paths, "label_file": [shown(index[p]) for p in paths],
                              "annotations": pa.array([counts[p] for p in paths], pa.int64())}))


def csv_text(table: Any) -> str:
    """A pyarrow table as CSV text: strings quoted (``\\r`` and ``\\n`` too), formulas
    neutralised (:func:`scanner.escape.neutralise_csv_table`)."""
    import io

    import pyarrow.csv as pacsv

    from scanner.escape import neutralise_csv_table

    buf = io.BytesIO()
    pacsv.write_csv(neutralise_csv_table(table), buf)
    return buf.getvalue().decode("utf-8")


def export(results: Path, fmt: str, out_dir: Path | None = None, *,
           min_confidence: float | None = None, labels: Sequence[str] = (),
           background: str | None = None, beside_audio: bool = False,
           overwrite: bool = False, roots: Sequence[str] = ()) -> ExportResult:
    """Writes the annotations of ``results`` in format ``fmt`` into ``out_dir``.

    Args:
        results: A file table (its events table beside it is used when present) or an
            events table.
        fmt: A registered exporter name, any case (``json`` is a deprecated alias of ``jsonl``).
        out_dir: Folder to write into (created); default ``<results stem>-<fmt>/`` beside it.
            It always holds the manifest, and for per-file formats ``index.csv``.
        min_confidence: Keep annotations whose (peak) confidence is at least this.
        labels: Keep only these labels; when empty, every label but ``background``.
        background: The class that is not worth an annotation (default ``not_screaming``).
        beside_audio: Per-file formats: write each table next to its audio file.
        overwrite: Replace files an earlier export wrote (never any other file).
        roots: The scanned roots the tree is mirrored from (default: the table's metadata,
            else the deepest folder holding every file).

    Raises:
        ScannerError: The table cannot be read or is not a results or events table; an
            export would replace a file it did not write; a write failed.
        KeyError: ``fmt`` is not a registered format.
    """
    from scanner.events.segments import DEFAULT_BACKGROUND

    fmt = resolve_format(fmt)
    exporter = EXPORTERS.get(fmt)()
    if beside_audio and not exporter.per_file:
        raise ScannerError(f"--beside-audio needs a per-file format (audacity, raven), not {fmt}")
    loaded = load(Path(results))
    kept = select(loaded.annotations, min_confidence=min_confidence, labels=labels,
                  background=DEFAULT_BACKGROUND if background is None else background)
    warnings = filter_warnings(labels, loaded.classes, len(kept), len(loaded.annotations),
                               min_confidence)
    for w in warnings:
        log.warning("%s", escape_terminal(w))
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(Path(results), fmt)
    paths = loaded.files or [a.path for a in kept]
    layout = Layout(out_dir, tuple(roots) or scan_roots(
        loaded.metadata, {str(PurePosixPath(p).parent) for p in paths}), beside_audio)
    rendered = exporter.render(kept, loaded.files, layout)
    files = dict(rendered.files)
    if exporter.per_file:
        counts: dict[str, int] = defaultdict(int)
        for a in kept:
            counts[a.path] += 1
        files[out_dir / INDEX_NAME] = index_text(rendered.index, counts, out_dir)
    _check_inside(files, layout)
    WriteSet(out_dir).write(files, overwrite=overwrite)
    log.debug("wrote %d %s annotations from %s to %d file(s) in %s", len(kept), fmt,
              escape_terminal(str(loaded.table)), len(files), escape_terminal(str(out_dir)))
    return ExportResult(sorted(files), len(kept), loaded.source, loaded.table, out_dir, warnings)


def _check_inside(files: Mapping[Path, str], layout: Layout) -> None:
    if layout.beside_audio:
        return
    top = Path(os.path.abspath(layout.out_dir))
    for path in files:
        resolved = Path(os.path.abspath(path))
        if resolved != top and top not in resolved.parents or path.name == MANIFEST_NAME:
            raise ScannerError(f"refusing to write {path}: outside the export folder {top}")


# Registers the exporters; last, because formats.py imports the base classes above.
from scanner.events import formats  # noqa: E402, F401
