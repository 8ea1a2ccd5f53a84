"""The write path: a stream of bytes in, durable chunks (or an inline value) out.

Chunks are cut by content, hashed, deduplicated against what the chunk
backend already holds, compressed when that pays, and written durably by a
small pool of threads while the caller's stream keeps flowing. Memory stays
bounded by ``CHUNKS_IN_FLIGHT_MAX`` chunks whatever the object's size. Nothing
here touches metadata: the caller commits the result, and only after every
chunk it names is durable.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Final

import blake3

from tier0.errors import StoreError
from tier0.store._checksums import ALGORITHMS, Hasher
from tier0.store._chunking import ChunkingPolicy, chunk_name, encode_chunk, iter_chunks
from tier0.store._chunks import ChunkBackend
from tier0.store._cpus import spread
from tier0.store._hashing import blake3_digest, update
from tier0.store._manifest import Manifest

CHUNKS_IN_FLIGHT_MAX: Final = 6
#: A stream's digests move to a thread of its own past this many bytes (see `_Digests`).
DIGEST_AHEAD_BYTES: Final = 4 * 1024 * 1024
DIGEST_BATCH_BYTES: Final = 1024 * 1024
DIGEST_QUEUE_BATCHES: Final = 8


@dataclass(frozen=True, slots=True)
class StoredChunk:
    hash: bytes
    length: int
    stored_bytes: int
    deduplicated: bool


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class Ingested:
    """What was written: an inline value, or chunks ready to be referenced."""

    size: int
    inline: bytes | None
    chunks: tuple[StoredChunk, ...]
    checksum: str
    md5: str | None
    #: The digest of each algorithm ``ingest`` was asked for, by name.
    digests: Mapping[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def manifest(self) -> Manifest | None:
        if self.inline is not None:
            return None
        return Manifest.of([(c.hash, c.length) for c in self.chunks])

    @property
    def stored_bytes(self) -> int:
        if self.inline is not None:
            return len(self.inline)
        return sum(c.stored_bytes for c in self.chunks)


def store_chunk(
    backend: ChunkBackend, data: bytes | memoryview, *, name_durable: bool = True
) -> StoredChunk:
    """Make one chunk durable in ``backend``: dedup by touch, else encode and write.

    With ``name_durable=False`` its name is durable only once the caller
    flushes it (`ChunkBackend.write`); a touched name always needs the flush.
    """
    digest = blake3_digest(data)
    name = chunk_name(digest)
    stored = backend.touch(name)
    if stored is not None:
        return StoredChunk(digest, len(data), stored, deduplicated=True)
    encoded = encode_chunk(data, digest=digest)
    backend.write(name, encoded.parts, name_durable=name_durable)
    return StoredChunk(digest, len(data), encoded.stored_bytes, deduplicated=False)


def ingest(
    source: bytes | Iterable[bytes],
    backend: ChunkBackend,
    executor: Executor,
    *,
    inline_bytes_max: int,
    policy: ChunkingPolicy,
    md5: bool = False,
    checksums: Collection[str] = (),
    keepalive_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Ingested:
    """Consume ``source`` and store it; return what the metadata must reference.

    Objects of at most ``inline_bytes_max`` bytes are returned inline and
    touch no chunk. Every chunk named in the result is durable, and was
    written or touched within ``keepalive_s`` (so garbage collection, which
    spares anything touched within its grace period, cannot take it before
    the caller commits).

    With ``md5`` the result carries the hex MD5 (for an ETag); each algorithm
    in ``checksums`` (names from `ALGORITHMS`, else ``KeyError``) is computed
    over the same bytes, once, and its digest returned in ``digests``. The
    caller compares them before it commits: a mismatch found here would leave
    the chunks stored but unreferenced, which is safe (the GC takes them).
    """
    if isinstance(source, bytes):
        if len(source) <= inline_bytes_max:
            # The common small put, without the streaming machinery.
            small = _Hashers(checksums, md5=md5)
            small.update(source)
            return Ingested(
                len(source),
                source,
                (),
                "blake3:" + blake3_digest(source).hex(),
                small.md5_hex(),
                small.digests(),
            )
        source = [source]
    digests = _Digests(checksums, md5=md5)
    size = 0

    blocks = source

    def counted() -> Iterator[bytes]:
        nonlocal size
        for block in blocks:
            if not block:
                continue
            block = bytes(block)
            size += len(block)
            digests.update(block)
            yield block

    try:
        stream = counted()
        head: list[bytes] = []
        head_bytes = 0
        for block in stream:
            head.append(block)
            head_bytes += len(block)
            if head_bytes > inline_bytes_max:
                break
        else:
            whole, hashers = digests.finish()
            return Ingested(
                size, b"".join(head), (), _checksum(whole), hashers.md5_hex(), hashers.digests()
            )

        def rest() -> Iterator[bytes]:
            yield from head
            yield from stream

        chunks = _store_all(iter_chunks(rest(), policy), backend, executor, keepalive_s, clock)
        whole, hashers = digests.finish()
    finally:
        digests.close()
    # Every name at once: the chunks were written without a directory sync each
    # (a second journal commit per chunk: ~15 % of a 256 MiB put), and touched
    # names may be a concurrent writer's, not yet durable.
    backend.flush([chunk_name(c.hash) for c in chunks])
    return Ingested(
        size, None, tuple(chunks), _checksum(whole), hashers.md5_hex(), hashers.digests()
    )


def _store_all(
    pieces: Iterator[memoryview],
    backend: ChunkBackend,
    executor: Executor,
    keepalive_s: float,
    clock: Callable[[], float],
) -> list[StoredChunk]:
    done: list[StoredChunk] = []
    in_flight: collections.deque[Future[StoredChunk]] = collections.deque()
    refreshed = clock()
    try:
        for piece in pieces:
            if len(in_flight) >= CHUNKS_IN_FLIGHT_MAX:
                done.append(in_flight.popleft().result())
            in_flight.append(executor.submit(store_chunk, backend, piece, name_durable=False))
            if clock() - refreshed > keepalive_s:
                # A slow stream: keep what is already stored fresh for the GC.
                for chunk in done:
                    if backend.touch(chunk_name(chunk.hash)) is None:
                        # Only a GC with a grace period shorter than keepalive_s
                        # allows can do this; committing now would lose data.
                        raise StoreError(
                            f"chunk {chunk_name(chunk.hash)} was collected while this write"
                            " held it: the GC grace period is shorter than the write took"
                        )
                refreshed = clock()
        while in_flight:
            done.append(in_flight.popleft().result())
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    return done


def _checksum(hasher: blake3.blake3) -> str:
    return "blake3:" + hasher.hexdigest()


class _Digests:
    """The whole stream's digests (BLAKE3, and MD5 and checksums when asked for).

    A small stream is hashed as it flows. Past ``DIGEST_AHEAD_BYTES`` the
    blocks go, in order, to a thread of this stream's own, so that hashing
    runs beside the cutting instead of before it: one 256 MiB stream spent
    ~57 ms in BLAKE3 and ~350 ms in MD5 on the caller's thread, ahead of the
    chunker's ~67 ms, and both release the GIL. The queue holds at most
    ``DIGEST_QUEUE_BATCHES`` batches of about ``DIGEST_BATCH_BYTES``. Neither
    a store thread (a hash queued behind chunk writes and their fsyncs would
    stall the stream) nor a thread for small objects (starting one costs more
    than hashing a few MiB).
    """

    def __init__(self, checksums: Collection[str], *, md5: bool) -> None:
        self._whole = blake3.blake3()
        self._hashers = _Hashers(checksums, md5=md5)
        self._seen_bytes = 0
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._queue: queue.Queue[list[bytes] | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def update(self, block: bytes) -> None:
        if self._queue is None:
            update(self._whole, block)
            self._hashers.update(block)
            self._seen_bytes += len(block)
            if self._seen_bytes > DIGEST_AHEAD_BYTES:
                self._queue = queue.Queue(DIGEST_QUEUE_BATCHES)
                self._thread = threading.Thread(target=self._run, name="tier0-digest", daemon=True)
                self._thread.start()
            return
        self._batch.append(block)
        self._batch_bytes += len(block)
        if self._batch_bytes >= DIGEST_BATCH_BYTES:
            self._send()

    def finish(self) -> tuple[blake3.blake3, _Hashers]:
        """The hashers, once every block sent has been through them."""
        if self._queue is not None:
            self._send()
            self._stop()
            if self._error is not None:
                raise self._error
        return self._whole, self._hashers

    def close(self) -> None:
        """Stop the thread (after a failure: what it still holds is dropped)."""
        if self._thread is not None and self._thread.is_alive():
            self._batch.clear()
            self._stop()

    def _send(self) -> None:
        assert self._queue is not None
        if self._batch:
            self._queue.put(self._batch)
            self._batch, self._batch_bytes = [], 0

    def _stop(self) -> None:
        assert self._queue is not None and self._thread is not None
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        assert self._queue is not None
        spread()  # started from a request thread, maybe pinned to its CPU
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that the feeder never blocks on a full queue
            try:
                for block in batch:
                    # Whole calls, which release the GIL: this thread runs beside Python.
                    self._whole.update(block)
                    self._hashers.update(block, keep_gil=False)
            except BaseException as error:  # reported by finish()
                self._error = error


class _Hashers:
    """The digests one write computes besides BLAKE3: the requested checksums,
    plus MD5 for the ETag. MD5 asked for both ways is computed once."""

    __slots__ = ("_checksums", "_hashers", "_md5")

    def __init__(self, checksums: Collection[str], *, md5: bool) -> None:
        self._checksums = tuple(checksums)
        names = {*self._checksums, *(("md5",) if md5 else ())}
        self._hashers: dict[str, Hasher] = {name: ALGORITHMS[name]() for name in sorted(names)}
        self._md5 = md5

    def update(self, block: bytes, *, keep_gil: bool = True) -> None:
        """Feed every hasher; a small block keeps the GIL unless ``keep_gil`` is False
        (`tier0.store._hashing`)."""
        for hasher in self._hashers.values():
            if keep_gil:
                update(hasher, block)
            else:
                hasher.update(block)

    def md5_hex(self) -> str | None:
        return self._hashers["md5"].digest().hex() if self._md5 else None

    def digests(self) -> dict[str, bytes]:
        return {name: self._hashers[name].digest() for name in self._checksums}
