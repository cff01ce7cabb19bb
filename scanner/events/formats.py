"""The export formats: one :class:`~scanner.events.export.Exporter` class each, registered by name.

A class renders text only; :func:`scanner.events.export.export` decides where nothing may be
overwritten and writes. Text that came from outside (paths, class names) is escaped for each
format: TSV fields with :func:`~scanner.escape.escape_tsv`, CSV cells quoted and
formula-neutralised.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from scanner.escape import escape_tsv
from scanner.events.export import (
    EXPORTERS,
    Annotation,
    Exporter,
    FileInfo,
    Layout,
    Rendered,
    csv_text,
)

# The band the models hear when a file's own rate is unknown: audio is analysed at 16 kHz.
DEFAULT_HIGH_FREQ_HZ = 8000.0
RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Confidence", "Begin Path",
                 "File Offset (s)")
RAVEN_SUFFIX = ".Table.1.selections.txt"
RAVEN_COMBINED = "combined.selections.txt"
FIELDS = ("path", "label", "start_s", "end_s", "peak_confidence", "mean_confidence",
          "start_time")
KALEIDOSCOPE_COLUMNS = ("INDIR", "FOLDER", "IN FILE", "CHANNEL", "OFFSET", "DURATION", "DATE",
                        "TIME", "HOUR", "AUTO ID*", "CONFIDENCE", "MANUAL ID")


def by_file(annotations: Sequence[Annotation]) -> dict[str, list[Annotation]]:
    groups: dict[str, list[Annotation]] = defaultdict(list)
    for a in annotations:
        groups[a.path].append(a)
    return dict(groups)


def label_text(a: Annotation) -> str:
    """A label's text with its confidence, as BirdNET-Analyzer's label tracks carry it."""
    label = escape_tsv(a.label)
    return label if a.peak_confidence is None else f"{label} ({a.peak_confidence:.2f})"


@EXPORTERS.register("audacity")
class AudacityExporter(Exporter):
    """One Audacity label track per audio file: ``<stem>.txt``, ``start\\tend\\tlabel (conf)``.

    Import in Audacity with File > Import > Labels after opening the audio file.
    """

    name = "audacity"
    description = "Audacity label tracks, <audio stem>.txt per audio file, tree mirrored"
    per_file = True

    def render(self, annotations: Sequence[Annotation], files: Mapping[str, FileInfo],
               layout: Layout) -> Rendered:
        groups = by_file(annotations)
        targets = layout.targets(groups, ".txt", reserved=self.reserved)
        out = {targets[p]: "".join(f"{a.start_s:.6f}\t{a.end_s:.6f}\t{label_text(a)}\n"
                                   for a in items) for p, items in groups.items()}
        return Rendered(out, targets)


def _high_freq(info: FileInfo | None) -> float:
    return info.sample_rate / 2 if info is not None and info.sample_rate else DEFAULT_HIGH_FREQ_HZ


def _raven_row(i: int, a: Annotation, begin_s: float, high_hz: float) -> str:
    conf = "" if a.peak_confidence is None else f"{a.peak_confidence:.4f}"
    return "\t".join([str(i), "Spectrogram 1", "1", f"{begin_s:.6f}",
                      f"{begin_s + a.end_s - a.start_s:.6f}", "0.0", f"{high_hz:.1f}",
                      escape_tsv(a.label), conf, escape_tsv(a.path), f"{a.start_s:.6f}"])


@EXPORTERS.register("raven")
class RavenExporter(Exporter):
    """Raven selection tables: ``<stem>.Table.1.selections.txt`` per audio file, plus
    ``combined.selections.txt`` for all files in one.

    Tab-separated with Raven's column names. High Freq is the file's Nyquist frequency
    (sample rate / 2; 8 kHz when the rate is unknown). In the combined table Begin Time
    runs on across the files in path order (each file's duration from the file table, else
    its last annotation's end), as Raven shows a multi-file sequence; ``Begin Path`` and
    ``File Offset (s)`` name the file and the time within it. Tabs and newlines in paths
    are written as ``\\t`` and ``\\n``.
    """

    name = "raven"
    description = ("Raven selection tables, <audio stem>.Table.1.selections.txt per audio "
                   "file, and combined.selections.txt")
    per_file = True
    reserved = (RAVEN_COMBINED,)

    def render(self, annotations: Sequence[Annotation], files: Mapping[str, FileInfo],
               layout: Layout) -> Rendered:
        groups = by_file(annotations)
        targets = layout.targets(groups, RAVEN_SUFFIX, reserved=self.reserved)
        header = "\t".join(RAVEN_COLUMNS)
        out = {}
        combined, offset, n = [header], 0.0, 0
        for path in sorted(groups):
            items = groups[path]
            info = files.get(path)
            high = _high_freq(info)
            rows = [_raven_row(i, a, a.start_s, high) for i, a in enumerate(items, start=1)]
            out[targets[path]] = "\n".join([header, *rows]) + "\n"
            for a in items:
                n += 1
                combined.append(_raven_row(n, a, offset + a.start_s, high))
            known = info.duration_s if info is not None else None
            offset += known if known is not None else max(a.end_s for a in items)
        out[layout.out_dir / RAVEN_COMBINED] = "\n".join(combined) + "\n"
        return Rendered(out, targets)


def _record(a: Annotation) -> dict:
    record = asdict(a)
    record["start_time"] = a.start_time.isoformat() if a.start_time is not None else None
    return record


@EXPORTERS.register("jsonl")
class JsonLinesExporter(Exporter):
    """All annotations in ``events.jsonl``: one JSON object per line (``json`` is its old name)."""

    name = "jsonl"
    description = "JSON Lines, events.jsonl (one object per annotation; 'json' is a deprecated alias)"

    def render(self, annotations: Sequence[Annotation], files: Mapping[str, FileInfo],
               layout: Layout) -> Rendered:
        text = "".join(json.dumps(_record(a), ensure_ascii=False) + "\n" for a in annotations)
        return Rendered({layout.out_dir / "events.jsonl": text})


@EXPORTERS.register("csv")
class CsvExporter(Exporter):
    """All annotations in ``events.csv`` with a header row (text quoted, formulas neutralised)."""

    name = "csv"
    description = "one CSV table, events.csv"

    def render(self, annotations: Sequence[Annotation], files: Mapping[str, FileInfo],
               layout: Layout) -> Rendered:
        import pyarrow as pa

        records = [_record(a) for a in annotations]
        types = {"path": pa.string(), "label": pa.string(), "start_s": pa.float64(),
                 "end_s": pa.float64(), "peak_confidence": pa.float64(),
                 "mean_confidence": pa.float64(), "start_time": pa.string()}
        table = pa.table({k: pa.array([r[k] for r in records], types[k]) for k in FIELDS})
        return Rendered({layout.out_dir / "events.csv": csv_text(table)})


@EXPORTERS.register("kaleidoscope")
class KaleidoscopeExporter(Exporter):
    """All annotations in ``kaleidoscope.csv``, with Kaleidoscope's column names.

    ``INDIR`` is the scanned root, ``FOLDER`` the file's folder relative to it, ``IN FILE``
    its name; ``OFFSET``/``DURATION`` in seconds; ``DATE``/``TIME``/``HOUR`` the recording's
    start, when known; ``AUTO ID*`` the label; ``MANUAL ID`` empty, for the reviewer.
    """

    name = "kaleidoscope"
    description = "one Kaleidoscope CSV, kaleidoscope.csv (INDIR, FOLDER, IN FILE, OFFSET, ...)"

    def render(self, annotations: Sequence[Annotation], files: Mapping[str, FileInfo],
               layout: Layout) -> Rendered:
        import pyarrow as pa

        cols: dict[str, list] = {c: [] for c in KALEIDOSCOPE_COLUMNS}
        for a in annotations:
            rel = layout.relative(a.path)
            root = layout.root_of(a.path) or ""
            info = files.get(a.path)
            start = info.recorded_at if info is not None else None
            cols["INDIR"].append(root)
            cols["FOLDER"].append(str(rel.parent) if str(rel.parent) != "." else "")
            cols["IN FILE"].append(rel.name)
            cols["CHANNEL"].append(0)
            cols["OFFSET"].append(round(a.start_s, 3))
            cols["DURATION"].append(round(a.end_s - a.start_s, 3))
            cols["DATE"].append(start.strftime("%Y-%m-%d") if start else None)
            cols["TIME"].append(start.strftime("%H:%M:%S") if start else None)
            cols["HOUR"].append(start.hour if start else None)
            cols["AUTO ID*"].append(a.label)
            cols["CONFIDENCE"].append(None if a.peak_confidence is None
                                      else round(a.peak_confidence, 4))
            cols["MANUAL ID"].append(None)
        types = {"CHANNEL": pa.int64(), "OFFSET": pa.float64(), "DURATION": pa.float64(),
                 "HOUR": pa.int64(), "CONFIDENCE": pa.float64()}
        table = pa.table({c: pa.array(v, types.get(c, pa.string())) for c, v in cols.items()})
        return Rendered({layout.out_dir / "kaleidoscope.csv": csv_text(table)})
