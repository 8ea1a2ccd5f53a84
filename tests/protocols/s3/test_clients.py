"""Whole boto3 clients, default settings unless a test says otherwise.

Each request is taken at botocore's ``before-send`` event, the point where it
would go on the wire, so that signing, checksums and ``aws-chunked`` encoding
are all the client's own. No server is involved: the gateway will add one.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from tests.protocols.s3.signing import ALICE, ALICE_KEY, REGION, secret_for
from tier0.protocols.s3 import (
    Authenticator,
    AuthScheme,
    PayloadMode,
    S3AuthError,
    SignedRequest,
    open_body,
)

BODY = b"the quick brown fox " * 500
KEY = "dir/ünï code+plus %.txt"


class _EmptyBody:
    def stream(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        yield b"<Result/>"

    def read(self, *args: object, **kwargs: object) -> bytes:
        return b"<Result/>"


@dataclass
class Sent:
    """One request as it would leave the client."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes

    def received(self, *, host_bucket: str | None = None) -> SignedRequest:
        parts = urlsplit(self.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = list(self.headers)
        # The HTTP client adds Host unless the signer set it (botocore's CRT signer,
        # used when awscrt is installed, does).
        if not any(name.lower() == "host" for name, _ in headers):
            headers.append(("Host", parts.netloc))
        return SignedRequest.from_target(self.method, target, headers, host_bucket=host_bucket)


def _client(endpoint: str, config: Config | None = None) -> tuple[Any, list[Sent]]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ALICE_KEY.access_key,
        aws_secret_access_key=ALICE_KEY.secret_key,
        region_name=REGION,
        config=config or Config(),
    )
    sent: list[Sent] = []

    def before_send(request: AWSPreparedRequest, **_: object) -> AWSResponse:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        headers = [
            (name, value.decode("latin-1") if isinstance(value, bytes) else value)
            for name, value in request.headers.items()
        ]
        sent.append(Sent(request.method, request.url, headers, body or b""))
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    client.meta.events.register("before-send.s3", before_send)
    return client, sent


OPERATIONS: dict[str, Callable[[Any], object]] = {
    "put_object": lambda c: c.put_object(
        Bucket="bucket", Key=KEY, Body=BODY, Metadata={"Color": "blue"}, ContentType="text/plain"
    ),
    "get_object_range": lambda c: c.get_object(Bucket="bucket", Key=KEY, Range="bytes=0-9"),
    "head_object_version_null": lambda c: c.head_object(Bucket="bucket", Key="k", VersionId="null"),
    "list_objects_v2": lambda c: c.list_objects_v2(Bucket="bucket", Prefix="a b/€", Delimiter="/"),
    "create_multipart_upload": lambda c: c.create_multipart_upload(Bucket="bucket", Key=KEY),
    "upload_part": lambda c: c.upload_part(
        Bucket="bucket", Key=KEY, PartNumber=2, UploadId="u/+=", Body=BODY
    ),
    "delete_objects": lambda c: c.delete_objects(
        Bucket="bucket", Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}], "Quiet": True}
    ),
    "copy_object": lambda c: c.copy_object(
        Bucket="bucket", Key="copy", CopySource={"Bucket": "bucket", "Key": KEY}
    ),
    "get_bucket_location": lambda c: c.get_bucket_location(Bucket="bucket"),
    "put_object_tagging": lambda c: c.put_object_tagging(
        Bucket="bucket", Key=KEY, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
    ),
}

SETUPS = {
    "sigv4-http": ("http://127.0.0.1:9000", Config(), AuthScheme.SIGV4_HEADER),
    "sigv4-https": ("https://127.0.0.1:9000", Config(), AuthScheme.SIGV4_HEADER),
    "sigv4-virtual-host": (
        "http://s3.tier0.test:9000",
        Config(s3={"addressing_style": "virtual"}),
        AuthScheme.SIGV4_HEADER,
    ),
    "sigv2": ("http://127.0.0.1:9000", Config(signature_version="s3"), AuthScheme.SIGV2_HEADER),
    "sigv2-virtual-host": (
        "http://s3.tier0.test:9000",
        Config(signature_version="s3", s3={"addressing_style": "virtual"}),
        AuthScheme.SIGV2_HEADER,
    ),
}


def _host_bucket(sent: Sent) -> str | None:
    host = urlsplit(sent.url).hostname or ""
    return host.split(".")[0] if host.startswith("bucket.") else None


def _decode(result: Any, body: bytes) -> tuple[bytes, dict[str, str]]:
    decoder = open_body(result)
    out = [
        payload
        for start in range(0, len(body), 1000)
        for payload in decoder.feed(body[start : start + 1000])
    ]
    return b"".join(out), decoder.finish()


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_boto3_request_authenticates_and_its_body_decodes(setup: str, operation: str) -> None:
    endpoint, config, scheme = SETUPS[setup]
    client, sent = _client(endpoint, config)
    OPERATIONS[operation](client)
    assert len(sent) == 1
    request = sent[0]
    if (
        "virtual" in setup and operation != "get_bucket_location"
    ):  # botocore keeps that one path-style
        assert urlsplit(request.url).hostname == "bucket.s3.tier0.test"
    result = Authenticator(secret_for).authenticate(
        request.received(host_bucket=_host_bucket(request))
    )
    assert (result.principal, result.scheme) == (ALICE, scheme)
    payload, trailers = _decode(result, request.body)
    if operation in ("put_object", "upload_part"):
        assert payload == BODY
    if result.payload.chunked:
        # Over HTTPS botocore streams the body with its CRC32 in a trailer.
        assert result.payload is PayloadMode.STREAMING_UNSIGNED_TRAILER
        crc32 = base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode()
        assert trailers == {"x-amz-checksum-crc32": crc32}


def test_boto3_over_https_sends_put_as_aws_chunked_with_a_crc32_trailer() -> None:
    client, sent = _client("https://127.0.0.1:9000")
    client.put_object(Bucket="bucket", Key=KEY, Body=BODY)
    result = Authenticator(secret_for).authenticate(sent[0].received())
    assert result.payload is PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert result.trailer_names == {"x-amz-checksum-crc32"}
    assert result.decoded_length == len(BODY)


def test_boto3_put_replayed_with_another_body_is_refused_at_the_end() -> None:
    client, sent = _client("http://127.0.0.1:9000")
    client.put_object(Bucket="bucket", Key=KEY, Body=BODY)
    result = Authenticator(secret_for).authenticate(sent[0].received())
    assert result.payload is PayloadMode.SHA256
    with pytest.raises(S3AuthError) as caught:
        _decode(result, BODY.replace(b"fox", b"cat"))
    assert caught.value.s3_code == "XAmzContentSHA256Mismatch"


@pytest.mark.parametrize(
    ("config", "scheme"),
    [
        (Config(), AuthScheme.SIGV2_QUERY),  # botocore's default for S3 presigning
        (Config(signature_version="s3v4"), AuthScheme.SIGV4_QUERY),
    ],
)
@pytest.mark.parametrize("method", ["get_object", "put_object"])
def test_boto3_presigned_url_authenticates_when_used_by_a_plain_http_client(
    config: Config, scheme: AuthScheme, method: str
) -> None:
    client, _ = _client("http://127.0.0.1:9000", config)
    presigned = client.generate_presigned_url(
        method, Params={"Bucket": "bucket", "Key": KEY}, ExpiresIn=300
    )
    http_method = "GET" if method == "get_object" else "PUT"
    used = Sent(http_method, presigned, [("Content-Length", "0")], b"")
    auth = Authenticator(secret_for)
    result = auth.authenticate(used.received())
    assert (result.principal, result.scheme) == (ALICE, scheme)
    other = Sent("DELETE", presigned, [], b"")
    with pytest.raises(S3AuthError) as caught:
        auth.authenticate(other.received())
    assert caught.value.s3_code == "SignatureDoesNotMatch"
