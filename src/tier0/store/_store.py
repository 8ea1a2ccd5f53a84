"""The element store: buckets and versioned objects over chunks and metadata.

``Store`` is what every protocol calls. It checks names, asks the authorize
seam, streams bytes through the write path, and hands the metadata change to
the group committer; the commit protocol is: chunks durable first, then one
metadata transaction (version row = catalog row, chunk references, event,
audit), and only then is the write acknowledged.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Final, TypeVar

from tier0.errors import (
    ConditionalRequestConflict,
    DeleteMarkerFound,
    InvalidArgument,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    PreconditionFailed,
)
from tier0.identity import (
    EMPTY_CONTEXT,
    REQUEST_OBJECT_TAG,
    Authorizer,
    Decision,
    ObjectFacts,
    Principal,
    RequestContext,
    validate_canned_acl,
)
from tier0.meta import Committer, MetaBackend, WriteTx
from tier0.store import _bucketconf, _multipart, _ops
from tier0.store._bucketconf import BucketConfigMethods
from tier0.store._checksums import Expected, parse_checksums, verify
from tier0.store._chunking import ChunkingPolicy, decode_chunk, encode_chunk
from tier0.store._chunks import ChunkBackend
from tier0.store._elements import ElementMethods
from tier0.store._manifest import Manifest
from tier0.store._names import (
    validate_bucket_name,
    validate_key,
    validate_metadata,
    validate_tags,
)
from tier0.store._paging import ListingMethods
from tier0.store._prepared import PreparedWrite
from tier0.store._reader import ObjectReader, open_reader
from tier0.store._tagging import TagMethods
from tier0.store._types import (
    BucketInfo,
    DeleteResult,
    ObjectInfo,
    Versioning,
    from_us,
)
from tier0.store._uploads import UploadMethods
from tier0.store._writer import ingest

T = TypeVar("T")

READ_BLOCK_BYTES: Final = 1024 * 1024
OWNERS_CACHED_MAX: Final = 100_000
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
STANDARD_HEADERS: Final = frozenset(
    {"content-encoding", "content-disposition", "content-language", "cache-control", "expires"}
)

Source = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


@dataclass(frozen=True)
class StoreConfig:
    """Tunables of the write path, chosen by measurement (see benchmarks/)."""

    #: Objects up to this size live in their metadata row; no chunk file.
    #: Measured (benchmarks/bench_inline.py): inlining puts 4-9x faster than
    #: chunking up to 128 KiB and 2.5x at 256 KiB, even at 512 KiB; but inline
    #: values are not compressed, so 128 KiB is where the trade stops paying.
    inline_bytes_max: int = 128 * 1024
    chunking: ChunkingPolicy = field(default_factory=ChunkingPolicy)
    #: Unreferenced chunks younger than this are never collected.
    gc_grace_s: float = 3600.0
    io_threads: int = 4
    #: Every part of a multipart upload but the last must be at least this
    #: large (S3's 5 MiB); tests may lower it to stay fast.
    part_bytes_min: int = 5 * 1024 * 1024
    #: Multipart uploads neither completed nor aborted within this long are
    #: aborted by garbage collection (their parts' chunks then go too).
    upload_expiry_s: float = 7 * 24 * 3600.0


@dataclass
class Kernel:
    """The shared parts a store is made of; one per opened data directory."""

    meta: MetaBackend
    committer: Committer
    chunks: ChunkBackend
    authorizer: Authorizer
    config: StoreConfig
    executor: ThreadPoolExecutor
    #: Bucket → owner, for authorizing writes without a query; each write's
    #: transaction re-checks it (see ``_ops.owned_bucket_row``).
    owners: dict[str, str] = field(default_factory=dict)


def _blocks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    read = getattr(source, "read", None)
    if read is not None:
        while block := read(READ_BLOCK_BYTES):
            yield block
        return
    if isinstance(source, str):
        raise InvalidArgument("put() takes bytes, a binary file or an iterable of bytes, not str")
    for block in source:
        if not isinstance(block, bytes | bytearray | memoryview):
            raise InvalidArgument(f"put() got a {type(block).__name__} block; blocks are bytes")
        yield bytes(block)


class Store(BucketConfigMethods, ListingMethods, ElementMethods, UploadMethods, TagMethods):
    """Buckets and objects, as seen by one principal.

    ``context`` is what the protocol knows of the request this store serves
    (client address, TLS, User-Agent, ...), for bucket policy conditions; None
    for in-process calls. Bucket configuration (tags, CORS, policy, ACLs) is
    in `BucketConfigMethods`.
    """

    def __init__(
        self, kernel: Kernel, principal: Principal, *, context: RequestContext | None = None
    ) -> None:
        self._kernel = kernel
        self.principal = principal
        self.context = context

    @property
    def inline_bytes_max(self) -> int:
        """Objects up to this size live in their metadata row: `prepare_put` of
        one stores no chunk, it only hashes."""
        return self._kernel.config.inline_bytes_max

    @property
    def local_reads(self) -> bool:
        """Whether metadata reads are local (SQLite, in WAL mode): a few pages of a
        file, never a network round trip nor a wait on writers, so an event loop
        may make a lookup itself rather than hand it to a thread."""
        return self._kernel.meta.dialect == "sqlite"

    # -- buckets ---------------------------------------------------------------------------

    def create_bucket(self, name: str, *, acl: str | None = None) -> BucketInfo:
        """Create a bucket owned by this principal, with canned ``acl`` (private by default)."""
        validate_bucket_name(name)
        if acl is not None:
            validate_canned_acl(acl, on_object=False)
        decision = self._authorize(
            "s3:CreateBucket", f"/{name}", owner=None, params={"s3:x-amz-acl": acl}
        )

        def create(tx: WriteTx) -> None:
            _ops.create_bucket(tx, name, self.principal.id, decision)
            if acl is not None and acl != "private":
                _bucketconf.write_config(tx, name, "acl", acl)

        try:
            self._kernel.committer.run(create)
        finally:
            self._kernel.authorizer.rules.forget(name)
        return self.head_bucket(name)

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (BucketNotEmpty otherwise)."""
        decision = self._authorize("s3:DeleteBucket", f"/{name}", owner=self._owner(name))

        def delete(tx: WriteTx) -> None:
            _ops.delete_bucket(tx, name, decision)
            # Uploads in progress go with the bucket, as in S3.
            _multipart.discard_bucket_uploads(tx, name)

        try:
            self._kernel.committer.run(delete)
        finally:
            self._kernel.authorizer.rules.forget(name)
        self._kernel.owners.pop(name, None)

    def head_bucket(self, name: str, *, action: str = "s3:ListBucket") -> BucketInfo:
        """The bucket's description, authorized as ``action`` (S3's HeadBucket needs
        ListBucket; GetBucketVersioning and GetBucketLocation have their own)."""
        with self._kernel.meta.reader() as db:
            row = db.query_one(
                "SELECT name, owner, versioning, created_us FROM t0_buckets WHERE name = ?", (name,)
            )
        if row is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        self._authorize(action, f"/{name}", owner=row[1], deferred=False)
        return BucketInfo(row[0], row[1], row[2], from_us(row[3]))

    def list_buckets(self) -> list[BucketInfo]:
        """The buckets this principal owns (every bucket, for root)."""
        sql = "SELECT name, owner, versioning, created_us FROM t0_buckets"
        params: tuple[str, ...] = ()
        if not self.principal.is_root:
            sql += " WHERE owner = ?"
            params = (self.principal.id,)
        with self._kernel.meta.reader() as db:
            rows = db.query_all(sql + " ORDER BY name", params)
        self._authorize("s3:ListAllMyBuckets", "/", owner=self.principal.id)
        return [BucketInfo(r[0], r[1], r[2], from_us(r[3])) for r in rows]

    def set_versioning(self, name: str, status: Versioning) -> None:
        """Turn versioning 'Enabled' or 'Suspended' (a bucket starts 'Unversioned')."""
        decision = self._authorize("s3:PutBucketVersioning", f"/{name}", owner=self._owner(name))
        self._kernel.committer.run(lambda tx: _ops.set_versioning(tx, name, status, decision))

    def get_versioning(self, name: str) -> Versioning:
        return self.head_bucket(name, action="s3:GetBucketVersioning").versioning

    # -- objects ---------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        data: Source,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        md5: bool = False,
        checksums: Mapping[str, Expected | None] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        event_type: str = "ObjectCreated:Put",
        acl: str | None = None,
    ) -> ObjectInfo:
        """Store ``data`` (bytes, a binary file, or an iterable of bytes) as ``bucket/key``.

        ``acl`` is the new version's canned ACL (`tier0.identity.OBJECT_CANNED_ACLS`;
        private by default).

        Streams: memory stays bounded whatever the size. With ``md5`` the ETag
        is the MD5 of the content (what S3 clients expect of a single-part
        upload); otherwise it is derived from the BLAKE3 checksum, which costs
        nothing extra. Returns the committed version.

        ``if_none_match='*'`` refuses to overwrite; ``if_match=etag``
        overwrites only that version. A condition is checked before any byte
        is read (`PreconditionFailed`; `NoSuchKey` for ``if_match`` on a key
        with no current version) and again in the commit: failing only there,
        because another write committed while the data streamed, raises
        `ConditionalRequestConflict`. Either way nothing is written.

        ``checksums`` states what the caller sent, by algorithm (``md5``,
        ``sha1``, ``sha256``, ``crc32``, ``crc32c``, ``crc64nvme``): base64
        digests, as S3's ``Content-MD5`` and ``x-amz-checksum-*`` carry them.
        A value may be a function returning the digest, called once the data
        has been read whole (for a checksum that trails the body), or None to
        have the digest computed without stating one. Each is computed over
        the data as it streams, and a mismatch raises `BadDigest` before
        anything is committed: no version, no event. Chunks already stored
        stay unreferenced until garbage collection reclaims them. An unknown
        algorithm or a malformed digest raises `InvalidArgument` before the
        data is read. The version records every digest computed
        (``ObjectInfo.checksums``, base64).

        >>> store.put("b", "k", b"hello", checksums={"crc32": "NhCmhg=="})  # doctest: +SKIP
        """
        return self.prepare_put(
            bucket, key, data, content_type=content_type, metadata=metadata, tags=tags,
            headers=headers, md5=md5, checksums=checksums, if_match=if_match,
            if_none_match=if_none_match, event_type=event_type, acl=acl,
        ).commit()  # fmt: skip

    def check_put(
        self,
        bucket: str,
        key: str,
        *,
        tags: dict[str, str] | None = None,
        acl: str | None = None,
    ) -> None:
        """Refuse now a put that would be refused before any of its data is read: a bad
        key, tags or ACL, a missing bucket, a denial (recorded as one). An allowed put
        is recorded when it commits. What S3 decides before it answers ``Expect:
        100-continue``, so that a refused upload never sends its body."""
        validate_key(key)
        if tags:
            validate_tags(tags)
        if acl is not None:
            validate_canned_acl(acl, on_object=True)
        params = {"s3:x-amz-acl": acl, **request_tag_params(tags or {})}
        self._authorize_write("s3:PutObject", bucket, f"/{bucket}/{key}", params=params)

    def prepare_put(
        self,
        bucket: str,
        key: str,
        data: Source,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        md5: bool = False,
        checksums: Mapping[str, Expected | None] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        event_type: str = "ObjectCreated:Put",
        acl: str | None = None,
    ) -> PreparedWrite[ObjectInfo]:
        """Everything `put` does before its commit: the write checked, authorized,
        its data stored and its version built, but not committed.

        `PreparedWrite.commit` finishes it as `put` does. A caller serving many
        writes on one thread instead commits the ``op`` of several in one
        transaction (`tier0.meta.Committer.run_many`) and settles each.
        """
        expected = parse_checksums(checksums)
        validate_key(key)
        metadata, tags, headers = metadata or {}, tags or {}, _normal_headers(headers)
        validate_metadata(metadata)
        validate_tags(tags)
        if acl is not None:
            validate_canned_acl(acl, on_object=True)
        params = {"s3:x-amz-acl": acl}
        if tags:
            params.update(request_tag_params(tags))
        decision = self._authorize_write("s3:PutObject", bucket, f"/{bucket}/{key}", params=params)
        condition = None
        if if_match is not None or if_none_match is not None:
            condition = _ops.Condition(if_match=if_match, if_none_match=if_none_match)
            # Fail before the data is read, rather than after a long upload.
            condition.check(self._current_row(bucket, key))
        kernel = self._kernel
        ingested = ingest(
            data if isinstance(data, bytes) else _blocks(data),
            kernel.chunks,
            kernel.executor,
            inline_bytes_max=kernel.config.inline_bytes_max,
            policy=kernel.config.chunking,
            md5=md5,
            checksums=expected.keys(),
            keepalive_s=kernel.config.gc_grace_s / 4,
        )
        verify(expected, ingested.digests)
        manifest = ingested.manifest
        inline = None
        if ingested.inline is not None:
            # Inline values are encoded like chunks: compressed when that pays,
            # and verified on every read against the object's own BLAKE3.
            inline = encode_chunk(
                ingested.inline, digest=_digest(ingested.checksum), compact=True
            ).blob
        etag = (
            ingested.md5
            if ingested.md5 is not None
            else ingested.checksum.removeprefix("blake3:")[:32] + "-b3"
        )
        new = _ops.NewVersion(
            size=ingested.size,
            stored_bytes=ingested.stored_bytes if inline is None else len(inline),
            etag=etag,
            checksum=ingested.checksum,
            content_type=content_type or mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE,
            inline=inline,
            manifest=None if manifest is None else manifest.encode(),
            chunks=tuple((c.hash, c.length, c.stored_bytes) for c in ingested.chunks),
            metadata=metadata,
            tags=tags,
            headers=headers,
            checksums={
                algorithm: base64.b64encode(ingested.digests[algorithm]).decode("ascii")
                for algorithm in expected
            },
            acl=acl,
        )

        def conflict(error: BaseException) -> BaseException:
            if not isinstance(error, PreconditionFailed | NoSuchKey) or isinstance(
                error, ConditionalRequestConflict
            ):
                return error
            # The condition held before the data was read: a write that
            # committed meanwhile made it fail, which S3 reports apart.
            changed = ConditionalRequestConflict(
                f"{bucket}/{key} changed while this conditional write was in progress ({error});"
                " retry it"
            )
            changed.__cause__ = error
            return changed

        return PreparedWrite(
            self,
            "s3:PutObject",
            bucket,
            f"/{bucket}/{key}",
            decision,
            lambda decided: (
                lambda tx: _ops.put_version(
                    tx, bucket, key, new, decided, event_type=event_type, condition=condition
                )
            ),
            params=params,
            translate=None if condition is None else conflict,
        )

    def get(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        offset: int = 0,
        length: int | None = None,
    ) -> ObjectReader:
        """Stream a version's bytes (the current one by default), or a range of them.

        ``offset`` past the end raises InvalidRange; ``length`` is clamped to
        the object. Only the chunks the range overlaps are read.
        """
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRange(f"offset and length must be non-negative, got {offset} and {length}")
        info, inline, manifest = self._read_version(
            bucket, key, version_id, _ops.read_action(version_id)
        )
        if offset > info.size:
            raise InvalidRange(
                f"offset {offset} lies past the end of {bucket}/{key} ({info.size} bytes)"
            )
        length = info.size - offset if length is None else min(length, info.size - offset)
        kernel = self._kernel
        return open_reader(kernel.chunks, kernel.executor, info, inline, manifest, offset, length)

    def get_bytes(self, bucket: str, key: str, **options: Any) -> bytes:
        """The whole object (or range) as bytes; for small objects."""
        with self.get(bucket, key, **options) as reader:
            return reader.read()

    def head(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """A version's description, without its bytes."""
        return self._read_version(bucket, key, version_id, _ops.read_action(version_id))[0]

    def copy(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        acl: str | None = None,
    ) -> ObjectInfo:
        """Copy a version to ``bucket/key`` in metadata alone: the chunks are shared.

        Passing ``metadata``, ``content_type``, ``headers`` or ``tags``
        replaces that part of the description (S3's REPLACE directive). The
        copy's canned ACL is ``acl`` (private by default): as in S3, an ACL is
        never copied.
        """
        validate_key(key)
        validate_key(source_key)
        replace: dict[str, Any] = {}
        if metadata is not None:
            validate_metadata(metadata)
            replace["metadata"] = metadata
        if tags is not None:
            validate_tags(tags)
            replace["tags"] = tags
        if content_type is not None:
            replace["content_type"] = content_type
        if headers is not None:
            replace["headers"] = _normal_headers(headers)
        if acl is not None:
            replace["acl"] = validate_canned_acl(acl, on_object=True)
        self._authorize(
            "s3:GetObject",
            f"/{source_bucket}/{source_key}",
            owner=self._owner(source_bucket),
            params={"s3:VersionId": version_id},
        )
        source = f"{source_bucket}/{source_key}"
        params = {
            "s3:x-amz-acl": acl,
            "s3:x-amz-copy-source": source
            if version_id is None
            else f"{source}?versionId={version_id}",
            "s3:x-amz-metadata-directive": "COPY" if metadata is None else "REPLACE",
            **request_tag_params(tags or {}),
        }
        decision = self._authorize_write("s3:PutObject", bucket, f"/{bucket}/{key}", params=params)
        condition = None
        if if_match is not None or if_none_match is not None:
            condition = _ops.Condition(if_match=if_match, if_none_match=if_none_match)
        return self._commit_write(
            "s3:PutObject", bucket, f"/{bucket}/{key}", decision,
            lambda decided: lambda tx: _ops.copy_version(
                tx, (source_bucket, source_key, version_id), (bucket, key), decided,
                replace=replace, condition=condition,
            ),
            params=params,
        )  # fmt: skip

    def delete(self, bucket: str, key: str, *, version_id: str | None = None) -> DeleteResult:
        """Delete the key (a delete marker if the bucket keeps versions), or one version."""
        validate_key(key)
        action = "s3:DeleteObject" if version_id is None else "s3:DeleteObjectVersion"
        params = {"s3:VersionId": version_id}
        decision = self._authorize_write(action, bucket, f"/{bucket}/{key}", params=params)
        return self._commit_write(
            action,
            bucket,
            f"/{bucket}/{key}",
            decision,
            lambda decided: lambda tx: _ops.delete_version(tx, bucket, key, version_id, decided),
            params=params,
        )

    def annotate(
        self, bucket: str, key: str, facts: dict[str, str], *, version_id: str | None = None
    ) -> str:
        """Merge ``facts`` into a version's user metadata in place (no new version): what
        was learnt about the element, such as an extraction function's findings. The
        merged metadata keeps S3's limits; the change is an ``ObjectMetadata:Put`` event.
        Needs ``tier0:AnnotateObject``. Returns the version id annotated."""
        validate_key(key)
        validate_metadata(facts)
        decision = self._authorize_write("tier0:AnnotateObject", bucket, f"/{bucket}/{key}")
        return self._commit_write(
            "tier0:AnnotateObject",
            bucket,
            f"/{bucket}/{key}",
            decision,
            lambda decided: lambda tx: _ops.annotate(tx, bucket, key, version_id, facts, decided),
        )

    # -- multipart uploads (tier0.store._multipart) -----------------------------------------

    # -- internals -------------------------------------------------------------------------

    def _authorize(
        self,
        action: str,
        resource: str,
        *,
        owner: str | None,
        deferred: bool = False,
        params: Mapping[str, str | None] | None = None,
        facts: ObjectFacts | None = None,
    ) -> Decision:
        """Authorize (see `Authorizer.authorize`) with this store's request context,
        plus the operation's ``params`` (policy condition keys such as ``s3:prefix``).

        ``facts`` describes the object acted on; by default, for an object
        resource, the version ``params`` name (``s3:VersionId``) or the current one.
        """
        context = self.context
        if params:
            context = (context or EMPTY_CONTEXT).with_params(params)
        if facts is None:
            bucket, slash, key = resource[1:].partition("/")
            if slash and key:
                version_id = context.params.get("s3:versionid") if context else None
                facts = self._object_facts(bucket, key, version_id=version_id)
        return self._kernel.authorizer.authorize(
            self.principal,
            action,
            resource,
            owner=owner,
            deferred=deferred,
            context=context,
            facts=facts,
        )

    def _owner(self, bucket: str) -> str:
        """The bucket's owner, read now (and remembered for later writes)."""
        with self._kernel.meta.reader() as db:
            row = db.query_one("SELECT owner FROM t0_buckets WHERE name = ?", (bucket,))
        if row is None:
            self._kernel.owners.pop(bucket, None)
            raise NoSuchBucket(f"bucket {bucket!r} does not exist")
        owners = self._kernel.owners
        if len(owners) >= OWNERS_CACHED_MAX:
            owners.clear()
        owners[bucket] = str(row[0])
        return str(row[0])

    def _authorize_write(
        self,
        action: str,
        bucket: str,
        resource: str,
        *,
        params: Mapping[str, str | None] | None = None,
        facts: ObjectFacts | None = None,
    ) -> Decision:
        """Decide a write with the remembered owner; a denial is re-decided with a fresh one.

        An allowance made on a stale owner is caught by the write's own
        transaction (``_commit_write`` then decides again).
        """
        owner = self._kernel.owners.get(bucket)
        if (
            owner is None
            or not self._kernel.authorizer.decide(
                self.principal, action, resource, owner=owner, context=self.context, facts=facts
            ).allowed
        ):
            owner = self._owner(bucket)
        return self._authorize(
            action, resource, owner=owner, deferred=True, params=params, facts=facts
        )

    def _commit_write(
        self,
        action: str,
        bucket: str,
        resource: str,
        decision: Decision,
        build: Callable[[Decision], Callable[[WriteTx], T]],
        *,
        params: Mapping[str, str | None] | None = None,
    ) -> T:
        return PreparedWrite(
            self, action, bucket, resource, decision, build, params=params
        ).commit()

    def _current_row(self, bucket: str, key: str) -> Any:
        """The key's current version row (VERSION_COLUMNS), or None; for a
        write's precondition, which the write's own authorization covers."""
        with self._kernel.meta.reader() as db:
            return db.query_one(
                f"SELECT {_ops.VERSION_COLUMNS} FROM t0_versions"
                " WHERE bucket = ? AND key = ? AND is_latest = 1",
                (bucket, key),
            )

    def _read_version(
        self, bucket: str, key: str, version_id: str | None, action: str
    ) -> tuple[ObjectInfo, bytes | None, Manifest | None]:
        validate_key(key)
        with self._kernel.meta.reader() as db:
            if version_id is None:
                row = db.query_one(_READ_LATEST, (key, bucket))
            else:
                row = db.query_one(_READ_VERSION, (key, version_id, bucket))
        if row is None:
            raise NoSuchBucket(f"bucket {bucket!r} does not exist")
        if row[1] is None:
            # As S3: only a caller who may list the bucket learns that a key is not
            # there; anyone else is told no more than AccessDenied.
            self._authorize("s3:ListBucket", f"/{bucket}", owner=row[0])
            if version_id is None:
                raise NoSuchKey(f"{bucket}/{key} does not exist")
            raise NoSuchVersion(f"{bucket}/{key} has no version {version_id!r}")
        self._authorize(
            action,
            f"/{bucket}/{key}",
            owner=row[0],
            params={"s3:VersionId": version_id},
            facts=self._object_facts(bucket, key, seq=row[1]),
        )
        info = _ops.row_to_info(row[1:20])
        if info.is_delete_marker:
            raise DeleteMarkerFound(
                f"{bucket}/{key} is deleted (its current version is a delete marker)"
                if version_id is None
                else f"{bucket}/{key} version {version_id!r} is a delete marker",
                version_id=info.version_id,
                modified=info.modified,
                by_version=version_id is not None,
            )
        inline = None
        if row[20] is not None:
            inline = decode_chunk(_digest(info.checksum), bytes(row[20]))
        manifest = None if row[21] is None else Manifest.decode(bytes(row[21]))
        return info, inline, manifest


def _read_sql(version: str) -> str:
    """A version row with its bucket's owner (NULLs where only the bucket exists)."""
    columns = ", ".join(f"v.{c.strip()}" for c in _ops.VERSION_COLUMNS.split(","))
    return (
        f"SELECT b.owner, {columns}, v.inline_data, v.manifest FROM t0_buckets b"
        f" LEFT JOIN t0_versions v ON v.bucket = b.name AND v.key = ? AND {version}"
        " WHERE b.name = ?"
    )


_READ_LATEST: Final = _read_sql("v.is_latest = 1")
_READ_VERSION: Final = _read_sql("v.version_id = ?")


def request_tag_params(tags: Mapping[str, str]) -> dict[str, str | None]:
    """The ``s3:RequestObjectTag/<tag>`` condition keys of a write giving ``tags``."""
    return {REQUEST_OBJECT_TAG + name: value for name, value in tags.items()}


def _digest(checksum: str) -> bytes:
    """The BLAKE3 digest in a ``blake3:<hex>`` checksum."""
    return bytes.fromhex(checksum.removeprefix("blake3:"))


def _normal_headers(headers: dict[str, str] | None) -> dict[str, str]:
    result = {}
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered not in STANDARD_HEADERS:
            raise InvalidArgument(
                f"header {name!r} is not stored; stored headers are {', '.join(sorted(STANDARD_HEADERS))}"
            )
        result[lowered] = str(value)
    return result
