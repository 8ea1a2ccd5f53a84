"""The DataBase's query engine: one sandboxed in-memory DuckDB per opened store.

DuckDB executes every query over tables and files (measured against SQL
straight on SQLite in benchmarks/bench_db.py and the README: a columnar
engine scans 10-100x faster). It holds no data of its own: tables are
Parquet files in the element store, read through `BlobFileSystem` grants,
so every process and every gateway sees the same tables, and nothing needs
to be loaded, replicated or kept in step.

The database is locked down before any user SQL reaches it: external access
is off (no local files, no network, no extension loading), the only readable
paths are the current grants, and the configuration is locked so that SQL
cannot undo any of it. Each query runs on its own cursor (DuckDB's
connections are cheap and isolated; temporary objects die with them) under
a deadline that interrupts it, within the engine's memory limit.
"""

from __future__ import annotations

import heapq
import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from tier0.db._files import PROTOCOL, BlobFileSystem
from tier0.db._replica import SCHEMA as REPLICA_SCHEMA
from tier0.db._replica import CatalogReplica, ReplicaFile
from tier0.db._tables import TableStates
from tier0.db._vectors import IndexCache
from tier0.errors import CatalogError, QueryTimeout, SQLNotAllowed, SQLSyntaxError, TableSchemaError
from tier0.meta import MetaBackend

ENGINE_THREADS: Final = 2
ENGINE_MEMORY_BYTES_MAX: Final = 2 * 1024**3
QUERY_TIMEOUT_S: Final = 60.0
QUERY_TIMEOUT_S_MAX: Final = 3600.0
_GRANTED_PATH: Final = re.compile(PROTOCOL + r"://[0-9a-f]+/[^'\s]*")
DECODED_CACHE_BYTES_MAX: Final = 512 * 1024**2
BOUND_QUERIES_BYTES_MAX: Final = 16 * 1024**2


@dataclass(frozen=True)
class EngineStatistics:
    queries_run: int
    queries_failed: int
    queries_timed_out: int
    queries_cancelled: int
    running: int
    files_granted: int


class Engine:
    """Runs checked SQL (see `tier0.db._sql`) on DuckDB; safe to share between threads."""

    def __init__(
        self,
        *,
        threads: int = ENGINE_THREADS,
        memory_bytes_max: int = ENGINE_MEMORY_BYTES_MAX,
        meta: MetaBackend | None = None,
        cache_directory: Path | None = None,
    ) -> None:
        """``meta``: the metadata whose catalog the engine keeps a copy of
        (`tier0.db._replica`), in a file under ``cache_directory`` (in memory if None)."""
        self.files = BlobFileSystem()
        #: Search indexes loaded in this process (see `tier0.db._vectors`), and parts
        #: of data files decoded for searches (rowids, vectors, small columns, tokens;
        #: files never change, so neither can go stale).
        self.indexes = IndexCache()
        self.decoded = IndexCache(DECODED_CACHE_BYTES_MAX)
        #: The tables read lately, reused while current (see `TableStates`).
        self.tables = TableStates()
        #: Queries over the catalog's copy alone, bound (see `Database.sql`).
        self.bound = IndexCache(BOUND_QUERIES_BYTES_MAX)
        self._db = duckdb.connect(":memory:")
        self._db.register_filesystem(self.files)
        self._replica_file: ReplicaFile | None = None
        if meta is not None:  # attached before the lock-down below: SQL cannot attach
            if cache_directory is None:
                self._db.execute(f"ATTACH ':memory:' AS {REPLICA_SCHEMA} (COMPRESS)")
            else:
                self._replica_file = ReplicaFile(cache_directory)
                path = str(self._replica_file.path).replace("'", "''")
                try:
                    self._db.execute(f"ATTACH '{path}' AS {REPLICA_SCHEMA}")
                except duckdb.Error:  # unreadable (another DuckDB's format, say): a new one
                    self._replica_file.discard()
                    self._db.execute(f"ATTACH '{path}' AS {REPLICA_SCHEMA}")
        for setting in (
            f"SET threads = {int(threads)}",
            f"SET memory_limit = '{int(memory_bytes_max)}B'",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            f"SET allowed_directories = ['{PROTOCOL}://']",
            "SET enable_external_access = false",
            "SET lock_configuration = true",
        ):
            self._db.execute(setting)
        #: The catalog's copy (None without ``meta``).
        self.replica = None if meta is None else CatalogReplica(meta, self._db)
        self._lock = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()
        self._cancelled: set[int] = set()
        self._run = self._failed = self._timed_out = self._cancelled_count = 0
        self._closed = False
        self._watchdog = _Watchdog()

    def query(
        self, sql: str, *, parameters: Sequence[Any] | Mapping[str, Any] | None = None,
        timeout_s: float = QUERY_TIMEOUT_S,
    ) -> pa.Table:  # fmt: skip
        """The result of ``sql`` as an Arrow table; `QueryTimeout` past ``timeout_s``."""
        if not 0 < timeout_s <= QUERY_TIMEOUT_S_MAX:
            raise CatalogError(f"timeout_s must be in (0, {QUERY_TIMEOUT_S_MAX}], got {timeout_s}")
        with self._lock:
            if self._closed:
                raise CatalogError("the database is closed: open the store again")
            cursor = self._db.cursor()
            self._running.add(cursor)
        started = time.monotonic()
        alarm = self._watchdog.arm(started + timeout_s, cursor.interrupt)
        try:
            table = cursor.sql(sql, params=parameters or None).to_arrow_table()
        except duckdb.Error as error:
            with self._lock:
                cancelled = id(cursor) in self._cancelled
                if cancelled:
                    self._cancelled_count += 1
                elif time.monotonic() - started >= timeout_s:
                    self._timed_out += 1
                else:
                    self._failed += 1
            raise _translate(error, cancelled, timeout_s) from error
        finally:
            self._watchdog.disarm(alarm)
            with self._lock:
                self._running.discard(cursor)
                self._cancelled.discard(id(cursor))
            cursor.close()
        with self._lock:
            self._run += 1
        return table

    def cancel_all(self) -> None:
        """Interrupt every running query (each raises `QueryTimeout` saying it was cancelled)."""
        with self._lock:
            running = list(self._running)
            self._cancelled.update(id(cursor) for cursor in running)
        for cursor in running:
            cursor.interrupt()

    def statistics(self) -> EngineStatistics:
        with self._lock:
            return EngineStatistics(
                queries_run=self._run,
                queries_failed=self._failed,
                queries_timed_out=self._timed_out,
                queries_cancelled=self._cancelled_count,
                running=len(self._running),
                files_granted=self.files.granted,
            )

    def close(self) -> None:
        self.cancel_all()
        with self._lock:
            self._closed = True
        self._watchdog.close()
        self._db.close()
        if self._replica_file is not None:
            self._replica_file.release()


class _Watchdog:
    """Interrupts queries past their deadline, from one thread for every query (a
    timer thread per query cost ~0.1-1 ms to start, as much as a small query)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: list[tuple[float, int]] = []  # a heap
        self._pending: dict[int, Callable[[], None]] = {}
        self._numbers = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, interrupt: Callable[[], None]) -> int:
        """Call ``interrupt`` at ``deadline`` (time.monotonic) unless disarmed first."""
        number = next(self._numbers)
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="tier0-query-watchdog", daemon=True
                )
                self._thread.start()
            self._pending[number] = interrupt
            heapq.heappush(self._deadlines, (deadline, number))
            if self._deadlines[0][1] == number:
                self._condition.notify()  # a new earliest deadline
        return number

    def disarm(self, number: int) -> None:
        with self._condition:
            self._pending.pop(number, None)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _watch(self) -> None:
        with self._condition:
            while not self._closed:
                while self._deadlines and self._deadlines[0][1] not in self._pending:
                    heapq.heappop(self._deadlines)  # disarmed
                if not self._deadlines:
                    self._condition.wait()
                    continue
                deadline, number = self._deadlines[0]
                wait_s = deadline - time.monotonic()
                if wait_s > 0:
                    self._condition.wait(wait_s)
                    continue
                heapq.heappop(self._deadlines)
                self._pending.pop(number)()


def _translate(error: duckdb.Error, cancelled: bool, timeout_s: float) -> CatalogError:
    # DuckDB quotes the query it ran: name granted files as files, not internal paths.
    message = _GRANTED_PATH.sub("<file>", str(error))
    if isinstance(error, duckdb.InterruptException):
        if cancelled:
            return QueryTimeout("the query was cancelled")
        return QueryTimeout(f"the query ran past its {timeout_s:g} s limit and was stopped")
    if isinstance(error, duckdb.PermissionException):
        return SQLNotAllowed(f"{message}: queries read tables, catalog views and tier0:// files")
    if isinstance(error, duckdb.ParserException | duckdb.BinderException | duckdb.CatalogException):
        return SQLSyntaxError(message)
    if isinstance(error, duckdb.ConversionException | duckdb.ConstraintException):
        return TableSchemaError(message)
    if isinstance(error, duckdb.OutOfMemoryException):
        return CatalogError(f"the query needs more memory than the engine may use: {message}")
    return CatalogError(message)
