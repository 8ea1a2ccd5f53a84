"""Trigger filters: a SQL boolean expression over an event and its element, run in Python.

A trigger's filter decides, for every event its bucket, prefix, suffix and
types let through, whether the function runs. Filters are written as SQL
expressions (the language of the rest of tier0) and compiled once, when the
trigger is created, into a Python predicate: evaluating one costs
microseconds, where asking DuckDB would cost most of a millisecond per event.

What a filter may name (`FIELDS`): the event's ``bucket``, ``key``, ``type``,
``version_id``, ``size``, ``etag`` and ``principal``, and the element's
``content_type``, ``metadata['name']`` (user metadata) and ``tags['name']``.
What it may use: comparisons (``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``),
``AND``/``OR``/``NOT``, ``IN (...)``, ``BETWEEN``, ``LIKE`` (``%`` and ``_``),
``IS [NOT] NULL``, parentheses, and string, number, boolean and NULL
literals. Anything else, an unknown name included, is refused with
`InvalidArgument` saying what and what is allowed. SQL's three-valued logic
holds: a comparison with NULL (a missing tag, say) is unknown, and an event
passes only when the filter is true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from tier0.errors import InvalidArgument

FILTER_CHARS_MAX: Final = 4096
#: The names a filter may use, and what each is.
FIELDS: Final = {
    "bucket": "the event's bucket",
    "key": "the element's key",
    "type": "the event type, e.g. 'ObjectCreated:Put'",
    "version_id": "the version the event is about",
    "size": "the element's size in bytes",
    "etag": "the element's ETag",
    "principal": "the id of the principal that made the change",
    "content_type": "the element's Content-Type",
    "metadata": "user metadata, as metadata['name']",
    "tags": "tags, as tags['name']",
}
_MAPS: Final = frozenset({"metadata", "tags"})
_OPERATORS: Final = {"EQ": "=", "NEQ": "<>", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}
_ALLOWED: Final = (
    "comparisons, AND, OR, NOT, IN, BETWEEN, LIKE, IS NULL, and literals over "
    + ", ".join(name if name not in _MAPS else f"{name}['...']" for name in FIELDS)
)

Facts = Mapping[str, Any]
Predicate = Callable[[Facts], bool]
# A compiled expression: facts -> True, False or None (SQL's unknown).
_Value = Callable[[Facts], Any]


def compile_filter(text: str) -> Predicate:
    """``text`` as a predicate over an event's facts; `InvalidArgument` if it is not a
    filter (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("a filter is a non-empty SQL expression, e.g. size > 1000")
    if len(text) > FILTER_CHARS_MAX:
        raise InvalidArgument(f"a filter has at most {FILTER_CHARS_MAX} characters")
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except SqlglotError as error:
        raise InvalidArgument(f"the filter {text!r} does not parse: {error}") from error
    if isinstance(tree, exp.Query) or tree is None:
        raise InvalidArgument(f"the filter {text!r} is an expression, not a query")
    compiled = _compile(tree)
    return lambda facts: compiled(facts) is True


def _compile(node: exp.Expr) -> _Value:
    if isinstance(node, exp.Paren):
        return _compile(node.this)
    if isinstance(node, exp.And | exp.Or):
        return _logic(node)
    if isinstance(node, exp.Not):
        inner = _compile(node.this)
        return lambda facts: _not(inner(facts))
    if isinstance(node, exp.EQ | exp.NEQ | exp.LT | exp.LTE | exp.GT | exp.GTE):
        return _comparison(node)
    if isinstance(node, exp.Is):
        value = _compile(node.this)
        if not isinstance(node.expression, exp.Null):
            raise _refused(node)
        return lambda facts: value(facts) is None
    if isinstance(node, exp.In):
        if node.args.get("query") is not None:
            raise _refused(node)
        value = _compile(node.this)
        options = [_compile(option) for option in node.expressions]
        return lambda facts: _in(value(facts), [option(facts) for option in options])
    if isinstance(node, exp.Between):
        value, low, high = (
            _compile(node.this),
            _compile(node.args["low"]),
            _compile(node.args["high"]),
        )
        return lambda facts: _and(
            _compare(">=", value(facts), low(facts)), _compare("<=", value(facts), high(facts))
        )
    if isinstance(node, exp.Like):
        value, pattern = _compile(node.this), node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise InvalidArgument("LIKE takes a string literal pattern in a filter")
        regex = _like(str(pattern.this))
        return lambda facts: _matches(regex, value(facts))
    if isinstance(node, exp.Literal):
        literal: Any = str(node.this) if node.is_string else _number(str(node.this))
        return lambda facts: literal
    if isinstance(node, exp.Boolean):
        flag = bool(node.this)
        return lambda facts: flag
    if isinstance(node, exp.Null):
        return lambda facts: None
    if isinstance(node, exp.Neg):
        inner = _compile(node.this)
        return lambda facts: None if inner(facts) is None else -inner(facts)
    if isinstance(node, exp.Column) and not node.table:
        return _field(node.name)
    if isinstance(node, exp.Bracket) and isinstance(node.this, exp.Column):
        return _map_entry(node)
    raise _refused(node)


def _field(name: str) -> _Value:
    lowered = name.lower()
    if lowered not in FIELDS or lowered in _MAPS:
        raise InvalidArgument(f"a filter cannot use {name!r}: it may use {_ALLOWED}")
    return lambda facts: facts.get(lowered)


def _map_entry(node: exp.Bracket) -> _Value:
    name = node.this.name.lower()
    entries = node.expressions
    if (
        name not in _MAPS
        or len(entries) != 1
        or not (isinstance(entries[0], exp.Literal) and entries[0].is_string)
    ):
        raise InvalidArgument(
            f"a filter reads user metadata and tags as metadata['name'] and tags['name'],"
            f" not {node.sql('duckdb')}"
        )
    entry = str(entries[0].this)
    if name == "metadata":
        entry = entry.lower()  # S3 user metadata names are case-insensitive

    def value(facts: Facts) -> Any:
        mapping = facts.get(name) or {}
        return mapping.get(entry)

    return value


def _logic(node: exp.And | exp.Or) -> _Value:
    left, right = _compile(node.this), _compile(node.expression)
    if isinstance(node, exp.And):
        return lambda facts: _and(left(facts), right(facts))
    return lambda facts: _or(left(facts), right(facts))


def _comparison(node: exp.Expr) -> _Value:
    operator = _OPERATORS[type(node).__name__]
    left, right = _compile(node.this), _compile(node.expression)
    return lambda facts: _compare(operator, left(facts), right(facts))


def _compare(operator: str, left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    if isinstance(left, str) != isinstance(right, str):
        # '10' = 10: compare as numbers when the text is one, as SQL would cast.
        try:
            left, right = _number(str(left)), _number(str(right))
        except InvalidArgument:
            return False if operator == "=" else True if operator == "<>" else None
    if operator == "=":
        return bool(left == right)
    if operator == "<>":
        return bool(left != right)
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    if operator == ">":
        return bool(left > right)
    return bool(left >= right)


def _in(value: Any, options: list[Any]) -> bool | None:
    if value is None:
        return None
    found = [_compare("=", value, option) for option in options]
    if True in found:
        return True
    return None if None in found else False


def _and(left: bool | None, right: bool | None) -> bool | None:
    if left is False or right is False:
        return False
    return None if left is None or right is None else True


def _or(left: bool | None, right: bool | None) -> bool | None:
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _matches(regex: re.Pattern[str], value: Any) -> bool | None:
    return None if value is None else regex.fullmatch(str(value)) is not None


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError as error:
            raise InvalidArgument(f"{text!r} is not a number") from error


def _refused(node: exp.Expr) -> InvalidArgument:
    return InvalidArgument(f"a filter cannot use {node.sql('duckdb')!r}: it may use {_ALLOWED}")
