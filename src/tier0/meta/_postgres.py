"""PostgreSQL metadata: the scale-out backend.

Any number of tier0 processes on any number of hosts share one database. Each
write transaction starts by locking the sequence-counter row, so writes are
serialised in commit order, event sequence numbers stay gap-free, and a
transaction that reads state under READ COMMITTED sees every earlier commit.
Commits are announced with NOTIFY; a listener thread turns them into wake-ups
for local waiters.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from tier0.errors import MetaUnavailable, StorageFull
from tier0.meta._backend import Connection, Cursor, MetaBackend, Params

if TYPE_CHECKING:
    import pyarrow as pa

CHANNEL: Final = "tier0_commits"
#: The role user SQL runs as: SELECT on the catalog views and nothing else.
CATALOG_ROLE: Final = "tier0_catalog_reader"
READERS_MAX: Final = 16
#: The advisory lock that orders schema changes of processes opening one database
#: at once (a number of our own; PostgreSQL's advisory locks are named by integers).
SCHEMA_LOCK: Final = 0x74_69_65_72_30_00  # "tier0"
CONNECT_TIMEOUT_S: Final = 10


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as error:  # pragma: no cover - depends on the install
        raise MetaUnavailable(
            "PostgreSQL metadata needs the postgres extra: pip install 'tier0[postgres]'"
        ) from error
    return psycopg


@lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """Rewrite ``?`` placeholders as psycopg's ``%s`` (kernel SQL has no literal ``?``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


class PostgresConnection(Connection):
    def __init__(self, url: str) -> None:
        self._psycopg = _import_psycopg()
        self._url = url
        try:
            # autocommit: transactions are explicit BEGIN/COMMIT, as on SQLite.
            self._db = self._psycopg.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except self._psycopg.OperationalError as error:
            raise MetaUnavailable(f"cannot connect to {redact(url)}: {error}") from error
        self.execute("SET synchronous_commit = on")

    def _translate(self, error: Exception) -> Exception:
        errors = self._psycopg.errors
        if isinstance(error, errors.DiskFull):
            return StorageFull(f"PostgreSQL at {redact(self._url)} is out of disk space")
        if isinstance(error, self._psycopg.OperationalError):
            return MetaUnavailable(f"PostgreSQL at {redact(self._url)} failed: {error}")
        return error

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            if params:
                return self._db.execute(_placeholders(sql), params)  # type: ignore[no-any-return]
            return self._db.execute(sql)  # type: ignore[no-any-return]
        except self._psycopg.Error as error:
            raise self._translate(error) from error

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            with self._db.cursor() as cursor:
                cursor.executemany(_placeholders(sql), rows)
        except self._psycopg.Error as error:
            raise self._translate(error) from error

    def begin_write(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()

    @property
    def broken(self) -> bool:
        return bool(self._db.closed or self._db.broken)


class PostgresBackend(MetaBackend):
    """Metadata in a PostgreSQL database given by a ``postgresql://`` URL."""

    dialect = "postgres"
    lock_suffix = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._pool: list[PostgresConnection] = []
        self._pool_lock = threading.Lock()
        self._listener: _Listener | None = None
        #: Set by install_schema when the catalog reader role could be made.
        self.catalog_role: str | None = None
        # Fail now, with a clear message, rather than on the first request.
        self._release(self._acquire())

    @property
    def location(self) -> str:
        return redact(self._url)

    def connect(self) -> PostgresConnection:
        return PostgresConnection(self._url)

    def _acquire(self) -> PostgresConnection:
        with self._pool_lock:
            while self._pool:
                connection = self._pool.pop()
                if not connection.broken:
                    return connection
        return PostgresConnection(self._url)

    def _release(self, connection: PostgresConnection) -> None:
        with self._pool_lock:
            if len(self._pool) < READERS_MAX and not connection.broken:
                self._pool.append(connection)
                return
        connection.close()

    def read_arrow(self, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        # ADBC's PostgreSQL driver streams COPY ... BINARY into Arrow, in C.
        try:
            import adbc_driver_postgresql.dbapi
        except ImportError as error:
            raise MetaUnavailable(
                "bulk reads from PostgreSQL need its ADBC driver: pip install 'tier0[postgres]'"
            ) from error
        import pyarrow as pa

        self.check_open()
        connect = adbc_driver_postgresql.dbapi.connect
        with connect(self._url) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            for batch in cursor.fetch_record_batch():
                arrays = [batch.column(i).cast(field.type) for i, field in enumerate(schema)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        self.check_open()
        connection = self._acquire()
        try:
            yield connection
        finally:
            self._release(connection)

    def lock_schema(self, connection: Connection) -> None:
        # Two transactions replacing the same view, or granting on the same table, at
        # once fail in PostgreSQL ("tuple concurrently updated") rather than wait: as
        # when worker processes start together over one database.
        connection.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    def install_schema(self) -> None:
        super().install_schema()
        self.catalog_role = self._install_catalog_role()

    def _install_catalog_role(self) -> str | None:
        """Create the role user SQL runs as, if this database user may; its name, or None.

        Views run with their owner's rights, so SELECT on the views (and on no
        table) lets a query read the catalog and nothing behind it, whatever
        slipped past the catalog's own checks.
        """
        from tier0.meta._schema import CATALOG_VIEWS

        psycopg = _import_psycopg()
        connection = self.connect()
        try:
            connection.begin_write()
            self.lock_schema(connection)
            connection.execute(
                "DO $$ BEGIN CREATE ROLE " + CATALOG_ROLE + " NOLOGIN;"
                " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            )
            connection.execute(f"GRANT SELECT ON {', '.join(CATALOG_VIEWS)} TO {CATALOG_ROLE}")
            connection.execute(f"GRANT {CATALOG_ROLE} TO CURRENT_USER")
            connection.commit()
            return CATALOG_ROLE
        except (psycopg.Error, MetaUnavailable):
            connection.rollback()
        finally:
            connection.close()
        # No CREATEROLE privilege, or another process made the role at the
        # same moment: use it if it is there for us; else the catalog's own
        # checks and READ ONLY remain.
        with self.reader() as db:
            if db.query_one("SELECT 1 FROM pg_roles WHERE rolname = ?", (CATALOG_ROLE,)) is None:
                return None
            row = db.query_one(
                "SELECT pg_has_role(current_user, ?, 'MEMBER')"
                " AND NOT has_table_privilege(?, 't0_versions', 'SELECT')",
                (CATALOG_ROLE, CATALOG_ROLE),
            )
        return CATALOG_ROLE if row[0] else None

    def before_commit(self, connection: Connection) -> None:
        # Delivered when (and only if) the transaction commits.
        connection.execute(f"NOTIFY {CHANNEL}")

    def start_watching(self) -> None:
        if self._listener is None:
            self._listener = _Listener(self._url, self.signal.bump)

    def close(self) -> None:
        self.closed = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for connection in pool:
            connection.close()


class _Listener:
    """A thread that LISTENs for commit notifications and calls ``on_change``."""

    WAKE_S: Final = 0.5  # how often the thread checks whether it should stop

    def __init__(self, url: str, on_change: Any) -> None:
        self._psycopg = _import_psycopg()
        self._url = url
        self._on_change = on_change
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tier0-meta-listen", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(CONNECT_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._psycopg.connect(self._url, autocommit=True) as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    # A (re)connection may have missed notifications: wake waiters.
                    self._on_change()
                    while not self._stopping.is_set():
                        for _ in db.notifies(timeout=self.WAKE_S, stop_after=1):
                            self._on_change()
            except self._psycopg.Error:
                self._ready.set()
                self._stopping.wait(1.0)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
