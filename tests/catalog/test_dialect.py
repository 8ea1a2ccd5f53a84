"""The catalog's dialect: the same answers on SQLite and PostgreSQL, what it
refuses, and what ``visible_buckets`` hides.

Every test runs on real engines, against answers computed from the data set in
`tests.catalog.dataset`.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.catalog.dataset import (
    BUCKETS,
    OBJECT_SEQS,
    OBJECTS,
    created_text,
    fingerprint,
    first_column,
)
from tier0.catalog import Catalog
from tier0.errors import SQLNotAllowed, SQLSyntaxError, Tier0Error
from tier0.meta import MetaBackend

# --- the same answers on both backends ---------------------------------------------------

SAME_QUERIES = [
    "SELECT count(*), sum(size), min(size), max(size) FROM objects",
    "SELECT bucket, count(*), sum(size) FROM objects GROUP BY bucket ORDER BY bucket",
    "SELECT key, size FROM objects ORDER BY size DESC LIMIT 10",
    "SELECT key FROM objects WHERE key LIKE 'logs/%' ORDER BY key",
    "SELECT key FROM objects WHERE key LIKE 'Logs/%' ORDER BY key",
    "SELECT key FROM objects WHERE key ILIKE 'LOGS/u%' ORDER BY key",
    r"SELECT key FROM objects WHERE key LIKE 'logs/under\_score%'",
    "SELECT key, starts_with(key, 'photos/') FROM objects ORDER BY key",
    "SELECT split_part(key, '/', 1) AS top, count(*) FROM objects GROUP BY top ORDER BY top",
    "SELECT split_part(key, '/', -1), split_part(key, '/', 9) FROM objects ORDER BY key LIMIT 5",
    "SELECT metadata->>'owner' AS owner, count(*) FROM objects GROUP BY 1 ORDER BY 1",
    "SELECT key FROM objects WHERE metadata->>'owner' = 'alice' ORDER BY key",
    "SELECT key, tags->>'k', metadata->'n', metadata->>'n', metadata->'flag', metadata->>'flag',"
    " metadata->'dims', metadata->>'dims', metadata->'dims'->'h'->1 FROM objects ORDER BY key",
    "SELECT key FROM objects WHERE metadata->>'n' = '5'",
    "SELECT metadata, tags FROM objects ORDER BY seq LIMIT 5",
    "SELECT lower(key), upper(bucket), length(key), coalesce(metadata->>'level', 'none')"
    " FROM objects ORDER BY key",
    "WITH big AS (SELECT * FROM objects WHERE size > 1000)"
    " SELECT bucket, count(*) FROM big GROUP BY bucket ORDER BY bucket",
    "SELECT o.key, e.type, e.time, e.detail FROM objects o JOIN events e ON o.seq = e.seq ORDER BY o.seq",
    "SELECT key FROM objects WHERE bucket = 'logs'"
    " UNION SELECT key FROM versions WHERE is_delete_marker = 1 ORDER BY key",
    "SELECT key FROM objects WHERE size > (SELECT avg(size) FROM objects) ORDER BY key",
    "SELECT key, seq FROM versions WHERE key IN (SELECT key FROM events WHERE type = 'delete') ORDER BY seq",
    "SELECT count(*) FROM objects WHERE created > '2020-01-01'",
    "SELECT count(*) FROM objects WHERE created >= '2023-11-15 12:00:00'",
    "SELECT key, created, created + interval '1 day 2 hours', created - interval '30 minutes',"
    " modified + interval '1 week' FROM objects ORDER BY seq LIMIT 3",
    "SELECT count(*) FROM objects WHERE created < now() - interval '1 week'",
    "SELECT avg(size), sum(size) / count(*), bool_and(size > 0), bool_or(size > 14000) FROM objects",
    "SELECT bucket, row_number() OVER (PARTITION BY bucket ORDER BY size DESC, key) AS r, key"
    " FROM objects ORDER BY bucket, r",
    "SELECT key, version_id, is_latest, is_delete_marker, size FROM versions"
    " WHERE key = 'logs/rotating.log' OR is_delete_marker = 1 ORDER BY seq",
    "SELECT name, owner, created FROM buckets ORDER BY name",
    "SELECT * FROM events ORDER BY seq LIMIT 3",
    "SELECT bucket, string_agg(key, ',') FROM objects WHERE key LIKE '%-00%' GROUP BY bucket ORDER BY bucket",
    "SELECT CASE WHEN size > 1000 THEN 'big' ELSE 'small' END AS kind, count(*) FROM objects"
    " GROUP BY 1 ORDER BY 1",
    "SELECT key, size FROM objects ORDER BY key LIMIT 5 OFFSET 3",
    "SELECT key FROM objects ORDER BY size DESC, key FETCH FIRST 3 ROWS ONLY",
    "SELECT created::date AS day, count(*) FROM objects GROUP BY 1 ORDER BY 1",
    "SELECT cast(size AS text) || '!', strpos(key, '/'), substring(key from 1 for 4),"
    " replace(key, '/', ':'), trim('  x  '), concat(key, '#', size, NULL) FROM objects ORDER BY key LIMIT 5",
    "SELECT abs(-size), round(size / 3.0, 2), greatest(size, 500), least(size, 500), nullif(size, 7)"
    " FROM objects ORDER BY key LIMIT 5",
    "SELECT 1 AS one, 'x' AS s, NULL AS n, true AS t, 2.5 AS f, 7 / 2 AS q",
    "SELECT key, (SELECT count(*) FROM events e WHERE e.key = o.key) FROM objects o ORDER BY key LIMIT 5",
    "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = 'nope')",
    "SELECT key FROM objects WHERE size BETWEEN 100 AND 500 AND key IS NOT NULL ORDER BY key",
    "SELECT key FROM objects WHERE key IS DISTINCT FROM 'logs/rotating.log' ORDER BY key LIMIT 3",
    "SELECT lag(size) OVER (ORDER BY seq), lead(key) OVER (ORDER BY seq) FROM objects ORDER BY seq LIMIT 4",
    "SELECT key FROM objects WHERE key NOT LIKE '%.log' ORDER BY key",
    "SELECT sum(size) FILTER (WHERE bucket = 'logs'), sum(size) OVER () FROM objects GROUP BY size LIMIT 1",
    "SELECT x.key FROM (SELECT key, seq FROM objects) AS x ORDER BY x.seq DESC LIMIT 2",
    "SELECT * FROM objects o JOIN events e ON o.seq = e.seq ORDER BY o.seq LIMIT 2",
    "SELECT * FROM (SELECT count(*), max(size), metadata->>'owner' FROM objects GROUP BY 3) t ORDER BY 1",
]


@pytest.mark.postgres
@pytest.mark.parametrize("sql", SAME_QUERIES)
def test_query_returns_the_same_on_sqlite_and_postgres(
    both: tuple[Catalog, Catalog], sql: str
) -> None:
    lite, postgres = (catalog.query(sql) for catalog in both)
    assert lite.rows, "a query that returns nothing compares nothing"
    assert lite.columns == postgres.columns
    assert lite.rows == postgres.rows
    # Equal values of different types (1 and 1.0, "1" and 1) would also be a difference.
    assert [tuple(map(type, r)) for r in lite.rows] == [tuple(map(type, r)) for r in postgres.rows]


# --- each query family, against answers computed from the data ---------------------------


def test_aggregates_match_the_data(catalog: Catalog) -> None:
    result = catalog.query("SELECT count(*), sum(size), avg(size) FROM objects")
    total = sum(v.size for v in OBJECTS)
    assert result.columns == ["count", "sum", "avg"]
    assert result.rows == [(len(OBJECTS), total, total / len(OBJECTS))]
    assert [type(value) for value in result.rows[0]] == [int, int, float]


def test_group_by_counts_each_bucket(catalog: Catalog) -> None:
    result = catalog.query(
        "SELECT bucket, count(*) AS n FROM objects GROUP BY bucket ORDER BY bucket"
    )
    assert result.to_dicts() == [
        {"bucket": b, "n": n} for b, n in sorted(Counter(v.bucket for v in OBJECTS).items())
    ]


def test_order_by_size_desc_limit_returns_the_largest(catalog: Catalog) -> None:
    result = catalog.query("SELECT key FROM objects ORDER BY size DESC LIMIT 10")
    assert first_column(result) == [v.key for v in sorted(OBJECTS, key=lambda v: -v.size)[:10]]


def test_like_is_case_sensitive_and_escapes_with_backslash(catalog: Catalog) -> None:
    logs = first_column(
        catalog.query("SELECT key FROM objects WHERE key LIKE 'logs/%' ORDER BY key")
    )
    assert logs == sorted(v.key for v in OBJECTS if v.key.startswith("logs/"))
    assert first_column(catalog.query("SELECT key FROM objects WHERE key LIKE 'Logs/%'")) == [
        "Logs/UPPER.txt"
    ]
    escaped = catalog.query(r"SELECT key FROM objects WHERE key LIKE 'logs/under\_score%'")
    assert first_column(escaped) == ["logs/under_score.txt"]


def test_json_columns_stay_decoded_through_ctes_and_subqueries(catalog: Catalog) -> None:
    result = catalog.query(
        "WITH x AS (SELECT metadata AS m, tags FROM objects WHERE key = 'logs/2024/01/app-01.log')"
        " SELECT m, (SELECT t FROM (SELECT tags AS t FROM x) s) AS tt, m->'n' FROM x"
    )
    assert result.rows == [({"owner": "alice", "n": 1}, {"k": "v1"}, 1)]


def test_coalesce_cte_join_union_and_subquery(catalog: Catalog) -> None:
    level = catalog.query(
        "SELECT coalesce(metadata->>'level', 'none') AS l, count(*) FROM objects GROUP BY 1 ORDER BY 1"
    )
    assert level.rows == [("none", len(OBJECTS) - 10), ("top", 10)]
    joined = catalog.query(
        "WITH deleted AS (SELECT seq FROM versions WHERE is_delete_marker = 1)"
        " SELECT e.type, e.key FROM events e JOIN deleted d ON e.seq = d.seq"
    )
    assert joined.rows == [("delete", "photos/deleted.jpg")]
    union = catalog.query("SELECT name FROM buckets UNION SELECT bucket FROM objects ORDER BY 1")
    assert first_column(union) == list(BUCKETS)
    above = catalog.query(
        "SELECT count(*) FROM objects WHERE size > (SELECT max(size) FROM objects) - 2000"
    )
    assert above.rows == [
        (sum(1 for v in OBJECTS if v.size > max(o.size for o in OBJECTS) - 2000),)
    ]


def test_times_are_utc_text_to_the_millisecond(catalog: Catalog) -> None:
    result = catalog.query(
        "SELECT created, created + interval '1 day 2 hours', created - interval '1 week',"
        " created::date FROM objects WHERE seq = 3"
    )
    assert created_text(3) == "2023-11-15 00:13:20.002"
    assert result.rows == [
        (
            created_text(3),
            created_text(3, timedelta(days=1, hours=2)),
            created_text(3, -timedelta(weeks=1)),
            "2023-11-15",
        )
    ]


def test_times_compare_with_string_literals_and_now(catalog: Catalog) -> None:
    later = catalog.query("SELECT count(*) FROM objects WHERE created >= '2023-11-16'")
    expected = sum(1 for seq in OBJECT_SEQS if created_text(seq) >= "2023-11-16")
    assert 0 < expected < len(OBJECTS)
    assert later.rows == [(expected,)]
    assert catalog.query("SELECT count(*) FROM objects WHERE created > '2020-01-01'").rows == [
        (len(OBJECTS),)
    ]
    old = catalog.query("SELECT count(*) FROM objects WHERE created < now() - interval '30 days'")
    assert old.rows == [(len(OBJECTS),)]
    ((now, stamp),) = catalog.query("SELECT now(), CURRENT_TIMESTAMP").rows
    assert now == stamp
    moment = datetime.strptime(now, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    assert abs(moment - datetime.now(UTC)) < timedelta(minutes=1)


def test_booleans_and_numerics_normalise(catalog: Catalog) -> None:
    result = catalog.query(
        "SELECT size > 100, 1.5, 7 / 2, sum(size) / count(*) FROM objects WHERE seq = 3 GROUP BY size"
    )
    assert result.rows == [(1, 1.5, 3, 207)]
    assert [type(v) for v in result.rows[0]] == [int, float, int, int]


def test_columns_are_named_as_postgresql_names_them(catalog: Catalog) -> None:
    result = catalog.query(
        "SELECT count(*), lower(o.key), o.key, o.size::text, metadata->>'owner', 1 + 1, e.seq AS s"
        " FROM objects o JOIN events e ON e.seq = o.seq GROUP BY o.key, o.size, o.metadata, e.seq LIMIT 1"
    )
    assert result.columns == ["count", "lower", "key", "size", "?column?", "?column?", "s"]


def test_json_columns_are_told_by_name_when_type_inference_fails(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no inference today")

    monkeypatch.setattr("tier0.catalog._dialect.qualify", fail)
    result = catalog.query(
        "SELECT metadata, tags FROM objects WHERE key = 'logs/2024/01/app-03.log'"
    )
    assert result.rows == [({"owner": "alice", "n": 3}, {"k": "v0"})]


# --- read-only, and nothing outside the catalog --------------------------------------------

REFUSED = [
    "INSERT INTO t0_versions (seq) VALUES (999)",
    "UPDATE t0_versions SET size = 0",
    "DELETE FROM t0_versions",
    "DROP TABLE t0_versions",
    "CREATE TABLE x (a int)",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "PRAGMA query_only = OFF",
    "SELECT 1; DELETE FROM t0_versions",
    "SELECT count(*) FROM objects; SELECT 1",
    "SELECT * FROM t0_versions",
    "SELECT * FROM objects JOIN t0_credentials c ON true",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pg_catalog.pg_tables",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM public.objects",
    "WITH x AS (DELETE FROM t0_versions RETURNING *) SELECT * FROM x",
    "WITH t0_versions AS (SELECT * FROM t0_versions) SELECT * FROM t0_versions",
    "WITH objects AS (SELECT * FROM versions) SELECT * FROM objects",
    "SELECT * FROM (WITH x AS (SELECT 1 AS a) SELECT * FROM x) s, x",
    "SELECT * INTO stolen FROM objects",
    "SELECT key FROM objects FOR UPDATE",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT query_to_xml('SELECT * FROM t0_credentials', true, true, '')",
    "SELECT load_extension('evil')",
    "SELECT readfile('/etc/passwd')",
    "SELECT pg_sleep(10)",
    "SELECT current_setting('data_directory')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT dblink('host=x', 'SELECT 1')",
    "SELECT sqlite_version()",
    "SELECT user",
    "SET statement_timeout = 0",
    "COPY t0_versions TO '/tmp/x'",
    "VACUUM",
    "CALL f()",
    "EXPLAIN SELECT 1",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_and_non_catalog_relations_are_refused(
    catalog: Catalog, backend: MetaBackend, sql: str
) -> None:
    before = fingerprint(backend)
    with pytest.raises(SQLNotAllowed):
        catalog.query(sql)
    assert fingerprint(backend) == before
    assert catalog.query("SELECT count(*) FROM objects").rows == [(len(OBJECTS),)]


def test_refusal_names_the_relations_that_exist(catalog: Catalog) -> None:
    with pytest.raises(SQLNotAllowed, match="t0_versions") as refused:
        catalog.query("SELECT * FROM t0_versions")
    assert "objects, versions, prefixes, buckets, events, principals, audit, uploads" in str(
        refused.value
    )
    with pytest.raises(SQLNotAllowed, match="pg_read_file"):
        catalog.query("SELECT pg_read_file('x')")
    with pytest.raises(SQLNotAllowed, match="DELETE"):
        catalog.query("DELETE FROM objects")


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        "SELECT FROM WHERE",
        "SELECT (1",
        "SELECT 'unterminated",
        "SELECT key FROM objects WHERE",
        "",
    ],
)
def test_malformed_sql_is_a_syntax_error(catalog: Catalog, sql: str) -> None:
    with pytest.raises(SQLSyntaxError):
        catalog.query(sql)


def test_syntax_error_gives_the_position(catalog: Catalog) -> None:
    with pytest.raises(SQLSyntaxError, match="line 1, column"):
        catalog.query("SELECT key FROM objects WHERE (size > ")


@pytest.mark.parametrize(
    "sql, word",
    [
        ("SELECT nosuch FROM objects", "nosuch"),
        ("SELECT key FROM objects WHERE nosuch = 1", "nosuch"),
        ("SELECT frobnicate(key) FROM objects", "frobnicate"),
        ("SELECT regexp_replace(key, 'a', 'b') FROM objects", "regexp_replace"),
        (
            "SELECT key FROM objects WHERE created > now() - interval '3 fortnights'",
            "(?i)fortnights",
        ),
    ],
)
def test_unknown_column_or_function_is_a_syntax_error(
    catalog: Catalog, sql: str, word: str
) -> None:
    with pytest.raises(SQLSyntaxError, match=word):
        catalog.query(sql)


# --- visible_buckets --------------------------------------------------------------------------

HIDING = [
    ("SELECT DISTINCT bucket FROM objects", {("logs",)}),
    ("SELECT DISTINCT o.bucket FROM objects AS o JOIN events AS e ON o.seq = e.seq", {("logs",)}),
    (
        "SELECT DISTINCT e.bucket FROM events e WHERE e.seq IN (SELECT seq FROM versions)",
        {("logs",)},
    ),
    ("SELECT DISTINCT objects.bucket FROM objects WHERE objects.bucket <> 'logs'", set()),
    ("SELECT count(*) FROM (SELECT * FROM versions) v WHERE v.bucket = 'private'", {(0,)}),
    ("WITH x AS (SELECT * FROM events) SELECT DISTINCT bucket FROM x", {("logs",)}),
    ("SELECT (SELECT count(DISTINCT bucket) FROM objects)", {(1,)}),
    ("SELECT name FROM buckets", {("logs",)}),
    (
        "SELECT bucket FROM objects UNION SELECT bucket FROM versions UNION SELECT bucket FROM events",
        {("logs",)},
    ),
    ("SELECT count(*) FROM objects WHERE key LIKE 'secret/%' OR bucket = 'private'", {(0,)}),
]


@pytest.mark.parametrize("sql, expected", HIDING)
def test_visible_buckets_hide_other_buckets_everywhere(
    catalog: Catalog, sql: str, expected: set[tuple[Any, ...]]
) -> None:
    assert set(catalog.query(sql, visible_buckets=["logs"]).rows) == expected
    # The same query as root sees more: the rewrite, not the data, hid the rows.
    assert set(catalog.query(sql).rows) != expected


def test_visible_buckets_count_only_what_is_visible(catalog: Catalog) -> None:
    result = catalog.query("SELECT count(*) FROM objects", visible_buckets={"logs", "photos"})
    assert result.rows == [(sum(1 for v in OBJECTS if v.bucket != "private"),)]
    assert catalog.query("SELECT count(*) FROM objects", visible_buckets=[]).rows == [(0,)]
    # A bucket name is a bound literal, never SQL.
    assert catalog.query(
        "SELECT count(*) FROM objects", visible_buckets=["x') OR ('1'='1"]
    ).rows == [(0,)]


@pytest.mark.parametrize("view", ["principals", "audit"])
def test_principals_and_audit_are_for_root_only(catalog: Catalog, view: str) -> None:
    assert catalog.query(f"SELECT count(*) FROM {view}").rows == [(1,)]
    with pytest.raises(SQLNotAllowed, match="only root"):
        catalog.query(f"SELECT count(*) FROM {view}", visible_buckets=["logs"])


# --- any text: a read-only answer or a tier0 refusal ---------------------------------------

FRAGMENTS = [
    "SELECT", "*", "key", "size", "metadata->>'owner'", "count(*)", "FROM", "objects", "versions",
    "t0_versions", "sqlite_master", "pg_catalog.pg_class", "WHERE", "size > 1", "AND", "OR",
    "GROUP BY", "ORDER BY", "LIMIT 3", "(", ")", ",", ";", "'", "\"", "UNION", "WITH x AS",
    "(SELECT 1)", "x", "INSERT INTO", "DELETE", "UPDATE objects SET size = 0", "DROP TABLE",
    "VALUES (1)", "INTO", "RETURNING", "PRAGMA", "ATTACH", "--", "/*", "interval '1 day'",
    "now()", "created", "+", "-", "split_part(key, '/', 1)", "pg_sleep(1)", "lower(", "::text",
    "JOIN events e ON", "e.seq = objects.seq", "FOR UPDATE", "$1", "?", "NULL", "1e999",
]  # fmt: skip


SHAPED = st.builds(
    "SELECT {} FROM {} WHERE {} {}".format,
    st.sampled_from(["*", "key", "bucket, size", "count(*)", "metadata->>'owner' AS o", "lower(key)",
                     "created + interval '1 day'", "split_part(key, '/', 1)", "1/0", "pg_sleep(0)", "nope"]),
    st.sampled_from(["objects", "versions v", "events", "buckets", "t0_versions", "sqlite_master",
                     "(SELECT * FROM objects) s", "objects o JOIN events e ON o.seq = e.seq", "principals"]),
    st.sampled_from(["true", "size > 100", "key LIKE 'logs/%'", "bucket IN (SELECT name FROM buckets)",
                     "created > now() - interval '1 year'", "metadata->>'n' = '3'", "x = 1"]),
    st.sampled_from(["", "ORDER BY 1", "LIMIT 3", "GROUP BY 1", "; DELETE FROM t0_versions", "FOR UPDATE"]),
)  # fmt: skip
FRAGMENTED = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map(" ".join)
ANY_TEXT = st.one_of(SHAPED, SHAPED, SHAPED, FRAGMENTED, st.text(max_size=60))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sql=ANY_TEXT, visible=st.sampled_from([None, ["logs"]]))
def test_any_text_is_answered_read_only_or_refused(
    catalog: Catalog, backend: MetaBackend, sql: str, visible: list[str] | None
) -> None:
    before = fingerprint(backend)
    try:
        result = catalog.query(sql, visible_buckets=visible, timeout_s=2, rows_max=20)
    except Tier0Error:
        event("refused")
    else:
        event("answered")
        assert len(result.rows) <= 20
        if visible is not None and "bucket" in result.columns:
            assert {row[result.columns.index("bucket")] for row in result.rows} <= {"logs"}
    assert fingerprint(backend) == before
