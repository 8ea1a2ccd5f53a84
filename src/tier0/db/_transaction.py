"""Transactions: several statements over tables, committed at once or not at all.

A table's change is copy-on-write (new Parquet files in the store, a metadata
commit that swaps them in), so a transaction needs no locks and no undo: its
statements write their files as usual, but instead of committing, each change
is staged here, on the transaction's own view of the table (``Pending``),
which the transaction's later statements read (they see their own writes).
`Transaction.commit` then applies every table's staged changes in one
metadata transaction, with their events and audit records, or none of them.

Isolation is snapshot isolation with first-committer-wins, as PostgreSQL's
REPEATABLE READ: each table is read as of the transaction's first look at
it, and a table the transaction writes must be unchanged at commit, or the
commit raises `TableConflict` and changes nothing (run the transaction
again). New rows are numbered as they are written (from the table's next
rowid as first read), which the commit keeps: the table is unchanged, so
those rowids are still free.

DDL (CREATE, ALTER, DROP TABLE, index builds) is not transactional here: it
is refused inside a transaction. The files a transaction wrote and did not
commit are garbage, collected after the grace period; so a transaction must
commit within half of it (`age_s_max`), or it is refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from tier0.db import _tables
from tier0.db._tables import Change, DataFile, NewFile, TableInfo
from tier0.errors import SQLNotAllowed, TableConflict
from tier0.store import StaleOwner

if TYPE_CHECKING:
    from tier0.db._database import Database
    from tier0.identity import Decision

#: Tables one transaction may write.
TABLES_MAX: Final = 64
#: Overlay snapshots are negative and never repeat: caches keyed by snapshot
#: (`tier0.db._search`) must not mistake a transaction's view for a committed one.
_overlay_snapshots = itertools.count(-1, -1)
_overlay_lock = threading.Lock()


@dataclasses.dataclass
class Pending:
    """One table as a transaction sees it: as first read, plus its staged changes."""

    read: TableInfo
    info: TableInfo
    files: list[DataFile]
    #: Files the transaction wrote that are still part of its view, in order.
    added: dict[str, NewFile] = dataclasses.field(default_factory=dict)
    #: Files of the table as read that the transaction replaced.
    removed: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    decision: Decision | None = None


class Transaction:
    """The staged state of one transaction; used through a `Database` bound to it."""

    def __init__(self, database: Database, *, age_s_max: float) -> None:
        self._database = database
        self._tables: dict[tuple[str, str], Pending] = {}
        self._started = time.monotonic()
        self._age_s_max = age_s_max
        self._lock = threading.Lock()
        self.closed = False

    def readable(self, bucket: str, name: str) -> tuple[TableInfo, list[DataFile]]:
        """The table as this transaction sees it (authorized as a read each time)."""
        self._check_open()
        database = self._database
        database._store.authorize_element_read("tier0:ReadTable", bucket, name)
        with self._lock:
            pending = self._tables.get((bucket, name))
        if pending is None:
            with database._store._kernel.meta.reader() as db:
                info, files = database._engine.tables.load(db, bucket, name)
            with self._lock:
                pending = self._tables.setdefault((bucket, name), Pending(info, info, list(files)))
        return pending.info, list(pending.files)

    def stage(self, bucket: str, name: str, action: str, change: Change) -> TableInfo:
        """Apply ``change`` to this transaction's view of the table; the view after it."""
        self._check_open()
        if change.schema is not None or change.dropped_columns:
            raise SQLNotAllowed("ALTER TABLE is not transactional: run it outside BEGIN ... COMMIT")
        decision = self._database._store.authorize_element_write(action, bucket, name)
        with self._lock:
            pending = self._tables.get((bucket, name))
            if pending is None:  # every write reads the table first
                raise TableConflict(f"table {bucket}/{name} was not read by this transaction")
            written = sum(1 for p in self._tables.values() if p.added or p.removed)
            if not (pending.added or pending.removed) and written >= TABLES_MAX:
                raise SQLNotAllowed(f"a transaction writes at most {TABLES_MAX} tables")
            next_rowid = pending.info.next_rowid
            files = {file.file_id: file for file in pending.files}
            for file_id in change.remove:
                if files.pop(file_id, None) is None:
                    raise TableConflict(f"table {bucket}/{name}: file {file_id} is not live")
                if pending.added.pop(file_id, None) is None:
                    pending.removed.append(file_id)  # a file of the table as read
            for new in change.add:
                if new.rowid_max is None:  # new rows: numbered now, kept by the commit
                    new = dataclasses.replace(new, row_base=next_rowid)
                    next_rowid += new.rows
                pending.added[new.file_id] = new
                files[new.file_id] = _data_file(new)
            pending.files = list(files.values())
            pending.counts[change.event_type] = (
                pending.counts.get(change.event_type, 0) + change.rows_affected
            )
            pending.decision = decision
            with _overlay_lock:
                snapshot = next(_overlay_snapshots)
            pending.info = dataclasses.replace(
                pending.info,
                snapshot=snapshot,
                rows=sum(file.rows for file in pending.files),
                bytes=sum(file.size for file in pending.files),
                next_rowid=next_rowid,
            )
            return pending.info

    def commit(self) -> list[TableInfo]:
        """Apply every staged change in one metadata transaction; the tables after it.

        `TableConflict` (nothing applied) if a table written here changed since this
        transaction first read it, or if the transaction is older than ``age_s_max``.
        """
        self._check_open()
        self.closed = True
        age_s = time.monotonic() - self._started
        if age_s > self._age_s_max:
            raise TableConflict(
                f"the transaction ran {age_s:.0f} s, longer than {self._age_s_max:.0f} s:"
                " files it wrote may have been collected; run it again"
            )
        written = [(key, p) for key, p in self._tables.items() if p.added or p.removed]
        if not written:
            return []
        changes = [(key, p, _change(p)) for key, p in written]

        def apply(decisions: Sequence[Decision]) -> Any:
            def op(tx: Any) -> list[TableInfo]:
                return [
                    _tables.commit_change(tx, bucket, name, p.read.table_id, change, decision)
                    for ((bucket, name), p, change), decision in zip(
                        changes, decisions, strict=True
                    )
                ]

            return op

        store = self._database._store
        decisions = [p.decision for _, p, _ in changes]
        assert all(decision is not None for decision in decisions)
        try:
            return list(store._kernel.committer.run(apply(decisions)))  # type: ignore[arg-type]
        except StaleOwner:  # a bucket changed owner since a write was decided
            for (bucket, _), _p, _c in changes:
                store._kernel.owners.pop(bucket, None)
            fresh = [
                store.authorize_element_write("tier0:WriteTable", bucket, name)
                for (bucket, name), _, _ in changes
            ]
            return list(store._kernel.committer.run(apply(fresh)))

    def rollback(self) -> None:
        """Forget the staged changes (the files written become garbage)."""
        self.closed = True
        self._tables.clear()

    def _check_open(self) -> None:
        if self.closed:
            raise SQLNotAllowed("the transaction is over: start another")


def _data_file(new: NewFile) -> DataFile:
    rowid_max = new.rowid_max
    if rowid_max is None:
        assert new.row_base is not None
        rowid_max = new.row_base + new.rows - 1
    return DataFile(
        file_id=new.file_id,
        rows=new.rows,
        size=new.blob.size,
        manifest=new.blob.manifest,
        columns=new.columns,
        row_base=new.row_base if new.rowid_max is None else None,
        rowid_max=rowid_max,
    )


def _change(pending: Pending) -> Change:
    """The one change that takes the table as read to the transaction's view."""
    kinds = [kind for kind, _ in pending.counts.items()]
    event_type = kinds[0] if len(kinds) == 1 else "TableRowsChanged"
    return Change(
        event_type,
        add=tuple(pending.added.values()),
        remove=tuple(pending.removed),
        rows_affected=sum(pending.counts.values()),
        schema_read=pending.read.schema,
        snapshot_read=pending.read.snapshot,
        next_rowid=pending.info.next_rowid,
        detail={"transaction": dict(pending.counts)} if len(kinds) > 1 else {},
    )
