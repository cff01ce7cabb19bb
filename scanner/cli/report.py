"""``scanner report``: a results table to an HTML (or Markdown + PNG) report."""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger("scanner")


@click.command("report")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              default="report.html", show_default=True,
              help="Report file: .html (one self-contained page) or .md (PNGs in a folder "
                   "beside it).")
@click.option("--top", "top_files", type=click.IntRange(min=1), default=10, show_default=True,
              help="Files listed in 'files with the most events'.")
@click.option("--timelines", type=click.IntRange(min=0), default=5, show_default=True,
              help="Timeline plots, for the first of those files.")
@click.option("--top-events", type=click.IntRange(min=0), default=20, show_default=True,
              help="Rows in 'most confident events' (linked to review/index.html when a "
                   "review/ folder is beside the report).")
@click.pass_context
def report(ctx: click.Context, results: Path, out: Path, top_files: int, timelines: int,
           top_events: int) -> None:
    """Summarise RESULTS (a table from 'scanner scan') in a report a person can read.

    The scan's settings, counts and hours per class and per folder, events per hour of day
    and per day (when recording times are known), the most confident events, confidence
    histograms, errors, and the files with the most events with their timelines (events
    and window probabilities come from the tables 'scanner scan' writes beside RESULTS).
    An existing OUTPUT is replaced only if it is a report scanner wrote.

    \b
    Examples:
      scanner report results.parquet -o report.html
      scanner report results.csv -o report.md --top 20
    """
    from scanner.cli import EXIT_LOAD_FAILED
    from scanner.errors import ScannerError
    from scanner.escape import escape_terminal
    from scanner.events.report import write_report

    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise click.BadParameter(f"{out} must end in .html or .md", param_hint="--output")
    try:
        path = write_report(results, out, top_files=top_files, timelines=timelines,
                            top_events=top_events)
    except ScannerError as e:
        log.error("%s", escape_terminal(str(e)))
        ctx.exit(EXIT_LOAD_FAILED)
    click.echo(f"report -> {escape_terminal(str(path))}", err=True)
