"""PutObject, GetObject, HeadObject and DeleteObject behind a real ``tier0 serve``, driven by
boto3 (default settings, checksums included) and by requests botocore signs (`raw`).

Covered: checksums kept and returned (CRC64NVME checked against a bitwise
reference written here), conditional reads and writes, versions and delete
markers, the stored standard headers and their GET overrides, and the size
limit. The limit is also tested with a lowered `GatewayLimits` on a gateway
served in this process.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import socket
import zlib
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import boto3
import google_crc32c
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import REGION, error_code, in_process, make_client
from tests.protocols.s3.raw import open_request, send, send_chunk, signed_headers
from tests.server.test_serve import ServeProcess, _self_signed, clean_environment
from tier0.protocols.s3 import GatewayLimits, create_s3_app

pytestmark = pytest.mark.slow

CRC64NVME_POLY_REFLECTED = 0x9A6C9329AC4BC9B5
ALL_ONES_64 = 0xFFFF_FFFF_FFFF_FFFF


def crc64nvme(data: bytes) -> int:
    """CRC-64/NVME, bit by bit: reflected polynomial, init and final XOR all ones."""
    crc = ALL_ONES_64
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (CRC64NVME_POLY_REFLECTED if crc & 1 else 0)
    return crc ^ ALL_ONES_64


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


REFERENCE = {
    "CRC32": lambda data: _b64(zlib.crc32(data).to_bytes(4, "big")),
    "CRC32C": lambda data: _b64(google_crc32c.value(data).to_bytes(4, "big")),
    "CRC64NVME": lambda data: _b64(crc64nvme(data).to_bytes(8, "big")),
    "SHA1": lambda data: _b64(hashlib.sha1(data).digest()),
    "SHA256": lambda data: _b64(hashlib.sha256(data).digest()),
}


def _headers(response: Any) -> dict[str, str]:
    headers: dict[str, str] = response["ResponseMetadata"]["HTTPHeaders"]
    return headers


def _error_headers(error: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return _headers(error.value.response)


def test_crc64nvme_reference_has_the_published_check_value() -> None:
    # The CRC catalogue's check value of CRC-64/NVME over "123456789".
    assert crc64nvme(b"123456789") == 0xAE8B14860A799888


# -- checksums kept and returned -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(REFERENCE))
def test_put_checksum_is_kept_and_returned_with_checksum_mode(
    s3: Any, bucket: str, algorithm: str
) -> None:
    body = os.urandom(200_000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm=algorithm)
    expected = REFERENCE[algorithm](body)
    assert put[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"
    # botocore validates the body against the header it gets back.
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == expected
    assert got["Body"].read() == body
    plain = s3.head_object(Bucket=bucket, Key="k")
    assert not any(name.startswith("x-amz-checksum-") for name in _headers(plain))


def test_range_get_returns_no_checksum(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789", ChecksumAlgorithm="SHA256")
    part = s3.get_object(Bucket=bucket, Key="k", Range="bytes=2-4", ChecksumMode="ENABLED")
    assert part["Body"].read() == b"234"
    assert not any(name.startswith("x-amz-checksum-") for name in _headers(part))
    head = s3.head_object(Bucket=bucket, Key="k", Range="bytes=2-4", ChecksumMode="ENABLED")
    assert (head["ResponseMetadata"]["HTTPStatusCode"], head["ContentLength"]) == (206, 3)
    assert head["ContentRange"] == "bytes 2-4/10"
    assert "ChecksumSHA256" not in head


@pytest.mark.parametrize("header", ["x-amz-checksum-algorithm", "x-amz-sdk-checksum-algorithm"])
def test_named_algorithm_without_value_is_computed_and_kept(
    server: ServeProcess, s3: Any, bucket: str, header: str
) -> None:
    body = os.urandom(50_000)
    answer = send(server.url, "PUT", f"/{bucket}/named", body=body, headers={header: "CRC64NVME"})
    assert answer.status == 200
    assert answer.headers["x-amz-checksum-crc64nvme"] == REFERENCE["CRC64NVME"](body)
    head = s3.head_object(Bucket=bucket, Key="named", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == REFERENCE["CRC64NVME"](body)


def test_unknown_checksum_algorithm_is_invalid_request(server: ServeProcess, bucket: str) -> None:
    answer = send(
        server.url, "PUT", f"/{bucket}/k", body=b"x", headers={"x-amz-checksum-algorithm": "MD4"}
    )
    assert (answer.status, answer.code) == (400, "InvalidRequest")


def test_crc64nvme_header_is_verified(server: ServeProcess, s3: Any, bucket: str) -> None:
    body = b"checked with crc64nvme" * 1000
    wrong = REFERENCE["CRC64NVME"](body[:-1])
    answer = send(
        server.url, "PUT", f"/{bucket}/bad", body=body, headers={"x-amz-checksum-crc64nvme": wrong}
    )
    assert (answer.status, answer.code) == (400, "BadDigest")
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key="bad")
    assert error_code(error) == ("404", 404)
    right = REFERENCE["CRC64NVME"](body)
    answer = send(
        server.url, "PUT", f"/{bucket}/good", body=body, headers={"x-amz-checksum-crc64nvme": right}
    )
    assert answer.status == 200
    head = s3.head_object(Bucket=bucket, Key="good", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == right


@pytest.mark.parametrize("correct", [True, False])
def test_crc64nvme_trailer_is_verified_and_kept(
    server: ServeProcess, s3: Any, bucket: str, correct: bool
) -> None:
    data = os.urandom(300_000)
    value = REFERENCE["CRC64NVME"](data if correct else data[1:])
    body = b"".join(
        [
            f"{len(data):x}\r\n".encode(),
            data,
            b"\r\n0\r\n",
            f"x-amz-checksum-crc64nvme:{value}\r\n\r\n".encode(),
        ]
    )
    answer = send(
        server.url,
        "PUT",
        f"/{bucket}/trailed",
        body=body,
        headers={
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc64nvme",
        },
        payload="trailer",
    )
    if not correct:
        assert (answer.status, answer.code) == (400, "BadDigest")
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key="trailed")
        return
    assert answer.status == 200
    head = s3.head_object(Bucket=bucket, Key="trailed", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == value
    # aws-chunked framed the upload; it is not how the object is encoded.
    assert "ContentEncoding" not in head


def test_boto3_over_tls_checksum_trailer_is_kept(tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    environment = clean_environment(
        TIER0_ROOT_ACCESS_KEY="T0TLSOBJECTSROOTKEY1", TIER0_ROOT_SECRET_KEY="tls-objects-secret"
    )
    tls = ("--certfile", str(certfile), "--keyfile", str(keyfile))
    with ServeProcess(tmp_path / "data", environment, *tls) as server:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name=REGION,
            aws_access_key_id="T0TLSOBJECTSROOTKEY1",
            aws_secret_access_key="tls-objects-secret",
            verify=str(certfile),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        s3.create_bucket(Bucket="tls")
        body = os.urandom(100_000)
        s3.put_object(Bucket="tls", Key="k", Body=body)  # CRC32 in an aws-chunked trailer
        head = s3.head_object(Bucket="tls", Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == REFERENCE["CRC32"](body)
        assert s3.get_object(Bucket="tls", Key="k", ChecksumMode="ENABLED")["Body"].read() == body


# -- conditional reads -----------------------------------------------------------------------


def _http_date(when: dt.datetime) -> str:
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


@pytest.fixture
def written(s3: Any, bucket: str) -> tuple[str, str, dt.datetime]:
    """(bucket, quoted ETag, Last-Modified) of an object ``k``."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="k")
    return bucket, head["ETag"], head["LastModified"]


def _status(call: Any, **conditions: Any) -> int:
    try:
        response = call(**conditions)
    except ClientError as error:
        return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.mark.parametrize("method", ["get_object", "head_object"])
def test_conditional_read_follows_s3_precedence(
    s3: Any, written: tuple[str, str, dt.datetime], method: str
) -> None:
    bucket, etag, modified = written
    call = getattr(s3, method)
    before, after = modified - dt.timedelta(hours=1), modified + dt.timedelta(hours=1)
    assert _status(call, Bucket=bucket, Key="k", IfMatch=etag) == 200
    assert _status(call, Bucket=bucket, Key="k", IfMatch='"0000"') == 412
    assert _status(call, Bucket=bucket, Key="k", IfMatch="*") == 200
    assert _status(call, Bucket=bucket, Key="k", IfNoneMatch=etag) == 304
    assert _status(call, Bucket=bucket, Key="k", IfNoneMatch='"0000"') == 200
    assert _status(call, Bucket=bucket, Key="k", IfModifiedSince=after) == 304
    assert _status(call, Bucket=bucket, Key="k", IfModifiedSince=before) == 200
    assert _status(call, Bucket=bucket, Key="k", IfUnmodifiedSince=before) == 412
    assert _status(call, Bucket=bucket, Key="k", IfUnmodifiedSince=after) == 200
    # If-Match true wins over If-Unmodified-Since false ...
    assert _status(call, Bucket=bucket, Key="k", IfMatch=etag, IfUnmodifiedSince=before) == 200
    # ... and If-None-Match false over If-Modified-Since true.
    assert _status(call, Bucket=bucket, Key="k", IfNoneMatch=etag, IfModifiedSince=before) == 304
    # If-None-Match true makes If-Modified-Since irrelevant, even when false.
    assert _status(call, Bucket=bucket, Key="k", IfNoneMatch='"0"', IfModifiedSince=after) == 200
    # 412 before 304: a failed If-Match decides, whatever If-None-Match says.
    assert _status(call, Bucket=bucket, Key="k", IfMatch='"0"', IfNoneMatch=etag) == 412


def test_not_modified_carries_validators_and_no_body(
    server: ServeProcess, written: tuple[str, str, dt.datetime]
) -> None:
    bucket, etag, modified = written
    answer = send(server.url, "GET", f"/{bucket}/k", headers={"If-None-Match": etag})
    assert answer.status == 304
    assert answer.body == b""
    assert answer.headers["etag"] == etag
    assert answer.headers["last-modified"] == _http_date(modified)


def test_precondition_failed_names_the_condition(
    server: ServeProcess, written: tuple[str, str, dt.datetime]
) -> None:
    bucket, _, _ = written
    answer = send(server.url, "GET", f"/{bucket}/k", headers={"If-Match": '"nope"'})
    assert (answer.status, answer.code) == (412, "PreconditionFailed")
    assert b"<Condition>If-Match</Condition>" in answer.body


def test_conditions_are_decided_before_the_range(
    s3: Any, written: tuple[str, str, dt.datetime]
) -> None:
    bucket, etag, _ = written
    # An unsatisfiable range would be 416; the failed condition is answered first.
    assert (
        _status(s3.get_object, Bucket=bucket, Key="k", IfNoneMatch=etag, Range="bytes=99-") == 304
    )
    part = s3.get_object(Bucket=bucket, Key="k", IfMatch=etag, Range="bytes=0-3")
    assert part["Body"].read() == b"cond"


# -- conditional writes ----------------------------------------------------------------------


def test_if_none_match_star_writes_only_a_new_key(s3: Any, store: tier0.Tier0, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    events = store.events.latest_seq()
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert error_code(error) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    assert store.events.latest_seq() == events  # nothing was written


def test_if_match_writes_only_over_that_etag(s3: Any, store: tier0.Tier0, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first")["ETag"]
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfMatch=first)["ETag"]
    events = store.events.latest_seq()
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k", Body=b"third", IfMatch=first)
    assert error_code(error) == ("PreconditionFailed", 412)
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == second
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=first)
    assert error_code(error) == ("NoSuchKey", 404)
    assert store.events.latest_seq() == events


def test_if_none_match_with_an_etag_is_not_implemented(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000, IfNoneMatch='"abc"')
    assert error_code(error) == ("NotImplemented", 501)
    # Refused before its body was read: the connection cannot carry another request
    # (the unread body, or its absence after Expect: 100-continue, would be misread).
    assert _error_headers(error)["connection"] == "close"
    s3.put_object(Bucket=bucket, Key="k", Body=b"next")  # a new connection, and it works


def _expect_continue(url: str, path: str, headers: dict[str, str], body: bytes) -> list[bytes]:
    """The status lines a PUT with ``Expect: 100-continue`` gets: it sends its head, and
    its body only once invited."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
            f"Expect: 100-continue\r\n{head}\r\n".encode()
        )
        reader = sock.makefile("rb")
        first = reader.readline()
        if not first.startswith(b"HTTP/1.1 100"):
            return [first]
        reader.readline()  # the blank line that ends the interim answer
        sock.sendall(body)
        return [first, reader.readline()]


def test_expect_continue_is_answered_after_the_request_is_authorized(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    # As S3 does: a PUT refused for who sends it, or where to, is answered before
    # its body is invited, so a client waiting for 100 Continue never sends it.
    anonymous = _expect_continue(server.url, f"/{bucket}/k", {}, b"body")
    assert anonymous == [b"HTTP/1.1 403 Forbidden\r\n"]
    path = "/no-such-bucket-here/k"
    signed = signed_headers(server.url, "PUT", path, body=b"body", headers=_EXPECT)
    assert _expect_continue(server.url, path, _without_host(signed), b"body")[0].startswith(
        b"HTTP/1.1 404"
    )
    path = f"/{bucket}/k"
    signed = signed_headers(server.url, "PUT", path, body=b"body", headers=_EXPECT)
    assert _expect_continue(server.url, path, _without_host(signed), b"body") == [
        b"HTTP/1.1 100 Continue\r\n",
        b"HTTP/1.1 200 OK\r\n",
    ]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"body"


_EXPECT: Final = {"Expect": "100-continue"}


def _without_host(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name.lower() not in ("host", "expect", "content-length")
    }


def test_write_racing_a_conditional_put_is_a_conflict(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    upload = open_request(server.url, "PUT", f"/{bucket}/raced", headers={"If-None-Match": "*"})
    try:
        # The condition holds when the upload begins (the key is absent). The server
        # checks it before it reads any of the body, and the socket buffers and the
        # gateway's queue hold ~14 MiB at most: once 32 MiB are sent, it has.
        send_chunk(upload, b"a" * (32 * 1024 * 1024))
        s3.put_object(Bucket=bucket, Key="raced", Body=b"winner")
        send_chunk(upload, b"b" * 1000)
        send_chunk(upload, b"")
        response = upload.getresponse()
        body = response.read()
    finally:
        upload.close()
    assert response.status == 409
    assert b"<Code>ConditionalRequestConflict</Code>" in body
    assert s3.get_object(Bucket=bucket, Key="raced")["Body"].read() == b"winner"


# -- versions and delete markers -------------------------------------------------------------


def test_versions_are_read_by_id(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"one")
    second = s3.put_object(Bucket=versioned, Key="k", Body=b"two")
    assert first["VersionId"] != second["VersionId"]
    old = s3.get_object(Bucket=versioned, Key="k", VersionId=first["VersionId"])
    assert (old["Body"].read(), old["VersionId"]) == (b"one", first["VersionId"])
    head = s3.head_object(Bucket=versioned, Key="k")
    assert head["VersionId"] == second["VersionId"]
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=versioned, Key="k", VersionId="no-such-version")
    assert error_code(error) == ("NoSuchVersion", 404)


def test_delete_marker_answers(s3: Any, versioned: str) -> None:
    put = s3.put_object(Bucket=versioned, Key="k", Body=b"kept")
    deleted = s3.delete_object(Bucket=versioned, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (None, "null", put["VersionId"])
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=versioned, Key="k")
    assert error_code(error) == ("NoSuchKey", 404)
    assert _error_headers(error)["x-amz-delete-marker"] == "true"
    assert _error_headers(error)["x-amz-version-id"] == marker
    for read in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as error:
            read(Bucket=versioned, Key="k", VersionId=marker)
        assert error_code(error)[1] == 405
        assert _error_headers(error)["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=versioned, Key="k", VersionId=marker)
    assert error_code(error) == ("MethodNotAllowed", 405)
    # The old version is still there, and removing the marker brings the key back.
    old = s3.get_object(Bucket=versioned, Key="k", VersionId=put["VersionId"])
    assert old["Body"].read() == b"kept"
    removed = s3.delete_object(Bucket=versioned, Key="k", VersionId=marker)
    assert (removed["DeleteMarker"], removed["VersionId"]) == (True, marker)
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"kept"


def test_delete_of_one_version_echoes_it(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=versioned, Key="k", Body=b"two")
    removed = s3.delete_object(Bucket=versioned, Key="k", VersionId=first)
    assert removed["VersionId"] == first
    assert "DeleteMarker" not in removed
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=versioned, Key="k", VersionId=first)
    assert error_code(error) == ("404", 404)


def test_unversioned_objects_are_the_null_version(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"plain")
    assert "VersionId" not in put  # S3 sends none where versioning was never enabled
    assert "VersionId" not in s3.head_object(Bucket=bucket, Key="k")
    # rclone asks for the null version by name; S3 answers it.
    head = s3.head_object(Bucket=bucket, Key="k", VersionId="null")
    assert (head["ContentLength"], head["VersionId"]) == (5, "null")
    got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert got["Body"].read() == b"plain"
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert "DeleteMarker" not in deleted and "VersionId" not in deleted


def test_empty_version_id_is_invalid(server: ServeProcess, bucket: str) -> None:
    answer = send(server.url, "GET", f"/{bucket}/k?versionId=")
    assert (answer.status, answer.code) == (400, "InvalidArgument")


# -- stored headers and response overrides ---------------------------------------------------

STORED = {
    "CacheControl": "max-age=60",
    "ContentDisposition": 'attachment; filename="report.pdf"',
    "ContentEncoding": "gzip",
    "ContentLanguage": "de-CH",
    "ContentType": "application/pdf",
}


def test_standard_headers_are_stored_and_returned(s3: Any, bucket: str) -> None:
    expires = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    s3.put_object(Bucket=bucket, Key="k", Body=b"%PDF", Expires=expires, **STORED)
    for response in (s3.head_object(Bucket=bucket, Key="k"), s3.get_object(Bucket=bucket, Key="k")):
        assert {name: response[name] for name in STORED} == STORED
        assert response["Expires"] == expires


def test_response_overrides_change_one_answer(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"%PDF", **STORED)
    overrides = {
        "ResponseCacheControl": "no-store",
        "ResponseContentDisposition": "inline",
        "ResponseContentEncoding": "identity",
        "ResponseContentLanguage": "fr",
        "ResponseContentType": "text/plain",
        "ResponseExpires": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    }
    got = s3.get_object(Bucket=bucket, Key="k", **overrides)
    assert got["Body"].read() == b"%PDF"
    assert (got["CacheControl"], got["ContentDisposition"]) == ("no-store", "inline")
    assert (got["ContentEncoding"], got["ContentLanguage"]) == ("identity", "fr")
    assert got["ContentType"] == "text/plain"
    assert got["Expires"] == overrides["ResponseExpires"]
    # Only that answer: the object keeps what it was stored with.
    head = s3.head_object(Bucket=bucket, Key="k")
    assert {name: head[name] for name in STORED} == STORED


def test_aws_chunked_is_dropped_from_the_stored_encoding(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    data = b"gzipped, supposedly"
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    answer = send(
        server.url,
        "PUT",
        f"/{bucket}/k",
        body=body,
        headers={
            "content-encoding": "aws-chunked,gzip",
            "x-amz-decoded-content-length": str(len(data)),
        },
        payload="trailer",
    )
    assert answer.status == 200
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ContentEncoding"] == "gzip"


# -- the size limit --------------------------------------------------------------------------


def test_declared_length_over_5_gib_is_refused_unread(server: ServeProcess, bucket: str) -> None:
    limit = 5 * 1024**3
    # Headers only: the gateway must answer without waiting for 5 GiB.
    answer = send(
        server.url,
        "PUT",
        f"/{bucket}/huge",
        body=b"",
        payload="unsigned",
        unsigned_headers={"Content-Length": str(limit + 1)},
    )
    assert (answer.status, answer.code) == (400, "EntityTooLarge")
    assert f"<MaxSizeAllowed>{limit}</MaxSizeAllowed>".encode() in answer.body


def test_decoded_length_over_5_gib_is_refused_unread(server: ServeProcess, bucket: str) -> None:
    answer = send(
        server.url,
        "PUT",
        f"/{bucket}/huge",
        body=b"0\r\n\r\n",
        headers={
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(5 * 1024**3 + 1),
        },
        payload="trailer",
    )
    assert (answer.status, answer.code) == (400, "EntityTooLarge")


LOWERED_BYTES = 100_000


@pytest.fixture(scope="module")
def lowered(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, tier0.Tier0, Credentials]]:
    """boto3 against a gateway in this process whose PutObject limit is LOWERED_BYTES."""
    data = tmp_path_factory.mktemp("lowered") / "store"
    with tier0.open(data) as t0:
        credential = t0.root_credential
        assert credential is not None
        gateway = create_s3_app(t0, limits=GatewayLimits(put_bytes_max=LOWERED_BYTES))
        try:
            with in_process(gateway) as url:
                client = make_client(
                    url, access=credential.access_key, secret=credential.secret_key
                )
                client.create_bucket(Bucket="lowered")
                yield client, t0, Credentials(credential.access_key, credential.secret_key)
        finally:
            gateway.close()


def test_put_at_the_limit_is_stored_and_one_byte_more_refused(
    lowered: tuple[Any, tier0.Tier0, Credentials],
) -> None:
    s3, _, _ = lowered
    s3.put_object(Bucket="lowered", Key="at", Body=b"x" * LOWERED_BYTES)
    assert s3.head_object(Bucket="lowered", Key="at")["ContentLength"] == LOWERED_BYTES
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket="lowered", Key="over", Body=b"x" * (LOWERED_BYTES + 1))
    assert error_code(error) == ("EntityTooLarge", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket="lowered", Key="over")


def test_undeclared_length_is_counted_as_it_streams(
    lowered: tuple[Any, tier0.Tier0, Credentials],
) -> None:
    s3, t0, keys = lowered
    url = s3.meta.endpoint_url
    # 120,000 bytes in chunks, with no Content-Length: only counting can refuse them.
    upload = open_request(url, "PUT", "/lowered/streamed", credentials=keys)
    try:
        with contextlib.suppress(OSError):  # the gateway may answer and close first
            for _ in range(4):
                send_chunk(upload, b"y" * 30_000)
            send_chunk(upload, b"")
        response = upload.getresponse()
        body = response.read()
    finally:
        upload.close()
    assert response.status == 400
    assert b"<Code>EntityTooLarge</Code>" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket="lowered", Key="streamed")
    answer = send(url, "PUT", "/lowered/streamed", body=iter([b"y" * 30_000] * 3), credentials=keys)
    assert answer.status == 200
    assert t0.get_bytes("lowered", "streamed") == b"y" * 90_000


def test_copy_source_over_the_limit_is_refused(
    lowered: tuple[Any, tier0.Tier0, Credentials],
) -> None:
    s3, t0, _ = lowered
    # The kernel takes any size; only S3's single-operation limit stands in the way.
    t0.put("lowered", "large", b"z" * (LOWERED_BYTES + 1))
    with pytest.raises(ClientError) as error:
        s3.copy_object(
            Bucket="lowered", Key="copy", CopySource={"Bucket": "lowered", "Key": "large"}
        )
    assert error_code(error) == ("InvalidRequest", 400)
    t0.put("lowered", "fits", b"z" * LOWERED_BYTES)
    s3.copy_object(Bucket="lowered", Key="copy", CopySource={"Bucket": "lowered", "Key": "fits"})
    assert s3.head_object(Bucket="lowered", Key="copy")["ContentLength"] == LOWERED_BYTES


# -- values that cannot be echoed (found by tests/protocols/s3/test_fuzz.py) -----------------


@pytest.mark.parametrize(
    "query",
    [
        "response-content-type=%1F",
        "response-content-disposition=a%0Ab",
        "response-expires=%7F",
    ],
)
def test_response_override_a_header_cannot_carry_is_invalid_argument(
    server: ServeProcess, s3: Any, bucket: str, query: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"body")
    answer = send(server.url, "GET", f"/{bucket}/k?{query}")
    assert (answer.status, answer.code) == (400, "InvalidArgument")


@pytest.mark.parametrize("version", ["%1F", "%C3%A9", "a%20b"])
def test_malformed_version_id_is_refused_not_echoed(
    server: ServeProcess, bucket: str, version: str
) -> None:
    for method in ("DELETE", "GET", "HEAD"):
        answer = send(server.url, method, f"/{bucket}/k?versionId={version}")
        assert answer.status == 400, method
        assert "x-amz-version-id" not in answer.headers


def test_error_resource_with_a_nul_is_still_xml(server: ServeProcess, bucket: str) -> None:
    answer = send(server.url, "GET", f"/{bucket}/a%00b")
    assert (answer.status, answer.code) == (400, "InvalidArgument")  # the body parsed
    assert f"<Resource>/{bucket}/a%00b</Resource>".encode() in answer.body
