"""A columnar copy of the catalog's large views, kept current from the event log.

Catalog analytics (group by prefix, top-N, filtered counts over millions of
objects) scan, and a row store scans slowly: SQLite takes seconds to group
ten million objects by a key prefix where DuckDB takes a tenth of a second on
the same machine (benchmarks/bench_analytics.py). So the DataBase's engine
keeps a copy of ``versions`` (and so ``objects``), ``prefixes`` and
``events`` in a DuckDB file — a cache, never the truth — and brings it up to
date before every query that reads one of them:

- up to the latest committed ``seq`` read when the query starts, so a query
  sees every write that returned before it (read-your-writes);
- incrementally from the event log (``t0_events``: gap-free, in commit order,
  written in the mutation's own transaction): the keys the new events name
  are read again from the metadata (all their versions, and the prefix rows
  above them) and replace the copy's rows for those keys, found through an
  index on the copy. Nothing is scanned;
- from scratch (bulk reads into Arrow, `MetaBackend.read_arrow`) the first
  time, and when it is more than ``FULL_LOAD_EVENTS`` behind.

Rows read for a key may be newer than the target ``seq`` (a write committed
in between). That is harmless: the newer write's event is after the target,
so the next catch-up reads that key again. The copy is never behind the
target for any key, and it converges. Its ``seq`` is committed with its rows,
so a copy left by a closed (or killed) process is adopted by the next one and
caught up from there (`ReplicaFile`), if it was made from the same metadata
(``store_id``).

The copy holds every bucket's rows; a query reads them through `relation`,
which keeps to the buckets its principal may list.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from tier0.meta import MetaBackend
from tier0.store import key_prefixes

#: The catalog views the copy answers; the others are small enough to read per query.
REPLICATED_VIEWS: Final = ("objects", "versions", "prefixes", "events")
#: Behind by more events than this, the copy is rebuilt instead of caught up.
FULL_LOAD_EVENTS: Final = 200_000
#: A build reads through `MetaBackend.read_arrow` (bulk, in C; a child process
#: on SQLite, ~0.5 s to start) past this many events, and Python rows below.
BULK_READ_EVENTS: Final = 50_000
#: Keys per statement while catching up (SQLite's host parameters: 32,766 at most).
KEYS_PER_READ: Final = 500
SCHEMA: Final = "t0_replica"

_TIME = "make_timestamp({})"
# name, DuckDB type, the metadata column (and how to convert it in DuckDB).
_VERSIONS: Final = (
    ("bucket", "VARCHAR", "bucket"), ("key", "VARCHAR", "key"),
    ("version_id", "VARCHAR", "version_id"), ("is_latest", "BIGINT", "is_latest"),
    ("is_delete_marker", "BIGINT", "is_delete_marker"), ("size", "BIGINT", "size"),
    ("stored_bytes", "BIGINT", "stored_bytes"), ("etag", "VARCHAR", "etag"),
    ("content_type", "VARCHAR", "content_type"), ("created", "TIMESTAMP", "created_us"),
    ("modified", "TIMESTAMP", "modified_us"), ("owner", "VARCHAR", "owner"),
    ("metadata", "JSON", "metadata"), ("tags", "JSON", "tags"),
    ("checksum", "VARCHAR", "checksum"), ("seq", "BIGINT", "seq"),
)  # fmt: skip
_PREFIXES: Final = (
    ("bucket", "VARCHAR", "bucket"), ("prefix", "VARCHAR", "prefix"),
    ("depth", "BIGINT", "depth"), ("objects", "BIGINT", "objects"), ("bytes", "BIGINT", "bytes"),
)  # fmt: skip
_EVENTS: Final = (
    ("seq", "BIGINT", "seq"), ("type", "VARCHAR", "type"), ("bucket", "VARCHAR", "bucket"),
    ("key", "VARCHAR", "key"), ("version_id", "VARCHAR", "version_id"),
    ("size", "BIGINT", "size"), ("etag", "VARCHAR", "etag"),
    ("principal", "VARCHAR", "principal"), ("time", "TIMESTAMP", "time_us"),
    ("detail", "JSON", "detail"),
)  # fmt: skip
_TABLES: Final = {"versions": _VERSIONS, "prefixes": _PREFIXES, "events": _EVENTS}
#: The metadata columns that may be NULL (only events of buckets lack a version).
_NULLABLE: Final = frozenset({"version_id", "size", "etag"})
#: How each copied table is made of the metadata's columns (times are microseconds).
_PROJECTION: Final = {
    table: ", ".join(_TIME.format(name) if kind == "TIMESTAMP" else name for name, kind, _ in spec)
    for table, spec in _TABLES.items()
}
#: Rows read by Python are inserted one prepared statement each up to this many.
ROWS_PER_INSERT: Final = 100
#: The column a catch-up finds rows by (with ``bucket``), indexed in the copy.
_INDEXED: Final = {"versions": "key", "prefixes": "prefix"}
_ARROW: Final = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "TIMESTAMP": pa.int64(),
                 "JSON": pa.string()}  # fmt: skip
#: The views over the copied tables, as the metadata backend defines them.
_VIEWS: Final = {
    "versions": ", ".join(name for name, _, _ in _VERSIONS) + f" FROM {SCHEMA}.versions",
    "objects": ", ".join(name for name, _, _ in _VERSIONS if name not in
                         ("is_latest", "is_delete_marker"))
    + f" FROM {SCHEMA}.versions WHERE is_latest = 1 AND is_delete_marker = 0",
    "prefixes": ", ".join(name for name, _, _ in _PREFIXES)
    + f" FROM {SCHEMA}.prefixes WHERE objects > 0",
    "events": ", ".join(name for name, _, _ in _EVENTS) + f" FROM {SCHEMA}.events",
}  # fmt: skip


@dataclass(frozen=True)
class ReplicaStatistics:
    #: The ``seq`` the copy is current to (0: never loaded).
    seq: int
    versions: int
    prefixes: int
    events: int
    full_loads: int
    catch_ups: int
    keys_read: int
    #: Wall time spent bringing the copy up to date, loads included.
    sync_s_total: float


@dataclass(frozen=True)
class ReplicaCheck:
    """The copy against the metadata, both at ``seq`` (taken while no write committed)."""

    seq: int
    #: (relation, rows in the copy, rows in the metadata) where they differ.
    differences: list[tuple[str, int, int]]

    @property
    def ok(self) -> bool:
        return not self.differences


class ReplicaFile:
    """A DuckDB file for a copy, under ``directory``, locked while a process has it open.

    Closing a store leaves its copy behind for the next process, which adopts
    any file whose lock no process holds (a crashed process's too) and catches
    it up from its ``seq``: a catalog is copied once, not once per process.
    Files beyond the one adopted are deleted.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        free = self._free(directory)
        if free:
            self._lock_fd, stem = free.pop(0)
        else:
            stem = f"catalog-{secrets.token_hex(8)}"
            self._lock_fd = os.open(directory / f"{stem}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        for fd, other in free:
            self._delete(directory, other)
            os.close(fd)
        self.path = directory / f"{stem}.duckdb"
        self._lock_path = directory / f"{stem}.lock"

    @staticmethod
    def _free(directory: Path) -> list[tuple[int, str]]:
        """(locked fd, stem) of the files no process holds, the newest first."""
        found = []
        for lock in directory.glob("catalog-*.lock"):
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process has it
                continue
            stem = lock.name.removesuffix(".lock")
            data = directory / f"{stem}.duckdb"
            found.append((data.stat().st_mtime if data.exists() else 0.0, fd, stem))
        found.sort(reverse=True)
        return [(fd, stem) for _, fd, stem in found]

    @staticmethod
    def _delete(directory: Path, stem: str) -> None:
        for name in (f"{stem}.duckdb", f"{stem}.duckdb.wal", f"{stem}.lock"):
            (directory / name).unlink(missing_ok=True)

    def discard(self) -> None:
        """Empty the file (unreadable, say) so that a new copy is built in its place."""
        for path in (self.path, Path(f"{self.path}.wal")):
            path.unlink(missing_ok=True)

    def release(self) -> None:
        """Let another process adopt the file (after DuckDB closed it)."""
        os.close(self._lock_fd)


class CatalogReplica:
    """The copy; `sync` before reading a `relation`. Safe to share between threads."""

    def __init__(self, meta: MetaBackend, connection: duckdb.DuckDBPyConnection) -> None:
        # ``connection`` has the copy attached as SCHEMA; writes go through cursors
        # of it, serialized by the lock (queries read snapshots meanwhile).
        self._meta = meta
        self._connection = connection
        self._store_id = meta.store_id()
        self._columns = {
            table: ", ".join(
                f"{column}::text" if kind == "JSON" and meta.dialect == "postgres" else column
                for _, kind, column in spec
            )
            for table, spec in _TABLES.items()
        }  # fmt: skip
        self._lock = threading.Lock()
        self._full_loads = self._catch_ups = self._keys_read = 0
        self._sync_s = 0.0
        with self._cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.state (store_id VARCHAR, seq BIGINT)"
            )
            cursor.execute(
                f"INSERT INTO {SCHEMA}.state SELECT '', 0"
                f" WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.state)"
            )
            state = cursor.execute(f"SELECT store_id, seq FROM {SCHEMA}.state").fetchall()
        #: Loaded from this metadata and current to ``_seq``; otherwise built on first use.
        self._loaded = bool(state) and state[0][0] == self._store_id
        self._seq = int(state[0][1]) if self._loaded else 0

    @staticmethod
    def relation(view: str, buckets: Sequence[str] | None) -> str:
        """SQL of ``view``'s rows in ``buckets`` (None: all)."""
        sql = f"SELECT {_VIEWS[view]}"
        if buckets is None:
            return sql
        listed = ", ".join("'" + name.replace("'", "''") + "'" for name in buckets) or "NULL"
        joiner = " AND " if " WHERE " in sql else " WHERE "
        return f"{sql}{joiner}bucket IN ({listed})"

    def sync(self) -> int:
        """Bring the copy up to the latest committed ``seq``; returns that ``seq``."""
        with self._lock:
            started = time.monotonic()
            target = self._latest_seq()
            if not self._loaded or not 0 <= target - self._seq <= FULL_LOAD_EVENTS:
                # (behind the copy: the metadata was restored to an older state)
                self._load(target)
                self._full_loads += 1
            elif target > self._seq:
                self._catch_up(target)
                self._catch_ups += 1
            self._sync_s += time.monotonic() - started
            return self._seq

    def statistics(self) -> ReplicaStatistics:
        with self._lock:
            counts = {table: self._count(table) for table in _TABLES}
            return ReplicaStatistics(
                seq=self._seq, **counts, full_loads=self._full_loads,
                catch_ups=self._catch_ups, keys_read=self._keys_read, sync_s_total=self._sync_s,
            )  # fmt: skip

    def check(self) -> ReplicaCheck:
        """Row counts of the copy against the metadata's, after a `sync`.

        Exact while no write commits between the sync and the counts; retried
        once if one did, so a busy store reports a difference only if it lasts.
        """
        for _ in range(2):
            seq = self.sync()
            with self._lock:
                with self._meta.reader() as db:
                    theirs = {
                        "versions": int(db.query_one("SELECT count(*) FROM t0_versions")[0]),
                        "prefixes": int(db.query_one("SELECT count(*) FROM t0_prefixes")[0]),
                        "events": int(
                            db.query_one("SELECT count(*) FROM t0_events WHERE seq <= ?", (seq,))[0]
                        ),
                    }
                    quiet = self._latest_seq() == seq
                ours = {table: self._count(table) for table in _TABLES}
            differences = [(t, ours[t], theirs[t]) for t in _TABLES if ours[t] != theirs[t]]
            if quiet or not differences:
                break
        return ReplicaCheck(seq, differences)

    # -- building and catching up ---------------------------------------------------------

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = self._connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    @contextlib.contextmanager
    def _transaction(self, seq: int) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB transaction that leaves the copy current to ``seq``."""
        with self._cursor() as cursor:
            cursor.execute("BEGIN")
            try:
                yield cursor
                cursor.execute(
                    f"UPDATE {SCHEMA}.state SET store_id = ?, seq = ?", (self._store_id, seq)
                )
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        self._seq = seq

    def _latest_seq(self) -> int:
        with self._meta.reader() as db:
            return int(db.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0])

    def _load(self, target: int) -> None:
        """Build every table from the metadata (``target`` was read before any row).

        Each table is read by one statement (one snapshot of it); rows that
        changed after ``target`` are named by later events, read by the next sync.
        """
        with self._transaction(target) as cursor:
            for table, spec in _TABLES.items():
                cursor.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
                cursor.execute(
                    f"CREATE TABLE {SCHEMA}.{table}"
                    f" ({', '.join(f'{name} {kind}' for name, kind, _ in spec)})"
                )
                bound = f" WHERE seq <= {int(target)}" if table == "events" else ""
                sql = f"SELECT {self._columns[table]} FROM t0_{table}{bound}"
                if target <= BULK_READ_EVENTS:  # small: Python rows cost less than a bulk read
                    with self._meta.reader() as db:
                        rows = db.query_all(sql)
                    self._insert_rows(cursor, table, rows)
                else:
                    schema = pa.schema([
                        pa.field(name, _ARROW[kind], column in _NULLABLE)
                        for name, kind, column in spec
                    ])  # fmt: skip
                    batches = self._meta.read_arrow(sql, schema)
                    # One INSERT consuming the stream: DuckDB's per-statement cost is paid once.
                    self._insert(cursor, table, pa.RecordBatchReader.from_batches(schema, batches))
                # Built after the rows (10x faster than row by row): what a catch-up's
                # deletes look keys up in, instead of scanning every row.
                if table in _INDEXED:
                    cursor.execute(
                        f"CREATE INDEX {table}_by_name ON {SCHEMA}.{table} ({_INDEXED[table]})"
                    )
        # Into the file now: DuckDB left the build in its WAL (as large as the copy),
        # which the next process to open the file would replay.
        with self._cursor() as cursor:
            cursor.execute(f"CHECKPOINT {SCHEMA}")
        self._loaded = True

    def _catch_up(self, target: int) -> None:
        """Apply the events in (copy's seq, ``target``]: re-read the keys they name."""
        with self._meta.reader() as db:
            events = db.query_all(
                f"SELECT {self._columns['events']} FROM t0_events WHERE seq > ? AND seq <= ?"
                " ORDER BY seq",
                (self._seq, target),
            )
            keys: dict[str, set[str]] = {}
            removed: set[str] = set()
            for _, kind, bucket, key, *_ in events:
                if kind.startswith("Object"):
                    keys.setdefault(bucket, set()).add(key)
                elif kind == "BucketRemoved":
                    removed.add(bucket)
            named = {bucket: sorted(names) for bucket, names in keys.items()}
            above = {
                bucket: sorted({p for key in names for p in key_prefixes(key)})
                for bucket, names in keys.items()
            }
            versions = self._read_named(db, "versions", named)
            prefixes = self._read_named(db, "prefixes", above)
        self._keys_read += sum(len(names) for names in named.values())
        with self._transaction(target) as cursor:
            for table, by_bucket in (("versions", named), ("prefixes", above)):
                for bucket, names in by_bucket.items():
                    for start in range(0, len(names), KEYS_PER_READ):
                        chunk = names[start : start + KEYS_PER_READ]
                        cursor.execute(
                            f"DELETE FROM {SCHEMA}.{table} WHERE {_INDEXED[table]}"
                            f" IN ({', '.join('?' * len(chunk))}) AND bucket = ?",
                            (*chunk, bucket),
                        )
            for bucket in removed:
                for table in ("versions", "prefixes"):
                    cursor.execute(f"DELETE FROM {SCHEMA}.{table} WHERE bucket = ?", (bucket,))
            for table, rows in (("versions", versions), ("prefixes", prefixes), ("events", events)):
                self._insert_rows(cursor, table, rows)

    def _read_named(self, db: Any, table: str, by_bucket: dict[str, list[str]]) -> list[Any]:
        """The rows of ``table`` whose bucket and key (or prefix) are in ``by_bucket``."""
        rows: list[Any] = []
        for bucket, names in by_bucket.items():
            for start in range(0, len(names), KEYS_PER_READ):
                chunk = names[start : start + KEYS_PER_READ]
                rows += db.query_all(
                    f"SELECT {self._columns[table]} FROM t0_{table} WHERE bucket = ?"
                    f" AND {_INDEXED[table]} IN ({', '.join('?' * len(chunk))})",
                    (bucket, *chunk),
                )
        return rows

    @staticmethod
    def _insert(
        cursor: duckdb.DuckDBPyConnection, table: str, rows: pa.Table | pa.RecordBatchReader
    ) -> None:
        cursor.register("t0_batch", rows)
        cursor.execute(f"INSERT INTO {SCHEMA}.{table} SELECT {_PROJECTION[table]} FROM t0_batch")
        cursor.unregister("t0_batch")

    def _insert_rows(
        self, cursor: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Any]
    ) -> None:
        """Rows read by Python: a prepared INSERT for a few (scanning Arrow costs ~10 ms
        a statement), Arrow for many."""
        if len(rows) > ROWS_PER_INSERT:
            self._insert(cursor, table, _arrow_rows(table, rows))
        elif rows:
            values = ", ".join(
                _TIME.format("?") if kind == "TIMESTAMP" else "?" for _, kind, _ in _TABLES[table]
            )
            cursor.executemany(f"INSERT INTO {SCHEMA}.{table} VALUES ({values})", rows)

    def _count(self, table: str) -> int:
        with self._cursor() as cursor:
            (count,) = cursor.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchall()[0]
            return int(count)


def _arrow_rows(table: str, rows: Sequence[Any]) -> pa.Table:
    """Rows read by Python as an Arrow table of ``table``'s columns."""
    values = list(zip(*rows, strict=True))
    return pa.table({
        name: pa.array(values[index], _ARROW[kind])
        for index, (name, kind, _) in enumerate(_TABLES[table])
    })  # fmt: skip
