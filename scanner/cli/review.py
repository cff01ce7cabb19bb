"""``scanner review``: a static page to listen to detections and mark them yes / no / other."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

log = logging.getLogger("scanner")


@click.command("review")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (index.html, clips/, spectrograms/); new, empty, or an "
                   "earlier review folder.")
@click.option("--select", type=click.Choice(["auto", "top", "sample", "all"]), default="auto",
              show_default=True,
              help="top: the best --per-class per class; sample: --per-bin random items per "
                   "score bin (for calibrate); all: every row. auto: all for search hits, "
                   "else top.")
@click.option("--per-class", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--bins", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--per-bin", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True,
              help="Most rows with --select all.")
@click.option("--label", "labels", multiple=True,
              help="Only this class (repeatable; default every class but not_screaming).")
@click.option("--context", "context_s", type=click.FloatRange(0, 10), default=1.0,
              show_default=True, help="Seconds of audio kept before and after each item.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds --select sample.")
@click.pass_context
def review(ctx: click.Context, table: Path, out_dir: Path, select: str, per_class: int, bins: int,
           per_bin: int, limit: int, labels: tuple[str, ...], context_s: float, seed: int) -> None:
    """Write a review page for TABLE: listen, look, and mark each item.

    TABLE is a results table (its events table, from scan --segments, is used when
    present), an events table, a segments table or 'scanner search' hits. Open
    OUTPUT/index.html in a browser (no server needed); verdicts are kept in the browser
    and downloaded as verdicts.csv for 'scanner train --add' and 'scanner calibrate'.

    \b
    Examples:
      scanner review r.parquet -o review/
      scanner review r.parquet --select sample --label screaming -o calib/
      scanner review hits.parquet -o review-hits/
    """
    from scanner.cli import EXIT_LOAD_FAILED, EXIT_USAGE
    from scanner.errors import ConfigError, ScannerError
    from scanner.review import build_review

    verbosity = (ctx.obj or {}).get("verbosity", 0)
    try:
        result = build_review(table, out_dir, select=select, per_class=per_class,  # type: ignore[arg-type]
                              bins=bins, per_bin=per_bin, limit=limit, labels=labels,
                              context_s=context_s, seed=seed,
                              progress=verbosity >= 0 and sys.stderr.isatty())
    except ScannerError as e:
        log.error("%s", e)
        ctx.exit(EXIT_USAGE if isinstance(e, ConfigError) else EXIT_LOAD_FAILED)
        return
    click.echo(f"{result.items} items from {result.source}"
               + (f" ({result.clip_errors} without audio)" if result.clip_errors else "")
               + f" -> {result.index}", err=True)
