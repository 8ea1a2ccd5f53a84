"""POST policies: decoding them, and judging a form's fields by them."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tier0.errors import AccessDenied, EntityTooLarge, EntityTooSmall
from tier0.protocols.s3._postpolicy import InvalidPolicyDocument, PostPolicy

LATER = "2100-01-01T00:00:00.000Z"


def encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def policy(*conditions: Any, expiration: str = LATER) -> PostPolicy:
    return PostPolicy.decode(encoded({"expiration": expiration, "conditions": list(conditions)}))


def denied(check: Any) -> str:
    with pytest.raises(AccessDenied) as error:
        check()
    return str(error.value)


def test_decode_reads_every_condition_form() -> None:
    decoded = policy(
        {"bucket": "photos"},
        ["eq", "$Content-Type", "image/png"],
        ["starts-with", "$key", "user/"],
        ["content-length-range", 10, 1000],
    )
    assert decoded.expiration == dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    assert [(c.operator, c.field, c.value) for c in decoded.conditions] == [
        ("eq", "bucket", "photos"),
        ("eq", "content-type", "image/png"),
        ("starts-with", "key", "user/"),
    ]
    assert (decoded.length_min, decoded.length_max) == (10, 1000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("not base64!", "Invalid JSON", id="not base64"),
        pytest.param(base64.b64encode(b"{nope").decode(), "Invalid JSON", id="not JSON"),
        pytest.param(encoded([1, 2]), "Invalid JSON", id="not an object"),
        pytest.param(encoded({"conditions": []}), "missing expiration", id="no expiration"),
        pytest.param(encoded({"expiration": LATER}), "missing conditions", id="no conditions"),
        pytest.param(
            encoded({"expiration": LATER, "conditions": [], "x": 1}), "Unexpected", id="unknown"
        ),
        pytest.param(
            base64.b64encode(
                f'{{"expiration": "{LATER}", "expiration": "{LATER}", "conditions": []}}'.encode()
            ).decode(),
            "Invalid JSON",
            id="a member twice",
        ),
        pytest.param(
            encoded({"expiration": "2100-01-01", "conditions": []}), "expiration", id="no zone"
        ),
        pytest.param(
            encoded({"expiration": "tomorrowZ", "conditions": []}), "expiration", id="bad time"
        ),
        pytest.param(
            encoded({"expiration": LATER, "conditions": {"key": "a"}}), "conditions", id="dict"
        ),
    ],
)
def test_decode_refuses_malformed_policies(text: str, message: str) -> None:
    with pytest.raises(InvalidPolicyDocument, match=message):
        PostPolicy.decode(text)


@pytest.mark.parametrize(
    "condition",
    [
        ["eq", "$key"],
        ["eq", "key", "a"],
        ["matches", "$key", "a"],
        ["eq", "$key", 5],
        {"key": 5},
        {},
        "key",
        ["content-length-range", 10, 5],
        ["content-length-range", -1, 5],
        ["content-length-range", "a", 5],
        ["content-length-range", True, 5],
        ["content-length-range", 1],
    ],
)
def test_decode_refuses_malformed_conditions(condition: Any) -> None:
    with pytest.raises(InvalidPolicyDocument, match="Invalid Condition"):
        policy(condition)


@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()))
def test_decode_any_text_decodes_or_refuses(text: str) -> None:
    with contextlib.suppress(InvalidPolicyDocument):
        PostPolicy.decode(text)


def test_check_expiration_at_and_after_the_instant() -> None:
    decoded = policy(expiration="2030-06-01T12:00:00.000Z")
    decoded.check_expiration(dt.datetime(2030, 6, 1, 11, 59, 59, tzinfo=dt.UTC))
    message = denied(lambda: decoded.check_expiration(dt.datetime(2030, 6, 1, 12, tzinfo=dt.UTC)))
    assert message == "Invalid according to Policy: Policy expired."


def test_check_fields_accepts_a_form_the_policy_allows() -> None:
    decoded = policy(
        {"bucket": "photos"},
        ["starts-with", "$key", "user/"],
        {"success_action_status": "201"},
        ["starts-with", "$x-amz-meta-note", ""],
    )
    decoded.check_fields(
        {
            "key": "user/a.png",
            "success_action_status": "201",
            "x-amz-meta-note": "anything",
            "policy": "...",
            "x-amz-signature": "...",
            "file": "",
            "x-ignore-tracking": "free",
        },
        bucket="photos",
    )


@pytest.mark.parametrize(
    ("condition", "fields", "failed"),
    [
        ({"key": "a"}, {"key": "b"}, '["eq", "$key", "a"]'),
        (["eq", "$key", "a"], {"key": "A"}, '["eq", "$key", "a"]'),
        (["starts-with", "$key", "user/"], {"key": "users"}, '["starts-with", "$key", "user/"]'),
        ({"acl": "public-read"}, {}, '["eq", "$acl", "public-read"]'),
        ({"bucket": "other"}, {}, '["eq", "$bucket", "other"]'),
    ],
)
def test_check_fields_refuses_a_failed_condition(
    condition: Any, fields: dict[str, str], failed: str
) -> None:
    message = denied(lambda: policy(condition).check_fields(fields, bucket="photos"))
    assert message == f"Invalid according to Policy: Policy Condition failed: {failed}"


def test_check_fields_compares_names_without_case_and_values_exactly() -> None:
    decoded = policy(["eq", "$Content-Type", "image/png"])
    decoded.check_fields({"content-type": "image/png"}, bucket="b")
    denied(lambda: decoded.check_fields({"content-type": "IMAGE/PNG"}, bucket="b"))


def test_check_fields_starts_with_holds_for_every_content_type_listed() -> None:
    decoded = policy(["starts-with", "$Content-Type", "image/"])
    decoded.check_fields({"content-type": "image/png, image/jpeg"}, bucket="b")
    denied(lambda: decoded.check_fields({"content-type": "image/png, text/plain"}, bucket="b"))


def test_check_fields_refuses_fields_no_condition_names() -> None:
    decoded = policy({"key": "a"})
    message = denied(
        lambda: decoded.check_fields({"key": "a", "x-amz-meta-b": "1", "acl": "x"}, bucket="b")
    )
    assert message == "Invalid according to Policy: Extra input fields: acl, x-amz-meta-b"


def test_check_length_bounds_both_ways() -> None:
    decoded = policy(["content-length-range", 2, 5])
    decoded.check_length(5, final=True)
    decoded.check_length(1, final=False)  # more may come
    with pytest.raises(EntityTooLarge) as large:
        decoded.check_length(6, final=False)
    assert large.value.details == {"ProposedSize": "6", "MaxSizeAllowed": "5"}  # type: ignore[attr-defined]
    with pytest.raises(EntityTooSmall) as small:
        decoded.check_length(1, final=True)
    assert small.value.details == {"ProposedSize": "1", "MinSizeAllowed": "2"}  # type: ignore[attr-defined]
