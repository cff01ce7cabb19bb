"""Escaping text that came from the outside (file names, class names) for where it is written.

Every output of the tool may carry a name it did not choose: a recording called
``=HYPERLINK(...).wav``, a training folder called ``<img onerror=...>``, a file name with an
ANSI escape sequence or a tab in it. One function per destination:

- :func:`neutralise_csv_cell` / :func:`neutralise_csv_table`: CSV formula injection. A cell
  that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a
  single quote, as OWASP recommends ("CSV Injection"), so a spreadsheet shows it as text
  instead of running it. Only text cells are touched; numbers stay numbers. The cost: such a
  cell reads back with the quote (Parquet and JSON outputs keep the raw text).
- :func:`escape_markdown`: Markdown (and the HTML that Markdown lets through).
- :func:`escape_terminal`: terminal and log lines (control characters as ``\\x1b``-style
  escapes, like ``repr``).
- :func:`escape_tsv`: one field of a tab-separated table (Raven, Audacity).
- :func:`escape_mathtext`: text handed to matplotlib, which would parse ``$...$`` as math.

HTML pages are rendered by Jinja2 with autoescaping, which needs no helper here.
"""

from __future__ import annotations

import re
from typing import Any

# OWASP's list: the four formula triggers, plus tab and carriage return, which some
# spreadsheets strip before looking for them.
CSV_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CSV_NEUTRALISER = "'"

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()|~$])")
# Markup only where a line starts: headings, lists, quotes, ordered lists ("1.").
_MD_LEADING = re.compile(r"^(?:[#+\-=!]|\d+(?=[.)]))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise_csv_cell(text: str) -> str:
    """``text`` made safe for a spreadsheet: a leading formula trigger gets a ``'`` before it."""
    return CSV_NEUTRALISER + text if text.startswith(CSV_FORMULA_TRIGGERS) else text


def neutralise_csv_value(value: Any) -> Any:
    """Like :func:`neutralise_csv_cell` for a string; any other value is returned as is."""
    return neutralise_csv_cell(value) if isinstance(value, str) else value


def neutralise_csv_table(table: Any) -> Any:
    """A copy of a pyarrow ``table`` whose text columns are neutralised for CSV.

    String, large-string and dictionary-of-string columns are rewritten with vectorised
    pyarrow compute (no Python loop over rows); other columns, and the schema's metadata,
    are kept as they are.

    Args:
        table: A ``pyarrow.Table`` about to be written as CSV.

    Returns:
        A ``pyarrow.Table`` with the same schema.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    pattern = "^[" + re.escape("".join(CSV_FORMULA_TRIGGERS)) + "]"
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        value_type = kind.value_type if pa.types.is_dictionary(kind) else kind
        if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
            columns.append(column)
            continue
        plain = column.cast(value_type) if pa.types.is_dictionary(kind) else column
        hit = pc.match_substring_regex(plain, pattern)
        fixed = pc.if_else(hit, pc.binary_join_element_wise(
            pa.scalar(CSV_NEUTRALISER, value_type), plain, pa.scalar("", value_type)), plain)
        columns.append(fixed.cast(kind) if pa.types.is_dictionary(kind) else fixed)
    return pa.Table.from_arrays(columns, schema=table.schema)


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown: punctuation backslash-escaped, ``<``/``>``/``&`` as entities.

    Safe inside a table cell (``|`` and newlines are escaped too), so a path such as
    ``<script>x</script>|*a*.wav`` shows as itself and runs nothing.
    """
    text = escape_terminal(text)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_LEADING.sub(_escape_leading, text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_leading(match: re.Match[str]) -> str:
    found = match.group()
    return found + "\\" if found[0].isdigit() else "\\" + found


def escape_terminal(text: str) -> str:
    """``text`` with control characters (ANSI escapes, ``\\r``, bidi overrides) shown as escapes.

    Printable text, including non-ASCII letters, is kept; each control character becomes
    what ``repr`` would write (``\\x1b``, ``\\r``, ``\\u202e``), and a backslash stays single.
    """
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def escape_tsv(text: str) -> str:
    """One field of a tab-separated table: tab, newline, carriage return and ``\\`` escaped.

    The backslash is doubled first, so the escape can be undone (:func:`unescape_tsv`).
    """
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def unescape_tsv(text: str) -> str:
    """The inverse of :func:`escape_tsv`."""
    table = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
    return re.sub(r"\\([\\tnr])", lambda m: table[m.group(1)], text)


def escape_mathtext(text: str) -> str:
    """Text for a matplotlib label: ``$`` escaped, so it is never parsed as mathtext.

    Prefer ``parse_math=False`` (or the ``text.parse_math`` rcParam) where the call allows it.
    """
    return text.replace("$", r"\$")
