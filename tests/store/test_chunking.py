"""Content-defined chunking and the chunk codec."""

from __future__ import annotations

import itertools
import os
import random
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import blake3
import pyfastcdc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tier0.errors import ChunkCorrupted, InvalidArgument
from tier0.store import _chunking
from tier0.store._chunking import (
    CHUNK_BYTES_MAX,
    HEADER_BYTES,
    ChunkingPolicy,
    Codec,
    chunk_name,
    decode_chunk,
    decode_split,
    encode_chunk,
    iter_chunks,
)

# Small sizes, so that a few KiB of input already spans many chunks.
SMALL = ChunkingPolicy(size_min_bytes=64, size_avg_bytes=256, size_max_bytes=1024)

# Hypothesis' own binary() is mostly zeros and repeats; mix in bytes that look
# like real content, from a seeded generator.
contents = st.one_of(
    st.binary(max_size=6000),
    st.builds(
        lambda seed, size: random.Random(seed).randbytes(size),
        st.integers(0, 2**32),
        st.integers(0, 20_000),
    ),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` as blocks cut at the given offsets (clamped, sorted, repeats make empty blocks)."""
    offsets = sorted(min(cut, len(data)) for cut in cuts)
    edges = [0, *offsets, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


def reference_chunks(data: bytes, policy: ChunkingPolicy) -> list[bytes]:
    """FastCDC over the whole input at once: what any split must reproduce."""
    chunker = pyfastcdc.FastCDC(
        policy.size_avg_bytes,
        min_size=policy.size_min_bytes,
        max_size=policy.size_max_bytes,
    )
    return [bytes(chunk.data) for chunk in chunker.cut_buf(data)]


# -- iter_chunks ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=contents, cuts=st.lists(st.integers(0, 25_000), max_size=40))
def test_iter_chunks_cuts_same_chunks_whatever_the_block_sizes(
    data: bytes, cuts: list[int]
) -> None:
    chunks = list(iter_chunks(split(data, cuts), SMALL))
    assert b"".join(chunks) == data
    assert chunks == reference_chunks(data, SMALL)
    assert all(len(chunk) <= SMALL.size_max_bytes for chunk in chunks)
    assert all(len(chunk) >= SMALL.size_min_bytes for chunk in chunks[:-1])


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), block_bytes=st.sampled_from([1, 7, 1000, 4096, 100_000]))
def test_iter_chunks_cuts_same_chunks_when_blocks_are_tiny_or_huge(
    seed: int, block_bytes: int
) -> None:
    data = random.Random(seed).randbytes(30_000)
    blocks = [data[start : start + block_bytes] for start in range(0, len(data), block_bytes)]
    assert list(iter_chunks(blocks, SMALL)) == reference_chunks(data, SMALL)


def test_iter_chunks_yields_nothing_when_stream_empty() -> None:
    assert list(iter_chunks([])) == []
    assert list(iter_chunks([b"", b"", b""])) == []


def test_iter_chunks_raises_source_error_when_source_fails() -> None:
    def source() -> Iterator[bytes]:
        yield bytes(5000)
        raise ConnectionResetError("peer went away")

    with pytest.raises(ConnectionResetError, match="peer went away"):
        list(iter_chunks(source(), SMALL))


def test_iter_chunks_accepts_any_bytes_like_blocks() -> None:
    data = random.Random(1).randbytes(50_000)
    blocks: list[bytes | bytearray | memoryview] = [
        bytearray(data[:10_000]),
        memoryview(data)[10_000:30_000],
        data[30_000:],
    ]
    assert list(iter_chunks(blocks, SMALL)) == reference_chunks(data, SMALL)


def test_iter_chunks_cuts_default_sizes_when_stream_long() -> None:
    data = random.Random(2).randbytes(24 * 1024 * 1024)
    policy = ChunkingPolicy()
    chunks = list(
        iter_chunks([data[start : start + 65_536] for start in range(0, len(data), 65_536)])
    )
    assert chunks == reference_chunks(data, policy)
    assert all(
        policy.size_min_bytes <= len(chunk) <= policy.size_max_bytes for chunk in chunks[:-1]
    )
    assert 1 * 2**20 <= len(data) / len(chunks) <= 2 * 2**20


def test_iter_chunks_memory_stays_bounded_when_stream_long() -> None:
    policy = ChunkingPolicy()
    block = os.urandom(1024 * 1024)
    block_count = 384

    def stream() -> Iterator[bytes]:
        for index in range(block_count):
            # A fresh object per block, as a network read would give.
            yield index.to_bytes(8, "little") + block[8:]

    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in iter_chunks(stream(), policy))
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == block_count * len(block)
    # Chunks are views of windows of 2 * size_max_bytes. While the consumer
    # still holds the last chunk of one window, the next is filled from source
    # blocks and joined: three windows at most, plus the carried tail and a
    # block in flight. 384 MiB went through, and the bound does not grow.
    window_bytes = 2 * policy.size_max_bytes
    assert peak_bytes < 3 * window_bytes + policy.size_max_bytes + 2 * len(block)


@pytest.mark.parametrize(
    "sizes",
    [(32, 256, 1024), (64, 128, 1024), (64, 256, 512), (2**21, 2**21, 2**22), (64, 256, 2**25)],
)
def test_chunking_policy_raises_invalid_argument_when_sizes_unsupported(
    sizes: tuple[int, int, int],
) -> None:
    with pytest.raises(InvalidArgument):
        ChunkingPolicy(*sizes)


# -- encode_chunk and decode_chunk ----------------------------------------------

compressible = st.builds(
    lambda unit, count: unit * count, st.binary(min_size=1, max_size=50), st.integers(0, 5000)
)


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(contents, compressible))
def test_decode_returns_original_after_encode(data: bytes) -> None:
    encoded = encode_chunk(data)
    assert encoded.hash == blake3.blake3(data).digest()
    assert encoded.length == len(data)
    assert decode_chunk(encoded.hash, encoded.blob) == data
    if encoded.codec == Codec.ZSTD:
        assert len(encoded.blob) < len(data) + HEADER_BYTES


def test_encode_compresses_when_data_compressible() -> None:
    data = b"".join(b'{"level": "info", "request": %d}\n' % i for i in range(30_000))
    encoded = encode_chunk(data, level=3)
    assert encoded.codec == Codec.ZSTD
    assert len(encoded.blob) < len(data) / 4
    assert decode_chunk(encoded.hash, encoded.blob) == data


def test_encode_stores_raw_when_data_random() -> None:
    data = os.urandom(1024 * 1024)
    encoded = encode_chunk(data)
    assert encoded.codec == Codec.RAW
    assert encoded.blob.endswith(data)
    assert len(encoded.blob) == len(data) + HEADER_BYTES


def test_encode_stores_raw_when_head_sample_incompressible() -> None:
    # Only the 64 KiB head is sampled: a random head means RAW even though
    # the rest would compress.
    data = os.urandom(64 * 1024) + bytes(1024 * 1024)
    assert encode_chunk(data).codec == Codec.RAW
    assert encode_chunk(data[::-1]).codec == Codec.ZSTD


@pytest.mark.parametrize("size", [1000, 4096, 64 * 1024])
def test_a_small_value_is_screened_before_zstd_and_still_compressed_when_it_shrinks(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small buffers are screened under the GIL (zstd releases it on every call):
    # random bytes never reach zstd, text still does, and compresses.
    calls: list[int] = []
    real = _chunking._ThreadCodecs.compressor

    def counting(codecs: Any, level: int) -> Any:
        calls.append(level)
        return real(codecs, level)

    monkeypatch.setattr(_chunking._ThreadCodecs, "compressor", counting)
    assert encode_chunk(os.urandom(size), compact=True).codec == Codec.RAW
    assert calls == []
    text = b"".join(b'{"user": %d, "ok": true}\n' % i for i in range(size))[:size]
    encoded = encode_chunk(text, compact=True)
    assert calls and encoded.codec == Codec.ZSTD
    assert decode_chunk(encoded.hash, encoded.blob) == text


def test_encode_stores_raw_when_data_empty() -> None:
    encoded = encode_chunk(b"")
    assert (encoded.codec, encoded.length) == (Codec.RAW, 0)
    assert decode_chunk(encoded.hash, encoded.blob) == b""


def test_encode_raises_invalid_argument_when_data_longer_than_chunk_max() -> None:
    with pytest.raises(InvalidArgument):
        encode_chunk(bytes(CHUNK_BYTES_MAX + 1))


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(contents, compressible), position=st.integers(0), bit=st.integers(0, 7))
def test_decode_never_returns_wrong_bytes_when_any_bit_flipped(
    data: bytes, position: int, bit: int
) -> None:
    encoded = encode_chunk(data)
    corrupted = bytearray(encoded.blob)
    position %= len(corrupted)
    corrupted[position] ^= 1 << bit
    if encoded.codec == Codec.RAW or position < HEADER_BYTES:
        with pytest.raises(ChunkCorrupted, match=chunk_name(encoded.hash)):
            decode_chunk(encoded.hash, bytes(corrupted))
        return
    # A few bits of a zstd frame do not affect what it decodes to (an unused
    # header flag, some entropy-table padding): such a flip must decode to
    # the original bytes, any other must raise.
    try:
        assert decode_chunk(encoded.hash, bytes(corrupted)) == data
    except ChunkCorrupted as error:
        assert chunk_name(encoded.hash) in str(error)


def test_decode_raises_chunk_corrupted_when_compressed_payload_flipped() -> None:
    data = b"".join(b'{"level": "info", "request": %d}\n' % i for i in range(3000))
    encoded = encode_chunk(data)
    assert encoded.codec == Codec.ZSTD
    middle = HEADER_BYTES + (len(encoded.blob) - HEADER_BYTES) // 2
    detected = 0
    for position in range(middle, middle + 64):
        corrupted = bytearray(encoded.blob)
        corrupted[position] ^= 0xFF
        try:
            decode_chunk(encoded.hash, bytes(corrupted))
        except ChunkCorrupted:
            detected += 1
    assert detected == 64


@settings(deadline=None)
@given(data=contents, cut=st.integers(0))
def test_decode_raises_chunk_corrupted_when_blob_truncated(data: bytes, cut: int) -> None:
    encoded = encode_chunk(data)
    with pytest.raises(ChunkCorrupted, match=chunk_name(encoded.hash)):
        decode_chunk(encoded.hash, encoded.blob[: cut % len(encoded.blob)])


def test_decode_raises_chunk_corrupted_when_blob_is_another_chunk() -> None:
    encoded = encode_chunk(b"some content" * 1000)
    other = blake3.blake3(b"other").digest()
    with pytest.raises(ChunkCorrupted, match=f"chunk {other.hex()}: the blob holds chunk"):
        decode_chunk(other, encoded.blob)


def test_decode_deep_raises_chunk_corrupted_when_content_rewritten_with_its_crc() -> None:
    # What a party that can write the blobs (remote storage) can do: new
    # content, a CRC to match, the old name in the header. Only the hash sees it.
    original, forged = encode_chunk(os.urandom(5000)), encode_chunk(os.urandom(5000))
    blob = original.header[:13] + forged.header[13:17] + original.header[17:] + forged.payload
    assert decode_chunk(original.hash, blob) == bytes(forged.payload)
    with pytest.raises(ChunkCorrupted, match="content hashes to"):
        decode_chunk(original.hash, blob, deep=True)


@settings(max_examples=100, deadline=None)
@given(data=st.one_of(contents, compressible), cut=st.integers(0, HEADER_BYTES + 10))
def test_decode_split_returns_what_decode_chunk_returns(data: bytes, cut: int) -> None:
    encoded = encode_chunk(data)
    blob = encoded.blob
    assert decode_split(encoded.hash, blob[:HEADER_BYTES], blob[HEADER_BYTES:]) == data
    assert decode_split(encoded.hash, blob[:HEADER_BYTES], blob[HEADER_BYTES:], deep=True) == data
    # A head that is not the whole header is refused or rejoined, never misread.
    try:
        assert decode_split(encoded.hash, blob[:cut], blob[cut:]) == data
    except ChunkCorrupted as error:
        assert cut < HEADER_BYTES and chunk_name(encoded.hash) in str(error)


def test_decode_split_returns_raw_payload_without_copying_it() -> None:
    encoded = encode_chunk(os.urandom(100_000))
    rest = encoded.blob[HEADER_BYTES:]
    assert decode_split(encoded.hash, encoded.blob[:HEADER_BYTES], rest) is rest


@pytest.mark.parametrize("data", [b"", os.urandom(70_000), b"compressible " * 9000])
def test_decode_reads_compact_blobs_verifying_their_hash(data: bytes) -> None:
    digest = blake3.blake3(data).digest()
    blob = encode_chunk(data, compact=True).blob
    assert blob.startswith(b"T0C\x01") and len(blob) < len(data) + HEADER_BYTES
    assert decode_chunk(digest, blob) == data
    assert decode_split(digest, blob[:HEADER_BYTES], blob[HEADER_BYTES:]) == data
    if data:
        corrupted = bytearray(blob)
        corrupted[-1] ^= 1
        with pytest.raises(ChunkCorrupted, match=chunk_name(digest)):
            decode_chunk(digest, bytes(corrupted))
    other = blake3.blake3(b"other").digest()
    with pytest.raises(ChunkCorrupted, match="content hashes to"):
        decode_chunk(other, blob)


def test_decode_raises_chunk_corrupted_when_header_declares_huge_length() -> None:
    encoded = encode_chunk(b"x" * 100)
    blob = bytearray(encoded.blob)
    blob[5:13] = (2**40).to_bytes(8, "little")
    with pytest.raises(ChunkCorrupted, match="declares"):
        decode_chunk(encoded.hash, bytes(blob))


def test_chunk_name_is_64_lowercase_hex_digits() -> None:
    digest = bytes(range(32))
    assert chunk_name(digest) == digest.hex()
    assert len(chunk_name(digest)) == 64
    with pytest.raises(InvalidArgument):
        chunk_name(b"short")


def test_encode_and_decode_round_trip_when_threads_share_them() -> None:
    inputs = [random.Random(seed).randbytes(200_000) for seed in range(4)]
    inputs += [bytes([seed]) * 300_000 + b"tail" for seed in range(4)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def round_trip(data: bytes) -> None:
        try:
            barrier.wait()
            for _ in range(20):
                encoded = encode_chunk(data)
                assert decode_chunk(encoded.hash, encoded.blob) == data
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=round_trip, args=(data,)) for data in inputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_iter_chunks_cuts_one_bytes_block_where_it_lies() -> None:
    data = random.Random(7).randbytes(9 * 1024 * 1024)
    chunks = list(iter_chunks([data]))
    assert b"".join(chunks) == data and len(chunks) > 3
    assert all(chunk.readonly for chunk in chunks)
    # Only the uncertain end (less than a largest chunk) is copied, to be cut again.
    in_place = sum(len(chunk) for chunk in chunks if chunk.obj is data)
    assert in_place >= len(data) - ChunkingPolicy().size_max_bytes
    # A mutable block is copied: the caller may change it after the cut.
    mutable = bytearray(data)
    assert all(chunk.obj is not mutable for chunk in iter_chunks([mutable]))
