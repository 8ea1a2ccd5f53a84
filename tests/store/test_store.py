"""The element store's behaviour, on every metadata backend.

Every test here takes the ``t0`` fixture, which is parametrized over SQLite
and PostgreSQL: this module is the metadata conformance kit. A new backend
joins by adding a parameter to the fixture.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

import tier0
from tier0.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketNotEmpty,
    ConditionalRequestConflict,
    DeleteMarkerFound,
    InvalidArgument,
    InvalidBucketName,
    InvalidKey,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    PreconditionFailed,
)


def _random(size: int, seed: int = 0) -> bytes:
    # Deterministic incompressible bytes: SHA-256 in counter mode.
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 1
        counter += 1
    return bytes(out[:size])


def test_put_get_round_trip_inline_and_chunked(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    small = b"hello world"
    large = _random(3 * 1024 * 1024 + 17, seed=1)
    t0.put("bkt", "small", small)
    t0.put("bkt", "large", large)
    assert t0.get_bytes("bkt", "small") == small
    assert t0.get_bytes("bkt", "large") == large
    assert t0.head("bkt", "large").size == len(large)
    # Inline values are encoded like chunks: a small header, compressed when that pays.
    assert len(small) < t0.head("bkt", "small").stored_bytes <= len(small) + 16
    text = b"the same line again and again\n" * 3000
    assert t0.put("bkt", "text", text).stored_bytes < len(text) / 4
    assert t0.get_bytes("bkt", "text", offset=100, length=50) == text[100:150]


def test_put_streams_from_iterator_and_file(t0: tier0.Tier0, tmp_path: os.PathLike[str]) -> None:
    t0.create_bucket("bkt")
    blocks = [_random(100_000, seed=i) for i in range(30)]
    info = t0.put("bkt", "it", iter(blocks))
    assert info.size == sum(len(b) for b in blocks)
    assert t0.get_bytes("bkt", "it") == b"".join(blocks)
    path = os.path.join(tmp_path, "f.bin")
    with open(path, "wb") as handle:
        handle.write(b"".join(blocks[:5]))
    with open(path, "rb") as handle:
        t0.put("bkt", "file", handle)
    assert t0.get_bytes("bkt", "file") == b"".join(blocks[:5])


def test_empty_object_round_trips(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    info = t0.put("bkt", "empty", b"")
    assert info.size == 0
    assert t0.get_bytes("bkt", "empty") == b""


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 1),
        (5, 100),
        (1_048_575, 2),
        (2_000_000, None),
        (0, None),
        (3_145_727, 1),
        (3_145_728, 0),
    ],
)
def test_range_reads_return_exact_slices(t0: tier0.Tier0, offset: int, length: int | None) -> None:
    t0.create_bucket("bkt")
    data = _random(3 * 1024 * 1024, seed=2)
    t0.put("bkt", "k", data)
    expected = data[offset:] if length is None else data[offset : offset + length]
    assert t0.get_bytes("bkt", "k", offset=offset, length=length) == expected


def test_range_past_end_is_rejected(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", b"abc")
    with pytest.raises(InvalidRange):
        t0.get("bkt", "k", offset=4)


def test_dedup_shares_chunks_and_copy_is_metadata_only(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    data = _random(4 * 1024 * 1024, seed=3)
    t0.put("bkt", "a", data)
    before = t0.stats()
    t0.put("bkt", "b", data)
    t0.copy("bkt", "a", "bkt", "c")
    after = t0.stats()
    assert after.chunk_count == before.chunk_count
    assert after.chunk_stored_bytes == before.chunk_stored_bytes
    assert after.referenced_chunk_bytes == 3 * before.referenced_chunk_bytes
    assert t0.get_bytes("bkt", "c") == data
    assert after.dedup_ratio == pytest.approx(3.0)


def test_compressible_data_is_stored_smaller(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    data = b"".join(
        b'{"level": "info", "n": %d, "msg": "request served"}\n' % i for i in range(80_000)
    )
    info = t0.put("bkt", "log.jsonl", data)
    assert info.stored_bytes < len(data) / 3
    assert t0.get_bytes("bkt", "log.jsonl") == data


def test_copy_replaces_metadata_when_asked(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "src", b"x" * 10, metadata={"a": "1"}, content_type="text/plain")
    kept = t0.copy("bkt", "src", "bkt", "kept")
    replaced = t0.copy(
        "bkt", "src", "bkt", "new", metadata={"b": "2"}, content_type="application/json"
    )
    assert (kept.metadata, kept.content_type) == ({"a": "1"}, "text/plain")
    assert (replaced.metadata, replaced.content_type) == ({"b": "2"}, "application/json")
    assert t0.head("bkt", "new").metadata == {"b": "2"}


def test_unversioned_overwrite_drops_old_chunks(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", _random(2 * 1024 * 1024, seed=4))
    t0.put("bkt", "k", _random(2 * 1024 * 1024, seed=5))
    stats = t0.stats()
    assert stats.versions == 1
    assert stats.unreferenced_chunks > 0
    report = t0.gc(grace_s=0)
    assert report.chunks_deleted == stats.unreferenced_chunks
    assert t0.stats().unreferenced_chunks == 0
    assert t0.get_bytes("bkt", "k") == _random(2 * 1024 * 1024, seed=5)
    assert t0.check(deep=True).ok


def test_versioning_keeps_versions_and_delete_markers(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", b"v0")  # the null version, from before versioning
    t0.set_versioning("bkt", "Enabled")
    assert t0.get_versioning("bkt") == "Enabled"
    v1 = t0.put("bkt", "k", b"v1")
    v2 = t0.put("bkt", "k", b"v2")
    assert v1.version_id != v2.version_id != "null"
    assert t0.get_bytes("bkt", "k") == b"v2"
    assert t0.get_bytes("bkt", "k", version_id=v1.version_id) == b"v1"
    assert t0.get_bytes("bkt", "k", version_id="null") == b"v0"
    marker = t0.delete("bkt", "k")
    assert marker.delete_marker and marker.deleted
    with pytest.raises(NoSuchKey):
        t0.get("bkt", "k")
    versions = t0.list_versions("bkt").versions
    assert [(v.version_id, v.is_latest, v.is_delete_marker) for v in versions] == [
        (marker.version_id, True, True),
        (v2.version_id, False, False),
        (v1.version_id, False, False),
        ("null", False, False),
    ]
    # Removing the delete marker brings the previous version back.
    t0.delete("bkt", "k", version_id=marker.version_id)
    assert t0.get_bytes("bkt", "k") == b"v2"
    t0.delete("bkt", "k", version_id=v2.version_id)
    assert t0.get_bytes("bkt", "k") == b"v1"
    with pytest.raises(NoSuchVersion):
        t0.get("bkt", "k", version_id="no-such-version")
    assert t0.check().ok


def test_suspended_versioning_overwrites_the_null_version(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    kept = t0.put("bkt", "k", b"kept")
    t0.set_versioning("bkt", "Suspended")
    t0.put("bkt", "k", b"null-1")
    t0.put("bkt", "k", b"null-2")
    ids = [v.version_id for v in t0.list_versions("bkt").versions]
    assert ids == ["null", kept.version_id]
    assert t0.get_bytes("bkt", "k") == b"null-2"
    marker = t0.delete("bkt", "k")
    assert marker.version_id == "null" and marker.delete_marker
    assert [v.is_delete_marker for v in t0.list_versions("bkt").versions] == [True, False]


def test_versioning_cannot_return_to_unversioned(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    with pytest.raises(InvalidArgument):
        t0.set_versioning("bkt", "Unversioned")


def test_listing_with_prefix_delimiter_and_pages(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    keys = ["a/1", "a/2", "a/b/3", "b", "c/x", "c/y", "d", "é", "z/"]
    for key in keys:
        t0.put("bkt", key, key.encode())
    page = t0.list("bkt", delimiter="/")
    assert [o.key for o in page.objects] == ["b", "d", "é"]
    assert page.prefixes == ["a/", "c/", "z/"]
    assert not page.truncated
    nested = t0.list("bkt", prefix="a/", delimiter="/")
    assert [o.key for o in nested.objects] == ["a/1", "a/2"] and nested.prefixes == ["a/b/"]
    # Pagination: each object or prefix counts toward the limit.
    seen: list[str] = []
    start_after = None
    while True:
        page = t0.list("bkt", delimiter="/", limit=2, start_after=start_after)
        seen += [o.key for o in page.objects] + page.prefixes
        if not page.truncated:
            break
        start_after = page.next_start_after
    assert sorted(seen) == sorted(["a/", "b", "c/", "d", "é", "z/"])
    assert [o.key for o in t0.iter_objects("bkt")] == sorted(keys, key=lambda k: k.encode())


def test_listing_orders_keys_by_utf8_bytes(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    keys = ["Z", "a", "ä", "\u4e2d", "\U0001f600", "~", "A"]
    for key in keys:
        t0.put("bkt", key, b"")
    assert [o.key for o in t0.list("bkt").objects] == sorted(keys, key=lambda k: k.encode())


def test_list_versions_pages_with_markers(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    expected = []
    for key in ["a", "b", "c"]:
        ids = [t0.put("bkt", key, f"{key}{i}".encode()).version_id for i in range(3)]
        expected += [(key, vid) for vid in reversed(ids)]
    seen = []
    key_marker = version_marker = None
    while True:
        page = t0.list_versions(
            "bkt", limit=2, key_marker=key_marker, version_marker=version_marker
        )
        seen += [(v.key, v.version_id) for v in page.versions]
        if not page.truncated:
            break
        key_marker, version_marker = page.next_key_marker, page.next_version_marker
    assert seen == expected


@pytest.mark.parametrize(
    "name", ["ab", "A-bucket", "a..b", "-ab", "192.168.1.1", "xn--abc", "a" * 64, "a_b"]
)
def test_invalid_bucket_names_are_rejected(t0: tier0.Tier0, name: str) -> None:
    with pytest.raises(InvalidBucketName):
        t0.create_bucket(name)
    assert t0.list_buckets() == []


@pytest.mark.parametrize("key", ["", "a\x00b", "x" * 1025, "é" * 513, "bad\udc80"])
def test_invalid_keys_are_rejected_and_nothing_is_written(t0: tier0.Tier0, key: str) -> None:
    t0.create_bucket("bkt")
    with pytest.raises(InvalidKey):
        t0.put("bkt", key, b"data")
    assert t0.stats().versions == 0
    assert t0.events.latest_seq() == 1  # only BucketCreated


@pytest.mark.parametrize(
    "key", ["../x", "a/../../b", "..\\x", "/abs", "a//b", ".", "..", "x" * 1024]
)
def test_path_like_keys_are_opaque_and_round_trip(t0: tier0.Tier0, key: str) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", key, key.encode())
    assert t0.get_bytes("bkt", key) == key.encode()
    assert [o.key for o in t0.list("bkt").objects] == [key]
    # Nothing named after the key exists on disk: chunks live under hash names.
    assert t0.data_dir is not None
    for _root, dirs, files in os.walk(t0.data_dir):
        assert key not in dirs + files


def test_bucket_lifecycle(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    with pytest.raises(BucketAlreadyExists):
        t0.create_bucket("bkt")
    t0.put("bkt", "k", b"x")
    with pytest.raises(BucketNotEmpty):
        t0.delete_bucket("bkt")
    t0.delete("bkt", "k")
    t0.delete_bucket("bkt")
    with pytest.raises(NoSuchBucket):
        t0.put("bkt", "k", b"x")
    assert t0.list_buckets() == []


def test_conditional_writes(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    first = t0.put("bkt", "k", b"1", if_none_match="*")
    with pytest.raises(PreconditionFailed):
        t0.put("bkt", "k", b"2", if_none_match="*")
    with pytest.raises(PreconditionFailed):
        t0.put("bkt", "k", b"2", if_match="not-the-etag")
    t0.put("bkt", "k", b"3", if_match=first.etag)
    assert t0.get_bytes("bkt", "k") == b"3"


@pytest.mark.parametrize("condition", [{"if_none_match": "*"}, {"if_match": "etag-of-k"}])
def test_condition_broken_while_the_data_streams_is_a_conflict(
    t0: tier0.Tier0, condition: dict[str, str]
) -> None:
    t0.create_bucket("bkt")
    if "if_match" in condition:
        condition = {"if_match": t0.put("bkt", "k", b"before").etag}
    events = t0.events.latest_seq()

    def body() -> Iterator[bytes]:
        yield b"racing"
        # Another writer commits after the condition was checked, before this one does.
        t0.put("bkt", "k", b"winner")

    with pytest.raises(ConditionalRequestConflict) as raised:
        t0.put("bkt", "k", body(), **condition)
    assert isinstance(raised.value, PreconditionFailed)  # callers catching that keep working
    assert t0.get_bytes("bkt", "k") == b"winner"
    assert t0.events.latest_seq() == events + 1  # the winner's event, none of the loser's


def test_prepared_puts_commit_together_and_each_settles_to_its_own_result(
    t0: tier0.Tier0,
) -> None:
    t0.create_bucket("bkt")
    events = t0.events.latest_seq()
    prepared = [
        t0.prepare_put("bkt", "a", b"alpha"),
        t0.prepare_put("bkt", "b", b"beta", metadata={"m": "1"}),
        t0.prepare_put("bkt", "c", b"late", if_none_match="*"),
    ]
    # Prepared is not written: nothing to read, no event.
    with pytest.raises(NoSuchKey):
        t0.head("bkt", "a")
    assert t0.events.latest_seq() == events
    t0.put("bkt", "c", b"first")  # breaks the third one's condition after it was checked
    commits = t0.statistics().commits
    outcomes = tier0.store.PreparedWrite.commit_many(prepared)
    assert t0.statistics().commits == commits + 1
    a, b = prepared[0].settle(outcomes[0]), prepared[1].settle(outcomes[1])
    assert (a.key, a.size, b.key, b.metadata) == ("a", 5, "b", {"m": "1"})
    assert t0.head("bkt", "a").etag == a.etag
    with pytest.raises(ConditionalRequestConflict):
        prepared[2].settle(outcomes[2])
    assert [t0.get_bytes("bkt", k) for k in "abc"] == [b"alpha", b"beta", b"first"]
    assert t0.events.latest_seq() == events + 3  # c's first put, a and b


def test_a_prepared_put_decided_on_a_stale_owner_is_decided_again(
    t0: tier0.Tier0,
) -> None:
    alice, _ = t0.create_user("alice")
    t0.grant(alice, "s3:CreateBucket", "/*")
    as_alice = t0.as_principal(alice)
    as_alice.create_bucket("bkt")
    write = as_alice.prepare_put("bkt", "k", b"x")  # allowed: alice owns the bucket
    # The bucket changes hands before the commit: the transaction refuses the
    # stale decision, and settle decides again, with the owner now.
    t0._kernel.committer.run(
        lambda tx: tx.execute("UPDATE t0_buckets SET owner = 'root' WHERE name = 'bkt'")
    )
    outcomes = tier0.store.PreparedWrite.commit_many([write])
    assert isinstance(outcomes[0].error, tier0.store.StaleOwner)
    with pytest.raises(AccessDenied):
        write.settle(outcomes[0])
    assert t0.list("bkt").objects == []


def test_failed_condition_is_decided_before_the_data_is_read(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", b"there")
    read: list[bytes] = []

    def body() -> Iterator[bytes]:
        read.append(b"x")
        yield b"x"

    with pytest.raises(PreconditionFailed) as raised:
        t0.put("bkt", "k", body(), if_none_match="*")
    assert not isinstance(raised.value, ConditionalRequestConflict)
    with pytest.raises(NoSuchKey):
        t0.put("bkt", "absent", body(), if_match="whatever")
    assert read == []


def test_reading_a_delete_marker_says_which(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    t0.put("bkt", "k", b"v1")
    marker = t0.delete("bkt", "k")
    assert marker.delete_marker and marker.version_id is not None
    with pytest.raises(DeleteMarkerFound) as current:
        t0.head("bkt", "k")
    assert (current.value.version_id, current.value.by_version) == (marker.version_id, False)
    with pytest.raises(DeleteMarkerFound) as named:
        t0.get("bkt", "k", version_id=marker.version_id)
    assert (named.value.version_id, named.value.by_version) == (marker.version_id, True)
    assert named.value.modified == current.value.modified
    assert isinstance(named.value, NoSuchKey)  # a marker has no content to read


def test_md5_etag_when_asked(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    data = _random(2_000_000, seed=9)
    assert t0.put("bkt", "k", data, md5=True).etag == hashlib.md5(data).hexdigest()


def test_tags_and_metadata(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", b"x", metadata={"owner": "ann"}, tags={"stage": "raw"})
    assert t0.head("bkt", "k").metadata == {"owner": "ann"}
    assert t0.get_tags("bkt", "k") == {"stage": "raw"}
    t0.set_tags("bkt", "k", {"stage": "clean"})
    assert t0.get_tags("bkt", "k") == {"stage": "clean"}
    with pytest.raises(tier0.TooManyTags):
        t0.set_tags("bkt", "k", {f"t{i}": "v" for i in range(11)})
    with pytest.raises(tier0.MetadataTooLarge):
        t0.put("bkt", "big-metadata", b"x", metadata={"m": "v" * 3000})
    with pytest.raises(tier0.KeyTooLong):
        t0.put("bkt", "k" * 1025, b"x")


def test_annotate_merges_metadata_in_place_as_an_event(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    first = t0.put("bkt", "k", b"x", metadata={"owner": "ann"})
    second = t0.put("bkt", "k", b"y")
    assert t0.annotate("bkt", "k", {"tier0-type": "text/plain"}) == second.version_id
    t0.annotate("bkt", "k", {"lang": "en"}, version_id=first.version_id)
    assert t0.head("bkt", "k").metadata == {"tier0-type": "text/plain"}
    older = t0.head("bkt", "k", version_id=first.version_id).metadata
    assert older == {"owner": "ann", "lang": "en"}
    assert t0.get("bkt", "k").read() == b"y"  # no new version, the bytes untouched
    [event] = [e for e in t0.events.read(0) if e.type == "ObjectMetadata:Put"][-1:]
    assert (event.key, event.version_id, event.detail) == (
        "k", first.version_id, {"metadata": {"lang": "en"}},
    )  # fmt: skip
    with pytest.raises(tier0.MetadataTooLarge):
        t0.annotate("bkt", "k", {"m": "v" * 3000})
    with pytest.raises(tier0.NoSuchKey):
        t0.annotate("bkt", "nope", {"a": "b"})
    t0.create_user("bob")
    t0.grant("bob", "s3:*", "/bkt/*")
    with pytest.raises(tier0.AccessDenied):  # an annotation is its own right
        t0.as_principal("bob").annotate("bkt", "k", {"a": "b"})
    t0.grant("bob", "tier0:AnnotateObject", "/bkt/*")
    t0.as_principal("bob").annotate("bkt", "k", {"a": "b"})


def test_tags_are_read_and_changed_as_actions_of_their_own(t0: tier0.Tier0) -> None:
    # As in S3: reading an object does not show its tags, tagging does not untag, and
    # a named version is an action of its own.
    t0.create_bucket("bkt")
    put = t0.put("bkt", "k", b"x", tags={"stage": "raw"})
    bob, _ = t0.create_user("bob")
    as_bob = t0.as_principal(bob)
    t0.grant(bob, "s3:GetObject", "/bkt/*")
    t0.grant(bob, "s3:PutObjectTagging", "/bkt/*")
    assert as_bob.get_bytes("bkt", "k") == b"x"
    with pytest.raises(tier0.AccessDenied):
        as_bob.get_tags("bkt", "k")
    with pytest.raises(tier0.AccessDenied):
        as_bob.delete_tags("bkt", "k")
    with pytest.raises(tier0.AccessDenied):
        as_bob.set_tags("bkt", "k", {"stage": "x"}, version_id=put.version_id)
    as_bob.set_tags("bkt", "k", {"stage": "clean"})
    t0.grant(bob, "s3:GetObjectTagging", "/bkt/*")
    t0.grant(bob, "s3:DeleteObjectTagging", "/bkt/*")
    assert as_bob.object_tags("bkt", "k") == tier0.ObjectTags(put.version_id, {"stage": "clean"})
    with pytest.raises(tier0.AccessDenied):
        as_bob.get_tags("bkt", "k", version_id=put.version_id)
    assert as_bob.delete_tags("bkt", "k") == put.version_id
    assert t0.get_tags("bkt", "k") == {}
    kinds = [e.type for e in t0.events.read(0) if e.type.startswith("ObjectTagging")]
    assert kinds == ["ObjectTagging:Put", "ObjectTagging:Delete"]


def test_a_missing_key_is_told_only_to_who_may_list_the_bucket(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "k", b"x")
    carol, _ = t0.create_user("carol")
    as_carol = t0.as_principal(carol)
    t0.grant(carol, "s3:GetObject", "/bkt/*")
    assert as_carol.get_bytes("bkt", "k") == b"x"
    for read in (lambda: as_carol.head("bkt", "nope"), lambda: as_carol.get("bkt", "nope")):
        with pytest.raises(tier0.AccessDenied):
            read()
    t0.grant(carol, "s3:ListBucket", "/bkt")
    with pytest.raises(tier0.NoSuchKey):
        as_carol.head("bkt", "nope")
    with pytest.raises(tier0.NoSuchVersion):
        as_carol.get("bkt", "k", version_id="no-such-version")


def test_check_put_refuses_what_put_would_before_any_data(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    dave, _ = t0.create_user("dave")
    as_dave = t0.as_principal(dave)
    with pytest.raises(tier0.AccessDenied):
        as_dave.check_put("bkt", "k")
    with pytest.raises(tier0.NoSuchBucket):
        t0.check_put("nope", "k")
    with pytest.raises(tier0.InvalidArgument):
        t0.check_put("bkt", "k", acl="everyone-welcome")
    with pytest.raises(tier0.TooManyTags):
        t0.check_put("bkt", "k", tags={f"t{i}": "v" for i in range(11)})
    t0.grant(dave, "s3:PutObject", "/bkt/*")
    assert as_dave.check_put("bkt", "k", tags={"a": "b"}) is None
    with pytest.raises(tier0.NoSuchKey):
        t0.head("bkt", "k")  # a check writes nothing


def test_reading_a_named_version_asks_for_get_object_version(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    old = t0.put("bkt", "k", b"old")
    t0.put("bkt", "k", b"new")
    erin, _ = t0.create_user("erin")
    as_erin = t0.as_principal(erin)
    t0.grant(erin, "s3:GetObject", "/bkt/*")
    assert as_erin.get_bytes("bkt", "k") == b"new"
    reader = as_erin.get("bkt", "k")
    assert reader.within(1, 2).read() == b"ew"  # a range of the version found, no new check
    for read in (
        lambda: as_erin.get_bytes("bkt", "k", version_id=old.version_id),
        lambda: as_erin.head("bkt", "k", version_id=old.version_id),
    ):
        with pytest.raises(tier0.AccessDenied):
            read()
    t0.grant(erin, "s3:GetObjectVersion", "/bkt/*")
    assert as_erin.get_bytes("bkt", "k", version_id=old.version_id) == b"old"
    with pytest.raises(tier0.InvalidRange):
        t0.get("bkt", "k").within(2, 5)


def test_events_follow_every_mutation_with_gap_free_seq(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    put = t0.put("bkt", "k", b"x")
    t0.copy("bkt", "k", "bkt", "k2")
    t0.delete("bkt", "k")
    t0.delete("bkt", "k2", version_id=t0.head("bkt", "k2").version_id)
    t0.set_tags("bkt", "k", {"a": "b"}, version_id=put.version_id)
    events = t0.events.read(0)
    assert [e.type for e in events] == [
        "BucketCreated",
        "BucketVersioning:Enabled",
        "ObjectCreated:Put",
        "ObjectCreated:Copy",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRemoved:Delete",
        "ObjectTagging:Put",
    ]
    assert [e.seq for e in events] == list(range(1, 8))
    assert events[2].version_id == put.version_id and events[2].size == 1
    assert events[3].detail["source"]["key"] == "k"
    assert all(e.principal == "root" for e in events)
    assert t0.events.read(5) == events[5:]


def test_failed_operations_leave_no_event(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    for attempt in (
        lambda: t0.put("nope", "k", b"x"),
        lambda: t0.delete_bucket("nope"),
        lambda: t0.copy("bkt", "missing", "bkt", "k"),
        lambda: t0.put("bkt", "k", b"x", if_match="x"),
    ):
        with pytest.raises(tier0.Tier0Error):
            attempt()
    t0.put("bkt", "k", b"x")
    assert [e.seq for e in t0.events.read(0)] == [1, 2]


def test_wait_for_events_wakes_on_commit(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    after = t0.events.latest_seq()
    timer = threading.Timer(0.3, lambda: t0.put("bkt", "late", b"x"))
    timer.start()
    events = t0.events.wait(after, timeout_s=10)
    timer.join()
    assert [e.key for e in events] == ["late"]
    assert t0.events.wait(events[-1].seq, timeout_s=0.2) == []


def test_concurrent_writers_to_one_key_last_commit_wins(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    bodies = [_random(200_000 + i, seed=i) for i in range(8)]
    results: list[tier0.ObjectInfo] = []
    lock = threading.Lock()

    def write(body: bytes) -> None:
        info = t0.put("bkt", "k", body)
        with lock:
            results.append(info)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    last = max(results, key=lambda info: info.seq)
    assert t0.get_bytes("bkt", "k") == bodies[[len(b) for b in bodies].index(last.size)]
    assert t0.stats().versions == 1
    assert t0.check().ok


def test_catalog_row_is_visible_when_put_returns(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    for i in range(20):
        t0.put("bkt", f"k{i}", b"x" * i, metadata={"i": str(i)})
        assert t0.sql(f"SELECT size FROM objects WHERE key = 'k{i}'").rows == [(i,)]
    rows = t0.sql("SELECT count(*), sum(size) FROM objects WHERE bucket = 'bkt'").rows
    assert rows == [(20, sum(range(20)))]


def test_pages_ending_on_a_common_prefix_resume_after_it(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    for key in ["a/1", "a/2", "b/1", "c"]:
        t0.put("bkt", key, b"x")
    first = t0.list("bkt", delimiter="/", limit=1)
    assert (first.prefixes, first.truncated, first.next_start_after) == (["a/"], True, "a/")
    second = t0.list("bkt", delimiter="/", limit=1, start_after=first.next_start_after)
    assert second.prefixes == ["b/"]
    last = t0.list("bkt", delimiter="/", limit=2, start_after=second.next_start_after)
    assert ([o.key for o in last.objects], last.truncated) == (["c"], False)
    versions = t0.list_versions("bkt", delimiter="/", limit=1)
    assert (versions.prefixes, versions.next_key_marker) == (["a/"], "a/")
    following = t0.list_versions("bkt", delimiter="/", limit=1, key_marker=versions.next_key_marker)
    assert following.prefixes == ["b/"]


def test_exactly_full_last_page_is_not_truncated(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.put("bkt", "a/1", b"x")
    t0.put("bkt", "b", b"x")
    page = t0.list("bkt", delimiter="/", limit=2)
    assert (page.prefixes, [o.key for o in page.objects], page.truncated) == (["a/"], ["b"], False)
    assert not t0.list("bkt", delimiter="/", limit=1, start_after="a/").truncated


def test_deleted_keys_leave_no_common_prefix(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    t0.set_versioning("bkt", "Enabled")
    t0.put("bkt", "gone/x", b"x")
    t0.delete("bkt", "gone/x")
    t0.put("bkt", "kept", b"x")
    page = t0.list("bkt", delimiter="/")
    assert (page.prefixes, [o.key for o in page.objects]) == ([], ["kept"])


def test_listing_many_common_prefixes_pages_exactly(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")
    directories = [f"dir{i:04d}/" for i in range(1200)]
    for directory in directories[:1200:7]:
        for n in range(3):
            t0.put("bkt", f"{directory}file{n}", b"")
    for directory in directories:
        t0.put("bkt", f"{directory}only", b"")
    t0.put("bkt", "top", b"")
    seen: list[str] = []
    start_after = None
    pages = 0
    while True:
        page = t0.list("bkt", delimiter="/", start_after=start_after)
        pages += 1
        seen += page.prefixes + [o.key for o in page.objects]
        if not page.truncated:
            break
        start_after = page.next_start_after
    assert seen == [*directories, "top"]
    assert pages == 2


def test_a_closed_store_says_so(tmp_path: pathlib.Path) -> None:
    t0 = tier0.open(tmp_path / "data")
    t0.create_bucket("bkt")
    t0.close()
    with pytest.raises(tier0.MetaError, match="closed"):
        t0.list_buckets()
    with pytest.raises(tier0.MetaError, match="closed"):
        t0.put("bkt", "k", b"x")


def test_prefix_statistics_follow_every_change(t0: tier0.Tier0) -> None:
    t0.create_bucket("bkt")

    def prefixes() -> dict[str, tuple[int, int]]:
        rows = t0.sql("SELECT prefix, objects, bytes FROM prefixes WHERE bucket = 'bkt'").rows
        return {prefix: (objects, size) for prefix, objects, size in rows}

    t0.put("bkt", "logs/2024/a.log", b"x" * 10)
    t0.put("bkt", "logs/2024/b.log", b"x" * 5)
    t0.put("bkt", "logs/2025/c.log", b"x" * 7)
    t0.put("bkt", "top", b"x")
    assert prefixes() == {
        "": (4, 23),
        "logs/": (3, 22),
        "logs/2024/": (2, 15),
        "logs/2025/": (1, 7),
    }
    t0.put("bkt", "logs/2024/a.log", b"x" * 100)  # overwrite: bytes change, count does not
    t0.delete("bkt", "logs/2025/c.log")
    assert prefixes() == {"": (3, 106), "logs/": (2, 105), "logs/2024/": (2, 105)}
    t0.set_versioning("bkt", "Enabled")
    old = t0.put("bkt", "top", b"xyz")
    marker = t0.delete("bkt", "top")  # a delete marker hides the object
    assert prefixes()[""] == (2, 105)
    t0.delete("bkt", "top", version_id=marker.version_id)  # removing it brings "top" back
    assert prefixes()[""] == (3, 108)
    t0.delete("bkt", "top", version_id=old.version_id)  # the previous version becomes current
    assert prefixes()[""] == (3, 106)
    t0.copy("bkt", "top", "bkt", "logs/copied")
    assert prefixes()["logs/"] == (3, 106)
    assert t0.check().ok
    # check() recounts: a drifted counter is reported.
    t0._kernel.committer.run(
        lambda tx: tx.execute("UPDATE t0_prefixes SET objects = objects + 1 WHERE prefix = 'logs/'")
    )
    assert [p for p in t0.check().problems if "prefix bkt/logs/" in p]
