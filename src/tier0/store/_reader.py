"""The read path: a version's bytes, streamed chunk by chunk.

A range read touches only the chunks that overlap it. Every chunk is checked
as it is read (its blob's name and CRC, or its hash: `decode_chunk`), so
corruption surfaces as ChunkCorrupted, never as wrong bytes. The next chunks
are fetched ahead on the store's thread pool (`READ_AHEAD_BYTES`) while the
caller consumes the current one.

A consumer that can send bytes straight from a file (``os.sendfile``) asks
for file spans: a chunk stored raw in a local chunk file is then checked
(its CRC) and handed over as an open file and an extent, never copied into
the process.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, Future
from typing import Final, TypeAlias

from tier0.errors import InvalidArgument, InvalidRange
from tier0.store._chunking import HEADER_BYTES, chunk_name, decode_split
from tier0.store._chunks import ChunkBackend, RawFile
from tier0.store._manifest import Manifest
from tier0.store._types import ObjectInfo

#: Bytes of chunks fetched ahead of the one a reader consumes (at least one
#: chunk): enough for the store's threads to overlap reading and verifying
#: with the consumer's use of the bytes, few enough that a slow consumer (a
#: client reading its response slowly) holds little.
READ_AHEAD_BYTES: Final = 4 * 1024 * 1024


class FileSpan:
    """``count`` bytes of an object at ``offset`` in the open file ``fd``, checked.

    The consumer sends them (``os.sendfile``) and calls `close`.
    """

    __slots__ = ("_file", "count", "offset")

    def __init__(self, file: RawFile, offset: int, count: int) -> None:
        self._file = file
        self.offset = offset
        self.count = count

    @property
    def fd(self) -> int:
        return self._file.fd

    def close(self) -> None:
        self._file.close()


#: What a reader's futures resolve to: bytes, or (when asked for) file spans.
Block: TypeAlias = bytes | FileSpan


def release(future: Future[Block]) -> None:
    """Close the file span a future resolved to (a done-callback for futures
    nobody will consume: cancelled too late, or abandoned by a failed consumer)."""
    if not future.cancelled() and future.exception() is None:
        block = future.result()
        if isinstance(block, FileSpan):
            block.close()


def load_chunk(backend: ChunkBackend, digest: bytes) -> bytes:
    head, rest = backend.read_split(chunk_name(digest), HEADER_BYTES)
    return decode_split(digest, head, rest, deep=backend.verify_hash_on_read)


def fetch_range(
    backend: ChunkBackend,
    executor: Executor,
    manifest: Manifest,
    offset: int,
    length: int,
    *,
    ahead_bytes: int = READ_AHEAD_BYTES,
    files: bool = False,
) -> Generator[Future[Block], None, None]:
    """The blocks of ``[offset, offset + length)`` as futures, in order, each
    resolving to one chunk's share of the range, read and verified on ``executor``:
    bytes, or with ``files`` a `FileSpan` where the chunk lies raw in a file.

    Before a block's future is yielded, the chunks after it are submitted
    while the bytes in flight stay under ``ahead_bytes``. Closing the iterator
    cancels the loads not yet started and closes the spans nobody took.
    """
    load = _open_span if files else _load_span
    spans = manifest.spans(offset, length)
    pending: collections.deque[tuple[Future[Block], int]] = collections.deque()
    pending_bytes = 0
    try:
        for digest, start, stop in spans:
            # A file checked moments ago opens here, on the consumer's thread: a
            # hand-off to the pool and back would cost more than opening it.
            ready = _checked_span(backend, digest, start, stop) if files else None
            future = ready or executor.submit(load, backend, digest, start, stop)
            pending.append((future, stop - start))
            pending_bytes += stop - start
            while pending_bytes >= ahead_bytes:
                future, size = pending.popleft()
                pending_bytes -= size
                yield future
        while pending:
            yield pending.popleft()[0]
    finally:
        for future, _ in pending:
            if not future.cancel():
                future.add_done_callback(release)


def iter_range(
    backend: ChunkBackend,
    executor: Executor,
    manifest: Manifest,
    offset: int,
    length: int,
) -> Iterator[bytes]:
    """Yield the bytes ``[offset, offset + length)`` of the object ``manifest`` describes."""
    futures = fetch_range(backend, executor, manifest, offset, length)
    try:
        for future in futures:
            block = future.result()
            assert isinstance(block, bytes)
            yield block
    finally:
        futures.close()


def open_reader(
    backend: ChunkBackend,
    executor: Executor,
    info: ObjectInfo,
    inline: bytes | None,
    manifest: Manifest | None,
    offset: int,
    length: int,
) -> ObjectReader:
    """A reader of ``[offset, offset + length)`` of a version stored ``inline`` or
    in the chunks of ``manifest`` (neither: the version is empty)."""

    def reopen(first: int, count: int) -> ObjectReader:
        return open_reader(backend, executor, info, inline, manifest, first, count)

    if manifest is None:
        # Inlined in the metadata (or empty): the bytes are at hand.
        data = b"" if inline is None else inline[offset : offset + length]
        return ObjectReader(
            info,
            lambda files: iter([_resolved(data)] if data else []),
            offset=offset,
            length=length,
            data=data,
            reopen=reopen,
        )

    def blocks(files: bool) -> Iterator[Future[Block]]:
        return fetch_range(backend, executor, manifest, offset, length, files=files)

    return ObjectReader(info, blocks, offset=offset, length=length, reopen=reopen)


def _load_span(backend: ChunkBackend, digest: bytes, start: int, stop: int) -> bytes:
    data = load_chunk(backend, digest)
    if start == 0 and stop == len(data):
        return data
    return data[start:stop]


def _open_span(backend: ChunkBackend, digest: bytes, start: int, stop: int) -> Block:
    raw = backend.open_raw(chunk_name(digest), digest)
    if raw is None:
        return _load_span(backend, digest, start, stop)
    return FileSpan(raw, raw.offset + start, stop - start)


def _checked_span(
    backend: ChunkBackend, digest: bytes, start: int, stop: int
) -> Future[Block] | None:
    """The span of a chunk file checked recently, as a done future; None if there is none."""
    future: Future[Block] = Future()
    try:
        raw = backend.open_raw(chunk_name(digest), digest, checked_only=True)
    except Exception as error:
        future.set_exception(error)
        return future
    if raw is None:
        return None
    future.set_result(FileSpan(raw, raw.offset + start, stop - start))
    return future


def _resolved(data: bytes) -> Future[Block]:
    future: Future[Block] = Future()
    future.set_result(data)
    return future


class ObjectReader:
    """An object's bytes as an iterator of blocks, with the version's description.

    Use it as a context manager, or iterate it to the end; ``read()`` returns
    everything at once (for small objects). An asynchronous consumer takes the
    blocks as futures instead (`futures`), so that no thread of its own waits
    on the store's reads.
    """

    def __init__(
        self,
        info: ObjectInfo,
        blocks: Callable[[bool], Iterator[Future[Block]]],
        *,
        offset: int,
        length: int,
        data: bytes | None = None,
        reopen: Callable[[int, int], ObjectReader] | None = None,
    ) -> None:
        self.info = info
        #: The first byte returned, and how many bytes follow (after clamping a range).
        self.offset = offset
        self.length = length
        #: Whether the bytes are at hand (inlined in the metadata): reading them waits on nothing.
        self.in_memory = data is not None
        self._data = data
        self._blocks = blocks
        self._futures: Iterator[Future[Block]] | None = None
        self._reopen = reopen

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        block = next(self._started(False)).result()
        assert isinstance(block, bytes)
        return block

    def futures(self, *, files: bool = False) -> Iterator[Future[Block]]:
        """The blocks as futures, in order, resolving as the store's threads read
        them; taking the next one releases the previous. With ``files``, a chunk
        stored raw in a local file comes as a `FileSpan` (send it, then close
        it). Iterate either the reader or its futures, not both."""
        return self._started(files)

    def within(self, offset: int, length: int) -> ObjectReader:
        """A reader of ``[offset, offset + length)`` of the same version, before this
        one is read: for a range decided once the version was found (after its
        conditions), read from exactly that version and authorized once."""
        if self._reopen is None or self._futures is not None:
            raise InvalidArgument("within() needs a reader not yet read")
        if offset < 0 or length < 0 or offset + length > self.info.size:
            raise InvalidRange(
                f"bytes {offset}..{offset + length} lie outside {self.info.size} bytes"
            )
        return self._reopen(offset, length)

    def read(self) -> bytes:
        if self._data is not None and self._futures is None:
            self._futures = iter(())  # read: iterating now finds nothing more
            return self._data
        return b"".join(self)

    def close(self) -> None:
        close = getattr(self._futures, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self, files: bool) -> Iterator[Future[Block]]:
        if self._futures is None:
            self._futures = self._blocks(files)
        return self._futures
