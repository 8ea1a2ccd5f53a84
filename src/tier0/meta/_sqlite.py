"""SQLite metadata: the embedded default (one file, WAL, ``synchronous=FULL``).

Several processes may open the same directory at once (a server's workers, a
CLI): writers queue on a file lock (``meta.db-writer``, flock) before SQLite's
own, ``busy_timeout`` covers writers that do not take it, and WAL lets readers
run beside the writer.
Commits made by other processes are noticed through inotify on the directory
that holds the database, so waiting for events never polls.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import select
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tier0.errors import MetaUnavailable, StorageFull, StoreFailed
from tier0.meta._backend import Connection, Cursor, MetaBackend, Params

if TYPE_CHECKING:
    import pyarrow as pa

BUSY_TIMEOUT_MS: Final = 30_000

_SQLITE_BUSY: Final = 5
_SQLITE_IOERR: Final = 10
_SQLITE_FULL: Final = 13


def _translate(error: sqlite3.Error, path: Path) -> Exception:
    """Map SQLite's operating errors onto tier0's; other errors are bugs and pass through."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_FULL:
        return StorageFull(f"metadata database {path} is out of space: free disk space and retry")
    if code == _SQLITE_IOERR:
        return StoreFailed(f"I/O error on metadata database {path}: {error}; check the disk")
    if code == _SQLITE_BUSY:
        return MetaUnavailable(
            f"metadata database {path} stayed locked by another process for "
            f"{BUSY_TIMEOUT_MS // 1000} s"
        )
    return error


class SQLiteConnection(Connection):
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._path = path
        self._lock_fd: int | None = None
        self._write_locked = False
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
            self._db = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as error:
            raise MetaUnavailable(f"cannot open metadata database {path}: {error}") from error
        # Every setting the store's guarantees rest on is stated, not inherited.
        for pragma in (
            f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            # Checkpoint every 32 MiB of WAL rather than SQLite's 4 MiB: each
            # checkpoint fsyncs the database file, and small-object ingest
            # measured faster with fewer of them (see benchmarks/).
            "PRAGMA wal_autocheckpoint = 8192",
            "PRAGMA foreign_keys = OFF",
            # LIKE is case-sensitive in SQL (and PostgreSQL), and only then can
            # SQLite answer `key LIKE 'prefix%'` from the (bucket, key) index.
            "PRAGMA case_sensitive_like = ON",
        ):
            self.execute(pragma)
        if read_only:
            self.execute("PRAGMA query_only = ON")

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as error:
            raise _translate(error, self._path) from error

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as error:
            raise _translate(error, self._path) from error

    def begin_write(self) -> None:
        # Writers of several processes (tier0 serve --workers, a CLI beside a
        # server) queue on a file lock first. SQLite's own wait (busy_timeout)
        # sleeps and retries with growing pauses, up to 100 ms each: under
        # steady writes from two processes that made a commit wait a second
        # now and then. flock() waits in the kernel and wakes the next writer
        # the moment the lock is free.
        self._lock_writes()
        try:
            # IMMEDIATE takes the write lock now, so the transaction cannot fail
            # later with SQLITE_BUSY after it has read state it acts upon.
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock_writes()
            raise

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        finally:
            if not self._db.in_transaction:
                self._unlock_writes()

    def rollback(self) -> None:
        try:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
        finally:
            self._unlock_writes()

    def close(self) -> None:
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock, if held
            self._lock_fd = None

    def _lock_writes(self) -> None:
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(
                    self._path.with_name(self._path.name + "-writer"),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            except OSError as error:
                raise MetaUnavailable(
                    f"cannot open the writer lock of {self._path}: {error}"
                ) from error
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._write_locked = True

    def _unlock_writes(self) -> None:
        if self._write_locked and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._write_locked = False

    @property
    def raw(self) -> sqlite3.Connection:
        """The sqlite3 connection, for the catalog's function registrations."""
        return self._db


_F_SETPIPE_SZ: Final = 1031  # Linux's fcntl to resize a pipe
_PIPE_BYTES: Final = 1024 * 1024
#: Rows per Arrow batch of `SQLiteBackend.read_arrow` (the driver's default, 1,024,
#: makes the consumer pay its per-batch costs a thousand times per million rows).
ARROW_BATCH_ROWS: Final = 65_536


class SQLiteBackend(MetaBackend):
    """Metadata in ``<directory>/meta.db``."""

    dialect = "sqlite"

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory
        self._path = directory / "meta.db"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MetaUnavailable(
                f"cannot create metadata directory {directory}: {error}"
            ) from error
        self._local = threading.local()
        self._readers: list[SQLiteConnection] = []
        self._readers_lock = threading.Lock()
        self._watcher: _DirectoryWatcher | None = None

    @property
    def location(self) -> str:
        return str(self._path)

    def connect(self) -> SQLiteConnection:
        return SQLiteConnection(self._path)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        self.check_open()
        # One read connection per thread: sqlite3 connections are cheap to keep
        # and must not be used by two threads at once.
        connection: SQLiteConnection | None = getattr(self._local, "reader", None)
        if connection is None:
            connection = SQLiteConnection(self._path)
            self._local.reader = connection
            with self._readers_lock:
                self._readers.append(connection)
        yield connection

    def read_arrow(self, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        # In a child process: see tier0.meta._sqlite_arrow for why.
        import pyarrow as pa

        self.check_open()
        request = {
            "uri": f"file:{urllib.request.pathname2url(str(self._path))}?mode=ro",
            "sql": sql,
            "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
            "batch_rows": ARROW_BATCH_ROWS,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "tier0.meta._sqlite_arrow"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        with contextlib.suppress(OSError):  # fewer, larger hand-offs between the processes
            fcntl.fcntl(child.stdout.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            child.stdin.write(json.dumps(request).encode())
            child.stdin.close()
            try:
                yield from pa.ipc.open_stream(child.stdout)
            except pa.ArrowInvalid as error:
                problem = child.stderr.read().decode(errors="replace").strip() or str(error)
                raise MetaUnavailable(f"bulk read of {self._path} failed: {problem}") from error
            if child.wait() != 0:
                problem = child.stderr.read().decode(errors="replace").strip()
                raise MetaUnavailable(f"bulk read of {self._path} failed: {problem}")
        finally:
            if child.poll() is None:  # the consumer stopped early
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()

    def read_only_connection(self) -> SQLiteConnection:
        """A new connection that refuses writes at the engine level (for user SQL)."""
        return SQLiteConnection(self._path, read_only=True)

    def start_watching(self) -> None:
        if self._watcher is None:
            self._watcher = _DirectoryWatcher(self._directory, self.signal.bump)

    def close(self) -> None:
        self.closed = True
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for connection in readers:
            connection.close()


_IN_MODIFY: Final = 0x002
_IN_CREATE: Final = 0x100
_IN_MOVED_TO: Final = 0x080


class _DirectoryWatcher:
    """Calls ``on_change`` whenever a file in ``directory`` is written (Linux inotify).

    A commit by any process appends to the WAL file, which inotify reports.
    Where inotify is unavailable the watcher falls back to a coarse tick, so
    waits still end, just later.
    """

    TICK_S: Final = 0.25
    #: How long close() waits for the thread before leaving it to finish on its own.
    JOIN_TIMEOUT_S: float = 5.0

    def __init__(self, directory: Path, on_change: Any) -> None:
        self._on_change = on_change
        self._stop_read, self._stop_write = os.pipe()
        self._closing = threading.Lock()
        self._fd = self._open_inotify(directory)
        self._thread = threading.Thread(target=self._run, name="tier0-meta-watch", daemon=True)
        self._thread.start()

    @staticmethod
    def _open_inotify(directory: Path) -> int:
        name = ctypes.util.find_library("c")
        if name is None:
            return -1
        libc = ctypes.CDLL(name, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            return -1
        fd = int(libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK))
        if fd < 0:
            return -1
        mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return -1
        return fd

    def _run(self) -> None:
        # The thread owns the descriptors it reads and closes them itself, once it has
        # stopped using them: closed under a running thread, a number could be reused by
        # the next pipe the process opens (a subprocess's stdout, say), and this loop
        # would drain it.
        try:
            self._watch()
        finally:
            for fd in (self._stop_read, self._fd):
                if fd >= 0:
                    os.close(fd)

    def _watch(self) -> None:
        watched = [self._stop_read] + ([self._fd] if self._fd >= 0 else [])
        while True:
            ready, _, _ = select.select(watched, [], [], None if self._fd >= 0 else self.TICK_S)
            if self._stop_read in ready:
                return
            if self._fd in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._fd, 65536):
                        pass
            self._on_change()

    def close(self) -> None:
        # Closing the write end is the stop signal (the read end sees end of file); a
        # thread slow to notice still closes its own descriptors when it does.
        with self._closing:
            if self._stop_write < 0:
                return  # closed already: the number may be someone else's by now
            os.close(self._stop_write)
            self._stop_write = -1
        self._thread.join(timeout=self.JOIN_TIMEOUT_S)
