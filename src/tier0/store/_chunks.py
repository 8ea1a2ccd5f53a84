"""The chunk backend seam: what every place chunks are kept must do.

A chunk backend stores immutable blobs under content names (64 lowercase hex
digits, the chunk's BLAKE3). It knows nothing about codecs or metadata; the
store above it decides what to write, what to dedup and what to collect. The
conformance kit in tests/store/chunk_backend_kit.py holds every backend to the
contract written in ChunkBackend's docstrings. The backends: a local directory
(`tier0.store._chunks_local`) and an S3-compatible store (`_chunks_s3`).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self, TypeAlias

__all__ = [
    "Blob",
    "ChunkBackend",
    "ChunkBackendStatistics",
    "RawFile",
]

#: What a chunk backend stores: bytes, or buffers to write one after another.
Blob: TypeAlias = bytes | memoryview | Sequence[bytes | memoryview]


@dataclass(frozen=True)
class ChunkBackendStatistics:
    """A backend's state and its counters since it was opened.

    ``chunk_count`` and ``stored_bytes`` describe what is stored now (written by
    any process); the other counters count this instance's calls: completed
    writes, their bytes, touches that found the chunk (``dedup_hits``) and
    blobs deleted. ``failed`` is True once the backend is fail-stop.
    """

    chunk_count: int
    stored_bytes: int
    writes: int
    dedup_hits: int
    bytes_written: int
    deletes: int
    failed: bool


class RawFile:
    """An open chunk file and where the chunk's bytes lie in it (`ChunkBackend.open_raw`)."""

    __slots__ = ("fd", "length", "offset")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd = fd
        self.offset = offset
        self.length = length

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class ChunkBackend(abc.ABC):
    """Stores immutable, content-named blobs.

    Names are 64 lowercase hex digits, the BLAKE3 of the chunk: never user
    input. Methods raise InvalidArgument for any other name. All methods may be
    called from several threads, and several processes may share one store.

    Writers dedup with ``touch`` and collectors delete with ``delete_if_idle``;
    the two are safe against each other as long as ``idle_s_min`` exceeds the
    longest time a writer takes from its ``touch``/``write`` to committing the
    metadata that references the chunk (after which metadata protects it).

    After an fsync or I/O error a backend is fail-stop: ``write``, ``touch``,
    ``flush`` and ``delete_if_idle`` raise StoreFailed, reads keep working.
    ENOSPC raises StorageFull and leaves the backend usable.

    ``verify_hash_on_read`` says whether a read must check the content's
    BLAKE3 against the name, not only the blob's CRC-32C: true for a backend
    whose blobs another party can change (remote storage), which a checksum
    does not guard against.
    """

    verify_hash_on_read: ClassVar[bool] = False

    @abc.abstractmethod
    def write(self, name: str, blob: Blob, *, name_durable: bool = True) -> None:
        """Store ``blob`` (bytes, or a sequence of buffers to concatenate) under ``name``,
        durably and atomically.

        When this returns, the blob survives a crash under ``name``; a crash
        before leaves either nothing or the whole blob there, never part of it.
        Writing a name that exists is allowed (same content by construction)
        and leaves an intact blob. Raises StorageFull or StoreFailed.

        ``name_durable=False`` lets the name become durable only at a later
        ``flush`` of it (the content is durable either way): a writer of many
        blobs then syncs each directory once, not once per blob.
        """

    @abc.abstractmethod
    def touch(self, name: str) -> int | None:
        """Mark ``name`` as just used and return its stored size, or None if absent.

        A size protects the blob from ``delete_if_idle`` for ``idle_s_min``
        seconds, so a writer may reference it instead of writing it (and
        account its stored bytes). On None the writer writes the chunk itself.
        Call ``flush`` before committing metadata that relies on touched names.
        Raises StoreFailed.
        """

    @abc.abstractmethod
    def flush(self, names: Iterable[str]) -> None:
        """Make the presence of these (touched or written, existing) names durable.

        A concurrent writer, or this one with ``name_durable=False``, may have
        renamed a blob in without having made its directory entry durable yet.
        Raises StoreFailed.
        """

    @abc.abstractmethod
    def read(self, name: str) -> bytes:
        """Return the whole blob stored under ``name``.

        Raises ChunkMissing if absent, StoreFailed on an I/O error.
        """

    def open_raw(self, name: str, hash: bytes, *, checked_only: bool = False) -> RawFile | None:
        """Chunk ``hash``'s bytes as they lie in the file of its blob ``name``,
        their CRC-32C checked, for a reader to send them without copying them
        (``os.sendfile``); the caller closes it. None where the blob is
        compressed, or the backend keeps no files (this default).

        ``checked_only`` answers only for a file whose payload was checked
        recently (None otherwise, at no cost): then the call does no more than
        open it and read its header, cheap enough for an event loop.

        Raises as `read`, and ChunkCorrupted for a blob that fails its checks.
        """
        return None

    def read_split(self, name: str, head_bytes: int) -> tuple[bytes, bytes]:
        """The blob under ``name`` as its first ``head_bytes`` (all of it, if
        shorter) and the rest: a chunk's header and payload, the payload in a
        buffer of its own (`decode_split` returns a RAW payload as it is).

        Raises as `read`. This default splits `read`'s blob (a copy); a
        backend that can read the rest straight into its own buffer does.
        """
        blob = self.read(name)
        return blob[:head_bytes], blob[head_bytes:]

    @abc.abstractmethod
    def delete_if_idle(self, name: str, idle_s_min: float) -> bool:
        """Delete ``name`` unless it was written or touched in the last ``idle_s_min`` s.

        Race-free against ``touch`` and ``write`` in other threads and
        processes: a blob that a ``touch`` returned a size for, or that a
        ``write`` stored, within ``idle_s_min`` seconds is never deleted.
        Returns True if this call deleted the blob (durably), False if it was
        kept or absent. Raises StoreFailed.
        """

    @abc.abstractmethod
    def names(self) -> Iterator[str]:
        """Yield every stored name once, in no particular order.

        Tolerates concurrent writes and deletes: a name written or deleted
        during the walk may or may not appear.
        """

    @abc.abstractmethod
    def age_s(self, name: str) -> float | None:
        """Seconds since ``name`` was last written or touched; None if absent."""

    @abc.abstractmethod
    def statistics(self) -> ChunkBackendStatistics:
        """The backend's state and counters."""

    @abc.abstractmethod
    def check(self) -> list[str]:
        """Readable descriptions of the backend's own consistency problems; [] if clean.

        Checks structure (stray files, interrupted operations, fail-stop
        state), not content: whether blobs decode is the store's fsck.
        """

    def close(self) -> None:  # noqa: B027 -- a backend with nothing to release keeps this
        """Release what the backend holds. Calling it twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
