"""``scanner scan``: folders of audio to a results table.

Exit codes: 0 the scan finished, also when some files could not be analysed (a warning
says how many and why; their rows have status ``error``), so ``scanner scan ... && scanner
report ...`` works on real collections, which always hold a broken file; with ``--strict``
such a scan exits 4 instead. 2 bad usage (an output that is not .parquet, .pq or .csv);
3 a model, head or option could not be loaded; 5 the output cannot be written (a file
scanner did not write, a table another scan is writing, an existing table without
``--overwrite``/``--resume``); 130 interrupted (rerun with ``--resume``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from scanner.cli.options import (
    SectionedCommand,
    deprecated_alias,
    parse_backbones,
    parse_weights,
    per_backbone,
    split_csv,
    table_format,
    wav2vec2_options,
)
from scanner.engines import ENGINES

log = logging.getLogger("scanner")

SECTIONS = (
    ("Input", ("extensions", "include", "exclude", "hidden", "follow_symlinks",
               "max_duration_s", "timestamp_pattern")),
    ("Model", ("backbone", "models", "heads", "weights", "layer", "w2v_window_s")),
    ("Detection", ("window_s", "hop_s", "smooth_windows", "min_event_s", "min_event_fraction",
                   "max_gap_s", "thresholds", "edge_thresholds", "short_thresholds",
                   "short_max_s", "sensitivity")),
    ("Output", ("out", "output_format", "segments", "embeddings", "overwrite", "resume", "strict",
                "cache", "cache_dir")),
    ("Performance", ("workers", "threads", "device", "batch_s", "batch_size", "decode_timeout_s",
                     "engine", "ray_address")),
)


class _DefaultFrom(click.Option):
    """An option whose help shows a default that lives in the library (read only for --help)."""

    def __init__(self, *args: Any, default_from: Callable[[], object] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._default_from = default_from

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self._default_from is not None:
            extra["default"] = str(self._default_from())
        return extra


def _w2v_default(name: str) -> Callable[[], object]:
    def get() -> object:
        import inspect

        from scanner.backbones.wav2vec2 import Wav2Vec2Backbone

        return inspect.signature(Wav2Vec2Backbone.load).parameters[name].default

    return get


def _detection_default(name: str) -> Callable[[], object]:
    def get() -> object:
        from scanner.events.segments import SegmentConfig

        return f"the head's, else {getattr(SegmentConfig, name)}"

    return get


@click.command("scan", cls=SectionedCommand, sections=SECTIONS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              default="results.parquet", show_default=True,
              help="Results table; its extension decides the format: .parquet or .pq "
                   "(Parquet), .csv.")
@click.option("--format", "output_format", type=click.Choice(["parquet", "csv"], case_sensitive=False),
              help="Output format; must agree with the output's extension.")
@click.option("--backbone", "backbone", default="yamnet", show_default=True,
              help="Backbone(s): yamnet, wav2vec2, or both as 'yamnet,wav2vec2' (an ensemble).")
@click.option("--model", "models", multiple=True, metavar="SRC",
              show_default="$SCANNER_MODEL_DIR, then the hub",
              help="Model source: a .tflite file, a SavedModel/Hugging Face folder, or a hub "
                   "handle. With several backbones: BACKBONE=SRC (repeatable).")
@click.option("--head", "heads", multiple=True, metavar="HEAD", show_default="default",
              help="Head folder made by 'scanner train', or a built-in name ('default', "
                   "'audioset'). With several backbones: BACKBONE=HEAD (repeatable).")
@click.option("--weights", show_default="equal",
              help="Ensemble weights, e.g. 'yamnet=0.6,wav2vec2=0.4'.")
@click.option("--layer", type=int, show_default="last",
              help="Wav2Vec2 hidden layer to pool (0 = input of the first layer).")
@click.option("--w2v-window", "w2v_window_s", type=click.FloatRange(min=0.5), cls=_DefaultFrom,
              default_from=_w2v_default("window_s"), help="Wav2Vec2 window length in seconds.")
@click.option("--w2v-batch-size", "batch_size", type=click.IntRange(min=1), cls=_DefaultFrom,
              default_from=_w2v_default("batch_size"),
              help="Wav2Vec2 windows per forward pass (halved on CUDA out-of-memory). YAMNet "
                   "batches by --batch-seconds.")
@deprecated_alias("--batch-size", "batch_size", "--w2v-batch-size", type=click.IntRange(min=1))
@click.option("--ext", "extensions", multiple=True,
              show_default="wav flac ogg oga opus mp3 m4a aac aif aiff wma",
              help="Audio extensions to look for (repeatable or comma list).")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option("--hidden", is_flag=True, help="Also scan hidden files and folders.")
@click.option("--follow-symlinks", is_flag=True,
              help="Follow symlinked folders and files outside the scanned folder.")
@click.option("--workers", type=click.IntRange(min=0), show_default="one per core",
              help="Decode processes (0 decodes in the main process).")
@click.option("--threads", type=click.IntRange(min=1), show_default="one per core",
              help="Model threads.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-seconds", "batch_s", type=click.FloatRange(min=1), default=60.0,
              show_default=True,
              help="Seconds of audio per model batch (an idle model gets one at 15 s).")
@click.option("--max-duration", "max_duration_s", type=click.FloatRange(min=0.1),
              show_default="whole file",
              help="Analyse at most this many seconds of each file (the row says it was cut).")
@click.option("--decode-timeout", "decode_timeout_s", type=click.FloatRange(min=1), default=300.0,
              show_default=True, help="Stop decoding a file after this many seconds (error 'timeout').")
@click.option("--segments", "segments", is_flag=True,
              help="Also write one row per analysis window (OUTPUT.segments.parquet). Events "
                   "(OUTPUT.events.parquet) are always written.")
@click.option("--window", "window_s", type=click.FloatRange(min=0.1), cls=_DefaultFrom,
              default_from=_detection_default("window_s"),
              help="Detection: analysis window length in seconds.")
@click.option("--hop", "hop_s", type=click.FloatRange(min=0.01), cls=_DefaultFrom,
              default_from=_detection_default("hop_s"),
              help="Detection: step between windows in seconds.")
@click.option("--smooth", "smooth_windows", type=click.IntRange(min=1), cls=_DefaultFrom,
              default_from=_detection_default("smooth_windows"),
              help="Detection: windows averaged, odd; 1 = no smoothing.")
@click.option("--min-event", "min_event_s", type=click.FloatRange(min=0), cls=_DefaultFrom,
              default_from=_detection_default("min_event_s"),
              help="Detection: drop events shorter than this many seconds.")
@click.option("--min-event-fraction", "min_event_fraction",
              type=click.FloatRange(min=0, max=1, min_open=True), cls=_DefaultFrom,
              default_from=_detection_default("min_event_fraction"),
              help="Detection: in a short recording, the minimum event length is at most this "
                   "fraction of it (1: only a recording shorter than the minimum may be one "
                   "event end to end).")
@click.option("--max-gap", "max_gap_s", type=click.FloatRange(min=0), cls=_DefaultFrom,
              default_from=_detection_default("max_gap_s"),
              help="Detection: join two events of one class at most this many seconds apart.")
@click.option("--threshold", "thresholds", multiple=True, metavar="CLASS=P",
              show_default="the head's validated thresholds",
              help="Detection: probability a class needs to make an event, e.g. "
                   "'screaming=0.6' (repeatable).")
@click.option("--edge-threshold", "edge_thresholds", multiple=True, metavar="CLASS=P",
              show_default="the head's validated edge thresholds",
              help="Detection: probability an event's class needs to extend the event over "
                   "neighbouring windows (hysteresis, at most the threshold), e.g. 'cry=0.4'.")
@click.option("--short-threshold", "short_thresholds", multiple=True, metavar="CLASS=P",
              show_default="the head's validated short-recording thresholds",
              help="Detection: the threshold of a class in a recording of at most --short-max "
                   "seconds (a clip), e.g. 'cry=0.6' (repeatable).")
@click.option("--short-max", "short_max_s", type=click.FloatRange(min=0), cls=_DefaultFrom,
              default_from=_detection_default("short_max_s"),
              help="Detection: the longest recording that uses the short-recording thresholds "
                   "(0: none does, every recording uses the long recordings' thresholds).")
@click.option("--sensitivity", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True,
              help="Detection: scales every threshold's odds: 2 finds more (and more false "
                   "alarms), 0.5 fewer.")
@click.option("--embeddings", "embeddings", is_flag=True,
              help="Also write every patch's embedding (OUTPUT.embeddings.parquet, float16) for "
                   "'scanner search' and 'scanner train'.")
@click.option("--timestamp-pattern", metavar="PATTERN",
              help="How file names give the recording's start time when no metadata does: a "
                   "strptime format ('site3_%Y%m%d_%H%M%S') or a regex with named groups "
                   "year, month, day, hour, minute, second. AudioMoth, Song Meter and ISO "
                   "names, GUANO, BWF and AudioMoth metadata are read without it.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing results table (never a file scanner did not write).")
@click.option("--engine", type=click.Choice(ENGINES.names()), default="local", show_default=True,
              help="local: processes on this machine; ray: a Ray cluster "
                   "(pip install 'cry-scream-scanner[ray]'; see docs/ray.md).")
@click.option("--ray-address", metavar="ADDR", show_default="a local Ray instance",
              help="Ray cluster for --engine ray: auto, HOST:6379 or ray://HOST:10001.")
@click.option("--cache", is_flag=True,
              help="Also store each file's embeddings in the cache 'scanner train' reads, so "
                   "training on scanned files embeds nothing again.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              show_default="the user cache folder, scanner/embeddings",
              help="Embedding cache folder.")
@click.option("--resume", is_flag=True,
              help="Keep rows already in OUTPUT (or its committed parts) and scan only the rest.")
@click.option("--strict", is_flag=True,
              help="Exit with code 4 when some files could not be analysed; without it such a "
                   "scan exits 0, with a warning.")
@click.pass_context
def scan(ctx: click.Context, paths: tuple[Path, ...], out: Path, output_format: str | None,
         backbone: str, models: tuple[str, ...], heads: tuple[str, ...], weights: str | None,
         layer: int | None, w2v_window_s: float | None, batch_size: int | None,
         extensions: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...],
         hidden: bool, follow_symlinks: bool, workers: int | None, threads: int | None,
         device: str, batch_s: float, max_duration_s: float | None,
         decode_timeout_s: float, segments: bool, window_s: float | None,
         hop_s: float | None, smooth_windows: int | None, min_event_s: float | None,
         min_event_fraction: float | None, max_gap_s: float | None,
         thresholds: tuple[str, ...], edge_thresholds: tuple[str, ...],
         short_thresholds: tuple[str, ...], short_max_s: float | None, sensitivity: float,
         embeddings: bool,
         timestamp_pattern: str | None, overwrite: bool,
         engine: str, ray_address: str | None, cache: bool,
         cache_dir: Path | None, resume: bool, strict: bool) -> None:
    """Scan PATHS (folders, recursively, and files) and write one row per audio file.

    \b
    Examples:
      scanner scan ~/recordings -o results.parquet
      scanner scan a/ b/ -o results.csv --exclude '*/tmp/*'
      scanner scan ~/recordings --backbone yamnet,wav2vec2 -o both.parquet
      scanner scan ~/recordings -o r.parquet --strict && scanner report r.parquet
    """
    from scanner.cli import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, EXIT_LOAD_FAILED, EXIT_OUTPUT
    from scanner.cli.progress import Progress
    from scanner.cli.summary import RowTally, failure_warning, summary_lines, written_tables
    from scanner.config import ScanConfig
    from scanner.engines.driver import ScanInterrupted, load_classifier, scan
    from scanner.errors import OutputError, ScannerError
    from scanner.events.segments import parse_thresholds

    output_format = table_format(out, output_format)
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
    try:
        parsed_thresholds = parse_thresholds(thresholds)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--threshold") from None
    try:
        parsed_edges = parse_thresholds(edge_thresholds)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--edge-threshold") from None
    try:
        parsed_short = parse_thresholds(short_thresholds)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--short-threshold") from None
    if timestamp_pattern:
        from scanner.errors import ConfigError
        from scanner.timestamps import compile_pattern

        try:
            compile_pattern(timestamp_pattern)
        except ConfigError as e:
            raise click.BadParameter(str(e), param_hint="--timestamp-pattern") from None
    detection = {"window_s": window_s, "hop_s": hop_s, "smooth_windows": smooth_windows,
                 "min_event_s": min_event_s, "min_event_fraction": min_event_fraction,
                 "max_gap_s": max_gap_s,
                 "edge_thresholds": parsed_edges or None,
                 "short_thresholds": parsed_short or None, "short_max_s": short_max_s}
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
        embeddings=embeddings, overwrite=overwrite, timestamp_pattern=timestamp_pattern,
        roots=tuple(os.path.abspath(p) for p in paths),
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

    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    tally = RowTally()
    progress = Progress(enabled=not quiet)

    def on_row(row: dict) -> None:
        tally.add(row)
        progress.update(row)

    resume_hint = f"scanner scan ... -o {click.format_filename(out)} --resume"
    with progress:
        try:
            summary = scan(paths, out, config, classifier=classifier, on_files=progress.start,
                           on_discovered=progress.found, on_row=on_row,
                           engine=ENGINES.get(engine)(address=ray_address))
        except ScanInterrupted as e:
            progress.close()
            log.warning("interrupted after %d files; committed rows are kept. Continue with: %s",
                        e.summary.files, resume_hint)
            ctx.exit(EXIT_INTERRUPTED)
        except OutputError as e:
            progress.close()
            log.error("%s", e)
            ctx.exit(EXIT_OUTPUT)
        except ScannerError as e:
            progress.close()
            log.error("%s", e)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:  # outside the file loop: listing files, or writing the table
            progress.close()
            log.warning("interrupted; committed rows are kept. Continue with: %s", resume_hint)
            ctx.exit(EXIT_INTERRUPTED)
    if summary.files == 0 and summary.skipped == 0:
        from scanner.cli.summary import explain_empty

        log.warning("no audio files to scan, the table is empty: %s", explain_empty(
            paths, extensions=config.extensions, include=include, exclude=exclude, hidden=hidden,
            follow_symlinks=follow_symlinks))
    if summary.errors:
        log.warning("%s", failure_warning(summary, tally, strict=strict))
    if not quiet:
        for line in summary_lines(summary, tally, classes=classifier.classes,
                                  tables=written_tables(Path(summary.out))):
            click.echo(line, err=True)
    if summary.errors and strict:
        ctx.exit(EXIT_FILE_ERRORS)
