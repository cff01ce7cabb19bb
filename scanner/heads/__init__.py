"""Head registry and loading: a built-in head by name, or a head folder by path."""

from __future__ import annotations

from pathlib import Path

from scanner.errors import ScannerError
from scanner.heads.base import Head
from scanner.registry import Registry

HEADS: Registry[type[Head]] = Registry("head")
register_head = HEADS.register

from scanner.heads import audioset, context, ensemble, mlp, temporal  # noqa: E402,F401

BUILTIN_DIR = Path(__file__).parent / "builtin"
# Names that stand for another built-in head: ``default`` is the head a YAMNet scan uses
# when no ``--head`` is given (the detection ensemble; the former default is ``clip-linear``).
ALIASES: dict[str, str] = {"default": "detector"}
# Built-in heads renamed in a release, by (former name, former sha256): the same weights and
# thresholds under a new name, so a table made with the former one resumes with the new one.
RENAMED: dict[tuple[str, str], str] = {
    ("default", "121ed65ce0f01688183c6a7850ae7fb75d7c532569d4e56b4c387e669cfca14a"): "clip-linear",
}


def builtin_heads() -> dict[str, Path]:
    """Built-in head folders shipped in the package, by name (``default``, ``detector``,
    ``clip-linear``, ``audioset``), aliases included."""
    if not BUILTIN_DIR.is_dir():
        return {}
    heads = {p.name: p for p in sorted(BUILTIN_DIR.iterdir()) if (p / "head.json").is_file()}
    heads.update({alias: heads[name] for alias, name in ALIASES.items()
                  if name in heads and alias not in heads})
    return dict(sorted(heads.items()))


def default_head_name(backbone: str) -> str:
    """The head ``scan`` uses for ``backbone`` when no ``--head`` is given."""
    names = builtin_heads()
    for candidate in (f"{backbone}-default", ALIASES["default"] if backbone == "yamnet" else None,
                      "audioset" if backbone == "yamnet" else None):
        if candidate and candidate in names:
            return candidate
    raise ScannerError(f"no built-in head for backbone {backbone!r}; train one with "
                       f"'scanner train DATA_DIR --backbone {backbone} -o HEAD' and pass --head HEAD")


def load_head(spec: str | Path | None, *, backbone: str = "yamnet") -> Head:
    """Loads a head: None -> the backbone's default, a built-in name, or a head folder path."""
    if spec is None:
        spec = default_head_name(backbone)
    path = builtin_heads().get(str(spec)) or Path(spec).expanduser()
    meta_file = path / "head.json"
    if not meta_file.is_file():
        known = ", ".join(builtin_heads()) or "none"
        raise ScannerError(f"head {str(spec)!r} is neither a built-in head ({known}) "
                           f"nor a folder with head.json")
    from scanner.heads.checks import check_kind, read_head_json

    kind = check_kind(read_head_json(meta_file), meta_file, HEADS.names())
    head = HEADS.get(kind).load(path)
    head.sha256 = folder_sha256(path)
    return head


def renamed_head(entry: dict[str, object]) -> dict[str, object] | None:
    """A table fingerprint's head entry as the head is called now, when it names a built-in
    head under its former name and identity (:data:`RENAMED`); None otherwise."""
    name = RENAMED.get((str(entry.get("name")), str(entry.get("sha256"))))
    if name is None:
        return None
    head = load_head(name)
    return {**entry, "name": head.name, "sha256": head.sha256}


def folder_sha256(folder: Path) -> str:
    """One SHA-256 over a head folder's ``head.json`` and weight files, those of its member
    sub-folders (an ensemble's) included: the head's identity."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        if file.name == "head.json" or file.suffix in (".safetensors", ".npz"):
            digest.update(file.relative_to(folder).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


__all__ = ["HEADS", "Head", "builtin_heads", "default_head_name", "load_head", "register_head",
           "renamed_head"]
