"""The catalog's SQL dialect: what a query may say, and how it reaches each engine.

Users write PostgreSQL-flavoured SQL against the catalog views (``objects``,
``versions``, ``prefixes``, ``buckets``, ``events``, ``uploads``, ``principals``,
``audit``). A query is parsed with sqlglot, checked against an allowlist of
the grammar, rewritten for the caller's bucket visibility, and generated for
the backend's engine (`compile_plan`). Read-only holds three times over: the
allowlist admits one SELECT and no function that reaches outside the catalog; every relation must be
a catalog view or one of the query's own CTEs; and the engine refuses writes
anyway (SQLite's ``query_only``, PostgreSQL's ``READ ONLY`` transaction; see
`tier0.catalog._catalog`).

On SQLite, what the engine lacks is spelled with what it has: times through
``strftime``, intervals as date modifiers, ``->``/``->>`` and a few string
functions through the Python functions of `tier0.catalog._sqlite_functions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Final

from sqlglot import TokenType, exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from tier0.errors import SQLNotAllowed, SQLSyntaxError
from tier0.meta import CATALOG_VIEWS

QUERY_CHARS_MAX: Final = 100_000
JSON_COLUMNS: Final = frozenset(
    {"metadata", "tags", "detail", "columns", "spec", "event", "logs", "definition"}
)
_INTEGER_COLUMNS: Final = frozenset(
    {"size", "stored_bytes", "seq", "is_latest", "is_delete_marker"}
)
_ROOT_ONLY: Final = frozenset(
    {"principals", "audit", "triggers", "invocations", "functions", "streams", "pipelines"}
)

#: The dialect's functions, by sqlglot node, with the name PostgreSQL gives their column.
_FUNCTIONS: Final[dict[type[exp.Expr], str]] = {
    exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max",
    exp.GroupConcat: "string_agg", exp.LogicalAnd: "bool_and", exp.LogicalOr: "bool_or",
    exp.Lower: "lower", exp.Upper: "upper", exp.Length: "length", exp.Substring: "substring",
    exp.Replace: "replace", exp.Trim: "trim", exp.StartsWith: "starts_with",
    exp.SplitPart: "split_part", exp.StrPosition: "strpos", exp.Concat: "concat",
    exp.Abs: "abs", exp.Round: "round", exp.Floor: "floor", exp.Ceil: "ceil",
    exp.Coalesce: "coalesce", exp.Nullif: "nullif", exp.Greatest: "greatest", exp.Least: "least",
    exp.Case: "case", exp.Cast: "cast", exp.Exists: "exists", exp.CurrentTimestamp: "now",
    exp.CurrentDate: "current_date", exp.JSONExtract: "->", exp.JSONExtractScalar: "->>",
    exp.RowNumber: "row_number", exp.Rank: "rank", exp.DenseRank: "dense_rank",
    exp.Lag: "lag", exp.Lead: "lead",
}  # fmt: skip
#: The rest of the grammar. Anything else is refused, so a new sqlglot node fails closed.
_NODES: Final = frozenset(_FUNCTIONS) | {
    exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.With, exp.CTE,
    exp.Values, exp.Tuple, exp.From, exp.Join, exp.Where, exp.Group, exp.Having, exp.Order,
    exp.If, exp.Ordered, exp.Limit, exp.Offset, exp.Fetch, exp.LimitOptions, exp.Distinct,
    exp.Window, exp.WindowSpec, exp.Filter, exp.Table, exp.TableAlias, exp.Alias, exp.Column,
    exp.Identifier, exp.Star, exp.Literal, exp.Null, exp.Boolean, exp.Var, exp.DataType,
    exp.DataTypeParam, exp.Interval, exp.Paren, exp.And, exp.Or, exp.Not, exp.Neg, exp.EQ,
    exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.Is,
    exp.In, exp.Between, exp.Like, exp.ILike, exp.Escape, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.Mod, exp.DPipe, exp.JSONPath, exp.JSONPathRoot, exp.JSONPathKey, exp.JSONPathSubscript,
}  # fmt: skip
_WRITES: Final = (
    exp.DML, exp.DDL, exp.Command, exp.Into, exp.Lock, exp.Pragma, exp.Set, exp.Transaction,
    exp.Commit, exp.Rollback, exp.Copy, exp.Attach, exp.Detach,
)  # fmt: skip
#: The first words of every statement but a query, on either engine.
_STATEMENTS: Final = frozenset((
    "ABORT", "ALTER", "ANALYZE", "ATTACH", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER",
    "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DETACH", "DISCARD",
    "DO", "DROP", "END", "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN",
    "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY", "PRAGMA", "PREPARE", "REASSIGN", "REFRESH",
    "REINDEX", "RELEASE", "REPLACE", "RESET", "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SET",
    "SHOW", "START", "TABLE", "TRUNCATE", "UNLISTEN", "UPDATE", "UPSERT", "VACUUM", "VALUES",
))  # fmt: skip
#: Functions that reach the server or the filesystem, or run SQL text of their own.
_SYSTEM_FUNCTION: Final = re.compile(
    r"pg_|sqlite_|lo_|dblink|txid_|load_extension|readfile|writefile|edit$|fts3_|set_config|"
    r"current_setting|.*_to_xml|ts_stat|ts_rewrite|(next|set|curr|last)val", re.IGNORECASE,
)  # fmt: skip
#: Bare words PostgreSQL reads as functions naming the role; the parser sees columns.
_SESSION_WORDS: Final = frozenset({"user", "session_user", "current_role"})
_CAST_TYPES: Final = {
    exp.DType.TEXT, exp.DType.VARCHAR, exp.DType.CHAR, exp.DType.SMALLINT, exp.DType.INT,
    exp.DType.BIGINT, exp.DType.FLOAT, exp.DType.DOUBLE, exp.DType.DECIMAL, exp.DType.DATE,
    exp.DType.TIMESTAMP,
}  # fmt: skip
_INTERVAL_PART: Final = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_INTERVAL_UNITS: Final = {
    "year": ("years", 1), "month": ("months", 1), "mon": ("months", 1), "week": ("days", 7),
    "day": ("days", 1), "hour": ("hours", 1), "minute": ("minutes", 1), "min": ("minutes", 1),
    "second": ("seconds", 1), "sec": ("seconds", 1),
}  # fmt: skip
_SQLITE_TIME: Final = "%Y-%m-%d %H:%M:%f"  # the views' own format
_TYPE_RULES: Final = {**Postgres.EXPRESSION_METADATA, exp.JSONExtract: {"returns": exp.DType.JSON}}


@dataclass(frozen=True)
class Plan:
    """A checked query, generated for one engine; immutable, so plans can be shared."""

    sql: str  # in the backend's dialect
    json_columns: frozenset[int] | None  # result positions holding JSON; None: tell by name


def compile_plan(
    sql: str,
    visible: frozenset[str] | None,
    *,
    dialect: str,
    view_columns: Callable[[], dict[str, list[str]]],
) -> Plan:
    """Check ``sql`` and generate it for ``dialect`` (``"sqlite"`` or ``"postgres"``).

    ``visible`` None is root; otherwise every view reads only rows of those
    buckets. ``view_columns`` gives each catalog view's columns, for type
    inference; it is called only for a query that passes the checks. Raises
    `SQLSyntaxError` (bad SQL, unknown column or function, too long) or
    `SQLNotAllowed` (a write, a relation outside the catalog, a system function).

    >>> views = lambda: {"objects": ["bucket", "key", "size"]}
    >>> compile_plan("SELECT count(*) FROM objects", None, dialect="sqlite", view_columns=views).sql
    'SELECT COUNT(*) AS "count" FROM objects'
    """
    if len(sql) > QUERY_CHARS_MAX:
        raise SQLSyntaxError(f"the query is longer than {QUERY_CHARS_MAX} characters")
    try:
        tree = _parse(sql)
        _check_nodes(tree)
        _check_relations(tree, frozenset(), visible)
        for select in tree.find_all(exp.Select):
            _name_outputs(select)
        json_columns, integer_sums = _infer_types(tree, view_columns())
        if dialect == "sqlite":
            _to_sqlite(tree)
        else:
            _bigint_sums(tree, integer_sums)
        text = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as error:
        raise SQLSyntaxError(f"not supported by catalog SQL: {error}") from error
    except RecursionError as error:
        raise SQLSyntaxError("the query is nested too deeply") from error
    return Plan(text, json_columns)


# --- checking and rewriting the query ------------------------------------------------------


def _parse(sql: str) -> exp.Query:
    """The one SELECT in ``sql``. Other statements are refused by their first word,
    so that even those sqlglot cannot parse (ATTACH, VACUUM) are `SQLNotAllowed`."""
    dialect = Postgres()
    try:
        tokens = dialect.tokenize(sql)
    except SqlglotError as error:
        raise SQLSyntaxError(f"cannot read the query: {error}") from error
    starts = [
        token
        for i, token in enumerate(tokens)
        if token.token_type != TokenType.SEMICOLON
        and (i == 0 or tokens[i - 1].token_type == TokenType.SEMICOLON)
    ]
    if not starts:
        raise SQLSyntaxError("the query is empty")
    if len(starts) > 1:
        raise SQLNotAllowed(f"a query is one statement; this text has {len(starts)}")
    if (first := starts[0].text.upper()) in _STATEMENTS:
        raise SQLNotAllowed(f"only SELECT queries may run, not {first}")
    if starts[0].token_type not in (TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN):
        raise SQLSyntaxError(f"a query starts with SELECT or WITH, not {starts[0].text!r}")
    try:
        trees = [tree for tree in dialect.parser().parse(tokens, sql) if tree is not None]
    except ParseError as error:
        detail = error.errors[0] if error.errors else {}
        where = f" (line {detail.get('line')}, column {detail.get('col')})" if detail else ""
        raise SQLSyntaxError(f"{detail.get('description', error)}{where}") from error
    except (SqlglotError, RecursionError) as error:
        raise SQLSyntaxError(f"cannot parse the query: {error}") from error
    tree = trees[0] if len(trees) == 1 else None
    while isinstance(tree, exp.Subquery) and not tree.alias:  # (SELECT ...)
        tree = tree.this
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise SQLNotAllowed("only SELECT queries may run")
    return tree


def _check_nodes(tree: exp.Expr) -> None:
    """Refuse every node outside the dialect's grammar (`_NODES`)."""
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise SQLNotAllowed(f"catalog SQL is read-only: refused {node.key.upper()}")
        if isinstance(node, exp.Anonymous):
            if _SYSTEM_FUNCTION.match(name := node.name.lower()):
                raise SQLNotAllowed(f"function {name}() is not allowed in catalog SQL")
            raise SQLSyntaxError(f"unknown function {name}(); catalog SQL has {_function_list()}")
        if type(node) not in _NODES:
            if isinstance(node, exp.Func):
                name = node.sql_name().lower()
                raise SQLSyntaxError(f"catalog SQL has no {name}(); it has {_function_list()}")
            raise SQLSyntaxError(f"catalog SQL does not support {node.key.upper()}")
        if isinstance(node, exp.Cast) and node.to.this not in _CAST_TYPES:
            raise SQLSyntaxError(f"catalog SQL cannot cast to {node.to.sql('postgres')}")
        if isinstance(node, exp.Select) and not node.expressions:
            raise SQLSyntaxError("a SELECT needs at least one output column")
        if isinstance(node, exp.Distinct) and node.args.get("on"):
            raise SQLSyntaxError("catalog SQL does not support DISTINCT ON")
        if isinstance(node, exp.Interval):
            _interval_modifiers(node, sign=1)  # one reading of intervals on both engines
            if not isinstance(node.parent, exp.Add | exp.Sub):
                raise SQLSyntaxError("an interval can only be added to or subtracted from a time")
        bare = isinstance(node, exp.Column) and not node.table and not node.this.quoted
        if bare and node.name.lower() in _SESSION_WORDS:
            raise SQLNotAllowed(f"{node.name} is not allowed in catalog SQL")


@lru_cache(maxsize=1)
def _function_list() -> str:
    return "these functions: " + ", ".join(
        sorted(n for n in _FUNCTIONS.values() if n.isidentifier())
    )


def _check_relations(node: exp.Expr, ctes: frozenset[str], visible: frozenset[str] | None) -> None:
    """Check every relation the query reads, and rewrite views for ``visible``.

    A CTE is in scope in the CTEs after it (under RECURSIVE, in itself too) and in
    the query it heads; this walk resolves a name to a CTE only where both
    engines do, so no name can reach a real table by shadowing one.
    """
    with_ = node.args.get("with_") if isinstance(node, exp.Query) else None
    if isinstance(with_, exp.With):
        recursive = bool(with_.args.get("recursive"))
        for cte in with_.expressions:
            name = _relation_name(cte.args["alias"].this)
            if name.lower() in CATALOG_VIEWS:  # SQLite compares names without case
                raise SQLNotAllowed(f"a CTE may not be named like the catalog view {name!r}")
            _check_relations(cte.this, ctes | {name} if recursive else ctes, visible)
            ctes |= {name}
    for child in list(node.iter_expressions()):
        if child is with_:
            continue
        if isinstance(child, exp.Table):
            _check_table(child, ctes, visible)
        else:
            _check_relations(child, ctes, visible)


def _check_table(table: exp.Table, ctes: frozenset[str], visible: frozenset[str] | None) -> None:
    readable = f"queries may read {', '.join(CATALOG_VIEWS)} and the CTEs they define"
    if (
        not isinstance(table.this, exp.Identifier)
        or table.args.get("db")
        or table.args.get("catalog")
    ):
        raise SQLNotAllowed(f"{table.sql('postgres')} is not a catalog relation: {readable}")
    if (name := _relation_name(table.this)) in ctes:
        return
    if name not in CATALOG_VIEWS:
        raise SQLNotAllowed(f"relation {name!r} is not part of the catalog: {readable}")
    if visible is None:
        return
    if name in _ROOT_ONLY:
        raise SQLNotAllowed(f"only root may query {', '.join(sorted(_ROOT_ONLY))}")
    column = exp.column("name" if name == "buckets" else "bucket")
    buckets = [exp.Literal.string(bucket) for bucket in sorted(visible)]
    # OFFSET 0 fences the filter: neither engine pushes the user's predicates (which
    # could fail or stall on a hidden row, and so reveal it) below it.
    inner = exp.select("*").from_(exp.Table(this=table.this.copy()))
    inner = inner.where(column.isin(*buckets) if buckets else exp.false()).offset(0)
    alias = table.args.get("alias") or exp.TableAlias(this=table.this.copy())
    table.replace(exp.Subquery(this=inner, alias=alias.copy()))


def _relation_name(identifier: exp.Identifier) -> str:
    """A name as PostgreSQL reads it: folded to lower case unless quoted."""
    return str(identifier.this) if identifier.quoted else str(identifier.this).lower()


def _name_outputs(select: exp.Select) -> None:
    """Alias each unnamed output as PostgreSQL names it; SQLite would use its text."""
    for projection in list(select.expressions):
        if not isinstance(projection, exp.Alias | exp.Column | exp.Star):
            node = projection
            while isinstance(node, exp.Paren | exp.Cast):
                node = node.this
            name = node.name if isinstance(node, exp.Column) else _FUNCTIONS.get(type(node), "")
            name = name if name.isidentifier() else "?column?"
            projection.replace(exp.alias_(projection.copy(), name, quoted=True))


def _infer_types(
    tree: exp.Query, views: dict[str, list[str]]
) -> tuple[frozenset[int] | None, frozenset[int]]:
    """The result positions of JSON type, and which ``sum`` calls add integers (by
    the ``t0_sum`` number marked on them), by sqlglot's inference on a copy.

    Best effort: where inference fails, JSON columns are told by name (None) and
    no sum is marked.
    """
    for number, node in enumerate(tree.find_all(exp.Sum)):
        node.meta["t0_sum"] = number
    schema: dict[str, object] = {
        view: {
            c: "JSON" if c in JSON_COLUMNS else "BIGINT" if c in _INTEGER_COLUMNS else "TEXT"
            for c in columns
        }
        for view, columns in views.items()
    }
    try:
        typed = qualify(
            tree.copy(), schema=schema, dialect="postgres", validate_qualify_columns=False
        )
        typed = annotate_types(
            typed, schema=schema, dialect="postgres", expression_metadata=_TYPE_RULES
        )
    except Exception:  # sqlglot's optimizer is not total over what its parser accepts
        return None, frozenset()
    integer_sums = frozenset(
        node.meta["t0_sum"]
        for node in typed.find_all(exp.Sum)
        if "t0_sum" in node.meta and node.this.is_type(*exp.DataType.INTEGER_TYPES)
    )
    return frozenset(
        i for i, s in enumerate(typed.selects) if s.is_type(exp.DType.JSON)
    ), integer_sums


def _bigint_sums(tree: exp.Query, integer_sums: frozenset[int]) -> None:
    """Make PostgreSQL's sum of integers a ``bigint``, as SQLite's is, not ``numeric``:
    else ``sum(size) / count(*)`` would divide exactly on one engine only."""
    for node in reversed(list(tree.find_all(exp.Sum, bfs=False))):  # inner sums first
        if node.meta.get("t0_sum") in integer_sums:
            call: exp.Expr = node
            while isinstance(call.parent, exp.Window | exp.Filter) and call.parent.this is call:
                call = call.parent
            call.replace(exp.cast(call.copy(), exp.DType.BIGINT))


def _interval_modifiers(interval: exp.Interval, *, sign: int) -> list[str]:
    """``interval '1 day 2 hours'`` as SQLite date modifiers: ``['+1 days', '+2 hours']``."""
    text = f"{interval.this.name} {interval.unit.name if interval.unit else ''}".strip()
    modifiers, position = [], 0
    for match in _INTERVAL_PART.finditer(text):
        unit = match.group(2).lower()
        unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _INTERVAL_UNITS else unit
        if match.start() != position or unit not in _INTERVAL_UNITS:
            break
        sqlite_unit, factor = _INTERVAL_UNITS[unit]
        amount = Decimal(match.group(1)) * factor * sign
        if amount != amount.to_integral_value() and sqlite_unit != "seconds":
            break  # PostgreSQL spreads '1.5 months' over days; SQLite cannot
        modifiers.append(f"{amount:+} {sqlite_unit}")
        position = match.end()
    if not modifiers or text[position:].strip():
        raise SQLSyntaxError(f"cannot read interval {text!r}; write e.g. interval '1 day 2 hours'")
    return modifiers


def _to_sqlite(tree: exp.Query) -> None:
    """Spell what SQLite lacks with what it has, children before their parents."""
    for node in reversed(list(tree.walk())):
        replacement = _sqlite_node(node)
        if replacement is not node:
            node.replace(replacement)


def _sqlite_node(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.CurrentTimestamp):
        return _sqlite_time(exp.Literal.string("now"))
    if isinstance(node, exp.Cast) and node.to.this == exp.DType.TIMESTAMP:
        return _sqlite_time(node.this)
    if isinstance(node, exp.Add | exp.Sub) and isinstance(node.expression, exp.Interval):
        sign = -1 if isinstance(node, exp.Sub) else 1
        return _sqlite_time(node.this, *_interval_modifiers(node.expression, sign=sign))
    if isinstance(node, exp.Add) and isinstance(node.this, exp.Interval):
        return _sqlite_time(node.expression, *_interval_modifiers(node.this, sign=1))
    if isinstance(node, exp.Like | exp.ILike) and not isinstance(node.parent, exp.Escape):
        # PostgreSQL's LIKE escapes with a backslash by default; SQLite's with nothing.
        return exp.Escape(this=node.copy(), expression=exp.Literal.string("\\"))
    if isinstance(node, exp.JSONExtract | exp.JSONExtractScalar):
        function = "t0_json_get" if isinstance(node, exp.JSONExtract) else "t0_json_text"
        return exp.Anonymous(this=function, expressions=[node.this, _json_key(node.expression)])
    return node


def _sqlite_time(value: exp.Expr, *modifiers: str) -> exp.Expr:
    arguments = [exp.Literal.string(_SQLITE_TIME), value, *map(exp.Literal.string, modifiers)]
    return exp.Anonymous(this="strftime", expressions=arguments)


def _json_key(path: exp.Expr) -> exp.Expr:
    """The key or index of a one-step ``->`` path, or the expression that computes it."""
    if not isinstance(path, exp.JSONPath):
        return path
    steps = path.expressions[1:]  # past the root
    if len(steps) == 1 and isinstance(steps[0], exp.JSONPathKey):
        return exp.Literal.string(steps[0].this)
    if len(steps) == 1 and isinstance(steps[0], exp.JSONPathSubscript):
        return exp.Literal.number(steps[0].this)
    raise SQLSyntaxError("a JSON path takes one key per arrow: write metadata->'a'->>'b'")
