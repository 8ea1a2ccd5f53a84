"""The S3 gateway behind a real ``tier0 serve``, driven by boto3 with its default settings.

One server per module (starting one takes a second or two); each test works
in buckets of its own, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.protocols.s3.live import ACCESS, REGION, SECRET, error_code, make_client
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

# -- buckets ---------------------------------------------------------------------------------


def test_buckets_create_list_head_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="lifecycle")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "lifecycle" in names
    head = s3.head_bucket(Bucket="lifecycle")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    s3.delete_bucket(Bucket="lifecycle")
    assert "lifecycle" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as error:
        s3.head_bucket(Bucket="lifecycle")
    assert error_code(error) == ("404", 404)  # HEAD has no body: botocore reports the status


def test_create_bucket_with_location_and_twice(s3: Any) -> None:
    s3.create_bucket(
        Bucket="located", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket="located")
    assert error_code(error) == ("BucketAlreadyOwnedByYou", 409)


def test_delete_bucket_not_empty_and_missing(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as error:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(error) == ("BucketNotEmpty", 409)
    with pytest.raises(ClientError) as error:
        s3.delete_bucket(Bucket="no-such-bucket-here")
    assert error_code(error) == ("NoSuchBucket", 404)


# -- objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["plain.txt", "with space/a b.txt", "ünïcødé/ключ", "a+b=c&d"])
def test_object_round_trip_keeps_key_type_and_metadata(s3: Any, bucket: str, key: str) -> None:
    body = key.encode() * 100
    put = s3.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="text/x-test", Metadata={"color": "blue"}
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "text/x-test"
    assert got["Metadata"] == {"color": "blue"}
    assert got["ETag"] == put["ETag"]
    assert got["LastModified"].tzinfo is not None
    head = s3.head_object(Bucket=bucket, Key=key)
    assert (head["ContentLength"], head["ETag"]) == (len(body), put["ETag"])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key=key)
    assert error_code(error) == ("NoSuchKey", 404)


def test_large_object_streams_both_ways(s3: Any, bucket: str) -> None:
    body = os.urandom(1024 * 1024) * 20  # 20 MiB: many feed blocks, many chunks
    put = s3.put_object(Bucket=bucket, Key="big", Body=body)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
    assert len(got) == len(body) and got == body


def test_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def test_delete_missing_key_is_204(s3: Any, bucket: str) -> None:
    response = s3.delete_object(Bucket=bucket, Key="never-was")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_missing_key_and_bucket_are_s3_errors(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(error) == ("NoSuchKey", 404)
    assert error.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"x" * 100_000)
    assert error_code(error) == ("NoSuchBucket", 404)


# -- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-9", 0, 9), ("bytes=10-", 10, 99), ("bytes=-5", 95, 99), ("bytes=90-500", 90, 99)],
)
def test_range_get(s3: Any, bucket: str, header: str, first: int, last: int) -> None:
    body = bytes(range(100))
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/100"
    assert got["Body"].read() == body[first : last + 1]


def test_range_past_the_end_is_416(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-20")
    assert error_code(error) == ("InvalidRange", 416)


def test_range_on_a_large_object(s3: Any, bucket: str) -> None:
    body = os.urandom(9 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    first, last = 4 * 1024 * 1024 - 7, 8 * 1024 * 1024 + 3  # spans chunk boundaries
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={first}-{last}")
    assert got["Body"].read() == body[first : last + 1]


# -- listing ---------------------------------------------------------------------------------


def test_list_prefix_delimiter_and_pagination(s3: Any, bucket: str) -> None:
    keys = [f"dir/{i:03d}" for i in range(25)] + ["dir/sub/x", "dir/sub/y", "other/z", "top"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    paginator = s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 7}))
    assert len(pages) == 5
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == [f"dir/{i:03d}" for i in range(25)]
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["dir/sub/"]
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/", "other/"]
    assert [o["Key"] for o in top["Contents"]] == ["top"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="dir/sub/x")
    assert [o["Key"] for o in after["Contents"]] == ["dir/sub/y", "other/z", "top"]


def test_list_max_keys_zero_and_bad_token(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"")
    empty = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert (empty["KeyCount"], empty["IsTruncated"]) == (0, False)
    with pytest.raises(ClientError) as error:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="!!not base64!!")
    assert error_code(error) == ("InvalidArgument", 400)


# -- authentication --------------------------------------------------------------------------


def test_wrong_secret_is_signature_does_not_match(server: ServeProcess, bucket: str) -> None:
    wrong = make_client(server.url, secret="not-the-secret")
    with pytest.raises(ClientError) as error:
        wrong.list_objects_v2(Bucket=bucket)
    assert error_code(error) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as error:
        wrong.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert error_code(error) == ("SignatureDoesNotMatch", 403)


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_get_with_urllib(
    server: ServeProcess, s3: Any, bucket: str, signature_version: str
) -> None:
    s3.put_object(Bucket=bucket, Key="shared file.txt", Body=b"presigned body")
    signer = make_client(server.url, signature_version=signature_version)
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared file.txt"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"presigned body"


def test_anonymous_request_is_denied(server: ServeProcess, bucket: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{server.url}/{bucket}?list-type=2", timeout=10)
    assert error.value.code == 403
    document = ET.fromstring(error.value.read())
    assert document.findtext("Code") == "AccessDenied"
    assert error.value.headers["content-type"] == "application/xml"
    assert error.value.headers["x-amz-request-id"] == document.findtext("RequestId")


def test_unimplemented_operation_is_501(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_code(error) == ("NotImplemented", 501)


def test_tampered_body_is_refused_and_not_stored(server: ServeProcess, bucket: str) -> None:
    tampering = make_client(server.url)

    def tamper(request: Any, **kwargs: Any) -> None:
        # After signing, before the wire: same length, different bytes.
        size = len(request.body.read())
        request.body = b"Y" * size

    tampering.meta.events.register("before-send.s3.PutObject", tamper)
    with pytest.raises(ClientError) as error:
        tampering.put_object(Bucket=bucket, Key="tampered", Body=b"X" * 3_000_000)
    assert error_code(error) == ("XAmzContentSHA256Mismatch", 400)
    with pytest.raises(ClientError) as error:
        make_client(server.url).head_object(Bucket=bucket, Key="tampered")
    assert error_code(error) == ("404", 404)


# -- integrity checksums ---------------------------------------------------------------------


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _send_signed(
    server: ServeProcess,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    trailer: bool = False,
) -> tuple[int, str]:
    """PUT ``body`` to ``path`` signed by botocore's S3SigV4Auth; (status, S3 error code)."""
    request = AWSRequest(method="PUT", url=server.url + path, headers=headers, data=body)
    if trailer:
        # How botocore itself marks a body whose checksum trails it: it then
        # signs STREAMING-UNSIGNED-PAYLOAD-TRAILER.
        request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(
        prepared.url, data=body, headers=dict(prepared.headers.items()), method="PUT"
    )
    try:
        with urllib.request.urlopen(raw) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        code = ET.fromstring(error.read()).findtext("Code") or ""
        return error.code, code


def _assert_absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key=key)
    assert error_code(error) == ("404", 404)


def test_content_md5_right_is_stored_and_wrong_is_bad_digest(s3: Any, bucket: str) -> None:
    body = b"checked by md5" * 1000
    s3.put_object(
        Bucket=bucket, Key="right", Body=body, ContentMD5=_b64(hashlib.md5(body).digest())
    )
    assert s3.get_object(Bucket=bucket, Key="right")["Body"].read() == body
    with pytest.raises(ClientError) as error:
        s3.put_object(
            Bucket=bucket, Key="wrong", Body=body, ContentMD5=_b64(hashlib.md5(b"x").digest())
        )
    assert error_code(error) == ("BadDigest", 400)
    _assert_absent(s3, bucket, "wrong")


def test_malformed_content_md5_is_invalid_digest(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ContentMD5="not-an-md5")
    assert error_code(error) == ("InvalidDigest", 400)
    _assert_absent(s3, bucket, "bad")


# CRC32C would need botocore[crt] on the client side; the kernel tests cover it.
@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32", "SHA1"])
def test_sdk_computed_checksum_is_accepted(s3: Any, bucket: str, algorithm: str) -> None:
    body = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key=algorithm, Body=body, ChecksumAlgorithm=algorithm)
    assert s3.get_object(Bucket=bucket, Key=algorithm)["Body"].read() == body


def test_wrong_checksum_header_is_bad_digest_and_not_stored(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    body = b"payload with a wrong crc32"
    wrong = _b64(zlib.crc32(b"something else").to_bytes(4, "big"))
    status, code = _send_signed(
        server, f"/{bucket}/wrong-crc", body, {"x-amz-checksum-crc32": wrong}
    )
    assert (status, code) == (400, "BadDigest")
    _assert_absent(s3, bucket, "wrong-crc")
    right = _b64(zlib.crc32(body).to_bytes(4, "big"))
    status, _ = _send_signed(server, f"/{bucket}/right-crc", body, {"x-amz-checksum-crc32": right})
    assert status == 200


@pytest.mark.parametrize("correct", [True, False])
def test_trailer_checksum_is_checked_before_commit(
    server: ServeProcess, s3: Any, bucket: str, correct: bool
) -> None:
    data = os.urandom(200_000)
    digest = hashlib.sha256(data if correct else b"other").digest()
    body = b"".join(
        [
            f"{len(data):x}\r\n".encode(),
            data,
            b"\r\n0\r\n",
            f"x-amz-checksum-sha256:{_b64(digest)}\r\n\r\n".encode(),
        ]
    )
    key = f"trailed-{correct}"
    status, code = _send_signed(
        server,
        f"/{bucket}/{key}",
        body,
        {
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-sha256",
        },
        trailer=True,
    )
    if correct:
        assert status == 200
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    else:
        assert (status, code) == (400, "BadDigest")
        _assert_absent(s3, bucket, key)
