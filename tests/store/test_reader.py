"""The read path: blocks as futures, read ahead within a byte budget, cancelled on close."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import tier0
from tier0.errors import ChunkCorrupted
from tier0.store._chunking import HEADER_BYTES, chunk_name, encode_chunk
from tier0.store._chunks_local import LocalChunkBackend
from tier0.store._manifest import Manifest
from tier0.store._reader import Block, FileSpan, fetch_range, iter_range, release

CHUNK_BYTES = 100_000


class _Recording(Executor):
    """Runs nothing until told: the futures it hands out stay pending."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.submitted.append((future, fn, args))
        return future

    def run_all(self) -> None:
        for future, fn, args in self.submitted:
            if future.set_running_or_notify_cancel():
                future.set_result(fn(*args))


def _bytes(future: Future[Block]) -> bytes:
    block = future.result()
    assert isinstance(block, bytes)
    return block


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[LocalChunkBackend, Manifest, bytes]]:
    backend = LocalChunkBackend(tmp_path / "chunks")
    data = os.urandom(10 * CHUNK_BYTES)
    entries = []
    for start in range(0, len(data), CHUNK_BYTES):
        encoded = encode_chunk(data[start : start + CHUNK_BYTES])
        backend.write(chunk_name(encoded.hash), encoded.parts)
        entries.append((encoded.hash, encoded.length))
    yield backend, Manifest.of(entries), data
    backend.close()


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 10 * CHUNK_BYTES), (1, 1), (CHUNK_BYTES - 1, 2), (250_000, 333_333), (999_999, 1)],
)
def test_fetch_range_resolves_to_the_range_in_order(
    stored: tuple[LocalChunkBackend, Manifest, bytes], offset: int, length: int
) -> None:
    backend, manifest, data = stored
    with ThreadPoolExecutor(4) as executor:
        futures = fetch_range(backend, executor, manifest, offset, length, ahead_bytes=250_000)
        assert b"".join(_bytes(future) for future in futures) == data[offset : offset + length]
        assert (
            b"".join(iter_range(backend, executor, manifest, offset, length))
            == (data[offset : offset + length])
        )


def test_fetch_range_reads_ahead_within_its_byte_budget(
    stored: tuple[LocalChunkBackend, Manifest, bytes],
) -> None:
    backend, manifest, _ = stored
    executor = _Recording()
    futures = fetch_range(backend, executor, manifest, 0, 10 * CHUNK_BYTES, ahead_bytes=250_000)
    taken = [next(futures)]
    # The one taken and the chunks after it until 250,000 bytes are pending.
    assert len(executor.submitted) == 3
    assert taken[0] is executor.submitted[0][0]
    taken.append(next(futures))
    assert len(executor.submitted) == 4
    taken.extend(futures)
    assert len(executor.submitted) == 10
    assert taken == [future for future, _, _ in executor.submitted]


def test_fetch_range_takes_at_least_one_chunk_ahead_when_budget_is_small(
    stored: tuple[LocalChunkBackend, Manifest, bytes],
) -> None:
    backend, manifest, _ = stored
    executor = _Recording()
    futures = fetch_range(backend, executor, manifest, 0, 10 * CHUNK_BYTES, ahead_bytes=1)
    next(futures)
    assert len(executor.submitted) == 1
    futures.close()


def test_closing_fetch_range_cancels_the_reads_not_started(
    stored: tuple[LocalChunkBackend, Manifest, bytes],
) -> None:
    backend, manifest, _ = stored
    executor = _Recording()
    futures = fetch_range(backend, executor, manifest, 0, 10 * CHUNK_BYTES, ahead_bytes=350_000)
    first = next(futures)
    futures.close()
    pending = [future for future, _, _ in executor.submitted if future is not first]
    assert len(pending) == 3
    assert all(future.cancelled() for future in pending)
    executor.run_all()  # a cancelled read never runs
    assert first.result() is not None


def test_fetch_range_resolves_to_chunk_corrupted_when_a_chunk_is_damaged(
    stored: tuple[LocalChunkBackend, Manifest, bytes], tmp_path: Path
) -> None:
    backend, manifest, _ = stored
    name = chunk_name(manifest.hashes[3])
    path = tmp_path / "chunks" / name[:2] / name
    blob = bytearray(path.read_bytes())
    blob[HEADER_BYTES + 500] ^= 0x10
    path.write_bytes(bytes(blob))
    with ThreadPoolExecutor(2) as executor:
        futures = list(fetch_range(backend, executor, manifest, 0, 10 * CHUNK_BYTES))
        assert all(future.exception() is None for future in futures[:3])
        with pytest.raises(ChunkCorrupted, match=f"chunk {name}: the payload fails its CRC-32C"):
            futures[3].result()


def test_object_reader_futures_give_what_iterating_it_gives(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    with tier0.open(tmp_path / "t0") as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "large", data)
        t0.put("bkt", "small", b"inline")
        with t0.get("bkt", "large", offset=7) as reader:
            assert b"".join(_bytes(future) for future in reader.futures()) == data[7:]
        with t0.get("bkt", "small") as reader:
            assert [future.result() for future in reader.futures()] == [b"inline"]
        with t0.get("bkt", "large", offset=len(data)) as reader:
            assert list(reader.futures()) == []
        assert b"".join(t0.get("bkt", "large")) == data


def test_an_inlined_version_is_read_from_memory_once(tmp_path: Path) -> None:
    with tier0.open(tmp_path / "t0") as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "small", b"0123456789")
        t0.put("bkt", "empty", b"")
        with t0.get("bkt", "small", offset=2, length=5) as reader:
            assert reader.in_memory
            assert reader.read() == b"23456"
            # Read whole already: nothing is left to iterate or read.
            assert list(reader) == [] and reader.read() == b""
        with t0.get("bkt", "small", offset=3) as reader:
            assert list(reader) == [b"3456789"]
        with t0.get("bkt", "empty") as reader:
            assert reader.in_memory and reader.read() == b""


def test_fetch_range_with_files_gives_spans_of_raw_chunks_and_bytes_of_compressed(
    tmp_path: Path,
) -> None:
    backend = LocalChunkBackend(tmp_path / "chunks")
    pieces = [os.urandom(CHUNK_BYTES), b"compressible " * 8000, os.urandom(CHUNK_BYTES)]
    entries = []
    for piece in pieces:
        encoded = encode_chunk(piece)
        backend.write(chunk_name(encoded.hash), encoded.parts)
        entries.append((encoded.hash, encoded.length))
    manifest, data = Manifest.of(entries), b"".join(pieces)
    offset, length = 10, len(data) - 20
    kinds, received = [], b""
    with ThreadPoolExecutor(2) as executor:
        for future in fetch_range(backend, executor, manifest, offset, length, files=True):
            block = future.result()
            kinds.append(type(block).__name__)
            if isinstance(block, FileSpan):
                received += os.pread(block.fd, block.count, block.offset)
                block.close()
            else:
                received += block
    backend.close()
    assert kinds == ["FileSpan", "bytes", "FileSpan"]
    assert received == data[offset : offset + length]


def test_closing_fetch_range_with_files_closes_the_spans_nobody_took(
    stored: tuple[LocalChunkBackend, Manifest, bytes],
) -> None:
    backend, manifest, _ = stored
    open_before = len(os.listdir("/proc/self/fd"))
    with ThreadPoolExecutor(2) as executor:
        futures = fetch_range(backend, executor, manifest, 0, 10 * CHUNK_BYTES, files=True)
        first = next(futures)
        first.result()  # the others are read ahead meanwhile
        futures.close()
        release(first)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_fetch_range_with_files_opens_files_checked_recently_without_the_pool(
    stored: tuple[LocalChunkBackend, Manifest, bytes],
) -> None:
    backend, manifest, data = stored
    with ThreadPoolExecutor(2) as executor:  # the first read checks every file
        for future in fetch_range(backend, executor, manifest, 0, len(data), files=True):
            block = future.result()
            assert isinstance(block, FileSpan)
            block.close()
    executor_unused = _Recording()
    received = b""
    for future in fetch_range(backend, executor_unused, manifest, 5, len(data) - 10, files=True):
        assert future.done()
        block = future.result()
        assert isinstance(block, FileSpan)
        received += os.pread(block.fd, block.count, block.offset)
        block.close()
    assert executor_unused.submitted == []
    assert received == data[5:-5]
