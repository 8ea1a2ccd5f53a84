"""GetObjectAttributes: behind a real ``tier0 serve`` with boto3, and its document (parts
included) read back by botocore's own parser."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import RestXMLParser

import tier0
from tests.protocols.s3.live import error_code
from tests.protocols.s3.raw import send
from tests.server.test_serve import ServeProcess
from tier0.protocols.s3 import render_get_object_attributes
from tier0.store import ObjectInfo, PartInfo

pytestmark = pytest.mark.slow

EVERYTHING = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_attributes_of_a_single_part_object(s3: Any, bucket: str) -> None:
    body = b"attributes" * 100
    s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="SHA256")
    answer = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=EVERYTHING)
    assert answer["ETag"] == hashlib.md5(body).hexdigest()  # unquoted, as S3 shows it here
    assert answer["ObjectSize"] == len(body)
    assert answer["StorageClass"] == "STANDARD"
    sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert answer["Checksum"] == {"ChecksumSHA256": sha256, "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in answer  # one part: nothing to list
    assert answer["LastModified"] == s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    assert "VersionId" not in answer


def test_only_the_attributes_asked_for(s3: Any, store: tier0.Tier0, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    answer = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert answer["ObjectSize"] == 1
    assert not {"ETag", "Checksum", "StorageClass", "ObjectParts"} & set(answer)
    # Asked for, but none was recorded (boto3 always sends one; the kernel need not):
    # no Checksum element at all.
    store.put(bucket, "k", b"x")
    answer = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert "Checksum" not in answer


def test_attributes_of_a_version(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"first")["VersionId"]
    s3.put_object(Bucket=versioned, Key="k", Body=b"second, longer")
    old = s3.get_object_attributes(
        Bucket=versioned, Key="k", VersionId=first, ObjectAttributes=["ObjectSize"]
    )
    assert (old["VersionId"], old["ObjectSize"]) == (first, 5)
    marker = s3.delete_object(Bucket=versioned, Key="k")["VersionId"]
    with pytest.raises(ClientError) as error:
        s3.get_object_attributes(Bucket=versioned, Key="k", ObjectAttributes=["ETag"])
    assert error_code(error) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as error:
        s3.get_object_attributes(
            Bucket=versioned, Key="k", VersionId=marker, ObjectAttributes=["ETag"]
        )
    assert error_code(error) == ("MethodNotAllowed", 405)


def test_attribute_names_are_checked(server: ServeProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for names in ("", "ETag,Colour"):
        answer = send(
            server.url, "GET", f"/{bucket}/k?attributes", headers={"x-amz-object-attributes": names}
        )
        assert (answer.status, answer.code) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as error:
        s3.get_object_attributes(Bucket=bucket, Key="nope", ObjectAttributes=["ETag"])
    assert error_code(error) == ("NoSuchKey", 404)


def test_object_parts_of_a_multipart_object(s3: Any, bucket: str) -> None:
    first, second = os.urandom(5 * 1024 * 1024), os.urandom(1000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")
    parts = [
        {"PartNumber": n, **s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=n, Body=body,
            ChecksumAlgorithm="CRC32",
        )}
        for n, body in ((1, first), (2, second))
    ]  # fmt: skip
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={
            "Parts": [
                {
                    "PartNumber": p["PartNumber"],
                    "ETag": p["ETag"],
                    "ChecksumCRC32": p["ChecksumCRC32"],
                }
                for p in parts
            ]
        },
    )
    answer = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts", "ObjectSize"], MaxParts=1
    )
    assert answer["ObjectSize"] == len(first) + len(second)
    listed = answer["ObjectParts"]
    assert (listed["TotalPartsCount"], listed["IsTruncated"]) == (2, True)
    assert listed["Parts"] == [
        {"PartNumber": 1, "Size": len(first), "ChecksumCRC32": parts[0]["ChecksumCRC32"]}
    ]
    rest = s3.get_object_attributes(
        Bucket=bucket,
        Key="mp",
        ObjectAttributes=["ObjectParts"],
        PartNumberMarker=listed["NextPartNumberMarker"],
    )["ObjectParts"]
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(2, len(second))]
    assert rest["IsTruncated"] is False
    # The object's checksum is the composite of its parts', and says so.
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "COMPOSITE"
    assert head["ChecksumCRC32"].endswith("-2")
    checksum = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["Checksum"])
    assert checksum["Checksum"] == {
        "ChecksumCRC32": head["ChecksumCRC32"],
        "ChecksumType": "COMPOSITE",
    }


# -- the document, with parts ----------------------------------------------------------------


def _multipart(*, part_checksums: bool) -> ObjectInfo:
    now = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    parts = tuple(
        PartInfo(
            n, 5 * 1024 * 1024 + n, f"etag{n}", {"crc32": f"AAAAA{n}=="} if part_checksums else {}
        )
        for n in range(1, 6)
    )
    return ObjectInfo(
        bucket="b", key="k", version_id="null", size=sum(p.size for p in parts),
        etag="0123456789abcdef0123456789abcdef-5", content_type="application/octet-stream",
        created=now, modified=now, owner="root", checksum="",
        checksums={"crc32": "nF2yGQ==-5"} if part_checksums else {}, parts=parts,
    )  # fmt: skip


def _parsed(document: bytes) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model("GetObjectAttributes").output_shape
    response = {"status_code": 200, "headers": {}, "body": document}
    parsed: dict[str, Any] = RestXMLParser().parse(response, shape)
    return parsed


def test_object_parts_page_through_the_parts() -> None:
    info = _multipart(part_checksums=True)
    first = _parsed(
        render_get_object_attributes(info, attributes=EVERYTHING, max_parts=2, part_number_marker=0)
    )
    assert first["ETag"] == info.etag
    assert first["Checksum"] == {"ChecksumCRC32": "nF2yGQ==-5", "ChecksumType": "COMPOSITE"}
    parts = first["ObjectParts"]
    assert (parts["TotalPartsCount"], parts["MaxParts"], parts["IsTruncated"]) == (5, 2, True)
    assert (parts["PartNumberMarker"], parts["NextPartNumberMarker"]) == (0, 2)
    assert parts["Parts"] == [
        {"PartNumber": 1, "Size": 5 * 1024 * 1024 + 1, "ChecksumCRC32": "AAAAA1=="},
        {"PartNumber": 2, "Size": 5 * 1024 * 1024 + 2, "ChecksumCRC32": "AAAAA2=="},
    ]
    last = _parsed(
        render_get_object_attributes(
            info, attributes=["ObjectParts"], max_parts=1000, part_number_marker=4
        )
    )["ObjectParts"]
    assert [p["PartNumber"] for p in last["Parts"]] == [5]
    assert last["IsTruncated"] is False
    assert "ETag" not in _parsed(
        render_get_object_attributes(
            info, attributes=["ObjectParts"], max_parts=1, part_number_marker=0
        )
    )


def test_parts_without_checksums_are_counted_not_listed() -> None:
    info = _multipart(part_checksums=False)
    parts = _parsed(
        render_get_object_attributes(
            info, attributes=["ObjectParts", "Checksum"], max_parts=10, part_number_marker=0
        )
    )
    assert "Checksum" not in parts
    assert parts["ObjectParts"]["TotalPartsCount"] == 5
    assert "Parts" not in parts["ObjectParts"]
