"""SQL over tables, files and the catalog: parse, check, and bind to what DuckDB reads.

Users write DuckDB's SQL (PostgreSQL-flavoured, as the catalog's). A table
is named ``bucket.table`` (quote names that are not plain identifiers:
``"my-bucket".docs``); a catalog view by its bare name (``objects``,
``versions``, ...); files by ``tier0://bucket/key`` URLs, with globs
(``*`` within a path segment, ``**`` across them, ``?``, ``[...]``), in
DuckDB's readers (``read_parquet``, ``read_csv``, ``read_json``, ...) or
directly as ``FROM 'tier0://bucket/logs/*.parquet'``.

`parse` splits the text into statements and classifies each; `bind`
rewrites a query so that DuckDB sees only what the caller was authorized to
read: each table becomes a subquery over its data files, each catalog view a
subquery over the rows the caller may see, each ``tier0://`` URL the list of
granted files it matched. What reaches outside (DuckDB's own settings,
secrets, other SQL text, internal paths) is refused before anything runs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from tier0.db._files import PROTOCOL
from tier0.errors import SQLNotAllowed, SQLSyntaxError
from tier0.meta import CATALOG_VIEWS

SQL_CHARS_MAX: Final = 1_000_000
STATEMENTS_MAX: Final = 1000
URL_SCHEME: Final = "tier0://"
#: Functions that reach DuckDB's configuration, secrets, environment, or run SQL text.
_FORBIDDEN_FUNCTION: Final = re.compile(
    r"(query|query_table|getenv|current_setting|duckdb_\w*|pragma_\w*|which_secret|"
    r"load_aws_credentials|sql_auto_complete|enable_\w+|disable_\w+|icu_\w+|checkpoint|"
    r"force_checkpoint|read_text|read_blob|glob|parquet_\w+|iceberg_\w+|delta_\w+|\w*_scan|"
    r"sniff_csv|set_\w+|nextval|currval|setseed)",
    re.IGNORECASE,
)
_READ_FUNCTIONS: Final = {
    ".parquet": "read_parquet",
    ".csv": "read_csv",
    ".tsv": "read_csv",
    ".json": "read_json",
    ".jsonl": "read_json",
    ".ndjson": "read_json",
}
_GLOB_CHARS: Final = re.compile(r"[*?\[]")
#: Names in the SQL the DataBase generates over a table's files: the relation an
#: update, delete or search works on, and the file and rowid of each of its rows.
TARGET: Final = "__t0_target"
#: Table functions that search a table (vector, full-text, both), bound by `Binder.search`.
SEARCH_FUNCTIONS: Final = frozenset({"nearest", "text_search", "hybrid_search"})
FILE_COLUMN: Final = "__t0_file"
ROWID_COLUMN: Final = "__t0_rowid"


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Statement:
    """One statement: ``kind`` is query, insert, update, delete, create, alter or drop."""

    kind: str
    tree: exp.Expr
    #: The table a write targets, as (bucket, name); None for a query.
    target: tuple[str, str] | None = None


def parse(sql: str) -> list[Statement]:
    """The statements of ``sql``, checked; `SQLSyntaxError` or `SQLNotAllowed` otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise SQLSyntaxError("the query is empty")
    if len(sql) > SQL_CHARS_MAX:
        raise SQLSyntaxError(f"the query has {len(sql)} characters, more than {SQL_CHARS_MAX}")
    if PROTOCOL in sql.lower():
        raise SQLNotAllowed(f"{PROTOCOL}:// paths are internal: name files as tier0://bucket/key")
    try:
        trees = [tree for tree in sqlglot.parse(sql, read="duckdb") if tree is not None]
    except SqlglotError as error:
        raise SQLSyntaxError(f"the query does not parse: {_parse_problem(error)}") from error
    if not trees:
        raise SQLSyntaxError("the query is empty")
    if len(trees) > STATEMENTS_MAX:
        raise SQLSyntaxError(f"at most {STATEMENTS_MAX} statements at once, not {len(trees)}")
    statements = [_classify(tree) for tree in trees]
    for statement in statements:
        _check_functions(statement.tree)
    return statements


def _parse_problem(error: SqlglotError) -> str:
    """sqlglot's first complaint on one line, with where it was (its own text
    quotes the query across lines, with terminal escapes around the spot)."""
    found = getattr(error, "errors", None)
    if not found:
        return str(error).splitlines()[0]
    first = found[0]
    description = str(first.get("description", "")).split(" for <class")[0]
    if description.startswith("Required keyword"):
        description = "the statement is incomplete"
    near = str(first.get("highlight") or "").strip()
    where = f"line {first.get('line')}, column {first.get('col')}"
    return f"{description} at {where}" + (f", near {near!r}" if near else "")


def _classify(tree: exp.Expr) -> Statement:
    if isinstance(tree, exp.Query):
        return Statement("query", tree)
    if isinstance(tree, exp.Transaction):
        return Statement("begin", tree)
    if isinstance(tree, exp.Commit):
        return Statement("commit", tree)
    if isinstance(tree, exp.Rollback):
        return Statement("rollback", tree)
    if isinstance(tree, exp.Insert):
        if tree.args.get("overwrite") or tree.args.get("conflict") or tree.args.get("returning"):
            raise SQLNotAllowed("INSERT takes no OVERWRITE, ON CONFLICT or RETURNING here")
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        return Statement("insert", tree, table_name(target))
    if isinstance(tree, exp.Update | exp.Delete):
        if tree.args.get("returning") or tree.args.get("from_") or tree.args.get("using"):
            raise SQLNotAllowed(f"{tree.key.upper()} takes no FROM, USING or RETURNING here")
        return Statement(tree.key, tree, table_name(tree.this))
    if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE":
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        return Statement("create", tree, table_name(target))
    if isinstance(tree, exp.Alter) and str(tree.args.get("kind", "")).upper() == "TABLE":
        return Statement("alter", tree, table_name(tree.this))
    if isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "TABLE":
        tables = tree.args.get("tables") or [tree.this]
        if len(tables) != 1:
            raise SQLNotAllowed("DROP TABLE drops one table at a time")
        return Statement("drop", tree, table_name(tables[0]))
    statement = tree.sql("duckdb").split(None, 1)[0].upper() if tree.sql("duckdb") else "?"
    raise SQLNotAllowed(
        f"{statement} statements are not supported: use SELECT, INSERT, UPDATE, DELETE,"
        " CREATE TABLE, ALTER TABLE ADD/DROP COLUMN and DROP TABLE"
    )


def table_name(node: exp.Expr | None) -> tuple[str, str]:
    """(bucket, table) from ``bucket.table``; `SQLSyntaxError` for any other name."""
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise SQLSyntaxError("name the table as bucket.table")
    if not node.args.get("db") and node.name.lower() in CATALOG_VIEWS:
        raise SQLNotAllowed(
            f"{node.name} is a catalog view: read-only, written by the kernel as elements change"
        )
    if node.args.get("catalog") or not node.args.get("db"):
        raise SQLSyntaxError(f"name the table {node.name!r} as bucket.table")
    return str(node.args["db"].this), str(node.this.this)


def _check_functions(tree: exp.Expr) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Func):
            name = node.sql_name() if not isinstance(node, exp.Anonymous) else str(node.this)
            if _FORBIDDEN_FUNCTION.fullmatch(name):
                raise SQLNotAllowed(f"function {name} is not available in tier0 SQL")
        elif isinstance(node, exp.Command | exp.Set | exp.Pragma | exp.Attach | exp.Detach):
            raise SQLNotAllowed("SET, PRAGMA, ATTACH and commands are not available")


# -- binding -------------------------------------------------------------------------------


@dataclass
class Binder:
    """How names become what DuckDB reads; supplied by the database for one caller."""

    #: (bucket, table) → SQL of a subquery over the table's granted files.
    table: Callable[[str, str], str]
    #: catalog view → SQL of a subquery over the rows the caller may see.
    catalog: Callable[[str], str]
    #: tier0:// URL (a glob, maybe) → the granted URLs it matched, at least one.
    files: Callable[[str], list[str]]
    #: A search function's call (``nearest``, ``text_search``, ``hybrid_search``: see
    #: SEARCH_FUNCTIONS), by the function's name → SQL of a subquery over its rows.
    search: Callable[[str, exp.Anonymous], str] | None = None
    #: Names bound to SQL by the caller itself (the table an UPDATE rewrites).
    local: dict[str, str] = field(default_factory=dict)


def bind(tree: exp.Expr, binder: Binder) -> str:
    """``tree`` rewritten for DuckDB (see the module docstring), as SQL text."""
    tree = tree.copy()
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        _bind_table(table, ctes, binder)
    for literal in list(tree.find_all(exp.Literal)):
        if literal.is_string and str(literal.this).startswith(URL_SCHEME):
            urls = binder.files(str(literal.this))
            if len(urls) == 1 and not _GLOB_CHARS.search(str(literal.this)):
                literal.replace(exp.Literal.string(urls[0]))
            else:
                literal.replace(exp.Array(expressions=[exp.Literal.string(u) for u in urls]))
    return tree.sql("duckdb")


def bind_template(sql: str, binder: Binder) -> str:
    """`bind` for a query of ours that embeds user SQL (a predicate, values):
    checked as user SQL is, with ``binder.local`` naming our own relations."""
    statements = parse(sql)
    if len(statements) != 1 or statements[0].kind != "query":
        raise SQLSyntaxError("a predicate or value is one SQL expression")
    return bind(statements[0].tree, binder)


def _bind_table(table: exp.Table, ctes: set[str], binder: Binder) -> None:
    call = table.this
    if isinstance(call, exp.Anonymous) and str(call.this).lower() in SEARCH_FUNCTIONS:
        searching = str(call.this).lower()
        if binder.search is None:
            raise SQLNotAllowed(f"{searching}() is not available here")
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(searching))
        sql = binder.search(searching, call)
        table.replace(exp.Subquery(this=sqlglot.parse_one(sql, read="duckdb"), alias=alias.copy()))
        return
    if not isinstance(call, exp.Identifier):
        return  # a table function: its tier0:// arguments are bound with the literals
    name = str(table.this.this)
    alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(name, quoted=True))
    if name.startswith(URL_SCHEME) and not table.args.get("db"):
        function = _READ_FUNCTIONS.get(_extension(name))
        if function is None:
            raise SQLSyntaxError(
                f"cannot tell how to read {name}: name a reader, e.g. read_csv('{name}')"
            )
        call = exp.Anonymous(this=function, expressions=[exp.Literal.string(name)])
        table.replace(exp.Table(this=call, alias=alias.copy()))
        return
    if table.args.get("catalog"):
        raise SQLSyntaxError(f"{table.sql('duckdb')}: name tables as bucket.table")
    if table.args.get("db"):
        sql = binder.table(str(table.args["db"].this), name)
    elif name in binder.local:
        sql = binder.local[name]
    elif (name.lower() in ctes and not table.this.quoted) or name in ctes:
        return
    elif name.lower() in CATALOG_VIEWS and not table.this.quoted:
        sql = binder.catalog(name.lower())
    else:
        raise SQLSyntaxError(
            f"no table {name!r}: name tables as bucket.table; catalog views are"
            f" {', '.join(CATALOG_VIEWS)}"
        )
    subquery = exp.Subquery(this=sqlglot.parse_one(sql, read="duckdb"), alias=alias.copy())
    table.replace(subquery)


def _extension(url: str) -> str:
    name = url.rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key or key glob) of a ``tier0://bucket/key`` URL."""
    rest = url[len(URL_SCHEME) :]
    bucket, slash, key = rest.partition("/")
    if not bucket or not slash or not key:
        raise SQLSyntaxError(f"{url!r}: file URLs are tier0://bucket/key")
    return bucket, key


def glob_prefix(pattern: str) -> str:
    """The literal part of a key glob before its first wildcard."""
    match = _GLOB_CHARS.search(pattern)
    return pattern if match is None else pattern[: match.start()]


def glob_matches(pattern: str, key: str) -> bool:
    """DuckDB's glob on keys: ``*``/``?``/``[...]`` stay within a segment, ``**`` crosses."""
    if not _GLOB_CHARS.search(pattern):
        return key == pattern
    pattern_parts = pattern.split("/")
    key_parts = key.split("/")
    return _match_parts(pattern_parts, key_parts)


def _match_parts(pattern: list[str], key: list[str]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match_parts(rest, key[index:]) for index in range(len(key) + 1))
    return bool(key) and fnmatch.fnmatchcase(key[0], head) and _match_parts(rest, key[1:])
