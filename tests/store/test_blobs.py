"""Blobs: bytes stored like an object's, referenced by other subsystems (DataBase tables).

Each test runs on both metadata backends (the ``t0`` fixture) against the
real local chunk store.
"""

from __future__ import annotations

import random
from itertools import accumulate

import pytest

import tier0
from tier0.errors import ChunkMissing
from tier0.store import (
    Blob,
    blob_size,
    chunk_name,
    iter_blob,
    read_blob,
    reference_blob,
    release_blob,
    write_blob,
)
from tier0.store._manifest import Manifest

#: A few MiB: several chunks under the default policy (1 MiB average, 4 MiB most).
BIG_BYTES = 5 * 1024 * 1024


def _bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _reference(t0: tier0.Tier0, blob: Blob) -> None:
    t0._kernel.committer.run(lambda tx: reference_blob(tx, blob))


def _release(t0: tier0.Tier0, blob: Blob) -> None:
    t0._kernel.committer.run(lambda tx: release_blob(tx, blob.manifest))


def _refcounts(t0: tier0.Tier0) -> dict[str, int]:
    with t0._kernel.meta.reader() as db:
        rows = db.query_all("SELECT hash, refcount FROM t0_chunks")
    return {chunk_name(bytes(digest)): int(count) for digest, count in rows}


def _chunk_files(t0: tier0.Tier0) -> set[str]:
    return set(t0._kernel.chunks.names())


def _names(blob: Blob) -> list[str]:
    return [chunk_name(digest) for digest, _, _ in blob.chunks]


# -- writing and reading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, None), (0, 10), (7, 100), (999, None), (500, 0), (990, 50), (2000, 10), (-5, 3)],
)
def test_read_blob_returns_the_requested_range_clamped_to_the_blob(
    t0: tier0.Tier0, offset: int, length: int | None
) -> None:
    data = _bytes(1000, seed=1)
    blob = write_blob(t0._kernel, data)
    assert blob.size == 1000 and blob_size(blob.manifest) == 1000
    start = max(offset, 0)
    stop = len(data) if length is None else min(start + length, len(data))
    assert read_blob(t0._kernel, blob.manifest, offset, length) == data[start:stop]


def test_write_blob_stores_chunks_even_when_small(t0: tier0.Tier0) -> None:
    blob = write_blob(t0._kernel, b"tiny")
    assert len(blob.chunks) == 1 and blob.manifest
    assert blob.checksum.startswith("blake3:")
    assert _chunk_files(t0) == set(_names(blob))
    assert blob.stored_bytes == blob.chunks[0][2] > 0


def test_empty_blob_has_no_chunks_and_reads_as_empty(t0: tier0.Tier0) -> None:
    blob = write_blob(t0._kernel, b"")
    assert blob.size == 0 and blob.chunks == () and blob.manifest == b""
    assert read_blob(t0._kernel, blob.manifest) == b""
    assert list(iter_blob(t0._kernel, blob.manifest)) == []
    assert blob_size(blob.manifest) == 0
    _reference(t0, blob)  # nothing to count, and no error
    _release(t0, blob)
    assert _refcounts(t0) == {} and _chunk_files(t0) == set()
    assert t0.check().ok


def test_multi_chunk_blob_reads_every_range(t0: tier0.Tier0) -> None:
    data = _bytes(BIG_BYTES, seed=2)
    blob = write_blob(t0._kernel, data)
    assert blob.size == BIG_BYTES and len(blob.chunks) > 1
    assert sum(length for _, length, _ in blob.chunks) == BIG_BYTES
    assert read_blob(t0._kernel, blob.manifest) == data
    rng = random.Random(3)
    for _ in range(20):
        offset = rng.randrange(BIG_BYTES)
        length = rng.randrange(BIG_BYTES - offset + 1)
        assert read_blob(t0._kernel, blob.manifest, offset, length) == data[offset:][:length]


def test_iter_blob_yields_one_block_per_chunk_the_range_overlaps(t0: tier0.Tier0) -> None:
    data = _bytes(BIG_BYTES, seed=4)
    blob = write_blob(t0._kernel, data)
    ends = list(accumulate(length for _, length, _ in blob.chunks))
    # From just before the first chunk boundary to just after the second.
    offset, stop = ends[0] - 10, ends[1] + 10
    blocks = list(iter_blob(t0._kernel, blob.manifest, offset, stop - offset))
    assert [len(block) for block in blocks] == [10, ends[1] - ends[0], 10]
    assert b"".join(blocks) == data[offset:stop]


def test_read_blob_fetches_only_the_chunks_the_range_overlaps(t0: tier0.Tier0) -> None:
    data = _bytes(BIG_BYTES, seed=5)
    blob = write_blob(t0._kernel, data)
    ends = list(accumulate(length for _, length, _ in blob.chunks))
    # Remove the last chunk's file: ranges before it still read, ranges into it cannot.
    assert t0._kernel.chunks.delete_if_idle(_names(blob)[-1], 0)
    assert read_blob(t0._kernel, blob.manifest, 0, ends[-2]) == data[: ends[-2]]
    with pytest.raises(ChunkMissing):
        read_blob(t0._kernel, blob.manifest, ends[-2] - 1, 2)


def test_write_blob_from_pieces_matches_the_same_bytes_at_once(t0: tier0.Tier0) -> None:
    data = _bytes(3 * 1024 * 1024, seed=6)
    whole = write_blob(t0._kernel, data)
    pieces = write_blob(t0._kernel, (data[i : i + 65_537] for i in range(0, len(data), 65_537)))
    assert pieces.manifest == whole.manifest and pieces.checksum == whole.checksum
    assert read_blob(t0._kernel, pieces.manifest) == data


# -- references and garbage collection --------------------------------------------------------


def test_reference_blob_counts_each_chunk_once_per_reference(t0: tier0.Tier0) -> None:
    data = _bytes(BIG_BYTES, seed=7)
    blob = write_blob(t0._kernel, data)
    again = write_blob(t0._kernel, data)  # deduplicated: the same chunks
    assert again.chunks == blob.chunks
    assert _refcounts(t0) == {}  # written, not yet referenced
    _reference(t0, blob)
    assert _refcounts(t0) == dict.fromkeys(_names(blob), 1)
    _reference(t0, again)
    assert _refcounts(t0) == dict.fromkeys(_names(blob), 2)
    _release(t0, blob)
    assert _refcounts(t0) == dict.fromkeys(_names(blob), 1)


def test_gc_reclaims_released_blob_chunks_and_keeps_referenced_ones(t0: tier0.Tier0) -> None:
    kept = write_blob(t0._kernel, _bytes(2 * 1024 * 1024, seed=8))
    released = write_blob(t0._kernel, _bytes(2 * 1024 * 1024, seed=9))
    assert not set(_names(kept)) & set(_names(released))
    _reference(t0, kept)
    _reference(t0, released)
    assert t0.gc(grace_s=0).chunks_deleted == 0  # both referenced
    _release(t0, released)
    report = t0.gc(grace_s=0)
    assert report.chunks_deleted == len(released.chunks)
    assert report.bytes_freed == released.stored_bytes
    assert _chunk_files(t0) == set(_names(kept))
    assert set(_refcounts(t0)) == set(_names(kept))
    assert read_blob(t0._kernel, kept.manifest) == _bytes(2 * 1024 * 1024, seed=8)
    with pytest.raises(ChunkMissing):
        read_blob(t0._kernel, released.manifest)


def test_gc_keeps_a_shared_chunk_until_every_reference_is_released(t0: tier0.Tier0) -> None:
    data = _bytes(1024 * 1024, seed=10)
    first = write_blob(t0._kernel, data)
    second = write_blob(t0._kernel, data)
    _reference(t0, first)
    _reference(t0, second)
    _release(t0, first)
    assert t0.gc(grace_s=0).chunks_deleted == 0
    assert read_blob(t0._kernel, second.manifest) == data
    _release(t0, second)
    assert t0.gc(grace_s=0).chunks_deleted == len(first.chunks)
    assert _chunk_files(t0) == set()


def test_gc_sweeps_a_blob_that_was_never_referenced(t0: tier0.Tier0) -> None:
    blob = write_blob(t0._kernel, _bytes(300_000, seed=11))
    assert t0.check().orphans == len(blob.chunks)  # files with no row: a writer that died
    assert t0.gc(grace_s=0).orphans_deleted == len(blob.chunks)
    assert _chunk_files(t0) == set()


# -- check() and tables' data files -----------------------------------------------------------


def _table_with_rows(t0: tier0.Tier0, path: str, seed: int) -> None:
    table = t0.create_table(path, {"id": "BIGINT", "payload": "VARCHAR"})
    rng = random.Random(seed)
    table.insert([{"id": i, "payload": rng.randbytes(64).hex()} for i in range(500)])


def _table_chunks(t0: tier0.Tier0, bucket: str, name: str) -> set[str]:
    with t0._kernel.meta.reader() as db:
        rows = db.query_all(
            "SELECT f.manifest FROM t0_table_files f JOIN t0_tables t"
            " ON t.table_id = f.table_id WHERE t.bucket = ? AND t.name = ?",
            (bucket, name),
        )
    return {
        chunk_name(digest) for (manifest,) in rows for digest in Manifest.decode(manifest).hashes
    }


def test_check_counts_table_file_references(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    _table_with_rows(t0, "bkt/t", seed=12)
    chunks = _table_chunks(t0, "bkt", "t")
    assert chunks and _refcounts(t0) == dict.fromkeys(chunks, 1)
    # Every chunk is referenced only by the table's file row: a check that did not
    # count t0_table_files would report each as drift.
    report = t0.check(deep=True)
    assert report.ok, report.problems
    assert report.chunks_checked == len(chunks)


def test_check_reports_refcount_drift_of_a_table_chunk(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    _table_with_rows(t0, "bkt/t", seed=13)
    assert t0.check().ok
    (name,) = sorted(_table_chunks(t0, "bkt", "t"))[:1]
    digest = bytes.fromhex(name)
    t0._kernel.committer.run(
        lambda tx: tx.execute("UPDATE t0_chunks SET refcount = 3 WHERE hash = ?", (digest,))
    )
    problems = t0.check().problems
    assert len(problems) == 1
    assert name in problems[0] and "refcount 3, but 1 references exist (drift)" in problems[0]


def test_check_reports_a_table_file_row_lost_by_hand_as_drift(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    _table_with_rows(t0, "bkt/t", seed=14)
    chunks = _table_chunks(t0, "bkt", "t")
    t0._kernel.committer.run(lambda tx: tx.execute("DELETE FROM t0_table_files"))
    problems = t0.check().problems
    assert len(problems) == len(chunks)
    assert all("but 0 references exist (drift)" in problem for problem in problems)


def test_check_reports_a_table_file_whose_size_disagrees_with_its_chunks(
    t0: tier0.Tier0,
) -> None:
    t0.create_bucket("bkt")
    _table_with_rows(t0, "bkt/t", seed=15)
    t0._kernel.committer.run(lambda tx: tx.execute("UPDATE t0_table_files SET size = size + 1"))
    problems = t0.check().problems
    assert len(problems) == 1 and "chunks hold" in problems[0] and "but size" in problems[0]


def test_dropping_a_table_releases_its_chunks_to_gc_and_keeps_others(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    _table_with_rows(t0, "bkt/dropped", seed=16)
    _table_with_rows(t0, "bkt/kept", seed=17)
    dropped = _table_chunks(t0, "bkt", "dropped")
    kept = _table_chunks(t0, "bkt", "kept")
    assert dropped and kept and not dropped & kept
    t0.db.drop_table("bkt/dropped")
    assert t0.check().ok
    report = t0.gc(grace_s=0)
    assert report.chunks_deleted == len(dropped)
    assert _chunk_files(t0) == kept
    assert t0.table("bkt/kept").count() == 500
    assert t0.db.sql("SELECT count(*) AS n FROM bkt.kept").to_pylist() == [{"n": 500}]
    assert t0.check(deep=True).ok
