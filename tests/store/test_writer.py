"""The write path: inline or chunked, bounded, and safe against an over-eager GC."""

from __future__ import annotations

import hashlib
import itertools
import os
import pathlib
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import blake3
import pytest

from tier0.errors import StoreError
from tier0.store import ChunkingPolicy, LocalChunkBackend
from tier0.store._chunking import chunk_name, decode_chunk
from tier0.store._writer import DIGEST_AHEAD_BYTES, ingest


def test_small_stream_is_inline_and_writes_no_chunk(tmp_path: pathlib.Path) -> None:
    backend = LocalChunkBackend(tmp_path / "chunks")
    with ThreadPoolExecutor(2) as executor:
        result = ingest(
            iter([b"ab", b"", b"cd"]), backend, executor,
            inline_bytes_max=4, policy=ChunkingPolicy(), keepalive_s=60,
        )  # fmt: skip
    assert result.inline == b"abcd" and result.chunks == ()
    assert list(backend.names()) == []


def test_write_fails_rather_than_commit_a_chunk_the_gc_took(tmp_path: pathlib.Path) -> None:
    backend = LocalChunkBackend(tmp_path / "chunks")
    ticks = itertools.count()

    def source() -> Iterator[bytes]:
        for index in range(32):
            if index == 24:
                # A GC with a grace period shorter than this write: it takes
                # the chunks already stored.
                for name in list(backend.names()):
                    os.unlink(tmp_path / "chunks" / name[:2] / name)
            yield os.urandom(1024 * 1024)

    with ThreadPoolExecutor(2) as executor, pytest.raises(StoreError, match="grace period"):
        ingest(
            source(), backend, executor, inline_bytes_max=0, policy=ChunkingPolicy(),
            keepalive_s=0.5, clock=lambda: float(next(ticks)),
        )  # fmt: skip


def test_a_large_stream_is_hashed_beside_the_chunking_with_the_same_digests(
    tmp_path: pathlib.Path,
) -> None:
    # Past DIGEST_AHEAD_BYTES the digests move to a thread of the stream's own:
    # they must come out as if computed in line, over every byte, in order.
    blocks = [os.urandom(size) for size in (1, 300_000, 2**20 + 3, 5 * 2**20, 7, 2**20)]
    data = b"".join(blocks)
    assert len(data) > DIGEST_AHEAD_BYTES + 2**20
    backend = LocalChunkBackend(tmp_path / "chunks")
    with ThreadPoolExecutor(2) as executor:
        result = ingest(
            iter(blocks), backend, executor, inline_bytes_max=4096, policy=ChunkingPolicy(),
            md5=True, checksums=("crc32", "sha256"), keepalive_s=60,
        )  # fmt: skip
    assert result.size == len(data)
    assert result.checksum == "blake3:" + blake3.blake3(data).hexdigest()
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.digests == {
        "crc32": zlib.crc32(data).to_bytes(4, "big"),
        "sha256": hashlib.sha256(data).digest(),
    }
    stored = [decode_chunk(c.hash, backend.read(chunk_name(c.hash))) for c in result.chunks]
    assert b"".join(stored) == data
    assert not [t for t in threading.enumerate() if t.name == "tier0-digest"]


def test_a_stream_that_fails_midway_leaves_no_digest_thread(tmp_path: pathlib.Path) -> None:
    def source() -> Iterator[bytes]:
        for _ in range(12):
            yield os.urandom(2**20)
        raise OSError("the client went away")

    backend = LocalChunkBackend(tmp_path / "chunks")
    with ThreadPoolExecutor(2) as executor, pytest.raises(OSError, match="went away"):
        ingest(
            source(), backend, executor, inline_bytes_max=0, policy=ChunkingPolicy(),
            md5=True, keepalive_s=60,
        )  # fmt: skip
    assert not [t for t in threading.enumerate() if t.name == "tier0-digest"]
