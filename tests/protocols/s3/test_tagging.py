"""Object tagging behind a real ``tier0 serve``, driven by boto3: the ``?tagging``
operations, per version, the ``x-amz-tagging`` header and ``x-amz-tagging-count``."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from tests.protocols.s3.live import error_code
from tests.protocols.s3.raw import send
from tests.server.test_serve import ServeProcess
from tier0.protocols.s3._object_headers import parse_tagging_header

pytestmark = pytest.mark.slow


def _tags(response: Any) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in response["TagSet"]}


def test_tagging_header_on_put_is_kept_and_counted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="project=blue&note=two%20words&e=")
    assert _tags(s3.get_object_tagging(Bucket=bucket, Key="k")) == {
        "project": "blue",
        "note": "two words",
        "e": "",
    }
    assert s3.head_object(Bucket=bucket, Key="k")["TagCount"] == 3
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3
    s3.put_object(Bucket=bucket, Key="untagged", Body=b"x")
    assert "TagCount" not in s3.head_object(Bucket=bucket, Key="untagged")


def test_put_get_delete_object_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="old=1")
    etag = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    s3.put_object_tagging(
        Bucket=bucket,
        Key="k",
        Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "<&>"}]},
    )
    assert _tags(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"a": "1", "b": "<&>"}
    # Tagging replaces the set, and touches neither the bytes nor the ETag.
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == etag
    deleted = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_tagging_one_version(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"1", Tagging="v=1")["VersionId"]
    second = s3.put_object(Bucket=versioned, Key="k", Body=b"2", Tagging="v=2")["VersionId"]
    tagged = s3.put_object_tagging(
        Bucket=versioned, Key="k", VersionId=first, Tagging={"TagSet": [{"Key": "v", "Value": "x"}]}
    )
    assert tagged["VersionId"] == first
    old = s3.get_object_tagging(Bucket=versioned, Key="k", VersionId=first)
    assert (old["VersionId"], _tags(old)) == (first, {"v": "x"})
    current = s3.get_object_tagging(Bucket=versioned, Key="k")
    assert (current["VersionId"], _tags(current)) == (second, {"v": "2"})
    removed = s3.delete_object_tagging(Bucket=versioned, Key="k", VersionId=second)
    assert removed["VersionId"] == second
    assert s3.get_object_tagging(Bucket=versioned, Key="k", VersionId=second)["TagSet"] == []
    assert _tags(s3.get_object_tagging(Bucket=versioned, Key="k", VersionId=first)) == {"v": "x"}


def test_tag_limits_are_refused_with_s3s_codes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    eleven = [{"Key": f"k{n}", "Value": "v"} for n in range(11)]
    twice = [{"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}]
    long_key = [{"Key": "k" * 129, "Value": "v"}]
    for tag_set, code in ((eleven, "BadRequest"), (twice, "InvalidTag"), (long_key, "InvalidTag")):
        with pytest.raises(ClientError) as error:
            s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tag_set})
        assert error_code(error) == (code, 400)  # S3's codes: too many tags is BadRequest
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", Tagging="a=1&a=2")
    assert error_code(error) == ("InvalidTag", 400)
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []


def test_tagging_a_missing_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_object_tagging(Bucket=bucket, Key="nope")
    assert error_code(error) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as error:
        s3.put_object_tagging(Bucket=bucket, Key="nope", Tagging={"TagSet": []})
    assert error_code(error) == ("NoSuchKey", 404)


def test_tagging_body_digest_is_checked(server: ServeProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    body = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>"
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    answer = send(
        server.url, "PUT", f"/{bucket}/k?tagging", body=body, headers={"Content-MD5": wrong}
    )
    assert (answer.status, answer.code) == (400, "BadDigest")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    answer = send(server.url, "PUT", f"/{bucket}/k?tagging", body=b"<Tagging>")
    assert (answer.status, answer.code) == (400, "MalformedXML")


@given(
    tags=st.dictionaries(
        st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20),
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
        max_size=10,
    )
)
def test_tagging_header_round_trips_urlencoded_tags(tags: dict[str, str]) -> None:
    assert parse_tagging_header(urlencode(tags)) == tags
