"""The read path: a version's bytes, streamed chunk by chunk.

A range read touches only the chunks that overlap it. Every chunk is checked
against its hash as it is decoded, so corruption surfaces as ChunkCorrupted,
never as wrong bytes. The next chunks are fetched ahead on the store's thread
pool while the caller consumes the current one.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from typing import Final

from tier0.store._chunking import chunk_name, decode_chunk
from tier0.store._chunks import ChunkBackend
from tier0.store._manifest import Manifest
from tier0.store._types import ObjectInfo

READ_AHEAD_CHUNKS: Final = 2


def load_chunk(backend: ChunkBackend, digest: bytes) -> bytes:
    return decode_chunk(digest, backend.read(chunk_name(digest)))


def iter_range(
    backend: ChunkBackend,
    executor: Executor,
    manifest: Manifest,
    offset: int,
    length: int,
) -> Iterator[bytes]:
    """Yield the bytes ``[offset, offset + length)`` of the object ``manifest`` describes."""
    spans = manifest.spans(offset, length)
    pending: collections.deque[tuple[Future[bytes], int, int]] = collections.deque()
    try:
        for digest, start, stop in spans:
            pending.append((executor.submit(load_chunk, backend, digest), start, stop))
            if len(pending) > READ_AHEAD_CHUNKS:
                future, a, b = pending.popleft()
                yield _slice(future.result(), a, b)
        while pending:
            future, a, b = pending.popleft()
            yield _slice(future.result(), a, b)
    finally:
        for future, _, _ in pending:
            future.cancel()


def _slice(data: bytes, start: int, stop: int) -> bytes:
    if start == 0 and stop == len(data):
        return data
    return data[start:stop]


class ObjectReader:
    """An object's bytes as an iterator of blocks, with the version's description.

    Use it as a context manager, or iterate it to the end; ``read()`` returns
    everything at once (for small objects).
    """

    def __init__(
        self, info: ObjectInfo, blocks: Iterator[bytes], *, offset: int, length: int
    ) -> None:
        self.info = info
        #: The first byte returned, and how many bytes follow (after clamping a range).
        self.offset = offset
        self.length = length
        self._blocks = blocks

    def __iter__(self) -> Iterator[bytes]:
        return self._blocks

    def __next__(self) -> bytes:
        return next(self._blocks)

    def read(self) -> bytes:
        return b"".join(self._blocks)

    def close(self) -> None:
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
