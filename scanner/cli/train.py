"""``scanner train``: a labelled folder to a head folder (weights, metrics, plots, report)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from scanner.cli.options import deprecated_alias

log = logging.getLogger("scanner")


def _backbone_choices() -> list[str]:
    from scanner.cli.options import backbone_names

    return backbone_names()


def parse_hidden(values: tuple[str, ...]) -> tuple[int, ...]:
    """``--hidden 256 --hidden 64`` or ``--hidden 256,64`` -> (256, 64); ``0`` -> () (linear)."""
    sizes: list[int] = []
    for item in values:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                size = int(part)
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a layer size",
                                         param_hint="--hidden") from None
            if size < 0:
                raise click.BadParameter(f"layer sizes must be >= 0, got {size}",
                                         param_hint="--hidden")
            sizes.append(size)
    if 0 in sizes and sizes != [0]:
        raise click.BadParameter("0 (no hidden layer) cannot be mixed with sizes",
                                 param_hint="--hidden")
    return tuple(s for s in sizes if s > 0)


@click.command("train")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Head folder to write (head.json, weights, metrics, plots, report.md).")
@click.option("--backbone", type=click.Choice(_backbone_choices()), default="yamnet",
              show_default=True, help="Frozen backbone whose embeddings the head reads.")
@click.option("--model", metavar="SRC",
              help="Backbone source: a .tflite file, a SavedModel/Hugging Face folder or a hub "
                   "handle. Default: $SCANNER_MODEL_DIR, then the hub.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with path (or file), label[, group] columns, paths relative to it. "
                   "Default: DATA_DIR/manifest.csv if it has a group column, else one "
                   "subfolder of DATA_DIR per label.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Embedding cache (default: the user cache dir, scanner/embeddings).")
@click.option("--val", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.15,
              show_default=True, help="Fraction held out for validation (by group).")
@click.option("--test", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.15,
              show_default=True, help="Fraction held out for test (by group).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the split, initialisation, batching and augmentation.")
@click.option("--hidden-sizes", "hidden", multiple=True, default=("256",), show_default=True,
              help="Hidden layer sizes, repeatable or a comma list (0: no hidden layer).")
@deprecated_alias("--hidden", "hidden", "--hidden-sizes", multiple=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.3,
              show_default=True, help="Dropout after each hidden layer.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Adam weight decay (L2).")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True,
              help="Most training epochs.")
@click.option("--patience", type=click.IntRange(min=1), default=20, show_default=True,
              help="Stop after this many epochs without a better validation loss.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Adam learning rate (default: yamnet 5e-4, wav2vec2 1e-4, others 1e-3).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Clips per optimisation step.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Decode processes (default: one per core; 0 decodes in the main process).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--band-limit-prob", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Chance, per clip and epoch, of training on its band-limited copy.")
@click.option("--band-limit-hz", type=click.IntRange(500, 7999), default=4000,
              show_default=True, help="Cut-off of the band-limited copies and test check.")
@click.option("--pooling", type=click.Choice(["mean", "max"]), default="mean",
              show_default=True, help="How patch embeddings are pooled per clip.")
@click.option("--class-weight", type=click.Choice(["balanced", "sqrt", "none"]),
              default="balanced", show_default=True,
              help="Loss weight per class: inverse frequency, its square root, or equal.")
@click.option("--refit/--no-refit", default=True, show_default=True,
              help="After early stopping picks the epoch count on validation, retrain on "
                   "train + validation for that many epochs (test stays held out).")
@click.option("--final", is_flag=True,
              help="After the held-out evaluation, fit the written head on every file, test "
                   "included (needs --folds >= 2); the report keeps the held-out metrics.")
@click.option("--folds", type=click.IntRange(min=1), default=1, show_default=True,
              help="K > 1: cross-fit K members on train + validation (each early-stopped on "
                   "its own grouped fold; --val and --refit unused) and average them.")
@click.option("--name", help="Head name (default: the output folder's name).")
@click.option("--add", "add", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A verdicts.csv from 'scanner review' (repeatable): yes -> the item's "
                   "class, no -> not_screaming, other -> the class chosen.")
@click.option("--detector", is_flag=True,
              help="Train for detection in long recordings: a context (or --arch temporal) "
                   "head on windows of clips, weak bags and generated soundscapes, "
                   "calibrated, with thresholds "
                   "chosen on validation soundscapes. Options not given take the detector's "
                   "defaults (see training/detect_config.py).")
@click.option("--weak", "weak_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --detector: a folder with manifest.csv of weakly labelled clips "
                   "(multiple-instance learning).")
@click.option("--mil/--no-mil", default=True, show_default=True,
              help="With --detector and --weak: select the weak bags' event windows.")
@click.option("--scales", default="3,7,21", show_default=True,
              help="With --detector: context scales, odd patch counts (3: the window only).")
@click.option("--arch", type=click.Choice(["context", "temporal"]), default="context",
              show_default=True,
              help="With --detector: context (an MLP on means of --scales patches) or temporal "
                   "(a dilated convolution over the patch sequence; width: --hidden-sizes).")
@click.option("--kernel", type=click.IntRange(min=1), default=5, show_default=True,
              help="With --detector --arch temporal: kernel, an odd number of patches.")
@click.option("--dilations", default="1,2,4", show_default=True,
              help="With --detector --arch temporal: one dilation per residual block.")
@click.option("--scene-hours", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="With --detector: hours of training soundscapes (0: clip windows only).")
@click.option("--event-speed", "event_speed", type=click.FloatRange(0, 12), default=0.0,
              show_default=True,
              help="With --detector: play each training soundscape's events faster or slower "
                   "by up to this many semitones either side (pitch and tempo together), so "
                   "few distinct clips give more distinct events (0: as recorded).")
@click.option("--val-hours", type=click.FloatRange(min=0, min_open=True), default=3.0,
              show_default=True,
              help="With --detector: hours of validation soundscapes (thresholds, calibration).")
@click.option("--test-hours", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True,
              help="With --detector: hours of test soundscapes (2 h, seed 0: the benchmark's).")
@click.option("--eval-minutes", default="10,30", show_default=True,
              help="With --detector: length range of those recordings, LOW,HIGH minutes.")
@click.option("--hard-negative-weight", type=click.IntRange(min=1), default=3,
              show_default=True,
              help="With --detector: copies of background windows a first fit took for "
                   "events (1: no mining).")
@click.option("--fa-budget", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="With --detector: false alarms per hour allowed when choosing thresholds.")
@click.pass_context
def train(ctx: click.Context, data_dir: Path, out_dir: Path, backbone: str, model: str | None,
          manifest: Path | None, cache_dir: Path | None, val: float, test: float, seed: int,
          hidden: tuple[str, ...], dropout: float, weight_decay: float, epochs: int,
          patience: int, lr: float | None, batch_size: int, workers: int | None, device: str,
          band_limit_prob: float, band_limit_hz: int, pooling: str, class_weight: str,
          refit: bool, final: bool, folds: int, name: str | None, detector: bool,
          weak_dir: Path | None, mil: bool, scales: str, scene_hours: float, val_hours: float,
          test_hours: float, eval_minutes: str, hard_negative_weight: int, fa_budget: float,
          arch: str = "context", kernel: int = 5, dilations: str = "1,2,4",
          add: tuple[Path, ...] = (), event_speed: float = 0.0) -> None:
    """Train a head on a labelled folder: one subfolder per label (or --manifest).

    Embeds every clip with the frozen backbone (as-is and band-limited; cached, so a
    rerun with other options embeds nothing), splits by recording group into
    train/val/test, fits an MLP with early stopping on validation, and writes the head
    with metrics.json, plots and report.md.

    \b
    Example:
      scanner train ~/labelled -o heads/my-head
      scanner scan ~/recordings --head heads/my-head -o results.csv
    """
    from scanner.cli import EXIT_LOAD_FAILED, EXIT_USAGE
    from scanner.errors import ConfigError, ScannerError
    from training.config import TrainConfig
    from training.train import train_head

    verbosity = (ctx.obj or {}).get("verbosity", 0)
    if detector:
        _train_detector(ctx, verbosity, data_dir=data_dir, out_dir=out_dir, backbone=backbone,
                        model=model, manifest=manifest, cache_dir=cache_dir, val=val, test=test,
                        seed=seed, hidden=hidden, dropout=dropout, weight_decay=weight_decay,
                        epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                        device=device, class_weight=class_weight, name=name,
                        weak_dir=weak_dir, mil=mil, scales=scales, scene_hours=scene_hours,
                        val_hours=val_hours, test_hours=test_hours,
                        eval_minutes=eval_minutes, hard_negative_weight=hard_negative_weight,
                        fa_budget=fa_budget, arch=arch, kernel=kernel, dilations=dilations,
                        event_speed=event_speed)
        return
    try:
        config = TrainConfig(
            data_dir=str(data_dir), out_dir=str(out_dir), backbone=backbone, model=model,
            manifest=str(manifest) if manifest else None,
            cache_dir=str(cache_dir) if cache_dir else None, val=val, test=test, seed=seed,
            hidden=parse_hidden(hidden), dropout=dropout, weight_decay=weight_decay,
            epochs=epochs, patience=patience, lr=lr, batch_size=batch_size, workers=workers,
            device=device, band_limit_prob=band_limit_prob, band_limit_hz=band_limit_hz,
            pooling=pooling, class_weight=class_weight, refit=refit, folds=folds, final=final,
            name=name)
        result = train_head(config, progress=verbosity >= 0 and sys.stderr.isatty(),
                            add=tuple(str(p) for p in add))
    except ScannerError as e:
        if verbosity > 0:
            log.exception("training failed")
        click.echo(f"Error: {e}", err=True)
        ctx.exit(EXIT_USAGE if isinstance(e, ConfigError) else EXIT_LOAD_FAILED)
        return
    _print_summary(result)


def _print_summary(result) -> None:
    from training.report import overview_rows

    metrics = result.metrics
    header = ["set", "accuracy", "macro-F1", "ROC-AUC", "AP", "files"]
    rows = [[str(r[0]), *(f"{v:.3f}" if isinstance(v, float) else "n/a" if v is None else str(v)
                          for v in r[1:])] for r in overview_rows(metrics)]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    fit = metrics["fit"]
    kept = (f"{fit['members']} cross-fitted members (epochs {fit['best_epochs']})"
            if fit.get("mode") == "folds" else
            f"kept epoch {fit['best_epoch']} of {fit['epochs_run']}"
            + (f", refit on train + val for {fit['refit']['epochs']}" if fit.get("refit") else ""))
    click.echo(f"{kept}; embedded now: "
               + ", ".join(f"{k} {v}" for k, v in result.embedded.items())
               + (f"; {len(result.failures)} unusable file(s)" if result.failures else ""))
    click.echo(f"head written to {result.out_dir} (report: {result.files['report']})")


def _given(ctx: click.Context, name: str) -> bool:
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


def _train_detector(ctx: click.Context, verbosity: int, **opts) -> None:
    """``--detector``: builds a DetectConfig (options not given keep its defaults) and trains."""
    from dataclasses import fields

    from scanner.cli import EXIT_LOAD_FAILED, EXIT_USAGE
    from scanner.errors import ConfigError, ScannerError
    from training.detect import train_detector
    from training.detect_config import DetectConfig

    try:
        scales = tuple(int(s) for s in str(opts.pop("scales")).split(",") if s.strip())
    except ValueError:
        raise click.BadParameter("expected odd patch counts like 3,7,21",
                                 param_hint="--scales") from None
    try:
        dilations = tuple(int(d) for d in str(opts.pop("dilations")).split(",") if d.strip())
    except ValueError:
        raise click.BadParameter("expected positive integers like 1,2,4",
                                 param_hint="--dilations") from None
    try:
        minutes = tuple(float(m) for m in str(opts.pop("eval_minutes")).split(","))
    except ValueError:
        raise click.BadParameter("expected LOW,HIGH minutes like 10,30",
                                 param_hint="--eval-minutes") from None
    if len(minutes) == 1:
        minutes = (minutes[0], minutes[0])
    renamed = {"scene_hours": "train_scene_hours", "fa_budget": "fa_budget_per_hour",
               "event_speed": "event_speed_semitones"}
    known = {f.name for f in fields(DetectConfig)}
    values: dict = {"data_dir": str(opts.pop("data_dir")), "out_dir": str(opts.pop("out_dir")),
                    "scales": scales, "eval_minutes": minutes, "dilations": dilations}
    for key, value in opts.items():
        field_name = renamed.get(key, key)
        if field_name not in known or value is None:
            continue
        if key not in ("weak_dir", "manifest", "cache_dir", "model", "name") \
                and not _given(ctx, key):
            continue  # the detector's own default
        if key == "hidden":
            value = parse_hidden(value)
        elif isinstance(value, Path):
            value = str(value)
        values[field_name] = value
    try:
        config = DetectConfig(**values)
        result = train_detector(config, progress=verbosity >= 0 and sys.stderr.isatty())
    except ScannerError as e:
        if verbosity > 0:
            log.exception("training failed")
        click.echo(f"Error: {e}", err=True)
        ctx.exit(EXIT_USAGE if isinstance(e, ConfigError) else EXIT_LOAD_FAILED)
        return
    m = result.metrics
    test = m["soundscapes"]["test"]
    click.echo(f"test soundscapes ({test['hours']:.1f} h): mean event F1 "
               f"{test['mean_event_f1']:.3f}, file-flag F1 {test['mean_file_flag_f1']:.3f}, "
               f"{test['false_alarms_per_hour']:.1f} false alarms per hour")
    for c, v in test["per_class"].items():
        click.echo(f"  {c}: event F1 {v['event_f1']:.3f}, file-flag F1 "
                   f"{v['file_flag']['f1']:.3f}, {v['false_alarms_per_hour']:.1f} FA/h, "
                   f"threshold {m['thresholds'][c]:.2f}")
    click.echo(f"test clips macro-F1 {m['clips']['test_events']['macro_f1']:.3f} (file verdict "
               f"from events), band-limited {m['clips']['test_events_bandlimited']['macro_f1']:.3f}")
    click.echo(f"head written to {result.out_dir} (report: {result.out_dir / 'report.md'})")
