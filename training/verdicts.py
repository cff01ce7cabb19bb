"""Verdicts from the review page (``verdicts.csv``) as training items for ``scanner train --add``.

A verdict says what a reviewed stretch of a file really is: ``yes`` -> its ``label``;
``no`` -> the background class (``not_screaming``: the hard negatives a detector learns most
from); ``other`` -> ``corrected_label``; ``skip`` -> nothing. Each reviewed stretch is cut
from its file (16 kHz mono FLAC, named by its content) into a folder beside the head, so the
rest of training (cache, band-limited view, split) treats it as one more clip. Its group is
its source recording's: the group the dataset gives that file when it is in the dataset,
else the recording's path, so windows of one recording never sit on both sides of a split.
When one stretch was reviewed twice, the later verdict counts.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from scanner.errors import ConfigError, ScannerError
from scanner.records import AudioFile
from training.dataset import Dataset, LabelledFile

log = logging.getLogger(__name__)

VERDICTS = ("yes", "no", "other", "skip")
REQUIRED = ("path", "start_s", "end_s", "label", "verdict")
BACKGROUND = "not_screaming"
MAX_ITEM_S = 600.0
"""A reviewed stretch longer than this is cut to its first this-many seconds."""
GROUP_PREFIX = "verdicts:"


@dataclass(frozen=True)
class Verdict:
    """One reviewed stretch (a row of ``verdicts.csv``)."""

    path: str
    start_s: float
    end_s: float
    label: str
    verdict: str
    corrected_label: str = ""
    score: float | None = None
    weight: float = 1.0
    head: str = ""

    def true_label(self, background: str = BACKGROUND) -> str | None:
        """What the stretch is, by the verdict; None when it says nothing (skip, or a "no"
        on a background item, which names no class)."""
        if self.verdict == "yes":
            return self.label
        if self.verdict == "no":
            return None if self.label == background else background
        if self.verdict == "other":
            return self.corrected_label or None
        return None


def _float(value: str | None, default: float | None = None) -> float | None:
    value = (value or "").strip()
    return float(value) if value else default


def read_verdicts(path: str | os.PathLike[str]) -> list[Verdict]:
    """Reads a verdicts CSV; a stretch reviewed more than once keeps its last verdict.

    Raises:
        ConfigError: A missing column, an unknown verdict, or a number that is not one.
    """
    path = Path(path).expanduser()
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ConfigError(f"{path} is not a verdicts file: no {', '.join(missing)} "
                                  f"column (has {header})")
            rows = list(reader)
    except OSError as e:
        raise ConfigError(f"cannot read verdicts {path}: {e}") from e
    out: dict[tuple[str, float, float, str], Verdict] = {}
    for i, row in enumerate(rows, start=2):
        verdict = (row.get("verdict") or "").strip().lower()
        if verdict not in VERDICTS:
            raise ConfigError(f"{path}, line {i}: verdict {verdict!r} is not one of "
                              f"{', '.join(VERDICTS)}")
        try:
            v = Verdict(path=row["path"], start_s=float(row["start_s"]), end_s=float(row["end_s"]),
                        label=row["label"].strip(), verdict=verdict,
                        corrected_label=(row.get("corrected_label") or "").strip(),
                        score=_float(row.get("score")), weight=_float(row.get("weight"), 1.0) or 1.0,
                        head=(row.get("head") or "").strip())
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}, line {i}: {e}") from e
        if verdict == "other" and not v.corrected_label:
            raise ConfigError(f"{path}, line {i}: verdict 'other' without a corrected_label")
        out[(v.path, v.start_s, v.end_s, v.label)] = v
    return list(out.values())


def _clip_name(v: Verdict) -> str:
    key = f"{v.path}\0{v.start_s:.3f}\0{v.end_s:.3f}"
    return hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".flac"


def _cut(v: Verdict, folder: Path) -> Path:
    from scanner.review.media import cut, write_flac

    out = folder / _clip_name(v)
    if not out.is_file():
        snippet = cut(v.path, v.start_s, v.end_s, context_s=0.0, max_s=MAX_ITEM_S)
        if snippet.duration_s <= 0:
            raise ScannerError(f"{v.path}: nothing to cut at {v.start_s}-{v.end_s} s")
        tmp = out.with_name(f".{out.name}.tmp")
        write_flac(snippet, tmp)
        os.replace(tmp, out)
    return out


def verdict_items(verdicts: Iterable[Verdict], clips_dir: Path, *, classes: Sequence[str],
                  background: str = BACKGROUND, groups: dict[str, str] | None = None
                  ) -> list[LabelledFile]:
    """Training items for the verdicts that name a class, cut into ``clips_dir``.

    Args:
        classes: The dataset's classes; a verdict naming another class is an error.
        groups: Group of each dataset file by path (a verdicted file keeps its group).

    Raises:
        ConfigError: A verdict names a class the dataset does not have.
    """
    groups = groups or {}
    clips_dir.mkdir(parents=True, exist_ok=True)
    items, failed = [], 0
    for v in verdicts:
        label = v.true_label(background)
        if label is None:
            continue
        if label not in classes:
            raise ConfigError(f"a verdict says {v.path} at {v.start_s}-{v.end_s} s is "
                              f"{label!r}, which is not one of the classes {list(classes)}")
        try:
            clip = _cut(v, clips_dir)
        except ScannerError as e:
            log.warning("verdict on %s skipped: %s", v.path, e)
            failed += 1
            continue
        st = clip.stat()
        group = groups.get(str(Path(v.path).resolve())) or GROUP_PREFIX + v.path
        items.append(LabelledFile(AudioFile(clip.resolve(), st.st_size, st.st_mtime_ns), label,
                                  group))
    if failed:
        log.warning("%d verdict(s) could not be cut from their files", failed)
    return items


def add_verdicts(dataset: Dataset, verdict_files: Sequence[str | os.PathLike[str]],
                 clips_dir: Path, *, background: str = BACKGROUND) -> Dataset:
    """``dataset`` plus the items of every verdicts file (see the module docstring)."""
    verdicts = [v for f in verdict_files for v in read_verdicts(f)]
    groups = {str(it.path): it.group for it in dataset.items}
    added = verdict_items(verdicts, Path(clips_dir), classes=dataset.classes,
                          background=background, groups=groups)
    known = {str(it.path) for it in dataset.items}
    added = [it for it in added if str(it.path) not in known]
    counts = Counter(it.label for it in added)
    log.info("added %d reviewed stretches from %d verdicts: %s", len(added), len(verdicts),
             dict(counts))
    items = sorted([*dataset.items, *added], key=lambda it: str(it.path))
    return replace(dataset, items=tuple(items))
