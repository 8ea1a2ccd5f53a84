"""The element store's metadata transactions.

Each function runs inside the group committer's transaction (``tx``) and does
the whole of one mutation there: the version row (which is also the catalog
row), the chunk reference counts, the event, and the audit record. Either all
of it commits or none of it does. The rules of versioning live here once;
every protocol inherits them.

Versioning follows S3: an unversioned bucket keeps one version per key (id
``null``) and drops what it replaces; an enabled bucket keeps every version
and deletes by adding a delete marker; a suspended bucket keeps old versions
but writes (and deletes) the ``null`` version in place.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from tier0.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    InvalidArgument,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    PreconditionFailed,
    StoreError,
)
from tier0.identity import Authorizer, Decision
from tier0.meta import WriteTx, dump_json, load_json
from tier0.store._manifest import Manifest
from tier0.store._names import NULL_VERSION, new_version_id, validate_metadata
from tier0.store._types import DeleteResult, ObjectInfo, PartInfo, Versioning, from_us

VERSION_COLUMNS: Final = (
    "seq, bucket, key, version_id, is_latest, is_delete_marker, size, stored_bytes, etag,"
    " content_type, created_us, modified_us, owner, metadata, tags, headers, checksum, checksums,"
    " parts"
)
_INSERT_VERSION: Final = (
    f"INSERT INTO t0_versions ({VERSION_COLUMNS}, inline_data, manifest)"
    " VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT: Final = (
    "INSERT INTO t0_events (seq, type, bucket, key, version_id, size, etag, principal, time_us, detail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def parts_to_json(parts: tuple[PartInfo, ...]) -> str | None:
    """The ``parts`` column: NULL for a single-part version."""
    if not parts:
        return None
    return dump_json([[p.number, p.size, p.etag, p.checksums] for p in parts])


def parts_from_json(value: Any) -> tuple[PartInfo, ...]:
    if value is None:
        return ()
    return tuple(PartInfo(n, size, etag, sums) for n, size, etag, sums in load_json(value))


def row_to_info(row: Any) -> ObjectInfo:
    """An ObjectInfo from the first 19 columns of a row selected with VERSION_COLUMNS."""
    return ObjectInfo(
        seq=row[0],
        bucket=row[1],
        key=row[2],
        version_id=row[3],
        is_latest=bool(row[4]),
        is_delete_marker=bool(row[5]),
        size=row[6],
        stored_bytes=row[7],
        etag=row[8],
        content_type=row[9],
        created=from_us(row[10]),
        modified=from_us(row[11]),
        owner=row[12],
        metadata=load_json(row[13]),
        tags=load_json(row[14]),
        headers=load_json(row[15]),
        checksum=row[16],
        checksums=load_json(row[17]),
        parts=parts_from_json(row[18]),
    )


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class NewVersion:
    """The content and description of a version about to be committed."""

    size: int
    stored_bytes: int
    etag: str
    checksum: str
    content_type: str
    inline: bytes | None
    manifest: bytes | None
    #: Chunk references to add: (hash, raw length, stored bytes) per manifest entry.
    chunks: tuple[tuple[bytes, int, int], ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: Digests the writer stated and the store verified, by algorithm (base64, as S3 shows them).
    checksums: dict[str, str] = field(default_factory=dict)
    #: The parts of a version completed from a multipart upload (empty otherwise).
    parts: tuple[PartInfo, ...] = ()
    #: The version's canned ACL (``t0_object_acls``); None or "private" keeps no row.
    acl: str | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """A write precondition on the key's current version (S3's conditional writes)."""

    if_match: str | None = None
    if_none_match: str | None = None  # only "*" is meaningful for writes

    def check(self, current: Any) -> None:
        exists = current is not None and not current[5]
        if (
            self.if_none_match is not None
            and exists
            and (self.if_none_match == "*" or self.if_none_match == current[8])
        ):
            raise PreconditionFailed("the key exists and If-None-Match forbids overwriting it")
        if self.if_match is not None:
            if not exists:
                raise NoSuchKey("If-Match was given, but the key has no current version")
            if self.if_match not in ("*", current[8]):
                raise PreconditionFailed(
                    f"If-Match {self.if_match!r} does not match the current ETag {current[8]!r}"
                )


# -- buckets -------------------------------------------------------------------------------


def bucket_row(tx: WriteTx, bucket: str) -> tuple[str, Versioning]:
    """(owner, versioning) of ``bucket``, cached for the rest of the transaction.

    Operations that change a bucket drop the cached row (``_forget_bucket``).
    """
    cached = tx.memo.get(("bucket", bucket))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    row = tx.query_one("SELECT owner, versioning FROM t0_buckets WHERE name = ?", (bucket,))
    if row is None:
        raise NoSuchBucket(f"bucket {bucket!r} does not exist")
    tx.memo[("bucket", bucket)] = (row[0], row[1])
    return row[0], row[1]


class StaleOwner(StoreError):
    """The bucket's owner changed since the decision was made (it was deleted and
    recreated): the caller decides again with the fresh owner and retries."""


def owned_bucket_row(tx: WriteTx, bucket: str, decision: Decision) -> tuple[str, Versioning]:
    """``bucket_row``, checking that an owner-based decision still holds.

    Writers decide with a cached bucket owner (saving a query per write); the
    transaction re-reads the owner anyway, so a stale cache costs a retry,
    never a wrong grant.
    """
    owner, versioning = bucket_row(tx, bucket)
    if decision.reason == "owner" and owner != decision.principal.id:
        raise StaleOwner(f"bucket {bucket!r} changed owner since the request was authorized")
    return owner, versioning


def _forget_bucket(tx: WriteTx, bucket: str) -> None:
    tx.memo.pop(("bucket", bucket), None)


def create_bucket(tx: WriteTx, bucket: str, owner: str, decision: Decision) -> None:
    row = tx.query_one("SELECT owner FROM t0_buckets WHERE name = ?", (bucket,))
    if row is not None:
        whose = "you own it" if row[0] == owner else "another principal owns it"
        raise BucketAlreadyExists(f"bucket {bucket!r} exists already ({whose})")
    tx.execute(
        "INSERT INTO t0_buckets (name, owner, versioning, created_us) VALUES (?, ?, ?, ?)",
        (bucket, owner, "Unversioned", tx.now_us),
    )
    emit_event(tx, tx.next_seq(), "BucketCreated", bucket, "", None, None, None, decision, {})
    Authorizer.record_in(tx, decision)


def delete_bucket(tx: WriteTx, bucket: str, decision: Decision) -> None:
    bucket_row(tx, bucket)
    if tx.query_one("SELECT 1 FROM t0_versions WHERE bucket = ? LIMIT 1", (bucket,)) is not None:
        raise BucketNotEmpty(
            f"bucket {bucket!r} still holds versions or delete markers: delete them first"
        )
    tx.execute("DELETE FROM t0_buckets WHERE name = ?", (bucket,))
    tx.execute("DELETE FROM t0_prefixes WHERE bucket = ?", (bucket,))
    # Its configuration goes with it (its versions, and their ACLs, are gone already).
    tx.execute("DELETE FROM t0_bucket_config WHERE bucket = ?", (bucket,))
    tx.execute("DELETE FROM t0_object_acls WHERE bucket = ?", (bucket,))
    _forget_bucket(tx, bucket)
    emit_event(tx, tx.next_seq(), "BucketRemoved", bucket, "", None, None, None, decision, {})
    Authorizer.record_in(tx, decision)


def set_versioning(tx: WriteTx, bucket: str, status: Versioning, decision: Decision) -> None:
    if status not in ("Enabled", "Suspended"):
        raise InvalidArgument(
            f"versioning can be set to 'Enabled' or 'Suspended', not {status!r} (S3 has no way back to unversioned)"
        )
    bucket_row(tx, bucket)
    tx.execute("UPDATE t0_buckets SET versioning = ? WHERE name = ?", (status, bucket))
    _forget_bucket(tx, bucket)
    emit_event(
        tx, tx.next_seq(), "BucketVersioning:" + status, bucket, "", None, None, None, decision, {}
    )
    Authorizer.record_in(tx, decision)


# -- versions ------------------------------------------------------------------------------


def put_version(
    tx: WriteTx,
    bucket: str,
    key: str,
    new: NewVersion,
    decision: Decision,
    *,
    event_type: str = "ObjectCreated:Put",
    condition: Condition | None = None,
    detail: dict[str, Any] | None = None,
) -> ObjectInfo:
    """Install ``new`` as the key's current version."""
    _, versioning = owned_bucket_row(tx, bucket, decision)
    current = _latest(tx, bucket, key)
    if condition is not None:
        condition.check(current)
    seq = _make_room(tx, bucket, key, versioning, current)
    _account(tx, bucket, key, current, new.size)
    version_id = new_version_id() if versioning == "Enabled" else NULL_VERSION
    owner = decision.principal.id
    tx.execute(
        _INSERT_VERSION,
        (
            seq, bucket, key, version_id, 0, new.size, new.stored_bytes, new.etag, new.content_type,
            tx.now_us, tx.now_us, owner, dump_json(new.metadata), dump_json(new.tags),
            dump_json(new.headers), new.checksum, dump_json(new.checksums),
            parts_to_json(new.parts), new.inline, new.manifest,
        ),
    )  # fmt: skip
    add_refs(tx, new.chunks)
    if new.acl is not None and new.acl != "private":
        tx.execute(
            "INSERT INTO t0_object_acls (seq, bucket, acl) VALUES (?, ?, ?)", (seq, bucket, new.acl)
        )
    emit_event(
        tx, seq, event_type, bucket, key, version_id, new.size, new.etag, decision, detail or {}
    )
    Authorizer.record_in(tx, decision)
    return ObjectInfo(
        bucket=bucket, key=key, version_id=version_id, size=new.size, etag=new.etag,
        content_type=new.content_type, created=from_us(tx.now_us), modified=from_us(tx.now_us),
        owner=owner, checksum=new.checksum, stored_bytes=new.stored_bytes, metadata=new.metadata,
        tags=new.tags, headers=new.headers, checksums=new.checksums, parts=new.parts, seq=seq,
    )  # fmt: skip


def copy_version(
    tx: WriteTx,
    source: tuple[str, str, str | None],
    target: tuple[str, str],
    decision: Decision,
    *,
    replace: dict[str, Any] | None,
    condition: Condition | None = None,
) -> ObjectInfo:
    """Make a new version of ``target`` sharing the source's chunks (no data is copied).

    ``replace`` holds new ``metadata``/``content_type``/``headers``/``tags`` to
    use instead of the source's (S3's REPLACE directive); None copies them.
    """
    row = _find(tx, *source)
    if row[5]:
        raise NoSuchKey(f"the copy source {source[0]}/{source[1]} is a delete marker")
    full = tx.query_one("SELECT inline_data, manifest FROM t0_versions WHERE seq = ?", (row[0],))
    inline, manifest = full[0], full[1]
    chunks: tuple[tuple[bytes, int, int], ...] = ()
    if manifest is not None:
        decoded = Manifest.decode(bytes(manifest))
        chunks = tuple((h, n, -1) for h, n in zip(decoded.hashes, decoded.lengths, strict=True))
    fields = {
        "metadata": load_json(row[13]),
        "tags": load_json(row[14]),
        "headers": load_json(row[15]),
        "content_type": row[9],
    }
    fields.update(replace or {})
    new = NewVersion(
        size=row[6], stored_bytes=row[7], etag=row[8], checksum=row[16],
        checksums=load_json(row[17]), parts=parts_from_json(row[18]),
        inline=None if inline is None else bytes(inline),
        manifest=None if manifest is None else bytes(manifest), chunks=chunks, **fields,
    )  # fmt: skip
    detail = {"source": {"bucket": row[1], "key": row[2], "version_id": row[3]}}
    return put_version(
        tx,
        *target,
        new,
        decision,
        event_type="ObjectCreated:Copy",
        condition=condition,
        detail=detail,
    )


def delete_version(
    tx: WriteTx, bucket: str, key: str, version_id: str | None, decision: Decision
) -> DeleteResult:
    """Delete ``key`` (a delete marker where versions are kept) or one version of it."""
    _, versioning = owned_bucket_row(tx, bucket, decision)
    if version_id is None and versioning != "Unversioned":
        current = _latest(tx, bucket, key)
        seq = _make_room(tx, bucket, key, versioning, current)
        _account(tx, bucket, key, current, None)
        marker_id = new_version_id() if versioning == "Enabled" else NULL_VERSION
        tx.execute(
            _INSERT_VERSION,
            (seq, bucket, key, marker_id, 1, 0, 0, "", "", tx.now_us, tx.now_us,
             decision.principal.id, "{}", "{}", "{}", "", "{}", None, None, None),
        )  # fmt: skip
        emit_event(
            tx,
            seq,
            "ObjectRemoved:DeleteMarkerCreated",
            bucket,
            key,
            marker_id,
            0,
            None,
            decision,
            {},
        )
        Authorizer.record_in(tx, decision)
        return DeleteResult(True, marker_id, delete_marker=True)
    if version_id is None:
        row = _latest(tx, bucket, key)
    else:
        row = tx.query_one(
            f"SELECT {VERSION_COLUMNS} FROM t0_versions WHERE bucket = ? AND key = ? AND version_id = ?",
            (bucket, key, version_id),
        )
    if row is None:
        Authorizer.record_in(tx, decision)
        return DeleteResult(False, version_id, delete_marker=False)
    _drop(tx, row)
    if row[4]:
        promoted = _promote_newest(tx, bucket, key)
        _account(tx, bucket, key, row, None if promoted is None or promoted[0] else promoted[1])
    emit_event(
        tx,
        tx.next_seq(),
        "ObjectRemoved:Delete",
        bucket,
        key,
        row[3],
        row[6],
        row[8] or None,
        decision,
        {},
    )
    Authorizer.record_in(tx, decision)
    return DeleteResult(True, row[3], delete_marker=bool(row[5]))


def set_tags(
    tx: WriteTx,
    bucket: str,
    key: str,
    version_id: str | None,
    tags: dict[str, str],
    decision: Decision,
    *,
    event: str = "ObjectTagging:Put",
) -> str:
    """Replace a version's tags in place (tagging makes no new version); returns its id.
    ``event`` is the change's type (``ObjectTagging:Delete`` when they are removed)."""
    owned_bucket_row(tx, bucket, decision)
    row = _find(tx, bucket, key, version_id)
    if row[5]:
        raise NoSuchKey(f"{bucket}/{key} is a delete marker, which holds no tags")
    tx.execute(
        "UPDATE t0_versions SET tags = ?, modified_us = ? WHERE seq = ?",
        (dump_json(tags), tx.now_us, row[0]),
    )
    emit_event(
        tx, tx.next_seq(), event, bucket, key, row[3], row[6], row[8], decision, {"tags": tags}
    )
    Authorizer.record_in(tx, decision)
    return str(row[3])


def annotate(
    tx: WriteTx,
    bucket: str,
    key: str,
    version_id: str | None,
    facts: dict[str, str],
    decision: Decision,
) -> str:
    """Merge ``facts`` into a version's user metadata in place (what was learnt about the
    element, e.g. by an extraction function: no new version); returns its id."""
    owned_bucket_row(tx, bucket, decision)
    row = _find(tx, bucket, key, version_id)
    if row[5]:
        raise NoSuchKey(f"{bucket}/{key} is a delete marker, which holds no metadata")
    current = tx.query_one("SELECT metadata FROM t0_versions WHERE seq = ?", (row[0],))[0]
    merged = {**(load_json(current) or {}), **facts}
    validate_metadata(merged)
    tx.execute(
        "UPDATE t0_versions SET metadata = ?, modified_us = ? WHERE seq = ?",
        (dump_json(merged), tx.now_us, row[0]),
    )
    emit_event(
        tx, tx.next_seq(), "ObjectMetadata:Put", bucket, key, row[3], row[6], row[8], decision,
        {"metadata": facts},
    )  # fmt: skip
    Authorizer.record_in(tx, decision)
    return str(row[3])


# -- helpers -------------------------------------------------------------------------------


def _latest(tx: WriteTx, bucket: str, key: str) -> Any:
    return tx.query_one(
        f"SELECT {VERSION_COLUMNS} FROM t0_versions WHERE bucket = ? AND key = ? AND is_latest = 1",
        (bucket, key),
    )


def _find(tx: WriteTx, bucket: str, key: str, version_id: str | None) -> Any:
    if version_id is None:
        row = _latest(tx, bucket, key)
        if row is None:
            raise NoSuchKey(f"{bucket}/{key} does not exist")
        return row
    row = tx.query_one(
        f"SELECT {VERSION_COLUMNS} FROM t0_versions WHERE bucket = ? AND key = ? AND version_id = ?",
        (bucket, key, version_id),
    )
    if row is None:
        raise NoSuchVersion(f"{bucket}/{key} has no version {version_id!r}")
    return row


def _make_room(tx: WriteTx, bucket: str, key: str, versioning: str, current: Any) -> int:
    """Retire the current version before a new one is installed; returns the new seq.

    Outside 'Enabled', the ``null`` version is replaced (dropped); any other
    current version merely stops being the latest.
    """
    if versioning == "Unversioned":
        null_row = current  # an unversioned bucket holds only the null version
    elif versioning == "Suspended":
        null_row = tx.query_one(
            f"SELECT {VERSION_COLUMNS} FROM t0_versions WHERE bucket = ? AND key = ? AND version_id = ?",
            (bucket, key, NULL_VERSION),
        )
    else:
        null_row = None
    if null_row is not None:
        _drop(tx, null_row)
        if current is not None and current[0] == null_row[0]:
            current = None
    if current is not None:
        tx.execute("UPDATE t0_versions SET is_latest = 0 WHERE seq = ?", (current[0],))
    return tx.next_seq()


def _drop(tx: WriteTx, row: Any) -> None:
    manifest = tx.query_one("DELETE FROM t0_versions WHERE seq = ? RETURNING manifest", (row[0],))[
        0
    ]
    tx.execute("DELETE FROM t0_object_acls WHERE seq = ?", (row[0],))
    if manifest is not None:
        counts = collections.Counter(Manifest.decode(bytes(manifest)).hashes)
        tx.executemany(
            "UPDATE t0_chunks SET refcount = refcount - ?, updated_us = ? WHERE hash = ?",
            [(n, tx.now_us, h) for h, n in counts.items()],
        )


def _promote_newest(tx: WriteTx, bucket: str, key: str) -> tuple[int, int] | None:
    """Make the newest remaining version current; its (is_delete_marker, size), or None."""
    row = tx.query_one(
        "UPDATE t0_versions SET is_latest = 1 WHERE seq ="
        " (SELECT max(seq) FROM t0_versions WHERE bucket = ? AND key = ?)"
        " RETURNING is_delete_marker, size",
        (bucket, key),
    )
    return None if row is None else (int(row[0]), int(row[1]))


def read_action(version_id: str | None) -> str:
    """What reading a version asks: ``s3:GetObject`` for the current one,
    ``s3:GetObjectVersion`` for one named, as in S3."""
    return "s3:GetObject" if version_id is None else "s3:GetObjectVersion"


def key_prefixes(key: str) -> list[str]:
    """Every '/'-delimited prefix of ``key``, the whole bucket ('') first.

    >>> key_prefixes("a/b/c.txt")
    ['', 'a/', 'a/b/']
    """
    prefixes = [""]
    cut = key.find("/")
    while cut >= 0:
        prefixes.append(key[: cut + 1])
        cut = key.find("/", cut + 1)
    return prefixes


def _account(tx: WriteTx, bucket: str, key: str, before: Any, size_after: int | None) -> None:
    """Record that ``key``'s current object went from ``before`` (a row) to ``size_after`` bytes.

    ``before`` is None or a delete marker when there was no current object;
    ``size_after`` is None when there is none now. The deltas of a whole batch
    are summed per prefix and applied once, before commit.
    """
    had = before is not None and not before[5]
    objects = (size_after is not None) - had
    size_delta = (size_after or 0) - (before[6] if had else 0)
    if not objects and not size_delta:
        return
    deltas: dict[tuple[str, str], list[int]] = tx.memo.setdefault("prefix_deltas", {})
    for prefix in key_prefixes(key):
        entry = deltas.setdefault((bucket, prefix), [0, 0])
        entry[0] += objects
        entry[1] += size_delta
    tx.before_commit("prefix_deltas", _apply_prefix_deltas)


def _apply_prefix_deltas(tx: WriteTx) -> None:
    deltas: dict[tuple[str, str], list[int]] = tx.memo.pop("prefix_deltas", {})
    rows = [
        (bucket, prefix, prefix.count("/"), objects, size)
        for (bucket, prefix), (objects, size) in sorted(deltas.items())
        if objects or size
    ]
    tx.executemany(
        "INSERT INTO t0_prefixes (bucket, prefix, depth, objects, bytes) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (bucket, prefix) DO UPDATE SET objects = t0_prefixes.objects +"
        " excluded.objects, bytes = t0_prefixes.bytes + excluded.bytes",
        rows,
    )
    emptied = [(bucket, prefix) for bucket, prefix, _, objects, _ in rows if objects < 0]
    if emptied:
        tx.executemany(
            "DELETE FROM t0_prefixes WHERE bucket = ? AND prefix = ? AND objects = 0", emptied
        )


def add_refs(tx: WriteTx, chunks: Iterable[tuple[bytes, int, int]]) -> None:
    """Count one reference per manifest entry; a chunk's row is made by its first reference."""
    counts: dict[bytes, list[int]] = {}
    for digest, length, stored in chunks:
        entry = counts.setdefault(digest, [0, length, stored])
        entry[0] += 1
    if not counts:
        return
    known = [(n, tx.now_us, h) for h, (n, _, stored) in counts.items() if stored < 0]
    if known:
        # Copies reference chunks whose rows exist: the source holds them.
        tx.executemany(
            "UPDATE t0_chunks SET refcount = refcount + ?, state = 0, updated_us = ? WHERE hash = ?",
            known,
        )
    fresh = [
        (h, length, stored, n, tx.now_us)
        for h, (n, length, stored) in counts.items()
        if stored >= 0
    ]
    if fresh:
        # state = 0 revives a row the GC condemned: the writer touched the
        # chunk within the grace period, so the GC keeps the file (see _gc.py).
        tx.executemany(
            "INSERT INTO t0_chunks (hash, length, stored_bytes, refcount, state, updated_us)"
            " VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (hash) DO UPDATE SET"
            " refcount = t0_chunks.refcount + excluded.refcount, state = 0,"
            " updated_us = excluded.updated_us",
            fresh,
        )


def emit_event(
    tx: WriteTx,
    seq: int,
    kind: str,
    bucket: str,
    key: str,
    version_id: str | None,
    size: int | None,
    etag: str | None,
    decision: Decision,
    detail: dict[str, Any],
) -> None:
    tx.defer(
        _INSERT_EVENT,
        (
            seq,
            kind,
            bucket,
            key,
            version_id,
            size,
            etag,
            decision.principal.id,
            tx.now_us,
            dump_json(detail),
        ),
    )
