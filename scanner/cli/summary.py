"""What ``scanner scan`` says at the end: counts per label, events, errors by kind, tables, next step.

The driver's :class:`~scanner.engines.driver.ScanSummary` gives the file counts and speed;
the rest is tallied here from the rows the scan hands to ``on_row``. When nothing was
scanned, :func:`explain_empty` says why (no files, no audio extension, all filtered out).
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.cli.terminal import escape

# explain_empty looks at no more than this many entries (a huge tree of non-audio files).
EMPTY_LOOK_LIMIT = 100_000


@dataclass
class RowTally:
    """Counts over the rows of a scan, fed one row at a time."""

    labels: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    events: int = 0
    has_events: bool = False

    def add(self, row: dict[str, Any]) -> None:
        if row.get("status") == "ok":
            self.labels[str(row.get("label"))] += 1
        else:
            self.errors[str(row.get("error_kind") or "unknown")] += 1
        n_events = row.get("n_events")
        if n_events is not None:
            self.events += int(n_events)
            self.has_events = True


def _counts(counter: Counter[str], order: Sequence[str] = ()) -> str:
    names = [*order, *sorted(k for k in counter if k not in order)]
    return ", ".join(f"{escape(k)} {counter[k]}" for k in names)


def written_tables(out: Path) -> list[Path]:
    """The results table and the tables beside it (events, segments, embeddings) that exist."""
    from scanner.output.guard import SIBLINGS, sibling

    return [p for p in (out, *(sibling(out, kind) for kind in SIBLINGS)) if p.exists()]


def summary_lines(summary: Any, tally: RowTally, *, classes: Sequence[str] = (),
                  tables: Sequence[Path] = ()) -> list[str]:
    """The end-of-scan summary, one string per line (file names escaped)."""
    first = (f"{summary.files} files ({summary.ok} ok, {summary.errors} errors"
             + (f", {summary.skipped} already done" if summary.skipped else "")
             + f"), {summary.audio_s / 3600:.2f} h of audio in {summary.wall_s:.1f} s"
             + (f" ({summary.audio_s / summary.wall_s:.0f}x realtime)" if summary.wall_s > 0 else ""))
    lines = [first]
    if summary.ok:
        lines.append(f"labels: {_counts(tally.labels, classes)}")
    events = tally.events if tally.has_events else getattr(summary, "events", None)
    if events is not None:
        lines.append(f"events: {events}")
    if tally.errors:
        lines.append(f"errors: {_counts(tally.errors)} (the rows' error column says why)")
    if tables:
        lines.append("tables: " + ", ".join(escape(str(p)) for p in tables))
        report = Path(tables[0]).with_suffix(".html")
        lines.append(f"next:   scanner report {escape(shlex.quote(str(tables[0])))} "
                     f"-o {escape(shlex.quote(str(report)))}")
    return lines


def failure_warning(summary: Any, tally: RowTally, *, strict: bool) -> str:
    """The warning when some files failed."""
    kinds = f" ({_counts(tally.errors)})" if tally.errors else ""
    then = "exiting with code 4 (--strict)" if strict else "--strict makes this exit with code 4"
    return (f"{summary.errors} of {summary.files} files could not be analysed{kinds}: their rows "
            f"have status 'error' and say why; {then}")


def explain_empty(paths: Sequence[Path], *, extensions: Sequence[str] | None,
                  include: Sequence[str], exclude: Sequence[str], hidden: bool,
                  follow_symlinks: bool) -> str:
    """Why discovery found no audio file under ``paths``, in one sentence."""
    from scanner.audio.discover import DEFAULT_EXTENSIONS, discover

    wanted = {e.lower().lstrip(".") for e in (extensions or DEFAULT_EXTENSIONS)}
    names = " ".join(escape(str(p)) for p in paths)
    seen: Counter[str] = Counter()
    n_files = 0
    for path in paths:
        for _root, _dirs, files in os.walk(path, followlinks=follow_symlinks):
            for name in files:
                n_files += 1
                seen[Path(name).suffix.lower() or "(none)"] += 1
            if n_files >= EMPTY_LOOK_LIMIT:
                break
    if n_files == 0:
        return f"{names}: no files at all"
    if not any(s.lstrip(".") in wanted for s in seen):
        common = ", ".join(f"{escape(s)} {n}" for s, n in seen.most_common(5))
        return (f"{names}: {n_files} files, none with an audio extension (found {common}); "
                f"looked for {' '.join(sorted(wanted))}; --ext adds others")
    unfiltered = discover(paths, extensions=extensions, hidden=True,
                          follow_symlinks=follow_symlinks)
    if unfiltered:
        given = [*(f"--include {escape(g)}" for g in include),
                 *(f"--exclude {escape(g)}" for g in exclude)]
        if not hidden:
            given.append("hidden files and folders are skipped (--hidden scans them)")
        return (f"{names}: {len(unfiltered)} audio files, all left out by "
                + "; ".join(given))
    return f"{names}: no audio file could be listed (unreadable folders?)"
