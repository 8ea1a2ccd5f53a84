"""Every error tier0 raises, as one tree.

Callers catch a subsystem root, or a builtin where the meaning matches (a
missing key is a ``KeyError``, bad input a ``ValueError``, a denied request a
``PermissionError``), so code written against dicts and files keeps working::

    Tier0Error
    ├── InvalidArgument (ValueError)        bad input, nothing was written
    │   ├── InvalidBucketName
    │   ├── InvalidKey
    │   │   └── KeyTooLong
    │   ├── InvalidMetadata
    │   │   └── MetadataTooLarge
    │   ├── InvalidTag
    │   │   └── TooManyTags                 more tags than an element holds
    │   ├── InvalidRange
    │   │   └── InvalidPartNumber           a part number the object does not have
    │   ├── BadDigest                       the body does not match a stated checksum
    │   ├── InvalidPart                     a completion names a part that is not there
    │   ├── InvalidPartOrder
    │   ├── EntityTooSmall                  a part other than the last is under the minimum
    │   ├── EntityTooLarge                  a part or an object over its size limit
    │   ├── MalformedPolicy                 a bucket policy that breaks the policy language
    │   ├── InvalidCORSConfiguration        CORS rules S3 would refuse
    │   └── UnsupportedACL                  grants that no canned ACL expresses
    ├── StoreError                          the element store
    │   ├── NoSuchBucket (KeyError)
    │   ├── NoSuchKey (KeyError)
    │   │   ├── NoSuchVersion
    │   │   └── DeleteMarkerFound           the version read is a delete marker
    │   ├── NoSuchUpload (KeyError)         a multipart upload that is not (or no longer) in progress
    │   ├── NoSuchBucketConfig (KeyError)   the bucket has no such configuration
    │   │   ├── NoSuchBucketPolicy
    │   │   ├── NoSuchTagSet
    │   │   └── NoSuchCORSConfiguration
    │   ├── BucketAlreadyExists
    │   ├── BucketNotEmpty
    │   ├── PreconditionFailed
    │   │   └── ConditionalRequestConflict  the key changed while a conditional write ran
    │   ├── StorageFull (OSError)           ENOSPC: free space, then retry
    │   ├── StoreFailed (OSError)           fail-stop after an fsync/EIO error
    │   └── ChunkError
    │       ├── ChunkMissing
    │       └── ChunkCorrupted
    ├── MetaError                           the metadata backend
    │   ├── MetaUnavailable
    │   └── SchemaMismatch
    ├── CatalogError                        SQL over the catalog, tables and files (the DataBase)
    │   ├── SQLSyntaxError (ValueError)
    │   ├── SQLNotAllowed (PermissionError)
    │   ├── QueryTimeout (TimeoutError)
    │   ├── NoSuchTable (KeyError)
    │   ├── TableAlreadyExists
    │   ├── TableSchemaError (ValueError)   rows or a statement that do not fit a table's schema
    │   └── TableConflict                   a concurrent write changed the rows a rewrite read
    ├── EngineError                         the event log, functions, triggers, streams
    │   ├── NoSuchFunction (KeyError)       a function (or version) that is not deployed
    │   ├── NoSuchTrigger (KeyError)
    │   ├── NoSuchInvocation (KeyError)
    │   ├── NoSuchStream (KeyError)
    │   └── NoSuchPipeline (KeyError)
    └── IdentityError                       principals, credentials, policy
        ├── AccessDenied (PermissionError)
        ├── NoSuchPrincipal (KeyError)
        ├── PrincipalExists
        └── InvalidCredentials (PermissionError)

Protocols add errors of their own beneath these (``tier0.protocols.s3``'s
``S3AuthError`` family subclasses ``InvalidCredentials``, ``AccessDenied``
and ``InvalidArgument``), each carrying the code its protocol answers with.
"""

from __future__ import annotations

import datetime as dt
import errno

__all__ = [
    "AccessDenied",
    "BadDigest",
    "BucketAlreadyExists",
    "BucketNotEmpty",
    "CatalogError",
    "ChunkCorrupted",
    "ChunkError",
    "ChunkMissing",
    "ConditionalRequestConflict",
    "DeleteMarkerFound",
    "EngineError",
    "EntityTooLarge",
    "EntityTooSmall",
    "IdentityError",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidCORSConfiguration",
    "InvalidCredentials",
    "InvalidKey",
    "InvalidMetadata",
    "InvalidPart",
    "InvalidPartNumber",
    "InvalidPartOrder",
    "InvalidRange",
    "InvalidTag",
    "KeyTooLong",
    "MalformedPolicy",
    "MetaError",
    "MetaUnavailable",
    "MetadataTooLarge",
    "NoSuchBucket",
    "NoSuchBucketConfig",
    "NoSuchBucketPolicy",
    "NoSuchCORSConfiguration",
    "NoSuchFunction",
    "NoSuchInvocation",
    "NoSuchKey",
    "NoSuchPipeline",
    "NoSuchPrincipal",
    "NoSuchStream",
    "NoSuchTable",
    "NoSuchTagSet",
    "NoSuchTrigger",
    "NoSuchUpload",
    "NoSuchVersion",
    "PreconditionFailed",
    "PrincipalExists",
    "QueryTimeout",
    "SQLNotAllowed",
    "SQLSyntaxError",
    "SchemaMismatch",
    "StorageFull",
    "StoreError",
    "StoreFailed",
    "TableAlreadyExists",
    "TableConflict",
    "TableSchemaError",
    "Tier0Error",
    "TooManyTags",
    "UnsupportedACL",
]


class Tier0Error(Exception):
    """Root of every error tier0 raises."""

    def __str__(self) -> str:
        # KeyError's str() adds quotes around the message; ours read as sentences.
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidArgument(Tier0Error, ValueError):
    """The request was malformed; nothing was written."""


class InvalidBucketName(InvalidArgument):
    """A bucket name breaks the S3 naming rules."""


class InvalidKey(InvalidArgument):
    """An object key is empty, too long, contains NUL or is not valid UTF-8."""


class KeyTooLong(InvalidKey):
    """An object key is longer than 1,024 bytes of UTF-8."""


class InvalidMetadata(InvalidArgument):
    """User metadata has a bad name or value; nothing was written."""


class MetadataTooLarge(InvalidMetadata):
    """User metadata is larger than the 2 KiB S3 allows."""


class InvalidTag(InvalidArgument):
    """A tag set has too many tags, or a tag name or value is malformed or too long."""


class TooManyTags(InvalidTag):
    """An object's tag set holds more tags than an object may have (S3 answers this one
    ``BadRequest``, not ``InvalidTag``)."""


class InvalidRange(InvalidArgument):
    """A byte range lies outside the object."""


class BadDigest(InvalidArgument):
    """The body's digest differs from the one the caller stated; nothing was committed.

    ``algorithm`` names the checksum (``md5``, ``crc32``, ...); ``expected`` and
    ``computed`` are its base64 digests, as S3 writes them. Chunks the write
    stored already are left unreferenced, and garbage collection reclaims them.
    Resend the body (it was damaged on the way) or correct the checksum.
    """

    def __init__(self, message: str, *, algorithm: str, expected: str, computed: str) -> None:
        super().__init__(message)
        self.algorithm = algorithm
        self.expected = expected
        self.computed = computed


class InvalidPartNumber(InvalidRange):
    """A read asked for a part number the object does not have."""


class InvalidPart(InvalidArgument):
    """A multipart completion names a part that was not uploaded, or with another
    ETag or checksum than the part has; nothing was committed, the upload stays."""


class InvalidPartOrder(InvalidArgument):
    """A multipart completion lists its parts out of ascending order (or one twice)."""


class EntityTooSmall(InvalidArgument):
    """A part other than the last is smaller than the minimum part size (5 MiB)."""


class EntityTooLarge(InvalidArgument):
    """A part, or the object a completion would make, is larger than the limit."""


class MalformedPolicy(InvalidArgument):
    """A bucket policy is not valid JSON, or breaks the policy language (the message
    names the statement and what is wrong); the bucket keeps its old policy."""


class InvalidCORSConfiguration(InvalidArgument):
    """CORS rules S3 would refuse: an unknown method, two wildcards in an origin,
    too many rules; the bucket keeps its old rules."""


class UnsupportedACL(InvalidArgument):
    """An ACL given as grants that no canned ACL expresses: tier0 keeps canned ACLs
    only (private, public-read, ...); say it with one, or with a bucket policy."""


class StoreError(Tier0Error):
    """Root of element-store errors."""


class NoSuchBucket(StoreError, KeyError):
    """The bucket does not exist."""


class NoSuchKey(StoreError, KeyError):
    """The key has no current version (it never existed, or it was deleted)."""


class NoSuchVersion(NoSuchKey):
    """The key exists, but not with the requested version id."""


class DeleteMarkerFound(NoSuchKey):
    """The version read is a delete marker, which has no content.

    Either the key's current version is one (the key is deleted; ``by_version``
    is False), or the version id asked for names one (``by_version`` is True).
    ``version_id`` and ``modified`` describe the marker, so that a protocol can
    say which marker it found (S3's ``x-amz-delete-marker`` answers).
    """

    def __init__(
        self, message: str, *, version_id: str, modified: dt.datetime, by_version: bool
    ) -> None:
        super().__init__(message)
        self.version_id = version_id
        self.modified = modified
        self.by_version = by_version


class NoSuchUpload(StoreError, KeyError):
    """No multipart upload with this id is in progress for the key: it never
    existed, or it was completed or aborted."""


class NoSuchBucketConfig(StoreError, KeyError):
    """The bucket exists but holds no configuration of the kind asked for."""


class NoSuchBucketPolicy(NoSuchBucketConfig):
    """The bucket has no policy."""


class NoSuchTagSet(NoSuchBucketConfig):
    """The bucket has no tags."""


class NoSuchCORSConfiguration(NoSuchBucketConfig):
    """The bucket has no CORS rules."""


class BucketAlreadyExists(StoreError):
    """A bucket with this name exists already."""


class BucketNotEmpty(StoreError):
    """Only an empty bucket (no versions, no delete markers) can be deleted."""


class PreconditionFailed(StoreError):
    """A conditional operation's condition did not hold; nothing was changed."""


class ConditionalRequestConflict(PreconditionFailed):
    """A conditional write's condition held when it began but not when it was to
    commit: another write to the key committed meanwhile. Nothing was changed;
    retry (the condition is evaluated afresh)."""


class StorageFull(StoreError, OSError):
    """The chunk or metadata storage is out of space (ENOSPC).

    Nothing was half-written; reads keep working. Free space and retry.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.args[1])


class StoreFailed(StoreError, OSError):
    """The store stopped accepting writes after an fsync or I/O error.

    An fsync failure means the kernel may have dropped dirty pages, so retrying
    could acknowledge data that is not on disk. The store is fail-stop: reopen
    it (after checking the disk) to write again.
    """

    def __init__(self, message: str, *, errno_code: int = errno.EIO) -> None:
        super().__init__(errno_code, message)

    def __str__(self) -> str:
        return str(self.args[1])


class ChunkError(StoreError):
    """A chunk referenced by metadata cannot be read back intact."""


class ChunkMissing(ChunkError):
    """A chunk referenced by committed metadata is absent from the chunk backend."""


class ChunkCorrupted(ChunkError):
    """A chunk's content does not hash to its name, or does not decode."""


class MetaError(Tier0Error):
    """Root of metadata-backend errors."""


class MetaUnavailable(MetaError):
    """The metadata backend cannot be reached or opened."""


class SchemaMismatch(MetaError):
    """The metadata database was written by an incompatible tier0 version."""


class CatalogError(Tier0Error):
    """Root of errors from SQL over the catalog."""


class SQLSyntaxError(CatalogError, ValueError):
    """The SQL text does not parse, or names an unknown table or column."""


class SQLNotAllowed(CatalogError, PermissionError):
    """The SQL would write, or reads something outside the catalog."""


class QueryTimeout(CatalogError, TimeoutError):
    """The query ran past its time limit and was cancelled."""


class NoSuchTable(CatalogError, KeyError):
    """The table does not exist."""


class TableAlreadyExists(CatalogError):
    """A table of that name exists already in that bucket."""


class TableSchemaError(CatalogError, ValueError):
    """Rows or a statement that do not fit the table: an unknown column, a type
    that does not convert, a vector of the wrong dimension."""


class TableConflict(CatalogError):
    """A concurrent write removed rows that this update or delete had read; retry it."""


class EngineError(Tier0Error):
    """Root of event-log and engine errors."""


class NoSuchFunction(EngineError, KeyError):
    """No function (or no such version of it) is deployed under this name."""


class NoSuchTrigger(EngineError, KeyError):
    """No trigger has this name."""


class NoSuchInvocation(EngineError, KeyError):
    """No invocation has this id."""


class NoSuchStream(EngineError, KeyError):
    """No stream has this name."""


class NoSuchPipeline(EngineError, KeyError):
    """No pipeline has this name."""


class IdentityError(Tier0Error):
    """Root of identity, credential and policy errors."""


class AccessDenied(IdentityError, PermissionError):
    """The principal may not perform this action on this resource."""


class NoSuchPrincipal(IdentityError, KeyError):
    """No principal has this name or id."""


class PrincipalExists(IdentityError):
    """A principal with this name exists already."""


class InvalidCredentials(IdentityError, PermissionError):
    """The access key is unknown, expired, or the secret does not match."""
