"""Running queries: the engine's own read-only line, deadlines and cancelling,
``rows_max``, threads, statistics and the plan cache."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.catalog.dataset import OBJECTS, VERSIONS, first_column
from tier0.catalog import Catalog, CatalogStatistics
from tier0.catalog._dialect import Plan
from tier0.errors import (
    CatalogError,
    InvalidArgument,
    QueryTimeout,
    SQLNotAllowed,
    SQLSyntaxError,
)
from tier0.meta import MetaBackend


def test_result_to_dicts_pairs_columns_with_values(catalog: Catalog) -> None:
    result = catalog.query("SELECT key, size AS bytes FROM objects WHERE seq = 1")
    assert result.to_dicts() == [{"key": VERSIONS[0].key, "bytes": VERSIONS[0].size}]


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
    monkeypatch.setattr(catalog, "_compile", lambda sql, visible: Plan(write, None))
    with pytest.raises(SQLNotAllowed, match="read-only"):
        catalog.query("SELECT 1")
    with backend.reader() as connection:
        assert connection.query_all(probe) == before
    monkeypatch.undo()
    assert catalog.query("SELECT count(*) FROM versions").rows == [(len(VERSIONS),)]


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


def _cancel_while_running(
    catalog: Catalog, *, then: Callable[[], object] = lambda: None
) -> list[BaseException]:
    """Start a long query in a thread, cancel_all (and ``then``), and return what the
    query raised."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            catalog.query(COUNT_TO_A_BILLION, timeout_s=60)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while catalog.statistics().queries_running == 0:
            assert time.monotonic() < deadline, "the query never started"
            time.sleep(0.01)
        time.sleep(0.5)  # into the engine, where cancel_all has to reach it
        catalog.cancel_all()
    finally:
        then()
    worker.join(timeout=20)  # a query cancel_all missed runs for minutes
    assert not worker.is_alive()
    assert catalog.statistics().queries_running == 0
    return outcome


def test_cancel_all_stops_a_running_query(catalog: Catalog) -> None:
    started = time.monotonic()
    outcome = _cancel_while_running(catalog)
    assert len(outcome) == 1 and type(outcome[0]) is CatalogError, outcome
    assert "cancelled" in str(outcome[0])
    assert time.monotonic() - started < 15
    assert catalog.query("SELECT count(*) FROM objects").rows == [(len(OBJECTS),)]


def test_cancel_all_stops_a_query_not_yet_in_the_engine(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled after it started but before it reached the engine (on PostgreSQL,
    before cancel_all could know its server process), it stops once there."""
    gate = threading.Event()

    def held(run: Callable[..., Any]) -> Callable[..., Any]:
        def wait_then_run(*args: Any) -> Any:
            gate.wait(20)
            return run(*args)

        return wait_then_run

    for name in ("_run_sqlite", "_run_postgres"):  # whichever this backend uses
        monkeypatch.setattr(catalog, name, held(getattr(catalog, name)))
    outcome = _cancel_while_running(catalog, then=gate.set)
    assert len(outcome) == 1 and type(outcome[0]) is CatalogError, outcome
    assert "cancelled" in str(outcome[0])


def test_limits_are_checked(backend: MetaBackend) -> None:
    with pytest.raises(InvalidArgument):
        Catalog(backend, timeout_s=0)
    with pytest.raises(InvalidArgument, match="plans_cached_max"):
        Catalog(backend, plans_cached_max=-1)
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
    assert first_column(result) == sorted(v.key for v in OBJECTS)[:rows_max]
    assert result.truncated


def test_rows_max_equal_to_the_rows_is_not_truncated(backend: MetaBackend) -> None:
    catalog = Catalog(backend, rows_max=len(OBJECTS))
    result = catalog.query("SELECT key FROM objects")
    assert len(result.rows) == len(OBJECTS)
    assert not result.truncated
    catalog.close()


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


# --- statistics -----------------------------------------------------------------------------


def _changes(before: CatalogStatistics, after: CatalogStatistics) -> dict[str, Any]:
    """The counters that moved, by how much; ``query_time_s_total`` is checked on its own."""
    return {
        name: getattr(after, name) - getattr(before, name)
        for name in (f.name for f in fields(CatalogStatistics))
        if name != "query_time_s_total" and getattr(after, name) != getattr(before, name)
    }


def test_statistics_start_at_zero(catalog: Catalog) -> None:
    assert catalog.statistics() == CatalogStatistics(
        queries_run=0,
        queries_refused=0,
        queries_failed=0,
        queries_timed_out=0,
        queries_cancelled=0,
        rows_returned=0,
        plan_cache_hits=0,
        plan_cache_misses=0,
        plans_cached=0,
        query_time_s_total=0.0,
        queries_running=0,
    )


def test_statistics_count_an_answered_query_and_its_rows(catalog: Catalog) -> None:
    before = catalog.statistics()
    result = catalog.query("SELECT key FROM objects WHERE bucket = 'photos'")
    after = catalog.statistics()
    photos = sum(1 for v in OBJECTS if v.bucket == "photos")
    assert len(result.rows) == photos > 1
    assert _changes(before, after) == {
        "queries_run": 1,
        "rows_returned": photos,
        "plan_cache_misses": 1,
        "plans_cached": 1,
    }
    assert after.query_time_s_total > before.query_time_s_total


def test_statistics_count_the_rows_returned_not_the_rows_that_exist(catalog: Catalog) -> None:
    before = catalog.statistics()
    assert catalog.query("SELECT key FROM objects", rows_max=3).truncated
    assert catalog.query("SELECT key FROM objects", rows_max=0).truncated
    changes = _changes(before, catalog.statistics())
    assert (changes["queries_run"], changes["rows_returned"]) == (2, 3)


@pytest.mark.parametrize(
    "sql, plans_cached",
    [
        ("SELEC 1", 0),
        ("DELETE FROM objects", 0),
        ("SELECT * FROM t0_versions", 0),
        ("SELECT nosuch FROM objects", 1),  # compiled and kept; the engine refuses it
    ],
)
def test_statistics_count_a_refused_query_as_refused(
    catalog: Catalog, sql: str, plans_cached: int
) -> None:
    before = catalog.statistics()
    for _ in range(2):  # what the checks refuse is not kept: the second try misses too
        with pytest.raises((SQLSyntaxError, SQLNotAllowed)):
            catalog.query(sql)
    cache = (
        {"plan_cache_misses": 1, "plan_cache_hits": 1, "plans_cached": 1}
        if plans_cached
        else {"plan_cache_misses": 2}
    )
    assert _changes(before, catalog.statistics()) == {"queries_refused": 2, **cache}


def test_statistics_count_a_query_that_fails_on_a_value_as_failed(catalog: Catalog) -> None:
    before = catalog.statistics()
    with pytest.raises(CatalogError, match="the query failed") as failed:
        catalog.query("SELECT abs(-9223372036854775807 - 1)")  # out of range on both engines
    assert type(failed.value) is CatalogError
    assert _changes(before, catalog.statistics()) == {
        "queries_failed": 1,
        "plan_cache_misses": 1,
        "plans_cached": 1,
    }


def test_statistics_count_a_timeout_and_its_time(catalog: Catalog) -> None:
    before = catalog.statistics()
    with pytest.raises(QueryTimeout):
        catalog.query(COUNT_TO_A_BILLION, timeout_s=0.2)
    after = catalog.statistics()
    assert _changes(before, after) == {
        "queries_timed_out": 1,
        "plan_cache_misses": 1,
        "plans_cached": 1,
    }
    # PostgreSQL's statement_timeout counts whole milliseconds, so allow for one.
    assert after.query_time_s_total - before.query_time_s_total >= 0.199


def test_statistics_count_a_cancelled_query(catalog: Catalog) -> None:
    before = catalog.statistics()
    outcome = _cancel_while_running(catalog)
    assert len(outcome) == 1 and "cancelled" in str(outcome[0]), outcome
    after = catalog.statistics()
    assert _changes(before, after) == {
        "queries_cancelled": 1,
        "plan_cache_misses": 1,
        "plans_cached": 1,
    }
    # It ran from when it started until cancel_all, 0.5 s later.
    assert after.query_time_s_total - before.query_time_s_total >= 0.4


def test_statistics_skip_calls_refused_for_their_arguments(backend: MetaBackend) -> None:
    catalog = Catalog(backend)
    before = catalog.statistics()
    with pytest.raises(InvalidArgument):
        catalog.query("SELECT 1", rows_max=-1)
    with pytest.raises(InvalidArgument):
        catalog.query("SELECT 1", timeout_s=0)
    with pytest.raises(InvalidArgument):
        catalog.query("SELECT 1", visible_buckets="logs")
    assert catalog.statistics() == before
    catalog.query("SELECT 1")  # and the next query counts as usual
    counted = catalog.statistics()
    assert _changes(before, counted) == {
        "queries_run": 1,
        "rows_returned": 1,
        "plan_cache_misses": 1,
        "plans_cached": 1,
    }
    catalog.close()
    with pytest.raises(CatalogError, match="closed"):
        catalog.query("SELECT 1")
    assert catalog.statistics() == counted


def test_statistics_add_up_across_threads(catalog: Catalog) -> None:
    def run() -> None:
        for _ in range(10):
            catalog.query("SELECT key FROM objects LIMIT 2")
            with pytest.raises(SQLNotAllowed):
                catalog.query("SELECT * FROM t0_versions")

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = catalog.statistics()
    assert (stats.queries_run, stats.queries_refused, stats.rows_returned) == (60, 60, 120)
    assert stats.plan_cache_hits + stats.plan_cache_misses == 120
    assert stats.plans_cached == 1


# --- the plan cache ---------------------------------------------------------------------------


def test_a_repeated_query_hits_the_plan_cache_and_answers_the_same(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[str] = []
    compile_plan = catalog._compile

    def spy(sql: str, visible: frozenset[str] | None) -> Plan:
        compiled.append(sql)
        return compile_plan(sql, visible)

    monkeypatch.setattr(catalog, "_compile", spy)
    sql = "SELECT bucket, count(*), sum(size) FROM objects GROUP BY bucket ORDER BY bucket"
    first = catalog.query(sql)
    second = catalog.query(sql)
    assert first.rows == [
        (b, sum(1 for v in OBJECTS if v.bucket == b), sum(v.size for v in OBJECTS if v.bucket == b))
        for b in sorted({v.bucket for v in OBJECTS})
    ]
    assert second == first
    assert compiled == [sql]  # the second run skipped compiling
    stats = catalog.statistics()
    assert (stats.plan_cache_hits, stats.plan_cache_misses, stats.plans_cached) == (1, 1, 1)
    catalog.query(sql + " ")  # other text is another plan, even where it means the same
    assert compiled == [sql, sql + " "]


# Root (None) and nobody (no buckets) too: the two must never meet in the cache.
VISIBILITIES: list[frozenset[str] | None] = [
    None,
    frozenset(),
    frozenset({"logs"}),
    frozenset({"photos"}),
    frozenset({"logs", "photos"}),
]
BUCKET_COUNTS = "SELECT bucket, count(*) FROM objects GROUP BY bucket ORDER BY bucket"


def _bucket_counts(visible: frozenset[str] | None) -> list[tuple[str, int]]:
    counts = Counter(v.bucket for v in OBJECTS if visible is None or v.bucket in visible)
    return sorted(counts.items())


def test_plans_are_never_shared_between_visible_buckets(catalog: Catalog) -> None:
    for _ in range(2):  # compiled, then from the cache: each visibility sees its own rows
        for visible in VISIBILITIES:
            result = catalog.query(BUCKET_COUNTS, visible_buckets=visible)
            assert result.rows == _bucket_counts(visible), visible
    stats = catalog.statistics()
    assert (stats.plan_cache_misses, stats.plan_cache_hits) == (len(VISIBILITIES),) * 2
    assert stats.plans_cached == len(VISIBILITIES)
    # The same buckets in another order or collection are the same visibility.
    same = catalog.query(BUCKET_COUNTS, visible_buckets=["photos", "logs", "logs"])
    assert same.rows == _bucket_counts(frozenset({"logs", "photos"}))
    assert catalog.statistics().plan_cache_hits == len(VISIBILITIES) + 1


CACHED_QUERIES = [
    BUCKET_COUNTS,
    "SELECT DISTINCT e.bucket FROM events e JOIN versions v ON v.seq = e.seq ORDER BY 1",
    "SELECT name FROM buckets ORDER BY name",
    "SELECT count(*) FROM objects WHERE key LIKE 'secret/%'",
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    runs=st.lists(
        st.tuples(st.sampled_from(CACHED_QUERIES), st.sampled_from(VISIBILITIES)), max_size=10
    )
)
def test_cached_plans_answer_as_fresh_ones_in_any_order(
    backend: MetaBackend, runs: list[tuple[str, frozenset[str] | None]]
) -> None:
    cached = Catalog(backend, plans_cached_max=3)  # small, so that plans are evicted too
    fresh = Catalog(backend, plans_cached_max=0)
    try:
        for sql, visible in runs:
            answer = cached.query(sql, visible_buckets=visible)
            assert answer == fresh.query(sql, visible_buckets=visible), (sql, visible)
        assert fresh.statistics().plans_cached == 0
        assert cached.statistics().plans_cached <= 3
    finally:
        cached.close()
        fresh.close()


def test_the_plan_cache_evicts_the_least_recently_used(backend: MetaBackend) -> None:
    catalog = Catalog(backend, plans_cached_max=2)
    a, b, c = "SELECT 1 AS a", "SELECT 2 AS b", "SELECT 3 AS c"
    for sql in (a, b, a, c):  # c evicts b, used less recently than a
        catalog.query(sql)
    before = catalog.statistics()
    assert (before.plan_cache_misses, before.plan_cache_hits, before.plans_cached) == (3, 1, 2)
    assert catalog.query(a).rows == [(1,)]
    assert catalog.query(b).rows == [(2,)]
    assert _changes(before, catalog.statistics()) == {
        "queries_run": 2,
        "rows_returned": 2,
        "plan_cache_hits": 1,
        "plan_cache_misses": 1,
    }
    catalog.close()


def test_plans_cached_max_zero_caches_nothing(backend: MetaBackend) -> None:
    catalog = Catalog(backend, plans_cached_max=0)
    for _ in range(2):
        assert catalog.query("SELECT count(*) FROM objects").rows == [(len(OBJECTS),)]
    stats = catalog.statistics()
    assert (stats.plan_cache_misses, stats.plan_cache_hits, stats.plans_cached) == (2, 0, 0)
    catalog.close()


def test_engine_refuses_a_read_behind_the_views_the_checks_let_through(
    catalog: Catalog, backend: MetaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials sit in an internal table; only the engine stands in the way here.
    monkeypatch.setattr(
        catalog,
        "_compile",
        lambda sql, visible: Plan("SELECT secret_key FROM t0_credentials", None),
    )
    with pytest.raises(SQLNotAllowed, match="read-only"):
        catalog.query("SELECT 1")
    monkeypatch.undo()
    assert catalog.query("SELECT count(*) FROM versions").rows == [(len(VERSIONS),)]
