"""Option parsing shared by the commands: choices, per-backbone ``name=value`` options, renamed
options, the output table's format, ``-v``/``-q`` on every command and help in sections."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

log = logging.getLogger("scanner")

F = TypeVar("F", bound=Callable[..., Any])

# Backbones that exist for tests: never offered in choices or help. Setting this environment
# variable to 1 lets the command line accept them (the test suite does).
TEST_BACKBONES = frozenset({"fake"})
TEST_BACKBONES_ENV = "SCANNER_TEST_BACKBONES"


def test_backbones_allowed() -> bool:
    return os.environ.get(TEST_BACKBONES_ENV, "") == "1"


def backbone_names() -> list[str]:
    """The backbones a user may choose (test backbones only with ``SCANNER_TEST_BACKBONES=1``)."""
    from scanner.backbones import BACKBONES

    return [n for n in BACKBONES.names() if n not in TEST_BACKBONES or test_backbones_allowed()]


def parse_backbones(value: str) -> tuple[str, ...]:
    """``yamnet,wav2vec2`` -> ("yamnet", "wav2vec2"), validated against the registry."""
    allowed = backbone_names()
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if name not in allowed:
            raise click.BadParameter(f"unknown backbone {name!r} (choose from "
                                     f"{', '.join(backbone_names())})", param_hint="--backbone")
    if len(set(names)) != len(names) or not names:
        raise click.BadParameter(f"give each backbone once: {value!r}", param_hint="--backbone")
    return names


def per_backbone(values: Sequence[str], backbones: Sequence[str], option: str) -> dict[str, str]:
    """``--model PATH`` (one backbone) or ``--model yamnet=PATH`` (any) -> {backbone: value}."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if sep and name in backbones:
            out[name] = rest
        elif len(backbones) == 1:
            out[backbones[0]] = value
        else:
            raise click.BadParameter(
                f"with several backbones, write {option} BACKBONE=VALUE (got {value!r})",
                param_hint=option)
    return out


def parse_weights(value: str | None, backbones: Sequence[str]) -> dict[str, float]:
    """``yamnet=0.6,wav2vec2=0.4`` -> {"yamnet": 0.6, "wav2vec2": 0.4}."""
    if not value:
        return {}
    out = {}
    for item in value.split(","):
        name, sep, number = item.partition("=")
        if not sep or name.strip() not in backbones:
            raise click.BadParameter(f"expected BACKBONE=WEIGHT for one of {list(backbones)}, "
                                     f"got {item!r}", param_hint="--weights")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(f"{number!r} is not a number", param_hint="--weights") from None
    return out


def split_csv(values: Sequence[str]) -> tuple[str, ...]:
    """Repeatable options that also accept commas: ``--ext wav,flac --ext mp3``."""
    return tuple(v.strip().lstrip(".").lower() for item in values for v in item.split(",")
                 if v.strip())


# Wav2Vec2 load options -> the scan option that sets them, for messages.
W2V_FLAGS = {"layer": "--layer", "window_s": "--w2v-window", "batch_size": "--w2v-batch-size"}


def wav2vec2_options(backbones: Sequence[str], **options: object) -> dict[str, dict[str, object]]:
    """The Wav2Vec2-only options that were given, as load options; an error without wav2vec2."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return {}
    if "wav2vec2" not in backbones:
        names = ", ".join(W2V_FLAGS.get(k, f"--{k.replace('_', '-')}") for k in given)
        raise click.UsageError(f"{names} only apply to --backbone wav2vec2")
    return {"wav2vec2": given}


def table_format(out: Path, fmt: str | None) -> str:
    """The results table's format, decided by ``out``'s extension (``--format`` must agree).

    Raises:
        click.BadParameter: An extension no table format has, or a ``--format`` that
            contradicts it (a usage error, exit 2: nothing is scanned).
    """
    from scanner.output.writer import FORMATS

    by_suffix = {suffix: name for name in FORMATS for suffix in FORMATS.get(name).suffixes}
    suffix = out.suffix.lower()
    known = ", ".join(sorted(by_suffix))
    if suffix not in by_suffix:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise click.BadParameter(f"{click.format_filename(out)} has {what}; a results table ends "
                                 f"in {known}", param_hint="'-o' / '--output'")
    if fmt is not None and fmt.lower() != by_suffix[suffix]:
        raise click.BadParameter(f"--format {fmt} contradicts the extension of "
                                 f"{click.format_filename(out)} ({by_suffix[suffix]})",
                                 param_hint="--format")
    return by_suffix[suffix]


def deprecated_alias(old: str, dest: str, new: str, **attrs: Any) -> Callable[[F], F]:
    """Keeps an option's old spelling working, hidden from help, with a warning when used.

    Put it beside the renamed option (``dest`` is the new option's parameter name): a value
    given with ``old`` goes to ``dest``; giving both is a usage error.

    Example:
        ``@click.option("--hidden-sizes", "hidden", multiple=True)`` and
        ``@deprecated_alias("--hidden", "hidden", "--hidden-sizes", multiple=True)``.
    """
    alias = f"_deprecated_{dest}"

    def decorator(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(alias, None)
            if value is not None and value != ():
                ctx = click.get_current_context()
                source = ctx.get_parameter_source(dest)
                if source is click.core.ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"give {new} only ({old} is its old name)", ctx=ctx)
                log.warning("%s is deprecated and will be removed; use %s", old, new)
                kwargs[dest] = value
            return f(*args, **kwargs)

        return click.option(old, alias, hidden=True, **attrs)(wrapper)  # type: ignore[return-value]

    return decorator


# -- -v / -q on every command -----------------------------------------------------------------

def _verbosity_callback(level: int) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if not value:
            return
        from scanner.cli.terminal import setup_logging

        obj = ctx.ensure_object(dict)
        obj["verbosity"] = level
        setup_logging(level)

    return callback


def verbosity_options() -> list[click.Option]:
    """``-v``/``-q`` for a subcommand, so ``scanner scan -q DIR`` works like ``scanner -q scan``."""
    return [
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                     callback=_verbosity_callback(1), help="Debug logging, with tracebacks."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False,
                     callback=_verbosity_callback(-1),
                     help="Warnings and errors only: no progress, no summary."),
    ]


def add_verbosity_options(command: click.Command) -> click.Command:
    """Adds ``-v``/``-q`` to ``command`` (and to each subcommand of a group) once."""
    if not any(p.name in ("verbose", "quiet") for p in command.params):
        command.params.extend(verbosity_options())
    for sub in getattr(command, "commands", {}).values():
        add_verbosity_options(sub)
    return command


# -- help in sections -------------------------------------------------------------------------

class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options in named sections.

    Args:
        sections: ``(title, parameter names)`` in the order shown; options in no section
            follow under "Other options".
    """

    def __init__(self, *args: Any, sections: Sequence[tuple[str, Sequence[str]]] = (),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = tuple((title, tuple(names)) for title, names in sections)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx)
                   if isinstance(p, click.Option)}
        for title, names in self.sections:
            rows = [records.pop(n) for n in names if records.get(n) is not None]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [r for r in records.values() if r is not None]
        if rest:
            with formatter.section("Other options"):
                formatter.write_dl(rest)
