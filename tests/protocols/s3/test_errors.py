"""The S3 error table: kernel and protocol errors to codes and statuses, and the
XML error body as botocore reads it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import botocore.session
import pytest
from botocore.parsers import RestXMLParser
from hypothesis import given
from hypothesis import strategies as st

from tier0 import errors as kernel
from tier0.protocols.s3 import (
    CODE_STATUS,
    BucketAlreadyOwnedByYou,
    ChunkSignatureDoesNotMatch,
    InvalidAccessKeyId,
    MalformedXML,
    RequestExpired,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
    render_error,
    s3_error,
)
from tier0.store._names import validate_key

_S3 = botocore.session.get_session().get_service_model("s3")


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (kernel.NoSuchBucket("no bucket"), "NoSuchBucket", 404),
        (kernel.NoSuchKey("no key"), "NoSuchKey", 404),
        (kernel.NoSuchVersion("no version"), "NoSuchVersion", 404),
        (kernel.BucketAlreadyExists("taken"), "BucketAlreadyExists", 409),
        (BucketAlreadyOwnedByYou("yours"), "BucketAlreadyOwnedByYou", 409),
        (kernel.BucketNotEmpty("full"), "BucketNotEmpty", 409),
        (kernel.InvalidBucketName("bad"), "InvalidBucketName", 400),
        (kernel.InvalidKey("an object key may not be empty"), "InvalidArgument", 400),
        (kernel.InvalidArgument("bad"), "InvalidArgument", 400),
        (kernel.InvalidRange("past the end"), "InvalidRange", 416),
        (kernel.PreconditionFailed("etag"), "PreconditionFailed", 412),
        (kernel.AccessDenied("no"), "AccessDenied", 403),
        (kernel.InvalidCredentials("who"), "InvalidAccessKeyId", 403),
        (InvalidAccessKeyId("unknown key"), "InvalidAccessKeyId", 403),
        (SignatureDoesNotMatch("sig"), "SignatureDoesNotMatch", 403),
        (ChunkSignatureDoesNotMatch("chunk sig", chunk_index=2), "SignatureDoesNotMatch", 403),
        (RequestTimeTooSkewed("skew"), "RequestTimeTooSkewed", 403),
        (RequestExpired("expired"), "AccessDenied", 403),
        (XAmzContentSHA256Mismatch("hash"), "XAmzContentSHA256Mismatch", 400),
        (MalformedXML("bad xml"), "MalformedXML", 400),
        (kernel.StorageFull("disk full"), "InsufficientStorage", 507),
        (kernel.StoreFailed("fsync failed"), "ServiceUnavailable", 503),
        (kernel.MetaUnavailable("db down"), "ServiceUnavailable", 503),
        (kernel.ChunkMissing("chunk gone"), "InternalError", 500),
        (RuntimeError("bug"), "InternalError", 500),
        (KeyError("not ours"), "InternalError", 500),
    ],
)
def test_s3_error_maps_each_error_to_code_and_status(
    error: BaseException, code: str, status: int
) -> None:
    answer = s3_error(error)
    assert (answer.code, answer.status) == (code, status)


def test_s3_error_key_too_long_from_the_stores_own_message() -> None:
    # The store raises the class that maps to S3's own code.
    with pytest.raises(kernel.KeyTooLong) as caught:
        validate_key("k" * 1025)
    assert (s3_error(caught.value).code, s3_error(caught.value).status) == ("KeyTooLongError", 400)


def test_s3_error_nul_key_stays_invalid_argument() -> None:
    with pytest.raises(kernel.InvalidKey) as caught:
        validate_key("a\x00b")
    assert s3_error(caught.value).code == "InvalidArgument"


def test_s3_error_unknown_own_code_takes_status_from_its_class() -> None:
    class Odd(kernel.AccessDenied):
        s3_code = "SomethingNew"

    assert (s3_error(Odd("x")).code, s3_error(Odd("x")).status) == ("SomethingNew", 403)


def test_s3_error_hides_messages_of_server_errors() -> None:
    answer = s3_error(kernel.StoreFailed("fsync of /secret/path failed"))
    assert "/secret/path" not in answer.message
    assert answer.message


def test_s3_error_keeps_client_message_and_details() -> None:
    error = SignatureDoesNotMatch("the signature does not match", StringToSign="AWS4...")
    answer = s3_error(error)
    assert answer.message == "the signature does not match"
    assert dict(answer.details) == {"StringToSign": "AWS4..."}


def test_code_status_covers_every_code_the_table_can_answer() -> None:
    from tier0.protocols.s3._errors import CLASS_CODES

    assert set(CLASS_CODES.values()) <= set(CODE_STATUS)


def _parse_error(body: bytes, status: int) -> dict[str, object]:
    operation = _S3.operation_model("GetObject")
    parsed: dict[str, object] = RestXMLParser().parse(
        {"body": body, "headers": {}, "status_code": status}, operation.output_shape
    )
    return parsed


def test_render_error_reads_back_through_botocore() -> None:
    error = kernel.NoSuchKey("The specified key does not exist.")
    body = render_error(error, resource="/b/a&b", request_id="req-1", details={"Key": "a&b"})
    parsed = _parse_error(body, 404)
    assert parsed["Error"] == {
        "Code": "NoSuchKey",
        "Message": "The specified key does not exist.",
        "Key": "a&b",
        "Resource": "/b/a&b",
    }
    # botocore drops the body's RequestId (it reads x-amz-request-id instead).
    assert ET.fromstring(body).findtext("RequestId") == "req-1"


def test_render_error_error_details_win_over_callers() -> None:
    error = SignatureDoesNotMatch("no", StringToSign="from-error")
    root = ET.fromstring(
        render_error(error, resource="/", request_id="r", details={"StringToSign": "caller"})
    )
    assert root.findtext("StringToSign") == "from-error"
    assert [child.tag for child in root] == [
        "Code",
        "Message",
        "StringToSign",
        "Resource",
        "RequestId",
    ]


def test_render_error_accepts_a_resolved_answer() -> None:
    body = render_error(
        S3Error("SlowDown", 503, "Reduce your request rate."), resource="/", request_id="r"
    )
    assert ET.fromstring(body).findtext("Code") == "SlowDown"


def test_render_error_refuses_a_detail_name_that_is_not_an_element() -> None:
    with pytest.raises(ValueError, match="XML element name"):
        render_error(kernel.NoSuchKey("x"), resource="/", request_id="r", details={"a b": "c"})
    with pytest.raises(ValueError, match="XML element name"):
        render_error(kernel.NoSuchKey("x"), resource="/", request_id="r", details={"Code": "c"})


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1))
def test_render_error_any_message_reads_back(message: str) -> None:
    body = render_error(kernel.InvalidArgument(message), resource=message, request_id="r")
    parsed = _parse_error(body, 400)
    error = parsed["Error"]
    assert isinstance(error, dict)
    assert (error["Code"], error["Message"], error["Resource"]) == (
        "InvalidArgument",
        message,
        message,
    )
