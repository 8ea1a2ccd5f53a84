"""Multipart uploads in the kernel, on every metadata backend.

Most tests open the store with a small ``part_bytes_min`` so that parts stay
small; `test_round_trip_with_the_real_5_mib_minimum` and
`test_part_under_5_mib_is_too_small_unless_last` keep S3's real rule.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import pathlib
import random
import zlib
from collections.abc import Iterator

import google_crc32c
import pytest
from awscrt import checksums as crt_checksums
from hypothesis import given
from hypothesis import strategies as st

import tier0
from tier0.errors import (
    AccessDenied,
    BadDigest,
    EntityTooLarge,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartNumber,
    InvalidPartOrder,
    InvalidRange,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
)
from tier0.store import PartRef, StoreConfig, _multipart, combine_crc

MiB = 1024 * 1024
#: The minimum part size of the `t0s` stores: small, so that tests stay fast.
PART = 300 * 1024


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _md5s_etag(*parts: bytes) -> str:
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


@pytest.fixture
def t0s(tmp_path: pathlib.Path, meta_url: str) -> Iterator[tier0.Tier0]:
    """Like ``t0``, with a minimum part size of `PART` bytes."""
    store = tier0.open(tmp_path / "data", meta=meta_url, config=StoreConfig(part_bytes_min=PART))
    try:
        store.create_bucket("bkt")
        yield store
    finally:
        store.close()


def _upload(t0: tier0.Tier0, key: str, *parts: bytes, **options: str) -> tuple[str, list[str]]:
    upload = t0.create_multipart_upload("bkt", key, **options)
    etags = [
        t0.upload_part("bkt", key, upload.upload_id, number, part).etag
        for number, part in enumerate(parts, start=1)
    ]
    return upload.upload_id, etags


def _assert_clean(t0: tier0.Tier0) -> None:
    report = t0.check(deep=True)
    assert report.ok, report.problems


# -- round trips ---------------------------------------------------------------------------


def test_round_trip_with_the_real_5_mib_minimum(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    parts = [_data(5 * MiB, 1), _data(5 * MiB, 2), _data(123_457, 3)]
    upload = t0.create_multipart_upload(
        "bkt", "big.bin", metadata={"color": "blue"}, tags={"t": "1"}, content_type="x/y"
    )
    assert upload.upload_id and upload.initiator == t0.principal.id
    uploaded = [
        t0.upload_part("bkt", "big.bin", upload.upload_id, number, part)
        for number, part in enumerate(parts, start=1)
    ]
    assert [p.etag for p in uploaded] == [hashlib.md5(p).hexdigest() for p in parts]
    info = t0.complete_multipart_upload(
        "bkt", "big.bin", upload.upload_id, [(n, p.etag) for n, p in enumerate(uploaded, 1)]
    )
    whole = b"".join(parts)
    assert info.etag == _md5s_etag(*parts)
    assert info.size == len(whole)
    assert [(p.number, p.size, p.etag) for p in info.parts] == [
        (n, len(p), hashlib.md5(p).hexdigest()) for n, p in enumerate(parts, 1)
    ]
    # The composite BLAKE3 value itself is verified by check(deep=True) below.
    assert info.checksum.startswith("blake3-parts:") and info.checksum.endswith("-3")
    assert t0.get_bytes("bkt", "big.bin") == whole
    assert (
        t0.get_bytes("bkt", "big.bin", offset=5 * MiB - 10, length=20)
        == whole[5 * MiB - 10 : 5 * MiB + 10]
    )
    head = t0.head("bkt", "big.bin")
    assert (head.content_type, head.metadata, head.tags) == ("x/y", {"color": "blue"}, {"t": "1"})
    assert head.parts == info.parts and head.etag == info.etag
    assert t0.list_multipart_uploads("bkt").uploads == []
    with pytest.raises(NoSuchUpload):
        t0.list_parts("bkt", "big.bin", upload.upload_id)
    _assert_clean(t0)


def test_part_under_5_mib_is_too_small_unless_last(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    upload_id, etags = _upload(t0, "k", _data(5 * MiB - 1, 1), _data(10, 2))
    with pytest.raises(EntityTooSmall):
        t0.complete_multipart_upload("bkt", "k", upload_id, [(1, etags[0]), (2, etags[1])])
    # A lone part (the last) may be any size.
    info = t0.complete_multipart_upload("bkt", "k", upload_id, [(2, etags[1])])
    assert t0.get_bytes("bkt", "k") == _data(10, 2)
    assert info.etag == _md5s_etag(_data(10, 2))
    _assert_clean(t0)


def test_completion_may_skip_parts_and_number_sparsely(t0s: tier0.Tier0) -> None:
    parts = [_data(PART, n) for n in range(4)]
    upload_id, etags = _upload(t0s, "k", *parts)
    info = t0s.complete_multipart_upload("bkt", "k", upload_id, [(2, etags[1]), (4, etags[3])])
    assert t0s.get_bytes("bkt", "k") == parts[1] + parts[3]
    assert [p.number for p in info.parts] == [2, 4]
    assert info.etag == _md5s_etag(parts[1], parts[3])
    with t0s.get_part("bkt", "k", 4) as reader:
        assert (reader.offset, reader.length, reader.read()) == (PART, PART, parts[3])
    with pytest.raises(InvalidPartNumber):
        t0s.get_part("bkt", "k", 1)
    _assert_clean(t0s)  # parts 1 and 3 were released, and nothing else


def test_empty_single_part_makes_an_empty_object(t0s: tier0.Tier0) -> None:
    upload_id, etags = _upload(t0s, "empty", b"")
    info = t0s.complete_multipart_upload("bkt", "empty", upload_id, [(1, etags[0])])
    assert info.size == 0 and t0s.get_bytes("bkt", "empty") == b""
    assert info.etag == _md5s_etag(b"")
    _assert_clean(t0s)


def test_get_part_of_a_plain_object_is_the_whole_object(t0s: tier0.Tier0) -> None:
    t0s.put("bkt", "plain", b"hello")
    with t0s.get_part("bkt", "plain", 1) as reader:
        assert reader.read() == b"hello" and reader.info.parts == ()
    with pytest.raises(InvalidPartNumber):
        t0s.get_part("bkt", "plain", 2)
    with pytest.raises(InvalidArgument):
        t0s.get_part("bkt", "plain", 0)


# -- parts ---------------------------------------------------------------------------------


def test_reuploading_a_part_replaces_it_and_releases_the_old_chunks(t0s: tier0.Tier0) -> None:
    first, second, tail = _data(PART, 1), _data(PART, 2), _data(100, 3)
    upload_id, _ = _upload(t0s, "k", first)
    replaced = t0s.upload_part("bkt", "k", upload_id, 1, second)
    last = t0s.upload_part("bkt", "k", upload_id, 2, tail)
    page = t0s.list_parts("bkt", "k", upload_id)
    assert [(p.number, p.etag, p.size) for p in page.parts] == [
        (1, hashlib.md5(second).hexdigest(), PART),
        (2, hashlib.md5(tail).hexdigest(), 100),
    ]
    assert t0s.stats().unreferenced_chunks == 1  # the first upload of part 1
    with pytest.raises(InvalidPart):  # the replaced part's ETag is gone
        t0s.complete_multipart_upload(
            "bkt", "k", upload_id, [(1, hashlib.md5(first).hexdigest()), (2, last.etag)]
        )
    t0s.complete_multipart_upload("bkt", "k", upload_id, [(1, replaced.etag), (2, last.etag)])
    assert t0s.get_bytes("bkt", "k") == second + tail
    _assert_clean(t0s)


def test_part_numbers_outside_1_to_10000_are_refused(t0s: tier0.Tier0) -> None:
    upload = t0s.create_multipart_upload("bkt", "k")
    for number in (0, 10_001, -1):
        with pytest.raises(InvalidArgument):
            t0s.upload_part("bkt", "k", upload.upload_id, number, b"x")
    assert t0s.upload_part("bkt", "k", upload.upload_id, 10_000, b"x").number == 10_000


def test_parts_need_an_upload_in_progress_for_that_key(t0s: tier0.Tier0) -> None:
    upload = t0s.create_multipart_upload("bkt", "k")
    for attempt in (
        lambda: t0s.upload_part("bkt", "k", "no-such-upload", 1, b"x"),
        lambda: t0s.upload_part("bkt", "other", upload.upload_id, 1, b"x"),
        lambda: t0s.list_parts("bkt", "other", upload.upload_id),
        lambda: t0s.abort_multipart_upload("bkt", "k", "no-such-upload"),
        lambda: t0s.complete_multipart_upload("bkt", "k", "no-such-upload", [(1, "x")]),
    ):
        with pytest.raises(NoSuchUpload):
            attempt()


def test_part_with_a_wrong_stated_checksum_is_not_committed(t0s: tier0.Tier0) -> None:
    upload = t0s.create_multipart_upload("bkt", "k")
    body = _data(PART, 1)
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(BadDigest):
        t0s.upload_part("bkt", "k", upload.upload_id, 1, body, checksums={"crc32": wrong})
    assert t0s.list_parts("bkt", "k", upload.upload_id).parts == []
    right = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    part = t0s.upload_part("bkt", "k", upload.upload_id, 1, body, checksums={"crc32": right})
    assert part.checksums == {"crc32": right}
    _assert_clean(t0s)


def test_oversized_part_stream_is_cut_short() -> None:
    blocks = iter([b"x" * 6, b"y" * 6, b"z" * 6])
    capped = _multipart._capped(blocks, 10)
    assert next(capped) == b"x" * 6
    with pytest.raises(EntityTooLarge):
        next(capped)
    assert next(blocks) == b"z" * 6  # nothing past the limit was taken


def test_upload_part_copy_takes_a_range_of_another_object(t0s: tier0.Tier0) -> None:
    source = _data(3 * PART, 7)
    t0s.put("bkt", "source", source)
    upload = t0s.create_multipart_upload("bkt", "k")
    copied = t0s.upload_part_copy(
        "bkt", "k", upload.upload_id, 1, "bkt", "source", offset=100, length=PART
    )
    assert copied.etag == hashlib.md5(source[100 : 100 + PART]).hexdigest()
    whole = t0s.upload_part_copy("bkt", "k", upload.upload_id, 2, "bkt", "source")
    assert whole.size == len(source)
    with pytest.raises(InvalidRange):
        t0s.upload_part_copy(
            "bkt", "k", upload.upload_id, 3, "bkt", "source", offset=2 * PART, length=PART + 1
        )
    with pytest.raises(NoSuchKey):
        t0s.upload_part_copy("bkt", "k", upload.upload_id, 3, "bkt", "missing")
    t0s.complete_multipart_upload("bkt", "k", upload.upload_id, [(1, copied.etag), (2, whole.etag)])
    assert t0s.get_bytes("bkt", "k") == source[100 : 100 + PART] + source
    _assert_clean(t0s)


# -- completion rules ----------------------------------------------------------------------


def test_wrong_etag_or_missing_part_is_an_invalid_part(t0s: tier0.Tier0) -> None:
    upload_id, etags = _upload(t0s, "k", _data(PART, 1), _data(10, 2))
    for parts in (
        [(1, etags[0]), (2, etags[0])],  # part 2 named with part 1's ETag
        [(1, etags[0]), (3, etags[1])],  # never uploaded
        [(1, "0" * 32)],
    ):
        with pytest.raises(InvalidPart):
            t0s.complete_multipart_upload("bkt", "k", upload_id, parts)
    # Quoted and upper-case ETags are the same ETag; the upload survived the failures.
    info = t0s.complete_multipart_upload(
        "bkt", "k", upload_id, [(1, f'"{etags[0].upper()}"'), (2, etags[1])]
    )
    assert info.size == PART + 10
    with pytest.raises(NoSuchKey):
        t0s.head("bkt", "never")
    assert [e.type for e in t0s.events.read(0)].count("ObjectCreated:CompleteMultipartUpload") == 1


def test_parts_out_of_order_or_twice_are_an_invalid_part_order(t0s: tier0.Tier0) -> None:
    upload_id, etags = _upload(t0s, "k", _data(PART, 1), _data(PART, 2))
    for parts in ([(2, etags[1]), (1, etags[0])], [(1, etags[0]), (1, etags[0])]):
        with pytest.raises(InvalidPartOrder):
            t0s.complete_multipart_upload("bkt", "k", upload_id, parts)
    with pytest.raises(InvalidArgument):
        t0s.complete_multipart_upload("bkt", "k", upload_id, [])
    t0s.complete_multipart_upload("bkt", "k", upload_id, [(1, etags[0]), (2, etags[1])])


def test_completion_copies_no_data(t0s: tier0.Tier0) -> None:
    parts = [_data(2 * MiB, n) for n in range(3)]
    upload_id, etags = _upload(t0s, "k", *parts)
    before = t0s.stats()
    files_before = sorted(t0s._kernel.chunks.names())
    with t0s._kernel.meta.reader() as db:
        manifests = [
            bytes(row[0])
            for row in db.query_all(
                "SELECT manifest FROM t0_upload_parts WHERE upload_id = ? ORDER BY part_number",
                (upload_id,),
            )
        ]
    t0s.complete_multipart_upload("bkt", "k", upload_id, list(enumerate(etags, 1)))
    after = t0s.stats()
    assert (after.chunk_count, after.chunk_stored_bytes, after.referenced_chunk_bytes) == (
        before.chunk_count,
        before.chunk_stored_bytes,
        before.referenced_chunk_bytes,
    )
    assert after.unreferenced_chunks == 0
    assert sorted(t0s._kernel.chunks.names()) == files_before
    with t0s._kernel.meta.reader() as db:
        (manifest,) = db.query_one("SELECT manifest FROM t0_versions WHERE key = 'k'")
    assert bytes(manifest) == b"".join(manifests)
    assert t0s.get_bytes("bkt", "k") == b"".join(parts)
    _assert_clean(t0s)


def test_conditional_completion(t0s: tier0.Tier0) -> None:
    existing = t0s.put("bkt", "k", b"old", md5=True)
    upload_id, etags = _upload(t0s, "k", _data(10, 1))
    parts = [(1, etags[0])]
    with pytest.raises(PreconditionFailed):
        t0s.complete_multipart_upload("bkt", "k", upload_id, parts, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        t0s.complete_multipart_upload("bkt", "k", upload_id, parts, if_match="0" * 32)
    assert t0s.get_bytes("bkt", "k") == b"old"
    info = t0s.complete_multipart_upload("bkt", "k", upload_id, parts, if_match=existing.etag)
    assert t0s.head("bkt", "k").etag == info.etag
    other, etags = _upload(t0s, "fresh", _data(10, 2))
    t0s.complete_multipart_upload("bkt", "fresh", other, [(1, etags[0])], if_none_match="*")
    _assert_clean(t0s)


def test_completion_is_one_event_one_audit_row_and_counted_in_prefixes(
    t0s: tier0.Tier0,
) -> None:
    upload_id, etags = _upload(t0s, "dir/k", _data(PART, 1), _data(5, 2))
    seq = t0s.events.latest_seq()
    audited = t0s.sql("SELECT count(*) FROM audit WHERE action = 's3:PutObject'").rows[0][0]
    info = t0s.complete_multipart_upload("bkt", "dir/k", upload_id, list(enumerate(etags, 1)))
    events = t0s.events.read(seq)
    assert [(e.type, e.key, e.etag, e.size) for e in events] == [
        ("ObjectCreated:CompleteMultipartUpload", "dir/k", info.etag, PART + 5)
    ]
    assert events[0].detail == {"upload_id": upload_id, "parts": 2}
    now = t0s.sql("SELECT count(*) FROM audit WHERE action = 's3:PutObject'").rows[0][0]
    assert now == audited + 1
    rows = t0s.sql("SELECT prefix, objects, bytes FROM prefixes ORDER BY prefix").rows
    assert [tuple(r) for r in rows] == [("", 1, PART + 5), ("dir/", 1, PART + 5)]


def test_versioned_bucket_keeps_each_completion(t0s: tier0.Tier0) -> None:
    t0s.set_versioning("bkt", "Enabled")
    first_id, first = _upload(t0s, "k", _data(10, 1))
    one = t0s.complete_multipart_upload("bkt", "k", first_id, [(1, first[0])])
    second_id, second = _upload(t0s, "k", _data(20, 2))
    two = t0s.complete_multipart_upload("bkt", "k", second_id, [(1, second[0])])
    assert one.version_id != two.version_id
    assert t0s.get_bytes("bkt", "k", version_id=one.version_id) == _data(10, 1)
    assert t0s.get_bytes("bkt", "k") == _data(20, 2)
    _assert_clean(t0s)


# -- checksums -----------------------------------------------------------------------------

_ONE_SHOT = {
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "crc32c": lambda data: google_crc32c.value(data).to_bytes(4, "big"),
    "crc64nvme": lambda data: crt_checksums.crc64nvme(data).to_bytes(8, "big"),
    "sha1": lambda data: hashlib.sha1(data).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "sha1", "sha256"])
def test_composite_checksum_is_the_checksum_of_the_part_checksums(
    t0s: tier0.Tier0, algorithm: str
) -> None:
    parts = [_data(PART, 1), _data(PART + 1, 2), _data(7, 3)]
    upload_id, etags = _upload(t0s, "k", *parts, checksum_algorithm=algorithm.upper())
    listed = t0s.list_parts("bkt", "k", upload_id).parts
    digests = [_ONE_SHOT[algorithm](part) for part in parts]
    assert [p.checksums for p in listed] == [{algorithm: _b64(d)} for d in digests]
    want = f"{_b64(_ONE_SHOT[algorithm](b''.join(digests)))}-3"
    refs = [
        PartRef(n, etag, {algorithm: _b64(d)})
        for n, (etag, d) in enumerate(zip(etags, digests, strict=True), 1)
    ]
    info = t0s.complete_multipart_upload("bkt", "k", upload_id, refs, checksums={algorithm: want})
    assert info.checksums == {algorithm: want}
    assert [p.checksums for p in t0s.head("bkt", "k").parts] == [
        {algorithm: _b64(d)} for d in digests
    ]


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme"])
def test_full_object_checksum_is_the_crc_of_the_whole_object(
    t0s: tier0.Tier0, algorithm: str
) -> None:
    parts = [_data(PART, 1), _data(PART + 3, 2), _data(9, 3)]
    upload_id, etags = _upload(
        t0s, "k", *parts, checksum_algorithm=algorithm, checksum_type="FULL_OBJECT"
    )
    want = _b64(_ONE_SHOT[algorithm](b"".join(parts)))
    wrong = _b64(_ONE_SHOT[algorithm](b"something else"))
    with pytest.raises(BadDigest):
        t0s.complete_multipart_upload(
            "bkt", "k", upload_id, list(enumerate(etags, 1)), checksums={algorithm: wrong}
        )
    info = t0s.complete_multipart_upload(
        "bkt", "k", upload_id, list(enumerate(etags, 1)), checksums={algorithm: want}
    )
    assert info.checksums == {algorithm: want}


def test_a_stated_part_checksum_must_match_at_completion(t0s: tier0.Tier0) -> None:
    upload_id, etags = _upload(t0s, "k", _data(10, 1), checksum_algorithm="crc32")
    wrong = PartRef(1, etags[0], {"crc32": _b64(zlib.crc32(b"no").to_bytes(4, "big"))})
    with pytest.raises(InvalidPart):
        t0s.complete_multipart_upload("bkt", "k", upload_id, [wrong])
    with pytest.raises(InvalidArgument):  # not the upload's algorithm
        t0s.complete_multipart_upload(
            "bkt", "k", upload_id, [(1, etags[0])], checksums={"sha256": _b64(b"x" * 32)}
        )
    t0s.complete_multipart_upload("bkt", "k", upload_id, [(1, etags[0])])


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        ("sha256", "FULL_OBJECT"),
        ("sha1", "FULL_OBJECT"),
        ("crc64nvme", "COMPOSITE"),
        ("md5", None),
        ("crc32", "WHOLE"),
        (None, "COMPOSITE"),
    ],
)
def test_checksum_settings_s3_does_not_allow_are_refused(
    t0s: tier0.Tier0, algorithm: str | None, kind: str | None
) -> None:
    with pytest.raises(InvalidArgument):
        t0s.create_multipart_upload("bkt", "k", checksum_algorithm=algorithm, checksum_type=kind)
    assert t0s.list_multipart_uploads("bkt").uploads == []


def test_checksum_type_defaults_like_s3(t0s: tier0.Tier0) -> None:
    assert t0s.create_multipart_upload("bkt", "a", checksum_algorithm="CRC32").checksum_type == (
        "COMPOSITE"
    )
    upload = t0s.create_multipart_upload("bkt", "b", checksum_algorithm="CRC64NVME")
    assert (upload.checksum_algorithm, upload.checksum_type) == ("crc64nvme", "FULL_OBJECT")


@given(
    algorithm=st.sampled_from(["crc32", "crc32c", "crc64nvme"]),
    first=st.binary(max_size=300),
    second=st.binary(max_size=300),
)
def test_combine_crc_equals_the_crc_of_the_concatenation(
    algorithm: str, first: bytes, second: bytes
) -> None:
    crc = _ONE_SHOT[algorithm]
    assert combine_crc(algorithm, crc(first), crc(second), len(second)) == crc(first + second)


def test_combine_crc_over_long_lengths() -> None:
    # Long zero runs exercise high powers of x without long data.
    for algorithm in ("crc32", "crc32c", "crc64nvme"):
        crc = _ONE_SHOT[algorithm]
        first, second = b"abc", bytes(5 * MiB + 3)
        assert combine_crc(algorithm, crc(first), crc(second), len(second)) == crc(first + second)


# -- abort, GC, check, reopen ---------------------------------------------------------------


def test_parts_survive_gc_and_abort_releases_their_chunks(t0s: tier0.Tier0) -> None:
    parts = [_data(2 * MiB, 1), _data(PART, 2)]
    upload_id, _ = _upload(t0s, "k", *parts)
    chunks = t0s.stats().chunk_count
    assert chunks >= 2
    assert t0s.gc(grace_s=0).chunks_deleted == 0  # the parts hold them
    _assert_clean(t0s)
    t0s.abort_multipart_upload("bkt", "k", upload_id)
    assert t0s.stats().unreferenced_chunks == chunks
    with pytest.raises(NoSuchUpload):
        t0s.upload_part("bkt", "k", upload_id, 3, b"late")
    with pytest.raises(NoSuchUpload):
        t0s.abort_multipart_upload("bkt", "k", upload_id)
    assert t0s.gc().chunks_deleted == 0  # within the grace period
    assert t0s.gc(grace_s=0).chunks_deleted == chunks
    assert t0s.stats().chunk_count == 0
    _assert_clean(t0s)


def test_gc_aborts_uploads_past_their_expiry(tmp_path: pathlib.Path, meta_url: str) -> None:
    config = StoreConfig(part_bytes_min=PART, upload_expiry_s=3600)
    with tier0.open(tmp_path / "data", meta=meta_url, config=config) as t0:
        t0.create_bucket("bkt")
        _upload(t0, "young", _data(2 * MiB, 1))
        assert t0.gc(grace_s=0).uploads_expired == 0  # an hour to go
        chunks = t0.stats().chunk_count
        assert chunks >= 1
    expiring = StoreConfig(part_bytes_min=PART, upload_expiry_s=0)
    with tier0.open(tmp_path / "data", meta=meta_url, config=expiring) as t0:
        report = t0.gc()
        assert report.uploads_expired == 1
        assert report.chunks_deleted == 0  # released now: the grace period starts
        assert t0.list_multipart_uploads("bkt").uploads == []
        assert t0.stats().unreferenced_chunks == chunks
        assert t0.gc(grace_s=0).chunks_deleted == chunks
        _assert_clean(t0)


def test_a_completion_retried_gets_the_same_answer(tmp_path: pathlib.Path, meta_url: str) -> None:
    # Its first answer lost, a client completes again: S3 answers with the object made,
    # not NoSuchUpload, as long as that completion's version is still there.
    config = StoreConfig(part_bytes_min=PART, upload_expiry_s=3600)
    with tier0.open(tmp_path / "data", meta=meta_url, config=config) as t0:
        t0.create_bucket("bkt")
        upload_id, etags = _upload(t0, "k", _data(PART, 1), _data(10, 2))
        parts = list(enumerate(etags, start=1))
        info = t0.complete_multipart_upload("bkt", "k", upload_id, parts)
        events = t0.events.latest_seq()
        assert t0.complete_multipart_upload("bkt", "k", upload_id, parts) == info
        assert t0.events.latest_seq() == events  # nothing happened again
        for other in ([parts[0]], [(1, etags[1]), (2, etags[1])]):
            with pytest.raises(tier0.NoSuchUpload):
                t0.complete_multipart_upload("bkt", "k", upload_id, other)
        with pytest.raises(tier0.NoSuchUpload):
            t0.complete_multipart_upload("bkt", "other-key", upload_id, parts)
        t0.put("bkt", "k", b"overwritten")  # the completed version is gone
        with pytest.raises(tier0.NoSuchUpload):
            t0.complete_multipart_upload("bkt", "k", upload_id, parts)
        second, etags = _upload(t0, "k2", _data(10, 3))
        t0.complete_multipart_upload("bkt", "k2", second, [(1, etags[0])])
    expiring = StoreConfig(part_bytes_min=PART, upload_expiry_s=0)
    with tier0.open(tmp_path / "data", meta=meta_url, config=expiring) as t0:
        t0.gc()  # the record of completions goes with the expiry
        with pytest.raises(tier0.NoSuchUpload):
            t0.complete_multipart_upload("bkt", "k2", second, [(1, etags[0])])
        _assert_clean(t0)


def test_check_counts_part_references_and_finds_drift(t0s: tier0.Tier0) -> None:
    _upload(t0s, "k", _data(PART, 1))
    _assert_clean(t0s)
    with t0s._kernel.meta.reader() as db:
        (digest,) = db.query_one("SELECT hash FROM t0_chunks")
    t0s._kernel.committer.run(
        lambda tx: tx.execute("UPDATE t0_chunks SET refcount = 0 WHERE hash = ?", (digest,))
    )
    problems = t0s.check().problems
    assert len(problems) == 1 and "refcount 0, but 1 references exist" in problems[0]


def test_check_deep_verifies_the_composite_checksum(t0s: tier0.Tier0) -> None:
    upload_id, etags = _upload(t0s, "k", _data(PART, 1), _data(5, 2))
    t0s.complete_multipart_upload("bkt", "k", upload_id, list(enumerate(etags, 1)))
    assert t0s.check(deep=True).ok
    forged = "blake3-parts:" + "0" * 64 + "-2"
    t0s._kernel.committer.run(
        lambda tx: tx.execute("UPDATE t0_versions SET checksum = ? WHERE key = 'k'", (forged,))
    )
    assert t0s.check().ok  # the layout still adds up
    problems = t0s.check(deep=True).problems
    assert len(problems) == 1 and "its parts hash to" in problems[0]


def test_deleting_a_bucket_discards_its_uploads(t0s: tier0.Tier0) -> None:
    upload_id, _ = _upload(t0s, "k", _data(PART, 1))
    t0s.delete_bucket("bkt")
    t0s.create_bucket("bkt")
    assert t0s.list_multipart_uploads("bkt").uploads == []
    with pytest.raises(NoSuchUpload):
        t0s.list_parts("bkt", "k", upload_id)
    assert t0s.stats().unreferenced_chunks == 1
    _assert_clean(t0s)


def test_an_uploads_parts_survive_reopening(tmp_path: pathlib.Path, meta_url: str) -> None:
    config = StoreConfig(part_bytes_min=PART)
    parts = [_data(PART, 1), _data(11, 2)]
    with tier0.open(tmp_path / "data", meta=meta_url, config=config) as t0:
        t0.create_bucket("bkt")
        upload_id, etags = _upload(t0, "k", *parts)
    with tier0.open(tmp_path / "data", config=config) as t0:
        listed = t0.list_parts("bkt", "k", upload_id).parts
        assert [p.etag for p in listed] == etags
        assert t0.gc(grace_s=0).chunks_deleted == 0
        t0.complete_multipart_upload("bkt", "k", upload_id, list(enumerate(etags, 1)))
        assert t0.get_bytes("bkt", "k") == b"".join(parts)
        _assert_clean(t0)


# -- listing -------------------------------------------------------------------------------


def test_list_uploads_orders_by_key_bytes_then_initiation(t0s: tier0.Tier0) -> None:
    keys = ["b", "a/2", "é", "a/1", "b", "z", "a/1"]
    ids = [t0s.create_multipart_upload("bkt", key).upload_id for key in keys]
    listed = t0s.list_multipart_uploads("bkt").uploads
    order = sorted(range(len(keys)), key=lambda i: (keys[i].encode(), i))
    assert [(u.key, u.upload_id) for u in listed] == [(keys[i], ids[i]) for i in order]


def test_list_uploads_pages_with_markers_prefix_and_delimiter(t0s: tier0.Tier0) -> None:
    keys = ["a/1", "a/1", "a/2", "b", "c/x", "c/y", "d"]
    ids = [t0s.create_multipart_upload("bkt", key).upload_id for key in keys]
    seen: list[tuple[str, str]] = []
    key_marker = upload_id_marker = None
    while True:
        page = t0s.list_multipart_uploads(
            "bkt", key_marker=key_marker, upload_id_marker=upload_id_marker, limit=2
        )
        seen += [(u.key, u.upload_id) for u in page.uploads]
        if not page.truncated:
            break
        key_marker, upload_id_marker = page.next_key_marker, page.next_upload_id_marker
    assert seen == list(zip(keys, ids, strict=True))
    page = t0s.list_multipart_uploads("bkt", delimiter="/")
    assert [u.key for u in page.uploads] == ["b", "d"] and page.prefixes == ["a/", "c/"]
    page = t0s.list_multipart_uploads("bkt", delimiter="/", limit=2)
    assert (page.prefixes, [u.key for u in page.uploads], page.truncated) == (["a/"], ["b"], True)
    rest = t0s.list_multipart_uploads(
        "bkt", delimiter="/", key_marker=page.next_key_marker,
        upload_id_marker=page.next_upload_id_marker,
    )  # fmt: skip
    assert (rest.prefixes, [u.key for u in rest.uploads]) == (["c/"], ["d"])
    page = t0s.list_multipart_uploads("bkt", prefix="c/")
    assert [u.key for u in page.uploads] == ["c/x", "c/y"]
    # Only uploads of the marker key after the marker id, then later keys.
    page = t0s.list_multipart_uploads("bkt", key_marker="a/1", upload_id_marker=ids[0])
    assert [u.upload_id for u in page.uploads] == ids[1:]
    page = t0s.list_multipart_uploads("bkt", key_marker="a/1")
    assert [u.upload_id for u in page.uploads] == ids[2:]


def test_list_parts_pages_by_part_number(t0s: tier0.Tier0) -> None:
    upload = t0s.create_multipart_upload("bkt", "k")
    for number in (5, 1, 3, 2, 4):
        t0s.upload_part("bkt", "k", upload.upload_id, number, bytes([number]))
    page = t0s.list_parts("bkt", "k", upload.upload_id, limit=2)
    assert ([p.number for p in page.parts], page.truncated, page.next_part_number_marker) == (
        [1, 2],
        True,
        2,
    )
    page = t0s.list_parts("bkt", "k", upload.upload_id, part_number_marker=2, limit=3)
    assert ([p.number for p in page.parts], page.truncated) == ([3, 4, 5], False)
    assert page.upload.upload_id == upload.upload_id


# -- authorization -------------------------------------------------------------------------


def test_multipart_actions_are_authorized_separately(t0s: tier0.Tier0) -> None:
    bob_principal, _ = t0s.create_user("bob")
    carol_principal, _ = t0s.create_user("carol")
    bob, carol = t0s.as_principal(bob_principal), t0s.as_principal(carol_principal)
    with pytest.raises(AccessDenied):
        bob.create_multipart_upload("bkt", "k")
    t0s.grant(bob_principal, "s3:PutObject", "/bkt/*")
    t0s.grant(carol_principal, "s3:PutObject", "/bkt/*")
    upload_id, etags = _upload(bob, "k", _data(10, 1))
    # As in S3, the initiator lists the parts of its upload and may abort it; writing
    # to the bucket is not enough to do either to someone else's upload, nor to list
    # the bucket's uploads.
    for attempt in (
        lambda: carol.list_parts("bkt", "k", upload_id),
        lambda: carol.abort_multipart_upload("bkt", "k", upload_id),
        lambda: bob.list_multipart_uploads("bkt"),
    ):
        with pytest.raises(AccessDenied):
            attempt()
    assert [p.etag for p in bob.list_parts("bkt", "k", upload_id).parts] == etags
    t0s.grant(bob_principal, "s3:ListBucketMultipartUploads", "/bkt")
    assert [u.initiator for u in bob.list_multipart_uploads("bkt").uploads] == [bob_principal.id]
    t0s.grant(carol_principal, "s3:AbortMultipartUpload", "/bkt/*")
    carol.abort_multipart_upload("bkt", "k", upload_id)
    t0s._kernel.authorizer.flush()  # denials are buffered; the abort's row is in its commit
    rows = t0s.sql(
        f"SELECT action, allowed FROM audit WHERE principal = '{carol_principal.id}'"
        " AND action = 's3:AbortMultipartUpload'"
    ).rows
    assert collections.Counter((r[0], r[1]) for r in rows) == {
        ("s3:AbortMultipartUpload", 0): 1,
        ("s3:AbortMultipartUpload", 1): 1,
    }
    upload_id, _ = _upload(bob, "k", _data(10, 2))
    bob.abort_multipart_upload("bkt", "k", upload_id)
    with pytest.raises(tier0.NoSuchUpload):
        t0s.list_parts("bkt", "k", upload_id)


def test_uploads_in_progress_are_in_the_catalog(t0s: tier0.Tier0) -> None:
    upload_id, _ = _upload(t0s, "big/file", _data(PART, 1), _data(300, 2))
    t0s.create_multipart_upload("bkt", "empty")
    rows = t0s.sql("SELECT key, upload_id, parts, bytes, initiator FROM uploads ORDER BY key").rows
    assert [tuple(row) for row in rows] == [
        ("big/file", upload_id, 2, PART + 300, "root"),
        ("empty", rows[1][1], 0, 0, "root"),
    ]
    # Scoped like every catalog view: another principal sees only its buckets.
    other, _ = t0s.create_user("other")
    assert t0s.as_principal(other).sql("SELECT count(*) FROM uploads").rows[0][0] == 0
    t0s.abort_multipart_upload("bkt", "big/file", upload_id)
    assert [r[0] for r in t0s.sql("SELECT key FROM uploads").rows] == ["empty"]
