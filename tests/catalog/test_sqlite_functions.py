"""The Python functions that give SQLite PostgreSQL's string and JSON functions.

Through the catalog, each answer is checked on both engines; called directly,
the edge cases SQL reaches only with effort.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.catalog.dataset import OBJECTS, first_column
from tier0.catalog import Catalog
from tier0.catalog._sqlite_functions import (
    SQLITE_FUNCTIONS,
    concat,
    json_get,
    json_text,
    split_part,
    starts_with,
)
from tier0.meta import MetaBackend


def test_string_functions_follow_postgresql(catalog: Catalog) -> None:
    result = catalog.query(
        "SELECT starts_with(key, 'photos/'), split_part(key, '/', 1), split_part(key, '/', -1),"
        " lower(key), length(key) FROM objects WHERE key = 'Logs/UPPER.txt'"
    )
    assert result.rows == [(0, "Logs", "UPPER.txt", "logs/upper.txt", 14)]
    assert result.columns == ["starts_with", "split_part", "split_part", "lower", "length"]


def test_json_fields_compare_as_text_and_return_decoded(catalog: Catalog) -> None:
    alice = catalog.query("SELECT key FROM objects WHERE metadata->>'owner' = 'alice' ORDER BY key")
    assert first_column(alice) == sorted(
        v.key for v in OBJECTS if v.metadata.get("owner") == "alice"
    )
    assert first_column(catalog.query("SELECT key FROM objects WHERE metadata->>'n' = '5'")) == [
        "logs/2024/01/app-05.log"
    ]
    result = catalog.query(
        "SELECT metadata, tags->>'k', metadata->'flag', metadata->>'flag', metadata->'dims',"
        " metadata->>'missing' FROM objects WHERE key = 'photos/cat-02.jpg'"
    )
    dims = {"w": 2, "h": [1, 2]}
    assert result.rows == [
        ({"owner": "carol", "flag": True, "dims": dims}, "cat", True, "true", dims, None)
    ]


# --- called directly --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, delimiter, n, expected",
    [
        ("a/b/c", "/", 1, "a"),
        ("a/b/c", "/", 3, "c"),
        ("a/b/c", "/", 4, ""),  # past the last field
        ("a/b/c", "/", -1, "c"),  # from the end
        ("a/b/c", "/", -3, "a"),
        ("a/b/c", "/", -4, ""),
        ("a//c", "/", 2, ""),
        ("a::b", "::", 2, "b"),
        ("abc", "", 1, "abc"),  # an empty delimiter splits nothing
        ("abc", "", 2, ""),
        ("a/b", "/", 0, None),  # PostgreSQL raises; SQLite answers NULL
        (None, "/", 1, None),
        ("a/b", None, 1, None),
        ("a/b", "/", None, None),
    ],
)
def test_split_part_counts_fields_from_either_end(
    text: str | None, delimiter: str | None, n: int | None, expected: str | None
) -> None:
    assert split_part(text, delimiter, n) == expected


def test_starts_with_and_concat_treat_null_as_postgresql_does() -> None:
    assert (starts_with("photos/x", "photos/"), starts_with("photos/x", "logs/")) == (1, 0)
    assert starts_with("x", "") == 1
    assert (starts_with(None, "x"), starts_with("x", None)) == (None, None)
    assert concat("a", None, 1, 2.5, "") == "a12.5"
    assert concat() == "" and concat(None) == ""


DOCUMENT = '{"b": 1, "aa": {"y": [1, null], "x": true}, "a": "text", "n": null, "l": [10, 20]}'


@pytest.mark.parametrize(
    "document, key, as_json, as_text",
    [
        (DOCUMENT, "a", '"text"', "text"),
        (DOCUMENT, "b", "1", "1"),
        (DOCUMENT, "n", "null", None),  # JSON null: ->> gives SQL NULL
        (DOCUMENT, "aa", '{"y": [1, null], "x": true}', '{"x": true, "y": [1, null]}'),
        (DOCUMENT, "missing", None, None),
        (DOCUMENT, 1, None, None),  # an index into an object
        ('[10, "x", {"k": 1}]', 0, "10", "10"),
        ('[10, "x", {"k": 1}]', -2, '"x"', "x"),  # from the end
        ('[10, "x", {"k": 1}]', 3, None, None),
        ('[10, "x", {"k": 1}]', "0", None, None),  # a key into an array
        ('{"é": "ü"}', "é", '"ü"', "ü"),
        ("not json", "a", None, None),
        (None, "a", None, None),
        ("[[[[1]]]]", 0, "[[[1]]]", "[[[1]]]"),
    ],
)
def test_json_arrows_read_one_step_as_postgresql_does(
    document: str | None, key: str | int, as_json: str | None, as_text: str | None
) -> None:
    assert json_get(document, key) == as_json
    assert json_text(document, key) == as_text


JSONB_ORDER = '{"o": {"bb": 1, "b": 2, "a": 3, "Z": 4, "é": 5, "ab": {"d": 0, "c": 0}}}'


def test_json_text_orders_object_keys_as_jsonb_does() -> None:
    # jsonb keeps keys shortest first, then by bytes: "é" is two bytes long.
    assert json_text(JSONB_ORDER, "o") == (
        '{"Z": 4, "a": 3, "b": 2, "ab": {"c": 0, "d": 0}, "bb": 1, "é": 5}'
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    "document, key",
    [(JSONB_ORDER, "o"), *((DOCUMENT, key) for key in ("a", "b", "n", "aa", "l", "missing"))],
)
def test_json_arrows_answer_as_postgresql_jsonb(
    postgres_backend: MetaBackend, document: str, key: str
) -> None:
    with postgres_backend.reader() as connection:
        expected = connection.query_one(
            "SELECT (?::jsonb -> ?)::text, ?::jsonb ->> ?", (document, key, document, key)
        )
    as_json, as_text = expected
    # -> is decoded before anyone sees it, so its value counts, not its text; ->> is text.
    assert _decoded(json_get(document, key)) == _decoded(as_json)
    assert json_text(document, key) == as_text


def _decoded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def test_every_function_is_registered_under_its_sql_name() -> None:
    assert {name: (arity, function) for name, arity, function in SQLITE_FUNCTIONS} == {
        "starts_with": (2, starts_with),
        "split_part": (3, split_part),
        "concat": (-1, concat),
        "t0_json_get": (2, json_get),
        "t0_json_text": (2, json_text),
    }
