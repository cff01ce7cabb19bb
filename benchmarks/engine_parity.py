"""Do both engines (and an earlier checkout) give the same tables? Issue 12's checks.

Scans a folder with the local engine and with Ray, both with ``--segments`` and ``--cache``,
and compares every table: file rows (probabilities to the last bit, or within ``--atol``),
events, segments and the embedding cache's entries. With ``--before TABLE`` it also compares
the whole-file probabilities with a table an earlier checkout wrote (``prob_<class>`` there,
``mean_prob_<class>`` now)::

    python benchmarks/mixed_folder.py ../shared/datasets/cry-scream /tmp/mixed60 --per-label 20
    SCANNER_MODEL_DIR=../shared/models python benchmarks/engine_parity.py /tmp/mixed60 \\
        --out benchmarks/results/engine_parity.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

TIMING = ("seconds_taken",)


def _rows(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    return table.drop_columns([c for c in TIMING if c in table.column_names]).to_pylist()


def _key(row: dict[str, Any]) -> tuple:
    return (row["path"], row.get("start_s"), row.get("label"))


def compare_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows matched by path (and start and label, for events and windows): how many differ
    outside float columns, and the largest float gap."""
    by_key = {_key(r): r for r in b}
    worst, other = 0.0, []
    for row in a:
        twin = by_key.get(_key(row))
        if twin is None:
            other.append((row["path"], "missing"))
            continue
        for key, value in row.items():
            other_value = twin.get(key)
            if isinstance(value, float) and isinstance(other_value, float):
                worst = max(worst, abs(value - other_value))
            elif value != other_value:
                other.append((row["path"], key))
    return {"rows": len(a), "rows_other": len(b), "max_abs_float_diff": worst,
            "non_float_differences": other[:20], "n_non_float_differences": len(other)}


def compare_cache(a: Path, b: Path) -> dict[str, Any]:
    """The two caches' entries: the same names, and the largest difference of their arrays."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.npz"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*.npz"))
    worst = 0.0
    for rel in set(files_a) & set(files_b):
        with np.load(a / rel, allow_pickle=False) as x, np.load(b / rel, allow_pickle=False) as y:
            for key in x.files:
                worst = max(worst, float(np.max(np.abs(x[key] - y[key]))) if x[key].size else 0.0)
    return {"entries": len(files_a), "entries_other": len(files_b),
            "same_names": files_a == files_b, "max_abs_diff": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--before", type=Path, help="a table an earlier checkout wrote")
    parser.add_argument("--out", type=Path, help="write the comparison as JSON here")
    args = parser.parse_args()

    from scanner.config import ScanConfig
    from scanner.engines.driver import scan
    from scanner.engines.ray_engine import RayEngine

    report: dict[str, Any] = {"folder": str(args.folder)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        outs = {}
        for name, engine in (("local", None), ("ray", RayEngine())):
            config = ScanConfig(segments=True, cache=True, cache_dir=str(tmp_path / f"cache-{name}"))
            out = tmp_path / f"{name}.parquet"
            summary = scan([args.folder], out, config, engine=engine)
            report[f"{name}_summary"] = {"files": summary.files, "ok": summary.ok,
                                         "errors": summary.errors, "events": summary.events}
            outs[name] = out
        for kind in ("", ".events", ".segments"):
            a = outs["local"].with_name(f"local{kind}.parquet")
            b = outs["ray"].with_name(f"ray{kind}.parquet")
            report[f"ray_vs_local{kind or '.files'}"] = compare_rows(_rows(b), _rows(a))
        report["cache"] = compare_cache(tmp_path / "cache-local", tmp_path / "cache-ray")
        if args.before:
            before = {r["path"]: r for r in _rows(args.before)}
            now = _rows(outs["local"])
            classes = [c[len("mean_prob_"):] for c in now[0] if c.startswith("mean_prob_")]
            gaps = [abs(r[f"mean_prob_{c}"] - before[r["path"]][f"prob_{c}"])
                    for r in now if r["status"] == "ok" and r["path"] in before for c in classes]
            report["mean_prob_vs_before"] = {
                "files": len(now), "files_before": len(before),
                "compared_values": len(gaps), "max_abs_diff": max(gaps, default=None),
                "status_differences": sum(r["status"] != before[r["path"]]["status"]
                                          for r in now if r["path"] in before)}
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
