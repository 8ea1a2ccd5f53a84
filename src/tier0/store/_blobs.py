"""Blobs: bytes stored like an object's, for other kernel subsystems to reference.

A DataBase table's data file is not an object (it has no key, no version,
no S3 face) but its bytes deserve everything objects get: chunked by
content, deduplicated, compressed when that pays, durable before the
metadata that names them commits, verified on every read, and reclaimed by
garbage collection once nothing references them. `write_blob` stores the
bytes and returns a `Blob`; the caller's transaction then takes the
references with `reference_blob` and gives them back with `release_blob`.
`check` counts the references that tables hold (``t0_table_files``), so
what it reports as drift is drift.

Between `write_blob` and the commit that references it, a blob's chunks are
protected the way a put's are: written or touched within the GC grace
period, which the caller must not outlast (see `ingest`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tier0.meta import WriteTx
from tier0.store import _ops
from tier0.store._manifest import Manifest
from tier0.store._reader import iter_range
from tier0.store._store import Kernel
from tier0.store._writer import ingest


@dataclass(frozen=True, slots=True)
class Blob:
    """Durable bytes, not yet referenced: commit ``manifest`` and take its references."""

    size: int
    #: The chunk list (see `Manifest`), to keep in the referencing row.
    manifest: bytes
    #: ``blake3:<hex>`` of the whole.
    checksum: str
    #: (hash, raw length, stored bytes) per chunk, for `reference_blob`.
    chunks: tuple[tuple[bytes, int, int], ...]

    @property
    def stored_bytes(self) -> int:
        return sum(stored for _, _, stored in self.chunks)


def write_blob(kernel: Kernel, data: bytes | Iterable[bytes]) -> Blob:
    """Store ``data`` durably as chunks (none of them inline) and describe them."""
    ingested = ingest(
        data,
        kernel.chunks,
        kernel.executor,
        inline_bytes_max=-1,  # always chunks: a blob has no row of its own to inline into
        policy=kernel.config.chunking,
        keepalive_s=kernel.config.gc_grace_s / 4,
    )
    manifest = ingested.manifest  # None only for no bytes at all: no chunks
    return Blob(
        size=ingested.size,
        manifest=b"" if manifest is None else manifest.encode(),
        checksum=ingested.checksum,
        chunks=tuple((c.hash, c.length, c.stored_bytes) for c in ingested.chunks),
    )


def reference_blob(tx: WriteTx, blob: Blob) -> None:
    """Count one reference to each of ``blob``'s chunks, in the caller's transaction."""
    _ops.add_refs(tx, blob.chunks)


def release_blob(tx: WriteTx, manifest: bytes) -> None:
    """Drop the references `reference_blob` took; unreferenced chunks go to the GC."""
    counts = collections.Counter(Manifest.decode(manifest).hashes)
    tx.executemany(
        "UPDATE t0_chunks SET refcount = refcount - ?, updated_us = ? WHERE hash = ?",
        [(n, tx.now_us, digest) for digest, n in counts.items()],
    )


def read_blob(kernel: Kernel, manifest: bytes, offset: int = 0, length: int | None = None) -> bytes:
    """The bytes ``[offset, offset + length)`` of a blob (to its end if ``length`` is None)."""
    return b"".join(iter_blob(kernel, manifest, offset, length))


def iter_blob(
    kernel: Kernel, manifest: bytes, offset: int = 0, length: int | None = None
) -> Iterator[bytes]:
    """`read_blob` as blocks, fetching only the chunks the range overlaps."""
    decoded = Manifest.decode(manifest)
    size = decoded.size
    offset = min(max(offset, 0), size)
    length = size - offset if length is None else min(max(length, 0), size - offset)
    return iter_range(kernel.chunks, kernel.executor, decoded, offset, length)


def blob_size(manifest: bytes) -> int:
    return Manifest.decode(manifest).size
