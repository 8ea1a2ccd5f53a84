"""The metadata backends and the group committer, on SQLite and PostgreSQL."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Iterator

import pytest

from tier0.errors import InvalidArgument, MetaError, MetaUnavailable, SchemaMismatch
from tier0.meta import Committer, MetaBackend, PostgresBackend, WriteTx, open_backend


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
    # Hold the committer busy so the next three operations land in one batch.
    blocker = committer.submit(lambda tx: gate.wait(5))
    first = committer.submit(_append("first"))
    broken = committer.submit(_failing)
    last = committer.submit(_append("last"))
    gate.set()
    blocker.result()
    assert (first.result(), last.result()) == (1, 2)
    with pytest.raises(Exception, match=r"(?i)null"):
        broken.result()
    committer.close()
    with backend.reader() as db:
        assert db.query_all("SELECT seq, type FROM t0_events ORDER BY seq") == [
            (1, "first"),
            (2, "last"),
        ]


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


def test_unknown_backend_and_unreachable_postgres_are_clear_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidArgument, match="sqlite"):
        open_backend("mysql://x", data_dir=tmp_path)
    with pytest.raises(MetaUnavailable) as caught:
        open_backend("postgresql://user:hunter2@127.0.0.1:1/db", data_dir=tmp_path)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


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
