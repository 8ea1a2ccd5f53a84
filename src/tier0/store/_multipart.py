"""Multipart uploads: an object written as numbered parts, then completed in metadata alone.

An upload (`create_upload`) names a key and fixes what the object will be
described with (content type, user metadata, tags, stored headers) and the
checksum algorithm its parts are checked with. Each part streams through the
put path's ``ingest`` once: it is cut into chunks, hashed (BLAKE3 for the
chunks and the part, MD5 for its ETag, the upload's checksum algorithm, and
whatever the caller stated), verified, and committed as a row that holds
references to its chunks, so garbage collection never takes them. Parts are
never inlined, so that completion can concatenate them. Re-uploading a part
number replaces the part.

Completion checks the list of parts it is given (ascending; each one uploaded,
with the ETag and any checksum stated matching; every part but the last at
least ``StoreConfig.part_bytes_min``) and commits, in one transaction through
the put path's ``put_version`` (one event, one audit row, versioning and
conditions as for a put), a version whose manifest is the concatenation of
the parts' manifests: no byte is read, copied or hashed again. The parts'
chunk references pass to the version; those of parts left out are released,
as are all of an aborted upload's, and the GC takes them after its grace period.

A completed version records, derived from its parts alone:

- ``etag``: hex(MD5 of the parts' binary MD5s, concatenated) + ``-N``, as S3 does;
- ``checksum``: ``blake3-parts:<hex>-N``, the BLAKE3 of the parts' BLAKE3
  digests concatenated. (A single put records ``blake3:<hex>`` of the whole
  content; hashing up to 5 TiB again at completion is what this avoids.)
  ``check()`` verifies the layout, ``check(deep=True)`` the value, by
  re-reading each part's span (`_multipart_integrity`);
- ``checksums``: with an upload checksum algorithm, its COMPOSITE value (the
  base64 of the algorithm over the parts' digests, concatenated, + ``-N``) or,
  for the CRC family, its FULL_OBJECT value (the parts' CRCs combined
  arithmetically into the CRC of the whole, `combine_crc`);
- ``parts``: each part's number, size, ETag and checksums (`PartInfo`).

A completion sent again (its answer lost) gets the same answer while the
version it made is there: completions are remembered for the upload expiry.

Upload ids begin with the initiation time in fixed-width hex, so listing by
``(key, upload_id)`` is S3's order: keys in UTF-8 byte order, then initiation.
Listing uploads and parts, and reading a completed object's parts, are in
`tier0.store._multipart_reads`.

Example::

    upload = store.create_multipart_upload("b", "big.bin")
    one = store.upload_part("b", "big.bin", upload.upload_id, 1, first)  # >= 5 MiB
    two = store.upload_part("b", "big.bin", upload.upload_id, 2, rest)
    store.complete_multipart_upload(
        "b", "big.bin", upload.upload_id, [(1, one.etag), (2, two.etag)]
    )
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import itertools
import mimetypes
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from tier0.errors import (
    EntityTooLarge,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    NoSuchUpload,
)
from tier0.identity import Authorizer, Decision, ObjectFacts, validate_canned_acl
from tier0.meta import Connection, WriteTx, dump_json, load_json
from tier0.store import _ops, _store
from tier0.store._checksums import ALGORITHMS, Expected, decode_digest, parse_checksums, verify
from tier0.store._manifest import Manifest
from tier0.store._multipart_integrity import (
    check_stated,
    checksum_settings,
    composite_checksum,
    object_checksums,
)
from tier0.store._names import (
    validate_key,
    validate_metadata,
    validate_tags,
)
from tier0.store._types import ObjectInfo, PartInfo, from_us
from tier0.store._writer import ingest

if TYPE_CHECKING:
    from tier0.store._store import Source, Store

__all__ = [
    "LIST_PARTS_MAX",
    "LIST_UPLOADS_MAX",
    "OBJECT_BYTES_MAX",
    "PART_BYTES_MAX",
    "PART_NUMBER_MAX",
    "PartPage",
    "PartRef",
    "UploadInfo",
    "UploadPage",
    "UploadedPart",
]

#: Part numbers run from 1 to this, and a completion names at most this many parts.
PART_NUMBER_MAX: Final = 10_000
#: The largest part (S3's limit).
PART_BYTES_MAX: Final = 5 * 1024**3
#: The largest object a completion may make (S3's limit).
OBJECT_BYTES_MAX: Final = 5 * 1024**4
#: Uploads, or parts, in one listing page (S3's maximum for both).
LIST_UPLOADS_MAX: Final = 1000
LIST_PARTS_MAX: Final = 1000


_UPLOAD_COLUMNS: Final = (
    "upload_id, bucket, key, initiator, created_us, content_type, metadata, tags, headers,"
    " checksum_algorithm, checksum_type, acl"
)
_PART_COLUMNS: Final = "part_number, size, etag, checksums, created_us, stored_bytes, checksum"


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """A multipart upload in progress, and what its object will be described with."""

    bucket: str
    key: str
    upload_id: str
    initiator: str
    created: dt.datetime
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: The algorithm every part is checked with (``crc32``, ``sha256``, ...), or None.
    checksum_algorithm: str | None = None
    #: ``COMPOSITE`` or ``FULL_OBJECT`` when there is an algorithm, else None.
    checksum_type: str | None = None
    #: The completed object's canned ACL (None: private).
    acl: str | None = None


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """One part of an upload in progress: its ETag is the hex MD5 of its bytes."""

    number: int
    size: int
    etag: str
    #: The part's digests, by algorithm (base64): the upload's algorithm, and any stated.
    checksums: dict[str, str]
    modified: dt.datetime


@dataclass(frozen=True, slots=True)
class PartRef:
    """A part as a completion names it: number, ETag (quotes allowed), checksums stated."""

    number: int
    etag: str
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UploadPage:
    """One page of uploads in progress (key, then initiation order), and common prefixes."""

    uploads: list[UploadInfo]
    prefixes: list[str]
    truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


@dataclass(frozen=True, slots=True)
class PartPage:
    """One page of an upload's parts, ascending by number."""

    upload: UploadInfo
    parts: list[UploadedPart]
    truncated: bool
    #: The last part number listed (pass as ``part_number_marker`` for the next page).
    next_part_number_marker: int


# -- creating, uploading parts ----------------------------------------------------------------


def create_upload(
    store: Store,
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
    metadata: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    checksum_algorithm: str | None = None,
    checksum_type: str | None = None,
    acl: str | None = None,
) -> UploadInfo:
    """Start an upload of ``bucket/key``; see `Store.create_multipart_upload`."""
    validate_key(key)
    if acl is not None:
        validate_canned_acl(acl, on_object=True)
    metadata, tags = metadata or {}, tags or {}
    validate_metadata(metadata)
    validate_tags(tags)
    normal_headers = _store._normal_headers(headers)
    algorithm, kind = checksum_settings(checksum_algorithm, checksum_type)
    resource = f"/{bucket}/{key}"
    params = {"s3:x-amz-acl": acl, **_store.request_tag_params(tags)}
    decision = store._authorize_write("s3:PutObject", bucket, resource, params=params)
    token = secrets.token_hex(16)
    chosen_type = content_type or mimetypes.guess_type(key)[0] or _store.DEFAULT_CONTENT_TYPE

    def create(decided: Decision) -> Any:
        def op(tx: WriteTx) -> UploadInfo:
            _ops.owned_bucket_row(tx, bucket, decided)
            # The initiation time leads the id, so ids of one key sort by initiation.
            upload_id = f"{tx.now_us:014x}{token}"
            tx.execute(
                f"INSERT INTO t0_uploads ({_UPLOAD_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    upload_id, bucket, key, decided.principal.id, tx.now_us, chosen_type,
                    dump_json(metadata), dump_json(tags), dump_json(normal_headers), algorithm, kind,
                    acl,
                ),
            )  # fmt: skip
            Authorizer.record_in(tx, decided)
            return UploadInfo(
                bucket, key, upload_id, decided.principal.id, from_us(tx.now_us), chosen_type,
                metadata, tags, normal_headers, algorithm, kind, acl,
            )  # fmt: skip

        return op

    result: UploadInfo = store._commit_write(
        "s3:PutObject", bucket, resource, decision, create, params=params
    )
    return result


def upload_part(
    store: Store,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    data: Source,
    *,
    checksums: Mapping[str, Expected | None] | None = None,
) -> UploadedPart:
    """Store part ``number`` of an upload; see `Store.upload_part`."""
    expected = parse_checksums(checksums)
    validate_key(key)
    _check_part_number(number)
    decision = store._authorize_write("s3:PutObject", bucket, f"/{bucket}/{key}")
    upload = _find_upload(store, bucket, key, upload_id)
    blocks: bytes | Iterable[bytes]
    if isinstance(data, bytes):
        if len(data) > PART_BYTES_MAX:
            raise _part_too_large()
        blocks = data
    else:
        blocks = _capped(_store._blocks(data), PART_BYTES_MAX)
    return _store_part(store, upload, number, blocks, expected, decision)


def upload_part_copy(
    store: Store,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    source_bucket: str,
    source_key: str,
    *,
    version_id: str | None = None,
    offset: int = 0,
    length: int | None = None,
) -> UploadedPart:
    """Store part ``number`` from a range of another object; see `Store.upload_part_copy`."""
    validate_key(key)
    _check_part_number(number)
    decision = store._authorize_write("s3:PutObject", bucket, f"/{bucket}/{key}")
    upload = _find_upload(store, bucket, key, upload_id)
    with store.get(
        source_bucket, source_key, version_id=version_id, offset=offset, length=length
    ) as reader:
        if length is not None and reader.length < length:
            raise InvalidRange(
                f"bytes {offset}..{offset + length - 1} lie past the end of"
                f" {source_bucket}/{source_key} ({reader.info.size} bytes)"
            )
        if reader.length > PART_BYTES_MAX:
            raise _part_too_large()
        return _store_part(store, upload, number, iter(reader), {}, decision)


def _store_part(
    store: Store,
    upload: UploadInfo,
    number: int,
    blocks: bytes | Iterable[bytes],
    expected: Mapping[str, Expected | None],
    decision: Decision,
) -> UploadedPart:
    """Ingest one part's bytes as chunks, verify them, and commit the part row."""
    kernel = store._kernel
    computed = set(expected)
    if upload.checksum_algorithm is not None:
        computed.add(upload.checksum_algorithm)
    ingested = ingest(
        blocks,
        kernel.chunks,
        kernel.executor,
        inline_bytes_max=0,  # only an empty part is "inline": parts must concatenate
        policy=kernel.config.chunking,
        md5=True,
        checksums=sorted(computed),
        keepalive_s=kernel.config.gc_grace_s / 4,
    )
    verify(expected, ingested.digests)
    assert ingested.md5 is not None
    manifest = ingested.manifest
    row = _PartRow(
        size=ingested.size,
        stored_bytes=ingested.stored_bytes if manifest is not None else 0,
        etag=ingested.md5,
        checksum=ingested.checksum,
        checksums={
            name: base64.b64encode(digest).decode("ascii")
            for name, digest in ingested.digests.items()
            if name != "md5"  # the ETag says it already
        },
        manifest=None if manifest is None else manifest.encode(),
        chunks=tuple((c.hash, c.length, c.stored_bytes) for c in ingested.chunks),
    )
    bucket, key = upload.bucket, upload.key
    result: UploadedPart = store._commit_write(
        "s3:PutObject",
        bucket,
        f"/{bucket}/{key}",
        decision,
        lambda decided: lambda tx: _commit_part(tx, upload, number, row, decided),
    )
    return result


@dataclass(frozen=True, slots=True)
class _PartRow:
    size: int
    stored_bytes: int
    etag: str
    checksum: str
    checksums: dict[str, str]
    manifest: bytes | None
    chunks: tuple[tuple[bytes, int, int], ...]


def _commit_part(
    tx: WriteTx, upload: UploadInfo, number: int, row: _PartRow, decision: Decision
) -> UploadedPart:
    _ops.owned_bucket_row(tx, upload.bucket, decision)
    _upload_row(tx, upload.bucket, upload.key, upload.upload_id)
    replaced = tx.query_one(
        "DELETE FROM t0_upload_parts WHERE upload_id = ? AND part_number = ? RETURNING manifest",
        (upload.upload_id, number),
    )
    if replaced is not None:
        _release(tx, _hashes(replaced[0]))
    tx.execute(
        "INSERT INTO t0_upload_parts (upload_id, part_number, size, stored_bytes, etag, checksum,"
        " checksums, manifest, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            upload.upload_id, number, row.size, row.stored_bytes, row.etag, row.checksum,
            dump_json(row.checksums), row.manifest, tx.now_us,
        ),
    )  # fmt: skip
    _ops.add_refs(tx, row.chunks)
    Authorizer.record_in(tx, decision)
    return UploadedPart(number, row.size, row.etag, row.checksums, from_us(tx.now_us))


# -- completing, aborting -----------------------------------------------------------------------


def complete_upload(
    store: Store,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[PartRef | tuple[int, str]],
    *,
    if_match: str | None = None,
    if_none_match: str | None = None,
    checksums: Mapping[str, str] | None = None,
    object_size: int | None = None,
) -> ObjectInfo:
    """Make the object from ``parts``; see `Store.complete_multipart_upload`."""
    validate_key(key)
    refs = [p if isinstance(p, PartRef) else PartRef(*p) for p in parts]
    if not refs:
        raise InvalidArgument("a completion names at least one part")
    if len(refs) > PART_NUMBER_MAX:
        raise InvalidArgument(f"a completion names at most {PART_NUMBER_MAX} parts")
    for earlier, later in itertools.pairwise(refs):
        if later.number <= earlier.number:
            raise InvalidPartOrder(
                f"parts must be listed in ascending order of number, once each:"
                f" {later.number} follows {earlier.number}"
            )
    stated = dict(checksums or {})
    for name in stated:
        if name not in ALGORITHMS:
            decode_digest(name, "")  # raises InvalidArgument for the unknown name
    condition = None
    if if_match is not None or if_none_match is not None:
        condition = _ops.Condition(if_match=if_match, if_none_match=if_none_match)
    resource = f"/{bucket}/{key}"
    decision = store._authorize_write("s3:PutObject", bucket, resource)
    part_bytes_min = store._kernel.config.part_bytes_min

    def complete(decided: Decision) -> Any:
        def op(tx: WriteTx) -> ObjectInfo:
            return _complete(
                tx, bucket, key, upload_id, refs, decided,
                condition=condition, stated=stated, object_size=object_size,
                part_bytes_min=part_bytes_min,
            )  # fmt: skip

        return op

    result: ObjectInfo = store._commit_write("s3:PutObject", bucket, resource, decision, complete)
    return result


def _complete(
    tx: WriteTx,
    bucket: str,
    key: str,
    upload_id: str,
    refs: list[PartRef],
    decision: Decision,
    *,
    condition: _ops.Condition | None,
    stated: dict[str, str],
    object_size: int | None,
    part_bytes_min: int,
) -> ObjectInfo:
    _ops.owned_bucket_row(tx, bucket, decision)
    try:
        upload = _upload_row(tx, bucket, key, upload_id)
    except NoSuchUpload:
        done = _completed_version(tx, bucket, key, upload_id, refs)
        if done is None:
            raise
        Authorizer.record_in(tx, decision)
        return done
    rows = {
        row[0]: row
        for row in tx.query_all(
            f"SELECT {_PART_COLUMNS}, manifest FROM t0_upload_parts WHERE upload_id = ?",
            (upload_id,),
        )
    }
    chosen = [_chosen_part(ref, rows.get(ref.number)) for ref in refs]
    for part in chosen[:-1]:
        if part.size < part_bytes_min:
            raise EntityTooSmall(
                f"part {part.number} is {part.size} bytes; every part but the last must be"
                f" at least {part_bytes_min} bytes"
            )
    size = sum(part.size for part in chosen)
    if size > OBJECT_BYTES_MAX:
        raise EntityTooLarge(f"the object would be {size} bytes; the limit is {OBJECT_BYTES_MAX}")
    if object_size is not None and object_size != size:
        raise InvalidArgument(f"the parts hold {size} bytes, not the {object_size} stated")
    count = len(chosen)
    etag = hashlib.md5(
        b"".join(bytes.fromhex(part.etag) for part in chosen), usedforsecurity=False
    ).hexdigest()
    checksums = object_checksums(upload.checksum_algorithm, upload.checksum_type, chosen)
    check_stated(stated, checksums)
    manifest = b"".join(bytes(rows[part.number][7] or b"") for part in chosen)
    new = _ops.NewVersion(
        size=size,
        stored_bytes=sum(int(rows[part.number][5]) for part in chosen),
        etag=f"{etag}-{count}",
        checksum=composite_checksum([rows[part.number][6] for part in chosen]),
        content_type=upload.content_type,
        inline=None,
        manifest=manifest or None,
        chunks=(),  # the parts' references pass to the version (released below otherwise)
        metadata=upload.metadata,
        tags=upload.tags,
        headers=upload.headers,
        checksums=checksums,
        parts=tuple(chosen),
        acl=upload.acl,
    )
    info = _ops.put_version(
        tx,
        bucket,
        key,
        new,
        decision,
        event_type="ObjectCreated:CompleteMultipartUpload",
        condition=condition,
        detail={"upload_id": upload_id, "parts": count},
    )
    held: collections.Counter[bytes] = collections.Counter()
    for row in rows.values():
        held.update(_hashes(row[7]))
    held.subtract(Manifest.decode(manifest).hashes)
    _release_counts(tx, held)
    _delete_upload(tx, upload_id)
    tx.execute(
        "INSERT INTO t0_completed_uploads (upload_id, bucket, key, version_id, completed_us)"
        " VALUES (?, ?, ?, ?, ?)",
        (upload_id, bucket, key, info.version_id, tx.now_us),
    )
    return info


def _completed_version(
    tx: WriteTx, bucket: str, key: str, upload_id: str, refs: list[PartRef]
) -> ObjectInfo | None:
    """The version a completion of ``upload_id`` with these parts made, if it was
    completed (within the upload expiry) and that version is still there: the answer
    to a completion retried because its first answer was lost."""
    row = tx.query_one(
        "SELECT version_id FROM t0_completed_uploads WHERE upload_id = ? AND bucket = ?"
        " AND key = ?",
        (upload_id, bucket, key),
    )
    if row is None:
        return None
    version = tx.query_one(
        f"SELECT {_ops.VERSION_COLUMNS} FROM t0_versions"
        " WHERE bucket = ? AND key = ? AND version_id = ?",
        (bucket, key, row[0]),
    )
    if version is None:
        return None
    info = _ops.row_to_info(version)
    named = [(ref.number, ref.etag.strip().strip('"').lower()) for ref in refs]
    return info if named == [(part.number, part.etag) for part in info.parts] else None


def _chosen_part(ref: PartRef, row: Any) -> PartInfo:
    """The part a completion names, if it was uploaded with that ETag and those checksums."""
    if row is None:
        raise InvalidPart(f"part {ref.number} was not uploaded (or was not kept)")
    etag = ref.etag.strip().strip('"').lower()
    if etag != row[2]:
        raise InvalidPart(
            f"part {ref.number} has ETag {row[2]!r}, not the {ref.etag!r} the completion names"
        )
    checksums: dict[str, str] = load_json(row[3])
    for name, value in ref.checksums.items():
        if checksums.get(name) != value.strip():
            raise InvalidPart(
                f"part {ref.number} has no {name} checksum {value!r}"
                f" (it has {checksums.get(name)!r})"
            )
    return PartInfo(ref.number, int(row[1]), row[2], checksums)


def abort_upload(store: Store, bucket: str, key: str, upload_id: str) -> None:
    """Abandon an upload; see `Store.abort_multipart_upload`."""
    validate_key(key)
    resource = f"/{bucket}/{key}"
    decision = store._authorize_write(
        "s3:AbortMultipartUpload", bucket, resource, facts=_upload_facts(store, bucket, upload_id)
    )

    def abort(decided: Decision) -> Any:
        def op(tx: WriteTx) -> None:
            _ops.owned_bucket_row(tx, bucket, decided)
            _upload_row(tx, bucket, key, upload_id)
            held: collections.Counter[bytes] = collections.Counter()
            for (manifest,) in tx.query_all(
                "SELECT manifest FROM t0_upload_parts WHERE upload_id = ?", (upload_id,)
            ):
                held.update(_hashes(manifest))
            _release_counts(tx, held)
            _delete_upload(tx, upload_id)
            Authorizer.record_in(tx, decided)

        return op

    store._commit_write("s3:AbortMultipartUpload", bucket, resource, decision, abort)


def expire_uploads(tx: WriteTx, *, cutoff_us: int, limit: int) -> int:
    """Abort up to ``limit`` uploads begun before ``cutoff_us``; how many it aborted.
    The record of uploads completed before then goes too.

    An upload nobody completes or aborts would hold its parts' chunks for
    ever; S3 leaves that to a lifecycle rule, tier0's garbage collection does
    it after `StoreConfig.upload_expiry_s`. Their chunks then wait out the GC
    grace period like any other released chunk.
    """
    ids = [
        row[0]
        for row in tx.query_all(
            "SELECT upload_id FROM t0_uploads WHERE created_us < ? ORDER BY created_us LIMIT ?",
            (cutoff_us, limit),
        )
    ]
    held: collections.Counter[bytes] = collections.Counter()
    for upload_id in ids:
        for (manifest,) in tx.query_all(
            "SELECT manifest FROM t0_upload_parts WHERE upload_id = ?", (upload_id,)
        ):
            held.update(_hashes(manifest))
        _delete_upload(tx, upload_id)
    _release_counts(tx, held)
    tx.execute("DELETE FROM t0_completed_uploads WHERE completed_us < ?", (cutoff_us,))
    return len(ids)


def discard_bucket_uploads(tx: WriteTx, bucket: str) -> None:
    """Drop every upload in ``bucket`` and release its parts (the bucket is being deleted).

    S3 deletes a bucket whatever uploads are in progress in it; they go with it.
    """
    held: collections.Counter[bytes] = collections.Counter()
    for (manifest,) in tx.query_all(
        "SELECT p.manifest FROM t0_upload_parts p JOIN t0_uploads u ON u.upload_id = p.upload_id"
        " WHERE u.bucket = ?",
        (bucket,),
    ):
        held.update(_hashes(manifest))
    _release_counts(tx, held)
    tx.execute(
        "DELETE FROM t0_upload_parts WHERE upload_id IN"
        " (SELECT upload_id FROM t0_uploads WHERE bucket = ?)",
        (bucket,),
    )
    tx.execute("DELETE FROM t0_uploads WHERE bucket = ?", (bucket,))
    tx.execute("DELETE FROM t0_completed_uploads WHERE bucket = ?", (bucket,))


def _check_part_number(number: int) -> None:
    if not isinstance(number, int) or not 1 <= number <= PART_NUMBER_MAX:
        raise InvalidArgument(
            f"Part number must be an integer between 1 and {PART_NUMBER_MAX}, inclusive"
        )


def _part_too_large() -> EntityTooLarge:
    return EntityTooLarge(f"a part holds at most {PART_BYTES_MAX} bytes")


def _capped(blocks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """``blocks``, raising `EntityTooLarge` once they pass ``limit`` bytes (before storing more)."""
    total = 0
    for block in blocks:
        total += len(block)
        if total > limit:
            raise _part_too_large()
        yield block


def _upload_info(row: Any) -> UploadInfo:
    return UploadInfo(
        bucket=row[1],
        key=row[2],
        upload_id=row[0],
        initiator=row[3],
        created=from_us(row[4]),
        content_type=row[5],
        metadata=load_json(row[6]),
        tags=load_json(row[7]),
        headers=load_json(row[8]),
        checksum_algorithm=row[9],
        checksum_type=row[10],
        acl=row[11],
    )


def _upload_row(db: WriteTx | Connection, bucket: str, key: str, upload_id: str) -> UploadInfo:
    """The upload ``upload_id`` of ``bucket/key``; `NoSuchUpload` if it is not in progress."""
    row = db.query_one(
        f"SELECT {_UPLOAD_COLUMNS} FROM t0_uploads WHERE upload_id = ? AND bucket = ? AND key = ?",
        (upload_id, bucket, key),
    )
    if row is None:
        raise NoSuchUpload(
            f"The specified upload does not exist: no upload {upload_id!r} of {bucket}/{key}"
            " is in progress (it may have been completed or aborted)."
        )
    return _upload_info(row)


def _upload_facts(store: Store, bucket: str, upload_id: str) -> ObjectFacts:
    """What a decision about an upload may ask of it: its initiator, who (as in S3)
    may list its parts and abort it, as the bucket's owner may."""

    def load() -> tuple[None, Mapping[str, str], str] | None:
        with store._kernel.meta.reader() as db:
            row = db.query_one(
                "SELECT initiator FROM t0_uploads WHERE upload_id = ? AND bucket = ?",
                (upload_id, bucket),
            )
        return None if row is None else (None, {}, str(row[0]))

    return ObjectFacts(load)


def _find_upload(store: Store, bucket: str, key: str, upload_id: str) -> UploadInfo:
    """Read the upload before a part's bytes are taken (its transaction checks it again)."""
    with store._kernel.meta.reader() as db:
        return _upload_row(db, bucket, key, upload_id)


def _hashes(manifest: Any) -> tuple[bytes, ...]:
    return () if manifest is None else Manifest.decode(bytes(manifest)).hashes


def _release(tx: WriteTx, hashes: Iterable[bytes]) -> None:
    _release_counts(tx, collections.Counter(hashes))


def _release_counts(tx: WriteTx, counts: Mapping[bytes, int]) -> None:
    """Drop references; a chunk left with none is the GC's after the grace period from now."""
    tx.executemany(
        "UPDATE t0_chunks SET refcount = refcount - ?, updated_us = ? WHERE hash = ?",
        [(n, tx.now_us, digest) for digest, n in counts.items() if n > 0],
    )


def _delete_upload(tx: WriteTx, upload_id: str) -> None:
    tx.execute("DELETE FROM t0_upload_parts WHERE upload_id = ?", (upload_id,))
    tx.execute("DELETE FROM t0_uploads WHERE upload_id = ?", (upload_id,))
