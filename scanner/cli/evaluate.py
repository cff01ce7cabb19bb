"""``scanner evaluate``: a scan's events against reference annotations, per class."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

log = logging.getLogger("scanner")


def _grid(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        grid = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        grid = ()
    if not grid or not all(0.0 <= t <= 1.0 for t in grid):
        raise click.BadParameter(f"expected comma-separated thresholds in [0, 1], got {value!r}")
    return grid


@click.command("evaluate")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--truth", required=True, type=click.Path(exists=True, path_type=Path),
              help="Reference annotations: a CSV (file,label,onset,offset), a Raven selection "
                   "table, an Audacity label file, or a folder of them.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every metric, their definitions and the sweep as JSON here.")
@click.option("--sweep", is_flag=True,
              help="Also make events again at a grid of thresholds (needs the segments table "
                   "of 'scan --segments') and print a row per threshold.")
@click.option("--thresholds", callback=_grid, metavar="T1,T2,...",
              help="The sweep's thresholds (default 0.1,0.2,...,0.9); implies --sweep.")
@click.pass_context
def evaluate(ctx: click.Context, results: Path, truth: Path, out: Path | None, sweep: bool,
             thresholds: tuple[float, ...] | None) -> None:
    """Score the events of RESULTS against reference annotations, per class.

    RESULTS is a file table of 'scanner scan'; its events table (RESULTS.events.parquet
    or .csv) is read beside it. Per class: event-based F1, precision and recall (onset
    collar 1 s, offset collar max(1 s, 20% of the event)), segment-based F1 at 1 s, file-flag
    F1 (does the file contain the class), and false alarms per hour of audio without a
    reference event. Files that failed to scan are left out. Truth file names are matched to
    the scanned paths by relative path, name or stem.

    \b
    Examples:
      scanner evaluate r.parquet --truth truth.csv
      scanner evaluate r.parquet --truth labels/ -o metrics.json --sweep
    """
    from scanner.cli import EXIT_LOAD_FAILED
    from scanner.errors import ScannerError
    from scanner.evaluate import evaluate as run_evaluate
    from scanner.evaluate import format_metrics

    try:
        report = run_evaluate(results, truth, sweep=sweep or thresholds is not None, grid=thresholds)
    except ScannerError as e:
        log.error("%s", e)
        ctx.exit(EXIT_LOAD_FAILED)
    click.echo(format_metrics(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(f"metrics -> {out}", err=True)
