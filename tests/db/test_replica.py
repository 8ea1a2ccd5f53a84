"""The engine's copy of the catalog (``tier0.db._replica``): what a query over
``objects``, ``versions``, ``prefixes`` and ``events`` reads.

Every test runs on both metadata backends (the ``t0`` fixture). The copy must
answer exactly what the metadata holds, right after each write, whoever wrote
it (another opened store, as another process would), and only for the buckets
the principal may list.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

import tier0
from tier0.db import _replica
from tier0.db._replica import CatalogReplica
from tier0.errors import SQLNotAllowed, Tier0Error


def _replica_of(t0: tier0.Tier0) -> CatalogReplica:
    replica = t0._owned.engine().replica
    assert replica is not None
    return replica


def _truth(t0: tier0.Tier0, sql: str) -> list[Any]:
    """The same rows read straight from the metadata tables."""
    with t0._kernel.meta.reader() as db:
        return sorted(tuple(row) for row in db.query_all(sql))


def _copy(t0: tier0.Tier0, sql: str) -> list[Any]:
    return sorted(tuple(row) for row in t0.sql(sql).rows)


def _assert_in_step(t0: tier0.Tier0) -> None:
    assert _copy(t0, "SELECT bucket, key, version_id, is_latest, is_delete_marker, size, seq"
                     " FROM versions") == _truth(
        t0, "SELECT bucket, key, version_id, is_latest, is_delete_marker, size, seq"
            " FROM t0_versions"
    )  # fmt: skip
    assert _copy(t0, "SELECT bucket, prefix, objects, bytes FROM prefixes") == _truth(
        t0, "SELECT bucket, prefix, objects, bytes FROM t0_prefixes WHERE objects > 0"
    )
    assert _copy(t0, "SELECT seq, type, bucket, key FROM events") == _truth(
        t0, "SELECT seq, type, bucket, key FROM t0_events"
    )


def test_every_kind_of_change_reaches_the_next_query(t0: tier0.Tier0) -> None:
    t0.create_bucket("plain")
    t0.create_bucket("kept")
    t0.set_versioning("kept", "Enabled")
    for bucket in ("plain", "kept"):
        t0.put(bucket, "a/b/one.txt", b"1", metadata={"kind": "text"})
        t0.put(bucket, "a/two.bin", b"22")
    _assert_in_step(t0)  # the first query builds the copy
    for bucket in ("plain", "kept"):
        t0.put(bucket, "a/b/one.txt", b"111")  # overwrite: a new (or replaced) version
        t0.delete(bucket, "a/two.bin")  # gone, or a delete marker
        t0.set_tags(bucket, "a/b/one.txt", {"stage": "raw"})  # in place: no new version
        t0.copy(bucket, "a/b/one.txt", bucket, "c/three.txt")
    _assert_in_step(t0)
    assert t0.sql(
        "SELECT bucket, key, size, tags->>'stage' AS stage, metadata FROM objects"
        " WHERE key = 'a/b/one.txt' ORDER BY bucket"
    ).rows == [("kept", "a/b/one.txt", 3, "raw", "{}"), ("plain", "a/b/one.txt", 3, "raw", "{}")]
    # Versioned: the old version and the delete marker stay, only as versions.
    assert t0.sql(
        "SELECT count(*) FILTER (WHERE is_delete_marker = 1), count(*) FROM versions"
        " WHERE bucket = 'kept'"
    ).rows == [(1, 5)]
    deleted = t0.list_versions("kept").versions
    marker = next(v for v in deleted if v.is_delete_marker)
    t0.delete("kept", marker.key, version_id=marker.version_id)  # undelete
    _assert_in_step(t0)
    assert t0.sql("SELECT key FROM objects WHERE bucket = 'kept' ORDER BY key").rows == [
        ("a/b/one.txt",), ("a/two.bin",), ("c/three.txt",)
    ]  # fmt: skip
    statistics = _replica_of(t0).statistics()
    assert statistics.full_loads == 1  # then only caught up, key by key
    assert statistics.catch_ups >= 2
    assert statistics.seq == t0.events.latest_seq()


def test_a_catch_up_reads_only_the_keys_the_new_events_name(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    for i in range(50):
        t0.put("bkt", f"k/{i:02d}", b"x")
    assert t0.sql("SELECT count(*) FROM objects").rows == [(50,)]
    before = _replica_of(t0).statistics()
    t0.put("bkt", "k/07", b"yy")
    t0.put("bkt", "k/07", b"zzz")
    t0.delete("bkt", "k/08")
    assert t0.sql("SELECT count(*), sum(size) FROM objects").rows == [(49, 50 + 2 - 1)]
    after = _replica_of(t0).statistics()
    assert after.keys_read - before.keys_read == 2  # k/07 once, however often it changed
    assert (after.full_loads, after.catch_ups) == (before.full_loads, before.catch_ups + 1)
    assert (after.versions, after.events) == (49, before.events + 3)


def test_a_copy_far_behind_is_rebuilt(t0: tier0.Tier0, monkeypatch: pytest.MonkeyPatch) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "first", b"1")
    assert t0.sql("SELECT count(*) FROM objects").rows == [(1,)]
    monkeypatch.setattr(_replica, "FULL_LOAD_EVENTS", 5)
    for i in range(6):
        t0.put("bkt", f"more/{i}", b"2")
    assert t0.sql("SELECT count(*) FROM objects").rows == [(7,)]
    assert _replica_of(t0).statistics().full_loads == 2
    _assert_in_step(t0)


@pytest.mark.parametrize("bulk", [False, True], ids=["python-rows", "bulk-read"])
def test_a_build_reads_every_row_and_keeps_nulls(
    t0: tier0.Tier0, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    # Bucket events have no version, size or etag; object events have them. A
    # bulk build (read_arrow: a child process on SQLite, COPY on PostgreSQL) must
    # keep NULLs NULL and values values, whichever comes first.
    if bulk:
        monkeypatch.setattr(_replica, "BULK_READ_EVENTS", 0)
    t0.create_bucket("bkt")
    t0.put("bkt", "a", b"1", metadata={"kind": "text"})
    t0.create_bucket("two")
    t0.set_tags("bkt", "a", {"t": "1"})
    t0.put("two", "b/c/d", b"22")
    expected = _truth(t0, "SELECT seq, type, version_id, size, etag FROM t0_events")
    assert any(row[3] is None for row in expected) and any(row[3] is not None for row in expected)
    assert _copy(t0, "SELECT seq, type, version_id, size, etag FROM events") == expected
    _assert_in_step(t0)
    assert t0.sql("SELECT metadata->>'kind', tags->>'t' FROM objects WHERE key = 'a'").rows == [
        ("text", "1")
    ]


def test_writes_through_another_opened_store_are_seen(
    t0: tier0.Tier0, tmp_path: Path, meta_url: str
) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "mine", b"1")
    assert t0.sql("SELECT key FROM objects").rows == [("mine",)]
    # A second store on the same metadata, as a second process would open it.
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        other.put("bkt", "theirs", b"22")
        other.delete("bkt", "mine")
        assert t0.sql("SELECT key, size FROM objects").rows == [("theirs", 2)]
        assert other.sql("SELECT key, size FROM objects").rows == [("theirs", 2)]
    _assert_in_step(t0)


def test_principals_see_only_the_buckets_they_may_list(t0: tier0.Tier0) -> None:
    t0.create_bucket("open")
    t0.create_bucket("secret")
    t0.put("open", "o", b"1")
    t0.put("secret", "s", b"2")
    t0.create_user("alice")
    t0.grant("alice", "s3:ListBucket", "/open")
    alice = t0.as_principal("alice")
    for view in ("objects", "versions", "prefixes", "events"):
        buckets = alice.sql(f"SELECT DISTINCT bucket FROM {view}").rows
        assert buckets == [("open",)], view
    assert sorted(t0.sql("SELECT DISTINCT bucket FROM objects").rows) == [("open",), ("secret",)]
    nobody, _ = t0.create_user("nobody")
    assert t0.as_principal(nobody.id).sql("SELECT count(*) FROM objects").rows == [(0,)]


def test_the_copy_cannot_be_named_or_written(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", b"1")
    assert t0.sql("SELECT count(*) FROM objects").rows == [(1,)]
    with pytest.raises(SQLNotAllowed, match="catalog view"):
        t0.sql("DELETE FROM objects")
    with pytest.raises(SQLNotAllowed, match="catalog view"):
        t0.sql("INSERT INTO events SELECT * FROM events")
    for name in ("t0_replica.versions", "t0_replica.main.versions"):
        with pytest.raises(Tier0Error):  # no bucket t0_replica; no three-part names
            t0.sql(f"SELECT * FROM {name}")
    assert t0.sql("SELECT count(*) FROM objects").rows == [(1,)]


def test_check_finds_a_copy_out_of_step(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "a", b"1")
    t0.put("bkt", "b", b"2")
    replica = _replica_of(t0)
    assert t0.db.check().ok
    # Lose a row behind the replica's back: check must say so.
    engine = t0._owned.engine()
    engine._db.execute(f"DELETE FROM {_replica.SCHEMA}.versions WHERE key = 'a'")
    report = replica.check()
    assert not report.ok
    assert report.differences == [("versions", 1, 2)]


def test_a_closed_store_leaves_its_copy_to_the_next_process(tmp_path: Path, meta_url: str) -> None:
    data = tmp_path / "data"
    with tier0.open(data, meta=meta_url) as first:
        first.create_bucket("bkt")
        first.put("bkt", "a", b"1")
        assert first.sql("SELECT count(*) FROM objects").rows == [(1,)]
        first.put("bkt", "b", b"2")  # committed after the copy's last sync
    with tier0.open(data, meta=meta_url) as second:
        assert second.sql("SELECT key FROM objects ORDER BY key").rows == [("a",), ("b",)]
        statistics = _replica_of(second).statistics()
        assert (statistics.full_loads, statistics.catch_ups, statistics.keys_read) == (0, 1, 1)
        _assert_in_step(second)
    assert len(list((data / "cache").glob("catalog-*.duckdb"))) == 1


def test_a_copy_of_other_metadata_is_rebuilt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tier0.open(data) as first:
        first.create_bucket("old")
        first.put("old", "gone", b"1")
        assert first.sql("SELECT count(*) FROM objects").rows == [(1,)]
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (data / "meta" / name).unlink(missing_ok=True)
    with tier0.open(data) as fresh:  # new metadata, same cache directory
        fresh.create_bucket("new")
        assert fresh.sql("SELECT bucket, key FROM objects").rows == []
        assert _replica_of(fresh).statistics().full_loads == 1


def test_copies_in_use_are_not_adopted_and_spare_ones_are_swept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for stem in ("catalog-spare1", "catalog-spare2"):
        (cache / f"{stem}.duckdb").write_bytes(b"left by a dead process")
        (cache / f"{stem}.lock").touch()
    os.utime(cache / "catalog-spare1.duckdb", (1, 1))  # the older one
    fd = os.open(cache / "catalog-busy.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held: as by a running process
    (cache / "catalog-busy.duckdb").write_bytes(b"in use")
    try:
        adopted = _replica.ReplicaFile(cache)
        assert adopted.path == cache / "catalog-spare2.duckdb"  # the newest spare
        assert not (cache / "catalog-spare1.duckdb").exists()
        assert (cache / "catalog-busy.duckdb").exists()
        again = _replica.ReplicaFile(cache)  # spare2 is held now: a new file
        assert again.path not in (adopted.path, cache / "catalog-busy.duckdb")
        adopted.release()
        again.release()
    finally:
        os.close(fd)


def test_an_unreadable_copy_is_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cache").mkdir(parents=True)
    (data / "cache" / "catalog-broken.duckdb").write_bytes(b"not a database" * 100)
    (data / "cache" / "catalog-broken.lock").touch()
    with tier0.open(data) as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "k", b"1")
        assert t0.sql("SELECT key FROM objects").rows == [("k",)]


def test_a_query_of_the_copy_alone_is_bound_once_and_stays_current(t0: tier0.Tier0) -> None:
    t0.create_bucket("open")
    t0.create_bucket("secret")
    t0.put("open", "a", b"1")
    t0.put("secret", "s", b"2")
    bound = t0._owned.engine().bound
    query = "SELECT bucket, count(*) AS n FROM objects GROUP BY bucket ORDER BY bucket"
    assert t0.sql(query).rows == [("open", 1), ("secret", 1)]
    key = f"None\n{query}"
    assert bound.get(key) is not None  # kept bound
    t0.put("open", "b", b"3")  # the reused form still reads the caught-up copy
    assert t0.sql(query).rows == [("open", 2), ("secret", 1)]
    # Another principal, the same text: its own buckets, its own bound form.
    t0.create_user("alice")
    t0.grant("alice", "s3:ListBucket", "/open")
    assert t0.as_principal("alice").sql(query).rows == [("open", 2)]
    assert t0.sql(query).rows == [("open", 2), ("secret", 1)]
    # Anything else in the query (a table, a view read per query) is bound each time.
    t0.sql("CREATE TABLE open.t (x INT); INSERT INTO open.t VALUES (1)")
    for other in ("SELECT count(*) FROM open.t, objects", "SELECT count(*) FROM buckets"):
        t0.sql(other)
        assert bound.get(f"None\n{other}") is None
    t0.sql("INSERT INTO open.t VALUES (2)")
    assert t0.sql("SELECT count(*) FROM open.t, objects").rows == [(6,)]
