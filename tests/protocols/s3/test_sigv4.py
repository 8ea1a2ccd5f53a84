"""AWS Signature Version 4: requests signed by botocore, the AWS published vectors,
and every signed element tampered with."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

import pytest
from botocore.utils import percent_encode_sequence
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.s3.signing import (
    ALICE,
    BOB,
    BOB_KEY,
    UNKNOWN_KEY,
    Clock,
    authenticator,
    presign_v4,
    secret_for,
    sign_v4,
    signed_at,
    url,
    with_headers,
)
from tier0.errors import AccessDenied, InvalidArgument, InvalidCredentials
from tier0.identity import Principal
from tier0.protocols.s3 import (
    PRESIGN_S_MAX,
    Authenticator,
    AuthScheme,
    ChunkSigning,
    PayloadMode,
    S3AuthError,
    SignedRequest,
    _sigv4,
    open_body,
)

# Keys with the characters S3 clients encode differently from generic SigV4.
PATHS = [
    "/bucket/key",
    "/bucket/a b",
    "/bucket/a+b",
    "/bucket/100%",
    "/bucket/ünï€😀",
    "/bucket/~user",
    "/bucket/a//b",
    "/bucket/dir/",
    "/bucket/./x/../y",
    "/bucket/!$&'()*,;=:@",
    "/bucket",
    "/",
]
# Raw query strings as botocore's S3 serializer writes them.
QUERIES = [
    "",
    "uploads",
    "versionId=3%2FL4kqtJlcpXroDTDmJ%2Bg",
    "partNumber=2&uploadId=VXBsb2FkIElE",
    "tag=b&tag=a&tag=",
    "delimiter=%2F&prefix=",
    "list-type=2&prefix=a%20b%2Bc&start-after=%E2%82%AC",
]


def _authenticated(request: SignedRequest) -> Authenticator:
    auth, _ = authenticator(signed_at(request) + 1)
    return auth


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("path", PATHS)
def test_header_signature_authenticates_any_path_and_query(path: str, query: str) -> None:
    request = sign_v4("GET", url(path, query))
    result = _authenticated(request).authenticate(request)
    assert result.principal == ALICE
    assert result.scheme is AuthScheme.SIGV4_HEADER
    assert result.payload is PayloadMode.SHA256
    assert result.payload_sha256 == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("payload_signing", [True, False])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-amz-meta-color": "  deep   blue ", "Content-Type": "text/plain; charset=utf-8"},
        {"x-amz-acl": "private", "Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww==", "Range": "bytes=0-9"},
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE", "HEAD"])
def test_header_signature_authenticates_any_method_headers_and_payload_mode(
    method: str, headers: dict[str, str], payload_signing: bool
) -> None:
    body = b"hello world" if method in ("PUT", "POST") else b""
    request = sign_v4(
        method,
        url("/bucket/k", "uploads" if method == "POST" else ""),
        headers=headers,
        body=body,
        payload_signing=payload_signing,
    )
    result = _authenticated(request).authenticate(request)
    assert result.principal == ALICE
    if payload_signing:
        assert result.payload is PayloadMode.SHA256
        assert result.payload_sha256 == hashlib.sha256(body).hexdigest()
    else:
        assert result.payload is PayloadMode.UNSIGNED
        assert result.payload_sha256 is None


def test_header_signature_names_the_principal_of_the_key() -> None:
    request = sign_v4("GET", url("/bucket/k"), key=BOB_KEY)
    assert _authenticated(request).authenticate(request).principal == BOB


@settings(max_examples=60, deadline=None)
@given(
    # Any text but lone surrogates, which no client can encode as UTF-8.
    key=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    value=st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
def test_any_key_and_query_value_botocore_signs_authenticates(key: str, value: str) -> None:
    request = sign_v4("PUT", url(f"/bucket/{key}", percent_encode_sequence({"v": value})))
    assert _authenticated(request).authenticate(request).principal == ALICE


# --- tampering: every signed element ---------------------------------------------

BASE_URL = url("/bucket/a b", "versionId=v1&uploads")
BASE_HEADERS = {"x-amz-meta-color": "blue", "Content-Type": "text/plain"}


def _base() -> SignedRequest:
    return sign_v4("PUT", BASE_URL, headers=BASE_HEADERS, body=b"payload")


def _replace_in_authorization(old: str, new: str) -> Callable[[SignedRequest], SignedRequest]:
    def tamper(request: SignedRequest) -> SignedRequest:
        authorization = request.headers["authorization"]
        assert old in authorization, (old, authorization)
        return with_headers(request, authorization=authorization.replace(old, new, 1))

    return tamper


def _last_hex_digit(request: SignedRequest) -> SignedRequest:
    authorization = request.headers["authorization"]
    flipped = "0" if authorization[-1] != "0" else "1"
    return with_headers(request, authorization=authorization[:-1] + flipped)


def _other_second(request: SignedRequest) -> SignedRequest:
    stamp = request.headers["x-amz-date"]
    # Stay on the same day, so that only the signature can notice.
    second = int(stamp[13:15])
    return with_headers(request, x_amz_date=f"{stamp[:13]}{(second + 1) % 60:02d}Z")


def _other_day(request: SignedRequest) -> SignedRequest:
    stamp = request.headers["authorization"].split("/")[1]
    return _replace_in_authorization(f"/{stamp}/", f"/{int(stamp) - 1}/")(request)


TAMPERS: dict[str, tuple[Callable[[SignedRequest], SignedRequest], str, type[Exception]]] = {
    "method": (
        lambda r: dataclasses.replace(r, method="POST"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "path": (
        lambda r: dataclasses.replace(r, path=r.path.replace("a%20b", "a%20c")),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "path-slash-encoded": (
        lambda r: dataclasses.replace(r, path=r.path.replace("/a%20b", "%2Fa%20b")),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "query-value": (
        lambda r: dataclasses.replace(r, query=r.query.replace("v1", "v2")),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "query-added": (
        lambda r: dataclasses.replace(r, query=r.query + "&acl"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "query-dropped": (
        lambda r: dataclasses.replace(r, query="versionId=v1"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "signed-meta-header": (
        lambda r: with_headers(r, x_amz_meta_color="red"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "signed-content-type": (
        lambda r: with_headers(r, content_type="text/html"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "signed-header-removed": (
        lambda r: with_headers(r, content_type=None),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "host": (
        lambda r: with_headers(r, host="evil.example:9000"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "payload-hash": (
        lambda r: with_headers(r, x_amz_content_sha256="UNSIGNED-PAYLOAD"),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "date": (_other_second, "SignatureDoesNotMatch", InvalidCredentials),
    "credential-date": (_other_day, "AuthorizationHeaderMalformed", InvalidArgument),
    "region": (
        _replace_in_authorization("/us-east-1/", "/us-west-2/"),
        "AuthorizationHeaderMalformed",
        InvalidArgument,
    ),
    "service": (
        _replace_in_authorization("/s3/", "/iam/"),
        "AuthorizationHeaderMalformed",
        InvalidArgument,
    ),
    "terminator": (
        _replace_in_authorization("/aws4_request", "/aws4_reqest"),
        "AuthorizationHeaderMalformed",
        InvalidArgument,
    ),
    "unknown-access-key": (
        _replace_in_authorization("AKIAALICE00000000000", UNKNOWN_KEY.access_key),
        "InvalidAccessKeyId",
        InvalidCredentials,
    ),
    "other-principals-key": (
        _replace_in_authorization("AKIAALICE00000000000", BOB_KEY.access_key),
        "SignatureDoesNotMatch",
        InvalidCredentials,
    ),
    "signature-last-hex-digit": (_last_hex_digit, "SignatureDoesNotMatch", InvalidCredentials),
    "host-not-signed": (
        _replace_in_authorization(
            "SignedHeaders=content-type;host;", "SignedHeaders=content-type;"
        ),
        "AuthorizationHeaderMalformed",
        InvalidArgument,
    ),
    "meta-header-not-signed": (
        _replace_in_authorization(";x-amz-meta-color", ""),
        "AccessDenied",
        AccessDenied,
    ),
    "unsigned-acl-added": (
        lambda r: with_headers(r, x_amz_acl="public-read"),
        "AccessDenied",
        AccessDenied,
    ),
    "signed-headers-unsorted-duplicate": (
        _replace_in_authorization("SignedHeaders=content-type;host;", "SignedHeaders=host;host;"),
        "AuthorizationHeaderMalformed",
        InvalidArgument,
    ),
    "no-signed-headers-field": (
        _replace_in_authorization("SignedHeaders=", "Signedheaders="),
        "AuthorizationHeaderMalformed",
        InvalidArgument,
    ),
    "no-payload-hash": (
        lambda r: with_headers(
            r,
            x_amz_content_sha256=None,
            authorization=r.headers["authorization"].replace("x-amz-content-sha256;", ""),
        ),
        "MissingSecurityHeader",
        InvalidArgument,
    ),
    "bad-payload-hash": (
        lambda r: with_headers(r, x_amz_content_sha256="STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"),
        "InvalidArgument",
        InvalidArgument,
    ),
    "no-date": (
        lambda r: with_headers(r, x_amz_date=None),
        "AccessDenied",
        AccessDenied,
    ),
    "garbled-date": (
        lambda r: with_headers(r, x_amz_date="yesterday"),
        "AccessDenied",
        AccessDenied,
    ),
    "unknown-scheme": (
        lambda r: with_headers(r, authorization="Bearer abc"),
        "InvalidArgument",
        InvalidArgument,
    ),
    "header-and-query-signature": (
        lambda r: dataclasses.replace(r, query=r.query + "&X-Amz-Signature=00"),
        "InvalidArgument",
        InvalidArgument,
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_header_signature_is_refused_with_its_s3_code(name: str) -> None:
    tamper, code, base_class = TAMPERS[name]
    request = _base()
    auth = _authenticated(request)
    assert auth.authenticate(request).principal == ALICE  # untampered, it passes
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(tamper(request))
    assert caught.value.s3_code == code, caught.value
    assert isinstance(caught.value, base_class)


def test_signature_mismatch_reports_what_was_signed() -> None:
    request = _base()
    with pytest.raises(S3AuthError) as caught:
        _authenticated(request).authenticate(dataclasses.replace(request, method="DELETE"))
    assert caught.value.details["CanonicalRequest"].startswith("DELETE\n/bucket/a%20b\n")
    assert caught.value.details["AWSAccessKeyId"] == "AKIAALICE00000000000"


def test_wrong_region_names_the_expected_one() -> None:
    request = sign_v4("GET", url("/bucket/k"), region="eu-west-1")
    with pytest.raises(S3AuthError) as caught:
        _authenticated(request).authenticate(request)
    assert caught.value.s3_code == "AuthorizationHeaderMalformed"
    assert caught.value.details["Region"] == "us-east-1"


def test_any_region_is_accepted_when_none_is_configured_but_still_signed() -> None:
    request = sign_v4("GET", url("/bucket/k"), region="eu-west-1")
    auth, _ = authenticator(signed_at(request), region=None)
    assert auth.authenticate(request).principal == ALICE
    # The region is still part of the signing key: naming another one breaks it.
    moved = _replace_in_authorization("/eu-west-1/", "/us-east-1/")(request)
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(moved)
    assert caught.value.s3_code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("offset_s", "passes"), [(-899, True), (899, True), (-901, False), (901, False)]
)
def test_clock_skew_beyond_15_minutes_is_refused(offset_s: float, passes: bool) -> None:
    request = sign_v4("GET", url("/bucket/k"))
    auth, _ = authenticator(signed_at(request) + offset_s)
    if passes:
        assert auth.authenticate(request).principal == ALICE
    else:
        with pytest.raises(S3AuthError) as caught:
            auth.authenticate(request)
        assert caught.value.s3_code == "RequestTimeTooSkewed"
        assert isinstance(caught.value, AccessDenied)


def test_date_header_signs_when_botocore_is_given_one() -> None:
    request = sign_v4("GET", url("/bucket/k"), headers={"Date": "Mon, 01 Jan 2024 00:00:00 GMT"})
    assert "x-amz-date" not in request.headers
    assert _authenticated(request).authenticate(request).principal == ALICE


def test_payload_hash_given_to_authenticate_is_checked() -> None:
    request = sign_v4("PUT", url("/bucket/k"), body=b"the body")
    auth = _authenticated(request)
    right = hashlib.sha256(b"the body").hexdigest()
    assert auth.authenticate(request, payload_sha256=right).principal == ALICE
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(request, payload_sha256=hashlib.sha256(b"other").hexdigest())
    assert caught.value.s3_code == "XAmzContentSHA256Mismatch"


@pytest.mark.parametrize(("body", "passes"), [(b"the body", True), (b"the bodY", False)])
def test_streamed_plain_body_is_checked_against_the_signed_hash(body: bytes, passes: bool) -> None:
    request = sign_v4("PUT", url("/bucket/k"), body=b"the body")
    decoder = open_body(_authenticated(request).authenticate(request))
    assert b"".join(decoder.feed(body[:3]) + decoder.feed(body[3:])) == body
    if passes:
        assert decoder.finish() == {}
    else:
        with pytest.raises(S3AuthError) as caught:
            decoder.finish()
        assert caught.value.s3_code == "XAmzContentSHA256Mismatch"


def test_signing_keys_are_cached_and_bounded() -> None:
    request = sign_v4("GET", url("/bucket/k"))
    auth = Authenticator(secret_for, clock=Clock(signed_at(request)), signing_keys_max=1)
    auth.authenticate(request)
    auth.authenticate(request)
    assert auth.statistics().signing_keys_cached == 1
    other = sign_v4("GET", url("/bucket/k"), key=BOB_KEY)
    assert auth.authenticate(other).principal == BOB
    assert auth.statistics().signing_keys_cached == 1  # the LRU evicted Alice's
    assert auth.authenticate(request).principal == ALICE  # and derives it again


# --- presigned URLs ---------------------------------------------------------------


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("path", PATHS)
def test_presigned_url_authenticates_any_path_and_query(path: str, query: str) -> None:
    request = presign_v4("GET", url(path, query))
    result = _authenticated(request).authenticate(request)
    assert result.principal == ALICE
    assert result.scheme is AuthScheme.SIGV4_QUERY
    assert result.payload is PayloadMode.UNSIGNED


@pytest.mark.parametrize(
    ("expires", "after_s", "code"),
    [
        (1, 0.5, None),
        (1, 1, "AccessDenied"),
        (3600, 3599, None),
        (3600, 3601, "AccessDenied"),
        (PRESIGN_S_MAX, PRESIGN_S_MAX - 1, None),
        (PRESIGN_S_MAX, PRESIGN_S_MAX, "AccessDenied"),
        (0, 0, "AccessDenied"),
        (-1, 0, "AuthorizationQueryParametersError"),
        (PRESIGN_S_MAX + 1, 0, "AuthorizationQueryParametersError"),
    ],
)
def test_presigned_expiry_is_measured_from_its_date(
    expires: int, after_s: float, code: str | None
) -> None:
    request = presign_v4("GET", url("/bucket/k"), expires=expires)
    auth, _ = authenticator(signed_at(request) + after_s)
    if code is None:
        assert auth.authenticate(request).principal == ALICE
        return
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(request)
    assert caught.value.s3_code == code
    if code == "AccessDenied":
        assert str(caught.value) == "Request has expired"
        assert isinstance(caught.value, AccessDenied)


def test_presigned_url_from_the_future_is_not_valid_yet() -> None:
    request = presign_v4("GET", url("/bucket/k"))
    auth, _ = authenticator(signed_at(request) - 901)
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(request)
    assert (caught.value.s3_code, str(caught.value)) == ("AccessDenied", "Request is not valid yet")


def _query_replace(old: str, new: str) -> Callable[[SignedRequest], SignedRequest]:
    def tamper(request: SignedRequest) -> SignedRequest:
        assert old in request.query, (old, request.query)
        return dataclasses.replace(request, query=request.query.replace(old, new, 1))

    return tamper


PRESIGN_TAMPERS: dict[str, tuple[Callable[[SignedRequest], SignedRequest], str]] = {
    "get-replayed-as-put": (
        lambda r: dataclasses.replace(r, method="PUT"),
        "SignatureDoesNotMatch",
    ),
    "path": (lambda r: dataclasses.replace(r, path="/bucket/other"), "SignatureDoesNotMatch"),
    "longer-expiry": (
        _query_replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"),
        "SignatureDoesNotMatch",
    ),
    "query-value": (_query_replace("versionId=v1", "versionId=v2"), "SignatureDoesNotMatch"),
    "signature-last-hex-digit": (
        lambda r: dataclasses.replace(r, query=r.query[:-1] + ("0" if r.query[-1] != "0" else "1")),
        "SignatureDoesNotMatch",
    ),
    "algorithm": (
        _query_replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        "AuthorizationQueryParametersError",
    ),
    "no-credential": (
        _query_replace("X-Amz-Credential=", "X-Amz-Kredential="),
        "AuthorizationQueryParametersError",
    ),
    "two-dates": (
        lambda r: dataclasses.replace(r, query=r.query + "&X-Amz-Date=20200101T000000Z"),
        "AuthorizationQueryParametersError",
    ),
    "expires-not-a-number": (
        _query_replace("X-Amz-Expires=3600", "X-Amz-Expires=1h"),
        "AuthorizationQueryParametersError",
    ),
    "region": (
        _query_replace("%2Fus-east-1%2F", "%2Feu-west-1%2F"),
        "AuthorizationQueryParametersError",
    ),
    "service": (_query_replace("%2Fs3%2F", "%2Fsts%2F"), "AuthorizationQueryParametersError"),
    "host-not-signed": (
        _query_replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=range"),
        "AuthorizationQueryParametersError",
    ),
    "unknown-access-key": (
        _query_replace("AKIAALICE00000000000", UNKNOWN_KEY.access_key),
        "InvalidAccessKeyId",
    ),
    "unsigned-amz-header": (
        lambda r: with_headers(r, x_amz_acl="public-read-write"),
        "AccessDenied",
    ),
    "authorization-header-too": (
        lambda r: with_headers(r, authorization="AWS4-HMAC-SHA256 x"),
        "InvalidArgument",
    ),
}


@pytest.mark.parametrize("name", sorted(PRESIGN_TAMPERS))
def test_tampered_presigned_url_is_refused_with_its_s3_code(name: str) -> None:
    tamper, code = PRESIGN_TAMPERS[name]
    request = presign_v4("GET", url("/bucket/k", "versionId=v1"))
    auth = _authenticated(request)
    assert auth.authenticate(request).principal == ALICE
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(tamper(request))
    assert caught.value.s3_code == code, caught.value


def test_presigned_url_with_signed_headers_needs_them() -> None:
    request = presign_v4("PUT", url("/bucket/k"), headers={"x-amz-meta-owner": "alice"})
    assert "x-amz-meta-owner" in request.query
    auth = _authenticated(request)
    assert auth.authenticate(request).principal == ALICE
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(with_headers(request, x_amz_meta_owner="mallory"))
    assert caught.value.s3_code == "SignatureDoesNotMatch"


# --- the examples published in the S3 API reference -------------------------------

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_PRINCIPAL = Principal("p-example", "example", "user")
EXAMPLE_TIME = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))
EXAMPLE_HOST = "examplebucket.s3.amazonaws.com"
EMPTY = hashlib.sha256(b"").hexdigest()


def example_authenticator(now: float = EXAMPLE_TIME) -> Authenticator:
    def secret_for(access_key: str) -> tuple[Principal, str]:
        assert access_key == "AKIAIOSFODNN7EXAMPLE"
        return EXAMPLE_PRINCIPAL, EXAMPLE_SECRET

    return Authenticator(secret_for, clock=lambda: now)


def example_authorization(signed_headers: str, signature: str) -> str:
    return (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


# "Signature Calculations for the Authorization Header: Transferring Payload in a
# Single Chunk": GET Object, PUT Object, GET Bucket Lifecycle, GET Bucket (List Objects).
HEADER_EXAMPLES = {
    "get-object": (
        "GET",
        "/test.txt",
        {"range": "bytes=0-9", "x-amz-content-sha256": EMPTY},
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    ),
    "put-object": (
        "PUT",
        "/test%24file.text",
        {
            "date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
        },
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    ),
    "get-bucket-lifecycle": (
        "GET",
        "/?lifecycle",
        {"x-amz-content-sha256": EMPTY},
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    ),
    "list-objects": (
        "GET",
        "/?max-keys=2&prefix=J",
        {"x-amz-content-sha256": EMPTY},
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    ),
}


@pytest.mark.parametrize("name", sorted(HEADER_EXAMPLES))
def test_aws_published_header_examples_authenticate(name: str) -> None:
    method, target, headers, signed_headers, signature = HEADER_EXAMPLES[name]
    request = SignedRequest.from_target(
        method,
        target,
        [
            ("Host", EXAMPLE_HOST),
            ("x-amz-date", "20130524T000000Z"),
            *headers.items(),
            ("Authorization", example_authorization(signed_headers, signature)),
        ],
    )
    result = example_authenticator().authenticate(request)
    assert result.principal == EXAMPLE_PRINCIPAL
    assert result.payload_sha256 == headers["x-amz-content-sha256"]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    forged = with_headers(request, authorization=example_authorization(signed_headers, flipped))
    with pytest.raises(S3AuthError):
        example_authenticator().authenticate(forged)


def test_aws_published_presigned_example_authenticates_until_it_expires() -> None:
    # "Authenticating Requests: Using Query Parameters", the GET Object example.
    target = (
        "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    request = SignedRequest.from_target("GET", target, [("Host", EXAMPLE_HOST)])
    last_second = example_authenticator(EXAMPLE_TIME + 86399).authenticate(request)
    assert last_second.principal == EXAMPLE_PRINCIPAL
    with pytest.raises(S3AuthError) as caught:
        example_authenticator(EXAMPLE_TIME + 86400).authenticate(request)
    assert str(caught.value) == "Request has expired"


def test_anonymous_request_has_no_principal() -> None:
    auth, _ = authenticator(0)
    result = auth.authenticate(SignedRequest.from_target("GET", "/bucket/k", [("Host", "h")]))
    assert (result.principal, result.access_key, result.scheme) == (
        None,
        None,
        AuthScheme.ANONYMOUS,
    )
    assert result.payload is PayloadMode.UNSIGNED


def test_streaming_signed_payload_needs_a_sigv4_signature() -> None:
    auth, _ = authenticator(0)
    request = SignedRequest.from_target(
        "PUT", "/bucket/k", [("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")]
    )
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(request)
    assert caught.value.s3_code == "InvalidArgument"


def test_chunk_signing_keeps_its_key_out_of_repr() -> None:
    signing = ChunkSigning(b"\x01secret-key", "20130524T000000Z", "scope", "seed")
    assert "secret-key" not in repr(signing)
    assert "seed" in repr(signing)


_RAW = st.lists(
    st.one_of(
        st.sampled_from("aZ09-._~=&/+!*'():;@$,% é"),
        st.builds(
            lambda b, upper: f"%{b:02X}" if upper else f"%{b:02x}",
            st.integers(0, 255),
            st.booleans(),
        ),
    ),
    max_size=40,
).map("".join)


def _reference_component(raw: str) -> str:
    return _sigv4.uri_encode(unquote_to_bytes(raw))


@settings(max_examples=2000, deadline=None)
@given(_RAW, st.sampled_from([None, "X-Amz-Signature", "a"]))
def test_canonical_query_and_uri_match_their_definition_piece_by_piece(
    raw: str, exclude: str | None
) -> None:
    # The whole-string fast paths must agree with the definition: each name,
    # value and path segment decoded, then encoded with UriEncode.
    pairs = []
    for piece in raw.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            name = _reference_component(name)
            if name != exclude:
                pairs.append((name, _reference_component(value)))
    expected_query = "&".join(f"{n}={v}" for n, v in sorted(pairs))
    assert _sigv4.canonical_query(raw, exclude=exclude) == expected_query
    expected_uri = "/".join(_reference_component(s) for s in raw.split("/")) if raw else "/"
    assert _sigv4.canonical_uri(raw) == expected_uri
