"""Bucket configuration (tags, CORS, policy, ACL) and object ACLs, on both metadata backends."""

from __future__ import annotations

import json
from typing import Any

import pytest

import tier0
from tier0 import CORSRule
from tier0.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidCORSConfiguration,
    InvalidTag,
    MalformedPolicy,
    NoSuchBucket,
    NoSuchBucketPolicy,
    NoSuchCORSConfiguration,
    NoSuchKey,
    NoSuchTagSet,
    NoSuchVersion,
    UnsupportedACL,
)
from tier0.identity import ALL_USERS, ANONYMOUS, AUTHENTICATED_USERS, AclGrant

POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::conf/*",
            }
        ],
    },
    indent=2,
)


def _rows(t0: tier0.Tier0, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with t0._kernel.meta.reader() as db:
        return [tuple(row) for row in db.query_all(sql, params)]


def test_bucket_tags_round_trip_and_limits(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    with pytest.raises(NoSuchTagSet):
        t0.get_bucket_tags("conf")
    t0.set_bucket_tags("conf", {"team": "data", "cost-centre": "42"})
    assert t0.get_bucket_tags("conf") == {"team": "data", "cost-centre": "42"}
    t0.set_bucket_tags("conf", {"team": "ml"})  # replaces, not merges
    assert t0.get_bucket_tags("conf") == {"team": "ml"}
    fifty = {f"k{i}": "v" for i in range(50)}
    t0.set_bucket_tags("conf", fifty)
    assert len(t0.get_bucket_tags("conf")) == 50
    for bad in (
        {f"k{i}": "v" for i in range(51)},
        {"k" * 129: "v"},
        {"k": "v" * 257},
        {"": "v"},
        {"aws:created": "v"},
    ):
        with pytest.raises(InvalidTag):
            t0.set_bucket_tags("conf", bad)
    assert len(t0.get_bucket_tags("conf")) == 50  # a refused change leaves the old tags
    t0.delete_bucket_tags("conf")
    with pytest.raises(NoSuchTagSet):
        t0.get_bucket_tags("conf")
    t0.delete_bucket_tags("conf")  # nothing to delete is no error
    t0.set_bucket_tags("conf", {"a": "1"})
    t0.set_bucket_tags("conf", {})  # an empty set deletes
    with pytest.raises(NoSuchTagSet):
        t0.get_bucket_tags("conf")
    with pytest.raises(NoSuchBucket):
        t0.set_bucket_tags("missing-bucket", {"a": "1"})
    with pytest.raises(NoSuchBucket):
        t0.get_bucket_tags("missing-bucket")


RULES = (
    CORSRule(("GET", "HEAD"), ("https://app.example",), ("*",), ("ETag",), 600, "app"),
    CORSRule(("PUT",), ("https://*.example",), ("content-type", "x-amz-*"), (), None, None),
    CORSRule(("GET",), ("*",)),
)


def test_cors_round_trip_and_validation(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    with pytest.raises(NoSuchCORSConfiguration):
        t0.get_bucket_cors("conf")
    t0.set_bucket_cors("conf", RULES)
    assert t0.get_bucket_cors("conf") == RULES
    for bad in (
        [],
        [CORSRule(("PATCH",), ("*",))],
        [CORSRule(("GET",), ("https://*.*.example",))],
        [CORSRule(("GET",), ("*",), ("x-*-*",))],
        [CORSRule(("GET",), ("*",), (), ("x-*",))],
        [CORSRule(("GET",), ("*",), max_age_s=-1)],
        [CORSRule((), ("*",))],
        [CORSRule(("GET",), ("*",))] * 101,
    ):
        with pytest.raises(InvalidCORSConfiguration):
            t0.set_bucket_cors("conf", bad)
    assert t0.get_bucket_cors("conf") == RULES
    t0.set_bucket_cors("conf", [CORSRule(("GET",), ("*",))] * 100)
    t0.delete_bucket_cors("conf")
    with pytest.raises(NoSuchCORSConfiguration):
        t0.get_bucket_cors("conf")


def test_cors_matching_takes_the_first_rule_that_admits(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    with pytest.raises(NoSuchCORSConfiguration):
        t0.match_cors("conf", origin="https://app.example", method="GET")
    t0.set_bucket_cors("conf", RULES)
    anonymous = t0.as_principal(ANONYMOUS)  # preflights are answered to anyone

    def match(origin: str, method: str, *headers: str) -> str | None:
        rule = anonymous.match_cors("conf", origin=origin, method=method, request_headers=headers)
        return None if rule is None else (rule.id or ",".join(rule.allowed_origins))

    assert match("https://app.example", "GET", "X-Anything") == "app"
    assert match("https://other.example", "GET") == "*"
    assert match("https://a.example", "PUT", "Content-Type", "x-amz-meta-a") == "https://*.example"
    assert match("https://a.example", "PUT", "authorization") is None
    assert match("http://a.example", "PUT") is None
    assert match("https://app.example", "DELETE") is None
    # The cache forgets at once when the rules change through this process.
    t0.set_bucket_cors("conf", [CORSRule(("DELETE",), ("https://app.example",))])
    assert match("https://app.example", "DELETE") == "https://app.example"
    assert match("https://other.example", "GET") is None


def test_policy_round_trip_keeps_the_text(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    with pytest.raises(NoSuchBucketPolicy):
        t0.get_bucket_policy("conf")
    with pytest.raises(NoSuchBucketPolicy):
        t0.bucket_policy_is_public("conf")
    t0.set_bucket_policy("conf", POLICY)
    assert t0.get_bucket_policy("conf") == POLICY  # byte for byte, on PostgreSQL's JSONB too
    assert t0.bucket_policy_is_public("conf")
    with pytest.raises(MalformedPolicy, match="not in bucket 'conf'"):
        t0.set_bucket_policy("conf", POLICY.replace("conf/*", "elsewhere/*"))
    assert t0.get_bucket_policy("conf") == POLICY
    t0.delete_bucket_policy("conf")
    with pytest.raises(NoSuchBucketPolicy):
        t0.get_bucket_policy("conf")
    t0.delete_bucket_policy("conf")


def test_bucket_acl(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    control = t0.get_bucket_acl("conf")
    assert (control.owner, control.owner_name, control.acl) == ("root", "root", "private")
    assert control.grants == (AclGrant("root", False, "FULL_CONTROL", "root"),)
    t0.set_bucket_acl("conf", "authenticated-read")
    assert t0.get_bucket_acl("conf").grants[1:] == (AclGrant(AUTHENTICATED_USERS, True, "READ"),)
    # Grants written out are accepted when they restate a canned ACL.
    restated = [AclGrant(ALL_USERS, True, "READ"), AclGrant("root", False, "FULL_CONTROL")]
    assert t0.set_bucket_acl("conf", restated) == "public-read"
    assert t0.get_bucket_acl("conf").acl == "public-read"
    with pytest.raises(UnsupportedACL, match="canned ACLs only"):
        t0.set_bucket_acl("conf", [AclGrant("p-someone", False, "READ")])
    for bad in ("public", "bucket-owner-read", "log-delivery-write"):
        with pytest.raises(InvalidArgument, match="canned ACL"):
            t0.set_bucket_acl("conf", bad)
    with pytest.raises(InvalidArgument):
        t0.create_bucket("conf-two", acl="world-writable")
    t0.create_bucket("conf-three", acl="public-read-write")
    assert t0.get_bucket_acl("conf-three").acl == "public-read-write"


def test_object_acls_belong_to_versions(t0: tier0.Tier0) -> None:
    alice, _ = t0.create_user("alice")
    t0.grant(alice, "s3:PutObject", "/conf/*")
    t0.create_bucket("conf")
    t0.as_principal(alice).put("conf", "k", b"1", acl="public-read")
    control = t0.get_object_acl("conf", "k")
    assert (control.owner, control.owner_name, control.acl) == (alice.id, "alice", "public-read")
    assert control.grants == (
        AclGrant(alice.id, False, "FULL_CONTROL", "alice"),
        AclGrant(ALL_USERS, True, "READ"),
    )
    t0.set_object_acl("conf", "k", "bucket-owner-full-control")
    assert t0.get_object_acl("conf", "k").grants == (
        AclGrant(alice.id, False, "FULL_CONTROL", "alice"),
        AclGrant("root", False, "FULL_CONTROL", "root"),
    )
    # A new version starts private, and the replaced one's ACL goes with it.
    t0.put("conf", "k", b"2")
    assert t0.get_object_acl("conf", "k").acl == "private"
    assert _rows(t0, "SELECT acl FROM t0_object_acls WHERE bucket = 'conf'") == []
    # In a versioned bucket each version keeps its own.
    t0.set_versioning("conf", "Enabled")
    first = t0.put("conf", "v", b"1", acl="public-read").version_id
    second = t0.put("conf", "v", b"2").version_id
    assert t0.get_object_acl("conf", "v").acl == "private"
    assert t0.get_object_acl("conf", "v", version_id=first).acl == "public-read"
    assert t0.set_object_acl("conf", "v", "authenticated-read", version_id=second) == second
    assert t0.get_object_acl("conf", "v").acl == "authenticated-read"
    assert t0.get_object_acl("conf", "v", version_id=first).acl == "public-read"
    # Copies never take the source's ACL, but may be given one.
    assert t0.copy("conf", "v", "conf", "copied", version_id=first) is not None
    assert t0.get_object_acl("conf", "copied").acl == "private"
    t0.copy("conf", "v", "conf", "copied-open", acl="public-read")
    assert t0.get_object_acl("conf", "copied-open").acl == "public-read"
    with pytest.raises(InvalidArgument):
        t0.put("conf", "x", b"x", acl="everyone")
    with pytest.raises(NoSuchVersion):
        t0.get_object_acl("conf", "v", version_id="nope")
    t0.delete("conf", "v")  # a delete marker holds no ACL
    with pytest.raises(NoSuchKey):
        t0.get_object_acl("conf", "v")
    with pytest.raises(NoSuchKey):
        t0.set_object_acl("conf", "v", "public-read")
    # Deleting a version drops its ACL row.
    t0.delete("conf", "v", version_id=first)
    assert ("public-read",) not in _rows(
        t0,
        "SELECT acl FROM t0_object_acls WHERE bucket = 'conf' AND seq IN"
        " (SELECT seq FROM t0_versions WHERE key = 'v')",
    )
    acl_seqs = {row[0] for row in _rows(t0, "SELECT seq FROM t0_object_acls")}
    version_seqs = {row[0] for row in _rows(t0, "SELECT seq FROM t0_versions")}
    assert acl_seqs <= version_seqs  # no ACL outlives its version


def test_object_acl_grants_written_out(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    t0.put("conf", "k", b"1")
    grants = [AclGrant("root", False, "FULL_CONTROL"), AclGrant(AUTHENTICATED_USERS, True, "READ")]
    t0.set_object_acl("conf", "k", grants)
    assert t0.get_object_acl("conf", "k").acl == "authenticated-read"
    with pytest.raises(UnsupportedACL):
        t0.set_object_acl("conf", "k", [AclGrant(ALL_USERS, True, "WRITE_ACP")])


def test_configuration_is_authorized(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    t0.put("conf", "k", b"v")
    bob, _ = t0.create_user("bob")
    as_bob = t0.as_principal(bob)
    anonymous = t0.as_principal(ANONYMOUS)
    for store in (as_bob, anonymous):
        for call in (
            lambda s: s.set_bucket_tags("conf", {"a": "b"}),
            lambda s: s.get_bucket_tags("conf"),
            lambda s: s.delete_bucket_tags("conf"),
            lambda s: s.set_bucket_cors("conf", RULES),
            lambda s: s.get_bucket_cors("conf"),
            lambda s: s.delete_bucket_cors("conf"),
            lambda s: s.set_bucket_policy("conf", POLICY),
            lambda s: s.get_bucket_policy("conf"),
            lambda s: s.delete_bucket_policy("conf"),
            lambda s: s.bucket_policy_is_public("conf"),
            lambda s: s.set_bucket_acl("conf", "public-read"),
            lambda s: s.get_bucket_acl("conf"),
            lambda s: s.set_object_acl("conf", "k", "public-read"),
            lambda s: s.get_object_acl("conf", "k"),
        ):
            with pytest.raises(AccessDenied):
                call(store)
    t0.grant(bob, "s3:PutBucketTagging", "/conf")
    as_bob.set_bucket_tags("conf", {"by": "bob"})
    with pytest.raises(AccessDenied):
        as_bob.get_bucket_tags("conf")
    t0.grant(bob, "s3:GetBucket*", "/conf")
    assert as_bob.get_bucket_tags("conf") == {"by": "bob"}


def test_changes_are_events_with_their_audit_in_the_same_commit(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf")
    t0.put("conf", "k", b"v")
    since = t0.events.read(after=0, limit=100)[-1].seq
    t0.set_bucket_tags("conf", {"a": "b"})
    t0.delete_bucket_tags("conf")
    t0.delete_bucket_tags("conf")  # changed nothing: no event
    t0.set_bucket_cors("conf", RULES)
    t0.delete_bucket_cors("conf")
    t0.set_bucket_policy("conf", POLICY)
    t0.delete_bucket_policy("conf")
    t0.set_bucket_acl("conf", "public-read")
    t0.set_object_acl("conf", "k", "public-read")
    events = t0.events.read(after=since, limit=100)
    assert [(e.type, e.key) for e in events] == [
        ("BucketTagging:Put", ""),
        ("BucketTagging:Delete", ""),
        ("BucketCors:Put", ""),
        ("BucketCors:Delete", ""),
        ("BucketPolicy:Put", ""),
        ("BucketPolicy:Delete", ""),
        ("BucketAcl:Put", ""),
        ("ObjectAcl:Put", "k"),
    ]
    assert events[0].detail == {"tags": {"a": "b"}}
    assert events[-1].detail == {"acl": "public-read"}
    # No flush: each change's decision is written in its own transaction.
    actions = [r[0] for r in _rows(t0, "SELECT action FROM t0_audit WHERE resource LIKE '/conf%'")]
    for action in (
        "s3:PutBucketTagging",
        "s3:PutBucketCORS",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketAcl",
        "s3:PutObjectAcl",
    ):
        assert action in actions


def test_deleting_a_bucket_deletes_its_configuration(t0: tier0.Tier0) -> None:
    t0.create_bucket("conf", acl="public-read")
    t0.set_bucket_tags("conf", {"a": "b"})
    t0.set_bucket_cors("conf", RULES)
    t0.set_bucket_policy("conf", POLICY)
    t0.put("conf", "k", b"v", acl="public-read")
    t0.delete("conf", "k")
    t0.delete_bucket("conf")
    assert _rows(t0, "SELECT name FROM t0_bucket_config WHERE bucket = 'conf'") == []
    assert _rows(t0, "SELECT acl FROM t0_object_acls WHERE bucket = 'conf'") == []
    t0.create_bucket("conf")
    assert t0.get_bucket_acl("conf").acl == "private"
    with pytest.raises(NoSuchBucketPolicy):
        t0.get_bucket_policy("conf")
    with pytest.raises(NoSuchTagSet):
        t0.get_bucket_tags("conf")
    with pytest.raises(NoSuchCORSConfiguration):
        t0.match_cors("conf", origin="https://app.example", method="GET")
    t0.put("conf", "k", b"v")
    with pytest.raises(AccessDenied):  # the old policy is gone from the cache too
        t0.as_principal(ANONYMOUS).get_bytes("conf", "k")
