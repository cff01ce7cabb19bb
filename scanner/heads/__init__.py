"""Head registry and loading: a built-in head by name, or a head folder by path."""

from __future__ import annotations

from pathlib import Path

from scanner.errors import ScannerError
from scanner.heads.base import Head
from scanner.registry import Registry

HEADS: Registry[type[Head]] = Registry("head")
register_head = HEADS.register

from scanner.heads import audioset, context, ensemble, mlp  # noqa: E402,F401

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_heads() -> dict[str, Path]:
    """Built-in head folders shipped in the package, by name (``default``, ``audioset``...)."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUILTIN_DIR.iterdir()) if (p / "head.json").is_file()}


def default_head_name(backbone: str) -> str:
    """The head ``scan`` uses for ``backbone`` when no ``--head`` is given."""
    names = builtin_heads()
    for candidate in (f"{backbone}-default", "default" if backbone == "yamnet" else None,
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


__all__ = ["HEADS", "Head", "builtin_heads", "default_head_name", "load_head", "register_head"]
