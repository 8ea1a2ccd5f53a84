"""The metadata backends and the group committer, on SQLite and PostgreSQL."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tier0.errors import InvalidArgument, MetaError, MetaUnavailable, SchemaMismatch
from tier0.meta import (
    SCHEMA_VERSION,
    Committer,
    MetaBackend,
    PostgresBackend,
    WriteTx,
    open_backend,
)


@pytest.fixture
def backend(tmp_path: pathlib.Path, meta_url: str) -> Iterator[MetaBackend]:
    opened = open_backend(meta_url, data_dir=tmp_path)
    opened.install_schema()
    yield opened
    opened.close()


def _append(kind: str) -> Callable[[WriteTx], int]:
    def op(tx: WriteTx) -> int:
        seq = tx.next_seq()
        tx.execute(
            "INSERT INTO t0_events (seq, type, bucket, key, principal, time_us, detail)"
            " VALUES (?, ?, '', '', 'test', ?, '{}')",
            (seq, kind, tx.now_us),
        )
        return seq

    return op


def _failing(tx: WriteTx) -> int:
    tx.next_seq()  # allocated, then rolled back with the operation
    tx.execute("INSERT INTO t0_events (seq) VALUES (NULL)")  # violates NOT NULL
    return -1


def test_concurrent_operations_share_commits_and_seq_stays_gap_free(backend: MetaBackend) -> None:
    committer = Committer(backend)
    results: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for n in range(50):
            try:
                op = _failing if (index + n) % 17 == 0 else _append("e")
                seq = committer.run(op)
                with lock:
                    results.append(seq)
            except Exception as error:
                with lock:
                    failures.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    committer.close()
    statistics = committer.statistics()
    assert len(failures) == sum(1 for i in range(8) for n in range(50) if (i + n) % 17 == 0)
    assert sorted(results) == list(range(1, len(results) + 1))
    assert statistics.ops_committed == len(results)
    assert statistics.commits < len(results)  # group commit packed operations together
    assert statistics.ops_per_commit_max > 1
    with backend.reader() as db:
        assert db.query_one("SELECT count(*), max(seq) FROM t0_events") == (
            len(results),
            len(results),
        )


def test_a_failing_operation_does_not_take_its_batch_down(backend: MetaBackend) -> None:
    committer = Committer(backend)
    gate = threading.Event()
    outcomes: dict[str, object] = {}

    def call(name: str, op: Callable[[WriteTx], object]) -> None:
        try:
            outcomes[name] = committer.run(op)
        except Exception as error:
            outcomes[name] = error

    # Hold a commit open so that the next three operations queue behind it
    # and are committed together, as one batch.
    started = threading.Event()
    blocker = threading.Thread(
        target=call, args=("blocker", lambda tx: (started.set(), gate.wait(60))[1])
    )
    blocker.start()
    assert started.wait(5)
    callers = [
        threading.Thread(target=call, args=(name, op))
        for name, op in (
            ("first", _append("first")),
            ("broken", _failing),
            ("last", _append("last")),
        )
    ]
    for index, caller in enumerate(callers, start=1):
        caller.start()
        _wait_for(lambda index=index: committer.waiting == index)
    commits_before = committer.statistics().commits
    gate.set()
    for thread in [blocker, *callers]:
        thread.join()
    assert outcomes["blocker"] is True
    assert (outcomes["first"], outcomes["last"]) == (1, 2)
    assert isinstance(outcomes["broken"], Exception)
    assert "null" in str(outcomes["broken"]).lower()
    # The blocker's commit, then one for the three that queued behind it.
    assert committer.statistics().commits == commits_before + 2
    committer.close()
    with backend.reader() as db:
        assert db.query_all("SELECT seq, type FROM t0_events ORDER BY seq") == [
            (1, "first"),
            (2, "last"),
        ]


def test_a_lone_writer_commits_on_its_own_thread(backend: MetaBackend) -> None:
    committer = Committer(backend)
    threads: list[str] = []

    def op(tx: WriteTx) -> int:
        threads.append(threading.current_thread().name)
        return _append("mine")(tx)

    assert committer.run(op) == 1
    assert threads == [threading.current_thread().name]
    committer.close()


def test_a_gathering_leader_is_woken_once_its_batch_is_complete(backend: MetaBackend) -> None:
    # A leader waits for the writers of the last batch to come back; each wake-up
    # is a GIL hand-over, so only the arrival that completes the batch wakes it.
    committer = Committer(backend, gather_wait_s=30.0)
    wakes: list[int] = []

    class Counting(threading.Condition):
        def notify(self, n: int = 1) -> None:
            wakes.append(n)
            super().notify(n)

    committer._arrived = Counting(committer._mutex)
    committer._last_threads = {-1, -2, -3}  # three writers expected back, besides the leader
    threads = [threading.Thread(target=committer.run, args=(_append("lead"),))]
    threads[0].start()
    _wait_until(lambda: committer._gathering)
    for arrived in range(1, 4):
        threads.append(threading.Thread(target=committer.run, args=(_append("back"),)))
        threads[-1].start()
        _wait_until(lambda n=arrived: committer.waiting >= n + 1 or not committer._gathering)
    for thread in threads:
        thread.join(timeout=30)
    assert wakes == [1]
    statistics = committer.statistics()
    assert (statistics.commits, statistics.ops_per_commit_max) == (1, 4)
    committer.close()


def test_operations_queued_while_the_leader_waits_for_the_write_lock_join_its_batch(
    backend: MetaBackend,
) -> None:
    # Another process (here: another connection) holds the write lock: the
    # leader waits for it, and what queues meanwhile commits with the leader's
    # operation instead of waiting for another turn of the lock.
    committer = Committer(backend, gather_wait_s=0)
    other = backend.connect()
    other.begin_write()
    other.query_one("SELECT value FROM t0_counters WHERE name = 'seq'" + backend.lock_suffix)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(committer.run(_append("a"))))]
    threads[0].start()
    _wait_until(lambda: committer._leading and committer.waiting == 0)
    for _ in range(2):
        threads.append(threading.Thread(target=lambda: results.append(committer.run(_append("b")))))
        threads[-1].start()
    _wait_until(lambda: committer.waiting == 2)
    other.rollback()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [1, 2, 3]
    statistics = committer.statistics()
    assert (statistics.commits, statistics.ops_per_commit_max) == (1, 3)
    committer.close()
    other.close()


def test_run_many_commits_its_operations_together_each_with_its_outcome(
    backend: MetaBackend,
) -> None:
    committer = Committer(backend)
    outcomes = committer.run_many([_append("a"), _failing, _append("b")])
    assert [outcome.result for outcome in outcomes] == [1, None, 2]
    assert outcomes[0].error is None and outcomes[2].error is None
    assert isinstance(outcomes[1].error, Exception) and "null" in str(outcomes[1].error).lower()
    # The failing operation was taken out and the batch re-run: one commit.
    statistics = committer.statistics()
    assert (statistics.commits, statistics.ops_committed) == (1, 2)
    assert committer.run_many([]) == []
    committer.close()
    with backend.reader() as db:
        assert db.query_all("SELECT seq, type FROM t0_events ORDER BY seq") == [(1, "a"), (2, "b")]


@pytest.mark.parametrize("lone_first", [True, False], ids=["another-leads", "run-many-leads"])
def test_run_many_queued_behind_a_commit_is_taken_by_the_next_leader(
    backend: MetaBackend, lone_first: bool
) -> None:
    # A commit is under way; maybe a thread queues one operation, then run_many
    # three: the next leader (first in line) commits all of them at once.
    committer = Committer(backend, gather_wait_s=0)
    gate, started = threading.Event(), threading.Event()
    ran_on: list[str] = []

    def noting(kind: str) -> Callable[[WriteTx], int]:
        def op(tx: WriteTx) -> int:
            ran_on.append(threading.current_thread().name)
            return _append(kind)(tx)

        return op

    blocker = threading.Thread(
        target=committer.run, args=(lambda tx: (started.set(), gate.wait(60))[1],)
    )
    blocker.start()
    assert started.wait(5)
    threads = [blocker]
    if lone_first:
        threads.append(threading.Thread(target=committer.run, args=(noting("l"),), name="lone"))
        threads[-1].start()
        _wait_for(lambda: committer.waiting == 1)
    outcomes: list[object] = []
    threads.append(
        threading.Thread(
            target=lambda: outcomes.extend(committer.run_many([noting("m")] * 3)), name="many"
        )
    )
    threads[-1].start()
    _wait_for(lambda: committer.waiting == 3 + lone_first)
    commits_before = committer.statistics().commits
    gate.set()
    for thread in threads:
        thread.join(timeout=30)
    first = 1 + lone_first
    assert [o.result for o in outcomes] == [first, first + 1, first + 2]  # type: ignore[attr-defined]
    assert ran_on == ["lone" if lone_first else "many"] * (3 + lone_first)
    # The blocker's commit, then one for everything queued behind it.
    assert committer.statistics().commits == commits_before + 2
    committer.close()


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_close_lets_the_commit_under_way_finish(backend: MetaBackend) -> None:
    committer = Committer(backend)
    started, gate = threading.Event(), threading.Event()
    outcome: list[object] = []

    def slow(tx: WriteTx) -> int:
        started.set()
        gate.wait(60)
        return _append("x")(tx)

    writer = threading.Thread(target=lambda: outcome.append(committer.run(slow)))
    writer.start()
    assert started.wait(5)
    closer = threading.Thread(target=committer.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # close waits for the commit under way
    gate.set()
    closer.join(5)
    writer.join(5)
    assert outcome == [1]
    with pytest.raises(MetaError, match="closed"):
        committer.run(_append("late"))


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the committer"
        time.sleep(0.005)


def test_closed_committer_refuses_work(backend: MetaBackend) -> None:
    committer = Committer(backend)
    committer.close()
    with pytest.raises(MetaError):
        committer.run(_append("late"))


def test_schema_from_a_newer_version_is_refused(backend: MetaBackend) -> None:
    committer = Committer(backend)
    committer.run(
        lambda tx: tx.execute("UPDATE t0_schema SET value = '999' WHERE name = 'version'")
    )
    committer.close()
    with pytest.raises(SchemaMismatch, match="999"):
        backend.install_schema()


def test_schema_4_is_upgraded_in_place_keeping_its_invocations(backend: MetaBackend) -> None:
    # Schema 4's t0_invocations lacked the columns the function runtime added.
    committer = Committer(backend)

    def downgrade(tx: WriteTx) -> None:
        tx.execute("DROP VIEW invocations")
        tx.execute("DROP TABLE t0_invocations")
        tx.execute(
            "CREATE TABLE t0_invocations (id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL"
            " UNIQUE, trigger_name TEXT NOT NULL, function_name TEXT NOT NULL, seq BIGINT NOT"
            " NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, not_before_us BIGINT NOT"
            " NULL, lease_owner TEXT, lease_until_us BIGINT, created_us BIGINT NOT NULL,"
            " started_us BIGINT, ended_us BIGINT, error TEXT)"
        )
        tx.execute(
            "INSERT INTO t0_invocations (id, idempotency_key, trigger_name, function_name, seq,"
            " status, attempts, not_before_us, created_us) VALUES (7, '1:t', 't', 'f', 1,"
            " 'done', 1, 0, 0)"
        )
        tx.execute("UPDATE t0_schema SET value = '4' WHERE name = 'version'")

    committer.run(downgrade)
    committer.close()
    backend.install_schema()
    with backend.reader() as db:
        assert db.query_one("SELECT value FROM t0_schema WHERE name = 'version'")[0] == str(
            SCHEMA_VERSION
        )
        row = db.query_one("SELECT id, status, function_version, event, logs FROM invocations")
    assert tuple(row) == (7, "done", None, None, None)


def test_unknown_backend_and_unreachable_postgres_are_clear_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidArgument, match="sqlite"):
        open_backend("mysql://x", data_dir=tmp_path)
    with pytest.raises(MetaUnavailable) as caught:
        open_backend("postgresql://user:hunter2@127.0.0.1:1/db", data_dir=tmp_path)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


@pytest.mark.postgres
def test_a_schema_change_under_way_in_another_process_is_waited_for(
    tmp_path: pathlib.Path, postgres_url: str
) -> None:
    # As when an engine's worker processes open one database together: one grants on
    # the catalog's views while another replaces them. Unordered, PostgreSQL fails the
    # second ("tuple concurrently updated") instead of making it wait.
    first = open_backend(postgres_url, data_dir=tmp_path)
    first.install_schema()
    assert isinstance(first, PostgresBackend) and first.catalog_role is not None
    second = open_backend(postgres_url, data_dir=tmp_path)
    holder = first.connect()
    holder.begin_write()
    first.lock_schema(holder)
    holder.execute(f"GRANT SELECT ON objects TO {first.catalog_role}")
    failures: list[BaseException] = []

    def install() -> None:
        try:
            second.install_schema()
        except BaseException as failure:  # reported below
            failures.append(failure)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()  # waiting for the other's change to end
    holder.commit()
    thread.join()
    holder.close()
    assert failures == []
    assert isinstance(second, PostgresBackend) and second.catalog_role == first.catalog_role
    with second.reader() as db:
        assert db.query_one("SELECT count(*) FROM objects")[0] == 0
    first.close()
    second.close()


@pytest.mark.postgres
def test_postgres_user_without_createrole_still_gets_a_working_catalog(
    tmp_path: pathlib.Path, postgres_url: str
) -> None:
    import psycopg

    import tier0

    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS tier0_limited_user")
        admin.execute("CREATE ROLE tier0_limited_user LOGIN NOCREATEROLE")
        admin.execute(f"ALTER DATABASE {name} OWNER TO tier0_limited_user")
        admin.execute("ALTER SCHEMA public OWNER TO tier0_limited_user")
    limited_url = postgres_url.replace("postgresql://postgres@", "postgresql://tier0_limited_user@")
    with tier0.open(tmp_path / "data", meta=limited_url) as t0:
        backend = t0._kernel.meta
        assert isinstance(backend, PostgresBackend)
        assert backend.catalog_role is None  # it could not make the reader role
        t0.create_bucket("bkt")
        t0.put("bkt", "k", b"x")
        assert t0.sql("SELECT key FROM objects").rows == [("k",)]
