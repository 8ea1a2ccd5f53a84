"""The Python table API (`tier0.db.Table`) on a real store, on both metadata backends.

Each test opens a store through the ``t0`` fixture (SQLite and PostgreSQL),
so tables are real Parquet files in the element store, listed by real
metadata transactions and read by the real DuckDB engine. Every change is
followed by ``check()``: the chunk references tables hold must add up.
"""

from __future__ import annotations

import json
import pathlib
import queue
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pytest

import tier0
from tests.db.crash_inserter import BATCH_ROWS
from tests.processes import ROOT, python_env
from tier0.db import Table
from tier0.db._tables import Change
from tier0.errors import (
    AccessDenied,
    InvalidArgument,
    NoSuchBucket,
    NoSuchTable,
    TableAlreadyExists,
    TableConflict,
    TableSchemaError,
)

BUCKET = "bkt"
DOCS = f"{BUCKET}/docs"
SCHEMA = {"id": "BIGINT", "text": "VARCHAR", "n": "INT"}
T = TypeVar("T")


@pytest.fixture
def docs(t0: tier0.Tier0) -> Table:
    """Table ``bkt/docs`` (id, text, n), empty."""
    t0.create_bucket(BUCKET)
    return t0.create_table(DOCS, SCHEMA)


def _rows(table: Table, **options: Any) -> list[dict[str, Any]]:
    return sorted(table.to_arrow(**options).to_pylist(), key=lambda row: row["id"])


def _fill(table: Table, ids: range, *, n: int | None = 0) -> None:
    table.insert({"id": list(ids), "text": [f"t{i}" for i in ids], "n": [n] * len(ids)})


def _assert_clean(t0: tier0.Tier0) -> None:
    report = t0.check(deep=True)
    assert report.ok, report.problems


def _table_events(t0: tier0.Tier0, after: int, name: str = "docs") -> list[Any]:
    return [e for e in t0.events.read(after) if e.type.startswith("Table") and e.key == name]


# --- create, list, drop -------------------------------------------------------------------


def test_create_table_starts_empty_with_its_schema(t0: tier0.Tier0, docs: Table) -> None:
    info = docs.info()
    assert (info.bucket, info.name, info.path) == (BUCKET, "docs", DOCS)
    assert info.schema.names == ["id", "text", "n"]
    assert info.schema.field("id").type == pa.int64()
    assert (info.rows, info.bytes) == (0, 0)
    assert info.owner == t0.principal.id
    assert docs.count() == 0
    assert docs.to_arrow().num_rows == 0
    assert docs.to_arrow().schema.names == ["id", "text", "n"]


def test_create_table_existing_raises_unless_exist_ok(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(3))
    with pytest.raises(TableAlreadyExists):
        t0.create_table(DOCS, {"other": "INT"})
    again = t0.create_table(DOCS, {"other": "INT"}, exist_ok=True)
    # exist_ok returns the table as it is, not one made to the new schema.
    assert again.schema.names == ["id", "text", "n"]
    assert again.count() == 3


@pytest.mark.parametrize(
    "path",
    [
        "docs",
        "bkt/a/b",
        "bkt/",
        "/docs",
        "bkt/x\ty",
        "b/docs",
        "Bad_Bucket/docs",
        "bkt/" + "x" * 256,
    ],
)
def test_create_table_refuses_bad_names(t0: tier0.Tier0, path: str) -> None:
    t0.create_bucket(BUCKET)
    with pytest.raises(InvalidArgument):
        t0.create_table(path, SCHEMA)
    assert t0.db.tables(BUCKET) == []


def test_create_table_refuses_a_bad_schema(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    with pytest.raises(InvalidArgument):
        t0.create_table(DOCS, {"id": "INT); DROP TABLE x; --"})
    with pytest.raises(NoSuchTable):
        t0.table(DOCS)


def test_create_table_in_a_missing_bucket_raises(t0: tier0.Tier0) -> None:
    with pytest.raises(NoSuchBucket):
        t0.create_table("nobucket/docs", SCHEMA)


def test_create_table_accepts_names_that_need_quoting(t0: tier0.Tier0) -> None:
    t0.create_bucket("my-bucket")
    table = t0.create_table("my-bucket/my docs.v2", {"select": "INT"})
    assert table.insert([{"select": 5}]) == 1
    assert table.to_arrow().to_pylist() == [{"select": 5}]
    assert t0.sql('SELECT "select" FROM "my-bucket"."my docs.v2"').rows == [(5,)]


def test_tables_lists_a_buckets_tables_by_name(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    t0.create_bucket("other")
    for name in ("zeta", "alpha", "mid"):
        t0.create_table(f"{BUCKET}/{name}", SCHEMA)
    t0.create_table("other/elsewhere", SCHEMA)
    _fill(t0.table(f"{BUCKET}/mid"), range(4))
    infos = t0.db.tables(BUCKET)
    assert [info.name for info in infos] == ["alpha", "mid", "zeta"]
    assert [info.rows for info in infos] == [0, 4, 0]
    assert [info.name for info in t0.db.tables("other")] == ["elsewhere"]


def test_drop_table_removes_it_and_missing_ok_allows_absence(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(5))
    t0.db.drop_table(DOCS)
    with pytest.raises(NoSuchTable):
        t0.table(DOCS)
    with pytest.raises(NoSuchTable):
        docs.count()
    with pytest.raises(NoSuchTable):
        t0.db.drop_table(DOCS)
    t0.db.drop_table(DOCS, missing_ok=True)
    assert t0.db.tables(BUCKET) == []
    # A table created again under the name starts empty.
    assert t0.create_table(DOCS, SCHEMA).count() == 0
    _assert_clean(t0)


# --- insert -------------------------------------------------------------------------------

_INSERTED = [{"id": 1, "text": "a", "n": 10}, {"id": 2, "text": None, "n": 20}]


@pytest.mark.parametrize(
    "data",
    [
        pa.table({"id": [1, 2], "text": ["a", None], "n": [10, 20]}),
        pa.record_batch({"id": [1, 2], "text": ["a", None], "n": [10, 20]}),
        pd.DataFrame({"id": [1, 2], "text": ["a", None], "n": [10, 20]}),
        _INSERTED,
        {"id": [1, 2], "text": ["a", None], "n": [10, 20]},
        {"n": [10, 20], "ID": [1, 2], "text": ["a", None]},
    ],
    ids=["arrow", "batch", "pandas", "rows", "columns", "reordered"],
)
def test_insert_accepts_each_input_and_returns_the_count(
    t0: tier0.Tier0, docs: Table, data: Any
) -> None:
    assert docs.insert(data) == 2
    assert _rows(docs) == _INSERTED
    assert docs.count() == 2
    assert docs.info().rows == 2
    assert docs.info().bytes > 0
    _assert_clean(t0)


def test_insert_fills_missing_columns_with_null(docs: Table) -> None:
    assert docs.insert([{"id": 1}, {"id": 2, "text": "b"}]) == 2
    assert _rows(docs) == [
        {"id": 1, "text": None, "n": None},
        {"id": 2, "text": "b", "n": None},
    ]


def test_insert_accumulates_across_calls(t0: tier0.Tier0, docs: Table) -> None:
    counts = [docs.insert({"id": list(range(i * 10, i * 10 + 10))}) for i in range(5)]
    assert counts == [10] * 5
    assert docs.count() == 50
    assert [row["id"] for row in _rows(docs)] == list(range(50))


def test_insert_nothing_returns_zero_and_commits_nothing(t0: tier0.Tier0, docs: Table) -> None:
    before = t0.events.latest_seq()
    assert docs.insert([]) == 0
    assert docs.insert(pa.table({"id": pa.array([], pa.int64())})) == 0
    assert t0.events.latest_seq() == before
    assert docs.info().snapshot == docs.info().table_id


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([{"id": 1, "colour": "red"}], TableSchemaError),
        ([{"id": "not a number"}], TableSchemaError),
        ({"id": [1, 2], "n": [1]}, InvalidArgument),
        ("id,text\n1,a", InvalidArgument),
    ],
)
def test_insert_refuses_data_that_does_not_fit_and_changes_nothing(
    t0: tier0.Tier0, docs: Table, data: Any, error: type[Exception]
) -> None:
    _fill(docs, range(3))
    snapshot = docs.info().snapshot
    with pytest.raises(error):
        docs.insert(data)
    assert docs.count() == 3
    assert docs.info().snapshot == snapshot
    assert t0.stats().unreferenced_chunks == 0


# --- reading ------------------------------------------------------------------------------


def test_to_arrow_filters_projects_and_limits(docs: Table) -> None:
    _fill(docs, range(10))
    assert [r["id"] for r in _rows(docs, where="id >= 7")] == [7, 8, 9]
    projected = docs.to_arrow(columns=["text", "id"], where="id = 3")
    assert projected.column_names == ["text", "id"]
    assert projected.to_pylist() == [{"text": "t3", "id": 3}]
    assert docs.to_arrow(limit=4).num_rows == 4
    assert docs.to_arrow(where="id > 100").num_rows == 0
    assert docs.to_pandas(where="id < 2")["id"].sort_values().tolist() == [0, 1]


def test_count_with_and_without_a_predicate(docs: Table) -> None:
    _fill(docs, range(10))
    assert docs.count() == 10
    assert docs.count("id % 2 = 0") == 5
    assert docs.count("text = 't9'") == 1
    assert docs.count("false") == 0


def test_sql_sees_rows_inserted_through_the_api(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(6))
    result = t0.sql("SELECT count(*), sum(id) FROM bkt.docs WHERE id > 1")
    assert result.rows == [(4, 2 + 3 + 4 + 5)]


# --- update and delete --------------------------------------------------------------------


def test_update_sets_sql_expressions_and_returns_rows_updated(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(5))
    assert (
        docs.update(where="id >= 3", values_sql={"n": "id * 10", "text": "upper(text) || '!'"}) == 2
    )
    assert _rows(docs) == [
        {"id": 0, "text": "t0", "n": 0},
        {"id": 1, "text": "t1", "n": 0},
        {"id": 2, "text": "t2", "n": 0},
        {"id": 3, "text": "T3!", "n": 30},
        {"id": 4, "text": "T4!", "n": 40},
    ]
    _assert_clean(t0)


def test_update_sets_python_values(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(4))
    assert docs.update({"n": 7, "text": None}, "id IN (1, 2)") == 2
    assert docs.update({"n": 9}) == 4  # no predicate: every row
    assert _rows(docs) == [
        {"id": 0, "text": "t0", "n": 9},
        {"id": 1, "text": None, "n": 9},
        {"id": 2, "text": None, "n": 9},
        {"id": 3, "text": "t3", "n": 9},
    ]


def test_update_matching_nothing_returns_zero_and_commits_nothing(
    t0: tier0.Tier0, docs: Table
) -> None:
    _fill(docs, range(3))
    before = t0.events.latest_seq()
    assert docs.update({"n": 1}, "id > 99") == 0
    assert docs.update({"n": 1}, "NULL") == 0  # a NULL predicate selects nothing
    assert t0.events.latest_seq() == before


def test_update_refuses_unknown_columns_and_empty_values(docs: Table) -> None:
    _fill(docs, range(3))
    with pytest.raises(TableSchemaError, match="no column 'colour'"):
        docs.update({"colour": "red"})
    with pytest.raises(InvalidArgument):
        docs.update({})
    with pytest.raises(TableSchemaError):
        docs.update({"n": "not a number"})
    assert [row["n"] for row in _rows(docs)] == [0, 0, 0]


def test_delete_removes_matching_rows_and_returns_how_many(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(0, 5))
    _fill(docs, range(5, 10))  # a second data file
    assert docs.delete("id % 3 = 0") == 4
    assert [row["id"] for row in _rows(docs)] == [1, 2, 4, 5, 7, 8]
    assert docs.delete("id > 100") == 0
    assert docs.delete("true") == 6
    assert docs.count() == 0
    assert docs.info().bytes == 0
    _assert_clean(t0)


# --- columns ------------------------------------------------------------------------------


def test_add_columns_leaves_existing_rows_null(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(2))
    info = docs.add_columns({"score": "DOUBLE", "tags": "VARCHAR[]"})
    assert info.schema.names == ["id", "text", "n", "score", "tags"]
    docs.insert([{"id": 2, "score": 0.5, "tags": ["x"]}])
    assert _rows(docs, columns=["id", "score", "tags"]) == [
        {"id": 0, "score": None, "tags": None},
        {"id": 1, "score": None, "tags": None},
        {"id": 2, "score": 0.5, "tags": ["x"]},
    ]
    assert docs.update(where="id = 1", values_sql={"score": "id + 0.25"}) == 1
    assert docs.to_arrow(where="id = 1", columns=["score"]).to_pylist() == [{"score": 1.25}]
    _assert_clean(t0)


def test_add_columns_refuses_existing_and_non_null_columns(docs: Table) -> None:
    with pytest.raises(TableSchemaError, match="already"):
        docs.add_columns({"TEXT": "VARCHAR"})
    with pytest.raises(TableSchemaError, match="nullable"):
        docs.add_columns(pa.schema([pa.field("x", pa.int32(), nullable=False)]))
    assert docs.schema.names == ["id", "text", "n"]


def test_drop_columns_then_adding_the_name_again_starts_empty(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(3))
    info = docs.drop_columns(["TEXT"])
    assert info.schema.names == ["id", "n"]
    assert _rows(docs) == [{"id": i, "n": 0} for i in range(3)]
    docs.insert([{"id": 3, "n": 1}])
    docs.add_columns({"text": "VARCHAR"})
    # The old values of "text" must not come back in the column of the same name.
    assert _rows(docs, columns=["id", "text"]) == [{"id": i, "text": None} for i in range(4)]
    assert docs.count("text IS NOT NULL") == 0
    # Nor under another type.
    docs.drop_columns(["text"])
    docs.add_columns({"text": "INT"})
    assert docs.count("text IS NOT NULL") == 0
    _assert_clean(t0)


def test_drop_columns_refuses_unknown_columns_and_dropping_all(docs: Table) -> None:
    with pytest.raises(TableSchemaError, match="no column 'colour'"):
        docs.drop_columns(["colour"])
    with pytest.raises(TableSchemaError, match="no columns left"):
        docs.drop_columns(["id", "text", "n"])
    assert docs.schema.names == ["id", "text", "n"]


def test_insert_computed_before_a_column_drop_conflicts_instead_of_keeping_it(
    t0: tier0.Tier0, docs: Table
) -> None:
    # An insert that read the schema, then lost the race to drop_columns: its
    # file still holds "text", which must not reappear when "text" is re-added.
    db = t0.db
    info = docs.info()
    written = db._write_files(
        info, pa.table({"id": [1], "text": ["secret"], "n": pa.array([1], pa.int32())})
    )
    docs.drop_columns(["text"])
    change = Change("TableRowsInserted", add=written, rows_affected=1, schema_read=info.schema)
    with pytest.raises(TableConflict):
        db._commit(docs, "tier0:WriteTable", info, change)
    docs.add_columns({"text": "VARCHAR"})
    assert docs.count() == 0
    _assert_clean(t0)


def test_add_columns_computed_from_a_stale_schema_conflicts_instead_of_losing_one(
    t0: tier0.Tier0, docs: Table
) -> None:
    db = t0.db
    stale = docs.info()
    docs.add_columns({"first": "INT"})
    schema = pa.schema([*stale.schema, pa.field("second", pa.int32())])
    change = Change("TableAltered", schema=schema, schema_read=stale.schema)
    with pytest.raises(TableConflict):
        db._commit(docs, "tier0:AlterTable", stale, change)
    assert docs.schema.names == ["id", "text", "n", "first"]


# --- events and the catalog ---------------------------------------------------------------


def test_every_change_writes_its_event(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    start = t0.events.latest_seq()
    docs = t0.create_table(DOCS, SCHEMA)
    _fill(docs, range(4))
    docs.update({"n": 1}, "id < 2")
    docs.delete("id = 3")
    docs.add_columns({"extra": "INT"})
    docs.drop_columns(["extra"])
    t0.db.drop_table(DOCS)
    events = _table_events(t0, start)
    assert [e.type for e in events] == [
        "TableCreated",
        "TableRowsInserted",
        "TableRowsUpdated",
        "TableRowsDeleted",
        "TableAltered",
        "TableAltered",
        "TableDropped",
    ]
    assert all(e.bucket == BUCKET and e.principal == t0.principal.id for e in events)
    created, inserted, updated, deleted, added, dropped_column, dropped = events
    assert created.detail["columns"] == [["id", "BIGINT"], ["text", "VARCHAR"], ["n", "INTEGER"]]
    assert [e.detail["rows"] for e in (inserted, updated, deleted)] == [4, 2, 1]
    assert [e.size for e in (inserted, updated, deleted)] == [4, 4, 3]  # rows after
    assert inserted.detail["snapshot"] == inserted.seq
    assert ["extra", "INTEGER"] in added.detail["columns"]
    assert ["extra", "INTEGER"] not in dropped_column.detail["columns"]
    assert dropped.detail["rows"] == 3
    # The commit that wrote each event moved the sequence: no gaps, in order.
    assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_catalog_tables_view_shows_rows_bytes_and_columns(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(7))
    docs.add_columns({"v": "FLOAT[3]"})
    info = docs.info()
    result = t0.sql("SELECT bucket, name, rows, bytes, columns, snapshot FROM tables")
    assert result.rows == [
        (
            BUCKET,
            "docs",
            7,
            info.bytes,
            # JSON comes as JSON text, as from DuckDB
            json.dumps(
                [["id", "BIGINT"], ["text", "VARCHAR"], ["n", "INTEGER"], ["v", "FLOAT[3]"]]
            ),
            info.snapshot,
        )
    ]
    assert info.bytes > 0
    docs.delete("id < 3")
    assert t0.sql("SELECT rows FROM tables WHERE name = 'docs'").rows == [(4,)]
    t0.db.drop_table(DOCS)
    assert t0.sql("SELECT count(*) FROM tables").rows == [(0,)]


# --- integrity and garbage collection -----------------------------------------------------


def test_check_is_clean_after_every_kind_of_change(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    docs = t0.create_table(DOCS, SCHEMA)
    steps: list[Callable[[], object]] = [
        lambda: _fill(docs, range(100)),
        lambda: _fill(docs, range(100, 150)),
        lambda: docs.update(where="id % 2 = 0", values_sql={"n": "n + 1"}),
        lambda: docs.delete("id < 30"),
        lambda: docs.add_columns({"score": "DOUBLE"}),
        lambda: docs.update({"score": 1.5}),
        lambda: docs.drop_columns(["text"]),
        lambda: docs.insert([{"id": 1000, "score": 2.0}]),
        lambda: t0.gc(grace_s=0),
        lambda: t0.db.drop_table(DOCS),
        lambda: t0.gc(grace_s=0),
    ]
    for step in steps:
        step()
        _assert_clean(t0)
    assert t0.stats().chunk_count == 0


def test_drop_table_and_gc_reclaim_the_tables_chunks(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(500))
    kept = t0.stats()
    assert kept.chunk_count > 0
    doomed = t0.create_table(f"{BUCKET}/doomed", SCHEMA)
    rng = random.Random(7)
    doomed.insert({"id": list(range(500)), "text": [rng.randbytes(40).hex() for _ in range(500)]})
    grown = t0.stats()
    assert grown.chunk_count > kept.chunk_count
    assert t0.check().chunks_checked == grown.chunk_count
    t0.db.drop_table(f"{BUCKET}/doomed")
    report = t0.gc(grace_s=0)
    assert report.chunks_deleted == grown.chunk_count - kept.chunk_count
    after = t0.stats()
    assert after.chunk_count == kept.chunk_count
    assert after.unreferenced_chunks == 0
    check = t0.check(deep=True)
    assert check.ok, check.problems
    assert check.chunks_checked == kept.chunk_count
    assert docs.count() == 500
    assert [row["id"] for row in _rows(docs)] == list(range(500))


def test_gc_reclaims_the_files_an_update_replaced(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(200))
    docs.update({"text": "replaced"})
    t0.gc(grace_s=0)
    stats = t0.stats()
    assert stats.unreferenced_chunks == 0
    assert docs.count("text = 'replaced'") == 200
    _assert_clean(t0)


# --- authorization ------------------------------------------------------------------------


def test_another_principal_needs_grants_to_read_and_write(t0: tier0.Tier0, docs: Table) -> None:
    _fill(docs, range(3))
    t0.create_user("alice")
    alice = t0.as_principal("alice")

    with pytest.raises(AccessDenied):
        alice.table(DOCS)
    with pytest.raises(PermissionError):
        alice.sql("SELECT count(*) FROM bkt.docs")
    with pytest.raises(AccessDenied):
        alice.create_table(f"{BUCKET}/hers", SCHEMA)
    with pytest.raises(AccessDenied):
        alice.db.drop_table(DOCS)

    t0.grant("alice", "tier0:ReadTable", f"/{BUCKET}/docs")
    hers = alice.table(DOCS)
    assert _rows(hers) == _rows(docs)
    assert alice.sql("SELECT count(*) FROM bkt.docs").rows == [(3,)]
    with pytest.raises(AccessDenied):
        hers.insert([{"id": 99}])
    with pytest.raises(AccessDenied):
        hers.update({"n": 5})
    with pytest.raises(AccessDenied):
        hers.delete("true")
    with pytest.raises(AccessDenied):
        hers.add_columns({"x": "INT"})
    assert docs.count() == 3
    assert [row["n"] for row in _rows(docs)] == [0, 0, 0]
    # A denied insert is decided before its bytes are stored: nothing to collect.
    assert t0.stats().unreferenced_chunks == 0

    t0.grant("alice", "tier0:WriteTable", f"/{BUCKET}/docs")
    assert hers.insert([{"id": 99}]) == 1
    assert hers.update({"n": 5}, "id < 2") == 2
    assert hers.delete("id = 2") == 1
    assert [(row["id"], row["n"]) for row in _rows(docs)] == [(0, 5), (1, 5), (99, None)]
    with pytest.raises(AccessDenied):
        alice.db.drop_table(DOCS)
    assert docs.count() == 3
    # The grant names one table, not its bucket.
    other = t0.create_table(f"{BUCKET}/other", SCHEMA)
    with pytest.raises(AccessDenied):
        alice.table(other.path)
    _assert_clean(t0)


def test_a_principal_owns_the_tables_of_its_own_bucket(t0: tier0.Tier0) -> None:
    t0.create_user("bob")
    t0.grant("bob", "s3:CreateBucket", "/bob-*")
    bob = t0.as_principal("bob")
    bob.create_bucket("bob-bucket")
    table = bob.create_table("bob-bucket/notes", SCHEMA)
    assert table.insert([{"id": 1, "text": "mine"}]) == 1
    assert [info.name for info in bob.db.tables("bob-bucket")] == ["notes"]
    assert t0.table("bob-bucket/notes").count() == 1  # root reads everything
    bob.db.drop_table("bob-bucket/notes")
    assert t0.db.tables("bob-bucket") == []


# --- persistence and concurrency ----------------------------------------------------------


def test_rows_survive_close_and_reopen(
    t0: tier0.Tier0, docs: Table, tmp_path: pathlib.Path, meta_url: str
) -> None:
    _fill(docs, range(20))
    docs.update(where="id < 5", values_sql={"n": "id"})
    docs.delete("id >= 15")
    docs.add_columns({"extra": "VARCHAR"})
    expected = _rows(docs)
    t0.close()
    with tier0.open(tmp_path / "data", meta=meta_url) as reopened:
        table = reopened.table(DOCS)
        assert _rows(table) == expected
        assert table.count() == 15
        assert table.schema.names == ["id", "text", "n", "extra"]
        _assert_clean(reopened)


def test_rows_inserted_by_one_thread_are_seen_by_a_query_from_another(
    t0: tier0.Tier0, docs: Table
) -> None:
    acknowledged: queue.Queue[int | None] = queue.Queue()
    seen: list[tuple[int, int]] = []

    def writer() -> None:
        for batch in range(15):
            _fill(docs, range(batch * 10, batch * 10 + 10))
            acknowledged.put(batch)
        acknowledged.put(None)

    def reader() -> None:
        while (batch := acknowledged.get()) is not None:
            # A fresh handle, as another part of the program would have.
            table = t0.table(DOCS)
            seen.append((batch, table.count(f"id BETWEEN {batch * 10} AND {batch * 10 + 9}")))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [(batch, 10) for batch in range(15)]


def _run_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(i)`` in ``count`` threads started together; their results, or the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _retrying(change: Callable[[], T], *, attempts: int = 10) -> T:
    """A rewrite, retried on `TableConflict` as its contract asks a caller to."""
    for _ in range(attempts - 1):
        try:
            return change()
        except TableConflict:
            continue
    return change()


def test_concurrent_inserts_all_land(t0: tier0.Tier0, docs: Table) -> None:
    start = t0.events.latest_seq()

    def work(thread: int) -> int:
        return sum(
            docs.insert({"id": [thread * 1000 + b * 25 + i for i in range(25)]}) for b in range(8)
        )

    assert _run_threads(4, work) == [200] * 4
    assert docs.count() == 800
    ids = [row["id"] for row in _rows(docs)]
    assert ids == sorted(t * 1000 + i for t in range(4) for i in range(200))
    assert len(_table_events(t0, start)) == 32
    _assert_clean(t0)


def test_concurrent_increments_of_every_row_all_apply(t0: tier0.Tier0, docs: Table) -> None:
    for batch in range(3):  # several data files, each rewritten by every update
        _fill(docs, range(batch * 20, batch * 20 + 20))
    assert (
        _run_threads(4, lambda _: _retrying(lambda: docs.update(values_sql={"n": "n + 1"})))
        == [60] * 4
    )
    assert {row["n"] for row in _rows(docs)} == {4}
    assert docs.count() == 60
    _assert_clean(t0)


def test_concurrent_overlapping_deletes_delete_each_row_once(t0: tier0.Tier0, docs: Table) -> None:
    for batch in range(4):
        _fill(docs, range(batch * 25, batch * 25 + 25))
    # Thread k deletes ids 20k..20k+30: the ranges overlap their neighbours'.
    deleted = _run_threads(
        4, lambda k: _retrying(lambda: docs.delete(f"id BETWEEN {20 * k} AND {20 * k + 30}"))
    )
    # However they interleave, each row is deleted by exactly one of them.
    assert sum(deleted) == 91
    assert [row["id"] for row in _rows(docs)] == list(range(91, 100))
    _assert_clean(t0)


def test_concurrent_deletes_and_updates_end_as_some_serial_order(
    t0: tier0.Tier0, docs: Table
) -> None:
    for batch in range(2):
        _fill(docs, range(batch * 30, batch * 30 + 30))

    def work(thread: int) -> int:
        if thread == 0:
            return _retrying(lambda: docs.delete("id % 3 = 0"))
        return _retrying(lambda: docs.update(where="id % 2 = 0", values_sql={"n": "n + 1"}))

    results = _run_threads(4, work)
    assert results[0] == 20
    rows = _rows(docs)
    assert [row["id"] for row in rows] == [i for i in range(60) if i % 3]
    assert all(row["n"] == (3 if row["id"] % 2 == 0 else 0) for row in rows)
    _assert_clean(t0)


# --- crash safety -------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_inserts_loses_no_acknowledged_row(
    tmp_path: pathlib.Path, meta_url: str
) -> None:
    data = tmp_path / "data"
    with tier0.open(data, meta=meta_url) as t0:
        t0.create_bucket(BUCKET)
        t0.create_table(DOCS, {"id": "BIGINT", "text": "VARCHAR"})
    rng = random.Random(20240611)
    acknowledged = 0
    for cycle in range(3):
        stderr_path = tmp_path / f"stderr-{cycle}"
        with stderr_path.open("wb") as stderr:
            inserter = subprocess.Popen(
                [sys.executable, "-m", "tests.db.crash_inserter", str(data), meta_url, DOCS],
                cwd=ROOT,
                env=python_env(),
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert inserter.stdout is not None
        # Kill it after a few acknowledged batches, while it writes the next one.
        wanted = rng.randrange(2, 6)
        for _ in range(wanted):
            line = inserter.stdout.readline()
            assert line, f"cycle {cycle}: the inserter died: {stderr_path.read_text()}"
            acknowledged = int(line)
        inserter.send_signal(signal.SIGKILL)
        inserter.wait()
        inserter.stdout.close()
        with tier0.open(data, meta=meta_url) as t0:
            table = t0.table(DOCS)
            count = table.count()
            # The batch in flight may have committed before the kill, or not at all.
            assert count in (acknowledged, acknowledged + BATCH_ROWS), (cycle, count)
            ids = table.to_arrow(columns=["id"]).column("id").to_pylist()
            assert sorted(ids) == list(range(count))
            report = t0.check(deep=True)
            assert report.ok, report.problems
            # No writer runs now: a zero grace period must keep every referenced chunk.
            t0.gc(grace_s=0)
            assert t0.check(deep=True).ok
            assert t0.stats().unreferenced_chunks == 0
            assert table.count(f"text = 'row {count - 1}'") == 1
            acknowledged = count
