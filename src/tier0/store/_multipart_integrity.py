"""What a multipart version records about its content, made from its parts alone, and
the consistency check that verifies it.

Completion reads no byte of the parts, so every digest of the object is
derived from the parts' digests:

- the BLAKE3 ``checksum`` is ``blake3-parts:<hex>-N``, the BLAKE3 of the
  parts' BLAKE3 digests concatenated (`composite_checksum`); ``check(deep=True)``
  verifies it by re-reading each part's span (`check_multipart`).

An upload may also name an S3 checksum algorithm and type
(``x-amz-checksum-algorithm`` and ``x-amz-checksum-type`` on
CreateMultipartUpload); every part is then hashed with it as it streams in,
and the object's checksum is (`object_checksums`):

- COMPOSITE (CRC32, CRC32C, SHA-1, SHA-256; the default but for CRC64NVME):
  the algorithm over the parts' binary digests concatenated, base64, then
  ``-N`` for the number of parts. A checksum of checksums: no client can
  compute it from the bytes alone, which is why the part count shows.
- FULL_OBJECT (the CRC family only; CRC64NVME's only type): the CRC of the
  whole object, as if it had been hashed in one pass. A CRC is linear over
  GF(2), so CRC(A + B) follows from CRC(A), CRC(B) and B's length
  (`combine_crc`, zlib's ``crc32_combine`` generalized to any reflected CRC).

>>> import zlib
>>> a, b = b"hello ", b"world"
>>> crc = lambda data: zlib.crc32(data).to_bytes(4, "big")
>>> combine_crc("crc32", crc(a), crc(b), len(b)) == crc(a + b)
True
"""

from __future__ import annotations

import base64
import collections
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import blake3

from tier0.errors import BadDigest, ChunkError, InvalidArgument
from tier0.meta import Connection
from tier0.store._checksums import ALGORITHMS
from tier0.store._manifest import Manifest
from tier0.store._ops import parts_from_json
from tier0.store._reader import iter_range
from tier0.store._types import PartInfo

if TYPE_CHECKING:
    from tier0.store._store import Kernel

__all__ = [
    "CHECKSUM_TYPES",
    "check_multipart",
    "check_stated",
    "checksum_settings",
    "checksum_type_of",
    "combine_crc",
    "composite_checksum",
    "object_checksums",
]

#: How an upload's part checksums make the object's (S3's x-amz-checksum-type).
CHECKSUM_TYPES: Final = ("COMPOSITE", "FULL_OBJECT")
_COMPOSITE_ALGORITHMS: Final = frozenset({"crc32", "crc32c", "sha1", "sha256"})
_FULL_OBJECT_ALGORITHMS: Final = frozenset({"crc32", "crc32c", "crc64nvme"})

# Reflected polynomials and widths of the CRCs S3 offers as FULL_OBJECT checksums.
# All three start from all ones and invert at the end, which `combine_crc` relies on.
_CRC_POLYNOMIALS: Final = {
    "crc32": (0xEDB88320, 32),
    "crc32c": (0x82F63B78, 32),
    "crc64nvme": (0x9A6C9329AC4BC9B5, 64),
}
# Lengths up to 2^60 bytes: far past OBJECT_BYTES_MAX.
_POWERS_COUNT: Final = 64
_COMPOSITE_PREFIX: Final = "blake3-parts:"


def composite_checksum(part_checksums: Sequence[str]) -> str:
    """The ``checksum`` of a version made of parts whose checksums are ``blake3:<hex>``.

    >>> composite_checksum(["blake3:" + "00" * 32])[:13], composite_checksum(["blake3:" + "00" * 32])[-2:]
    ('blake3-parts:', '-1')
    """
    hasher = blake3.blake3()
    for checksum in part_checksums:
        hasher.update(bytes.fromhex(checksum.removeprefix("blake3:")))
    return f"{_COMPOSITE_PREFIX}{hasher.hexdigest()}-{len(part_checksums)}"


def checksum_type_of(value: str) -> str:
    """``COMPOSITE`` for a composite checksum value (it ends in ``-N``), else ``FULL_OBJECT``.

    >>> checksum_type_of("AAAAAA==-3"), checksum_type_of("AAAAAA==")
    ('COMPOSITE', 'FULL_OBJECT')
    """
    head, dash, count = value.rpartition("-")
    return "COMPOSITE" if dash and head and count.isdigit() else "FULL_OBJECT"


def checksum_settings(algorithm: str | None, kind: str | None) -> tuple[str | None, str | None]:
    """An upload's (algorithm, type), lower- and upper-cased, checked against what S3 allows.

    No algorithm means no type. Without a type, CRC64NVME is FULL_OBJECT and
    the others COMPOSITE, as in S3. Raises `InvalidArgument` for an algorithm S3
    does not offer or tier0 cannot compute (`ALGORITHMS`), an unknown type, or
    a type the algorithm does not allow (SHA with FULL_OBJECT, CRC64NVME with
    COMPOSITE).
    """
    if algorithm is None:
        if kind is not None:
            raise InvalidArgument(f"checksum type {kind} needs a checksum algorithm")
        return None, None
    algorithm = algorithm.lower()
    if algorithm not in _COMPOSITE_ALGORITHMS | _FULL_OBJECT_ALGORITHMS:
        raise InvalidArgument(f"checksum algorithm {algorithm!r} is not one S3 offers for uploads")
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"checksum algorithm {algorithm!r} is not supported here yet")
    kind = (kind or ("FULL_OBJECT" if algorithm == "crc64nvme" else "COMPOSITE")).upper()
    if kind not in CHECKSUM_TYPES:
        raise InvalidArgument(f"checksum type {kind!r} is neither COMPOSITE nor FULL_OBJECT")
    allowed = _FULL_OBJECT_ALGORITHMS if kind == "FULL_OBJECT" else _COMPOSITE_ALGORITHMS
    if algorithm not in allowed:
        raise InvalidArgument(
            f"The {kind} checksum type cannot be used with the {algorithm} checksum algorithm."
        )
    return algorithm, kind


def object_checksums(
    algorithm: str | None, kind: str | None, parts: Sequence[PartInfo]
) -> dict[str, str]:
    """The object's checksum of ``algorithm`` (by name, base64), from its parts' digests.

    Every part holds a digest of ``algorithm`` (the store computes it for each).
    """
    if algorithm is None:
        return {}
    digests = [base64.b64decode(part.checksums[algorithm]) for part in parts]
    if kind == "FULL_OBJECT":
        whole = digests[0]
        for part, digest in zip(parts[1:], digests[1:], strict=True):
            whole = combine_crc(algorithm, whole, digest, part.size)
        return {algorithm: base64.b64encode(whole).decode("ascii")}
    hasher = ALGORITHMS[algorithm]()
    for digest in digests:
        hasher.update(digest)
    return {algorithm: f"{base64.b64encode(hasher.digest()).decode('ascii')}-{len(parts)}"}


def check_stated(stated: dict[str, str], computed: dict[str, str]) -> None:
    """Raise unless every object checksum a completion states is the one its parts make.

    A composite value may be stated with or without its ``-N``. An algorithm
    the upload was not created with raises `InvalidArgument`; a different
    value, `BadDigest`.
    """
    for name, value in stated.items():
        want = computed.get(name)
        if want is None:
            having = f"the {next(iter(computed))} algorithm" if computed else "no algorithm"
            raise InvalidArgument(
                f"a {name} checksum was stated, but the upload was created with {having}"
            )
        value = value.strip()
        accepted = {want}
        if checksum_type_of(want) == "COMPOSITE":
            accepted.add(want.rpartition("-")[0])
        if value not in accepted:
            raise BadDigest(
                f"The {name.upper()} you specified did not match the calculated checksum:"
                f" expected {value}, computed {want}.",
                algorithm=name,
                expected=value,
                computed=want,
            )


def check_multipart(
    db: Connection, references: collections.Counter[bytes], kernel: Kernel, *, deep: bool
) -> list[str]:
    """The upload side of ``check()``: count the parts' chunk references into
    ``references``, and find parts without an upload, uploads without a bucket, and
    completed versions whose parts do not add up (with ``deep``, whose
    ``blake3-parts`` checksum does not match their bytes)."""
    problems: list[str] = []
    for upload_id, number, size, manifest_blob, known in db.query_all(
        "SELECT p.upload_id, p.part_number, p.size, p.manifest, u.upload_id"
        " FROM t0_upload_parts p LEFT JOIN t0_uploads u ON u.upload_id = p.upload_id"
    ):
        where = f"upload {upload_id} part {number}"
        if known is None:
            problems.append(f"{where}: the upload does not exist")
        manifest = Manifest.decode(bytes(manifest_blob or b""))
        if manifest.size != size:
            problems.append(f"{where}: chunks hold {manifest.size} bytes, but size {size}")
        references.update(manifest.hashes)
    problems += [
        f"upload {upload_id}: its bucket {bucket!r} does not exist"
        for upload_id, bucket in db.query_all(
            "SELECT u.upload_id, u.bucket FROM t0_uploads u"
            " LEFT JOIN t0_buckets b ON b.name = u.bucket WHERE b.name IS NULL"
        )
    ]
    for seq, size, etag, checksum, parts_json, manifest_blob in db.query_all(
        "SELECT seq, size, etag, checksum, parts, manifest FROM t0_versions"
        " WHERE parts IS NOT NULL AND is_delete_marker = 0"
    ):
        parts = parts_from_json(parts_json)
        problems += _check_layout(seq, size, etag, checksum, parts)
        if deep and checksum.startswith(_COMPOSITE_PREFIX) and manifest_blob is not None:
            problems += _check_composite(
                kernel, seq, checksum, Manifest.decode(bytes(manifest_blob)), parts
            )
    return problems


def _check_layout(
    seq: int, size: int, etag: str, checksum: str, parts: tuple[PartInfo, ...]
) -> list[str]:
    problems = []
    if sum(part.size for part in parts) != size:
        problems.append(
            f"version {seq}: its parts hold {sum(p.size for p in parts)} bytes, not {size}"
        )
    suffix = f"-{len(parts)}"
    if not etag.endswith(suffix) or not checksum.endswith(suffix):
        problems.append(
            f"version {seq}: {len(parts)} parts, but ETag {etag!r} and checksum {checksum!r}"
        )
    return problems


def _check_composite(
    kernel: Kernel, seq: int, checksum: str, manifest: Manifest, parts: tuple[PartInfo, ...]
) -> list[str]:
    composite = blake3.blake3()
    offset = 0
    try:
        for part in parts:
            hasher = blake3.blake3()
            for block in iter_range(kernel.chunks, kernel.executor, manifest, offset, part.size):
                hasher.update(block)
            composite.update(hasher.digest())
            offset += part.size
    except ChunkError as error:
        return [f"version {seq}: {error}"]
    want = f"{_COMPOSITE_PREFIX}{composite.hexdigest()}-{len(parts)}"
    if checksum != want:
        return [f"version {seq}: checksum {checksum}, but its parts hash to {want}"]
    return []


def combine_crc(algorithm: str, first: bytes, second: bytes, second_bytes: int) -> bytes:
    """The CRC of A + B from the CRC of A, the CRC of B and B's length.

    ``algorithm`` is ``crc32``, ``crc32c`` or ``crc64nvme``; digests are
    big-endian, as S3 encodes them. Appending n bytes multiplies A's CRC by
    x^(8n) modulo the polynomial; the initial and final inversions cancel
    out, so the rest is an XOR with B's CRC.
    """
    polynomial, width = _CRC_POLYNOMIALS[algorithm]
    shift = _shift(second_bytes, polynomial, width)
    shifted = _multiply(shift, int.from_bytes(first, "big"), polynomial, width)
    return (shifted ^ int.from_bytes(second, "big")).to_bytes(width // 8, "big")


def _multiply(a: int, b: int, polynomial: int, width: int) -> int:
    """a * b modulo the polynomial, both in reflected form (zlib's ``multmodp``)."""
    if a == 0:
        return 0
    mask = 1 << (width - 1)
    product = 0
    while True:
        if a & mask:
            product ^= b
            if a & (mask - 1) == 0:
                return product
        mask >>= 1
        b = (b >> 1) ^ polynomial if b & 1 else b >> 1


@functools.cache
def _powers(polynomial: int, width: int) -> tuple[int, ...]:
    """x^(2^k) modulo the polynomial for k = 0, 1, ... (reflected), to raise x to any power."""
    powers = [1 << (width - 2)]  # x^1
    while len(powers) < _POWERS_COUNT:
        powers.append(_multiply(powers[-1], powers[-1], polynomial, width))
    return tuple(powers)


@functools.lru_cache(maxsize=256)  # the parts of an upload mostly share one size
def _shift(length: int, polynomial: int, width: int) -> int:
    """x^(8 * length) modulo the polynomial: what appending ``length`` bytes multiplies by."""
    powers = _powers(polynomial, width)
    result = 1 << (width - 1)  # x^0
    k = 3  # 8 * length = 2^3 * length: start at x^(2^3)
    while length:
        if length & 1:
            result = _multiply(powers[k], result, polynomial, width)
        length >>= 1
        k += 1
    return result
