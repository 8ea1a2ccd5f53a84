"""CopyObject behind a real ``tier0 serve``, driven by boto3: directives, conditions on
the source, versions, copying onto itself, and what the answer says."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import string
import zlib
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from tests.protocols.s3.live import error_code
from tests.protocols.s3.raw import send
from tests.server.test_serve import ServeProcess
from tier0.protocols.s3._copy import parse_copy_source

pytestmark = pytest.mark.slow


@pytest.fixture
def source(s3: Any, bucket: str) -> dict[str, Any]:
    """An object with a content type, stored headers, metadata and tags."""
    s3.put_object(
        Bucket=bucket,
        Key="src/ä b.txt",
        Body=b"copied bytes",
        ContentType="text/x-source",
        CacheControl="max-age=5",
        ContentLanguage="en",
        Metadata={"origin": "source"},
        Tagging="team=blue",
        ChecksumAlgorithm="CRC32",
    )
    return {"Bucket": bucket, "Key": "src/ä b.txt"}


def test_copy_keeps_everything_by_default(s3: Any, bucket: str, source: dict[str, Any]) -> None:
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    result = copied["CopyObjectResult"]
    assert result["ETag"] == f'"{hashlib.md5(b"copied bytes").hexdigest()}"'
    crc = base64.b64encode(zlib.crc32(b"copied bytes").to_bytes(4, "big")).decode()
    assert (result["ChecksumCRC32"], result["ChecksumType"]) == (crc, "FULL_OBJECT")
    assert result["LastModified"] > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    assert "VersionId" not in copied and "CopySourceVersionId" not in copied
    got = s3.get_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"copied bytes"
    assert (got["ContentType"], got["CacheControl"], got["ContentLanguage"]) == (
        "text/x-source",
        "max-age=5",
        "en",
    )
    assert got["Metadata"] == {"origin": "source"}
    assert got["ChecksumCRC32"] == crc
    assert s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == [
        {"Key": "team", "Value": "blue"}
    ]


def test_copy_replaces_metadata_and_tags_when_told(
    s3: Any, bucket: str, source: dict[str, Any]
) -> None:
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource=source,
        MetadataDirective="REPLACE",
        ContentType="text/x-replaced",
        ContentDisposition="inline",
        Metadata={"origin": "copy"},
        TaggingDirective="REPLACE",
        Tagging="team=red&stage=2",
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert (head["ContentType"], head["ContentDisposition"]) == ("text/x-replaced", "inline")
    assert head["Metadata"] == {"origin": "copy"}
    # REPLACE takes what the request says, and it said no Cache-Control.
    assert "CacheControl" not in head
    assert head["TagCount"] == 2
    tags = s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("stage", "2"), ("team", "red")]
    # Replacing the metadata only keeps the source's tags, and the other way round.
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=source, MetadataDirective="REPLACE")
    assert s3.head_object(Bucket=bucket, Key="dst2")["TagCount"] == 1
    s3.copy_object(Bucket=bucket, Key="dst3", CopySource=source, TaggingDirective="REPLACE")
    head = s3.head_object(Bucket=bucket, Key="dst3")
    assert "TagCount" not in head and head["Metadata"] == {"origin": "source"}


def test_copy_onto_itself_needs_a_change(s3: Any, bucket: str, source: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=bucket, Key=source["Key"], CopySource=source)
    assert error_code(error) == ("InvalidRequest", 400)
    s3.copy_object(
        Bucket=bucket,
        Key=source["Key"],
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"origin": "itself"},
    )
    head = s3.head_object(Bucket=bucket, Key=source["Key"])
    assert head["Metadata"] == {"origin": "itself"}


def test_unknown_directive_is_invalid(s3: Any, bucket: str, source: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, MetadataDirective="MERGE")
    assert error_code(error) == ("InvalidArgument", 400)


def test_copy_source_conditions(s3: Any, bucket: str, source: dict[str, Any]) -> None:
    head = s3.head_object(**source)
    etag, modified = head["ETag"], head["LastModified"]
    before, after = modified - dt.timedelta(hours=1), modified + dt.timedelta(hours=1)

    def status(**conditions: Any) -> int:
        try:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, **conditions)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "PreconditionFailed"
            return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
        return 200

    assert status(CopySourceIfMatch=etag) == 200
    assert status(CopySourceIfMatch='"0000"') == 412
    assert status(CopySourceIfNoneMatch='"0000"') == 200
    assert status(CopySourceIfNoneMatch=etag) == 412
    assert status(CopySourceIfModifiedSince=before) == 200
    assert status(CopySourceIfModifiedSince=after) == 412
    assert status(CopySourceIfUnmodifiedSince=after) == 200
    assert status(CopySourceIfUnmodifiedSince=before) == 412
    # S3's two combinations: If-Match true outweighs If-Unmodified-Since false ...
    assert status(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=before) == 200
    # ... and If-None-Match false outweighs If-Modified-Since true.
    assert status(CopySourceIfNoneMatch=etag, CopySourceIfModifiedSince=before) == 412


def test_copy_of_an_older_version(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=versioned, Key="k", Body=b"two")
    copied = s3.copy_object(
        Bucket=versioned,
        Key="restored",
        CopySource={"Bucket": versioned, "Key": "k", "VersionId": first},
    )
    assert copied["CopySourceVersionId"] == first
    assert copied["VersionId"] not in (None, "null", first)
    got = s3.get_object(Bucket=versioned, Key="restored")
    assert (got["Body"].read(), got["VersionId"]) == (b"one", copied["VersionId"])
    # Restoring an old version onto its own key is how S3 users undo a write.
    s3.copy_object(
        Bucket=versioned, Key="k", CopySource={"Bucket": versioned, "Key": "k", "VersionId": first}
    )
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"one"
    latest = s3.copy_object(
        Bucket=versioned, Key="k2", CopySource={"Bucket": versioned, "Key": "k"}
    )
    assert latest["CopySourceVersionId"] == s3.head_object(Bucket=versioned, Key="k")["VersionId"]


def test_copy_from_a_delete_marker(s3: Any, versioned: str) -> None:
    s3.put_object(Bucket=versioned, Key="k", Body=b"gone")
    marker = s3.delete_object(Bucket=versioned, Key="k")["VersionId"]
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=versioned, Key="dst", CopySource={"Bucket": versioned, "Key": "k"})
    assert error_code(error) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as error:
        s3.copy_object(
            Bucket=versioned,
            Key="dst",
            CopySource={"Bucket": versioned, "Key": "k", "VersionId": marker},
        )
    assert error_code(error) == ("InvalidRequest", 400)


def test_copy_from_missing_source(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert error_code(error) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": "no-bucket-x", "Key": "a"})
    assert error_code(error) == ("NoSuchBucket", 404)


def test_conditional_copy_destination(s3: Any, bucket: str, source: dict[str, Any]) -> None:
    s3.put_object(Bucket=bucket, Key="taken", Body=b"mine")
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=bucket, Key="taken", CopySource=source, IfNoneMatch="*")
    assert error_code(error) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"mine"
    s3.copy_object(Bucket=bucket, Key="free", CopySource=source, IfNoneMatch="*")


def test_malformed_copy_source(server: ServeProcess, bucket: str) -> None:
    answer = send(server.url, "PUT", f"/{bucket}/dst", headers={"x-amz-copy-source": "no-key"})
    assert (answer.status, answer.code) == (400, "InvalidArgument")


def test_parse_copy_source_forms() -> None:
    assert parse_copy_source("b/k") == ("b", "k", None)
    assert parse_copy_source("/b/a%2Fb%3Fc?versionId=v1") == ("b", "a/b?c", "v1")
    assert parse_copy_source("/b/%E2%82%AC") == ("b", "€", None)


_KEY_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1
)


@given(
    bucket=st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True),
    key=_KEY_TEXT,
    version_id=st.none() | st.text(string.ascii_letters + string.digits + "._-", min_size=1),
    leading_slash=st.booleans(),
)
def test_parse_copy_source_round_trips_what_botocore_sends(
    bucket: str, key: str, version_id: str | None, leading_slash: bool
) -> None:
    # botocore quotes the key with "/" and "~" left as they are.
    header = ("/" if leading_slash else "") + f"{bucket}/{quote(key, safe='/~')}"
    if version_id is not None:
        header += f"?versionId={quote(version_id)}"
    assert parse_copy_source(header) == (bucket, key, version_id)
