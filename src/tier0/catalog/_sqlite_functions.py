"""Python functions registered on the catalog's SQLite connections, with PostgreSQL's semantics.

The SQLite rewrite in `tier0.catalog._dialect` calls them where SQLite lacks
a function (``starts_with``, ``split_part``, ``concat`` before 3.44) or an
operator (``->`` and ``->>`` become ``t0_json_get`` and ``t0_json_text``).
Each is linear in its input: SQLite's progress handler cannot interrupt a
function call, so none may run long.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final


def starts_with(text: Any, prefix: Any) -> int | None:
    """``starts_with(text, prefix)``: 1 or 0 (the catalog's booleans), NULL if either is."""
    return None if text is None or prefix is None else int(str(text).startswith(str(prefix)))


def split_part(text: Any, delimiter: Any, n: Any) -> str | None:
    """Field ``n`` of ``text`` split on ``delimiter``, counted from 1 (from the end if
    negative); '' past the last field. NULL for n = 0, where PostgreSQL raises."""
    if text is None or delimiter is None or not isinstance(n, int) or n == 0:
        return None
    parts = str(text).split(str(delimiter)) if delimiter != "" else [str(text)]
    index = n - 1 if n > 0 else len(parts) + n  # negative n counts from the end
    return parts[index] if 0 <= index < len(parts) else ""


def concat(*values: Any) -> str:  # SQLite has concat() from 3.44 only
    """The values as text, one after another; NULLs are skipped."""
    return "".join(str(value) for value in values if value is not None)


@lru_cache(maxsize=256)  # one document is read by several operators in turn
def _load_json(text: str) -> Any:
    return json.loads(text)


_MISSING: Final = object()


def _json_step(document: Any, key: Any) -> Any:
    """``document -> key`` as PostgreSQL reads it, or `_MISSING` (SQL NULL)."""
    try:
        value = _load_json(document) if isinstance(document, str) else _MISSING
    except (ValueError, RecursionError):
        return _MISSING
    if isinstance(value, dict) and isinstance(key, str):
        return value.get(key, _MISSING)
    if isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
        return value[key]
    return _MISSING


def json_get(document: Any, key: Any) -> str | None:
    """``document -> key``: the value as JSON text; NULL where there is none."""
    value = _json_step(document, key)
    return None if value is _MISSING else json.dumps(value, ensure_ascii=False)


def json_text(document: Any, key: Any) -> str | None:
    """``document ->> key``: a string as itself, other values as PostgreSQL's jsonb text."""
    value = _json_step(document, key)
    if value is _MISSING or value is None:
        return None
    return value if isinstance(value, str) else _jsonb_text(value)


def _jsonb_text(value: Any) -> str:
    """PostgreSQL's text for a jsonb value: keys shortest first, then bytewise."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: (len(item[0].encode()), item[0].encode()))
        return (
            "{"
            + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_jsonb_text(v)}" for k, v in items)
            + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


#: (name, number of arguments or -1 for any, function), for ``sqlite3.Connection.create_function``.
SQLITE_FUNCTIONS: Final[list[tuple[str, int, Callable[..., Any]]]] = [
    ("starts_with", 2, starts_with), ("split_part", 3, split_part), ("concat", -1, concat),
    ("t0_json_get", 2, json_get), ("t0_json_text", 2, json_text),
]  # fmt: skip
