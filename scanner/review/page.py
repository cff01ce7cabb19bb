"""``build_review``: a table in, a static review folder out (``index.html``, clips, spectrograms).

The folder opens from disk with no server: ``index.html`` holds its items as JSON (every
text from file names reaches the page only through ``textContent``, and the JSON is
escaped so no name can close its ``<script>``), ``clips/NNNN.flac`` the audio of each item
with its context, ``spectrograms/NNNN.png`` its picture, and ``review.json`` the items and
where they came from. Verdicts live in the browser (localStorage, one key per page) and
are downloaded as ``verdicts.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scanner.errors import ConfigError, ScannerError
from scanner.review.items import BACKGROUND, ReviewItem, Select, load_source, select_items
from scanner.review.media import CONTEXT_S, cut, write_flac, write_spectrogram

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("template.html")
MANIFEST = "review.json"
CLIPS = "clips"
SPECTROGRAMS = "spectrograms"
VERDICT_COLUMNS = ("path", "start_s", "end_s", "label", "verdict", "corrected_label", "score",
                   "weight", "stratum", "query", "head", "reviewed_at")
"""The columns of the page's ``verdicts.csv`` (``verdict``: yes, no, other or skip;
``corrected_label``: the class chosen with "other")."""


@dataclass(frozen=True)
class ReviewResult:
    """What :func:`build_review` wrote."""

    out_dir: Path
    index: Path
    items: int
    clip_errors: int
    source: Path


def script_json(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>``, ``&`` or line separators left raw."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _prepare(out_dir: Path) -> None:
    """Creates ``out_dir``, or empties a review folder this tool wrote; refuses any other."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MANIFEST).is_file():
            raise ConfigError(f"{out_dir} is not empty and is not a review folder; give a new "
                              "or empty folder")
        for sub in (CLIPS, SPECTROGRAMS):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    for sub in (CLIPS, SPECTROGRAMS):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def _finite(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def _card(item: ReviewItem, number: int, out_dir: Path, context_s: float) -> dict[str, Any]:
    name = f"{number:04d}"
    card: dict[str, Any] = {"id": hashlib.sha1(json.dumps(
        [item.path, item.start_s, item.end_s, item.label, item.query]).encode()).hexdigest()[:16],
        **_finite(item.to_dict())}
    try:
        snippet = cut(item.path, item.start_s, item.end_s, context_s=context_s)
        write_flac(snippet, out_dir / CLIPS / f"{name}.flac")
        write_spectrogram(snippet, item.start_s, item.end_s, out_dir / SPECTROGRAMS / f"{name}.png")
    except ScannerError as e:
        log.warning("%s: no snippet: %s", item.path, e)
        card["error"] = str(e)
        return card
    card.update(clip=f"{CLIPS}/{name}.flac", spectrogram=f"{SPECTROGRAMS}/{name}.png",
                clip_start_s=round(snippet.start_s, 3), clip_duration_s=round(snippet.duration_s, 3))
    return card


def build_review(table: str | Path, out_dir: str | Path, *, select: Select = "auto",
                 per_class: int = 20, bins: int = 10, per_bin: int = 5, limit: int = 500,
                 seed: int = 0, context_s: float = CONTEXT_S, labels: tuple[str, ...] = (),
                 background: str = BACKGROUND, progress: bool = False) -> ReviewResult:
    """Writes a review folder for ``table`` (see :mod:`scanner.review.items` for the choice).

    Raises:
        ConfigError: A table that cannot be reviewed, or an ``out_dir`` this tool did not write.
    """
    table = Path(table).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    source = load_source(table, select)
    items = select_items(source, select, per_class=per_class, bins=bins, per_bin=per_bin,
                         limit=limit, seed=seed, background=background, labels=labels)
    _prepare(out_dir)
    iterable: Any = enumerate(items, start=1)
    if progress:
        from tqdm import tqdm

        iterable = tqdm(iterable, total=len(items), unit="item", desc="review")
    cards = [_card(item, number, out_dir, context_s) for number, item in iterable]
    ids = [c["id"] for c in cards]
    data = {
        "page_id": hashlib.sha1(json.dumps([str(source.path), ids]).encode()).hexdigest()[:16],
        "source": str(source.path), "kind": source.kind, "head": source.head,
        "classes": list(source.classes), "background": background,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdict_columns": list(VERDICT_COLUMNS), "items": cards,
    }
    (out_dir / MANIFEST).write_text(json.dumps({"tool": "scanner", **data}, indent=1,
                                               ensure_ascii=False) + "\n")
    page = TEMPLATE.read_text().replace("__REVIEW_DATA__", script_json(data))
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    errors = sum(1 for c in cards if "error" in c)
    return ReviewResult(out_dir, index, len(cards), errors, source.path)
