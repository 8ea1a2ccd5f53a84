"""Maintenance: garbage collection of chunks, the consistency check (fsck), statistics.

Collection runs in three steps, each safe to interrupt:

1. *Condemn*, in one transaction: chunks with no reference for longer than the
   grace period are marked ``state = 1``.
2. *Delete files*: the chunk backend deletes each condemned blob only if no
   writer wrote or touched it within the grace period. Writers touch every
   chunk they dedup against and keep touching what they hold until they
   commit, so a chunk a concurrent write is about to reference is never
   deleted (the argument is spelled out in ``LocalChunkBackend``).
3. *Settle*, in one transaction: rows whose blob went are deleted unless a
   commit revived them meanwhile (a commit that references a chunk resets
   ``state`` to 0); rows whose blob was kept return to ``state = 0``.

Chunk files without any row (left by writers that crashed before their
commit) are swept the same way, by age.
"""

from __future__ import annotations

import collections
import functools
import time
from typing import Final

from tier0.errors import ChunkError
from tier0.meta import Connection, WriteTx
from tier0.store import _multipart
from tier0.store._chunking import chunk_name, declared_length, decode_chunk
from tier0.store._manifest import Manifest
from tier0.store._multipart_integrity import check_multipart
from tier0.store._ops import key_prefixes
from tier0.store._store import Kernel
from tier0.store._types import CheckReport, GCReport, StoreStatistics

CONDEMN_BATCH_MAX: Final = 10_000
_LIVE: Final = 0
_CONDEMNED: Final = 1


def collect(kernel: Kernel, *, grace_s: float | None = None) -> GCReport:
    """Reclaim chunks unreferenced for longer than ``grace_s`` (the configured grace by default)."""
    grace_s = kernel.config.gc_grace_s if grace_s is None else grace_s
    deleted = kept = freed = expired = 0
    upload_cutoff_us = int((time.time() - kernel.config.upload_expiry_s) * 1_000_000)
    while True:
        aborted = kernel.committer.run(
            functools.partial(
                _multipart.expire_uploads, cutoff_us=upload_cutoff_us, limit=CONDEMN_BATCH_MAX
            )
        )
        expired += aborted
        if aborted < CONDEMN_BATCH_MAX:
            break
    while True:
        cutoff_us = int((time.time() - grace_s) * 1_000_000)
        condemned = kernel.committer.run(functools.partial(_condemn, cutoff_us=cutoff_us))
        if not condemned:
            break
        gone: list[bytes] = []
        stay: list[bytes] = []
        for digest, stored in condemned:
            if kernel.chunks.delete_if_idle(chunk_name(digest), grace_s):
                gone.append(digest)
                freed += stored
            elif kernel.chunks.age_s(chunk_name(digest)) is None:
                gone.append(digest)  # already absent: nothing to free, the row can go
            else:
                stay.append(digest)
        kernel.committer.run(functools.partial(_settle, gone=gone, stay=stay))
        deleted += len(gone)
        kept += len(stay)
        if len(condemned) < CONDEMN_BATCH_MAX or not gone:
            break
    orphans = _sweep_orphans(kernel, grace_s)
    return GCReport(
        chunks_deleted=deleted,
        bytes_freed=freed,
        chunks_kept_busy=kept,
        orphans_deleted=orphans,
        uploads_expired=expired,
    )


def _condemn(tx: WriteTx, cutoff_us: int) -> list[tuple[bytes, int]]:
    rows = tx.query_all(
        "SELECT hash, stored_bytes FROM t0_chunks WHERE refcount = 0 AND (updated_us < ? OR state = ?)"
        " LIMIT ?",
        (cutoff_us, _CONDEMNED, CONDEMN_BATCH_MAX),
    )
    tx.executemany(
        "UPDATE t0_chunks SET state = ? WHERE hash = ? AND refcount = 0",
        [(_CONDEMNED, row[0]) for row in rows],
    )
    return [(bytes(row[0]), int(row[1])) for row in rows]


def _settle(tx: WriteTx, gone: list[bytes], stay: list[bytes]) -> None:
    tx.executemany(
        "DELETE FROM t0_chunks WHERE hash = ? AND state = ? AND refcount = 0",
        [(digest, _CONDEMNED) for digest in gone],
    )
    tx.executemany(
        "UPDATE t0_chunks SET state = ? WHERE hash = ? AND state = ?",
        [(_LIVE, digest, _CONDEMNED) for digest in stay],
    )


def _sweep_orphans(kernel: Kernel, grace_s: float) -> int:
    with kernel.meta.reader() as db:
        known = {chunk_name(bytes(row[0])) for row in db.query_all("SELECT hash FROM t0_chunks")}
    swept = 0
    for name in list(kernel.chunks.names()):
        if name not in known and kernel.chunks.delete_if_idle(name, grace_s):
            swept += 1
    return swept


def check(kernel: Kernel, *, deep: bool = False) -> CheckReport:
    """Verify metadata against chunks; with ``deep``, re-hash every chunk.

    Finds versions whose chunks are missing, chunks that do not hash to their
    name, reference counts that drifted from the manifests (of versions and
    of the parts of uploads in progress, and of tables' data files), multipart problems (see
    ``_multipart_integrity.check_multipart``), broken
    latest-version pointers, gaps in the event sequence, and the chunk
    backend's own problems. Orphan chunk files (no row) are counted, not
    reported as problems: an interrupted write leaves them, and GC reclaims
    them after the grace period.
    """
    problems: list[str] = []
    with kernel.meta.reader() as db:
        _begin_snapshot(db, kernel.meta.dialect)
        try:
            references, versions = _count_references(db, problems, deep=deep)
            # Parts of uploads in progress hold chunk references too.
            problems += check_multipart(db, references, kernel, deep=deep)
            # So do the data files of DataBase tables (`tier0.store._blobs`).
            problems += _count_table_files(db, references)
            rows = db.query_all("SELECT hash, refcount, state FROM t0_chunks")
            problems += _check_versions(db)
            problems += _check_prefixes(db)
            problems += _check_events(db)
        finally:
            db.rollback()
    stored = set(kernel.chunks.names())
    known: set[str] = set()
    for digest_raw, refcount, _state in rows:
        digest = bytes(digest_raw)
        name = chunk_name(digest)
        known.add(name)
        expected = references.pop(digest, 0)
        if refcount != expected:
            problems.append(
                f"chunk {name}: refcount {refcount}, but {expected} references exist (drift)"
            )
        if expected and name not in stored:
            problems.append(f"chunk {name}: referenced by {expected} version(s) but missing")
        elif expected and deep:
            try:
                decode_chunk(digest, kernel.chunks.read(name), deep=True)
            except ChunkError as error:
                problems.append(f"chunk {name}: {error}")
    for digest, count in references.items():
        problems.append(
            f"chunk {chunk_name(digest)}: referenced {count} time(s) but has no chunk row"
        )
    problems += kernel.chunks.check()
    return CheckReport(
        problems=problems,
        versions_checked=versions,
        chunks_checked=len(rows),
        orphans=len(stored - known),
    )


def _begin_snapshot(db: Connection, dialect: str) -> None:
    # One snapshot for every query, so a concurrent commit cannot look like drift.
    if dialect == "postgres":
        db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    else:
        db.execute("BEGIN")


def _check_inline(seq: int, size: int, checksum: str, blob: bytes, *, deep: bool) -> list[str]:
    try:
        declared = declared_length(blob)
        if declared != size:
            return [f"version {seq}: inline value declares {declared} bytes, but size {size}"]
        if deep:
            decode_chunk(bytes.fromhex(checksum.removeprefix("blake3:")), blob, deep=True)
    except ChunkError as error:
        return [f"version {seq}: inline value: {error}"]
    return []


def _count_references(
    db: Connection, problems: list[str], *, deep: bool
) -> tuple[collections.Counter[bytes], int]:
    references: collections.Counter[bytes] = collections.Counter()
    versions = 0
    for seq, size, checksum, inline, manifest_blob in db.query_all(
        "SELECT seq, size, checksum, inline_data, manifest FROM t0_versions"
        " WHERE is_delete_marker = 0"
    ):
        versions += 1
        if inline is not None:
            problems += _check_inline(seq, size, checksum, bytes(inline), deep=deep)
        if manifest_blob is not None:
            manifest = Manifest.decode(bytes(manifest_blob))
            if manifest.size != size:
                problems.append(
                    f"version {seq}: chunks hold {manifest.size} bytes, but size {size}"
                )
            references.update(manifest.hashes)
        elif inline is None and size:
            problems.append(f"version {seq}: {size} bytes, but neither inline data nor chunks")
    return references, versions


def _count_table_files(db: Connection, references: collections.Counter[bytes]) -> list[str]:
    problems = []
    for table_id, file_id, size, manifest_blob in db.query_all(
        "SELECT table_id, file_id, size, manifest FROM t0_table_files UNION ALL"
        " SELECT table_id, 'index on ' || column_name, size, manifest FROM t0_table_indexes"
    ):
        manifest = Manifest.decode(bytes(manifest_blob))
        if manifest.size != size:
            problems.append(
                f"table {table_id} file {file_id}: chunks hold {manifest.size} bytes, but size {size}"
            )
        references.update(manifest.hashes)
    return problems


def _check_versions(db: Connection) -> list[str]:
    problems = [
        f"{bucket}/{key}: {latest} current versions (want exactly 1)"
        for bucket, key, latest in db.query_all(
            "SELECT bucket, key, sum(is_latest) FROM t0_versions GROUP BY bucket, key HAVING sum(is_latest) <> 1"
        )
    ]
    problems += [
        f"{bucket}/{key}: the current version is not the newest"
        for bucket, key in db.query_all(
            "SELECT bucket, key FROM t0_versions GROUP BY bucket, key"
            " HAVING max(seq) <> max(CASE WHEN is_latest = 1 THEN seq END)"
        )
    ]
    problems += [
        f"{bucket}: versions exist in a bucket that does not"
        for (bucket,) in db.query_all(
            "SELECT DISTINCT v.bucket FROM t0_versions v LEFT JOIN t0_buckets b ON b.name = v.bucket"
            " WHERE b.name IS NULL"
        )
    ]
    return problems


def _check_prefixes(db: Connection) -> list[str]:
    """The prefix statistics must equal a recount of the current objects."""
    expected: dict[tuple[str, str], list[int]] = {}
    for bucket, key, size in db.query_all(
        "SELECT bucket, key, size FROM t0_versions WHERE is_latest = 1 AND is_delete_marker = 0"
    ):
        for prefix in key_prefixes(key):
            entry = expected.setdefault((bucket, prefix), [0, 0])
            entry[0] += 1
            entry[1] += size
    problems = []
    for bucket, prefix, objects, size in db.query_all(
        "SELECT bucket, prefix, objects, bytes FROM t0_prefixes"
    ):
        want = expected.pop((bucket, prefix), [0, 0])
        if [objects, size] != want:
            problems.append(
                f"prefix {bucket}/{prefix}: counts {objects} objects, {size} bytes;"
                f" a recount gives {want[0]} and {want[1]}"
            )
    problems += [
        f"prefix {bucket}/{prefix}: {objects} objects, {size} bytes are not counted"
        for (bucket, prefix), (objects, size) in expected.items()
    ]
    return problems


def _check_events(db: Connection) -> list[str]:
    count, low, high = db.query_one("SELECT count(*), min(seq), max(seq) FROM t0_events")
    counter = db.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0]
    problems = []
    if count and (high - low + 1 != count or low != 1):
        problems.append(f"event log: {count} events between seq {low} and {high}: there are gaps")
    if (high or 0) != counter:
        problems.append(f"event log: last event is {high}, but the sequence counter says {counter}")
    return problems


def statistics(kernel: Kernel) -> StoreStatistics:
    """What the store holds: objects, logical and stored bytes, dedup and compression."""
    with kernel.meta.reader() as db:
        _begin_snapshot(db, kernel.meta.dialect)
        try:
            buckets = db.query_one("SELECT count(*) FROM t0_buckets")[0]
            objects = db.query_one(
                "SELECT count(*) FROM t0_versions WHERE is_latest = 1 AND is_delete_marker = 0"
            )[0]
            versions, logical, inline = db.query_one(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(length(inline_data)), 0) FROM t0_versions"
            )
            chunks, chunk_logical, chunk_stored, referenced, unreferenced = db.query_one(
                "SELECT count(*), coalesce(sum(length), 0), coalesce(sum(stored_bytes), 0),"
                " coalesce(sum(length * refcount), 0),"
                " coalesce(sum(CASE WHEN refcount = 0 THEN 1 ELSE 0 END), 0) FROM t0_chunks"
            )
        finally:
            db.rollback()
    return StoreStatistics(
        buckets=int(buckets),
        objects=int(objects),
        versions=int(versions),
        logical_bytes=int(logical),
        inline_bytes=int(inline),
        chunk_count=int(chunks),
        chunk_logical_bytes=int(chunk_logical),
        chunk_stored_bytes=int(chunk_stored),
        referenced_chunk_bytes=int(referenced),
        unreferenced_chunks=int(unreferenced),
    )
