"""Requests boto3 will not send as a test needs them, signed by botocore, sent by http.client.

`send` signs a request with botocore's ``S3SigV4Auth`` (the signature a real
client computes) and sends it as given: bodies of any shape (streamed with
``Transfer-Encoding: chunked`` when the body is an iterator), headers boto3
would not set, and answers boto3 would hide (a 304's empty body).
"""

from __future__ import annotations

import dataclasses
import http.client
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.protocols.s3.live import ACCESS, REGION, SECRET

Payload = Literal["sha256", "unsigned", "trailer"]
#: The keys of the servers the ``server`` fixture starts.
ROOT = Credentials(ACCESS, SECRET)


@dataclasses.dataclass(frozen=True)
class Raw:
    """An answer as received: status, headers (lower-case names), body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str:
        """The S3 error code in the body, or '' when there is none."""
        if not self.body.startswith(b"<?xml"):
            return ""
        return ET.fromstring(self.body).findtext("Code") or ""


def signed_headers(
    url: str,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    payload: Payload = "sha256",
    credentials: Credentials = ROOT,
) -> dict[str, str]:
    """The headers of ``method url+path`` as botocore signs them.

    ``payload`` chooses ``x-amz-content-sha256``: the body's SHA-256, ``UNSIGNED-PAYLOAD``,
    or ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (the body is then aws-chunked, with trailers).
    """
    request = AWSRequest(method=method, url=url + path, headers=dict(headers or {}), data=body)
    if payload == "trailer":
        request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
    elif payload == "unsigned":
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    return {name: value for name, value in request.headers.items() if isinstance(value, str)}


def send(
    url: str,
    method: str,
    path: str,
    *,
    body: bytes | Iterable[bytes] = b"",
    headers: Mapping[str, str] | None = None,
    payload: Payload = "sha256",
    unsigned_headers: Mapping[str, str] | None = None,
    credentials: Credentials = ROOT,
) -> Raw:
    """Sign and send one request; ``unsigned_headers`` are added after signing.

    An iterable body is sent with ``Transfer-Encoding: chunked`` (and signed
    as ``UNSIGNED-PAYLOAD``, since its hash is not known up front).
    """
    streamed = not isinstance(body, bytes)
    signed = signed_headers(
        url,
        method,
        path,
        body=body if isinstance(body, bytes) else b"",
        headers=headers,
        payload="unsigned" if streamed else payload,
        credentials=credentials,
    )
    signed.update(unsigned_headers or {})
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        if streamed:
            connection.request(method, path, body=body, headers=signed, encode_chunked=True)
        else:
            connection.request(method, path, body=body, headers=signed)
        response = connection.getresponse()
        data = response.read()
        received = {name.lower(): value for name, value in response.getheaders()}
        return Raw(response.status, received, data)
    finally:
        connection.close()


def open_request(
    url: str,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    credentials: Credentials = ROOT,
) -> http.client.HTTPConnection:
    """Start a request whose chunked body the caller sends (``send_chunk``), then
    reads with ``connection.getresponse()``; for tests that act in the middle of
    an upload."""
    signed = signed_headers(
        url, method, path, headers=headers, payload="unsigned", credentials=credentials
    )
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in signed.items():
        connection.putheader(name, value)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    return connection


def send_chunk(connection: http.client.HTTPConnection, data: bytes) -> None:
    """One chunk of a ``Transfer-Encoding: chunked`` body; ``b""`` ends it."""
    connection.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")
