"""The metadata backend seam.

A backend supplies connections, a few dialect facts and a commit signal; the
schema, the group committer and every query above it are shared. SQL is
written once with ``?`` placeholders and portable syntax (``INSERT ... ON
CONFLICT``, ``RETURNING``, partial indexes), which SQLite and PostgreSQL both
accept.
"""

from __future__ import annotations

import abc
import contextlib
import json
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tier0.meta._schema import SCHEMA_VERSION, render_ddl, render_upgrade

if TYPE_CHECKING:
    import pyarrow as pa

Params = Sequence[Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the kernel uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(abc.ABC):
    """One database connection, with ``?`` placeholders on every backend."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """Run one statement."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement for each parameter row."""

    @abc.abstractmethod
    def begin_write(self) -> None:
        """Start a write transaction that will not fail later for lack of a lock."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit durably (the backend's strongest synchronous setting)."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Abandon the current transaction."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def query_all(self, sql: str, params: Params = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Params = ()) -> Any:
        return self.execute(sql, params).fetchone()


@dataclass(frozen=True)
class MetaStatistics:
    """What a metadata backend has done since it was opened."""

    dialect: str
    location: str
    commits: int
    ops_committed: int
    ops_per_commit_max: int


class ChangeSignal:
    """A generation counter bumped on every commit anyone makes to the store.

    Waiters snapshot the generation *before* they look for news and then wait
    for it to move, so a commit between the look and the wait is never missed.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._condition = threading.Condition()

    def generation(self) -> int:
        with self._condition:
            return self._generation

    def bump(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait_changed(self, since: int, timeout_s: float) -> bool:
        """Block until the generation differs from ``since``; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._generation != since, timeout_s)


class MetaBackend(abc.ABC):
    """A metadata database: SQLite (embedded default) or PostgreSQL (scale-out)."""

    #: ``"sqlite"`` or ``"postgres"``: picks the DDL spelling and row-lock syntax.
    dialect: str
    #: Appended to the counter read that opens every write transaction.
    lock_suffix: str = ""

    def __init__(self) -> None:
        self.signal = ChangeSignal()
        self.closed = False

    def check_open(self) -> None:
        """Raise MetaError if the backend was closed (a use-after-close bug in the caller)."""
        if self.closed:
            from tier0.errors import MetaError

            raise MetaError(f"the store at {self.location} is closed: open it again to use it")

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the metadata lives, for messages (a path or a URL without password)."""

    @abc.abstractmethod
    def connect(self) -> Connection:
        """A new connection for the caller's exclusive use (the committer's)."""

    @abc.abstractmethod
    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection for reads, from a pool; each statement sees the latest commit."""

    @abc.abstractmethod
    def read_arrow(self, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """The rows of one read-only statement ``sql`` (one snapshot), as batches of
        ``schema`` (its columns in order), streamed in C: for bulk reads, where
        Python rows cost ten times more (~10 us a row for 16 columns)."""

    def store_id(self) -> str:
        """This metadata's identity, made once when its schema was installed."""
        with self.reader() as db:
            return str(db.query_one("SELECT value FROM t0_schema WHERE name = 'store_id'")[0])

    @abc.abstractmethod
    def start_watching(self) -> None:
        """Start bumping ``self.signal`` on commits made by other processes."""

    def after_commit(self, connection: Connection) -> None:  # noqa: B027 - optional hook
        """Called by the committer after each commit (PostgreSQL notifies listeners)."""

    def before_commit(self, connection: Connection) -> None:  # noqa: B027 - optional hook
        """Called by the committer inside each write transaction, just before commit."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close every connection and watcher."""

    def lock_schema(self, connection: Connection) -> None:  # noqa: B027 - optional hook
        """Called first in each transaction that changes the schema: where a write
        transaction does not already exclude the others (SQLite's does), wait for
        theirs to end."""

    def install_schema(self) -> None:
        """Create or upgrade the schema; idempotent and safe from several processes."""
        connection = self.connect()
        try:
            connection.begin_write()
            self.lock_schema(connection)
            tables, late = render_ddl(self.dialect)
            for statement in tables:
                connection.execute(statement)
            row = connection.query_one("SELECT value FROM t0_schema WHERE name = 'version'")
            if row is None:
                connection.execute(
                    "INSERT INTO t0_schema (name, value) VALUES ('version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) < SCHEMA_VERSION:
                # New tables were just made; columns added to old ones come now.
                for statement in render_upgrade(self.dialect, int(row[0])):
                    connection.execute(statement)
                connection.execute(
                    "UPDATE t0_schema SET value = ? WHERE name = 'version'",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) != SCHEMA_VERSION:
                from tier0.errors import SchemaMismatch

                raise SchemaMismatch(
                    f"metadata at {self.location} has schema version {row[0]}, "
                    f"this tier0 understands {SCHEMA_VERSION}: upgrade tier0"
                )
            for statement in late:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO t0_counters (name, value) VALUES ('seq', 0) ON CONFLICT (name) DO NOTHING"
            )
            connection.execute(
                "INSERT INTO t0_schema (name, value) VALUES ('store_id', ?)"
                " ON CONFLICT (name) DO NOTHING",
                (secrets.token_hex(16),),
            )
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()


def load_json(value: Any) -> Any:
    """Decode a JSON column: text on SQLite, already decoded on PostgreSQL."""
    if value == "{}":
        return {}  # the common case, several times on every read: skip the decoder
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def dump_json(value: Any) -> str:
    """Encode a JSON column canonically (sorted keys, compact)."""
    if not value and isinstance(value, dict):
        return "{}"  # the common case, on every put: skip the encoder
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
