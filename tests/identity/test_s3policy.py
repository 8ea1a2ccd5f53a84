"""The S3 bucket policy language (parse, evaluate) and the authorizer's order of precedence."""

from __future__ import annotations

import json
from typing import Any

import pytest

import tier0
from tier0.errors import AccessDenied, InvalidArgument, MalformedPolicy
from tier0.identity import (
    ANONYMOUS,
    ROOT,
    BucketRulesCache,
    ObjectFacts,
    Policy,
    PolicyRequest,
    Principal,
    RequestContext,
    parse_policy,
)

ALICE = Principal("p-alice", "alice", "user")
BOB = Principal("p-bob", "bob", "user")
#: 2026-01-01T00:00:00Z
NOW_US = 1_767_225_600 * 1_000_000


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> Policy:
    return parse_policy(
        json.dumps({"Version": version, "Statement": list(statements)}), bucket="bkt"
    )


def allow(**fields: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bkt/*",
    }
    statement.update(fields)
    return statement


def request(
    *,
    principal: Principal = ALICE,
    action: str = "s3:GetObject",
    resource: str = "/bkt/k",
    facts: ObjectFacts | None = None,
    **context: Any,
) -> PolicyRequest:
    params = context.pop("params", {})
    ctx = RequestContext(**context).with_params(params)
    return PolicyRequest(principal, action, resource, ctx, facts, NOW_US)


def holds(condition: dict[str, Any], **request_fields: Any) -> bool:
    return policy(allow(Condition=condition)).allowing(request(**request_fields)) is not None


# -- condition operators --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "params", "expected"),
    [
        ({"StringEquals": {"s3:prefix": "logs/"}}, {"s3:prefix": "logs/"}, True),
        ({"StringEquals": {"s3:prefix": "logs/"}}, {"s3:prefix": "Logs/"}, False),
        ({"StringEquals": {"s3:prefix": "logs/"}}, {}, False),
        ({"StringEquals": {"s3:prefix": ["a/", "logs/"]}}, {"s3:prefix": "logs/"}, True),
        ({"StringNotEquals": {"s3:prefix": "logs/"}}, {"s3:prefix": "data/"}, True),
        ({"StringNotEquals": {"s3:prefix": "logs/"}}, {"s3:prefix": "logs/"}, False),
        ({"StringNotEquals": {"s3:prefix": ["a/", "logs/"]}}, {"s3:prefix": "logs/"}, False),
        # A negated operator holds when the key is missing, as in AWS.
        ({"StringNotEquals": {"s3:prefix": "logs/"}}, {}, True),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "LOGS/"}}, {"s3:prefix": "logs/"}, True),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "LOGS/"}}, {"s3:prefix": "data/"}, False),
        ({"StringNotEqualsIgnoreCase": {"s3:prefix": "LOGS/"}}, {"s3:prefix": "logs/"}, False),
        ({"StringNotEqualsIgnoreCase": {"s3:prefix": "LOGS/"}}, {"s3:prefix": "x/"}, True),
        ({"StringLike": {"s3:prefix": "logs/*"}}, {"s3:prefix": "logs/2026/01"}, True),
        ({"StringLike": {"s3:prefix": "log?/"}}, {"s3:prefix": "logs/"}, True),
        ({"StringLike": {"s3:prefix": "log?/"}}, {"s3:prefix": "log/"}, False),
        ({"StringLike": {"s3:prefix": "logs/*"}}, {"s3:prefix": "data/logs/"}, False),
        ({"StringNotLike": {"s3:prefix": "logs/*"}}, {"s3:prefix": "logs/x"}, False),
        ({"StringNotLike": {"s3:prefix": "logs/*"}}, {"s3:prefix": "data/"}, True),
        ({"StringNotLike": {"s3:prefix": "logs/*"}}, {}, True),
        # StringEquals takes * literally.
        ({"StringEquals": {"s3:prefix": "logs/*"}}, {"s3:prefix": "logs/x"}, False),
        ({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
        ({"NumericEquals": {"s3:max-keys": 10}}, {"s3:max-keys": "10.0"}, True),
        ({"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "11"}, True),
        ({"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, False),
        ({"NumericLessThan": {"s3:max-keys": "100"}}, {"s3:max-keys": "99"}, True),
        ({"NumericLessThan": {"s3:max-keys": "100"}}, {"s3:max-keys": "100"}, False),
        ({"NumericLessThanEquals": {"s3:max-keys": "100"}}, {"s3:max-keys": "100"}, True),
        ({"NumericLessThanEquals": {"s3:max-keys": "100"}}, {"s3:max-keys": "101"}, False),
        ({"NumericGreaterThan": {"s3:max-keys": "100"}}, {"s3:max-keys": "101"}, True),
        ({"NumericGreaterThan": {"s3:max-keys": "100"}}, {"s3:max-keys": "100"}, False),
        ({"NumericGreaterThanEquals": {"s3:max-keys": "100"}}, {"s3:max-keys": "100"}, True),
        ({"NumericGreaterThanEquals": {"s3:max-keys": "100"}}, {"s3:max-keys": "99"}, False),
        ({"NumericLessThan": {"s3:max-keys": "100"}}, {"s3:max-keys": "many"}, False),
        ({"StringEquals": {"s3:x-amz-acl": "public-read"}}, {"s3:x-amz-acl": "public-read"}, True),
        ({"StringEquals": {"s3:VersionId": "v1"}}, {"s3:VersionId": "v1"}, True),
        ({"StringEquals": {"s3:delimiter": "/"}}, {"s3:delimiter": "|"}, False),
    ],
)
def test_string_and_numeric_operators(
    condition: dict[str, Any], params: dict[str, str], expected: bool
) -> None:
    assert holds(condition, params=params) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"DateLessThan": {"aws:CurrentTime": "2026-06-01T00:00:00Z"}}, True),
        ({"DateLessThan": {"aws:CurrentTime": "2025-06-01T00:00:00Z"}}, False),
        ({"DateLessThanEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, True),
        ({"DateGreaterThan": {"aws:CurrentTime": "2025-12-31"}}, True),
        ({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:01+00:00"}}, False),
        ({"DateGreaterThanEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, True),
        ({"DateEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, True),
        ({"DateNotEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, False),
        ({"DateGreaterThan": {"aws:EpochTime": "1767225599"}}, True),
        ({"DateLessThan": {"aws:EpochTime": 1767225600}}, False),
        ({"NumericEquals": {"aws:EpochTime": 1767225600}}, True),
    ],
)
def test_date_operators_read_the_clock(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"Bool": {"aws:SecureTransport": "false"}}, {"secure_transport": False}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"secure_transport": True}, False),
        ({"Bool": {"aws:SecureTransport": True}}, {"secure_transport": True}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {}, False),
        ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"source_ip": "127.0.0.1"}, True),
        ({"IpAddress": {"aws:SourceIp": "127.0.0.1"}}, {"source_ip": "127.0.0.1"}, True),
        ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"source_ip": "10.0.0.1"}, False),
        ({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]}}, {"source_ip": "::1"}, True),
        ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"source_ip": "::1"}, False),
        ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {}, False),
        ({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"source_ip": "10.0.0.1"}, True),
        ({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"source_ip": "127.9.9.9"}, False),
        ({"Null": {"aws:Referer": "true"}}, {}, True),
        ({"Null": {"aws:Referer": "true"}}, {"referer": "https://a.example/"}, False),
        ({"Null": {"aws:Referer": "false"}}, {"referer": "https://a.example/"}, True),
        ({"Null": {"aws:Referer": False}}, {}, False),
        (
            {"StringLike": {"aws:Referer": "https://a.example/*"}},
            {"referer": "https://a.example/p"},
            True,
        ),
        ({"StringLike": {"aws:UserAgent": "*boto3*"}}, {"user_agent": "Boto3/1.4 boto3/1.4"}, True),
        ({"StringLike": {"aws:UserAgent": "*boto3*"}}, {"user_agent": "curl/8"}, False),
        ({"StringEqualsIfExists": {"aws:Referer": "x"}}, {}, True),
        ({"StringEqualsIfExists": {"aws:Referer": "x"}}, {"referer": "y"}, False),
        ({"StringEqualsIfExists": {"aws:Referer": "x"}}, {"referer": "x"}, True),
        ({"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}}, {}, True),
        ({"ForAnyValue:StringEquals": {"aws:Referer": ["x", "y"]}}, {"referer": "y"}, True),
        ({"ForAnyValue:StringEquals": {"aws:Referer": ["x", "y"]}}, {}, False),
        ({"ForAllValues:StringEquals": {"aws:Referer": ["x", "y"]}}, {}, True),
        ({"ForAllValues:StringEquals": {"aws:Referer": ["x", "y"]}}, {"referer": "z"}, False),
        ({"ForAllValues:StringNotEquals": {"aws:Referer": ["x"]}}, {"referer": "z"}, True),
        ({"BinaryEquals": {"aws:Referer": "aGk="}}, {"referer": "aGk="}, True),
        (
            {"ArnLike": {"aws:Referer": "arn:aws:s3:::bkt/*"}},
            {"referer": "arn:aws:s3:::bkt/x"},
            True,
        ),
        (
            {"ArnNotLike": {"aws:Referer": "arn:aws:s3:::bkt/*"}},
            {"referer": "arn:aws:s3:::o/x"},
            True,
        ),
        # Operators, and keys within one, must all hold.
        (
            {"Bool": {"aws:SecureTransport": "true"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            {"secure_transport": True, "source_ip": "127.0.0.1"},
            False,
        ),
        (
            {"StringEquals": {"aws:Referer": "r", "aws:UserAgent": "u"}},
            {"referer": "r", "user_agent": "u"},
            True,
        ),
        (
            {"StringEquals": {"aws:Referer": "r", "aws:UserAgent": "u"}},
            {"referer": "r", "user_agent": "v"},
            False,
        ),
    ],
)
def test_transport_operators_and_qualifiers(
    condition: dict[str, Any], context: dict[str, Any], expected: bool
) -> None:
    assert holds(condition, **context) is expected


def test_operator_and_key_names_are_case_insensitive() -> None:
    assert holds({"stringequals": {"S3:Prefix": "a"}}, params={"s3:prefix": "a"})
    assert holds({"ipaddress": {"AWS:SOURCEIP": "127.0.0.1"}}, source_ip="127.0.0.1")


def test_principal_keys_describe_who_asks() -> None:
    assert holds({"StringEquals": {"aws:username": "alice"}})
    assert not holds({"StringEquals": {"aws:username": "alice"}}, principal=BOB)
    assert holds({"StringEquals": {"aws:userid": "p-bob"}}, principal=BOB)
    assert holds({"StringEquals": {"aws:PrincipalType": "User"}})
    assert holds({"StringEquals": {"aws:PrincipalType": "Anonymous"}}, principal=ANONYMOUS)
    assert holds({"StringEquals": {"aws:PrincipalType": "Account"}}, principal=ROOT)
    # An anonymous request has no user name.
    assert holds({"Null": {"aws:username": "true"}}, principal=ANONYMOUS)
    assert holds({"StringEquals": {"aws:userid": "anonymous"}}, principal=ANONYMOUS)


def test_existing_object_tags_are_fetched_only_when_asked() -> None:
    loads: list[int] = []

    def load() -> tuple[str | None, dict[str, str]]:
        loads.append(1)
        return None, {"class": "public"}

    facts = ObjectFacts(load)
    tagged = policy(allow(Condition={"StringEquals": {"s3:ExistingObjectTag/class": "public"}}))
    untagged = policy(allow())
    assert untagged.allowing(request(facts=facts)) is not None
    assert loads == []
    assert tagged.allowing(request(facts=facts)) is not None
    assert tagged.allowing(request(facts=facts)) is not None
    assert loads == [1]
    other = ObjectFacts(lambda: (None, {"class": "secret"}))
    assert tagged.allowing(request(facts=other)) is None
    assert tagged.allowing(request(facts=ObjectFacts(lambda: None))) is None


def test_the_keys_of_a_write_copy_and_tags_are_conditions() -> None:
    # What a PutObject or CopyObject says of itself: its tags (tag names keep their
    # case), its copy source and metadata directive; grants are named but never given.
    tagged = {"Condition": {"StringEquals": {"s3:RequestObjectTag/Env": "prod"}}}
    writes = policy(allow(Action="s3:PutObject", **tagged))
    put = {"action": "s3:PutObject"}
    assert writes.allowing(request(**put, params={"s3:RequestObjectTag/Env": "prod"}))
    assert writes.allowing(request(**put, params={"s3:RequestObjectTag/env": "prod"})) is None
    assert writes.allowing(request(**put)) is None
    copy = {"StringLike": {"s3:x-amz-copy-source": "src/public/*"}}
    assert holds(copy, params={"s3:x-amz-copy-source": "src/public/a.txt"})
    assert not holds(copy, params={"s3:x-amz-copy-source": "src/private/a.txt"})
    directive = {"StringEquals": {"s3:x-amz-metadata-directive": "COPY"}}
    assert holds(directive, params={"s3:x-amz-metadata-directive": "COPY"})
    assert not holds(directive, params={"s3:x-amz-metadata-directive": "REPLACE"})
    assert holds({"Null": {"s3:x-amz-grant-full-control": "true"}})
    with pytest.raises(MalformedPolicy, match="invalid condition key"):
        policy(allow(Condition={"StringEquals": {"s3:RequestObjectTag/": "x"}}))


# -- principals, actions, resources ---------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "who", "expected"),
    [
        ("*", ANONYMOUS, True),
        ({"AWS": "*"}, ANONYMOUS, True),
        ({"AWS": "alice"}, ALICE, True),
        ({"AWS": "alice"}, BOB, False),
        ({"AWS": "alice"}, ANONYMOUS, False),
        ({"AWS": ["bob", "p-alice"]}, ALICE, True),
        ({"AWS": "arn:aws:iam::123456789012:user/alice"}, ALICE, True),
        ({"AWS": "arn:aws:iam::123456789012:user/team/alice"}, ALICE, True),
        ({"AWS": "arn:aws:iam::123456789012:user/alice"}, BOB, False),
        ({"AWS": "arn:aws:iam::123456789012:root"}, ROOT, True),
        ({"CanonicalUser": "p-alice"}, ALICE, True),
        ({"Service": "cloudfront.amazonaws.com"}, ALICE, False),
    ],
)
def test_principals(principal: Any, who: Principal, expected: bool) -> None:
    assert (policy(allow(Principal=principal)).allowing(request(principal=who)) is not None) is (
        expected
    )


def test_not_principal_matches_everyone_else() -> None:
    statement = allow(NotPrincipal={"AWS": "alice"})
    del statement["Principal"]
    denying = policy({**statement, "Effect": "Deny"})
    assert denying.denying(request(principal=BOB)) is not None
    assert denying.denying(request(principal=ANONYMOUS)) is not None
    assert denying.denying(request(principal=ALICE)) is None


@pytest.mark.parametrize(
    ("action", "asked", "expected"),
    [
        ("s3:GetObject", "s3:GetObject", True),
        ("s3:getobject", "s3:GetObject", True),
        ("s3:Get*", "s3:GetObjectAcl", True),
        ("s3:Get*", "s3:PutObject", False),
        ("s3:*", "s3:DeleteBucket", True),
        ("*", "s3:DeleteBucket", True),
        ("s3:?etObject", "s3:GetObject", True),
        (["s3:PutObject", "s3:GetObject"], "s3:GetObject", True),
    ],
)
def test_actions_match_with_wildcards_in_any_case(action: Any, asked: str, expected: bool) -> None:
    found = policy(allow(Action=action)).allowing(request(action=asked))
    assert (found is not None) is expected


def test_not_action_and_not_resource() -> None:
    everything_but_delete = allow(NotAction="s3:Delete*")
    del everything_but_delete["Action"]
    p = policy(everything_but_delete)
    assert p.allowing(request(action="s3:PutObject")) is not None
    assert p.allowing(request(action="s3:DeleteObject")) is None
    outside_private = allow(NotResource="arn:aws:s3:::bkt/private/*")
    del outside_private["Resource"]
    p = policy(outside_private)
    assert p.allowing(request(resource="/bkt/public/a")) is not None
    assert p.allowing(request(resource="/bkt/private/a")) is None


@pytest.mark.parametrize(
    ("resource", "asked", "expected"),
    [
        ("arn:aws:s3:::bkt/*", "/bkt/a/b/c", True),
        ("arn:aws:s3:::bkt/*", "/bkt", False),
        ("arn:aws:s3:::bkt", "/bkt", True),
        ("arn:aws:s3:::bkt", "/bkt/k", False),
        ("arn:aws:s3:::bkt/logs/*.txt", "/bkt/logs/2026/a.txt", True),
        ("arn:aws:s3:::bkt/logs/?.txt", "/bkt/logs/a.txt", True),
        ("arn:aws:s3:::bkt/logs/?.txt", "/bkt/logs/ab.txt", False),
        ("arn:aws:s3:::bkt/Logs/*", "/bkt/logs/a", False),
        ("arn:aws:s3:::b*", "/bkt", True),
        ("*", "/bkt/anything", True),
    ],
)
def test_resources(resource: str, asked: str, expected: bool) -> None:
    assert (policy(allow(Resource=resource)).allowing(request(resource=asked)) is not None) is (
        expected
    )


def test_policy_variables_substitute_in_version_2012_only() -> None:
    homes = allow(Resource="arn:aws:s3:::bkt/home/${aws:username}/*")
    assert policy(homes).allowing(request(resource="/bkt/home/alice/a")) is not None
    assert policy(homes).allowing(request(resource="/bkt/home/bob/a")) is None
    # No user name, no match (rather than a wildcard).
    assert policy(homes).allowing(request(principal=ANONYMOUS, resource="/bkt/home//a")) is None
    old = policy(homes, version="2008-10-17")
    assert old.allowing(request(resource="/bkt/home/alice/a")) is None
    assert old.allowing(request(resource="/bkt/home/${aws:username}/a")) is not None
    # ${*} is a literal star; a default stands in for a missing key.
    star = allow(Resource="arn:aws:s3:::bkt/${*}")
    assert policy(star).allowing(request(resource="/bkt/*")) is not None
    assert policy(star).allowing(request(resource="/bkt/x")) is None
    fallback = allow(Condition={"StringEquals": {"aws:Referer": "${aws:username, 'nobody'}"}})
    assert policy(fallback).allowing(request(principal=ANONYMOUS, referer="nobody")) is not None
    assert policy(fallback).allowing(request(referer="alice")) is not None


def test_deny_and_allow_are_found_apart() -> None:
    p = policy(
        allow(Sid="Everyone"),
        allow(Sid="NoBob", Effect="Deny", Principal={"AWS": "bob"}),
    )
    assert p.denying(request(principal=BOB)).label == "NoBob"  # type: ignore[union-attr]
    assert p.denying(request(principal=ALICE)) is None
    assert p.allowing(request(principal=ALICE)).label == "Everyone"  # type: ignore[union-attr]
    assert policy(allow()).statements[0].label == "#1"


def test_a_single_statement_object_and_the_default_version() -> None:
    text = json.dumps({"Statement": allow()})
    parsed = parse_policy(text, bucket="bkt")
    assert parsed.version == "2008-10-17"
    assert parsed.text == text
    assert parsed.allowing(request()) is not None


def test_is_public() -> None:
    assert policy(allow()).is_public()
    assert not policy(allow(Principal={"AWS": "alice"})).is_public()
    assert not policy(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})).is_public()
    assert policy(allow(Condition={"Bool": {"aws:SecureTransport": "true"}})).is_public()
    assert not policy(allow(Effect="Deny")).is_public()


# -- malformed policies ---------------------------------------------------------------------


def _statement_with(**changes: Any) -> str:
    statement = allow()
    for name, value in changes.items():
        if value is None:
            statement.pop(name, None)
        else:
            statement[name] = value
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


_MALFORMED: list[tuple[str, str]] = [
    ("not json", "valid JSON"),
    ("[]", "first byte must be '{'"),
    ('{"Statement": [], "Version": "2012-10-17"}', "no statements"),
    ('{"Version": "2012-10-17"}', "Missing required field Statement"),
    ('{"Version": "2020-01-01", "Statement": []}', "Version"),
    ('{"Versio": "2012-10-17", "Statement": []}', "Unknown field Versio"),
    ('{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}', "repeats"),
    ('{"Statement": [{"Effect": NaN}]}', "NaN"),
    ("[" * 20_000, "JSON"),  # nesting under the size limit, too deep to parse
    (_statement_with(Effect=None), "Effect"),
    (_statement_with(Effect="allow"), "Effect must be Allow or Deny"),
    (_statement_with(Principal=None), "Missing required field Principal"),
    (_statement_with(NotPrincipal="*"), "not both"),
    (_statement_with(Action=None), "Missing required field Action"),
    (_statement_with(Action=[]), "non-empty list"),
    (_statement_with(Action="ec2:RunInstances"), "invalid action"),
    (_statement_with(Action="s3:GetObjekt"), "not an S3 action"),
    (_statement_with(Resource="arn:aws:s3:::other/*"), "not in bucket 'bkt'"),
    (_statement_with(Resource="bkt/*"), "invalid resource"),
    (_statement_with(Principal={"AWS": "arn:aws:iam::1:role/x"}), "Invalid principal"),
    (_statement_with(Principal={"Robot": "x"}), "Invalid principal"),
    (_statement_with(Principal="alice"), "Invalid principal"),
    (_statement_with(Bogus=1), "Unknown field Bogus"),
    (_statement_with(Condition={"StringEqualz": {"s3:prefix": "a"}}), "Invalid Condition type"),
    (_statement_with(Condition={"NullIfExists": {"s3:prefix": "true"}}), "Invalid Condition"),
    (_statement_with(Condition={"StringEquals": {"aws:SourceVpce": "x"}}), "condition key"),
    (_statement_with(Condition={"StringEquals": {"s3:prefix": []}}), "no values"),
    (_statement_with(Condition={"StringEquals": {"s3:prefix": {"a": 1}}}), "not a string"),
    (_statement_with(Condition={"IpAddress": {"aws:SourceIp": "300.1.1.1"}}), "IP address"),
    (_statement_with(Condition={"NumericLessThan": {"s3:max-keys": "ten"}}), "not a number"),
    (_statement_with(Condition={"DateLessThan": {"aws:CurrentTime": "soon"}}), "not a date"),
    (_statement_with(Condition={"Bool": {"aws:SecureTransport": "yes"}}), "true nor false"),
    (_statement_with(Condition={"BinaryEquals": {"aws:Referer": "%%"}}), "base64"),
    (_statement_with(Condition=["x"]), "JSON object"),
    (_statement_with(Resource="arn:aws:s3:::bkt/${aws:nothing}"), "policy variable"),
    (
        json.dumps({"Statement": [allow(Sid="same"), allow(Sid="same")]}),
        "must be unique",
    ),
    (
        json.dumps({"Statement": [allow(Sid="x" * 30)] * 200}),
        "at most 20480",
    ),
]


@pytest.mark.parametrize(
    ("text", "complaint"), _MALFORMED, ids=[complaint for _, complaint in _MALFORMED]
)
def test_malformed_policies_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(MalformedPolicy) as error:
        parse_policy(text, bucket="bkt")
    assert complaint in str(error.value)


def test_a_malformed_statement_is_named() -> None:
    text = json.dumps({"Statement": [allow(), allow(Sid="Second", Action="s3:Nope")]})
    with pytest.raises(MalformedPolicy, match="statement 2 \\(Sid 'Second'\\)"):
        parse_policy(text, bucket="bkt")


# -- the authorizer's order of precedence (on both metadata backends) -----------------------


def _set_policy(store: tier0.Tier0, bucket: str, *statements: dict[str, Any]) -> None:
    store.set_bucket_policy(
        bucket, json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    )


def _statement(
    effect: str, principal: Any, action: Any, resource: str, **extra: Any
) -> dict[str, Any]:
    return {
        "Effect": effect,
        "Principal": principal,
        "Action": action,
        "Resource": resource,
        **extra,
    }


def test_explicit_deny_beats_the_owner_and_grants_but_not_root(t0: tier0.Tier0) -> None:
    alice, _ = t0.create_user("alice")
    bob, _ = t0.create_user("bob")
    t0.grant(alice, "s3:CreateBucket", "/*")
    as_alice = t0.as_principal(alice)
    as_bob = t0.as_principal(bob)
    as_alice.create_bucket("alices")
    as_alice.put("alices", "k", b"v")
    t0.grant(bob, "s3:GetObject", "/alices/*")
    assert as_bob.get_bytes("alices", "k") == b"v"  # the grant allows
    _set_policy(
        as_alice, "alices", _statement("Deny", "*", "s3:GetObject", "arn:aws:s3:::alices/*")
    )
    with pytest.raises(AccessDenied, match="bucket policy statement #1 denies"):
        as_bob.get_bytes("alices", "k")
    with pytest.raises(AccessDenied):
        as_alice.get_bytes("alices", "k")  # the owner too, as in S3
    with pytest.raises(AccessDenied):
        as_alice.head("alices", "k")  # HEAD is authorized as s3:GetObject
    assert t0.get_bytes("alices", "k") == b"v"  # root is not bound by bucket policies
    # The owner may always repair the policy, whatever it denies.
    _set_policy(as_alice, "alices", _statement("Deny", "*", "s3:*", "arn:aws:s3:::alices"))
    assert "Deny" in as_alice.get_bucket_policy("alices")
    with pytest.raises(AccessDenied):
        as_alice.list("alices")
    as_alice.delete_bucket_policy("alices")
    assert [o.key for o in as_alice.list("alices").objects] == ["k"]
    assert as_alice.get_bytes("alices", "k") == b"v"


def test_policy_allow_admits_others_and_anonymous(t0: tier0.Tier0) -> None:
    t0.create_bucket("shared")
    t0.put("shared", "docs/a.txt", b"a")
    t0.put("shared", "private/b.txt", b"b")
    carol, _ = t0.create_user("carol")
    as_carol = t0.as_principal(carol)
    anonymous = t0.as_principal(ANONYMOUS)
    with pytest.raises(AccessDenied):
        as_carol.get_bytes("shared", "docs/a.txt")
    _set_policy(
        t0,
        "shared",
        _statement(
            "Allow", {"AWS": "carol"}, ["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::shared/*"
        ),
        _statement("Allow", "*", "s3:GetObject", "arn:aws:s3:::shared/docs/*"),
    )
    assert as_carol.get_bytes("shared", "private/b.txt") == b"b"
    as_carol.put("shared", "from-carol", b"c")
    with pytest.raises(AccessDenied):
        as_carol.delete("shared", "from-carol")
    assert anonymous.get_bytes("shared", "docs/a.txt") == b"a"
    with pytest.raises(AccessDenied):
        anonymous.get_bytes("shared", "private/b.txt")
    with pytest.raises(AccessDenied):
        anonymous.list("shared")
    with pytest.raises(AccessDenied):
        anonymous.list_buckets()  # anonymous owns nothing, not even an empty list
    t0._kernel.authorizer.flush()
    rows = t0.sql(
        "SELECT principal, action, resource, allowed, reason FROM audit"
        " WHERE principal = 'anonymous' ORDER BY id"
    ).rows
    assert (
        "anonymous",
        "s3:GetObject",
        "/shared/docs/a.txt",
        1,
        "bucket policy statement #2",
    ) in rows
    assert (
        "anonymous",
        "s3:GetObject",
        "/shared/private/b.txt",
        0,
        "no grant (deny by default)",
    ) in rows


def test_conditions_read_the_request_context(t0: tier0.Tier0) -> None:
    t0.create_bucket("guarded")
    t0.put("guarded", "k", b"v")
    dave, _ = t0.create_user("dave")
    _set_policy(
        t0,
        "guarded",
        _statement(
            "Allow",
            {"AWS": "dave"},
            ["s3:GetObject", "s3:ListBucket"],
            "arn:aws:s3:::guarded*",
            Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}},
        ),
        _statement(
            "Deny",
            "*",
            "s3:ListBucket",
            "arn:aws:s3:::guarded",
            Condition={"StringNotEquals": {"s3:prefix": "public/"}},
        ),
    )
    near = t0.as_principal(dave, context=RequestContext(source_ip="192.0.2.7"))
    far = t0.as_principal(dave, context=RequestContext(source_ip="198.51.100.7"))
    assert near.get_bytes("guarded", "k") == b"v"
    with pytest.raises(AccessDenied):
        far.get_bytes("guarded", "k")
    with pytest.raises(AccessDenied):
        t0.as_principal(dave).get_bytes("guarded", "k")  # in-process: no source address
    # The listing's own parameters reach the policy (s3:prefix).
    assert near.list("guarded", prefix="public/").objects == []
    with pytest.raises(AccessDenied, match="denies"):
        near.list("guarded", prefix="")


def test_acls_admit_after_everything_else(t0: tier0.Tier0) -> None:
    t0.create_bucket("acls", acl="public-read")
    t0.put("acls", "open", b"o", acl="public-read")
    t0.put("acls", "closed", b"c")
    t0.put("acls", "members", b"m", acl="authenticated-read")
    erin, _ = t0.create_user("erin")
    anonymous = t0.as_principal(ANONYMOUS)
    as_erin = t0.as_principal(erin)
    # Bucket public-read: anyone lists, but objects need their own ACL.
    assert [o.key for o in anonymous.list("acls").objects] == ["closed", "members", "open"]
    assert anonymous.get_bytes("acls", "open") == b"o"
    with pytest.raises(AccessDenied):
        anonymous.get_bytes("acls", "closed")
    with pytest.raises(AccessDenied):
        anonymous.put("acls", "new", b"n")
    with pytest.raises(AccessDenied):
        anonymous.get_bytes("acls", "members")
    assert as_erin.get_bytes("acls", "members") == b"m"
    t0.set_bucket_acl("acls", "public-read-write")
    anonymous.put("acls", "dropped", b"d")
    anonymous.delete("acls", "closed")
    assert sorted(o.key for o in t0.list("acls").objects) == ["dropped", "members", "open"]
    # An explicit Deny still beats an ACL.
    _set_policy(t0, "acls", _statement("Deny", "*", "s3:GetObject", "arn:aws:s3:::acls/open"))
    with pytest.raises(AccessDenied):
        anonymous.get_bytes("acls", "open")
    t0.delete_bucket_policy("acls")
    t0.set_object_acl("acls", "open", "private")
    with pytest.raises(AccessDenied):
        anonymous.get_bytes("acls", "open")


def test_other_processes_see_a_change_within_the_ttl(tmp_path: Any) -> None:
    data = tmp_path / "data"
    with tier0.open(data) as first, tier0.open(data) as second:
        first.create_bucket("stale")
        first.put("stale", "k", b"v")
        clock = [0.0]
        authorizer = second._kernel.authorizer
        authorizer.rules = BucketRulesCache(second._kernel.meta, clock_s=lambda: clock[0])
        anonymous = second.as_principal(ANONYMOUS)
        with pytest.raises(AccessDenied):
            anonymous.get_bytes("stale", "k")  # caches "no policy"
        _set_policy(
            first, "stale", _statement("Allow", "*", "s3:GetObject", "arn:aws:s3:::stale/*")
        )
        clock[0] = 0.5
        with pytest.raises(AccessDenied):
            anonymous.get_bytes("stale", "k")  # still within the TTL
        clock[0] = 1.01
        assert anonymous.get_bytes("stale", "k") == b"v"
        # Within the process that made a change, it counts at once.
        first_anonymous = first.as_principal(ANONYMOUS)
        assert first_anonymous.get_bytes("stale", "k") == b"v"
        first.delete_bucket_policy("stale")
        with pytest.raises(AccessDenied):
            first_anonymous.get_bytes("stale", "k")


def test_decisions_cost_no_query_for_a_cached_bucket(t0: tier0.Tier0) -> None:
    t0.create_bucket("hot")
    _set_policy(t0, "hot", _statement("Allow", "*", "s3:GetObject", "arn:aws:s3:::hot/*"))
    t0.put("hot", "k", b"v")
    clock = [0.0]
    rules = BucketRulesCache(t0._kernel.meta, clock_s=lambda: clock[0])
    t0._kernel.authorizer.rules = rules
    anonymous = t0.as_principal(ANONYMOUS)
    for _ in range(20):
        assert anonymous.get_bytes("hot", "k") == b"v"
    assert rules.loads == 1
    clock[0] = 5.0
    anonymous.get_bytes("hot", "k")
    assert rules.loads == 2


def test_the_anonymous_principal_is_reserved(t0: tier0.Tier0) -> None:
    assert t0.as_principal("anonymous").principal == ANONYMOUS
    with pytest.raises(InvalidArgument, match="unsigned requests"):
        t0.create_user("anonymous")
    with pytest.raises(InvalidArgument, match="bucket policy"):
        t0.grant(ANONYMOUS, "s3:GetObject", "/*")
    # Anonymous owns nothing, even where an owner id would match.
    decision = t0._kernel.authorizer.decide(
        ANONYMOUS, "s3:ListAllMyBuckets", "/", owner=ANONYMOUS.id
    )
    assert not decision.allowed
