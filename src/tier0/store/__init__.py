"""The element store: chunking, chunk backends, versioned element reads and writes, GC."""

from __future__ import annotations

from tier0.store._checksums import ALGORITHMS as CHECKSUM_ALGORITHMS
from tier0.store._checksums import Expected, decode_digest
from tier0.store._chunking import (
    ChunkingPolicy,
    chunk_name,
    decode_chunk,
    encode_chunk,
    iter_chunks,
)
from tier0.store._chunks import ChunkBackend, ChunkBackendStatistics, LocalChunkBackend, OsSeam
from tier0.store._maintenance import check, collect, statistics
from tier0.store._names import KEY_BYTES_MAX, validate_bucket_name, validate_key
from tier0.store._reader import ObjectReader
from tier0.store._store import Kernel, Store, StoreConfig
from tier0.store._types import (
    BucketInfo,
    CheckReport,
    DeleteResult,
    GCReport,
    ListPage,
    ObjectInfo,
    StoreStatistics,
    Versioning,
    VersionPage,
)

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "KEY_BYTES_MAX",
    "BucketInfo",
    "CheckReport",
    "ChunkBackend",
    "ChunkBackendStatistics",
    "ChunkingPolicy",
    "DeleteResult",
    "Expected",
    "GCReport",
    "Kernel",
    "ListPage",
    "LocalChunkBackend",
    "ObjectInfo",
    "ObjectReader",
    "OsSeam",
    "Store",
    "StoreConfig",
    "StoreStatistics",
    "VersionPage",
    "Versioning",
    "check",
    "chunk_name",
    "collect",
    "decode_chunk",
    "decode_digest",
    "encode_chunk",
    "iter_chunks",
    "statistics",
    "validate_bucket_name",
    "validate_key",
]
