"""Tampered, stale and misused signatures against a live ``tier0 serve``.

Every request here is first signed by botocore's own signers (`S3SigV4Auth`,
`S3SigV4QueryAuth`, `HmacV1Auth`, `HmacV1QueryAuth`), so it is exactly what a
real client sends; then one thing about it is changed, and it goes over a
plain socket. Each case checks the HTTP status and S3 code of the answer, that
the answer is S3's XML error, and that nothing was written: the bucket is
still empty, or an object that was there still holds its old bytes. Each
family of cases also sends the untampered request once, so that a server
refusing everything could not pass.

The unit tests of the same checks (test_sigv4, test_sigv2, test_chunked) call
the authenticator directly; these go through the gateway, its body handling
and the store.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import http.client
import io
import re
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from tests.protocols.s3.live import ACCESS, REGION, SECRET, error_code, make_client
from tests.protocols.s3.raw import Raw
from tests.protocols.s3.signing import ReferenceChunkSigner, encode_chunked
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

ROOT = Credentials(ACCESS, SECRET)
#: A botocore signer's ``add_auth``: signs an AWSRequest in place.
Signer = Callable[[AWSRequest], None]
BODY = b"the body a client meant to write " * 100
OTHER_BODY = BODY.replace(b"meant", b"never")  # same length, other bytes
assert len(OTHER_BODY) == len(BODY) and OTHER_BODY != BODY

STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
# Four full chunks (S3's smallest chunk is 8 KiB, all but the last) and a short one.
CHUNKS = [bytes([65 + i]) * 16384 for i in range(4)] + [b"tail" * 25]


# -- sending what botocore signed ----------------------------------------------------------------


def _deliver(
    url: str,
    method: str,
    target: str,
    headers: Mapping[str, str | None],
    body: bytes = b"",
) -> Raw:
    """Send one request as given and read the answer. Host and Content-Length are added
    unless ``headers`` has them; a header whose value is None is not sent at all."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        names = {name.lower() for name in headers}
        if "host" not in names:
            connection.putheader("Host", parts.netloc)
        for name, value in headers.items():
            if value is not None:
                connection.putheader(name, value)
        if "content-length" not in names and (body or method in ("PUT", "POST")):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        received = {name.lower(): value for name, value in response.getheaders()}
        return Raw(response.status, received, data)
    finally:
        connection.close()


def _signed(
    url: str,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    signer: Signer | None = None,
) -> tuple[str, dict[str, str]]:
    """(request target, headers) of a request botocore signed (SigV4 as the root by default)."""
    request = AWSRequest(method=method, url=url + path, headers=dict(headers or {}), data=body)
    (signer or S3SigV4Auth(ROOT, "s3", REGION).add_auth)(request)
    parts = urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    signed = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in request.headers.items()
    }
    return target, signed


def _assert_error(answer: Raw, status: int, code: str) -> ET.Element:
    """The answer is S3's XML error with this status and code; its root element."""
    assert (answer.status, answer.code) == (status, code), answer.body[:600]
    root = ET.fromstring(answer.body)
    assert root.tag == "Error"
    assert root.findtext("Message")
    assert root.findtext("RequestId") == answer.headers["x-amz-request-id"]
    return root


def _nothing_written(s3: Any, bucket: str, *, kept: Mapping[str, bytes] | None = None) -> None:
    """The bucket holds exactly ``kept`` (nothing at all by default), with those bytes."""
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(entry["Key"] for entry in listed) == sorted(kept or {})
    for key, data in (kept or {}).items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _replace_field(authorization: str, field: str, change: Callable[[str], str]) -> str:
    """The Authorization header with one of its fields (Credential, Signature, ...) changed."""
    found = re.search(rf"{field}=([^,]+)", authorization)
    assert found is not None, authorization
    return authorization.replace(found.group(0), f"{field}={change(found.group(1))}")


def _flip_last(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


class _HostUnsigned(S3SigV4Auth):
    """botocore's signer, leaving ``host`` out of the signed headers (as a broken client might)."""

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        del headers["host"]
        return headers


class _Streaming(S3SigV4Auth):
    """botocore's signer for an aws-chunked body with signed chunks: the seed signature."""

    def __init__(self, payload: str) -> None:
        super().__init__(ROOT, "s3", REGION)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


def _skewed_clock(monkeypatch: pytest.MonkeyPatch, offset: dt.timedelta) -> None:
    """Make botocore's SigV4 signers think it is ``offset`` from now (a client's wrong clock)."""

    def now(remove_tzinfo: bool = True) -> dt.datetime:
        moment = dt.datetime.now(dt.UTC) + offset
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    monkeypatch.setattr(botocore.auth, "get_current_datetime", now)


# -- SigV4 in the Authorization header -----------------------------------------------------------


def _previous_day(credential: str) -> str:
    """``KEY/20240611/region/s3/aws4_request`` with the day before in its scope."""
    key, day, rest = credential.split("/", 2)
    before = dt.datetime.strptime(day, "%Y%m%d") - dt.timedelta(days=1)
    return f"{key}/{before:%Y%m%d}/{rest}"


def _signer(key: Credentials = ROOT, *, region: str = REGION, service: str = "s3") -> Signer:
    return S3SigV4Auth(key, service, region).add_auth


@dataclasses.dataclass(frozen=True)
class Tamper:
    """How a PUT is signed and then changed, and the answer S3 gives it."""

    status: int
    code: str
    signer: Signer | None = None
    #: Headers signed along (the request sends ``headers`` instead, where they overlap).
    sign_headers: Mapping[str, str] | None = None
    #: An Authorization field (Credential, Signature) and how it is changed after signing.
    field: tuple[str, Callable[[str], str]] | None = None
    #: Headers changed after signing (None: not sent).
    headers: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    body: bytes = BODY


TAMPERS = {
    "signature-flipped": Tamper(403, "SignatureDoesNotMatch", field=("Signature", _flip_last)),
    "wrong-secret": Tamper(
        403, "SignatureDoesNotMatch", signer=_signer(Credentials(ACCESS, SECRET + "x"))
    ),
    "unknown-access-key": Tamper(
        403, "InvalidAccessKeyId", signer=_signer(Credentials("T0UNKNOWNKEY00000000", SECRET))
    ),
    "scope-date": Tamper(400, "AuthorizationHeaderMalformed", field=("Credential", _previous_day)),
    "scope-region": Tamper(400, "AuthorizationHeaderMalformed", signer=_signer(region="eu-west-1")),
    "scope-service": Tamper(400, "AuthorizationHeaderMalformed", signer=_signer(service="ec2")),
    "host-not-signed": Tamper(
        400, "AuthorizationHeaderMalformed", signer=_HostUnsigned(ROOT, "s3", REGION).add_auth
    ),
    "host-changed": Tamper(403, "SignatureDoesNotMatch", headers={"Host": "localhost:1"}),
    "host-header-absent": Tamper(403, "SignatureDoesNotMatch", headers={"Host": None}),
    "signed-header-changed": Tamper(
        403,
        "SignatureDoesNotMatch",
        sign_headers={"x-amz-meta-color": "blue"},
        headers={"x-amz-meta-color": "red"},
    ),
    # S3 refuses an x-amz-* header the signature does not cover (HeadersNotSigned).
    "unsigned-amz-header-added": Tamper(403, "AccessDenied", headers={"x-amz-meta-x": "smuggled"}),
    "payload-hash-mismatch": Tamper(400, "XAmzContentSHA256Mismatch", body=OTHER_BODY),
    "payload-longer-body": Tamper(400, "XAmzContentSHA256Mismatch", body=BODY + b"!"),
    "payload-hash-header-changed": Tamper(
        403,
        "SignatureDoesNotMatch",
        headers={"x-amz-content-sha256": hashlib.sha256(OTHER_BODY).hexdigest()},
        body=OTHER_BODY,
    ),
}


def test_untampered_sigv4_put_is_written(server: ServeProcess, s3: Any, bucket: str) -> None:
    target, headers = _signed(server.url, "PUT", f"/{bucket}/k", body=BODY)
    assert _deliver(server.url, "PUT", target, headers, BODY).status == 200
    _nothing_written(s3, bucket, kept={"k": BODY})


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_tampered_sigv4_put_is_refused_and_writes_nothing(
    server: ServeProcess, s3: Any, bucket: str, case: str, existing: bool
) -> None:
    tamper = TAMPERS[case]
    kept = {"k": b"what was there before"} if existing else {}
    for key, data in kept.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    target, headers = _signed(
        server.url,
        "PUT",
        f"/{bucket}/k",
        body=BODY,
        headers=tamper.sign_headers,
        signer=tamper.signer,
    )
    if tamper.field is not None:
        field, change = tamper.field
        headers["Authorization"] = _replace_field(headers["Authorization"], field, change)
    sent: dict[str, str | None] = dict(headers)
    for name, value in tamper.headers.items():
        sent = {k: v for k, v in sent.items() if k.lower() != name.lower()}
        sent[name] = value
    answer = _deliver(server.url, "PUT", target, sent, tamper.body)
    root = _assert_error(answer, tamper.status, tamper.code)
    if case == "scope-region":
        assert root.findtext("Region") == REGION  # S3 says which region to sign for
    _nothing_written(s3, bucket, kept=kept)


def test_tampered_delete_deletes_nothing(server: ServeProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=BODY)
    target, headers = _signed(server.url, "DELETE", f"/{bucket}/k")
    headers["Authorization"] = _replace_field(headers["Authorization"], "Signature", _flip_last)
    _assert_error(_deliver(server.url, "DELETE", target, headers), 403, "SignatureDoesNotMatch")
    _nothing_written(s3, bucket, kept={"k": BODY})
    # The same request, untampered, deletes.
    target, headers = _signed(server.url, "DELETE", f"/{bucket}/k")
    assert _deliver(server.url, "DELETE", target, headers).status == 204
    _nothing_written(s3, bucket)


def test_unsigned_put_to_a_private_bucket_is_access_denied(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    answer = _deliver(server.url, "PUT", f"/{bucket}/k", {}, BODY)
    _assert_error(answer, 403, "AccessDenied")
    _nothing_written(s3, bucket)


# -- signed aws-chunked bodies -------------------------------------------------------------------


def _streaming_put(
    url: str,
    bucket: str,
    key: str,
    *,
    tamper: Callable[[bytes, list[str]], bytes] | None = None,
    trailers: Mapping[str, str] | None = None,
) -> Raw:
    """PUT ``CHUNKS`` as a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` body: the seed
    signature by botocore, each chunk's by the S3 reference chain; ``tamper(body,
    signatures)`` changes the encoded body before it is sent."""
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(sum(len(chunk) for chunk in CHUNKS)),
    }
    if trailers:
        headers["x-amz-trailer"] = ",".join(trailers)
    payload = STREAMING_TRAILER if trailers else STREAMING
    target, signed = _signed(
        url, "PUT", f"/{bucket}/{key}", headers=headers, signer=_Streaming(payload).add_auth
    )
    seed = re.search(r"Signature=([0-9a-f]{64})", signed["Authorization"])
    assert seed is not None
    signer = ReferenceChunkSigner(SECRET, signed["X-Amz-Date"], seed.group(1))
    body, signatures = encode_chunked(CHUNKS, signer=signer, trailers=trailers)
    if tamper is not None:
        body = tamper(body, signatures)
    return _deliver(url, "PUT", target, signed, body)


def _forge_signature(index: int) -> Callable[[bytes, list[str]], bytes]:
    def tamper(body: bytes, signatures: list[str]) -> bytes:
        wrong = _flip_last(signatures[index])
        return body.replace(signatures[index].encode(), wrong.encode())

    return tamper


def _flip_data_byte(chunk: int) -> Callable[[bytes, list[str]], bytes]:
    def tamper(body: bytes, signatures: list[str]) -> bytes:
        # The chunk's data starts after its header line, which ends with its signature.
        start = body.index(signatures[chunk].encode()) + 64 + 2
        position = start + len(CHUNKS[chunk]) // 2
        return body[:position] + bytes([body[position] ^ 1]) + body[position + 1 :]

    return tamper


STREAMING_CASES = {
    "first-chunk-signature": _forge_signature(0),
    "middle-chunk-signature": _forge_signature(2),
    "last-data-chunk-signature": _forge_signature(len(CHUNKS) - 1),
    "final-empty-chunk-signature": _forge_signature(len(CHUNKS)),
    "first-chunk-data": _flip_data_byte(0),
    "middle-chunk-data": _flip_data_byte(2),
    "last-chunk-data": _flip_data_byte(len(CHUNKS) - 1),
}


def test_signed_streaming_upload_is_written(server: ServeProcess, s3: Any, bucket: str) -> None:
    assert _streaming_put(server.url, bucket, "k").status == 200
    _nothing_written(s3, bucket, kept={"k": b"".join(CHUNKS)})


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("case", sorted(STREAMING_CASES))
def test_bad_chunk_signature_is_refused_and_writes_nothing(
    server: ServeProcess, s3: Any, bucket: str, case: str, existing: bool
) -> None:
    kept = {"k": b"what was there before"} if existing else {}
    for key, data in kept.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    answer = _streaming_put(server.url, bucket, "k", tamper=STREAMING_CASES[case])
    _assert_error(answer, 403, "SignatureDoesNotMatch")
    _nothing_written(s3, bucket, kept=kept)


def test_streaming_upload_cut_short_writes_nothing(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    # The body ends (at its Content-Length) before the chunks it announced do: the
    # upload must not be committed as far as it got.
    def cut(body: bytes, signatures: list[str]) -> bytes:
        return body[: body.index(signatures[3].encode())]

    answer = _streaming_put(server.url, bucket, "k", tamper=cut)
    _assert_error(answer, 400, "IncompleteBody")
    _nothing_written(s3, bucket)


# -- trailers ------------------------------------------------------------------------------------


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _trailer_signer(request: AWSRequest) -> None:
    """botocore's signer as it signs a body with a checksum trailer (its HTTPS default)."""
    request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
    S3SigV4Auth(ROOT, "s3", REGION).add_auth(request)


def _crc32_trailer_put(url: str, bucket: str, key: str, data: bytes, *, crc_of: bytes) -> Raw:
    """PUT ``data`` as botocore does over HTTPS (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: aws-chunked,
    the CRC32 in a trailer, encoded by botocore's own wrapper), with the CRC32 of ``crc_of``."""
    body = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=16384,
    ).read()
    trailer = f"x-amz-checksum-crc32:{_crc32(data)}".encode()
    assert body.count(trailer) == 1
    body = body.replace(trailer, f"x-amz-checksum-crc32:{_crc32(crc_of)}".encode())
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    target, signed = _signed(
        url, "PUT", f"/{bucket}/{key}", headers=headers, signer=_trailer_signer
    )
    assert signed["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    return _deliver(url, "PUT", target, signed, body)


def test_unsigned_trailer_with_a_wrong_crc32_is_bad_digest(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    data = b"".join(CHUNKS)
    answer = _crc32_trailer_put(server.url, bucket, "k", data, crc_of=data[::-1])
    _assert_error(answer, 400, "BadDigest")
    _nothing_written(s3, bucket)
    assert _crc32_trailer_put(server.url, bucket, "k", data, crc_of=data).status == 200
    _nothing_written(s3, bucket, kept={"k": data})


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("right", 200, ""),
        ("wrong-checksum", 400, "BadDigest"),
        ("wrong-trailer-signature", 403, "SignatureDoesNotMatch"),
    ],
)
def test_signed_trailer_checksum_and_signature_are_both_checked(
    server: ServeProcess, s3: Any, bucket: str, case: str, status: int, code: str
) -> None:
    data = b"".join(CHUNKS)
    right = _crc32(data)
    # A wrong checksum signed correctly: only the checksum can catch it.
    value = right if case != "wrong-checksum" else "AAAAAA=="
    # The trailer's signature comes after the chunks' (the empty last one's included).
    tamper = _forge_signature(len(CHUNKS) + 1) if case == "wrong-trailer-signature" else None
    answer = _streaming_put(
        server.url, bucket, "k", trailers={"x-amz-checksum-crc32": value}, tamper=tamper
    )
    if status == 200:
        assert answer.status == 200, answer.body
        head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == right
        _nothing_written(s3, bucket, kept={"k": data})
        return
    _assert_error(answer, status, code)
    _nothing_written(s3, bucket)


# -- presigned URLs ------------------------------------------------------------------------------


def _presigned(url: str, method: str, path: str, *, expires: int) -> str:
    """The request target of a URL presigned by botocore's `S3SigV4QueryAuth`."""
    target, _ = _signed(
        url, method, path, signer=S3SigV4QueryAuth(ROOT, "s3", REGION, expires=expires).add_auth
    )
    return target


def test_presigned_put_and_get_work_within_their_week(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    put = _presigned(server.url, "PUT", f"/{bucket}/k", expires=7 * 24 * 3600)
    assert _deliver(server.url, "PUT", put, {}, BODY).status == 200
    get = _presigned(server.url, "GET", f"/{bucket}/k", expires=5)
    answer = _deliver(server.url, "GET", get, {})
    assert (answer.status, answer.body) == (200, BODY)


@pytest.mark.parametrize(
    ("expires", "status", "code"),
    [
        (0, 403, "AccessDenied"),  # valid for no second at all
        (-1, 400, "AuthorizationQueryParametersError"),
        (-3600, 400, "AuthorizationQueryParametersError"),
        (7 * 24 * 3600 + 1, 400, "AuthorizationQueryParametersError"),
        (365 * 24 * 3600, 400, "AuthorizationQueryParametersError"),
    ],
)
def test_presigned_put_with_an_impossible_expiry_is_refused(
    server: ServeProcess, s3: Any, bucket: str, expires: int, status: int, code: str
) -> None:
    target = _presigned(server.url, "PUT", f"/{bucket}/k", expires=expires)
    assert f"X-Amz-Expires={expires}" in target
    _assert_error(_deliver(server.url, "PUT", target, {}, BODY), status, code)
    _nothing_written(s3, bucket)


def test_presigned_put_already_expired_is_refused(
    server: ServeProcess, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _skewed_clock(monkeypatch, -dt.timedelta(hours=2))  # signed two hours ago, for one hour
    target = _presigned(server.url, "PUT", f"/{bucket}/k", expires=3600)
    root = _assert_error(_deliver(server.url, "PUT", target, {}, BODY), 403, "AccessDenied")
    assert root.findtext("Message") == "Request has expired"
    _nothing_written(s3, bucket)


def test_presigned_url_that_lapses_while_held_is_refused(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=BODY)
    target = _presigned(server.url, "DELETE", f"/{bucket}/k", expires=1)
    time.sleep(1.1)
    _assert_error(_deliver(server.url, "DELETE", target, {}), 403, "AccessDenied")
    _nothing_written(s3, bucket, kept={"k": BODY})


@pytest.mark.parametrize(
    ("signed_method", "signed_key", "used_method", "used_key", "tamper"),
    [
        ("GET", "k", "PUT", "k", None),  # a presigned GET reused as a PUT
        ("GET", "k", "DELETE", "k", None),
        ("PUT", "k", "PUT", "other", None),  # for one key, used for another
        ("PUT", "k", "PUT", "k", ("X-Amz-Expires=60", "X-Amz-Expires=600")),
        ("PUT", "k", "PUT", "k", ("X-Amz-Date=", "X-Amz-Date=2")),  # shifted date
    ],
    ids=["get-as-put", "get-as-delete", "other-key", "longer-expiry", "other-date"],
)
def test_presigned_url_used_for_another_request_is_refused(
    server: ServeProcess,
    s3: Any,
    bucket: str,
    signed_method: str,
    signed_key: str,
    used_method: str,
    used_key: str,
    tamper: tuple[str, str] | None,
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    target = _presigned(server.url, signed_method, f"/{bucket}/{signed_key}", expires=60)
    if tamper is not None:
        old, new = tamper
        if old == "X-Amz-Date=":
            stamp = re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", target)
            assert stamp is not None
            moved = (
                dt.datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ") + dt.timedelta(seconds=30)
            ).strftime("%Y%m%dT%H%M%SZ")
            old, new = stamp.group(0), f"X-Amz-Date={moved}"
        assert old in target
        target = target.replace(old, new)
    target = target.replace(f"/{bucket}/{signed_key}?", f"/{bucket}/{used_key}?")
    answer = _deliver(server.url, used_method, target, {}, BODY if used_method == "PUT" else b"")
    _assert_error(answer, 403, "SignatureDoesNotMatch")
    _nothing_written(s3, bucket, kept={"k": b"before"})


def test_sigv2_presigned_url_expired_or_reused_is_refused(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    def presign(method: str, expires: int) -> str:
        return _signed(
            server.url,
            method,
            f"/{bucket}/k",
            signer=HmacV1QueryAuth(ROOT, expires=expires).add_auth,
        )[0]

    expired = presign("PUT", -10)
    _assert_error(_deliver(server.url, "PUT", expired, {}, BODY), 403, "AccessDenied")
    get = presign("GET", 300)
    _assert_error(_deliver(server.url, "PUT", get, {}, BODY), 403, "SignatureDoesNotMatch")
    _nothing_written(s3, bucket)
    assert _deliver(server.url, "PUT", presign("PUT", 300), {}, BODY).status == 200
    _nothing_written(s3, bucket, kept={"k": BODY})


# -- clocks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "refused"),
    [(-16, True), (16, True), (-60 * 24, True), (-14, False), (14, False)],
)
def test_sigv4_clock_skew_beyond_15_minutes_is_refused(
    server: ServeProcess,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    minutes: int,
    refused: bool,
) -> None:
    _skewed_clock(monkeypatch, dt.timedelta(minutes=minutes))
    target, headers = _signed(server.url, "PUT", f"/{bucket}/k", body=BODY)
    answer = _deliver(server.url, "PUT", target, headers, BODY)
    if not refused:
        assert answer.status == 200, answer.body
        _nothing_written(s3, bucket, kept={"k": BODY})
        return
    root = _assert_error(answer, 403, "RequestTimeTooSkewed")
    assert root.findtext("MaxAllowedSkewMilliseconds") == "900000"
    assert root.findtext("ServerTime")
    _nothing_written(s3, bucket)


class _SkewedHmacV1(HmacV1Auth):
    """botocore's SigV2 signer on a clock ``offset_s`` from now."""

    def __init__(self, offset_s: float) -> None:
        super().__init__(ROOT)
        self._offset_s = offset_s

    def _get_date(self) -> str:
        return formatdate(time.time() + self._offset_s, usegmt=True)


@pytest.mark.parametrize(("offset_s", "status"), [(-20 * 60, 403), (20 * 60, 403), (-60, 200)])
def test_sigv2_clock_skew_beyond_15_minutes_is_refused(
    server: ServeProcess, s3: Any, bucket: str, offset_s: float, status: int
) -> None:
    target, headers = _signed(
        server.url, "PUT", f"/{bucket}/k", body=BODY, signer=_SkewedHmacV1(offset_s).add_auth
    )
    answer = _deliver(server.url, "PUT", target, headers, BODY)
    if status == 200:
        assert answer.status == 200, answer.body
        _nothing_written(s3, bucket, kept={"k": BODY})
        return
    _assert_error(answer, 403, "RequestTimeTooSkewed")
    _nothing_written(s3, bucket)


# -- SigV2 in the Authorization header -----------------------------------------------------------


@pytest.mark.parametrize("case", ["signature-flipped", "amz-header-added", "wrong-secret", "ok"])
def test_sigv2_header_tampering_is_refused(
    server: ServeProcess, s3: Any, bucket: str, case: str
) -> None:
    credentials = Credentials(ACCESS, "not-the-secret") if case == "wrong-secret" else ROOT
    target, headers = _signed(
        server.url, "PUT", f"/{bucket}/k", body=BODY, signer=HmacV1Auth(credentials).add_auth
    )
    if case == "signature-flipped":
        access, signature = headers["Authorization"].removeprefix("AWS ").split(":")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        headers["Authorization"] = f"AWS {access}:{flipped}"
    elif case == "amz-header-added":
        headers["x-amz-meta-extra"] = "smuggled"  # SigV2 signs every x-amz-* header
    answer = _deliver(server.url, "PUT", target, headers, BODY)
    if case == "ok":
        assert answer.status == 200, answer.body
        _nothing_written(s3, bucket, kept={"k": BODY})
        return
    _assert_error(answer, 403, "SignatureDoesNotMatch")
    _nothing_written(s3, bucket)


# -- boto3 itself, with a wrong secret ------------------------------------------------------------


def test_boto3_with_a_wrong_secret_writes_nothing(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    wrong = make_client(server.url, secret=SECRET + "!")
    calls: Sequence[Callable[[], object]] = (
        lambda: wrong.put_object(Bucket=bucket, Key="k", Body=BODY),
        lambda: wrong.create_multipart_upload(Bucket=bucket, Key="k"),
        lambda: wrong.delete_bucket(Bucket=bucket),
    )
    for call in calls:
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == ("SignatureDoesNotMatch", 403)
    _nothing_written(s3, bucket)
    s3.head_bucket(Bucket=bucket)


@pytest.mark.parametrize("signature_version", [None, "s3v4"], ids=["default", "s3v4"])
def test_boto3_presigned_urls_hold_to_their_method_key_and_expiry(
    server: ServeProcess, s3: Any, bucket: str, signature_version: str | None
) -> None:
    # generate_presigned_url goes through botocore.signers.RequestSigner; by default it
    # presigns S3 with SigV2 query parameters (../shared/notes/s3-clients.md). (An expiry of
    # 0 is tested with S3SigV4QueryAuth above: with awscrt installed, boto3 refuses to make one.)
    config = {"signature_version": signature_version} if signature_version else {}
    client = make_client(server.url, **config)

    def presign(method: str, key: str, expires: int) -> str:
        url = client.generate_presigned_url(
            method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"

    get = presign("get_object", "k", 300)
    assert ("X-Amz-Signature=" in get) == (signature_version == "s3v4")
    _assert_error(_deliver(server.url, "PUT", get, {}, BODY), 403, "SignatureDoesNotMatch")
    other_key = presign("put_object", "k", 300).replace(f"/{bucket}/k?", f"/{bucket}/j?")
    _assert_error(_deliver(server.url, "PUT", other_key, {}, BODY), 403, "SignatureDoesNotMatch")
    too_long = presign("put_object", "k", 7 * 24 * 3600 + 1)
    status, code = (400, "AuthorizationQueryParametersError")
    _assert_error(_deliver(server.url, "PUT", too_long, {}, BODY), status, code)
    _nothing_written(s3, bucket)

    put = presign("put_object", "k", 300)
    assert _deliver(server.url, "PUT", put, {}, BODY).status == 200
    answer = _deliver(server.url, "GET", get, {})
    assert (answer.status, answer.body) == (200, BODY)
    _nothing_written(s3, bucket, kept={"k": BODY})
