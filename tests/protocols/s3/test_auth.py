"""What all schemes share: the request as received, the error tree, the payload
headers, and the canonical forms where clients differ from botocore."""

from __future__ import annotations

import doctest
import hashlib

import pytest

from tests.protocols.s3.signing import ALICE, authenticator, sign_v4, signed_at, url, with_headers
from tier0.errors import AccessDenied, InvalidArgument, InvalidCredentials, Tier0Error
from tier0.protocols import s3
from tier0.protocols.s3 import (
    AuthScheme,
    PayloadMode,
    S3AuthError,
    SignedRequest,
    _auth,
    _authenticator,
    _chunked,
    _sigv2,
    _sigv4,
)


def test_request_target_is_split_and_headers_folded_as_received() -> None:
    request = SignedRequest.from_target(
        "PUT",
        "/bucket/a%20b?uploadId=x&partNumber=1",
        [("Host", "h:9000"), ("X-Amz-Meta-A", "1"), ("x-amz-meta-a", "2")],
        host_bucket=None,
    )
    assert (request.path, request.query) == ("/bucket/a%20b", "uploadId=x&partNumber=1")
    assert request.headers == {"host": "h:9000", "x-amz-meta-a": "1,2"}
    assert request.query_params() == (("uploadId", "x"), ("partNumber", "1"))


def test_query_params_keep_plus_and_decode_utf8() -> None:
    request = SignedRequest.from_target("GET", "/b?prefix=a+b%2Bc%E2%82%AC&uploads&&x=", [])
    assert request.query_params() == (("prefix", "a+b+c€"), ("uploads", ""), ("x", ""))


@pytest.mark.parametrize(
    "target",
    ["bucket/k", "http://h/bucket/k", "/bucket/a b", "/bucket/ü", "/bucket/\x00", "", "*"],
)
def test_request_target_that_is_not_origin_form_ascii_is_refused(target: str) -> None:
    with pytest.raises(S3AuthError) as caught:
        SignedRequest.from_target("GET", target, [])
    assert caught.value.s3_code == "InvalidURI"


def test_query_that_is_not_utf8_is_refused() -> None:
    request = SignedRequest.from_target("GET", "/b?prefix=%FF", [])
    with pytest.raises(S3AuthError) as caught:
        request.query_params()
    assert caught.value.s3_code == "InvalidURI"


ERRORS = {
    "SignatureDoesNotMatch": ("SignatureDoesNotMatch", InvalidCredentials),
    "InvalidAccessKeyId": ("InvalidAccessKeyId", InvalidCredentials),
    "ChunkSignatureDoesNotMatch": ("SignatureDoesNotMatch", InvalidCredentials),
    "RequestTimeTooSkewed": ("RequestTimeTooSkewed", AccessDenied),
    "RequestExpired": ("AccessDenied", AccessDenied),
    "RequestNotYetValid": ("AccessDenied", AccessDenied),
    "HeadersNotSigned": ("AccessDenied", AccessDenied),
    "MissingDate": ("AccessDenied", AccessDenied),
    "AuthorizationHeaderMalformed": ("AuthorizationHeaderMalformed", InvalidArgument),
    "AuthorizationQueryParametersError": ("AuthorizationQueryParametersError", InvalidArgument),
    "MissingSecurityHeader": ("MissingSecurityHeader", InvalidArgument),
    "XAmzContentSHA256Mismatch": ("XAmzContentSHA256Mismatch", InvalidArgument),
    "InvalidAuthArgument": ("InvalidArgument", InvalidArgument),
    "InvalidURI": ("InvalidURI", InvalidArgument),
    "IncompleteBody": ("IncompleteBody", InvalidArgument),
    "InvalidChunkSizeError": ("InvalidChunkSizeError", InvalidArgument),
    "MalformedChunkedBody": ("InvalidRequest", InvalidArgument),
    "MalformedTrailerError": ("MalformedTrailerError", InvalidArgument),
}


def test_every_public_error_has_an_s3_code_and_a_tier0_meaning() -> None:
    exported = {
        name
        for name in s3.__all__
        if isinstance(getattr(s3, name), type) and issubclass(getattr(s3, name), S3AuthError)
    }
    assert exported == {"S3AuthError", *ERRORS}
    for name, (code, base) in ERRORS.items():
        cls = getattr(s3, name)
        assert cls.s3_code == code, name
        assert issubclass(cls, base) and issubclass(cls, Tier0Error), name
    error = s3.RequestTimeTooSkewed("too far", ServerTime="2024-01-01T00:00:00Z")
    assert (str(error), error.details) == ("too far", {"ServerTime": "2024-01-01T00:00:00Z"})
    assert isinstance(error, PermissionError)  # AccessDenied's builtin


def test_chunk_error_carries_its_index() -> None:
    error = s3.ChunkSignatureDoesNotMatch("bad", chunk_index=3, SignatureProvided="x")
    assert (error.chunk_index, error.details) == (3, {"SignatureProvided": "x"})


# --- payload headers ----------------------------------------------------------------


def _anonymous(**headers: str) -> s3.AuthResult:
    auth, _ = authenticator(0)
    request = SignedRequest.from_target("PUT", "/bucket/k", [("Host", "h")])
    return auth.authenticate(with_headers(request, **headers))


def test_anonymous_unsigned_trailer_body_is_described() -> None:
    result = _anonymous(
        x_amz_content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        x_amz_trailer="x-amz-checksum-crc32, X-Amz-Checksum-SHA256",
        x_amz_decoded_content_length="12",
    )
    assert result.scheme is AuthScheme.ANONYMOUS
    assert result.payload is PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert result.trailer_names == {"x-amz-checksum-crc32", "x-amz-checksum-sha256"}
    assert result.decoded_length == 12
    assert result.chunk_signing is None


def test_anonymous_declared_hash_is_still_checked() -> None:
    digest = hashlib.sha256(b"x").hexdigest().upper()
    result = _anonymous(x_amz_content_sha256=digest)
    assert (result.payload, result.payload_sha256) == (PayloadMode.SHA256, digest.lower())


@pytest.mark.parametrize(
    "headers",
    [
        {"x_amz_content_sha256": "sha256:abc"},
        {
            "x_amz_content_sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        },  # no signature to chain from
        {
            "x_amz_content_sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x_amz_decoded_content_length": "-1",
        },
        {
            "x_amz_content_sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x_amz_trailer": "x-amz-meta-evil",
        },
    ],
)
def test_bad_payload_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(S3AuthError) as caught:
        _anonymous(**headers)
    assert caught.value.s3_code == "InvalidArgument"


def test_bad_payload_header_is_refused_before_any_signature_is_computed() -> None:
    request = sign_v4("PUT", url("/bucket/k"), body=b"x")
    auth, _ = authenticator(signed_at(request))
    # The signature no longer matches either, but the cheaper check answers first.
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(with_headers(request, x_amz_content_sha256="nonsense"))
    assert caught.value.s3_code == "InvalidArgument"
    assert auth.authenticate(request).principal == ALICE


# --- canonical forms where clients differ from botocore ------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/b/%7euser", "/b/~user"),  # needless escape
        ("/b/%e2%82%ac", "/b/%E2%82%AC"),  # lower-case hex
        ("/b/a%2Fb", "/b/a%2Fb"),  # an encoded slash stays in its segment
        ("/b//./../c/", "/b//./../c/"),  # S3 does not normalise
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/it's(1)*!", "/b/it%27s%281%29%2A%21"),  # sent raw, signed encoded
    ],
)
def test_canonical_uri_encodes_each_segment_once(raw: str, canonical: str) -> None:
    assert _sigv4.canonical_uri(raw) == canonical


def test_canonical_query_sorts_by_encoded_name_then_value() -> None:
    assert (
        _sigv4.canonical_query("b=2&a=%7e&A=1&a=%2f&uploads&&c=a+b")
        == "A=1&a=%2F&a=~&b=2&c=a%2Bb&uploads="
    )
    assert _sigv4.canonical_query("X-Amz-Signature=ab&x=1", exclude="X-Amz-Signature") == "x=1"


def test_signature_over_a_lower_case_escaped_path_authenticates_sent_either_way() -> None:
    # A client that sends %e2%82%ac signs the canonical %E2%82%AC, like botocore.
    request = sign_v4("GET", url("/bucket/€"))
    assert "%E2%82%AC" in request.path
    auth, _ = authenticator(signed_at(request))
    lower = SignedRequest(request.method, request.path.lower(), request.query, request.headers)
    assert auth.authenticate(lower).principal == ALICE


def test_sigv2_resource_lists_only_subresources() -> None:
    resources = _sigv2.canonical_resources(
        "/b/k", "prefix=x&versionId=1&uploads&response-content-type=text%2Fplain", host_bucket=None
    )
    assert resources == ["/b/k?response-content-type=text/plain&uploads&versionId=1"]


def test_signing_key_cache_returns_the_derived_key() -> None:
    cache = _sigv4.SigningKeyCache(entries_max=2)
    key = cache.get("secret", "20130524", "us-east-1")
    assert key == _sigv4.derive_signing_key("secret", "20130524", "us-east-1")
    assert cache.get("other", "20130524", "us-east-1") != key
    cache.get("third", "20130524", "us-east-1")
    assert len(cache) == 2


def test_docstring_examples_run() -> None:
    for module in (_auth, _authenticator, _chunked, _sigv2, _sigv4, s3):
        failed, _ = doctest.testmod(module)
        assert failed == 0, module.__name__
    assert doctest.testmod(_sigv4).attempted >= 2
    assert doctest.testmod(_chunked).attempted >= 2
