"""Escaping outside text for CSV, Markdown, terminals, TSV and matplotlib (scanner/escape.py)."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.escape import (
    escape_markdown,
    escape_mathtext,
    escape_terminal,
    escape_tsv,
    neutralise_csv_cell,
    neutralise_csv_table,
    unescape_tsv,
)

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\").wav", "+1.wav", "-2+3.wav", "@SUM(A1).wav",
           "\tlead-tab.wav", "\rlead-cr.wav"]


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_triggers_get_a_quote(text):
    assert neutralise_csv_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["/data/a.wav", "a=b.wav", "", "'already"])
def test_other_text_is_kept(text):
    assert neutralise_csv_cell(text) == text


def test_table_neutralises_text_columns_only():
    table = pa.table({
        "path": pa.array(HOSTILE + ["/ok.wav", None]),
        "label": pa.array(["=cry"] * 7 + ["cry"]).dictionary_encode(),
        "start_s": pa.array([-1.5] * 8),
        "n": pa.array([-3] * 8, pa.int64()),
    }).replace_schema_metadata({b"scanner": b"{}"})
    out = neutralise_csv_table(table)
    assert out.schema == table.schema and out.schema.metadata == {b"scanner": b"{}"}
    assert out.column("path").to_pylist() == ["'" + t for t in HOSTILE] + ["/ok.wav", None]
    assert out.column("label").to_pylist() == ["'=cry"] * 7 + ["cry"]
    assert out.column("start_s").to_pylist() == [-1.5] * 8
    # what a spreadsheet reads: no cell starts with a trigger
    buf = io.BytesIO()
    pacsv.write_csv(out, buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue().decode())))
    assert not any(r["path"].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows)
    assert [r["path"] for r in rows[:6]] == ["'" + t for t in HOSTILE]


def test_markdown_shows_html_and_markup_as_text():
    md = escape_markdown("<script>alert(1)</script>|*b*_[x](y).wav")
    assert "<" not in md and ">" not in md
    assert "&lt;script&gt;" in md
    assert "\\|" in md and "\\*b\\*" in md and "\\[x\\]\\(y\\)" in md
    assert escape_markdown("<img src=x onerror=alert(1)>").startswith("&lt;img")


def test_markdown_cell_has_no_newline_or_raw_pipe():
    md = escape_markdown("a|b\nc")
    assert "\n" not in md and "|" not in md.replace("\\|", "")


def test_terminal_escapes_control_characters():
    text = "bad\x1b[31mred\x1b[0m\r\u202eevil.wav"
    out = escape_terminal(text)
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert out == "bad\\x1b[31mred\\x1b[0m\\r\\u202eevil.wav"
    assert escape_terminal("café ünï.wav") == "café ünï.wav"


@pytest.mark.parametrize("text", ["a\tb", "line\nbreak\r", "back\\slash\\t", "plain"])
def test_tsv_escape_round_trips_and_has_no_separators(text):
    out = escape_tsv(text)
    assert "\t" not in out and "\n" not in out and "\r" not in out
    assert unescape_tsv(out) == text


def test_mathtext_dollar_is_escaped_and_renders(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().set_title(escape_mathtext("$x^2$ and $$.wav"))
    fig.savefig(tmp_path / "t.png")  # unescaped, "$$" makes mathtext raise
    assert (tmp_path / "t.png").stat().st_size > 0


@pytest.mark.parametrize(("text", "expected"), [
    ("# not a heading", "\\# not a heading"), ("- item", "\\- item"), ("1. first", "1\\. first"),
    ("plain-name.v2.wav", "plain-name.v2.wav"), ("a & b", "a &amp; b"),
])
def test_markdown_line_starts(text, expected):
    assert escape_markdown(text) == expected


@given(st.text())
def test_any_text_round_trips_through_tsv(text):
    out = escape_tsv(text)
    assert not set("\t\n\r") & set(out)
    assert unescape_tsv(out) == text


@given(st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=20))
def test_no_neutralised_cell_starts_a_formula(values):
    table = neutralise_csv_table(pa.table({"t": pa.array(values, pa.string())}))
    for before, after in zip(values, table.column("t").to_pylist(), strict=True):
        assert after == (None if before is None else neutralise_csv_cell(before))
        assert after is None or not after.startswith(("=", "+", "-", "@", "\t", "\r"))


@given(st.text())
def test_terminal_text_has_no_control_characters(text):
    out = escape_terminal(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in out)


@given(st.text())
def test_markdown_text_has_no_tags_pipes_or_newlines(text):
    out = escape_markdown(text)
    assert "<" not in out and ">" not in out and "\n" not in out
    assert "|" not in out.replace("\\|", "")
