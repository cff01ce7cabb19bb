"""Option parsing shared by the commands: per-backbone ``name=value`` options and the choices."""

from __future__ import annotations

from collections.abc import Sequence

import click


def backbone_names() -> list[str]:
    from scanner.backbones import BACKBONES

    return [n for n in BACKBONES.names() if n != "fake"]


def parse_backbones(value: str) -> tuple[str, ...]:
    """``yamnet,wav2vec2`` -> ("yamnet", "wav2vec2"), validated against the registry."""
    from scanner.backbones import BACKBONES

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if name not in BACKBONES:
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


def wav2vec2_options(backbones: Sequence[str], **options: object) -> dict[str, dict[str, object]]:
    """The Wav2Vec2-only options that were given, as load options; an error without wav2vec2."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return {}
    if "wav2vec2" not in backbones:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise click.UsageError(f"{names} only apply to --backbone wav2vec2")
    return {"wav2vec2": given}
