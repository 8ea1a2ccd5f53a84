"""Multipart uploads through a real ``tier0 serve``, driven by boto3 with its default settings.

Parts here are S3's real minimum of 5 MiB (the server keeps the default), so
every completion also checks the EntityTooSmall rule the way S3 applies it.
Over plain HTTP botocore sends part checksums as headers; the HTTPS test at
the end makes it send them as aws-chunked trailers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import google_crc32c
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import ACCESS, REGION, SECRET, error_code
from tests.server.test_serve import ServeProcess, _self_signed, clean_environment
from tier0.protocols.s3._xml import (
    S3_NAMESPACE,
)
from tier0.protocols.s3._xml_multipart import (
    CompletedPart,
    parse_complete_multipart_upload,
)

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
PART = 5 * MiB


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _md5s_etag(*parts: bytes) -> str:
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def _upload(s3: Any, bucket: str, key: str, *parts: bytes, **create: Any) -> tuple[str, list[Any]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    answers = [
        s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=part,
            **({"ChecksumAlgorithm": create["ChecksumAlgorithm"]} if create else {}),
        )
        for number, part in enumerate(parts, start=1)
    ]
    return upload_id, answers


def _parts(answers: list[Any], *checksums: str) -> dict[str, Any]:
    """The MultipartUpload argument naming every part answered, with the checksums named."""
    return {
        "Parts": [
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                **{name: answer[name] for name in checksums},
            }
            for number, answer in enumerate(answers, start=1)
        ]
    }


# -- the round trip ---------------------------------------------------------------------------


def test_create_upload_complete_round_trip(s3: Any, bucket: str, store: tier0.Tier0) -> None:
    parts = [_data(PART, 1), _data(1234, 2)]
    created = s3.create_multipart_upload(
        Bucket=bucket,
        Key="big.bin",
        ContentType="application/x-test",
        Metadata={"color": "blue"},
        ContentDisposition="attachment",
        Tagging="a=1&b=2",
    )
    upload_id = created["UploadId"]
    assert (created["Bucket"], created["Key"]) == (bucket, "big.bin")
    answers = [
        s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload_id, PartNumber=n, Body=part)
        for n, part in enumerate(parts, start=1)
    ]
    assert [a["ETag"] for a in answers] == [f'"{hashlib.md5(p).hexdigest()}"' for p in parts]
    # botocore states a CRC32 for each part by default; the answer echoes it.
    assert [a["ChecksumCRC32"] for a in answers] == [_b64(_crc32(p)) for p in parts]
    roots: list[str] = []

    def keep_root(http_response: Any, **_: Any) -> None:
        roots.append(ET.fromstring(http_response.content).tag)

    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", keep_root)
    try:
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key="big.bin", UploadId=upload_id, MultipartUpload=_parts(answers)
        )
    finally:
        s3.meta.events.unregister("after-call.s3.CompleteMultipartUpload", keep_root)
    assert roots == [f"{{{S3_NAMESPACE}}}CompleteMultipartUploadResult"]  # pyarrow checks it
    assert done["ETag"] == _md5s_etag(*parts)
    assert (done["Bucket"], done["Key"]) == (bucket, "big.bin")
    got = s3.get_object(Bucket=bucket, Key="big.bin")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == done["ETag"]
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"color": "blue"}
    assert got["ContentDisposition"] == "attachment"
    assert s3.get_object_tagging(Bucket=bucket, Key="big.bin")["TagSet"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
    ]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    report = store.check(deep=True)
    assert report.ok, report.problems


def test_managed_transfer_goes_multipart_with_its_default_checksums(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    body = _data(2 * PART + 100_000, 3)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=3)
    s3.upload_fileobj(io.BytesIO(body), bucket, "managed.bin", Config=config)
    pieces = [body[:PART], body[PART : 2 * PART], body[2 * PART :]]
    head = s3.head_object(Bucket=bucket, Key="managed.bin", ChecksumMode="ENABLED")
    assert head["ETag"] == _md5s_etag(*pieces)
    assert head["ContentLength"] == len(body)
    # s3transfer asks for CRC32 parts, so the object's checksum is their composite.
    composite = _crc32(b"".join(_crc32(piece) for piece in pieces))
    assert head["ChecksumCRC32"] == f"{_b64(composite)}-3"
    assert head["ChecksumType"] == "COMPOSITE"
    path = tmp_path / "downloaded"
    s3.download_file(bucket, "managed.bin", str(path), Config=config)
    assert path.read_bytes() == body
    source = tmp_path / "source"
    source.write_bytes(body[: PART + 1])
    s3.upload_file(str(source), bucket, "from-file", Config=config)
    assert s3.head_object(Bucket=bucket, Key="from-file")["ETag"] == _md5s_etag(
        body[:PART], body[PART : PART + 1]
    )


def test_get_and_head_one_part(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 4), _data(PART, 5), _data(77, 6)]
    upload_id, answers = _upload(s3, bucket, "k", *parts)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=_parts(answers)
    )
    got = s3.get_object(Bucket=bucket, Key="k", PartNumber=2)
    assert got["Body"].read() == parts[1]
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["PartsCount"] == 3
    assert got["ContentRange"] == f"bytes {PART}-{2 * PART - 1}/{2 * PART + 77}"
    head = s3.head_object(Bucket=bucket, Key="k", PartNumber=3)
    assert (head["ContentLength"], head["PartsCount"]) == (77, 3)
    assert head["ETag"] == _md5s_etag(*parts)  # the object's, as S3 answers
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="k", PartNumber=4)
    assert error_code(error) == ("InvalidPartNumber", 416)
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="k", PartNumber=1, Range="bytes=0-1")
    assert error_code(error) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="k", PartNumber=10_001)
    assert error_code(error) == ("InvalidArgument", 400)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"single")
    plain = s3.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert plain["Body"].read() == b"single" and "PartsCount" not in plain
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key="plain", PartNumber=2)
    assert error_code(error) == ("416", 416)  # HEAD has no body: botocore reports the status


# -- listing ----------------------------------------------------------------------------------


def test_list_parts_pages_and_shows_the_upload(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    bodies = {n: f"part {n}".encode() for n in (1, 2, 3, 5)}
    for number, body in bodies.items():
        s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number, Body=body,
            ChecksumAlgorithm="SHA256",
        )  # fmt: skip
    first = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=3)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2, 3]
    assert first["IsTruncated"] is True and first["NextPartNumberMarker"] == 3
    assert first["Parts"][0]["ETag"] == f'"{hashlib.md5(bodies[1]).hexdigest()}"'
    assert first["Parts"][0]["Size"] == len(bodies[1])
    assert first["Parts"][0]["ChecksumSHA256"] == _b64(hashlib.sha256(bodies[1]).digest())
    assert (first["ChecksumAlgorithm"], first["StorageClass"]) == ("SHA256", "STANDARD")
    assert first["Initiator"]["ID"] == first["Owner"]["ID"]
    rest = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id, PartNumberMarker=3)
    assert [p["PartNumber"] for p in rest["Parts"]] == [5]
    assert rest["IsTruncated"] is False and rest["PartNumberMarker"] == 3


def test_list_uploads_pages_with_markers_prefix_and_delimiter(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/1", "a/2", "b", "c/x", "d"]
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"] for key in keys]
    seen: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **markers)
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == list(zip(keys, ids, strict=True))
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in rolled["Uploads"]] == ["b", "d"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/", "c/"]
    under = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["UploadId"] for u in under["Uploads"]] == ids[:3]
    assert under["Uploads"][0]["Initiated"] <= under["Uploads"][1]["Initiated"]
    after = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a/1", UploadIdMarker=ids[0])
    assert [u["UploadId"] for u in after["Uploads"]] == ids[1:]
    none = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0)
    assert none.get("Uploads", []) == [] and none["IsTruncated"] is False
    for key, upload_id in zip(keys, ids, strict=True):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


# -- abort and errors -------------------------------------------------------------------------


def test_abort_ends_the_upload(s3: Any, bucket: str, store: tier0.Tier0) -> None:
    upload_id, _ = _upload(s3, bucket, "k", _data(1000, 7))
    answer = s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    for attempt in (
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id),
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x"),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id),
    ):
        with pytest.raises(ClientError) as error:
            attempt()
        assert error_code(error) == ("NoSuchUpload", 404)
    report = store.check()
    assert report.ok, report.problems


def test_completion_errors(s3: Any, bucket: str) -> None:
    small, tail = _data(PART - 1, 8), _data(10, 9)
    upload_id, answers = _upload(s3, bucket, "k", small, tail)
    etags = [a["ETag"] for a in answers]

    def complete(parts: list[tuple[int, str]]) -> tuple[str, int]:
        with pytest.raises(ClientError) as error:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )  # fmt: skip
        return error_code(error)

    assert complete([(1, etags[0]), (2, etags[0])]) == ("InvalidPart", 400)
    assert complete([(1, etags[0]), (3, etags[1])]) == ("InvalidPart", 400)
    assert complete([(2, etags[1]), (1, etags[0])]) == ("InvalidPartOrder", 400)
    assert complete([(1, etags[0]), (2, etags[1])]) == ("EntityTooSmall", 400)
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId="not-an-upload", MultipartUpload=_parts(answers)
        )
    assert error_code(error) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as error:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=0, Body=b"x")
    assert error_code(error) == ("InvalidArgument", 400)
    # The upload survived every failure: the last part alone makes an object.
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]}]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == tail


def test_part_with_a_wrong_checksum_is_refused(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    with pytest.raises(ClientError) as error:
        s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"body",
            ChecksumCRC32=_b64(_crc32(b"other")),
        )  # fmt: skip
    assert error_code(error) == ("BadDigest", 400)
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id).get("Parts", []) == []


def test_conditional_completion(s3: Any, bucket: str) -> None:
    existing = s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    upload_id, answers = _upload(s3, bucket, "k", b"new")
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}):
        with pytest.raises(ClientError) as error:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=_parts(answers),
                **condition,
            )  # fmt: skip
        assert error_code(error) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"old"
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=_parts(answers),
        IfMatch=existing["ETag"],
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"


def test_completion_in_a_versioned_bucket_answers_its_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    upload_id, answers = _upload(s3, bucket, "k", b"v1")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=_parts(answers)
    )
    assert done["VersionId"] and done["VersionId"] != "null"
    got = s3.get_object(Bucket=bucket, Key="k", VersionId=done["VersionId"])
    assert got["Body"].read() == b"v1"


# -- checksums --------------------------------------------------------------------------------


def test_composite_sha256_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 10), _data(33, 11)]
    upload_id, answers = _upload(s3, bucket, "k", *parts, ChecksumAlgorithm="SHA256")
    digests = [hashlib.sha256(p).digest() for p in parts]
    assert [a["ChecksumSHA256"] for a in answers] == [_b64(d) for d in digests]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id,
        MultipartUpload=_parts(answers, "ChecksumSHA256"),
    )  # fmt: skip
    assert done["ChecksumSHA256"] == f"{_b64(hashlib.sha256(b''.join(digests)).digest())}-2"
    assert done["ChecksumType"] == "COMPOSITE"
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key="k", ObjectAttributes=["ObjectParts", "Checksum"]
    )
    assert attributes["Checksum"]["ChecksumSHA256"] == done["ChecksumSHA256"]
    assert attributes["ObjectParts"]["TotalPartsCount"] == 2
    assert [
        (p["PartNumber"], p["Size"], p["ChecksumSHA256"])
        for p in attributes["ObjectParts"]["Parts"]
    ] == [
        (1, PART, _b64(digests[0])),
        (2, 33, _b64(digests[1])),
    ]


def test_full_object_crc32c_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 12), _data(4321, 13)]
    upload_id, answers = _upload(
        s3, bucket, "k", *parts, ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
    )
    whole = _b64(google_crc32c.value(b"".join(parts)).to_bytes(4, "big"))
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=_parts(answers),
        ChecksumCRC32C=whole, ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert (done["ChecksumCRC32C"], done["ChecksumType"]) == (whole, "FULL_OBJECT")
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32C"], head["ChecksumType"]) == (whole, "FULL_OBJECT")


def test_a_part_checksum_that_differs_at_completion_is_an_invalid_part(
    s3: Any, bucket: str
) -> None:
    upload_id, answers = _upload(s3, bucket, "k", b"abc", ChecksumAlgorithm="CRC32")
    answers[0]["ChecksumCRC32"] = _b64(_crc32(b"xyz"))
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id,
            MultipartUpload=_parts(answers, "ChecksumCRC32"),
        )  # fmt: skip
    assert error_code(error) == ("InvalidPart", 400)


def test_checksum_settings_s3_does_not_allow_are_invalid_requests(s3: Any, bucket: str) -> None:
    for settings in (
        {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"},
        {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"},
    ):
        with pytest.raises(ClientError) as error:
            s3.create_multipart_upload(Bucket=bucket, Key="k", **settings)
        assert error_code(error) == ("InvalidRequest", 400)


# -- UploadPartCopy ---------------------------------------------------------------------------


def test_upload_part_copy_with_a_range(s3: Any, bucket: str) -> None:
    source = _data(PART + 500, 14)
    put = s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    copy = {"Bucket": bucket, "Key": "source"}
    first = s3.upload_part_copy(
        Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, CopySource=copy,
        CopySourceRange=f"bytes=0-{PART - 1}", CopySourceIfMatch=put["ETag"],
    )["CopyPartResult"]  # fmt: skip
    assert first["ETag"] == f'"{hashlib.md5(source[:PART]).hexdigest()}"'
    second = s3.upload_part_copy(
        Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=2, CopySource=copy,
        CopySourceRange=f"bytes={PART}-{PART + 499}",
    )["CopyPartResult"]  # fmt: skip
    for bad, code in (
        ({"CopySourceRange": f"bytes=0-{PART + 500}"}, ("InvalidArgument", 400)),
        ({"CopySourceRange": "bytes=5-"}, ("InvalidArgument", 400)),
        ({"CopySourceIfNoneMatch": put["ETag"]}, ("PreconditionFailed", 412)),
    ):
        with pytest.raises(ClientError) as error:
            s3.upload_part_copy(
                Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=3, CopySource=copy, **bad
            )
        assert error_code(error) == code
    parts = [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == source


# -- the body parser's checksums --------------------------------------------------------------


def test_complete_body_keeps_each_parts_checksums() -> None:
    body = (
        f'<CompleteMultipartUpload xmlns="{S3_NAMESPACE}"><Part><PartNumber>1</PartNumber>'
        '<ETag>"e1"</ETag><ChecksumCRC32> AAAAAA== </ChecksumCRC32></Part>'
        "<Part><PartNumber>2</PartNumber><ETag>e2</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    assert parse_complete_multipart_upload(body) == [
        CompletedPart(1, '"e1"', {"crc32": "AAAAAA=="}),
        CompletedPart(2, "e2", {}),
    ]


# -- over HTTPS: part checksums in aws-chunked trailers --------------------------------------


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = _self_signed(directory)
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    tls = ("--certfile", str(certfile), "--keyfile", str(keyfile))
    with ServeProcess(directory / "store", environment, *tls) as process:
        assert process.url.startswith("https://")
        yield boto3.client(
            "s3",
            endpoint_url=process.url,
            region_name=REGION,
            aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET,
            verify=str(certfile),
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )


def test_managed_transfer_over_https_sends_part_checksums_as_trailers(tls_s3: Any) -> None:
    tls_s3.create_bucket(Bucket="tls")
    body = _data(PART + 1000, 15)
    sent: list[str] = []

    def keep_encoding(request: Any, **_: Any) -> None:
        sent.append(request.headers.get("Content-Encoding", b""))

    tls_s3.meta.events.register("before-send.s3.UploadPart", keep_encoding)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART)
    tls_s3.upload_fileobj(io.BytesIO(body), "tls", "k", Config=config)
    assert len(sent) == 2 and all("aws-chunked" in str(e) for e in sent)
    head = tls_s3.head_object(Bucket="tls", Key="k", ChecksumMode="ENABLED")
    assert head["ETag"] == _md5s_etag(body[:PART], body[PART:])
    pieces = (body[:PART], body[PART:])
    assert head["ChecksumCRC32"] == f"{_b64(_crc32(b''.join(_crc32(p) for p in pieces)))}-2"
    assert tls_s3.get_object(Bucket="tls", Key="k")["Body"].read() == body


def test_a_completion_sent_again_is_answered_again(s3: Any, bucket: str) -> None:
    # A client whose first answer was lost completes again: the same answer, not
    # NoSuchUpload, as S3 gives.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="retried")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="retried", UploadId=upload, PartNumber=1, Body=b"x")[
        "ETag"
    ]
    parts = {"Parts": [{"ETag": etag, "PartNumber": 1}]}
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="retried", UploadId=upload, MultipartUpload=parts
    )
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="retried", UploadId=upload, MultipartUpload=parts
    )
    assert again["ETag"] == first["ETag"] and again["Key"] == "retried"
    assert s3.get_object(Bucket=bucket, Key="retried")["Body"].read() == b"x"
