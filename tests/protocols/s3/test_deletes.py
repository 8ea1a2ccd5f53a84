"""DeleteObjects behind a real ``tier0 serve``, driven by boto3 (which states a CRC32 of
the body, as S3 demands) and by requests botocore signs (`raw`)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import error_code, make_client
from tests.protocols.s3.raw import send
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow


def _keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_delete_objects_reports_each_key(s3: Any, bucket: str) -> None:
    for key in ("a", "b", "c/d"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    answer = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "c/d"}, {"Key": "never"}]}
    )
    # S3 reports a key that was not there as deleted too.
    assert sorted(item["Key"] for item in answer["Deleted"]) == ["a", "c/d", "never"]
    assert all(set(item) == {"Key"} for item in answer["Deleted"])
    assert "Errors" not in answer
    assert _keys(s3, bucket) == ["b"]


def test_quiet_mode_lists_only_errors(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    answer = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a"}, {"Key": "k" * 1025}], "Quiet": True},
    )
    assert "Deleted" not in answer
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("k" * 1025, "KeyTooLongError")]
    assert _keys(s3, bucket) == []


def test_versioned_deletes_report_markers_and_versions(s3: Any, versioned: str) -> None:
    one = s3.put_object(Bucket=versioned, Key="one", Body=b"1")["VersionId"]
    s3.put_object(Bucket=versioned, Key="two", Body=b"2")
    answer = s3.delete_objects(
        Bucket=versioned,
        Delete={"Objects": [{"Key": "one", "VersionId": one}, {"Key": "two"}]},
    )
    by_key = {item["Key"]: item for item in answer["Deleted"]}
    assert by_key["one"] == {"Key": "one", "VersionId": one}
    marker = by_key["two"]["DeleteMarkerVersionId"]
    assert by_key["two"]["DeleteMarker"] is True and marker not in ("", "null")
    # The marker is a version of its own; deleting it by id says it was one.
    again = s3.delete_objects(
        Bucket=versioned, Delete={"Objects": [{"Key": "two", "VersionId": marker}]}
    )
    assert again["Deleted"] == [
        {"Key": "two", "VersionId": marker, "DeleteMarker": True, "DeleteMarkerVersionId": marker}
    ]
    assert s3.get_object(Bucket=versioned, Key="two")["Body"].read() == b"2"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=versioned, Key="one", VersionId=one)


def test_more_than_1000_keys_is_malformed(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k0", Body=b"x")
    objects = [{"Key": f"k{n}"} for n in range(1001)]
    with pytest.raises(ClientError) as error:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    assert error_code(error) == ("MalformedXML", 400)
    assert _keys(s3, bucket) == ["k0"]  # nothing was deleted
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[:1000], "Quiet": True})
    assert "Errors" not in answer and _keys(s3, bucket) == []


def _body(*keys: str) -> bytes:
    objects = "".join(f"<Object><Key>{key}</Key></Object>" for key in keys)
    return f"<Delete>{objects}</Delete>".encode()


def test_a_digest_is_required_and_checked(server: ServeProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    body = _body("a")
    answer = send(server.url, "POST", f"/{bucket}?delete", body=body)
    assert (answer.status, answer.code) == (400, "InvalidRequest")
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    answer = send(
        server.url, "POST", f"/{bucket}?delete", body=body, headers={"Content-MD5": wrong}
    )
    assert (answer.status, answer.code) == (400, "BadDigest")
    assert _keys(s3, bucket) == ["a"]
    right = base64.b64encode(hashlib.md5(body).digest()).decode()
    answer = send(
        server.url, "POST", f"/{bucket}?delete", body=body, headers={"Content-MD5": right}
    )
    assert answer.status == 200
    assert b"<Deleted><Key>a</Key></Deleted>" in answer.body
    assert _keys(s3, bucket) == []


def test_missing_bucket_fails_the_request(s3: Any) -> None:
    with pytest.raises(ClientError) as error:
        s3.delete_objects(Bucket="no-such-bucket-del", Delete={"Objects": [{"Key": "a"}]})
    assert error_code(error) == ("NoSuchBucket", 404)


def test_a_key_the_requester_may_not_delete_is_an_error_entry(
    server: ServeProcess, s3: Any, store: tier0.Tier0, bucket: str
) -> None:
    for key in ("mine", "theirs"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    user, credential = store.create_user(f"deleter-{bucket}")
    store.grant(user, "s3:DeleteObject", f"/{bucket}/mine")
    client = make_client(server.url, access=credential.access_key, secret=credential.secret_key)
    answer = client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "mine"}, {"Key": "theirs"}]}
    )
    assert [item["Key"] for item in answer["Deleted"]] == ["mine"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("theirs", "AccessDenied")]
    assert _keys(s3, bucket) == ["theirs"]
