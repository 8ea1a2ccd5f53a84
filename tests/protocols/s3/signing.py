"""Requests signed by botocore's own signers, seen the way an HTTP server sees them,
and a reference ``aws-chunked`` encoder written from the AWS documentation.

Nothing here shares code with `tier0.protocols.s3`: the signatures come from
botocore, and the chunk signatures from the HMAC chain spelled out in the S3
API reference, so that the two implementations check each other.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from tier0.errors import InvalidCredentials
from tier0.identity import Principal
from tier0.protocols.s3 import Authenticator, SignedRequest

ENDPOINT = "http://127.0.0.1:9000"
REGION = "us-east-1"

ALICE = Principal("p-alice", "alice", "user")
BOB = Principal("p-bob", "bob", "agent")
# The secret holds characters that break naive encoding (/, +, =, a space).
ALICE_KEY = Credentials("AKIAALICE00000000000", "alice/secret+with= odd chars")
BOB_KEY = Credentials("AKIABOB0000000000000", "bob-secret-0123456789")
UNKNOWN_KEY = Credentials("AKIAUNKNOWN000000000", "whatever")

_SECRETS = {
    ALICE_KEY.access_key: (ALICE, ALICE_KEY.secret_key),
    BOB_KEY.access_key: (BOB, BOB_KEY.secret_key),
}


def secret_for(access_key: str) -> tuple[Principal, str]:
    """Like `tier0.identity.Principals.secret_for`, over two fixed principals."""
    try:
        return _SECRETS[access_key]
    except KeyError:
        raise InvalidCredentials(f"unknown access key {access_key!r}") from None


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def authenticator(now: float, *, region: str | None = REGION) -> tuple[Authenticator, Clock]:
    clock = Clock(now)
    return Authenticator(secret_for, clock=clock, region=region), clock


def url(path: str, query: str = "", *, endpoint: str = ENDPOINT) -> str:
    """The URL botocore's S3 serializer builds for a key path (``/bucket/key``)."""
    encoded: str = percent_encode(path, safe="/~")
    return endpoint + encoded + (f"?{query}" if query else "")


def received(
    request: AWSRequest | AWSPreparedRequest, *, host_bucket: str | None = None
) -> SignedRequest:
    """The request as an HTTP server receives it: the request target from the
    request line, the headers on the wire (Host as http.client writes it)."""
    prepared = request.prepare() if isinstance(request, AWSRequest) else request
    parts = urlsplit(prepared.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        (name, value.decode("latin-1") if isinstance(value, bytes) else value)
        for name, value in prepared.headers.items()
    ]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(("Host", parts.netloc))
    return SignedRequest.from_target(prepared.method, target, headers, host_bucket=host_bucket)


def sign_v4(
    method: str,
    target_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    key: Credentials = ALICE_KEY,
    region: str = REGION,
    payload_signing: bool = True,
) -> SignedRequest:
    """A request signed by botocore's `S3SigV4Auth` (Authorization header)."""
    request = AWSRequest(method=method, url=target_url, headers=dict(headers or {}), data=body)
    if not payload_signing:
        # The switch boto3 users flip; botocore then signs UNSIGNED-PAYLOAD.
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(key, "s3", region).add_auth(request)
    return received(request)


def presign_v4(
    method: str,
    target_url: str,
    *,
    expires: int = 3600,
    headers: Mapping[str, str] | None = None,
    key: Credentials = ALICE_KEY,
    region: str = REGION,
) -> SignedRequest:
    """A URL presigned by botocore's `S3SigV4QueryAuth`, requested with ``headers``."""
    request = AWSRequest(method=method, url=target_url, headers=dict(headers or {}))
    S3SigV4QueryAuth(key, "s3", region, expires=expires).add_auth(request)
    return received(request)


def sign_v2(
    method: str,
    target_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    key: Credentials = ALICE_KEY,
    auth_path: str | None = None,
    host_bucket: str | None = None,
) -> SignedRequest:
    """A request signed by botocore's `HmacV1Auth` (``AWS key:signature``)."""
    request = AWSRequest(
        method=method, url=target_url, headers=dict(headers or {}), data=body, auth_path=auth_path
    )
    HmacV1Auth(key).add_auth(request)
    return received(request, host_bucket=host_bucket)


def presign_v2(
    method: str,
    target_url: str,
    *,
    expires: int = 3600,
    headers: Mapping[str, str] | None = None,
    key: Credentials = ALICE_KEY,
) -> SignedRequest:
    """A URL presigned by botocore's `HmacV1QueryAuth`."""
    request = AWSRequest(method=method, url=target_url, headers=dict(headers or {}))
    HmacV1QueryAuth(key, expires=expires).add_auth(request)
    return received(request)


def signed_at(request: SignedRequest) -> float:
    """When botocore signed the request (X-Amz-Date, Date or Expires), in epoch seconds."""
    params = dict(parse_qsl(request.query, keep_blank_values=True))
    stamp = request.headers.get("x-amz-date") or params.get("X-Amz-Date")
    if stamp is not None:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
    return parsedate_to_datetime(request.headers["date"]).timestamp()


def with_headers(request: SignedRequest, **changes: str | None) -> SignedRequest:
    """The request with headers changed (``x_amz_acl`` means ``x-amz-acl``); None removes."""
    headers = dict(request.headers)
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value is None:
            headers.pop(header, None)
        else:
            headers[header] = value
    return dataclasses.replace(request, headers=headers)


# --- a reference aws-chunked encoder, from the S3 API reference ----------------

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclasses.dataclass(frozen=True)
class ReferenceChunkSigner:
    """Chunk and trailer signatures computed the way the S3 API reference spells
    them out ("Signature Calculations ... Transferring Payload in Multiple
    Chunks" and "... Including Trailing Headers")."""

    secret: str
    timestamp: str  # yyyymmddThhmmssZ
    seed: str
    region: str = REGION

    @property
    def scope(self) -> str:
        return f"{self.timestamp[:8]}/{self.region}/s3/aws4_request"

    def _sign(self, text: str) -> str:
        key = _hmac(("AWS4" + self.secret).encode(), self.timestamp[:8])
        for part in (self.region, "s3", "aws4_request"):
            key = _hmac(key, part)
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()

    def chunk(self, previous: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        return self._sign(
            f"AWS4-HMAC-SHA256-PAYLOAD\n{self.timestamp}\n{self.scope}\n{previous}\n{EMPTY_SHA256}\n{digest}"
        )

    def trailer(self, previous: str, trailer: bytes) -> str:
        digest = hashlib.sha256(trailer).hexdigest()
        return self._sign(
            f"AWS4-HMAC-SHA256-TRAILER\n{self.timestamp}\n{self.scope}\n{previous}\n{digest}"
        )


def encode_chunked(
    chunks: Sequence[bytes],
    *,
    signer: ReferenceChunkSigner | None = None,
    trailers: Mapping[str, str] | None = None,
    separator: bool = False,
) -> tuple[bytes, list[str]]:
    """An ``aws-chunked`` body of ``chunks`` (then the empty last chunk) and the
    chunk signatures it carries (the trailer signature last, if any).

    ``separator`` puts an empty line between the last chunk and the trailers,
    the way the AWS guide's example prints it."""
    parts: list[bytes] = []
    signatures: list[str] = []
    previous = signer.seed if signer else ""
    for data in [*chunks, b""]:
        if signer:
            previous = signer.chunk(previous, data)
            signatures.append(previous)
            parts.append(f"{len(data):x};chunk-signature={previous}\r\n".encode())
        else:
            parts.append(f"{len(data):x}\r\n".encode())
        if data:
            parts.append(data + b"\r\n")
    if trailers:
        if separator:
            parts.append(b"\r\n")
        lines = "".join(f"{name}:{value}\n" for name, value in trailers.items())
        parts.extend(f"{name}:{value}\r\n".encode() for name, value in trailers.items())
        if signer:
            signature = signer.trailer(previous, lines.encode())
            signatures.append(signature)
            parts.append(f"x-amz-trailer-signature:{signature}\r\n".encode())
    parts.append(b"\r\n")
    return b"".join(parts), signatures
