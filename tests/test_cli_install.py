"""The lean core install: a TFLite scan with TensorFlow and torch blocked, and the extras' messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner.extras import MissingExtraError, require
from scanner.testing import noise, sine, write_audio

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "tensorflow_hub", "tf_keras", "keras", "torch", "torchaudio",
           "transformers")

# Loaded by every Python process started with this folder on PYTHONPATH (the decode workers
# too): importing a blocked package fails as if it were not installed.
SITECUSTOMIZE = f'''
import importlib.abc
import sys

BLOCKED = {BLOCKED!r}


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


@pytest.fixture()
def core_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that sees neither TensorFlow nor torch."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    for name in ("torch", "tensorflow"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], env=env,
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "blocked" in proc.stderr, proc.stderr
    return env


def _scanner(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scanner", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_tflite_scan_runs_without_tensorflow_or_torch(tmp_path, model_dir, core_env):
    folder = tmp_path / "audio"
    write_audio(folder / "tone.wav", sine(440, 2.0, 16000), 16000)
    write_audio(folder / "sub" / "noise.flac", noise(3.0, 22050), 22050)
    write_audio(folder / "sub" / "low.ogg", sine(300, 1.5, 8000), 8000)
    out = tmp_path / "r.parquet"
    code = ("import sys, runpy\n"
            "sys.argv = ['scanner', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('scanner', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            f"heavy = sorted(m for m in sys.modules if m.partition('.')[0] in {BLOCKED!r})\n"
            "print('heavy:', heavy)\nsys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", code, "scan", str(folder), "-o", str(out),
                           "--workers", "1", "--segments"],
                          cwd=ROOT, env={**core_env, "SCANNER_MODEL_DIR": str(model_dir)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout
    rows = pq.read_table(out).to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert {r["backbone"] for r in rows} == {"yamnet"}
    assert "3 files (3 ok, 0 errors)" in proc.stderr


def test_paths_that_need_an_extra_name_it(tmp_path, core_env):
    folder = tmp_path / "audio"
    write_audio(folder / "tone.wav", sine(440, 1.0, 16000), 16000)
    out = str(tmp_path / "r.parquet")
    w2v = _scanner(["scan", str(folder), "-o", out, "--backbone", "wav2vec2"], core_env)
    assert w2v.returncode == 3, w2v.stderr
    assert "pip install 'cry-scream-scanner[wav2vec2]'" in w2v.stderr
    assert "Traceback" not in w2v.stderr

    env = {k: v for k, v in core_env.items() if k not in ("SCANNER_MODEL_DIR", "SCANNER_OFFLINE")}
    hub = _scanner(["scan", str(folder), "-o", out], env)
    assert hub.returncode == 3, hub.stderr
    assert "no YAMNet model found" in hub.stderr
    assert "pip install 'cry-scream-scanner[tf]'" in hub.stderr

    train = _scanner(["train", str(folder), "-o", str(tmp_path / "head")], core_env)
    assert train.returncode == 3, train.stderr
    assert "pip install 'cry-scream-scanner[train]'" in train.stderr
    assert "Traceback" not in train.stderr


def test_require_imports_or_names_the_extra():
    assert require("json", "tf").dumps([1]) == "[1]"
    with pytest.raises(MissingExtraError, match=r"pip install 'cry-scream-scanner\[ray\]'"):
        require("no_such_module_for_scanner_tests", "ray")


def test_pyproject_core_leaves_the_frameworks_to_extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for heavy in ("tensorflow", "torch", "transformers", "ray"):
        assert heavy not in core, heavy
    assert "ai-edge-litert" in core
    extras = project["optional-dependencies"]
    assert {"tf", "wav2vec2", "train", "ray", "review", "all", "dev"} <= set(extras)
    assert any("[all]" in d for d in extras["dev"])
    assert all(f"{name}" in extras["all"][0] for name in ("tf", "wav2vec2", "train", "ray", "review"))


def _imported_modules(folder: Path) -> set[str]:
    import ast

    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.partition(".")[0])
    return found


def test_every_imported_package_is_declared():
    import importlib.metadata as md
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project["optional-dependencies"].values() for r in extra)]

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {canonical(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requirements}
    dists = md.packages_distributions()
    modules = (_imported_modules(ROOT / "scanner") | _imported_modules(ROOT / "training")) \
        - set(sys.stdlib_module_names) - {"scanner", "training", "__future__"}
    undeclared = {m: dists.get(m) for m in modules
                  if not any(canonical(d) in declared for d in dists.get(m, []))}
    assert not undeclared, f"imported but not in pyproject.toml: {undeclared}"
