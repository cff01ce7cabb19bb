"""Malformed or unusable heads are refused at load with one line, and the scan exits 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from scanner.cli import EXIT_LOAD_FAILED, cli
from scanner.errors import HeadError
from scanner.heads import load_head
from scanner.testing import sine, write_audio


def _edit_json(head: Path, change) -> None:
    meta = json.loads((head / "head.json").read_text())
    meta = change(meta)
    (head / "head.json").write_text(json.dumps(meta))


def _edit_tensors(head: Path, change) -> None:
    tensors = dict(load_file(str(head / "weights.safetensors")))
    change(tensors)
    save_file(tensors, str(head / "weights.safetensors"))


def _set(key, value):
    def change(meta):
        meta[key] = value
        return meta
    return change


def _drop(key):
    def change(meta):
        del meta[key]
        return meta
    return change


def _tensor(name, value=None, *, drop=False):
    def change(tensors):
        if drop:
            del tensors[name]
        else:
            tensors[name] = value(tensors)
    return change


def _poison(name, index, value):
    def change(tensors):
        t = tensors[name].copy()
        t.flat[index] = value
        tensors[name] = t
    return change


# (what is wrong, how to break the head, words the one line must hold)
BROKEN = [
    ("head.json is a list", lambda h: (h / "head.json").write_text("[1, 2]"), "not a list"),
    ("head.json is not JSON", lambda h: (h / "head.json").write_text("{nope"), "not valid JSON"),
    ("unknown kind", lambda h: _edit_json(h, _set("kind", "transformer")),
     "unknown head kind 'transformer'"),
    ("missing classes", lambda h: _edit_json(h, _drop("classes")), "names no classes"),
    ("duplicate classes", lambda h: _edit_json(h, _set("classes", ["cry", "cry", "x"])),
     "more than once: cry"),
    ("missing input.std", lambda h: _edit_tensors(h, _tensor("input.std", drop=True)),
     "no 'input.std' tensor"),
    ("mean of the wrong shape", lambda h: _edit_tensors(
        h, _tensor("input.mean", lambda t: np.zeros(7, np.float32))), "input.mean has shape [7]"),
    ("an extra weight tensor", lambda h: _edit_tensors(
        h, _tensor("layer9.weight", lambda t: np.zeros((3, 8), np.float32))),
     "layer9.weight and layer9.bias must both be there"),
    ("an unknown tensor", lambda h: _edit_tensors(
        h, _tensor("bonus", lambda t: np.zeros(3, np.float32))), "does not use: bonus"),
    ("missing weights file", lambda h: (h / "weights.safetensors").unlink(),
     "weights.safetensors is missing"),
    ("NaN weight", lambda h: _edit_tensors(h, _poison("layer0.weight", 5, np.nan)),
     "layer0.weight holds 1 non-finite value"),
    ("infinite bias", lambda h: _edit_tensors(h, _poison("layer1.bias", 0, np.inf)),
     "layer1.bias holds 1 non-finite value"),
    ("infinite mean", lambda h: _edit_tensors(h, _poison("input.mean", 2, -np.inf)),
     "input.mean holds 1 non-finite value"),
    ("zero std", lambda h: _edit_tensors(h, _poison("input.std", 3, 0.0)),
     "input.std has 1 value(s) <= 0"),
    ("last layer and classes disagree", lambda h: _edit_json(h, _set("classes", ["a", "b"])),
     "the last layer gives 3 outputs for 2 classes"),
]


@pytest.mark.parametrize("what,breaks,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_head_is_refused_at_load(fake_head, what, breaks, words):
    load_head(fake_head)  # sound before it is broken
    breaks(fake_head)
    with pytest.raises(HeadError) as e:
        load_head(fake_head)
    assert words in str(e.value)
    assert "None" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("what,breaks,words",
                         [b for b in BROKEN if b[0] in ("head.json is a list", "zero std",
                                                        "NaN weight", "missing weights file")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_scan_with_a_broken_head_exits_3_with_one_line(tmp_path, fake_head, what, breaks,
                                                       words):
    write_audio(tmp_path / "in" / "a.wav", sine(440, 1.0, 16000), 16000)
    breaks(fake_head)
    result = CliRunner().invoke(cli, ["scan", str(tmp_path / "in"), "-o",
                                      str(tmp_path / "r.parquet"), "--backbone", "fake",
                                      "--head", str(fake_head), "--workers", "0"])
    assert result.exit_code == EXIT_LOAD_FAILED, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.parquet").exists()


def test_the_builtin_heads_pass_the_checks():
    from scanner.heads import builtin_heads

    for name in builtin_heads():
        assert load_head(name).classes
