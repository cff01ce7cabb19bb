"""The ``scanner`` command: parses options, configures logging, calls one library function.

``-v``/``-q`` work before the subcommand and after it (``scanner scan -q DIR``). Logging,
the terminal and native libraries' stderr are set up in :mod:`scanner.cli.terminal`.

Exit codes: 0 done (``scan`` also when some files had errors: a warning says so, see
:mod:`scanner.cli.scan`); 1 an unexpected internal error; 2 bad usage; 3 a model, head or
configuration could not be loaded (a missing optional extra included); 4 ``scan --strict``
finished but some files had errors; 5 the output cannot be written (a file scanner did not
write, a table another scan is writing, an existing table without ``--overwrite``/``--resume``);
130 interrupted (Ctrl-C; rerun with ``--resume``).
"""

from __future__ import annotations

import click

from scanner import __version__
from scanner.cli.options import add_verbosity_options
from scanner.cli.terminal import native_stderr_to_log, setup_logging

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_LOAD_FAILED = 3
EXIT_FILE_ERRORS = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130

__all__ = ["EXIT_FILE_ERRORS", "EXIT_INTERRUPTED", "EXIT_LOAD_FAILED", "EXIT_OK", "EXIT_OUTPUT",
           "EXIT_USAGE", "cli", "main", "setup_logging"]


class ScannerGroup(click.Group):
    """The command group; every command added gets ``-v``/``-q`` of its own."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(add_verbosity_options(cmd), name)


@click.group(cls=ScannerGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100, "show_default": True})
@click.version_option(__version__, "--version", prog_name="scanner")
@click.option("-v", "--verbose", "verbosity", flag_value=1, help="Debug logging, with tracebacks.")
@click.option("-q", "--quiet", "verbosity", flag_value=-1,
              help="Warnings and errors only: no progress, no summary.")
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
    ctx.with_resource(native_stderr_to_log())
    setup_logging(ctx.obj["verbosity"])


def _register() -> None:
    from scanner.cli.calibrate import calibrate
    from scanner.cli.evaluate import evaluate
    from scanner.cli.export import export
    from scanner.cli.report import report
    from scanner.cli.review import review
    from scanner.cli.scan import scan
    from scanner.cli.search import search
    from scanner.cli.train import train

    cli.add_command(scan)
    cli.add_command(train)
    cli.add_command(export)
    cli.add_command(report)
    cli.add_command(evaluate)
    cli.add_command(search)
    cli.add_command(review)
    cli.add_command(calibrate)


_register()


def main() -> None:
    """Console-script entry point: every ending is one line and a documented exit code."""
    from scanner.cli.boundary import run

    run(cli, prog_name="scanner")
