"""Trigger filters (``tier0.engine._filters``): SQL expressions compiled to Python.

Each case is checked against DuckDB evaluating the same expression over the
same facts, so the compiled predicate answers as SQL would, NULLs included.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from tier0.engine import compile_filter
from tier0.errors import InvalidArgument

FACTS: dict[str, Any] = {
    "bucket": "docs",
    "key": "raw/2026/report.pdf",
    "type": "ObjectCreated:Put",
    "size": 2_500_000,
    "content_type": "application/pdf",
    "metadata": {"lang": "en", "pages": "12"},
    "tags": {"stage": "raw"},
    "version_id": None,
}

CASES = [
    ("size > 1000000", True),
    ("size > 1000000 AND content_type = 'application/pdf'", True),
    ("size < 1000 OR content_type LIKE 'application/%'", True),
    ("key LIKE 'raw/%.pdf'", True),
    ("key LIKE 'raw/_.pdf'", False),
    ("NOT (bucket = 'docs')", False),
    ("bucket IN ('docs', 'logs')", True),
    ("bucket NOT IN ('docs', 'logs')", False),
    ("size BETWEEN 1 AND 3000000", True),
    ("metadata['lang'] = 'en'", True),
    ("metadata['LANG'] = 'en'", True),  # user metadata names are case-insensitive
    ("metadata['pages'] > 10", True),  # text that is a number compares as one
    ("tags['stage'] = 'raw' AND tags['missing'] IS NULL", True),
    ("tags['missing'] = 'x'", False),  # unknown: not true
    ("NOT (tags['missing'] = 'x')", False),  # still unknown
    ("tags['missing'] = 'x' OR size > 0", True),
    ("version_id IS NULL", True),
    ("version_id IS NOT NULL", False),
    ("size > 1000000 AND (type = 'ObjectCreated:Put' OR type = 'ObjectCreated:Copy')", True),
    ("size = -1", False),
    ("true", True),
]


def _duckdb(expression: str) -> bool:
    """The same expression evaluated by DuckDB over FACTS as a one-row table."""
    columns = {k: v for k, v in FACTS.items() if k not in ("metadata", "tags")}
    select = ", ".join(f"{duckdb_literal(value)} AS {name}" for name, value in columns.items())
    maps = ", ".join(
        f"MAP {{{', '.join(f'{duckdb_literal(k)}: {duckdb_literal(v)}' for k, v in FACTS[m].items())}}} AS {m}"
        for m in ("metadata", "tags")
    )
    sql = f"SELECT coalesce(({expression}), false) FROM (SELECT {select}, {maps})"
    return bool(duckdb.sql(sql).fetchall()[0][0])


def duckdb_literal(value: Any) -> str:
    if value is None:
        return "NULL::VARCHAR"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_a_filter_answers_as_sql_would(expression: str, expected: bool) -> None:
    assert compile_filter(expression)(FACTS) is expected
    if "LANG" not in expression and "pages" not in expression:
        # DuckDB's maps are case-sensitive and hold text: those two are tier0's rules.
        assert _duckdb(expression) is expected


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("", "non-empty"),
        ("size >", "does not parse"),
        ("SELECT 1", "not a query"),
        ("owner = 'x'", "cannot use 'owner'"),
        ("lower(key) = 'x'", "cannot use"),
        ("metadata = 'x'", "cannot use 'metadata'"),
        ("metadata[1] = 'x'", r"as metadata\['name'\]"),
        ("size IN (SELECT 1)", "cannot use"),
        ("key LIKE key", "string literal"),
        ("t.size > 1", "cannot use"),
    ],
)
def test_a_bad_filter_is_refused_saying_why(expression: str, complaint: str) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        compile_filter(expression)
