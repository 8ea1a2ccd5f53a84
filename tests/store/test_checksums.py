"""Checksums a caller states with a put: the algorithms, the store refusing a
mismatch, and the store keeping what it verified.

The algorithms are checked against hashlib, zlib and google-crc32c's one-shot
functions, and CRC64NVME against a bitwise implementation written here from
the algorithm's definition (so awscrt is not trusted to check itself), over
random splits of random data. The store tests run on every metadata backend:
the digests a version keeps live in its metadata row.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import pathlib
import zlib
from collections.abc import Callable, Iterator

import google_crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tier0
from tier0.errors import BadDigest, InvalidArgument, NoSuchKey
from tier0.store import CHECKSUM_ALGORITHMS, decode_digest

#: CRC-64/NVME's polynomial 0xad93d23594c93659, bit-reversed for the
#: reflected (least significant bit first) form used below.
_CRC64NVME_POLY_REFLECTED = 0x9A6C9329AC4BC9B5
_ALL_ONES_64 = (1 << 64) - 1


def _crc64nvme(data: bytes) -> bytes:
    """CRC-64/NVME one bit at a time: reflected, initial value and final XOR all ones."""
    crc = _ALL_ONES_64
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC64NVME_POLY_REFLECTED if crc & 1 else 0)
    return (crc ^ _ALL_ONES_64).to_bytes(8, "big")


_REFERENCE: dict[str, Callable[[bytes], bytes]] = {
    "md5": lambda data: hashlib.md5(data).digest(),
    "sha1": lambda data: hashlib.sha1(data).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "crc32c": lambda data: google_crc32c.value(data).to_bytes(4, "big"),
    "crc64nvme": _crc64nvme,
}


def _b64(algorithm: str, data: bytes) -> str:
    return base64.b64encode(_REFERENCE[algorithm](data)).decode()


def _random(size: int, seed: int = 0) -> bytes:
    # Deterministic incompressible bytes: SHA-256 in counter mode.
    return b"".join(hashlib.sha256(f"{seed}:{n}".encode()).digest() for n in range(size // 32 + 1))[
        :size
    ]


# --- the algorithms ---------------------------------------------------------------


def test_registry_covers_the_reference_algorithms() -> None:
    assert set(CHECKSUM_ALGORITHMS) == set(_REFERENCE)


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b"123456789", 0xAE8B14860A799888),  # the CRC catalogue's check value
        (b"", 0),
        (b"\x00" * 32, 0xCF3473434D4ECF3B),
        (b"\xff" * 32, 0xA0A06974C34D63C4),
    ],
)
def test_crc64nvme_reference_and_registry_give_known_values(data: bytes, check: int) -> None:
    assert _crc64nvme(data) == check.to_bytes(8, "big")
    hasher = CHECKSUM_ALGORITHMS["crc64nvme"]()
    hasher.update(data)
    assert hasher.digest() == check.to_bytes(8, "big")


@given(
    algorithm=st.sampled_from(sorted(_REFERENCE)),
    data=st.binary(max_size=4096),
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=8),
)
def test_incremental_digest_matches_reference_on_any_split(
    algorithm: str, data: bytes, cuts: list[int]
) -> None:
    hasher = CHECKSUM_ALGORITHMS[algorithm]()
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        hasher.update(data[start:end])
    assert hasher.digest() == _REFERENCE[algorithm](data)


@given(algorithm=st.sampled_from(sorted(_REFERENCE)), data=st.binary(max_size=256))
def test_decode_digest_round_trips_base64(algorithm: str, data: bytes) -> None:
    assert decode_digest(algorithm, _b64(algorithm, data)) == _REFERENCE[algorithm](data)


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [
        ("crc64nvme", "NhCmhg=="),  # four bytes, not eight
        ("CRC64NVME", "AAAAAAAAAAA="),  # names are lower case
        ("crc128", "AAAAAAAAAAA="),  # not an algorithm
        ("CRC32", "NhCmhg=="),  # names are lower case
        ("crc32", "NhCmhg="),  # bad padding
        ("crc32", "Nh?mhg=="),  # not base64
        ("crc32", "NhCmhgAA"),  # six bytes, not four
        ("md5", "NhCmhg=="),  # a CRC where an MD5 belongs
        ("sha256", "é"),  # not ASCII
    ],
)
def test_decode_digest_rejects_malformed(algorithm: str, value: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_digest(algorithm, value)


# --- the store --------------------------------------------------------------------


@pytest.fixture
def t0(tmp_path: pathlib.Path, meta_url: str) -> Iterator[tier0.Tier0]:
    store = tier0.open(tmp_path / "data", meta=meta_url)
    try:
        store.create_bucket("bkt")
        yield store
    finally:
        store.close()


def test_put_with_right_checksums_commits(t0: tier0.Tier0) -> None:
    data = b"hello"
    info = t0.put("bkt", "k", data, checksums={"crc32": "NhCmhg==", "md5": _b64("md5", data)})
    assert t0.get_bytes("bkt", "k") == data
    assert info.size == len(data)


@pytest.mark.parametrize("algorithm", sorted(_REFERENCE))
def test_put_with_wrong_checksum_raises_and_commits_nothing(
    t0: tier0.Tier0, algorithm: str
) -> None:
    events_before = t0.events.latest_seq()
    wrong = _b64(algorithm, b"something else")
    with pytest.raises(BadDigest) as raised:
        t0.put("bkt", "k", b"hello", checksums={algorithm: wrong})
    error = raised.value
    assert (error.algorithm, error.expected) == (algorithm, wrong)
    assert error.computed == _b64(algorithm, b"hello")
    assert wrong in str(error) and error.computed in str(error)
    assert algorithm.upper() in str(error)
    with pytest.raises(NoSuchKey):
        t0.head("bkt", "k")
    assert t0.events.latest_seq() == events_before


def test_put_with_wrong_checksum_keeps_the_previous_version(t0: tier0.Tier0) -> None:
    t0.put("bkt", "k", b"old")
    with pytest.raises(BadDigest):
        t0.put("bkt", "k", b"new", checksums={"crc32c": _b64("crc32c", b"other")})
    assert t0.get_bytes("bkt", "k") == b"old"


def test_put_checks_every_stated_checksum(t0: tier0.Tier0) -> None:
    data = b"several at once"
    right = {name: _b64(name, data) for name in _REFERENCE}
    t0.put("bkt", "all", data, checksums=right)
    assert t0.get_bytes("bkt", "all") == data
    # One wrong among right ones is enough to refuse, and the error names it.
    with pytest.raises(BadDigest) as raised:
        t0.put("bkt", "one-wrong", data, checksums={**right, "sha1": _b64("sha1", b"x")})
    assert raised.value.algorithm == "sha1"
    with pytest.raises(NoSuchKey):
        t0.head("bkt", "one-wrong")


def test_put_streams_large_body_with_checksums(t0: tier0.Tier0) -> None:
    data = _random(3 * 1024 * 1024 + 5, seed=3)
    blocks = (data[i : i + 65_537] for i in range(0, len(data), 65_537))
    checksums = {"sha256": _b64("sha256", data), "crc32": _b64("crc32", data)}
    t0.put("bkt", "large", blocks, checksums=checksums)
    assert t0.get_bytes("bkt", "large") == data
    blocks = (data[i : i + 65_537] for i in range(0, len(data), 65_537))
    with pytest.raises(BadDigest):
        t0.put("bkt", "large2", blocks, checksums={"crc32": _b64("crc32", data[:-1])})
    with pytest.raises(NoSuchKey):
        t0.head("bkt", "large2")


def test_put_md5_etag_and_md5_checksum_agree(t0: tier0.Tier0) -> None:
    data = _random(200_000, seed=4)
    info = t0.put("bkt", "k", data, md5=True, checksums={"md5": _b64("md5", data)})
    assert info.etag == hashlib.md5(data).hexdigest()


def test_put_malformed_checksum_raises_before_reading_the_body(t0: tier0.Tier0) -> None:
    read: list[bytes] = []

    def body() -> Iterator[bytes]:
        read.append(b"x")
        yield b"x"

    for checksums in ({"crc32": "not base64!"}, {"whirlpool": "AAAA"}):
        with pytest.raises(InvalidArgument) as raised:
            t0.put("bkt", "k", body(), checksums=checksums)
        assert not isinstance(raised.value, BadDigest)
    assert read == []


def test_put_deferred_checksum_is_read_after_the_body(t0: tier0.Tier0) -> None:
    # The value of a trailing checksum becomes known only once the body has been read.
    trailer: dict[str, str] = {}
    data = b"trailing"

    def body() -> Iterator[bytes]:
        yield data
        trailer["crc32"] = _b64("crc32", data)

    t0.put("bkt", "k", body(), checksums={"crc32": lambda: trailer["crc32"]})
    assert t0.get_bytes("bkt", "k") == data

    def wrong_body() -> Iterator[bytes]:
        yield data
        trailer["crc32"] = _b64("crc32", b"not it")

    with pytest.raises(BadDigest):
        t0.put("bkt", "k2", wrong_body(), checksums={"crc32": lambda: trailer["crc32"]})
    with pytest.raises(NoSuchKey):
        t0.head("bkt", "k2")


def test_put_keeps_the_verified_digests(t0: tier0.Tier0) -> None:
    data = _random(300_000, seed=5)
    stated = {name: _b64(name, data) for name in ("crc32", "crc64nvme", "sha256")}
    info = t0.put("bkt", "k", data, checksums=stated)
    assert info.checksums == stated
    assert t0.head("bkt", "k").checksums == stated
    # A deferred (trailing) digest is kept as it was finally stated.
    info = t0.put("bkt", "t", data, checksums={"sha1": lambda: _b64("sha1", data)})
    assert t0.head("bkt", "t").checksums == {"sha1": _b64("sha1", data)}
    assert t0.put("bkt", "none", data).checksums == {}


def test_put_computes_an_algorithm_named_without_a_digest(t0: tier0.Tier0) -> None:
    data = _random(200_000, seed=6)
    info = t0.put("bkt", "k", data, checksums={"crc64nvme": None, "crc32": _b64("crc32", data)})
    expected = {"crc64nvme": _b64("crc64nvme", data), "crc32": _b64("crc32", data)}
    assert info.checksums == expected
    assert t0.head("bkt", "k").checksums == expected
    with pytest.raises(InvalidArgument):
        t0.put("bkt", "k", data, checksums={"whirlpool": None})


def test_copy_keeps_the_source_digests(t0: tier0.Tier0) -> None:
    data = b"copied with its checksum"
    t0.put("bkt", "src", data, checksums={"crc32c": _b64("crc32c", data)})
    copied = t0.copy("bkt", "src", "bkt", "dst", metadata={"replaced": "yes"})
    assert copied.checksums == {"crc32c": _b64("crc32c", data)}
    assert t0.head("bkt", "dst").checksums == copied.checksums
