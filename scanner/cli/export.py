"""``scanner export``: a results table to Audacity labels, Raven selection tables, JSON or CSV."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from scanner.events.export import EXPORTERS

log = logging.getLogger("scanner")


@click.command("export")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(EXPORTERS.names()), required=True,
              help="; ".join(f"{n}: {EXPORTERS.get(n).description}" for n in EXPORTERS.names()))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (default: <RESULTS stem>-<format>/ beside RESULTS).")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0),
              help="Only annotations whose (peak) confidence is at least this.")
@click.option("--label", "labels", multiple=True,
              help="Only this label (repeatable). Default: every label but the background "
                   "(not_screaming).")
@click.pass_context
def export(ctx: click.Context, results: Path, fmt: str, out_dir: Path | None,
           min_confidence: float | None, labels: tuple[str, ...]) -> None:
    """Export the events of RESULTS for review in Audacity, Raven or your own tools.

    RESULTS is a results table from 'scanner scan' (its events table, written with
    --segments, is used when present; otherwise each file is one whole-file annotation)
    or an events table (results.events.parquet).

    \b
    Examples:
      scanner export results.parquet --format audacity -o labels/
      scanner export results.events.parquet --format raven --label screaming
      scanner export results.parquet --format json --min-confidence 0.8
    """
    from scanner.cli import EXIT_LOAD_FAILED
    from scanner.errors import ScannerError
    from scanner.events.export import export as run_export

    try:
        result = run_export(results, fmt, out_dir, min_confidence=min_confidence,
                            labels=labels)
    except ScannerError as e:
        log.error("%s", e)
        ctx.exit(EXIT_LOAD_FAILED)
    click.echo(f"{result.n_annotations} annotations ({result.source}) from {result.table} "
               f"-> {len(result.paths)} file(s) in {result.out_dir}", err=True)
