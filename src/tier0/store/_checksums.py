"""Integrity checksums a client sends with a write, checked before the commit.

A client may state what it sent (S3's ``Content-MD5`` and ``x-amz-checksum-*``,
as base64 digests); the write path computes each stated algorithm over the
stream alongside its own BLAKE3, once per byte, and the store refuses to
commit when one disagrees. A client may also name an algorithm without a
value (S3's ``x-amz-checksum-algorithm`` alone): it is computed and recorded,
with nothing to compare. Only the algorithms asked for are computed: MD5 alone
caps a stream near 0.9 GB/s (notes/measurements.md), so nothing is hashed on
speculation.

`ALGORITHMS` maps each name to a factory of an incremental `Hasher`;
`parse_checksums` checks the names and values of a request before any byte is
read; `verify` raises `BadDigest` for the first mismatch. The CRCs run in C:
zlib (CRC32), google-crc32c (CRC32C) and awscrt (CRC64NVME), each at several
GB/s, so checking them costs a stream little beside BLAKE3.

>>> expected = parse_checksums({"crc32": "NhCmhg=="})
>>> hasher = ALGORITHMS["crc32"]()
>>> hasher.update(b"hel")
>>> hasher.update(b"lo")
>>> verify(expected, {"crc32": hasher.digest()})  # equal: returns None
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import google_crc32c
from awscrt import checksums as crt_checksums

from tier0.errors import BadDigest, InvalidArgument

__all__ = [
    "ALGORITHMS",
    "DIGEST_BYTES",
    "Expected",
    "Hasher",
    "decode_digest",
    "parse_checksums",
    "verify",
]


class Hasher(Protocol):
    """An incremental digest: ``update`` with each piece in order, then ``digest``."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _CRC32:
    """zlib's CRC-32 (the one S3 calls CRC32), as a big-endian 4-byte digest."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class _CRC32C:
    """CRC-32C (Castagnoli) through ``google-crc32c``'s C code, big-endian like S3's."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        # Its C function takes bytes only (a small piece's copy costs less than a call).
        self._value = _crc32c_extend(self._value, bytes(data))

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


# google-crc32c ships no annotations for its C functions; this states the one used.
_crc32c_extend: Callable[[int, bytes], int] = google_crc32c.extend


class _CRC64NVME:
    """CRC-64/NVME (the one S3 calls CRC64NVME) through awscrt's C code, as a
    big-endian 8-byte digest: polynomial 0xad93d23594c93659 (0x9a6c9329ac4bc9b5
    reflected), input and output reflected, initial value and final XOR all ones."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = crt_checksums.crc64nvme(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(8, "big")


def _hashlib(name: str) -> Callable[[], Hasher]:
    def new() -> Hasher:
        # These digests check transfers; they protect nothing secret.
        return hashlib.new(name, usedforsecurity=False)

    return new


#: Every algorithm a write can be checked with, by its lower-case S3 name.
ALGORITHMS: Final[Mapping[str, Callable[[], Hasher]]] = {
    "md5": _hashlib("md5"),
    "sha1": _hashlib("sha1"),
    "sha256": _hashlib("sha256"),
    "crc32": _CRC32,
    "crc32c": _CRC32C,
    "crc64nvme": _CRC64NVME,
}

#: The length of each algorithm's digest, in bytes.
DIGEST_BYTES: Final[Mapping[str, int]] = {
    "md5": 16,
    "sha1": 20,
    "sha256": 32,
    "crc32": 4,
    "crc32c": 4,
    "crc64nvme": 8,
}

#: What a caller expects of one algorithm: the base64 digest, or a function
#: returning it once the body has been read whole (an ``aws-chunked`` trailer
#: arrives only after the last byte).
Expected = str | Callable[[], str]


def decode_digest(algorithm: str, value: str) -> bytes:
    """The digest ``value`` (base64, as S3 sends it) of ``algorithm``, as bytes.

    Raises `InvalidArgument` for an unknown algorithm, a value that is not
    strict base64, or a digest of the wrong length for the algorithm.

    >>> decode_digest("crc32", "NhCmhg==").hex()
    '3610a686'
    """
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(
            f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(sorted(ALGORITHMS))}"
        )
    try:
        digest = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidArgument(f"the {algorithm} checksum {value!r} is not valid base64") from None
    if len(digest) != DIGEST_BYTES[algorithm]:
        raise InvalidArgument(
            f"the {algorithm} checksum {value!r} decodes to {len(digest)} bytes,"
            f" not the {DIGEST_BYTES[algorithm]} of a {algorithm} digest"
        )
    return digest


def parse_checksums(
    checksums: Mapping[str, Expected | None] | None,
) -> dict[str, Expected | None]:
    """Check a request's checksums before its body is read; returns them by algorithm.

    Names must be in `ALGORITHMS` and string values must decode (`decode_digest`);
    deferred values (callables) are checked when `verify` calls them. None asks
    for the digest without stating one: it is computed, and `verify` skips it.
    Raises `InvalidArgument` otherwise.
    """
    parsed: dict[str, Expected | None] = {}
    for algorithm, value in (checksums or {}).items():
        if isinstance(value, str):
            decode_digest(algorithm, value)
        elif algorithm not in ALGORITHMS:
            decode_digest(algorithm, "")  # raises for the unknown name
        parsed[algorithm] = value
    return parsed


def verify(expected: Mapping[str, Expected | None], computed: Mapping[str, bytes]) -> None:
    """Raise `BadDigest` unless every expected digest equals the computed one.

    ``computed`` holds a digest for every algorithm in ``expected``; an
    algorithm expected as None has nothing to compare. A deferred value is
    fetched here, so call this only after the body has been read whole; it
    raises `InvalidArgument` when malformed.
    """
    for algorithm, value in expected.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else value()
        want = decode_digest(algorithm, text)
        got = computed[algorithm]
        if want != got:
            raise BadDigest(
                f"The {algorithm.upper()} you specified did not match the calculated checksum:"
                f" expected {text}, computed {base64.b64encode(got).decode('ascii')}.",
                algorithm=algorithm,
                expected=text,
                computed=base64.b64encode(got).decode("ascii"),
            )
