"""SQL over tables, files and the catalog: ``t0.sql`` (a QueryResult) and ``t0.db.sql`` (Arrow).

Every test runs on both metadata backends (the ``t0`` fixture), with the real
DuckDB engine; the CLI and the HTTP API are driven for real (CliRunner, and
the ASGI app through httpx's in-process transport).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import tier0
from tier0.catalog import QueryResult
from tier0.cli import cli
from tier0.errors import (
    CatalogError,
    NoSuchTable,
    QueryTimeout,
    SQLNotAllowed,
    SQLSyntaxError,
    TableAlreadyExists,
    TableSchemaError,
)
from tier0.server import create_app

#: A query that runs for tens of seconds (10^10 rows through a filter), unless stopped.
LONG_QUERY = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = -1"


@pytest.fixture
def db(t0: tier0.Tier0) -> tier0.Tier0:
    """``t0`` with a bucket ``bkt`` and a table ``bkt.people`` of three rows."""
    t0.create_bucket("bkt")
    t0.db.sql(
        "CREATE TABLE bkt.people (id BIGINT NOT NULL, name VARCHAR, age INT);"
        " INSERT INTO bkt.people VALUES (1, 'ann', 31), (2, 'bob', 42), (3, 'cy', NULL)"
    )
    return t0


def _rows(t0: tier0.Tier0, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = t0.db.sql(sql).to_pylist()
    return rows


def _parquet(**columns: list[Any]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _tables(t0: tier0.Tier0, bucket: str) -> list[str]:
    return [info.name for info in t0.db.tables(bucket)]


# -- CREATE TABLE ----------------------------------------------------------------------------


def test_create_table_maps_sql_types_to_arrow(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    result = t0.db.sql(
        "CREATE TABLE bkt.t (id BIGINT NOT NULL, name VARCHAR, embedding FLOAT[3], tags INT[],"
        " point STRUCT(x INT, label VARCHAR), seen TIMESTAMP)"
    )
    assert (result.num_columns, result.num_rows) == (0, 0)  # DDL returns nothing
    assert t0.table("bkt/t").schema == pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("embedding", pa.list_(pa.float32(), 3)),
            pa.field("tags", pa.list_(pa.int32())),
            pa.field("point", pa.struct([("x", pa.int32()), ("label", pa.string())])),
            pa.field("seen", pa.timestamp("us")),
        ]
    )


def test_sql_ddl_returns_no_rows(t0: tier0.Tier0) -> None:
    # Arrow's slice of a zero-column table has as many (empty) rows as asked for.
    t0.create_bucket("bkt")
    result = t0.sql("CREATE TABLE bkt.t (x INT)")
    assert isinstance(result, QueryResult)
    assert (result.columns, result.rows, result.truncated) == ([], [], False)


def test_create_table_if_not_exists_keeps_the_existing_table(db: tier0.Tier0) -> None:
    before = db.table("bkt/people").schema
    db.sql("CREATE TABLE IF NOT EXISTS bkt.people (other VARCHAR)")
    assert db.table("bkt/people").schema == before
    assert db.table("bkt/people").count() == 3
    with pytest.raises(TableAlreadyExists, match="bkt/people"):
        db.sql("CREATE TABLE bkt.people (other VARCHAR)")


def test_create_table_as_select_copies_rows_and_types(db: tier0.Tier0) -> None:
    assert _rows(
        db, "CREATE TABLE bkt.adults AS SELECT id, name FROM bkt.people WHERE age > 40"
    ) == [{"rows": 1}]
    assert db.table("bkt/adults").schema.types == [pa.int64(), pa.string()]
    assert _rows(db, "SELECT * FROM bkt.adults") == [{"id": 2, "name": "bob"}]


def test_create_table_if_not_exists_as_select_leaves_an_existing_table_alone(
    db: tier0.Tier0,
) -> None:
    db.sql("CREATE TABLE bkt.copy AS SELECT id FROM bkt.people")
    result = _rows(db, "CREATE TABLE IF NOT EXISTS bkt.copy AS SELECT id FROM bkt.people")
    assert result == [{"rows": 0}]
    assert db.table("bkt/copy").count() == 3  # not appended to


# -- INSERT ----------------------------------------------------------------------------------


def test_insert_values_fills_every_type_in_column_order(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.sql(
        "CREATE TABLE bkt.t (id BIGINT NOT NULL, embedding FLOAT[3], tags INT[],"
        " point STRUCT(x INT, label VARCHAR), seen TIMESTAMP)"
    )
    result = t0.sql(
        "INSERT INTO bkt.t VALUES (7, [0.5, 1.5, 2.5], [1, 2, 3], {'x': 4, 'label': 'p'},"
        " TIMESTAMP '2024-05-06 07:08:09')"
    )
    assert (result.columns, result.rows) == (["rows"], [(1,)])
    assert _rows(t0, "SELECT * FROM bkt.t") == [
        {
            "id": 7,
            "embedding": [0.5, 1.5, 2.5],
            "tags": [1, 2, 3],
            "point": {"x": 4, "label": "p"},
            "seen": dt.datetime(2024, 5, 6, 7, 8, 9),
        }
    ]


def test_insert_values_with_a_column_list_leaves_other_columns_null(db: tier0.Tier0) -> None:
    assert _rows(db, "INSERT INTO bkt.people (name, id) VALUES ('dee', 4), ('eve', 5)") == [
        {"rows": 2}
    ]
    assert _rows(db, "SELECT * FROM bkt.people WHERE id > 3 ORDER BY id") == [
        {"id": 4, "name": "dee", "age": None},
        {"id": 5, "name": "eve", "age": None},
    ]


def test_insert_select_with_and_without_a_column_list(db: tier0.Tier0) -> None:
    db.sql("CREATE TABLE bkt.names (id BIGINT, name VARCHAR)")
    db.sql("INSERT INTO bkt.names SELECT id, name FROM bkt.people WHERE id < 3")
    db.sql("INSERT INTO bkt.names (name, id) SELECT upper(name), id + 100 FROM bkt.people")
    assert _rows(db, "SELECT * FROM bkt.names ORDER BY id") == [
        {"id": 1, "name": "ann"},
        {"id": 2, "name": "bob"},
        {"id": 101, "name": "ANN"},
        {"id": 102, "name": "BOB"},
        {"id": 103, "name": "CY"},
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO bkt.people (id, name) VALUES (4, 'dee', 50)",
        "INSERT INTO bkt.people VALUES (4, 'dee', 50, 'extra')",
        "INSERT INTO bkt.people (id) SELECT id, name FROM bkt.people",
    ],
    ids=["more-values-than-columns", "more-values-than-the-table", "select-too-wide"],
)
def test_insert_with_the_wrong_number_of_values_is_a_schema_error(
    db: tier0.Tier0, sql: str
) -> None:
    with pytest.raises(TableSchemaError):
        db.sql(sql)
    assert db.table("bkt/people").count() == 3


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("INSERT INTO bkt.people (id, name) VALUES ('four', 'dee')", "id"),
        ("INSERT INTO bkt.people (id, age) VALUES (4, 1.5)", "age"),
        ("INSERT INTO bkt.people (name) VALUES ('no id')", "id"),
        ("INSERT INTO bkt.people (id, age) VALUES (4, TIMESTAMP '2024-01-01')", "age"),
    ],
    ids=["text-into-bigint", "fraction-into-int", "null-into-not-null", "timestamp-into-int"],
)
def test_insert_of_a_mismatched_type_is_a_schema_error(
    db: tier0.Tier0, sql: str, column: str
) -> None:
    with pytest.raises(TableSchemaError, match=repr(column)):
        db.sql(sql)
    assert db.table("bkt/people").count() == 3


def test_insert_of_a_vector_of_the_wrong_dimension_is_a_schema_error(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.sql("CREATE TABLE bkt.vectors (v FLOAT[3])")
    with pytest.raises(TableSchemaError, match="3-d"):
        t0.sql("INSERT INTO bkt.vectors VALUES ([1.0, 2.0])")
    assert t0.table("bkt/vectors").count() == 0


# -- UPDATE, DELETE, ALTER, DROP -------------------------------------------------------------


def test_update_sets_columns_where_the_predicate_holds(db: tier0.Tier0) -> None:
    result = db.sql("UPDATE bkt.people SET age = age + 1, name = upper(name) WHERE age IS NOT NULL")
    assert (result.columns, result.rows) == (["rows"], [(2,)])
    assert _rows(db, "SELECT * FROM bkt.people ORDER BY id") == [
        {"id": 1, "name": "ANN", "age": 32},
        {"id": 2, "name": "BOB", "age": 43},
        {"id": 3, "name": "cy", "age": None},
    ]


def test_update_of_a_mismatched_type_is_a_schema_error(db: tier0.Tier0) -> None:
    with pytest.raises(TableSchemaError):
        db.sql("UPDATE bkt.people SET age = 'old' WHERE id = 1")
    with pytest.raises(TableSchemaError):
        db.sql("UPDATE bkt.people SET id = NULL WHERE id = 1")
    assert _rows(db, "SELECT id, age FROM bkt.people WHERE id = 1") == [{"id": 1, "age": 31}]


def test_delete_removes_rows_where_the_predicate_holds(db: tier0.Tier0) -> None:
    db.sql("CREATE TABLE bkt.banned (id BIGINT); INSERT INTO bkt.banned VALUES (2), (3)")
    assert _rows(db, "DELETE FROM bkt.people WHERE id IN (SELECT id FROM bkt.banned)") == [
        {"rows": 2}
    ]
    assert _rows(db, "DELETE FROM bkt.people WHERE id = 99") == [{"rows": 0}]
    assert _rows(db, "SELECT id, name FROM bkt.people") == [{"id": 1, "name": "ann"}]
    assert db.table("bkt/people").count() == 1


def test_alter_table_adds_and_drops_columns(db: tier0.Tier0) -> None:
    db.sql("ALTER TABLE bkt.people ADD COLUMN email VARCHAR")
    db.sql("ALTER TABLE bkt.people DROP COLUMN age")
    assert db.table("bkt/people").schema.names == ["id", "name", "email"]
    db.sql("UPDATE bkt.people SET email = name || '@example.com' WHERE id = 1")
    assert _rows(db, "SELECT * FROM bkt.people ORDER BY id") == [
        {"id": 1, "name": "ann", "email": "ann@example.com"},
        {"id": 2, "name": "bob", "email": None},
        {"id": 3, "name": "cy", "email": None},
    ]
    # A column added again under a dropped name starts empty.
    db.sql("ALTER TABLE bkt.people ADD COLUMN age INT")
    assert [row["age"] for row in _rows(db, "SELECT age FROM bkt.people")] == [None] * 3
    with pytest.raises(TableSchemaError, match="'name'"):
        db.sql("ALTER TABLE bkt.people ADD COLUMN name VARCHAR")
    with pytest.raises(TableSchemaError, match="'nope'"):
        db.sql("ALTER TABLE bkt.people DROP COLUMN nope")


def test_alter_table_refuses_to_add_a_not_null_column(db: tier0.Tier0) -> None:
    with pytest.raises(TableSchemaError, match=r"'email'.*nullable"):
        db.sql("ALTER TABLE bkt.people ADD COLUMN email VARCHAR NOT NULL")
    assert db.table("bkt/people").schema.names == ["id", "name", "age"]


def test_drop_table_and_drop_table_if_exists(db: tier0.Tier0) -> None:
    assert db.db.sql("DROP TABLE bkt.people").num_rows == 0
    assert _tables(db, "bkt") == []
    with pytest.raises(NoSuchTable, match="bkt/people"):
        db.sql("DROP TABLE bkt.people")
    db.sql("DROP TABLE IF EXISTS bkt.people")
    with pytest.raises(NoSuchTable):
        db.table("bkt/people")


def test_several_statements_run_in_order_and_return_the_last_result(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    result = t0.sql(
        "CREATE TABLE bkt.n (x INT); INSERT INTO bkt.n VALUES (1), (2);"
        " INSERT INTO bkt.n SELECT x * 10 FROM bkt.n; SELECT sum(x) AS total, count(*) AS n FROM bkt.n"
    )
    assert result.columns == ["total", "n"]
    assert [tuple(int(value) for value in row) for row in result.rows] == [(33, 4)]


def test_a_failing_statement_stops_the_ones_after_it(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    with pytest.raises(NoSuchTable):
        t0.sql(
            "CREATE TABLE bkt.a (x INT); INSERT INTO bkt.missing VALUES (1); CREATE TABLE bkt.b (x INT)"
        )
    assert _tables(t0, "bkt") == ["a"]  # each statement commits when it returns


# -- results ---------------------------------------------------------------------------------


def test_sql_returns_a_query_result_and_db_sql_arrow(db: tier0.Tier0) -> None:
    query = "SELECT id, name FROM bkt.people ORDER BY id"
    result = db.sql(query)
    assert isinstance(result, QueryResult)
    assert result.columns == ["id", "name"]
    assert result.rows == [(1, "ann"), (2, "bob"), (3, "cy")]
    assert result.truncated is False
    arrow = db.db.sql(query)
    assert isinstance(arrow, pa.Table)
    assert arrow.to_pydict() == {"id": [1, 2, 3], "name": ["ann", "bob", "cy"]}


def test_sql_cuts_a_table_query_at_rows_max(db: tier0.Tier0) -> None:
    result = db.sql("SELECT p.id, r.range FROM bkt.people p, range(10) r ORDER BY 1, 2", rows_max=4)
    assert result.truncated is True
    assert result.rows == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert db.sql("SELECT id FROM bkt.people", rows_max=3).truncated is False


# -- the catalog -----------------------------------------------------------------------------


def test_catalog_only_queries_run_on_the_engine_in_one_dialect(db: tier0.Tier0) -> None:
    db.create_bucket("other")
    db.put("bkt", "logs/a.txt", b"a")
    db.put("bkt", "logs/b.txt", b"bb")
    db.put("other", "c.txt", b"ccc")
    engine_runs = db._owned.engine().statistics().queries_run
    catalog_runs = db._owned.catalog.statistics().queries_run
    result = db.sql(
        "SELECT bucket, split_part(key, '/', 1) AS top, count(*) AS n, sum(size) AS bytes"
        " FROM objects GROUP BY ALL ORDER BY ALL"
    )  # DuckDB's GROUP BY ALL, whichever the metadata backend
    assert result.columns == ["bucket", "top", "n", "bytes"]
    assert result.rows == [("bkt", "logs", 2, 3), ("other", "c.txt", 1, 3)]
    assert db._owned.engine().statistics().queries_run == engine_runs + 1
    assert db._owned.catalog.statistics().queries_run == catalog_runs  # objects: from the copy


def test_select_joins_a_table_with_the_objects_view(db: tier0.Tier0) -> None:
    db.put("bkt", "avatars/1.png", b"x" * 10, metadata={"owner": "ann"})
    db.put("bkt", "avatars/2.png", b"x" * 20)
    result = db.sql(
        "SELECT p.name, o.size, o.created <= now() AS past FROM bkt.people p"
        " JOIN objects o ON o.key = 'avatars/' || p.id || '.png' ORDER BY p.id"
    )
    assert result.rows == [("ann", 10, True), ("bob", 20, True)]


def test_catalog_view_columns_keep_their_types_when_no_rows_are_visible(db: tier0.Tier0) -> None:
    # No objects at all: sum(size) and time arithmetic must still bind.
    query = (
        "SELECT p.id, (SELECT sum(size) FROM objects) AS total,"
        " (SELECT max(created) FROM objects) AS newest, (SELECT count(*) FROM uploads"
        " WHERE parts > 1) AS uploads FROM bkt.people p WHERE p.id = 1"
    )
    assert _rows(db, query) == [{"id": 1, "total": None, "newest": None, "uploads": 0}]
    db.put("bkt", "k", b"four")
    assert _rows(db, query)[0]["total"] == 4


def test_catalog_views_are_limited_to_listable_buckets_for_a_non_root_principal(
    db: tier0.Tier0,
) -> None:
    db.create_bucket("secret")
    db.put("bkt", "public.txt", b"p")
    db.put("secret", "hidden.txt", b"h")
    db.create_user("alice")
    db.grant("alice", "s3:ListBucket", "/bkt")
    db.grant("alice", "tier0:ReadTable", "/bkt/people")
    alice = db.as_principal("alice")
    assert alice.sql("SELECT bucket, key FROM objects ORDER BY key").rows == [("bkt", "public.txt")]
    joined = alice.sql(
        "SELECT o.bucket, o.key, p.name FROM objects o, bkt.people p WHERE p.id = 1 ORDER BY o.key"
    )
    assert joined.rows == [("bkt", "public.txt", "ann")]
    assert alice.sql("SELECT count(*) AS n FROM buckets, bkt.people").rows == [(3,)]
    # Root sees both buckets in the same join.
    assert db.sql("SELECT count(*) FROM objects o, bkt.people p WHERE p.id = 1").rows == [(2,)]


def test_a_table_read_needs_a_grant(db: tier0.Tier0) -> None:
    db.create_user("mallory")
    db.grant("mallory", "s3:ListBucket", "/bkt")
    with pytest.raises(PermissionError, match="tier0:ReadTable"):
        db.as_principal("mallory").sql("SELECT count(*) FROM bkt.people")


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def files(db: tier0.Tier0) -> tier0.Tier0:
    """``db`` with Parquet logs (two at the top, one deeper), a CSV and a JSON object."""
    db.put("bkt", "logs/1.parquet", _parquet(id=[1, 2], level=["info", "warn"]))
    db.put("bkt", "logs/2.parquet", _parquet(id=[3], level=["error"]))
    db.put("bkt", "logs/old/3.parquet", _parquet(id=[1], level=["debug"]))
    db.put("bkt", "ages.csv", b"id,city\n1,Oslo\n2,Lima\n")
    db.put("bkt", "prefs.json", b'[{"id": 3, "color": "red"}]')
    return db


def test_select_joins_a_table_with_parquet_csv_and_json_files(files: tier0.Tier0) -> None:
    assert files.sql(
        "SELECT p.name, c.city FROM bkt.people p JOIN read_csv('tier0://bkt/ages.csv') c"
        " USING (id) ORDER BY p.id"
    ).rows == [("ann", "Oslo"), ("bob", "Lima")]
    assert files.sql(
        "SELECT p.name, j.color FROM bkt.people p JOIN read_json('tier0://bkt/prefs.json') j"
        " USING (id)"
    ).rows == [("cy", "red")]
    assert files.sql(
        "SELECT p.name, l.level FROM bkt.people p"
        " JOIN read_parquet('tier0://bkt/logs/1.parquet') l USING (id) ORDER BY p.id"
    ).rows == [("ann", "info"), ("bob", "warn")]


def test_a_glob_stays_within_a_segment_and_double_star_crosses(files: tier0.Tier0) -> None:
    one_level = "SELECT id, level FROM read_parquet('tier0://bkt/logs/*.parquet') ORDER BY id"
    assert files.sql(one_level).rows == [(1, "info"), (2, "warn"), (3, "error")]
    every_level = "SELECT count(*) FROM read_parquet('tier0://bkt/logs/**/*.parquet')"
    assert files.sql(every_level).rows == [(4,)]
    assert files.sql("SELECT count(*) FROM read_parquet('tier0://bkt/**/*.parquet')").rows == [(4,)]
    assert files.sql("SELECT count(*) FROM read_parquet('tier0://bkt/logs/?.parquet')").rows == [
        (3,)
    ]


def test_a_bare_url_in_from_is_read_by_its_extension(files: tier0.Tier0) -> None:
    assert files.sql("SELECT count(*) FROM 'tier0://bkt/logs/1.parquet'").rows == [(2,)]
    assert files.sql("SELECT city FROM 'tier0://bkt/ages.csv' ORDER BY id").rows == [
        ("Oslo",),
        ("Lima",),
    ]
    assert files.sql("SELECT max(id) FROM 'tier0://bkt/logs/*.parquet'").rows == [(3,)]
    with pytest.raises(SQLSyntaxError, match="read_csv"):
        files.sql("SELECT * FROM 'tier0://bkt/notes'")


def test_a_glob_matching_nothing_is_a_syntax_error(files: tier0.Tier0) -> None:
    with pytest.raises(SQLSyntaxError, match=r"no object matches tier0://bkt/nothing/\*\.parquet"):
        files.sql("SELECT * FROM read_parquet('tier0://bkt/nothing/*.parquet')")


def test_a_file_read_needs_read_access_to_the_object(files: tier0.Tier0) -> None:
    files.create_user("mallory")
    with pytest.raises(PermissionError):
        files.as_principal("mallory").sql("SELECT * FROM read_csv('tier0://bkt/ages.csv')")


# -- the sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SET threads = 1",
        "PRAGMA version",
        "ATTACH 'elsewhere.db' AS elsewhere",
        "COPY bkt.people TO 'people.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM query('SELECT 1')",
        "SELECT getenv('HOME')",
        "SELECT * FROM bkt.people WHERE name = current_setting('threads')",
        "SELECT 't0blob://abc/x.parquet'",
        "SELECT * FROM read_parquet('T0BLOB://abc/x.parquet')",
    ],
)
def test_sandbox_refuses_before_anything_runs(
    db: tier0.Tier0, statement: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "cwd"  # where COPY or ATTACH would write, relative paths given
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    queries_run = db._owned.engine().statistics().queries_run
    # The first statement would create a table: it must not, the whole text is refused.
    with pytest.raises(SQLNotAllowed) as raised:
        db.db.sql(f"CREATE TABLE bkt.canary (x INT); {statement}")
    assert isinstance(raised.value, PermissionError)
    assert _tables(db, "bkt") == ["people"]
    assert db._owned.engine().statistics().queries_run == queries_run
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "statement",
    [
        "SET threads = 1",
        "COPY bkt.people TO 'people.csv'",
        "INSTALL httpfs",
        "SELECT * FROM query('SELECT 1')",
        "SELECT getenv('HOME'), * FROM bkt.people",
        "SELECT * FROM read_parquet('t0blob://abc/x.parquet')",
    ],
)
def test_sql_refuses_what_the_sandbox_refuses(db: tier0.Tier0, statement: str) -> None:
    # t0.sql refuses it as the DataBase does, without handing it to the catalog.
    with pytest.raises(SQLNotAllowed):
        db.sql(statement)
    assert _tables(db, "bkt") == ["people"]


@pytest.mark.parametrize(
    "source",
    ["read_csv('/etc/passwd')", "read_csv('file:///etc/passwd')", "read_parquet('/etc/hostname')"],
)
def test_reading_a_local_file_is_not_allowed(db: tier0.Tier0, source: str) -> None:
    with pytest.raises(SQLNotAllowed, match="Cannot access file"):
        db.sql(f"SELECT * FROM {source}")
    with pytest.raises(SQLNotAllowed):
        db.sql(f"SELECT p.id FROM bkt.people p, {source}")


def test_a_protocol_built_at_run_time_reaches_no_grant(db: tier0.Tier0) -> None:
    # The refusal of 't0blob' text can be dodged by concatenation; a glob over
    # every grant must still find nothing, since grants cannot be listed.
    with pytest.raises(CatalogError, match="No files found"):
        db.sql("SELECT * FROM bkt.people, read_parquet('t0' || 'blob://**')")


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC * FROM bkt.people",
        "SELECT * FROM bkt.people WHERE",
        "SELECT nope FROM bkt.people",
        "UPDATE bkt.people SET age = 1 WHERE nope = 2",
        "ALTER TABLE bkt.people RENAME COLUMN age TO years",
    ],
    ids=["misspelt", "unfinished", "unknown-column", "unknown-column-in-update", "rename"],
)
def test_malformed_sql_is_a_syntax_error(db: tier0.Tier0, sql: str) -> None:
    with pytest.raises(SQLSyntaxError):
        db.sql(sql)
    with pytest.raises(SQLSyntaxError):
        db.db.sql(sql)


def test_an_unknown_table_is_named_in_the_error(db: tier0.Tier0) -> None:
    with pytest.raises(SQLSyntaxError, match="'missing'"):
        db.sql("SELECT * FROM missing")
    with pytest.raises(SQLSyntaxError, match="'missing'"):
        db.sql("SELECT * FROM bkt.people, missing")
    with pytest.raises(NoSuchTable, match="bkt/missing"):
        db.sql("SELECT * FROM bkt.missing")
    with pytest.raises(NoSuchTable, match="bkt/missing"):
        db.sql("INSERT INTO bkt.missing VALUES (1)")


def test_a_long_query_stops_at_its_timeout(db: tier0.Tier0) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"0\.2 s"):
        db.sql(LONG_QUERY, timeout_s=0.2)
    assert time.monotonic() - started < 5  # unstopped, it runs for tens of seconds
    with pytest.raises(QueryTimeout):
        db.db.sql(f"SELECT p.id, q.* FROM bkt.people p, ({LONG_QUERY}) q", timeout_s=0.2)
    assert time.monotonic() - started < 10
    assert db._owned.engine().statistics().queries_timed_out == 2
    assert db.sql("SELECT count(*) FROM bkt.people").rows == [(3,)]  # the engine goes on


def test_concurrent_queries_each_stop_at_their_own_deadline(db: tier0.Tier0) -> None:
    # One watchdog serves every query: a short deadline must not wait behind a long
    # one, a long one must not be cut by a short one, and finished ones disarm.
    outcomes: dict[str, Any] = {}

    def run(name: str, timeout_s: float) -> None:
        started = time.monotonic()
        try:
            db.sql(LONG_QUERY, timeout_s=timeout_s)
            outcomes[name] = "finished"
        except QueryTimeout:
            outcomes[name] = time.monotonic() - started

    import threading

    threads = [
        threading.Thread(target=run, args=(n, t)) for n, t in (("long", 4.0), ("short", 0.2))
    ]
    for thread in threads:
        thread.start()
    for _ in range(20):  # quick queries meanwhile: armed and disarmed
        assert db.sql("SELECT 1 AS one").rows == [(1,)]
    for thread in threads:
        thread.join()
    # Stopped near its own deadline, well before the long one's; that one ran to its own.
    assert 0.15 < outcomes["short"] < 2.5
    assert 3.9 < outcomes["long"] < 15


# -- the CLI and the HTTP API ----------------------------------------------------------------


def test_cli_sql_prints_a_table_query_as_json(
    db: tier0.Tier0, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TIER0_DATA", "TIER0_META", "TIER0_ROOT_ACCESS_KEY", "TIER0_ROOT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(
        cli,
        [
            "--data",
            str(db.data_dir),
            "sql",
            "--format",
            "json",
            "SELECT id, name, age FROM bkt.people ORDER BY id",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"id": 1, "name": "ann", "age": 31},
        {"id": 2, "name": "bob", "age": 42},
        {"id": 3, "name": "cy", "age": None},
    ]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(db: tier0.Tier0) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(db)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tier0") as http:
            yield http
    finally:
        app.close()


@pytest.mark.anyio
async def test_http_sql_answers_a_table_query(client: httpx.AsyncClient, db: tier0.Tier0) -> None:
    credential = db.root_credential
    assert credential is not None  # a fresh data directory made root's keys
    response = await client.post(
        "/_tier0/sql",
        json={"sql": "SELECT id, name FROM bkt.people WHERE age IS NOT NULL ORDER BY id"},
        auth=(credential.access_key, credential.secret_key),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "columns": ["id", "name"],
        "rows": [[1, "ann"], [2, "bob"]],
        "truncated": False,
    }
    refused = await client.post(
        "/_tier0/sql",
        json={"sql": "SELECT * FROM bkt.people; SET threads = 1"},
        auth=(credential.access_key, credential.secret_key),
    )
    assert refused.status_code == 403, refused.text


def test_cli_sql_writes_parquet_with_every_row(
    db: tier0.Tier0, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TIER0_DATA", "TIER0_META", "TIER0_ROOT_ACCESS_KEY", "TIER0_ROOT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    query = "SELECT id, name FROM bkt.people ORDER BY id"
    result = CliRunner().invoke(
        cli, ["--data", str(db.data_dir), "sql", "--format", "parquet", query],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pq.read_table(io.BytesIO(result.stdout_bytes))
    assert table.to_pylist() == [
        {"id": 1, "name": "ann"},
        {"id": 2, "name": "bob"},
        {"id": 3, "name": "cy"},
    ]
    catalog = CliRunner().invoke(
        cli,
        ["--data", str(db.data_dir), "sql", "--format", "parquet",
         "SELECT name, rows, columns FROM tables ORDER BY name"],
        catch_exceptions=False,
    )  # fmt: skip
    assert catalog.exit_code == 0, catalog.output
    rows = pq.read_table(io.BytesIO(catalog.stdout_bytes)).to_pylist()
    assert [(row["name"], row["rows"]) for row in rows] == [("people", 3)]
    assert json.loads(rows[0]["columns"])[0] == ["id", "BIGINT"]  # JSON as JSON text


def test_sql_arrow_answers_tables_and_the_catalog_alike(db: tier0.Tier0) -> None:
    people = db.sql_arrow("SELECT id, age FROM bkt.people ORDER BY id")
    assert people.schema.field("id").type == pa.int64()
    assert people.column("age").to_pylist() == [31, 42, None]
    buckets = db.sql_arrow("SELECT name FROM buckets ORDER BY name")
    assert buckets.column("name").to_pylist() == ["bkt"]
    empty = db.sql_arrow("SELECT key, size FROM objects WHERE size < 0")
    assert empty.num_rows == 0 and empty.column_names == ["key", "size"]


@pytest.mark.anyio
async def test_http_sql_answers_arrow_when_asked(
    client: httpx.AsyncClient, db: tier0.Tier0
) -> None:
    credential = db.root_credential
    assert credential is not None
    response = await client.post(
        "/_tier0/sql",
        json={"sql": "SELECT id, name FROM bkt.people ORDER BY id"},
        auth=(credential.access_key, credential.secret_key),
        headers={"accept": "application/vnd.apache.arrow.stream"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.to_pylist() == [
        {"id": 1, "name": "ann"},
        {"id": 2, "name": "bob"},
        {"id": 3, "name": "cy"},
    ]
    missing = await client.post(
        "/_tier0/sql",
        json={"sql": "SELECT * FROM bkt.nothing"},
        auth=(credential.access_key, credential.secret_key),
    )
    assert missing.status_code == 404, missing.text  # NoSuchTable
