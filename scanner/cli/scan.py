"""``scanner scan``: folders of audio to a results table."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from scanner.cli.options import (
    parse_backbones,
    parse_weights,
    per_backbone,
    split_csv,
    wav2vec2_options,
)
from scanner.engines import ENGINES

log = logging.getLogger("scanner")


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              default="results.parquet", show_default=True,
              help="Results table: .parquet (default) or .csv.")
@click.option("--format", "output_format", type=click.Choice(["parquet", "csv"]),
              help="Output format (default: from the output's suffix).")
@click.option("--backbone", "backbone", default="yamnet", show_default=True,
              help="Backbone(s): yamnet, wav2vec2, or both as 'yamnet,wav2vec2' (an ensemble).")
@click.option("--model", "models", multiple=True, metavar="SRC",
              help="Model source: a .tflite file, a SavedModel/Hugging Face folder, or a hub "
                   "handle. Default: $SCANNER_MODEL_DIR, then the hub. With several backbones: "
                   "BACKBONE=SRC (repeatable).")
@click.option("--head", "heads", multiple=True, metavar="HEAD",
              help="Head folder made by 'scanner train', or a built-in name ('default', "
                   "'audioset'). With several backbones: BACKBONE=HEAD (repeatable).")
@click.option("--weights", help="Ensemble weights, e.g. 'yamnet=0.6,wav2vec2=0.4' (default equal).")
@click.option("--layer", type=int,
              help="Wav2Vec2 hidden layer to pool (0 = input of the first layer; default: last).")
@click.option("--w2v-window", "w2v_window_s", type=click.FloatRange(min=0.5),
              help="Wav2Vec2 window length in seconds (default 10).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Wav2Vec2 windows per forward pass (default 8; halved on CUDA out-of-memory).")
@click.option("--ext", "extensions", multiple=True,
              help="Audio extensions to look for (repeatable or comma list). "
                   "Default: wav flac ogg oga opus mp3 m4a aac aif aiff wma.")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option("--hidden", is_flag=True, help="Also scan hidden files and folders.")
@click.option("--follow-symlinks", is_flag=True,
              help="Follow symlinked folders and files outside the scanned folder.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Decode processes (default: one per core; 0 decodes in the main process).")
@click.option("--threads", type=click.IntRange(min=1), help="Model threads (default: one per core).")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-seconds", "batch_s", type=click.FloatRange(min=1), default=60.0,
              show_default=True,
              help="Seconds of audio per model batch (an idle model gets one at 15 s).")
@click.option("--max-duration", "max_duration_s", type=click.FloatRange(min=0.1),
              help="Analyse at most this many seconds of each file (the row says it was cut).")
@click.option("--decode-timeout", "decode_timeout_s", type=click.FloatRange(min=1), default=300.0,
              show_default=True, help="Stop decoding a file after this many seconds (error 'timeout').")
@click.option("--segments", "segments", is_flag=True,
              help="Also write one row per analysis window (OUTPUT.segments.parquet). Events "
                   "(OUTPUT.events.parquet) are always written.")
@click.option("--window", "window_s", type=click.FloatRange(min=0.1),
              help="Detection: analysis window length in seconds (default: the head's, else 1.44).")
@click.option("--hop", "hop_s", type=click.FloatRange(min=0.01),
              help="Detection: step between windows in seconds (default: the head's, else 0.48).")
@click.option("--smooth", "smooth_windows", type=click.IntRange(min=1),
              help="Detection: windows averaged, odd; 1 = no smoothing (default: the head's, else 3).")
@click.option("--min-event", "min_event_s", type=click.FloatRange(min=0),
              help="Detection: drop events shorter than this many seconds (default: the "
                   "head's, else 1).")
@click.option("--threshold", "thresholds", multiple=True, metavar="CLASS=P",
              help="Detection: probability a class needs to make an event, e.g. "
                   "'screaming=0.6' (repeatable; default: the head's validated thresholds).")
@click.option("--sensitivity", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True,
              help="Detection: scales every threshold's odds: 2 finds more (and more false "
                   "alarms), 0.5 fewer.")
@click.option("--embeddings", "embeddings", is_flag=True,
              help="Also write every patch's embedding (OUTPUT.embeddings.parquet, float16) for "
                   "'scanner search' and 'scanner train'.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing results table (never a file scanner did not write).")
@click.option("--engine", type=click.Choice(ENGINES.names()), default="local", show_default=True,
              help="local: processes on this machine; ray: a Ray cluster "
                   "(pip install -e '.[ray]'; see docs/ray.md).")
@click.option("--ray-address", metavar="ADDR",
              help="Ray cluster for --engine ray: auto, HOST:6379 or ray://HOST:10001 "
                   "(default: start a local Ray instance).")
@click.option("--cache", is_flag=True,
              help="Also store each file's embeddings in the cache 'scanner train' reads, so "
                   "training on scanned files embeds nothing again.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Embedding cache folder (default: the user cache folder, scanner/embeddings).")
@click.option("--resume", is_flag=True,
              help="Keep rows already in OUTPUT (or its committed parts) and scan only the rest.")
@click.pass_context
def scan(ctx: click.Context, paths: tuple[Path, ...], out: Path, output_format: str | None,
         backbone: str, models: tuple[str, ...], heads: tuple[str, ...], weights: str | None,
         layer: int | None, w2v_window_s: float | None, batch_size: int | None,
         extensions: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...],
         hidden: bool, follow_symlinks: bool, workers: int | None, threads: int | None,
         device: str, batch_s: float, max_duration_s: float | None,
         decode_timeout_s: float, segments: bool, window_s: float | None,
         hop_s: float | None, smooth_windows: int | None, min_event_s: float | None,
         thresholds: tuple[str, ...], sensitivity: float, embeddings: bool, overwrite: bool,
         engine: str, ray_address: str | None, cache: bool,
         cache_dir: Path | None, resume: bool) -> None:
    """Scan PATHS (folders, recursively, and files) and write one row per audio file.

    \b
    Examples:
      scanner scan ~/recordings -o results.parquet
      scanner scan a/ b/ -o results.csv --exclude '*/tmp/*'
      scanner scan ~/recordings --backbone yamnet,wav2vec2 -o both.parquet
    """
    from scanner.cli import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, EXIT_LOAD_FAILED, EXIT_OUTPUT
    from scanner.config import ScanConfig
    from scanner.engines.driver import ScanInterrupted, load_classifier, scan
    from scanner.errors import OutputError, ScannerError

    if ray_address and engine != "ray":
        raise click.BadParameter("needs --engine ray", param_hint="--ray-address")
    if engine == "ray":
        from scanner.engines.ray_engine import require_ray

        try:
            require_ray()
        except ScannerError as e:
            log.error("%s", e)
            ctx.exit(EXIT_LOAD_FAILED)
    names = parse_backbones(backbone)
    from scanner.events.segments import parse_thresholds

    try:
        parsed_thresholds = parse_thresholds(thresholds)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--threshold") from None
    detection = {"window_s": window_s, "hop_s": hop_s, "smooth_windows": smooth_windows,
                 "min_event_s": min_event_s}
    config = ScanConfig(
        backbones=names, models=per_backbone(models, names, "--model"),
        heads=per_backbone(heads, names, "--head"), weights=parse_weights(weights, names),
        backbone_options=wav2vec2_options(names, layer=layer, window_s=w2v_window_s,
                                          batch_size=batch_size),
        extensions=split_csv(extensions) or None, include=include, exclude=exclude,
        hidden=hidden, follow_symlinks=follow_symlinks, workers=workers, threads=threads,
        device=device, batch_s=batch_s, max_duration_s=max_duration_s,
        decode_timeout_s=decode_timeout_s, resume=resume, cache=cache,
        cache_dir=str(cache_dir) if cache_dir else None, output_format=output_format,
        detection={k: v for k, v in detection.items() if v is not None},
        thresholds=parsed_thresholds, sensitivity=sensitivity, segments=segments,
        embeddings=embeddings, overwrite=overwrite, roots=tuple(str(p) for p in paths),
        command=tuple(sys.argv))
    try:
        from scanner.events.detection import resolve_detection

        classifier = load_classifier(config)
        resolve_detection(classifier, options=config.detection, thresholds=config.thresholds,
                          sensitivity=config.sensitivity)
    except ScannerError as e:
        log.error("%s", e)
        ctx.exit(EXIT_LOAD_FAILED)
    except KeyboardInterrupt:
        log.warning("interrupted while loading the model: nothing was scanned")
        ctx.exit(EXIT_INTERRUPTED)

    quiet = ctx.obj.get("verbosity", 0) < 0
    bar = _ProgressBar(disable=quiet)
    try:
        summary = scan(paths, out, config, classifier=classifier, on_files=bar.start,
                       on_row=bar.update, engine=ENGINES.get(engine)(address=ray_address))
    except ScanInterrupted as e:
        bar.close()
        log.warning("interrupted after %d files; committed rows are kept. Continue with: "
                    "scanner scan ... -o %s --resume", e.summary.files, out)
        ctx.exit(EXIT_INTERRUPTED)
    except OutputError as e:
        bar.close()
        log.error("%s", e)
        ctx.exit(EXIT_OUTPUT)
    except ScannerError as e:
        bar.close()
        log.error("%s", e)
        ctx.exit(EXIT_LOAD_FAILED)
    except KeyboardInterrupt:  # outside the file loop: listing files, or writing the table
        bar.close()
        log.warning("interrupted; committed rows are kept. Continue with: "
                    "scanner scan ... -o %s --resume", out)
        ctx.exit(EXIT_INTERRUPTED)
    bar.close()
    click.echo(summary.line(), err=True)
    if summary.errors:
        ctx.exit(EXIT_FILE_ERRORS)


class _ProgressBar:
    """tqdm on stderr, counting files and audio hours."""

    def __init__(self, *, disable: bool) -> None:
        self.disable = disable
        self._bar = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="file", file=sys.stderr, disable=self.disable,
                         dynamic_ncols=True, desc="scanning")
        self._audio_s = 0.0

    def update(self, row: dict) -> None:
        if self._bar is None:
            return
        self._audio_s += row.get("duration_s") or 0.0
        self._bar.set_postfix_str(f"{self._audio_s / 3600:.2f} h audio", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
