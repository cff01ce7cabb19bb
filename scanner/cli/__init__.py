"""The ``scanner`` command: parses options, configures logging, calls one library function.

Exit codes: 0 every file ok; 1 an unexpected internal error; 2 bad usage; 3 a model, head
or configuration could not be loaded; 4 the scan finished but some files had errors;
5 the output cannot be written (a file scanner did not write, a table another scan is
writing, an existing table without ``--overwrite``/``--resume``); 130 interrupted (Ctrl-C;
rerun with ``--resume``).
"""

from __future__ import annotations

import logging
import sys

import click

from scanner import __version__

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_LOAD_FAILED = 3
EXIT_FILE_ERRORS = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130


def setup_logging(verbosity: int) -> None:
    """The one place logging is configured: -v debug, default info, -q warnings only."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    if level > logging.DEBUG:
        for noisy in ("tensorflow", "absl", "h5py", "numba", "matplotlib", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="scanner")
@click.option("-v", "--verbose", "verbosity", flag_value=1, help="Debug logging, with tracebacks.")
@click.option("-q", "--quiet", "verbosity", flag_value=-1, help="Warnings and errors only, no progress bar.")
@click.pass_context
def cli(ctx: click.Context, verbosity: int | None) -> None:
    """Scan folders of audio and flag crying and screaming.

    \b
    Quick start:
      scanner scan ~/recordings -o results.parquet
      scanner train ~/labelled -o heads/my-head
      scanner scan ~/recordings --head heads/my-head -o results.csv

    Offline: set SCANNER_MODEL_DIR to a folder holding yamnet/yamnet.tflite
    (and wav2vec2-base/ for --backbone wav2vec2).
    """
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = verbosity or 0
    setup_logging(ctx.obj["verbosity"])


def _register() -> None:
    from scanner.cli.evaluate import evaluate
    from scanner.cli.export import export
    from scanner.cli.report import report
    from scanner.cli.scan import scan
    from scanner.cli.train import train

    cli.add_command(scan)
    cli.add_command(train)
    cli.add_command(export)
    cli.add_command(report)
    cli.add_command(evaluate)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="scanner")
