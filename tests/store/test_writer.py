"""The write path: inline or chunked, bounded, and safe against an over-eager GC."""

from __future__ import annotations

import itertools
import os
import pathlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tier0.errors import StoreError
from tier0.store import ChunkingPolicy, LocalChunkBackend
from tier0.store._writer import ingest


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
