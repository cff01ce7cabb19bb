"""``scanner calibrate``: per-class P(true | score) and precision thresholds from review verdicts.

For each class, the verdicts on items labelled with it give pairs (score, true?) — ``yes``
is true; ``no`` and ``other`` are false — each weighted by the number of items it stands
for (``weight``: ``review --select sample`` draws a fixed number per score bin, so a
verdict of a crowded bin stands for more items). Then:

- ``P(true | score)`` is a weighted isotonic regression (monotone in the score), recorded
  as a curve on a grid of scores;
- the threshold is the lowest score at which the weighted precision of the items at or
  above it, discounted to its one-sided Wilson lower bound (``confidence``, on the
  effective number of verdicts), still reaches ``target_precision``: with few verdicts
  the threshold rises, so it holds on items that were not reviewed.

Both go into the head's ``head.json``: ``thresholds`` (what ``scan --segments`` uses for
events) and a ``calibration_from_verdicts`` block with the curve, counts and the previous
thresholds. The head is copied to a new folder, or changed in place with a backup of the
original ``head.json``; a file this tool did not write is never overwritten.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.errors import ConfigError
from training.verdicts import BACKGROUND, Verdict, read_verdicts

log = logging.getLogger(__name__)

BLOCK = "calibration_from_verdicts"
HEAD_JSON = "head.json"
BACKUP = "head.json.before-calibration"
CURVE_POINTS = 21
MIN_VERDICTS = 5


@dataclass(frozen=True)
class ClassCalibration:
    """One class's result.

    Attributes:
        threshold: The lowest score reaching the target (None: no score does).
        precision: Weighted precision of the verdicted items at or above ``threshold``.
        precision_lower_bound: Its Wilson lower bound at the asked confidence.
        recall: Weighted share of the true items at or above ``threshold``.
        curve_scores, curve_p_true: P(true | score) on a grid of scores.
    """

    label: str
    verdicts: int
    true: int
    threshold: float | None
    precision: float | None
    precision_lower_bound: float | None
    recall: float | None
    curve_scores: list[float]
    curve_p_true: list[float]


def wilson_lower(p: NDArray[np.float64], n: NDArray[np.float64], z: float) -> NDArray[np.float64]:
    """One-sided Wilson score lower bound of a proportion ``p`` out of ``n`` (elementwise)."""
    n = np.maximum(n, 1e-12)
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(np.maximum(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return (centre - margin) / (1 + z * z / n)


def precision_threshold(scores: NDArray[np.floating], true: NDArray[np.bool_],
                        weights: NDArray[np.floating], target: float, *, z: float
                        ) -> tuple[float | None, float | None, float | None, float | None]:
    """The lowest score whose items at or above it reach ``target`` precision (lower bound).

    Returns:
        (threshold, precision, lower bound, recall) at it; Nones when no score reaches it.
    """
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], true[order].astype(float), weights[order]
    cum_w, cum_tp, cum_w2 = np.cumsum(w), np.cumsum(w * y), np.cumsum(w * w)
    last = np.r_[s[1:] != s[:-1], True]  # a threshold keeps every item of equal score
    precision = cum_tp / cum_w
    n_eff = cum_w ** 2 / cum_w2
    lower = wilson_lower(precision, n_eff, z)
    ok = np.flatnonzero(last & (lower >= target))
    if ok.size == 0:
        return None, None, None, None
    i = ok[-1]
    total_tp = cum_tp[-1]
    recall = float(cum_tp[i] / total_tp) if total_tp > 0 else None
    return float(s[i]), float(precision[i]), float(lower[i]), recall


def p_true_curve(scores: NDArray[np.floating], true: NDArray[np.bool_],
                 weights: NDArray[np.floating]) -> tuple[list[float], list[float]]:
    """P(true | score) by weighted isotonic regression, on :data:`CURVE_POINTS` scores."""
    from sklearn.isotonic import IsotonicRegression

    grid = np.linspace(0.0, 1.0, CURVE_POINTS)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(scores, true.astype(float), sample_weight=weights)
    return [round(float(g), 4) for g in grid], [round(float(p), 4) for p in iso.predict(grid)]


def calibrate(verdicts: Sequence[Verdict], *, target_precision: float, confidence: float = 0.95,
              background: str = BACKGROUND, labels: Sequence[str] = ()) -> dict[str, ClassCalibration]:
    """Each class's P(true | score) and precision threshold (see the module docstring).

    Raises:
        ConfigError: A bad target or confidence, or no class with enough scored verdicts.
    """
    from statistics import NormalDist

    if not 0 < target_precision < 1:
        raise ConfigError(f"--target-precision must be in (0, 1), got {target_precision}")
    if not 0.5 <= confidence < 1:
        raise ConfigError(f"--confidence must be in [0.5, 1), got {confidence}")
    z = NormalDist().inv_cdf(confidence)
    used = [v for v in verdicts if v.verdict != "skip" and v.score is not None
            and math.isfinite(v.score) and v.label != background]
    targets = list(labels) or sorted({v.label for v in used})
    out = {}
    for c in targets:
        mine = [v for v in used if v.label == c]
        if len(mine) < MIN_VERDICTS:
            log.warning("%s: %d scored verdicts, fewer than %d: not calibrated", c, len(mine),
                        MIN_VERDICTS)
            continue
        s = np.array([v.score for v in mine], float)
        y = np.array([v.true_label(background) == c for v in mine])
        w = np.array([v.weight for v in mine], float)
        t, prec, lower, recall = precision_threshold(s, y, w, target_precision, z=z)
        grid, curve = p_true_curve(s, y, w)
        out[c] = ClassCalibration(c, len(mine), int(y.sum()), t, prec, lower, recall, grid, curve)
        if t is None:
            log.warning("%s: no score reaches precision %.2f on these verdicts", c, target_precision)
    if not out:
        raise ConfigError("no class has enough scored verdicts to calibrate (review more items, "
                          "e.g. scanner review --select sample)")
    return out


def _is_ours(head_json: Path) -> bool:
    try:
        return BLOCK in json.loads(head_json.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def _target(head_dir: Path, out: Path | None) -> Path:
    """The head.json to write (copying the head to ``out`` first); refuses foreign files."""
    if out is None:
        if not _is_ours(head_dir / HEAD_JSON):
            backup = head_dir / BACKUP
            if backup.exists():
                raise ConfigError(f"{backup} exists and was not written by this run; move it "
                                  "away or calibrate into a copy with -o")
            shutil.copy2(head_dir / HEAD_JSON, backup)
        return head_dir / HEAD_JSON
    out = Path(out).expanduser()
    if out.resolve() == head_dir.resolve():
        return _target(head_dir, None)
    if out.exists() and any(out.iterdir()):
        if not _is_ours(out / HEAD_JSON):
            raise ConfigError(f"{out} is not empty and holds no head calibrated by this tool; "
                              "give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for f in head_dir.iterdir():
        if f.is_file() and f.name != BACKUP:
            shutil.copy2(f, out / f.name)
        elif f.is_dir() and not f.is_symlink():  # an ensemble's member heads
            shutil.copytree(f, out / f.name, symlinks=False, dirs_exist_ok=True)
    return out / HEAD_JSON


def calibrate_head(head: str | os.PathLike[str], verdict_files: Sequence[str | os.PathLike[str]], *,
                   target_precision: float, out: str | os.PathLike[str] | None = None,
                   confidence: float = 0.95, labels: Sequence[str] = ()
                   ) -> tuple[Path, dict[str, ClassCalibration]]:
    """Calibrates a head folder (or a built-in head, into ``out``) from verdicts files.

    Returns:
        The ``head.json`` written and each class's calibration.

    Raises:
        ConfigError: A built-in head without ``out``, a foreign output, or unusable verdicts.
    """
    from scanner import __version__
    from scanner.heads import builtin_heads, load_head

    builtin = builtin_heads().get(str(head))
    head_dir = builtin or Path(head).expanduser()
    if builtin is not None and out is None:
        raise ConfigError(f"{head!r} is a built-in head: calibrate it into a copy with -o FOLDER")
    loaded = load_head(str(head_dir))
    meta = json.loads((head_dir / HEAD_JSON).read_text())
    verdicts = [v for f in verdict_files for v in read_verdicts(f)]
    heads_seen = {v.head for v in verdicts if v.head}
    if heads_seen and loaded.name not in {h for hs in heads_seen for h in hs.split("+")}:
        log.warning("the verdicts score items with head(s) %s, not %r: the thresholds are only "
                    "right for the head whose scores were reviewed", sorted(heads_seen), loaded.name)
    unknown = sorted({lab for lab in labels if lab not in loaded.classes})
    if unknown:
        raise ConfigError(f"unknown class(es) {unknown}; the head's classes are {list(loaded.classes)}")
    result = calibrate(verdicts, target_precision=target_precision, confidence=confidence,
                       labels=labels)
    previous = dict(meta.get("thresholds") or {})
    thresholds = dict(previous)
    for c, cal in result.items():
        if cal.threshold is not None and c in loaded.classes:
            thresholds[c] = cal.threshold
    meta["thresholds"] = thresholds
    meta[BLOCK] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool_version": __version__, "verdicts": [str(f) for f in verdict_files],
        "target_precision": target_precision, "confidence": confidence,
        "previous_thresholds": (meta.get(BLOCK) or {}).get("previous_thresholds", previous),
        "classes": {c: asdict(cal) for c, cal in result.items()},
    }
    target = _target(head_dir, Path(out) if out is not None else None)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, target)
    return target, result
