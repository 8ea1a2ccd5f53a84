"""The values the element store hands out. All frozen: they describe a commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Versioning = Literal["Unversioned", "Enabled", "Suspended"]


def from_us(time_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(time_us / 1_000_000, tz=dt.UTC)


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    owner: str
    versioning: Versioning
    created: dt.datetime


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One part of a version completed from a multipart upload, in the object's order."""

    number: int
    size: int
    etag: str
    #: The part's own digests, by algorithm (base64), where the upload stated them.
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One version of an element, as the catalog records it."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    content_type: str
    created: dt.datetime
    modified: dt.datetime
    owner: str
    checksum: str
    stored_bytes: int = 0
    is_latest: bool = True
    is_delete_marker: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    #: Digests the writer stated and the store verified, by algorithm (base64,
    #: as S3's ``x-amz-checksum-*`` shows them).
    checksums: dict[str, str] = field(default_factory=dict)
    #: The parts of a version completed from a multipart upload (empty otherwise).
    parts: tuple[PartInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing: objects and common prefixes, in key order."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    #: Pass as ``start_after`` to get the next page (None when not truncated).
    next_start_after: str | None


@dataclass(frozen=True, slots=True)
class VersionPage:
    """One page of a version listing: key ascending, newest version first."""

    versions: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_key_marker: str | None
    next_version_marker: str | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What a delete did: removed a version, created a delete marker, or nothing."""

    deleted: bool
    version_id: str | None
    delete_marker: bool


@dataclass(frozen=True, slots=True)
class ObjectTags:
    """A version's tags, and which version they are (the current one, unless named)."""

    version_id: str
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Sizes and ratios of what the store holds."""

    buckets: int
    objects: int
    versions: int
    logical_bytes: int
    inline_bytes: int
    chunk_count: int
    chunk_logical_bytes: int
    chunk_stored_bytes: int
    referenced_chunk_bytes: int
    unreferenced_chunks: int

    @property
    def stored_bytes(self) -> int:
        return self.inline_bytes + self.chunk_stored_bytes

    @property
    def dedup_ratio(self) -> float:
        """Chunk bytes referenced by versions per unique chunk byte (≥ 1)."""
        return (
            self.referenced_chunk_bytes / self.chunk_logical_bytes
            if self.chunk_logical_bytes
            else 1.0
        )

    @property
    def compression_ratio(self) -> float:
        """Unique chunk bytes per stored chunk byte (≥ 1 when data compresses)."""
        return (
            self.chunk_logical_bytes / self.chunk_stored_bytes if self.chunk_stored_bytes else 1.0
        )


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``check()`` found: empty ``problems`` means consistent."""

    problems: list[str]
    versions_checked: int
    chunks_checked: int
    orphans: int

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class GCReport:
    """What a garbage collection reclaimed."""

    chunks_deleted: int
    bytes_freed: int
    chunks_kept_busy: int
    orphans_deleted: int
    #: Multipart uploads older than ``StoreConfig.upload_expiry_s``, aborted.
    uploads_expired: int = 0
