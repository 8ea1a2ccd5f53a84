"""Content-defined chunking and the chunk codec.

Bytes enter the store as a stream of blocks of whatever sizes the caller has
(HTTP body pieces, file reads). ``iter_chunks`` cuts them into chunks whose
boundaries depend only on the content (FastCDC), so an insertion early in a
file moves only the chunks around it and the rest deduplicate.
``encode_chunk`` names a chunk by the BLAKE3 hash of its raw bytes and turns it
into a self-describing blob (zstd unless incompressible, the chunk's name and
a CRC-32C of the payload in its header); ``decode_chunk`` reverses that and
refuses a blob that is not that chunk, intact (checking the CRC on every
read, and the BLAKE3 of the content when asked: a remote store's blobs)::

    for chunk in iter_chunks(blocks):
        encoded = encode_chunk(chunk)
        backend.write(chunk_name(encoded.hash), encoded.blob)
    ...
    raw = decode_chunk(encoded.hash, backend.read(chunk_name(encoded.hash)))
"""

from __future__ import annotations

import enum
import struct
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

import pyfastcdc
import zstandard
from awscrt import checksums as crt_checksums

from tier0.errors import ChunkCorrupted, InvalidArgument
from tier0.store._hashing import blake3_digest

__all__ = [
    "CHUNK_BYTES_MAX",
    "HASH_BYTES",
    "HEADER_BYTES",
    "ChunkingPolicy",
    "Codec",
    "EncodedChunk",
    "chunk_name",
    "crc32c",
    "decode_chunk",
    "decode_split",
    "encode_chunk",
    "iter_chunks",
    "raw_payload",
]

HASH_BYTES = 32
"""Length of a chunk hash: BLAKE3-256."""

CHUNK_BYTES_MAX = 16 * 1024 * 1024
"""The largest raw chunk the codec accepts: FastCDC's own ceiling on max_size.

It also bounds what ``decode_chunk`` allocates for a blob whose header lies.
"""

# pyfastcdc's accepted ranges (pyfastcdc/cy/fastcdc.pyx); checked here so a bad
# policy fails when it is built, with our error type, not at the first cut.
_SIZE_MIN_RANGE = (64, 1024 * 1024)
_SIZE_AVG_RANGE = (256, 4 * 1024 * 1024)
_SIZE_MAX_RANGE = (1024, CHUNK_BYTES_MAX)


@dataclass(frozen=True)
class ChunkingPolicy:
    """Chunk size bounds for FastCDC.

    The defaults (256 KiB / 1 MiB / 4 MiB) deduplicated 55-63 % of a copy with
    small insertions, where 4 MiB chunks deduplicated 3 % (notes/measurements.md).
    FastCDC skips the first ``size_min_bytes`` before looking for a cut, so
    chunks average a little above ``size_avg_bytes`` (about 1.16 MiB on random
    data with the defaults). Every chunk but the last of a stream is at least
    ``size_min_bytes`` long; none is longer than ``size_max_bytes``.

    Raises InvalidArgument for sizes FastCDC does not support.
    """

    size_min_bytes: int = 256 * 1024
    size_avg_bytes: int = 1024 * 1024
    size_max_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        for field, value, (low, high) in (
            ("size_min_bytes", self.size_min_bytes, _SIZE_MIN_RANGE),
            ("size_avg_bytes", self.size_avg_bytes, _SIZE_AVG_RANGE),
            ("size_max_bytes", self.size_max_bytes, _SIZE_MAX_RANGE),
        ):
            if not low <= value <= high:
                raise InvalidArgument(f"ChunkingPolicy.{field}={value} is outside [{low}, {high}]")
        if not self.size_min_bytes <= self.size_avg_bytes <= self.size_max_bytes:
            raise InvalidArgument(
                "ChunkingPolicy needs size_min_bytes <= size_avg_bytes <= size_max_bytes, got "
                f"{self.size_min_bytes}, {self.size_avg_bytes}, {self.size_max_bytes}"
            )


def iter_chunks(
    source: Iterable[bytes | bytearray | memoryview], policy: ChunkingPolicy = ChunkingPolicy()
) -> Iterator[memoryview]:
    """Cut a stream of byte blocks into content-defined chunks (FastCDC).

    ``source`` yields bytes-like blocks of any sizes, empty ones included.
    The chunks concatenate to exactly the input, and the cut points depend only
    on the bytes, never on how the source split them: the same content yields
    the same chunks, hence the same chunk hashes. An empty stream yields
    nothing. Each chunk is a read-only view into an immutable window of about
    ``2 * size_max_bytes``; memory stays bounded by the windows that chunks
    still in use refer to, however long the stream.

    >>> [len(c) for c in iter_chunks([b"ab", b"", b"c"])]
    [3]
    """
    chunker = pyfastcdc.FastCDC(
        policy.size_avg_bytes,
        min_size=policy.size_min_bytes,
        max_size=policy.size_max_bytes,
        normalized_chunking=1,
        seed=0,
    )
    window_bytes = 2 * policy.size_max_bytes
    blocks = iter(source)
    tail = b""
    exhausted = False
    while not exhausted or tail:
        # Each byte is copied at most once, into the window; chunks are views of it.
        parts: list[bytes | bytearray | memoryview] = [tail]
        size = len(tail)
        while size < window_bytes:
            block = next(blocks, None)
            if block is None:
                exhausted = True
                break
            parts.append(block)
            size += len(block)
        if len(parts) == 2 and not tail and isinstance(parts[1], bytes):
            # One immutable block and nothing before it (a whole object given
            # as bytes): cut it where it lies. Copying 256 MiB into a fresh
            # buffer cost more than cutting it (page faults: ~1.7 GB/s).
            window = memoryview(parts[1])
        else:
            window = memoryview(b"".join(parts)).toreadonly()
        del parts, block  # nothing but chunks in use may keep buffers alive
        consumed = yield from _cut_window(chunker, window, final=exhausted)
        tail = bytes(window[consumed:])
        del window


def _cut_window(
    chunker: pyfastcdc.FastCDC, window: memoryview, *, final: bool
) -> Generator[memoryview, None, int]:
    """Yield the chunks of ``window`` whose cut is certain; return how many bytes they cover.

    FastCDC ends a chunk where the gear hash of the bytes before matches, or
    at ``size_max_bytes``: either way the cut depends on nothing after it. So
    every chunk that ends inside the window is certain, and only the one that
    ran into the window's end (unless it is the true end of the input) is
    carried into the next window, to be cut again with more in view. (Carrying
    every chunk that started within ``size_max_bytes`` of the end instead
    copied and scanned about half of each window twice.) A separate function
    so that its locals, which reference the window, die with it. The
    hypothesis test in tests/store/test_chunking.py holds the cut points to
    cutting the whole input at once.
    """
    consumed = 0
    end = len(window)
    for chunk in chunker.cut_buf(window):
        cut = chunk.offset + chunk.length
        if cut == end and not final:
            break
        consumed = cut
        yield window[chunk.offset : cut]
    return consumed


class Codec(enum.IntEnum):
    """How a blob's payload encodes the raw chunk."""

    RAW = 0
    ZSTD = 1


# A blob is a header and a payload; the magic's last byte is the format version.
# Version 2 (written): magic, codec, raw length (little-endian u64), the
# payload's CRC-32C (u32), and the chunk's BLAKE3 hash, so a blob names the
# chunk it holds. Version 1 (compact: values inlined beside their hash): magic,
# codec, raw length.
_HEADER = struct.Struct("<4sBQI32s")
_MAGIC = b"T0C\x02"
_HEADER_V1 = struct.Struct("<4sBQ")
_MAGIC_V1 = b"T0C\x01"
HEADER_BYTES: Final = _HEADER.size
"""The bytes of a blob's header (version 2): what `decode_split` wants apart."""

# Buffers up to _SCREEN_BYTES_MAX are screened before zstd sees them (`_looks_random`).
_SCREEN_BYTES_MAX: Final = 64 * 1024
_SCREEN_SAMPLE_BYTES: Final = 512
_SCREEN_DISTINCT_MIN: Final = 192

_SAMPLE_BYTES = 64 * 1024
# Compress the whole chunk only if the head sample shrinks at least this much:
# the sample predicts the chunk's ratio well and costs ~9 us, while compressing
# an incompressible 4 MiB chunk costs ~2.3 ms, and a RAW chunk needs no
# decompression on every later read (notes/measurements.md).
_SAMPLE_RATIO_MIN = 1.1


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class EncodedChunk:
    """A chunk ready to store.

    ``hash`` is the BLAKE3-256 of the raw bytes, ``length`` their count,
    ``codec`` the payload encoding. What is stored is ``header`` followed by
    ``payload`` (``blob`` joins them; ``decode_chunk`` needs nothing else
    besides the hash). They are kept apart so a RAW chunk is written straight
    from the caller's buffer, never copied.
    """

    hash: bytes
    length: int
    codec: Codec
    header: bytes
    payload: bytes | memoryview

    @property
    def parts(self) -> tuple[bytes | memoryview, ...]:
        return (self.header, self.payload)

    @property
    def blob(self) -> bytes:
        return b"".join(self.parts)

    @property
    def stored_bytes(self) -> int:
        return len(self.header) + len(self.payload)


class _ThreadCodecs(threading.local):
    """zstd contexts for the current thread: they must not be shared between threads."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        compressor = self.compressors.get(level)
        if compressor is None:
            # The content size in the frame lets decode_chunk check it against
            # the header before allocating; the blob's CRC-32C already covers integrity,
            # so the frame carries no checksum of its own.
            compressor = zstandard.ZstdCompressor(
                level=level, write_content_size=True, write_checksum=False, threads=0
            )
            self.compressors[level] = compressor
        return compressor


_codecs = _ThreadCodecs()


def encode_chunk(
    data: bytes | memoryview,
    *,
    level: int = 1,
    digest: bytes | None = None,
    compact: bool = False,
) -> EncodedChunk:
    """Hash ``data`` and encode it as a self-describing blob.

    The payload is zstd (at ``level``) if a 64 KiB head sample shrinks at
    least 1.1x and the compressed chunk is smaller than the raw one; otherwise
    the raw bytes. Safe to call from several threads at once.

    ``digest``, when the caller has just hashed ``data``, saves a second
    BLAKE3 pass; it must be that hash (a wrong one is caught by
    ``decode_chunk`` on every read, as corruption). ``compact`` writes the
    13-byte header of format version 1 (no name, no CRC: every read hashes
    the content instead), for small values kept beside their hash, such as
    an object inlined in its metadata row. Raises InvalidArgument if
    ``data`` is longer than CHUNK_BYTES_MAX.

    >>> encoded = encode_chunk(b"x" * 100_000)
    >>> encoded.codec, encoded.length, decode_chunk(encoded.hash, encoded.blob) == b"x" * 100_000
    (<Codec.ZSTD: 1>, 100000, True)
    """
    view = memoryview(data).cast("B")
    length = len(view)
    if length > CHUNK_BYTES_MAX:
        raise InvalidArgument(
            f"a chunk holds at most {CHUNK_BYTES_MAX} bytes, got {length}: cut it with iter_chunks"
        )
    if digest is None:
        digest = blake3_digest(view)
    codec, payload = _compress(view, level)
    if compact:
        header = _HEADER_V1.pack(_MAGIC_V1, codec, length)
    else:
        header = _HEADER.pack(_MAGIC, codec, length, crt_checksums.crc32c(payload), digest)
    return EncodedChunk(hash=digest, length=length, codec=codec, header=header, payload=payload)


def _compress(view: memoryview, level: int) -> tuple[Codec, bytes | memoryview]:
    if not view or _looks_random(view):
        return Codec.RAW, view
    compressor = _codecs.compressor(level)
    sample = view[:_SAMPLE_BYTES]
    sample_compressed = compressor.compress(sample)
    if len(sample) < _SAMPLE_RATIO_MIN * len(sample_compressed):
        return Codec.RAW, view
    compressed = sample_compressed if len(sample) == len(view) else compressor.compress(view)
    if len(compressed) >= len(view):
        return Codec.RAW, view
    return Codec.ZSTD, compressed


def _looks_random(view: memoryview) -> bool:
    """Whether a small buffer's bytes are spread so evenly that zstd would not shrink it.

    zstd releases the GIL on every call, which for a small value costs far more
    than the compression (waiting to take the GIL back, up to a switch interval
    of 5 ms while another thread runs Python: 8 writer threads putting 4 KiB
    random objects made ~25 % more puts/s without the call). So a small buffer
    is first screened, under the GIL, the way btrfs screens before compressing:
    512 random bytes hold ~221 distinct byte values, text and most structured
    data well under 128. A false "random" stores a compressible value raw, as
    an incompressible one is; a large buffer is sampled by zstd itself.
    """
    if len(view) > _SCREEN_BYTES_MAX:
        return False
    return len(set(view[:_SCREEN_SAMPLE_BYTES].tobytes())) >= _SCREEN_DISTINCT_MIN


def declared_length(blob: bytes) -> int:
    """The raw length a blob's header declares (cheap: no decoding, no hashing).

    Raises ChunkCorrupted if the blob has no valid header.
    """
    return _header(blob, "blob").length


class _Header(NamedTuple):
    size: int
    codec: int
    length: int
    crc: int | None
    hash: bytes | None


def _header(blob: bytes, what: str) -> _Header:
    """A blob's header, of either version; ChunkCorrupted naming ``what``."""
    if blob[:4] == _MAGIC_V1 and len(blob) >= _HEADER_V1.size:
        _, codec, length = _HEADER_V1.unpack_from(blob)
        header = _Header(_HEADER_V1.size, codec, length, None, None)
    elif len(blob) < _HEADER.size:
        raise ChunkCorrupted(
            f"{what}: {len(blob)} bytes is shorter than the {_HEADER.size}-byte header"
        )
    else:
        magic, codec, length, crc, owner = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            raise ChunkCorrupted(f"{what}: bad magic {magic!r}, expected {_MAGIC!r}")
        header = _Header(_HEADER.size, codec, length, crc, owner)
    if header.length > CHUNK_BYTES_MAX:
        raise ChunkCorrupted(
            f"{what}: header declares {header.length} bytes, more than {CHUNK_BYTES_MAX}"
        )
    return header


def decode_chunk(hash: bytes, blob: bytes, *, deep: bool = False) -> bytes:
    """Return the raw bytes of ``blob``, verified to be chunk ``hash``.

    A blob names the chunk it holds and carries its payload's CRC-32C: both
    are checked, which catches a flipped bit or a torn or misplaced blob at a
    tenth of the cost of hashing. ``deep`` also checks the raw bytes' BLAKE3
    against ``hash``, which a blob written by another party (remote storage)
    needs, and so does every blob of format version 1 (no CRC).

    Raises ChunkCorrupted, naming the chunk and the defect, if the header is
    malformed, names another chunk, the payload fails its CRC or does not
    decode to the declared length, or (deep) the content hashes to another
    name. Safe to call from several threads.
    """
    name = chunk_name(hash)
    header = _header(blob, f"chunk {name}")
    return _decode(name, hash, header, memoryview(blob)[header.size :], None, deep=deep)


def decode_split(hash: bytes, head: bytes, rest: bytes, *, deep: bool = False) -> bytes:
    """`decode_chunk` of the blob ``head + rest``, ``head`` being its first
    `HEADER_BYTES` (or all of it, if shorter): what `ChunkBackend.read_split`
    returns. A RAW payload read that way is returned as it is, not copied."""
    name = chunk_name(hash)
    header = _header(head, f"chunk {name}")
    if header.size != len(head):
        # Another header size (version 1): rejoin the blob, as decode_chunk takes it.
        blob = head + rest
        return _decode(name, hash, header, memoryview(blob)[header.size :], None, deep=deep)
    return _decode(name, hash, header, memoryview(rest), rest, deep=deep)


class RawPayload(NamedTuple):
    """A RAW format-2 payload's length and CRC-32C, from its blob's header."""

    length: int
    crc: int


def raw_payload(hash: bytes, head: bytes) -> RawPayload | None:
    """What the header ``head`` (a blob's first `HEADER_BYTES`) says of chunk
    ``hash``'s payload when it is stored RAW in format 2: then the payload is
    the chunk's bytes, as they lie after the header, once they match the CRC
    (`crc32c`). None for a compressed or version-1 blob (decode those).

    Raises ChunkCorrupted if the header is malformed or names another chunk.
    """
    name = chunk_name(hash)
    header = _header(head, f"chunk {name}")
    if header.hash is None or header.codec != Codec.RAW:
        return None
    if header.hash != hash:
        raise ChunkCorrupted(f"chunk {name}: the blob holds chunk {header.hash.hex()}")
    assert header.crc is not None
    return RawPayload(header.length, header.crc)


def crc32c(data: bytes | bytearray | memoryview, previous: int = 0) -> int:
    """The CRC-32C a blob's header keeps of its payload, continued from ``previous``."""
    crc: int = crt_checksums.crc32c(data, previous)
    return crc


def _decode(
    name: str,
    hash: bytes,
    header: _Header,
    payload: memoryview,
    payload_bytes: bytes | None,
    *,
    deep: bool,
) -> bytes:
    """The raw bytes of ``payload`` (``payload_bytes``, when given, is the same as bytes)."""
    if header.hash is not None:
        if header.hash != hash:
            raise ChunkCorrupted(f"chunk {name}: the blob holds chunk {header.hash.hex()}")
        if crt_checksums.crc32c(payload) != header.crc:
            raise ChunkCorrupted(f"chunk {name}: the payload fails its CRC-32C")
    if header.codec == Codec.RAW:
        raw = payload_bytes if payload_bytes is not None else bytes(payload)
    elif header.codec == Codec.ZSTD:
        raw = _decompress(name, payload, header.length)
    else:
        raise ChunkCorrupted(f"chunk {name}: unknown codec {header.codec}")
    if len(raw) != header.length:
        raise ChunkCorrupted(
            f"chunk {name}: decoded {len(raw)} bytes, header declares {header.length}"
        )
    if deep or header.hash is None:
        actual = blake3_digest(raw)
        if actual != hash:
            raise ChunkCorrupted(f"chunk {name}: content hashes to {actual.hex()}")
    return raw


def _decompress(name: str, payload: memoryview, length: int) -> bytes:
    try:
        # Checked before decompressing, so a corrupted frame header cannot
        # make zstd allocate more than the (bounded) declared length.
        frame_length = zstandard.frame_content_size(payload)
        if frame_length != length:
            raise ChunkCorrupted(
                f"chunk {name}: zstd frame declares {frame_length} bytes, header {length}"
            )
        return _codecs.decompressor.decompress(
            payload, max_output_size=length, read_across_frames=False, allow_extra_data=False
        )
    except zstandard.ZstdError as error:
        raise ChunkCorrupted(f"chunk {name}: zstd payload does not decode: {error}") from error


def chunk_name(hash: bytes) -> str:
    """The storage name of a chunk: its hash as 64 lowercase hex digits.

    Raises InvalidArgument if ``hash`` is not HASH_BYTES long.
    """
    if len(hash) != HASH_BYTES:
        raise InvalidArgument(f"a chunk hash is {HASH_BYTES} bytes, got {len(hash)}")
    return hash.hex()
