"""Tables' metadata: what a table is made of, and the transactions that change it.

A table is a row of ``t0_tables`` (name, Arrow schema, counters) and the
rows of ``t0_table_files`` that list its Parquet data files, each a blob
(`tier0.store.write_blob`) whose chunks the file row references. Every
change is one transaction of the group committer that adds and removes
whole files, moves the table's ``snapshot`` to the change's sequence number,
appends the change's event (``TableCreated``, ``TableRowsInserted``,
``TableRowsUpdated``, ``TableRowsDeleted``, ``TableAltered``,
``TableIndexed``, ``TableDropped``) and records the decision that allowed it, so the catalog,
the event log and the audit log agree with the data at every commit.

A rewrite (update, delete) reads some files and replaces them. It commits
only if every file it read is still part of the table: otherwise a
concurrent rewrite got there first and the change raises `TableConflict`
for its caller to retry on the new snapshot. Appends never conflict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from tier0.db._schema import describe_schema, deserialize_schema, serialize_schema
from tier0.db._vectors import IndexInfo
from tier0.errors import NoSuchTable, TableAlreadyExists, TableConflict
from tier0.identity import Authorizer, Decision
from tier0.meta import Connection, WriteTx, dump_json, load_json
from tier0.store import Blob, emit_event, owned_bucket_row, reference_blob, release_blob

TABLES_PER_BUCKET_MAX: Final = 10_000
FILES_PER_TABLE_MAX: Final = 100_000
TABLE_NAME_BYTES_MAX: Final = 255
#: Tables whose state `TableStates` keeps (a few KB each, more with many files).
TABLE_STATES_MAX: Final = 256


@dataclass(frozen=True)
class TableInfo:
    """A table as of one snapshot."""

    bucket: str
    name: str
    #: The sequence number of the event that created the table: its identity.
    table_id: int
    owner: str
    schema: pa.Schema
    #: The sequence number of the table's last change.
    snapshot: int
    rows: int
    #: Bytes of its data files (Parquet, as stored before chunk compression).
    bytes: int
    #: Rows committed later get rowids from here up.
    next_rowid: int
    created: dt.datetime
    modified: dt.datetime

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.name}"


@dataclass(frozen=True, slots=True)
class DataFile:
    file_id: str
    rows: int
    size: int
    manifest: bytes
    #: The columns the file holds (its schema at write time, less columns dropped since).
    columns: tuple[str, ...]
    #: Row i's rowid is row_base + i; None: the file stores rowids (column ``_rowid``).
    row_base: int | None
    rowid_max: int


@dataclass(frozen=True, slots=True)
class NewFile:
    """A data file written (its blob durable) and ready to be committed.

    ``rowid_max`` None: the rows are new, and the commit numbers them from
    ``row_base`` if given (a transaction numbers its rows as it writes them), else
    from the table's next rowid; otherwise the file stores its rows' rowids, the
    highest being ``rowid_max``.
    """

    file_id: str
    rows: int
    blob: Blob
    columns: tuple[str, ...]
    rowid_max: int | None = None
    row_base: int | None = None


_TABLE_COLUMNS: Final = (
    "t.table_id, t.bucket, t.name, t.owner, t.schema, t.snapshot, t.rows, t.bytes, t.next_rowid,"
    " t.created_us, t.modified_us"
)


def _info(row: Sequence[Any]) -> TableInfo:
    return TableInfo(
        table_id=int(row[0]),
        bucket=row[1],
        name=row[2],
        owner=row[3],
        schema=deserialize_schema(bytes(row[4])),
        snapshot=int(row[5]),
        rows=int(row[6]),
        bytes=int(row[7]),
        next_rowid=int(row[8]),
        created=_time(row[9]),
        modified=_time(row[10]),
    )


def _time(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC)


def load_table(db: Connection, bucket: str, name: str) -> tuple[TableInfo, list[DataFile]]:
    """The table and its files, read in one statement (so one snapshot); `NoSuchTable`."""
    rows = db.query_all(
        f"SELECT {_TABLE_COLUMNS}, f.file_id, f.rows, f.size, f.manifest, f.columns,"
        " f.row_base, f.rowid_max"
        " FROM t0_tables t LEFT JOIN t0_table_files f ON f.table_id = t.table_id"
        " WHERE t.bucket = ? AND t.name = ? ORDER BY f.added_seq, f.file_id",
        (bucket, name),
    )
    if not rows:
        raise NoSuchTable(f"table {bucket}/{name} does not exist")
    files = [_data_file(row[11:]) for row in rows if row[11] is not None]
    return _info(rows[0]), files


class TableStates:
    """The tables read lately in this process (info, files, indexes) by name, reused
    while one indexed read says they are current: a table's files change only with
    its ``snapshot``, and its indexes only with their ``built_seq`` (each new one
    gets a new, higher sequence number). A search at 1M rows spent a fifth of its
    time reading these again. Safe to share between threads."""

    def __init__(self, entries_max: int = TABLE_STATES_MAX) -> None:
        self._entries: OrderedDict[tuple[str, str], _TableState] = OrderedDict()
        self._entries_max = entries_max
        self._lock = threading.Lock()

    def load(self, db: Connection, bucket: str, name: str) -> tuple[TableInfo, list[DataFile]]:
        """`load_table`, from the cache when current; `NoSuchTable`."""
        version = db.query_one(
            "SELECT t.table_id, t.snapshot, (SELECT count(*) FROM t0_table_indexes i"
            " WHERE i.table_id = t.table_id), (SELECT max(i.built_seq) FROM t0_table_indexes i"
            " WHERE i.table_id = t.table_id) FROM t0_tables t WHERE t.bucket = ? AND t.name = ?",
            (bucket, name),
        )
        if version is None:
            raise NoSuchTable(f"table {bucket}/{name} does not exist")
        key = (bucket, name)
        with self._lock:
            state = self._entries.get(key)
            if state is not None and state.version == tuple(version):
                self._entries.move_to_end(key)
                return state.info, list(state.files)
        # Read after the version: if the table changes in between, what is cached is
        # newer than its version says, and the next read loads it again.
        info, files = load_table(db, bucket, name)
        indexes = load_indexes(db, info.table_id)
        with self._lock:
            self._entries[key] = _TableState(tuple(version), info, tuple(files), indexes)
            self._entries.move_to_end(key)
            while len(self._entries) > self._entries_max:
                self._entries.popitem(last=False)
        return info, files

    def indexes(self, info: TableInfo) -> dict[str, IndexInfo] | None:
        """The indexes read with ``info`` by `load` (None if that state is gone)."""
        with self._lock:
            state = self._entries.get((info.bucket, info.name))
        return dict(state.indexes) if state is not None and state.info is info else None


@dataclass(frozen=True)
class _TableState:
    version: tuple[Any, ...]
    info: TableInfo
    files: tuple[DataFile, ...]
    indexes: dict[str, IndexInfo]


def _data_file(row: Sequence[Any]) -> DataFile:
    file_id, rows, size, manifest, columns, row_base, rowid_max = row
    return DataFile(
        file_id=file_id,
        rows=int(rows),
        size=int(size),
        manifest=bytes(manifest),
        columns=tuple(load_json(columns)),
        row_base=None if row_base is None else int(row_base),
        rowid_max=int(rowid_max),
    )


def list_tables(db: Connection, bucket: str) -> list[TableInfo]:
    rows = db.query_all(
        f"SELECT {_TABLE_COLUMNS} FROM t0_tables t WHERE t.bucket = ? ORDER BY t.name", (bucket,)
    )
    return [_info(row) for row in rows]


def create_table(
    tx: WriteTx, bucket: str, name: str, schema: pa.Schema, decision: Decision
) -> TableInfo:
    owned_bucket_row(tx, bucket, decision)
    if tx.query_one("SELECT 1 FROM t0_tables WHERE bucket = ? AND name = ?", (bucket, name)):
        raise TableAlreadyExists(f"table {bucket}/{name} exists already")
    count = tx.query_one("SELECT count(*) FROM t0_tables WHERE bucket = ?", (bucket,))[0]
    if count >= TABLES_PER_BUCKET_MAX:
        raise TableConflict(f"bucket {bucket} holds {count} tables, the most it may")
    seq = tx.next_seq()
    columns = describe_schema(schema)
    tx.execute(
        "INSERT INTO t0_tables (table_id, bucket, name, owner, schema, columns, snapshot, rows,"
        " bytes, next_rowid, created_us, modified_us) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?, ?)",
        (
            seq, bucket, name, decision.principal.id, serialize_schema(schema),
            dump_json(columns), seq, tx.now_us, tx.now_us,
        ),
    )  # fmt: skip
    detail = {"columns": columns}
    emit_event(tx, seq, "TableCreated", bucket, name, None, 0, None, decision, detail)
    Authorizer.record_in(tx, decision)
    return _table_row(tx, bucket, name)


def _table_row(tx: WriteTx, bucket: str, name: str) -> TableInfo:
    row = tx.query_one(
        f"SELECT {_TABLE_COLUMNS} FROM t0_tables t WHERE t.bucket = ? AND t.name = ?",
        (bucket, name),
    )
    if row is None:
        raise NoSuchTable(f"table {bucket}/{name} does not exist")
    return _info(row)


@dataclass(frozen=True)
class Change:
    """What one commit does to a table."""

    event_type: str
    add: tuple[NewFile, ...] = ()
    #: Files the change read and replaces; each must still be live at commit.
    remove: tuple[str, ...] = ()
    #: A new schema (add/drop column), and the columns dropped from every file.
    schema: pa.Schema | None = None
    dropped_columns: tuple[str, ...] = ()
    #: Rows the change affected (inserted, updated, deleted), for the event.
    rows_affected: int = 0
    #: The schema the change was computed from (its files written with, its new
    #: schema derived from). Committing under another one would let a column
    #: dropped meanwhile come back in the added files, or lose a column added
    #: meanwhile from the new schema, so that conflicts instead.
    schema_read: pa.Schema | None = None
    #: The snapshot the change was computed from, when it must still be the table's
    #: (a transaction's changes, whose new rows are numbered from its next rowid).
    snapshot_read: int | None = None
    #: Rowids below this are taken (by rows the change numbered and then rewrote).
    next_rowid: int = 0
    #: Event detail beyond the rows affected (a transaction's counts per kind).
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


def commit_change(
    tx: WriteTx, bucket: str, name: str, table_id: int, change: Change, decision: Decision
) -> TableInfo:
    """Apply ``change`` to the table created as ``table_id``; see the module docstring."""
    owned_bucket_row(tx, bucket, decision)
    current = _table_row(tx, bucket, name)
    if current.table_id != table_id:
        raise TableConflict(f"table {bucket}/{name} was dropped and created again; retry")
    if change.snapshot_read is not None and change.snapshot_read != current.snapshot:
        raise TableConflict(
            f"table {bucket}/{name} changed while this transaction ran; run it again"
        )
    if change.schema_read is not None and not change.schema_read.equals(current.schema):
        raise TableConflict(
            f"the columns of table {bucket}/{name} changed while this {change.event_type} ran;"
            " retry it"
        )
    removed_rows = removed_bytes = 0
    for file_id in change.remove:
        row = tx.query_one(
            "DELETE FROM t0_table_files WHERE table_id = ? AND file_id = ?"
            " RETURNING rows, size, manifest",
            (table_id, file_id),
        )
        if row is None:
            raise TableConflict(
                f"table {bucket}/{name} changed while this {change.event_type} ran; retry it"
            )
        removed_rows += int(row[0])
        removed_bytes += int(row[1])
        release_blob(tx, bytes(row[2]))
    seq = tx.next_seq()
    if change.add:
        files = tx.query_one("SELECT count(*) FROM t0_table_files WHERE table_id = ?", (table_id,))
        if files[0] + len(change.add) > FILES_PER_TABLE_MAX:
            raise TableConflict(
                f"table {bucket}/{name} would have more than {FILES_PER_TABLE_MAX} data files:"
                " insert in larger batches"
            )
    next_rowid = current.next_rowid
    for new in change.add:
        row_base = None
        rowid_max = new.rowid_max
        if rowid_max is None and new.row_base is not None:  # numbered by a transaction
            row_base, rowid_max = new.row_base, new.row_base + new.rows - 1
            next_rowid = max(next_rowid, rowid_max + 1)
        elif rowid_max is None:  # new rows: numbered here, so rowids grow in commit order
            row_base, next_rowid = next_rowid, next_rowid + new.rows
            rowid_max = next_rowid - 1
        tx.execute(
            "INSERT INTO t0_table_files (table_id, file_id, rows, size, manifest, columns,"
            " row_base, rowid_max, added_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                table_id, new.file_id, new.rows, new.blob.size, new.blob.manifest,
                dump_json(list(new.columns)), row_base, rowid_max, seq,
            ),
        )  # fmt: skip
        reference_blob(tx, new.blob)
    if change.dropped_columns:
        _drop_columns_from_files(tx, table_id, change.dropped_columns)
        for column in change.dropped_columns:
            _drop_index(tx, table_id, column)
    next_rowid = max(next_rowid, change.next_rowid)
    schema = change.schema or current.schema
    rows = current.rows - removed_rows + sum(new.rows for new in change.add)
    size = current.bytes - removed_bytes + sum(new.blob.size for new in change.add)
    tx.execute(
        "UPDATE t0_tables SET schema = ?, columns = ?, snapshot = ?, rows = ?, bytes = ?,"
        " next_rowid = ?, modified_us = ? WHERE table_id = ?",
        (
            serialize_schema(schema), dump_json(describe_schema(schema)), seq, rows, size,
            next_rowid, tx.now_us, table_id,
        ),
    )  # fmt: skip
    detail: dict[str, Any] = {"rows": change.rows_affected, "snapshot": seq, **change.detail}
    if change.schema is not None:
        detail["columns"] = describe_schema(schema)
    emit_event(tx, seq, change.event_type, bucket, name, None, rows, None, decision, detail)
    Authorizer.record_in(tx, decision)
    return _table_row(tx, bucket, name)


def _drop_columns_from_files(tx: WriteTx, table_id: int, dropped: Sequence[str]) -> None:
    """Forget dropped columns in every file, so that a column added later under the
    same name starts empty instead of showing the old values."""
    gone = {name.lower() for name in dropped}
    for file_id, columns in tx.query_all(
        "SELECT file_id, columns FROM t0_table_files WHERE table_id = ?", (table_id,)
    ):
        kept = [c for c in load_json(columns) if c.lower() not in gone]
        tx.execute(
            "UPDATE t0_table_files SET columns = ? WHERE table_id = ? AND file_id = ?",
            (dump_json(kept), table_id, file_id),
        )


def drop_table(tx: WriteTx, bucket: str, name: str, decision: Decision) -> None:
    owned_bucket_row(tx, bucket, decision)
    current = _table_row(tx, bucket, name)
    for (manifest,) in tx.query_all(
        "DELETE FROM t0_table_files WHERE table_id = ? RETURNING manifest", (current.table_id,)
    ):
        release_blob(tx, bytes(manifest))
    _drop_index(tx, current.table_id)
    tx.execute("DELETE FROM t0_tables WHERE table_id = ?", (current.table_id,))
    seq = tx.next_seq()
    detail = {"rows": current.rows}
    emit_event(tx, seq, "TableDropped", bucket, name, None, None, None, decision, detail)
    Authorizer.record_in(tx, decision)


# -- vector indexes --------------------------------------------------------------------------


def load_indexes(db: Connection, table_id: int) -> dict[str, IndexInfo]:
    rows = db.query_all(
        "SELECT column_name, metric, params, rows, rowid_max, size, manifest, built_seq"
        " FROM t0_table_indexes WHERE table_id = ?",
        (table_id,),
    )
    return {
        row[0]: IndexInfo(
            column=row[0],
            metric=row[1],
            params=load_json(row[2]),
            rows=int(row[3]),
            rowid_max=int(row[4]),
            size=int(row[5]),
            manifest=bytes(row[6]),
            built_seq=int(row[7]),
        )
        for row in rows
    }


def save_index(
    tx: WriteTx,
    bucket: str,
    name: str,
    table_id: int,
    index: IndexInfo,
    blob: Blob,
    decision: Decision,
) -> int:
    """Install ``index`` (its bytes in ``blob``) for its column, replacing any other;
    returns the sequence number it was built at (its ``built_seq``)."""
    owned_bucket_row(tx, bucket, decision)
    current = _table_row(tx, bucket, name)
    if current.table_id != table_id:
        raise TableConflict(f"table {bucket}/{name} was dropped and created again; retry")
    if index.column not in current.schema.names:
        raise TableConflict(f"column {index.column!r} of {bucket}/{name} was dropped meanwhile")
    _drop_index(tx, table_id, index.column)
    seq = tx.next_seq()
    tx.execute(
        "INSERT INTO t0_table_indexes (table_id, column_name, metric, params, rows, rowid_max,"
        " size, manifest, built_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            table_id, index.column, index.metric, dump_json(index.params), index.rows,
            index.rowid_max, blob.size, blob.manifest, seq,
        ),
    )  # fmt: skip
    reference_blob(tx, blob)
    detail = {"column": index.column, "metric": index.metric, "rows": index.rows}
    emit_event(tx, seq, "TableIndexed", bucket, name, None, None, None, decision, detail)
    Authorizer.record_in(tx, decision)
    return seq


def _drop_index(tx: WriteTx, table_id: int, column: str | None = None) -> None:
    """Drop the index of ``column`` (every index of the table when None)."""
    if column is None:
        rows = tx.query_all(
            "DELETE FROM t0_table_indexes WHERE table_id = ? RETURNING manifest", (table_id,)
        )
    else:
        rows = tx.query_all(
            "DELETE FROM t0_table_indexes WHERE table_id = ? AND column_name = ?"
            " RETURNING manifest",
            (table_id, column),
        )
    for (manifest,) in rows:
        release_blob(tx, bytes(manifest))
