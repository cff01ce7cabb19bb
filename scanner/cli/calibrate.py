"""``scanner calibrate``: per-class thresholds for a precision you ask for, from review verdicts."""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger("scanner")


@click.command("calibrate")
@click.argument("head")
@click.option("--verdicts", "verdicts", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A verdicts.csv from 'scanner review' (repeatable).")
@click.option("--target-precision", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              required=True, help="Share of the items above a class's threshold that must be true.")
@click.option("--confidence", type=click.FloatRange(0.5, 1, max_open=True), default=0.95,
              show_default=True,
              help="How sure the precision must be (one-sided Wilson bound on the verdicts).")
@click.option("--label", "labels", multiple=True, help="Only this class (repeatable).")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Write a calibrated copy of HEAD here (default: change HEAD in place, keeping "
                   "head.json.before-calibration).")
@click.pass_context
def calibrate(ctx: click.Context, head: str, verdicts: tuple[Path, ...], target_precision: float,
              confidence: float, labels: tuple[str, ...], out: Path | None) -> None:
    """Set HEAD's thresholds so detections reach a precision, from reviewed items.

    HEAD is a head folder (or a built-in head name, with -o). Review a sample first
    (scanner review r.parquet --select sample -o calib/), mark the items, download
    verdicts.csv. P(true | score) and the thresholds are written into head.json.

    \b
    Example:
      scanner calibrate heads/mine --verdicts calib/verdicts.csv --target-precision 0.9
    """
    from scanner.cli import EXIT_LOAD_FAILED, EXIT_USAGE
    from scanner.errors import ConfigError, ScannerError
    from training.calibrate_verdicts import calibrate_head

    try:
        path, result = calibrate_head(head, list(verdicts), target_precision=target_precision,
                                      out=out, confidence=confidence, labels=labels)
    except ScannerError as e:
        log.error("%s", e)
        ctx.exit(EXIT_USAGE if isinstance(e, ConfigError) else EXIT_LOAD_FAILED)
        return
    for c, cal in result.items():
        if cal.threshold is None:
            click.echo(f"{c}: {cal.verdicts} verdicts ({cal.true} true): no score reaches "
                       f"precision {target_precision:g}; threshold unchanged")
        else:
            click.echo(f"{c}: threshold {cal.threshold:.3f} (precision {cal.precision:.3f}, "
                       f"lower bound {cal.precision_lower_bound:.3f}, recall "
                       f"{'n/a' if cal.recall is None else f'{cal.recall:.3f}'}; "
                       f"{cal.verdicts} verdicts, {cal.true} true)")
    click.echo(f"written to {path}", err=True)
