"""Running catalog SQL on the backend's engine, with the same answers everywhere.

`Catalog.query` compiles a query (`tier0.catalog._dialect`; the last
``plans_cached_max`` plans are kept), runs it under a deadline on its own
read-only connection, and normalises what comes back. Read-only holds on the
engine too, whatever the checks let through: SQLite connections are
``query_only``, and PostgreSQL runs each query in a ``READ ONLY`` transaction.

Both backends return equal Python values for the same data: times are UTC text
``'YYYY-MM-DD HH:MM:SS.mmm'`` (milliseconds, the views' precision on SQLite),
dates ``'YYYY-MM-DD'``, JSON decoded (objects are dicts), booleans ``0``/``1``,
numbers ``int`` where the SQL type is integral (``count``, ``sum`` of integers,
which is an integer on PostgreSQL too) and ``float`` otherwise (``avg``).
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from tier0.catalog._dialect import JSON_COLUMNS, Plan, compile_plan
from tier0.catalog._sqlite_functions import SQLITE_FUNCTIONS
from tier0.errors import (
    CatalogError,
    InvalidArgument,
    MetaUnavailable,
    QueryTimeout,
    SQLNotAllowed,
    SQLSyntaxError,
)
from tier0.meta import CATALOG_VIEWS, MetaBackend, SQLiteBackend

_SQLITE_PROGRESS_OPS: Final = 1000  # VM steps between deadline checks, a few µs
_SQLITE_SYNTAX: Final = ("no such", "syntax error", "near ", "incomplete", "ambiguous", "misuse",
                         "wrong number")  # fmt: skip

Rows = list[tuple[Any, ...]]
#: A plan's cache key. Plans differ by visibility, so it is part of the key:
#: a plan compiled for one set of buckets must never serve another.
_PlanKey = tuple[str, frozenset[str] | None, str]


@dataclass(frozen=True)
class QueryResult:
    """What a query returned: its column names and at most ``rows_max`` rows."""

    columns: list[str]
    rows: Rows
    #: More than ``rows_max`` rows existed; the rest were never read.
    truncated: bool

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per row; of two columns with one name, the later wins."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class CatalogStatistics:
    """What a catalog has done since it was opened.

    Each query that passes its argument checks ends in exactly one of
    ``queries_run`` (answered), ``queries_refused`` (`SQLSyntaxError` or
    `SQLNotAllowed`, by the checks or by the engine), ``queries_failed`` (any
    other error: a division by zero, a lost connection), ``queries_timed_out``
    and ``queries_cancelled``; a call refused for its arguments, or on a closed
    catalog, counts nowhere. ``rows_returned`` adds up answered rows (at most
    ``rows_max`` each), and ``query_time_s_total`` the wall time of every counted
    query, compiling included. A lookup in the plan cache is a hit or a miss;
    ``plans_cached`` is the cache's size now, and ``queries_running`` the
    queries running now (those `cancel_all` would stop).
    """

    queries_run: int
    queries_refused: int
    queries_failed: int
    queries_timed_out: int
    queries_cancelled: int
    rows_returned: int
    plan_cache_hits: int
    plan_cache_misses: int
    plans_cached: int
    query_time_s_total: float
    queries_running: int


class _Outcome(enum.Enum):
    RUN = enum.auto()
    REFUSED = enum.auto()
    FAILED = enum.auto()
    TIMED_OUT = enum.auto()
    CANCELLED = enum.auto()


@dataclass(eq=False)
class _Running:
    deadline_s: float  # on time.monotonic()
    cancelled: bool = False
    pid: int | None = None  # the PostgreSQL server process, while it runs the query
    interrupt: Callable[[], None] | None = None  # SQLite's, for work between handler calls

    def stop_requested(self) -> bool:
        return self.cancelled or time.monotonic() > self.deadline_s


class Catalog:
    """SQL over one metadata backend's catalog views; safe to share between threads.

    >>> Catalog(backend).query("SELECT bucket, count(*) FROM objects GROUP BY 1").rows
    [('logs', 12), ('photos', 3)]
    """

    def __init__(
        self,
        backend: MetaBackend,
        *,
        timeout_s: float = 30.0,
        rows_max: int = 100_000,
        plans_cached_max: int = 256,
    ) -> None:
        _check_limits(timeout_s, rows_max)
        if plans_cached_max < 0:
            raise InvalidArgument(f"need plans_cached_max >= 0, not {plans_cached_max}")
        self._backend = backend
        self._timeout_s = timeout_s
        self._rows_max = rows_max
        self._plans_cached_max = plans_cached_max
        self._lock = threading.Lock()
        self._running: set[_Running] = set()
        self._local = threading.local()  # SQLite: a read-only connection per thread
        self._connections: list[Any] = []
        self._views: dict[str, list[str]] | None = None  # their columns, for type inference
        self._closed = False
        # Its own lock, so that counting never waits on cancel_all's round trip under _lock.
        self._counters_lock = threading.Lock()  # the plan cache and the counters below
        self._plans: OrderedDict[_PlanKey, Plan] = OrderedDict()  # least recently used first
        self._plan_cache_hits = 0
        self._plan_cache_misses = 0
        self._outcomes: Counter[_Outcome] = Counter()
        self._rows_returned = 0
        self._query_time_s_total = 0.0

    def query(
        self,
        sql: str,
        *,
        visible_buckets: Collection[str] | None = None,
        timeout_s: float | None = None,
        rows_max: int | None = None,
    ) -> QueryResult:
        """Run one SELECT and return its rows, normalised as the module doc says.

        ``visible_buckets`` None is root. Otherwise rows of other buckets do not
        exist anywhere in the query, and ``principals``/``audit`` are refused.
        Raises `SQLSyntaxError` (bad SQL, unknown column or function),
        `SQLNotAllowed` (a write, a relation outside the catalog, a system
        function), `QueryTimeout` (past ``timeout_s``), `CatalogError`
        (cancelled, or failed on a value, like a division by zero on PostgreSQL).
        """
        timeout_s = self._timeout_s if timeout_s is None else timeout_s
        rows_max = self._rows_max if rows_max is None else rows_max
        _check_limits(timeout_s, rows_max)
        if self._closed:
            raise CatalogError("the catalog is closed")
        if isinstance(visible_buckets, str):  # would read as the set of its letters
            raise InvalidArgument("visible_buckets is a collection of bucket names, not a name")
        visible = None if visible_buckets is None else frozenset(visible_buckets)
        started_s = time.monotonic()
        running: _Running | None = None
        try:
            plan = self._plan(sql, visible)
            running = _Running(time.monotonic() + timeout_s)
            result = self._execute(plan, running, rows_max, timeout_s)
        except BaseException as error:
            self._count(_outcome(error, running), started_s)
            raise
        self._count(_Outcome.RUN, started_s, rows=len(result.rows))
        return result

    @property
    def timeout_s(self) -> float:
        """The time limit of a query that states none."""
        return self._timeout_s

    @property
    def rows_max(self) -> int:
        """The rows a query returns at most, unless it states its own limit."""
        return self._rows_max

    def statistics(self) -> CatalogStatistics:
        """The counters since this catalog was opened; see `CatalogStatistics`."""
        with self._counters_lock:
            return CatalogStatistics(
                queries_run=self._outcomes[_Outcome.RUN],
                queries_refused=self._outcomes[_Outcome.REFUSED],
                queries_failed=self._outcomes[_Outcome.FAILED],
                queries_timed_out=self._outcomes[_Outcome.TIMED_OUT],
                queries_cancelled=self._outcomes[_Outcome.CANCELLED],
                rows_returned=self._rows_returned,
                plan_cache_hits=self._plan_cache_hits,
                plan_cache_misses=self._plan_cache_misses,
                plans_cached=len(self._plans),
                query_time_s_total=self._query_time_s_total,
                queries_running=len(self._running),
            )

    def cancel_all(self) -> None:
        """Stop every query running now; each raises `CatalogError` to its caller."""
        with self._lock:  # held while cancelling, so that no pid serves another statement
            for running in self._running:
                running.cancelled = True  # seen by SQLite's progress handler
                if running.interrupt is not None:
                    running.interrupt()  # a no-op once the statement is done
            pids = [running.pid for running in self._running if running.pid is not None]
            if pids:
                with self._backend.reader() as connection:
                    for pid in pids:
                        connection.execute("SELECT pg_cancel_backend(?)", (pid,))

    def close(self) -> None:
        """Close this catalog's own connections; later queries raise `CatalogError`."""
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _plan(self, sql: str, visible: frozenset[str] | None) -> Plan:
        """The compiled plan for ``sql`` as seen by ``visible``, from the cache if there."""
        key: _PlanKey = (sql, visible, self._backend.dialect)
        with self._counters_lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                self._plan_cache_hits += 1
                return plan
            self._plan_cache_misses += 1
        plan = self._compile(sql, visible)  # unlocked: threads compile in parallel
        with self._counters_lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)  # another thread may have compiled it meanwhile
            while len(self._plans) > self._plans_cached_max:
                self._plans.popitem(last=False)
        return plan

    def _compile(self, sql: str, visible: frozenset[str] | None) -> Plan:
        return compile_plan(
            sql, visible, dialect=self._backend.dialect, view_columns=self._view_columns
        )

    def _execute(
        self, plan: Plan, running: _Running, rows_max: int, timeout_s: float
    ) -> QueryResult:
        with self._lock:
            self._running.add(running)
        try:
            run = self._run_sqlite if self._backend.dialect == "sqlite" else self._run_postgres
            columns, rows = run(plan.sql, running, rows_max, timeout_s)
        finally:
            with self._lock:
                self._running.discard(running)
        json_columns = plan.json_columns
        if json_columns is None:
            json_columns = frozenset(i for i, c in enumerate(columns) if c in JSON_COLUMNS)
        as_json = _json_from_text if self._backend.dialect == "sqlite" else _json
        decode = [as_json if i in json_columns else _scalar for i in range(len(columns))]
        result = [tuple(f(v) for f, v in zip(decode, row, strict=True)) for row in rows[:rows_max]]
        return QueryResult(columns, result, truncated=len(rows) > rows_max)

    def _count(self, outcome: _Outcome, started_s: float, *, rows: int = 0) -> None:
        elapsed_s = time.monotonic() - started_s
        with self._counters_lock:
            self._outcomes[outcome] += 1
            self._rows_returned += rows
            self._query_time_s_total += elapsed_s

    def _view_columns(self) -> dict[str, list[str]]:
        if self._views is None:
            with self._backend.reader() as connection:
                cursors: dict[str, Any] = {
                    v: connection.execute(f"SELECT * FROM {v} LIMIT 0") for v in CATALOG_VIEWS
                }
                self._views = {v: [d[0] for d in c.description] for v, c in cursors.items()}
        return self._views

    def _run_sqlite(
        self, sql: str, running: _Running, rows_max: int, timeout_s: float
    ) -> tuple[list[str], Rows]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            assert isinstance(self._backend, SQLiteBackend)
            connection = self._backend.read_only_connection()
            for name, arity, function in SQLITE_FUNCTIONS:
                connection.raw.create_function(name, arity, function, deterministic=True)
            connection.raw.set_authorizer(_sqlite_authorizer)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        connection.raw.set_progress_handler(running.stop_requested, _SQLITE_PROGRESS_OPS)
        running.interrupt = connection.raw.interrupt
        cursor: Any = None
        try:
            cursor = connection.execute(sql)
            # sqlite3 steps lazily: rows past rows_max + 1 are never computed.
            return [d[0] for d in cursor.description], cursor.fetchmany(rows_max + 1)
        except sqlite3.Error as error:
            raise _engine_error(error, running, timeout_s) from error
        finally:
            if cursor is not None:
                cursor.close()  # ends the read transaction, so the WAL can checkpoint
            connection.raw.set_progress_handler(None, 0)

    def _run_postgres(
        self, sql: str, running: _Running, rows_max: int, timeout_s: float
    ) -> tuple[list[str], Rows]:
        import psycopg

        timeout_ms = max(1, int((running.deadline_s - time.monotonic()) * 1000))
        with self._backend.reader() as connection:
            connection.execute("BEGIN READ ONLY")
            try:
                role = getattr(self._backend, "catalog_role", None)
                if role is not None:
                    connection.execute(f"SET LOCAL ROLE {role}")
                # SET LOCAL by function: one round trip, which also tells cancel_all the pid.
                settings = (
                    "set_config('statement_timeout', ?, true), set_config('TimeZone', 'UTC', true)"
                )
                row = connection.query_one(
                    f"SELECT pg_backend_pid(), {settings}", (str(timeout_ms),)
                )
                with self._lock:
                    running.pid = row[0]
                if running.cancelled:  # by a cancel_all that came before the pid
                    raise _stopped(running, timeout_s)
                # Through a cursor, so that no more than rows_max + 1 rows leave the server.
                connection.execute(f"DECLARE t0_catalog NO SCROLL CURSOR FOR {sql}")
                cursor: Any = connection.execute(f"FETCH FORWARD {rows_max + 1} FROM t0_catalog")
                return [d[0] for d in cursor.description], cursor.fetchall()
            except psycopg.Error as error:
                raise _engine_error(error, running, timeout_s) from error
            except MetaUnavailable as error:  # the backend files a cancel as operational
                if isinstance(error.__cause__, psycopg.errors.QueryCanceled):
                    raise _stopped(running, timeout_s) from error
                raise
            finally:
                with self._lock:
                    running.pid = None  # before the connection can serve anyone else
                connection.rollback()


def _sqlite_authorizer(
    action: int, first: str | None, second: str | None, database: str | None, view: str | None
) -> int:
    """SQLite's own guard under the catalog's checks: reads, and only through the views.

    An internal ``t0_*`` table's columns may be read only on behalf of a view
    (``view`` names it); anything but reading and calling functions is
    refused. A read of no column (``count(*)`` over a view, which SQLite runs
    on the table) reveals no data and is let through.
    """
    if action == sqlite3.SQLITE_READ:
        if first is not None and first.startswith("t0_") and view is None and second:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _check_limits(timeout_s: float, rows_max: int) -> None:
    if not timeout_s > 0 or rows_max < 0:
        raise InvalidArgument(f"need timeout_s > 0 and rows_max >= 0, not {timeout_s}, {rows_max}")


def _outcome(error: BaseException, running: _Running | None) -> _Outcome:
    if isinstance(error, SQLSyntaxError | SQLNotAllowed):
        return _Outcome.REFUSED
    if isinstance(error, QueryTimeout):
        return _Outcome.TIMED_OUT
    # cancel_all flagged it and it stopped with `_stopped`'s plain CatalogError. (One
    # cancelled just as it failed on a value also counts here: cancel_all reached it.)
    if type(error) is CatalogError and running is not None and running.cancelled:
        return _Outcome.CANCELLED
    return _Outcome.FAILED


# --- results and errors --------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    if value is None or type(value) in (str, int, float):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):  # integral by type (sum: 5) or not (avg: 5.0000)
        return int(value) if value.is_finite() and value.as_tuple().exponent == 0 else float(value)
    if isinstance(value, datetime):
        v = value.astimezone(UTC) if value.tzinfo is not None else value
        return (
            f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
            f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond // 1000:03d}"
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def _json(value: Any) -> Any:
    return value if isinstance(value, dict | list | str | int | float | None) else _scalar(value)


def _json_from_text(value: Any) -> Any:  # SQLite keeps JSON as text
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _scalar(value)


def _stopped(running: _Running, timeout_s: float) -> CatalogError:
    if running.cancelled:
        return CatalogError("the query was cancelled (Catalog.cancel_all)")
    return QueryTimeout(
        f"the query ran past its {timeout_s:g} s limit and was cancelled: "
        "narrow it, or pass a larger timeout_s"
    )


def _engine_error(error: Exception, running: _Running, timeout_s: float) -> CatalogError:
    """The engine's refusal in the error tree, with its message (not our generated SQL)."""
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is None:  # sqlite3
        message = str(error)
        if message == "interrupted":
            return _stopped(running, timeout_s)
        if "readonly" in message or "not authorized" in message or "prohibited" in message:
            return SQLNotAllowed(f"catalog SQL is read-only and reads only its views: {message}")
        if message.startswith(_SQLITE_SYNTAX):
            return SQLSyntaxError(message)
        return CatalogError(f"the query failed: {message}")
    diag = getattr(error, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(error)
    if sqlstate == "57014":
        return _stopped(running, timeout_s)
    if sqlstate in ("25006", "42501"):
        return SQLNotAllowed(f"catalog SQL is read-only and reads only its views: {message}")
    if sqlstate.startswith(("42", "0A")):
        return SQLSyntaxError(message)
    return CatalogError(f"the query failed: {message}")
