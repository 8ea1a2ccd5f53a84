"""Multipart uploads in the store's API: create, upload parts (or copy them), complete,
abort, list, read a part. A mixin of `Store`; the work is `tier0.store._multipart`'s.

Kept apart so that `_store.py` holds the single-request object API alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from tier0.store import _multipart, _multipart_reads
from tier0.store._checksums import Expected
from tier0.store._paging import LIST_LIMIT_MAX
from tier0.store._reader import ObjectReader
from tier0.store._types import ObjectInfo

if TYPE_CHECKING:
    from tier0.store._store import Source, Store


class UploadMethods:
    """`Store` methods for multipart uploads; see the module docstring."""

    def _as_store(self) -> Store:
        return cast("Store", self)  # a mixin of Store, never used alone

    def create_multipart_upload(
        self,
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
    ) -> _multipart.UploadInfo:
        """Start a multipart upload of ``bucket/key`` (authorized as ``s3:PutObject``).

        The description (``content_type``, ``metadata``, ``tags``, ``headers``)
        is the completed object's. ``checksum_algorithm`` (``crc32``,
        ``crc32c``, ``sha1``, ``sha256``, ``crc64nvme``) is computed for every
        part, and ``checksum_type`` (``COMPOSITE``, ``FULL_OBJECT``) says how
        the object's checksum is made from them; S3's rules on which go
        together apply (`InvalidArgument` otherwise). ``acl`` is the completed
        object's canned ACL (private by default). Returns the upload; its
        ``upload_id`` names it from now on.
        """
        return _multipart.create_upload(
            self._as_store(), bucket, key, content_type=content_type, metadata=metadata, tags=tags,
            headers=headers, checksum_algorithm=checksum_algorithm, checksum_type=checksum_type,
            acl=acl,
        )  # fmt: skip

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: Source,
        *,
        checksums: Mapping[str, Expected | None] | None = None,
    ) -> _multipart.UploadedPart:
        """Store part ``part_number`` (1..10,000) of an upload, replacing any before it.

        ``data`` streams as for `put`, into chunks, with its MD5 (the part's
        ETag), the upload's checksum algorithm and the ``checksums`` stated
        (as for `put`) computed on the way and verified before the part
        commits (`BadDigest`). At most 5 GiB (`EntityTooLarge`). Raises
        `NoSuchUpload` when the upload is not in progress.
        """
        return _multipart.upload_part(
            self._as_store(), bucket, key, upload_id, part_number, data, checksums=checksums
        )

    def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        source_bucket: str,
        source_key: str,
        *,
        version_id: str | None = None,
        offset: int = 0,
        length: int | None = None,
    ) -> _multipart.UploadedPart:
        """Store part ``part_number`` from bytes ``[offset, offset + length)`` of a version
        (all of it by default; `InvalidRange` when the range passes its end).

        Needs ``s3:GetObject`` on the source as well as ``s3:PutObject``.
        """
        return _multipart.upload_part_copy(
            self._as_store(), bucket, key, upload_id, part_number, source_bucket, source_key,
            version_id=version_id, offset=offset, length=length,
        )  # fmt: skip

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[_multipart.PartRef | tuple[int, str]],
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        checksums: Mapping[str, str] | None = None,
        object_size: int | None = None,
    ) -> ObjectInfo:
        """Make the object from ``parts`` (``PartRef`` or ``(number, etag)``), in one commit.

        Parts are named in ascending order (`InvalidPartOrder`), each as
        uploaded, with its ETag and any checksums stated (`InvalidPart`);
        every part but the last is at least ``StoreConfig.part_bytes_min``
        (`EntityTooSmall`); the object at most 5 TiB (`EntityTooLarge`). No
        data is copied: the version's manifest is the parts' manifests, in
        order. Its ETag is S3's ``md5-of-md5s-N``; ``checksums`` holds the
        object checksums the caller expects (by algorithm; `BadDigest` if
        they differ) and ``object_size`` its size. ``if_match`` and
        ``if_none_match`` are the conditions of `put`. One event
        (``ObjectCreated:CompleteMultipartUpload``); the upload ends. On any
        failure nothing changes, and the upload stays in progress.
        """
        return _multipart.complete_upload(
            self._as_store(), bucket, key, upload_id, parts, if_match=if_match, if_none_match=if_none_match,
            checksums=checksums, object_size=object_size,
        )  # fmt: skip

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """End an upload without an object (``s3:AbortMultipartUpload``); its parts'
        chunks are garbage once the GC's grace period passes. `NoSuchUpload` if it
        is not in progress."""
        _multipart.abort_upload(self._as_store(), bucket, key, upload_id)

    def list_parts(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        *,
        part_number_marker: int = 0,
        limit: int = LIST_LIMIT_MAX,
    ) -> _multipart.PartPage:
        """One page of an upload's parts after ``part_number_marker``, ascending
        (``s3:ListMultipartUploadParts``)."""
        return _multipart_reads.list_parts(
            self._as_store(),
            bucket,
            key,
            upload_id,
            part_number_marker=part_number_marker,
            limit=limit,
        )

    def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        key_marker: str | None = None,
        upload_id_marker: str | None = None,
        limit: int = LIST_LIMIT_MAX,
    ) -> _multipart.UploadPage:
        """One page of the uploads in progress (``s3:ListBucketMultipartUploads``): keys
        in UTF-8 byte order, then initiation order; ``delimiter`` rolls keys up into
        common prefixes as in `list`. A page resumes after ``key_marker`` or, with
        ``upload_id_marker`` too, after that upload of ``key_marker``."""
        return _multipart_reads.list_uploads(
            self._as_store(), bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_id_marker=upload_id_marker, limit=limit,
        )  # fmt: skip

    def get_part(
        self, bucket: str, key: str, part_number: int, *, version_id: str | None = None
    ) -> ObjectReader:
        """Stream one part of a version completed from an upload (an object that was
        not is its own part 1); `InvalidPartNumber` for a part it does not have.
        ``reader.offset`` is where the part starts; ``reader.info.parts`` lists them all."""
        return _multipart_reads.read_part(
            self._as_store(), bucket, key, part_number, version_id=version_id
        )
