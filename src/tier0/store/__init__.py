"""The element store: chunking, chunk backends, versioned element reads and writes, GC."""

from __future__ import annotations

from tier0.store._blobs import (
    Blob,
    blob_size,
    iter_blob,
    read_blob,
    reference_blob,
    release_blob,
    write_blob,
)
from tier0.store._bucketconf import (
    BUCKET_TAG_COUNT_MAX,
    CORS_METHODS,
    CORS_RULES_MAX,
    AccessControl,
    BucketConfigMethods,
    CORSRule,
    match_cors_rule,
)
from tier0.store._checksums import ALGORITHMS as CHECKSUM_ALGORITHMS
from tier0.store._checksums import Expected, decode_digest
from tier0.store._chunking import (
    ChunkingPolicy,
    chunk_name,
    decode_chunk,
    encode_chunk,
    iter_chunks,
)
from tier0.store._chunks import ChunkBackend, ChunkBackendStatistics
from tier0.store._chunks_local import LocalChunkBackend, OsSeam
from tier0.store._chunks_s3 import (
    S3ChunkBackend,
    S3ChunkBackendStatistics,
    open_chunk_backend,
)
from tier0.store._cpus import set_bulk_cpus, spread
from tier0.store._maintenance import check, collect, statistics
from tier0.store._multipart import (
    PART_BYTES_MAX,
    PART_NUMBER_MAX,
    PartPage,
    PartRef,
    UploadedPart,
    UploadInfo,
    UploadPage,
)
from tier0.store._multipart_integrity import checksum_settings, checksum_type_of, combine_crc
from tier0.store._names import KEY_BYTES_MAX, validate_bucket_name, validate_key
from tier0.store._ops import StaleOwner, emit_event, key_prefixes, owned_bucket_row
from tier0.store._prepared import PreparedWrite
from tier0.store._reader import FileSpan, ObjectReader, release
from tier0.store._store import STANDARD_HEADERS, Kernel, Store, StoreConfig
from tier0.store._types import (
    BucketInfo,
    CheckReport,
    DeleteResult,
    GCReport,
    ListPage,
    ObjectInfo,
    ObjectTags,
    PartInfo,
    StoreStatistics,
    Versioning,
    VersionPage,
)

__all__ = [
    "BUCKET_TAG_COUNT_MAX",
    "CHECKSUM_ALGORITHMS",
    "CORS_METHODS",
    "CORS_RULES_MAX",
    "KEY_BYTES_MAX",
    "PART_BYTES_MAX",
    "PART_NUMBER_MAX",
    "STANDARD_HEADERS",
    "AccessControl",
    "Blob",
    "BucketConfigMethods",
    "BucketInfo",
    "CORSRule",
    "CheckReport",
    "ChunkBackend",
    "ChunkBackendStatistics",
    "ChunkingPolicy",
    "DeleteResult",
    "Expected",
    "FileSpan",
    "GCReport",
    "Kernel",
    "ListPage",
    "LocalChunkBackend",
    "ObjectInfo",
    "ObjectReader",
    "ObjectTags",
    "OsSeam",
    "PartInfo",
    "PartPage",
    "PartRef",
    "PreparedWrite",
    "S3ChunkBackend",
    "S3ChunkBackendStatistics",
    "StaleOwner",
    "Store",
    "StoreConfig",
    "StoreStatistics",
    "UploadInfo",
    "UploadPage",
    "UploadedPart",
    "VersionPage",
    "Versioning",
    "blob_size",
    "check",
    "checksum_settings",
    "checksum_type_of",
    "chunk_name",
    "collect",
    "combine_crc",
    "decode_chunk",
    "decode_digest",
    "emit_event",
    "encode_chunk",
    "iter_blob",
    "iter_chunks",
    "key_prefixes",
    "match_cors_rule",
    "open_chunk_backend",
    "owned_bucket_row",
    "read_blob",
    "reference_blob",
    "release",
    "release_blob",
    "set_bulk_cpus",
    "spread",
    "statistics",
    "validate_bucket_name",
    "validate_key",
    "write_blob",
]
