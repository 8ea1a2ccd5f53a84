"""SQL over the catalog: one dialect, the same answers on SQLite and PostgreSQL.

Every test runs on real engines. The data set below is built once in Python
and written to each backend, so expected answers are computed from it, never
read back from the engine under test.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tier0.catalog import Catalog, QueryResult
from tier0.catalog._sql import _Plan
from tier0.errors import (
    CatalogError,
    InvalidArgument,
    QueryTimeout,
    SQLNotAllowed,
    SQLSyntaxError,
    Tier0Error,
)
from tier0.meta import Committer, MetaBackend, PostgresBackend, SQLiteBackend, WriteTx, dump_json

BASE_US = 1_700_000_000_000_000  # 2023-11-14 22:13:20 UTC
STEP_US = 3_600_000_000 + 1_000  # an hour and a millisecond: times stay on whole ms


@dataclass(frozen=True)
class Version:
    bucket: str
    key: str
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    is_latest: int = 1
    is_delete_marker: int = 0


def _versions() -> list[Version]:
    rows = [
        Version("logs", f"logs/2024/01/app-{i:02d}.log", i * 100 + 7,
                {"owner": "alice" if i % 2 else "bob", "n": i}, {"k": f"v{i % 3}"})
        for i in range(20)
    ]  # fmt: skip
    rows += [
        Version("logs", "logs/rotating.log", 10 + i, {"owner": "alice"}, is_latest=int(i == 2))
        for i in range(3)
    ]
    rows += [
        Version("logs", "Logs/UPPER.txt", 5, {"owner": "bob"}),
        Version("logs", "logs/under_score.txt", 6, {"owner": "erin"}),
        Version("logs", "logs/underXscore.txt", 6, {"owner": "erin"}),
    ]
    rows += [
        Version("photos", f"photos/cat-{i:02d}.jpg", 1000 * i + 1,
                {"owner": "carol", "flag": i % 2 == 0, "dims": {"w": i, "h": [1, 2]}}, {"k": "cat"})
        for i in range(15)
    ]  # fmt: skip
    rows += [
        Version("photos", "photos/deleted.jpg", 50, {"owner": "carol"}, is_latest=0),
        Version("photos", "photos/deleted.jpg", 0, is_delete_marker=1),
    ]
    rows += [
        Version(
            "private",
            f"secret/plan-{i}.txt",
            333 + i,
            {"owner": "dave", "level": "top"},
            {"k": "hidden"},
        )
        for i in range(10)
    ]
    return rows


VERSIONS = _versions()
BUCKETS = ("logs", "photos", "private")
# seq is the 1-based position: the committer's sequence starts at 1.
OBJECT_SEQS = [i + 1 for i, v in enumerate(VERSIONS) if v.is_latest and not v.is_delete_marker]
OBJECTS = [VERSIONS[seq - 1] for seq in OBJECT_SEQS]


def _created(seq: int, shift: timedelta = timedelta()) -> str:
    """The catalog's text for the creation time of version ``seq``, moved by ``shift``."""
    moment = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=BASE_US + (seq - 1) * STEP_US)
    moment += shift
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _populate(backend: MetaBackend) -> None:
    def write(tx: WriteTx) -> None:
        for i, name in enumerate(BUCKETS):
            tx.execute(
                "INSERT INTO t0_buckets (name, owner, versioning, created_us) VALUES (?, ?, ?, ?)",
                (name, f"owner-{name}", "Enabled", BASE_US + i * 1000),
            )
        for v in VERSIONS:
            seq = tx.next_seq()
            at_us = BASE_US + (seq - 1) * STEP_US
            tx.execute(
                "INSERT INTO t0_versions (seq, bucket, key, version_id, is_latest, is_delete_marker,"
                " size, stored_bytes, etag, content_type, created_us, modified_us, owner, metadata,"
                " tags, headers, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (seq, v.bucket, v.key, f"v{seq}", v.is_latest, v.is_delete_marker, v.size, v.size,
                 f"e{seq}", "text/plain", at_us, at_us, "root", dump_json(v.metadata),
                 dump_json(v.tags), "{}", ""),
            )  # fmt: skip
            tx.execute(
                "INSERT INTO t0_events (seq, type, bucket, key, version_id, size, etag, principal,"
                " time_us, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (seq, "delete" if v.is_delete_marker else "put", v.bucket, v.key, f"v{seq}",
                 v.size, f"e{seq}", "root", at_us, dump_json({"seq": seq})),
            )  # fmt: skip
        tx.execute(
            "INSERT INTO t0_principals (id, name, kind, created_us, created_by) VALUES (?,?,?,?,?)",
            ("p1", "alice", "person", BASE_US, "root"),
        )
        tx.execute(
            "INSERT INTO t0_audit (time_us, principal, action, resource, allowed, reason)"
            " VALUES (?,?,?,?,?,?)",
            (BASE_US, "p1", "get", "logs/x", 1, "granted"),
        )

    committer = Committer(backend)
    try:
        committer.run(write)
    finally:
        committer.close()


# The catalog cannot write, and the tests that try check that nothing changed, so
# each backend is populated once per module and shared.


@pytest.fixture(scope="module")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaBackend]:
    backend = SQLiteBackend(tmp_path_factory.mktemp("catalog") / "meta")
    backend.install_schema()
    _populate(backend)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def postgres_backend(request: pytest.FixtureRequest) -> Iterator[MetaBackend]:
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database("catalog_test_sql")
    backend = PostgresBackend(url)
    backend.install_schema()
    _populate(backend)
    yield backend
    backend.close()
    cluster.drop_database("catalog_test_sql")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> MetaBackend:
    backend: MetaBackend = request.getfixturevalue(f"{request.param}_backend")
    return backend


@pytest.fixture
def catalog(backend: MetaBackend) -> Iterator[Catalog]:
    catalog = Catalog(backend)
    yield catalog
    catalog.close()


@pytest.fixture
def both(
    sqlite_backend: MetaBackend, postgres_backend: MetaBackend
) -> Iterator[tuple[Catalog, Catalog]]:
    catalogs = (Catalog(sqlite_backend), Catalog(postgres_backend))
    yield catalogs
    for catalog in catalogs:
        catalog.close()


def _fingerprint(backend: MetaBackend) -> tuple[Any, ...]:
    """Everything a write could change, read past the catalog."""
    with backend.reader() as connection:
        return tuple(
            tuple(connection.query_one(f"SELECT count(*), coalesce(sum(length(key)), 0) FROM {t}"))
            for t in ("t0_versions", "t0_events")
        ) + tuple(connection.query_one("SELECT count(*) FROM t0_buckets"))


def _column(result: QueryResult) -> list[Any]:
    return [row[0] for row in result.rows]


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
    assert _column(result) == [v.key for v in sorted(OBJECTS, key=lambda v: -v.size)[:10]]


def test_like_is_case_sensitive_and_escapes_with_backslash(catalog: Catalog) -> None:
    logs = _column(catalog.query("SELECT key FROM objects WHERE key LIKE 'logs/%' ORDER BY key"))
    assert logs == sorted(v.key for v in OBJECTS if v.key.startswith("logs/"))
    assert _column(catalog.query("SELECT key FROM objects WHERE key LIKE 'Logs/%'")) == [
        "Logs/UPPER.txt"
    ]
    escaped = catalog.query(r"SELECT key FROM objects WHERE key LIKE 'logs/under\_score%'")
    assert _column(escaped) == ["logs/under_score.txt"]


def test_string_functions_follow_postgresql(catalog: Catalog) -> None:
    result = catalog.query(
        "SELECT starts_with(key, 'photos/'), split_part(key, '/', 1), split_part(key, '/', -1),"
        " lower(key), length(key) FROM objects WHERE key = 'Logs/UPPER.txt'"
    )
    assert result.rows == [(0, "Logs", "UPPER.txt", "logs/upper.txt", 14)]
    assert result.columns == ["starts_with", "split_part", "split_part", "lower", "length"]


def test_json_fields_compare_as_text_and_return_decoded(catalog: Catalog) -> None:
    alice = catalog.query("SELECT key FROM objects WHERE metadata->>'owner' = 'alice' ORDER BY key")
    assert _column(alice) == sorted(v.key for v in OBJECTS if v.metadata.get("owner") == "alice")
    assert _column(catalog.query("SELECT key FROM objects WHERE metadata->>'n' = '5'")) == [
        "logs/2024/01/app-05.log"
    ]
    result = catalog.query(
        "SELECT metadata, tags->>'k', metadata->'flag', metadata->>'flag', metadata->'dims',"
        " metadata->>'missing' FROM objects WHERE key = 'photos/cat-02.jpg'"
    )
    dims = {"w": 2, "h": [1, 2]}
    assert result.rows == [
        ({"owner": "carol", "flag": True, "dims": dims}, "cat", True, "true", dims, None)
    ]


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
    assert _column(union) == list(BUCKETS)
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
    assert _created(3) == "2023-11-15 00:13:20.002"
    assert result.rows == [
        (
            _created(3),
            _created(3, timedelta(days=1, hours=2)),
            _created(3, -timedelta(weeks=1)),
            "2023-11-15",
        )
    ]


def test_times_compare_with_string_literals_and_now(catalog: Catalog) -> None:
    later = catalog.query("SELECT count(*) FROM objects WHERE created >= '2023-11-16'")
    expected = sum(1 for seq in OBJECT_SEQS if _created(seq) >= "2023-11-16")
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

    monkeypatch.setattr("tier0.catalog._sql.qualify", fail)
    result = catalog.query(
        "SELECT metadata, tags FROM objects WHERE key = 'logs/2024/01/app-03.log'"
    )
    assert result.rows == [({"owner": "alice", "n": 3}, {"k": "v0"})]


def test_result_to_dicts_pairs_columns_with_values(catalog: Catalog) -> None:
    result = catalog.query("SELECT key, size AS bytes FROM objects WHERE seq = 1")
    assert result.to_dicts() == [{"key": VERSIONS[0].key, "bytes": VERSIONS[0].size}]


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
    before = _fingerprint(backend)
    with pytest.raises(SQLNotAllowed):
        catalog.query(sql)
    assert _fingerprint(backend) == before
    assert catalog.query("SELECT count(*) FROM objects").rows == [(len(OBJECTS),)]


def test_refusal_names_the_relations_that_exist(catalog: Catalog) -> None:
    with pytest.raises(SQLNotAllowed, match="t0_versions") as refused:
        catalog.query("SELECT * FROM t0_versions")
    assert "objects, versions, buckets, events, principals, audit" in str(refused.value)
    with pytest.raises(SQLNotAllowed, match="pg_read_file"):
        catalog.query("SELECT pg_read_file('x')")
    with pytest.raises(SQLNotAllowed, match="DELETE"):
        catalog.query("DELETE FROM objects")


# Writes a bare engine would run. PostgreSQL's cursor takes a SELECT only, and
# nextval() is a write no ROLLBACK undoes: only READ ONLY can stop it.
ENGINE_WRITES = {
    "sqlite": ("DELETE FROM t0_versions RETURNING seq", "SELECT count(*) FROM t0_versions"),
    "postgres": (
        "SELECT nextval('t0_audit_id_seq')",
        "SELECT last_value, is_called FROM t0_audit_id_seq",
    ),
}


def test_engine_refuses_a_write_the_checks_let_through(
    catalog: Catalog, backend: MetaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's line of defence alone: hand it a write as if it had been checked.
    write, probe = ENGINE_WRITES[backend.dialect]
    with backend.reader() as connection:
        before = connection.query_all(probe)
    monkeypatch.setattr(catalog, "_compile", lambda sql, visible: _Plan(write, None))
    with pytest.raises(SQLNotAllowed, match="read-only"):
        catalog.query("SELECT 1")
    with backend.reader() as connection:
        assert connection.query_all(probe) == before
    monkeypatch.undo()
    assert catalog.query("SELECT count(*) FROM versions").rows == [(len(VERSIONS),)]


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


COUNT_TO_A_BILLION = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000)"
    " SELECT count(*) FROM c"
)


def test_timeout_cancels_and_the_catalog_still_answers(catalog: Catalog) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"0\.3 s.*timeout_s"):
        catalog.query(COUNT_TO_A_BILLION, timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert catalog.query("SELECT count(*) FROM objects").rows == [(len(OBJECTS),)]


def test_cancel_all_stops_a_running_query(catalog: Catalog) -> None:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            catalog.query(COUNT_TO_A_BILLION, timeout_s=60)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    started = time.monotonic()
    worker.start()
    time.sleep(0.5)  # let the query reach the engine
    catalog.cancel_all()
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert len(outcome) == 1 and type(outcome[0]) is CatalogError, outcome
    assert "cancelled" in str(outcome[0])
    assert time.monotonic() - started < 15
    assert catalog.query("SELECT count(*) FROM objects").rows == [(len(OBJECTS),)]


def test_limits_are_checked(backend: MetaBackend) -> None:
    with pytest.raises(InvalidArgument):
        Catalog(backend, timeout_s=0)
    catalog = Catalog(backend)
    with pytest.raises(InvalidArgument):
        catalog.query("SELECT 1", rows_max=-1)
    with pytest.raises(InvalidArgument, match="collection"):
        catalog.query("SELECT 1", visible_buckets="logs")
    catalog.close()
    with pytest.raises(CatalogError, match="closed"):
        catalog.query("SELECT 1")


# --- rows_max -------------------------------------------------------------------------------


@pytest.mark.parametrize("rows_max", [0, 1, 5, len(OBJECTS) - 1])
def test_rows_past_rows_max_are_cut_and_flagged(catalog: Catalog, rows_max: int) -> None:
    result = catalog.query("SELECT key FROM objects ORDER BY key", rows_max=rows_max)
    assert _column(result) == sorted(v.key for v in OBJECTS)[:rows_max]
    assert result.truncated


def test_rows_max_equal_to_the_rows_is_not_truncated(backend: MetaBackend) -> None:
    catalog = Catalog(backend, rows_max=len(OBJECTS))
    result = catalog.query("SELECT key FROM objects")
    assert len(result.rows) == len(OBJECTS)
    assert not result.truncated
    catalog.close()


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


# --- threads --------------------------------------------------------------------------------


def test_threads_share_one_catalog(catalog: Catalog) -> None:
    answers: list[Any] = []

    def run() -> None:
        for _ in range(10):
            answers.append(catalog.query("SELECT count(*) FROM objects WHERE size > 10").rows)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [[(sum(1 for v in OBJECTS if v.size > 10),)]] * 60


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
    before = _fingerprint(backend)
    try:
        result = catalog.query(sql, visible_buckets=visible, timeout_s=2, rows_max=20)
    except Tier0Error:
        event("refused")
    else:
        event("answered")
        assert len(result.rows) <= 20
        if visible is not None and "bucket" in result.columns:
            assert {row[result.columns.index("bucket")] for row in result.rows} <= {"logs"}
    assert _fingerprint(backend) == before
