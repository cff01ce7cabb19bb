"""``scanner search``: the windows most like a clip (or an event), from ``scan --embeddings`` vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger("scanner")


@click.command("search")
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--like", "like", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A query clip (repeatable), embedded with the vectors' own backbone.")
@click.option("--events", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An events or hits table: each row is a query, from its stored vectors.")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True,
              help="Hits per query (overlapping windows of one file count once).")
@click.option("-o", "--output", "out", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Hits table (.parquet or .csv): the events table's columns plus query, rank.")
@click.option("--method", type=click.Choice(["auto", "exact", "ivf"]), default="auto",
              show_default=True,
              help="exact numpy, or a faiss IVF index saved beside EMBEDDINGS (auto: a saved "
                   "index if current, else exact up to 1,500,000 vectors).")
@click.option("--model", metavar="SRC", help="Where the backbone loads from (as scan --model).")
@click.option("--label", help="The hits' label for --like queries (default: similar).")
@click.pass_context
def search(ctx: click.Context, embeddings: Path, like: tuple[Path, ...], events: Path | None,
           top: int, out: Path, method: str, model: str | None, label: str | None) -> None:
    """Find the windows of EMBEDDINGS most like a clip, by cosine similarity.

    EMBEDDINGS is the r.embeddings.parquet of 'scanner scan --embeddings'. A query clip is
    embedded with the same backbone (a different model file, window or hop is refused);
    an event query reuses its stored vectors.

    \b
    Examples:
      scanner search r.embeddings.parquet --like clip.wav --label screaming -o hits.parquet
      scanner search r.embeddings.parquet --events r.events.parquet --top 20 -o more.parquet
      scanner review hits.parquet -o review-hits/
    """
    from scanner.cli import EXIT_LOAD_FAILED, EXIT_USAGE
    from scanner.errors import ConfigError, ScannerError
    from scanner.search import run_search

    try:
        result = run_search(embeddings, out, like=list(like), events=str(events) if events else None,
                            top=top, method=method, model=model, label=label)  # type: ignore[arg-type]
    except ScannerError as e:
        log.error("%s", e)
        ctx.exit(EXIT_USAGE if isinstance(e, ConfigError) else EXIT_LOAD_FAILED)
        return
    click.echo(f"{result.hits} hits for {result.queries} queries among {result.vectors} "
               f"vectors ({result.method}) -> {result.out}", err=True)
