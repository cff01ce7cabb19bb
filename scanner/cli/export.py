"""``scanner export``: a results table to Audacity, Raven, JSON Lines, CSV or Kaleidoscope."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from scanner.events.export import EXPORTERS, FORMAT_ALIASES

log = logging.getLogger("scanner")

_FORMAT_HELP = "; ".join(f"{n}: {EXPORTERS.get(n).description}" for n in EXPORTERS.names())


@click.command("export")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", required=True,
              type=click.Choice([*EXPORTERS.names(), *FORMAT_ALIASES], case_sensitive=False),
              help=f"Any case. {_FORMAT_HELP}.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (default: <RESULTS stem>-<format>/ beside RESULTS). "
                   "Per-file formats mirror the scanned tree in it and write index.csv.")
@click.option("--beside-audio", is_flag=True,
              help="audacity/raven: write each file's table next to its audio file instead "
                   "(index, manifest and the combined Raven table stay in --output).")
@click.option("--overwrite", is_flag=True,
              help="Replace the files of an earlier export. Files scanner did not write, or "
                   "that were edited since, are never replaced.")
@click.option("--root", "roots", multiple=True,
              help="Scanned root the tree is mirrored from (repeatable; default: the roots "
                   "recorded in RESULTS, else the deepest folder holding every file).")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0),
              help="Only annotations whose (peak) confidence is at least this.")
@click.option("--label", "labels", multiple=True,
              help="Only this label (repeatable). Default: every label but the background "
                   "(not_screaming).")
@click.pass_context
def export(ctx: click.Context, results: Path, fmt: str, out_dir: Path | None,
           beside_audio: bool, overwrite: bool, roots: tuple[str, ...],
           min_confidence: float | None, labels: tuple[str, ...]) -> None:
    """Export the events of RESULTS for review in Audacity, Raven, Kaleidoscope or your tools.

    RESULTS is a results table from 'scanner scan' (its events table, written with
    --segments, is used when present; otherwise each file is one whole-file annotation)
    or an events table (results.events.parquet). CSV cells that begin with = + - @ are
    prefixed with ' so spreadsheets do not run them as formulas.

    \b
    Examples:
      scanner export results.parquet --format audacity -o labels/
      scanner export results.events.parquet --format raven --label screaming
      scanner export results.parquet --format raven --beside-audio
      scanner export results.parquet --format jsonl --min-confidence 0.8
    """
    from scanner.cli import EXIT_LOAD_FAILED
    from scanner.errors import ScannerError
    from scanner.escape import escape_terminal
    from scanner.events.export import export as run_export

    try:
        result = run_export(results, fmt, out_dir, min_confidence=min_confidence,
                            labels=labels, beside_audio=beside_audio, overwrite=overwrite,
                            roots=roots)
    except ScannerError as e:
        log.error("%s", escape_terminal(str(e)))
        ctx.exit(EXIT_LOAD_FAILED)
    click.echo(f"{result.n_annotations} annotations ({result.source}) from "
               f"{escape_terminal(str(result.table))} -> {len(result.paths)} file(s) in "
               f"{escape_terminal(str(result.out_dir))}", err=True)
