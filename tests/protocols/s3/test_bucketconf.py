"""Bucket tagging, CORS (preflight and response headers), policy and ACLs over S3, with boto3
against a live ``tier0 serve``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.protocols.s3.live import error_code
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _raw(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """An unsigned request: (status, lower-case headers, body), errors included."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code")


# -- tagging --------------------------------------------------------------------------------


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(error) == ("NoSuchTagSet", 404)
    tags = [{"Key": "team", "Value": "data"}, {"Key": "env", "Value": "prod & test <1>"}]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert sorted(got, key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])
    with pytest.raises(ClientError) as error:
        s3.put_bucket_tagging(
            Bucket=bucket,
            Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]},
        )
    assert error_code(error) == ("InvalidTag", 400)
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    with pytest.raises(ClientError) as error:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": many})
    assert error_code(error) == ("InvalidTag", 400)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": many[:50]})
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    response = s3.delete_bucket_tagging(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as error:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(error) == ("NoSuchTagSet", 404)
    with pytest.raises(ClientError) as error:
        s3.get_bucket_tagging(Bucket="no-such-bucket-here")
    assert error_code(error) == ("NoSuchBucket", 404)


def test_a_body_that_does_not_match_its_checksum_is_refused(s3: Any, bucket: str) -> None:
    def corrupt(request: Any, **kwargs: Any) -> None:
        # Before signing: the signature covers the wrong checksum, so only
        # the checksum check can catch it.
        for name in list(request.headers.keys()):
            if name.lower().startswith("x-amz-checksum-") or name.lower() == "content-md5":
                del request.headers[name]
        request.headers["Content-MD5"] = "1B2M2Y8AsgTpgAmY7PhCfg=="  # MD5 of nothing

    s3.meta.events.register("before-sign.s3.PutBucketTagging", corrupt)
    try:
        with pytest.raises(ClientError) as error:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    finally:
        s3.meta.events.unregister("before-sign.s3.PutBucketTagging", corrupt)
    assert error_code(error) == ("BadDigest", 400)
    with pytest.raises(ClientError) as error:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(error) == ("NoSuchTagSet", 404)


# -- CORS -----------------------------------------------------------------------------------

RULES = [
    {
        "ID": "app",
        "AllowedMethods": ["GET", "HEAD"],
        "AllowedOrigins": ["https://app.example"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag", "x-amz-request-id"],
        "MaxAgeSeconds": 600,
    },
    {
        "AllowedMethods": ["PUT"],
        "AllowedOrigins": ["https://*.upload.example"],
        "AllowedHeaders": ["content-type"],
    },
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]},
]


def test_bucket_cors_round_trip(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(error) == ("NoSuchCORSConfiguration", 404)
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got == RULES
    with pytest.raises(ClientError) as error:
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [{"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}]
            },
        )
    assert error_code(error) == ("InvalidRequest", 400)
    assert "Unsupported method is PATCH" in error.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as error:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": []})
    assert error_code(error) == ("MalformedXML", 400)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as error:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(error) == ("NoSuchCORSConfiguration", 404)


def test_preflight_is_answered_from_the_rules_without_authentication(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    url = f"{server.url}/{bucket}/some/key"
    ask = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    status, _, body = _raw(url, "OPTIONS", ask)
    assert (status, _code(body)) == (403, "CORSResponse")
    assert b"CORS is not enabled for this bucket" in body
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    status, headers, body = _raw(
        url, "OPTIONS", {**ask, "Access-Control-Request-Headers": "X-Custom, Range"}
    )
    assert status == 200 and body == b""
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-allow-methods"] == "GET, HEAD"
    assert headers["access-control-allow-headers"] == "x-custom, range"
    assert headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert headers["access-control-max-age"] == "600"
    assert headers["access-control-allow-credentials"] == "true"
    assert "Origin" in headers["vary"]
    # The wildcard rule answers "*", without credentials.
    status, headers, _ = _raw(
        f"{server.url}/{bucket}", "OPTIONS", {**ask, "Origin": "https://elsewhere.example"}
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    put = {"Origin": "https://a.upload.example", "Access-Control-Request-Method": "PUT"}
    assert _raw(url, "OPTIONS", {**put, "Access-Control-Request-Headers": "Content-Type"})[0] == 200
    for refused in (
        {**put, "Access-Control-Request-Headers": "Authorization"},
        {**put, "Origin": "https://upload.example"},
        {**ask, "Access-Control-Request-Method": "DELETE"},
    ):
        status, _, body = _raw(url, "OPTIONS", refused)
        assert (status, _code(body)) == (403, "CORSResponse")
        assert b"This CORS request is not allowed" in body
    status, _, body = _raw(url, "OPTIONS", {"Access-Control-Request-Method": "GET"})
    assert (status, _code(body)) == (400, "BadRequest")
    status, _, body = _raw(url, "OPTIONS", {"Origin": "https://app.example"})
    assert (status, _code(body)) == (400, "BadRequest")


def test_actual_requests_with_an_origin_get_cors_headers(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>hi</p>")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "page.html"}, ExpiresIn=60
    )
    status, headers, _ = _raw(url, headers={"Origin": "https://app.example"})
    assert status == 200 and "access-control-allow-origin" not in headers  # no rules yet
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES[:1]})
    status, headers, body = _raw(url, headers={"Origin": "https://app.example"})
    assert (status, body) == (200, b"<p>hi</p>")
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert "Origin" in headers["vary"]
    status, headers, _ = _raw(url, headers={"Origin": "https://evil.example"})
    assert status == 200 and "access-control-allow-origin" not in headers
    status, headers, _ = _raw(url)
    assert "access-control-allow-origin" not in headers
    # A refused request still tells the browser's page why (CORS headers on the error).
    status, headers, body = _raw(
        f"{server.url}/{bucket}/page.html", headers={"Origin": "https://app.example"}
    )
    assert (status, _code(body)) == (403, "AccessDenied")
    assert headers["access-control-allow-origin"] == "https://app.example"


# -- policy ---------------------------------------------------------------------------------


def _policy(bucket: str, **statement: Any) -> str:
    base = {
        "Sid": "Public",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [{**base, **statement}]}, indent=1)


def test_bucket_policy_round_trip(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(error) == ("NoSuchBucketPolicy", 404)
    with pytest.raises(ClientError) as error:
        s3.get_bucket_policy_status(Bucket=bucket)
    assert error_code(error) == ("NoSuchBucketPolicy", 404)
    text = _policy(bucket)
    response = s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == text
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": True}
    restricted = _policy(bucket, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    s3.put_bucket_policy(Bucket=bucket, Policy=restricted)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": False}
    assert s3.delete_bucket_policy(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as error:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(error) == ("NoSuchBucketPolicy", 404)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"Action": "s3:GetObjekt"}, "not an S3 action"),
        ({"Resource": "arn:aws:s3:::some-other-bucket/*"}, "is not in bucket"),
        ({"Condition": {"StringEqualz": {"s3:prefix": "a"}}}, "Invalid Condition type"),
        ({"Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}, "invalid condition key"),
        ({"Effect": "Maybe"}, "Effect must be Allow or Deny"),
        ({"Sid": "x" * 25_000}, "at most 20480"),
    ],
)
def test_a_malformed_policy_is_refused_with_its_reason(
    s3: Any, bucket: str, change: dict[str, Any], complaint: str
) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket))
    with pytest.raises(ClientError) as error:
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, **change))
    assert error_code(error) == ("MalformedPolicy", 400)
    assert complaint in error.value.response["Error"]["Message"]
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == _policy(bucket)


def test_a_policy_that_is_not_json_is_malformed(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_bucket_policy(Bucket=bucket, Policy="{not json")
    assert error_code(error) == ("MalformedPolicy", 400)


# -- ACLs -----------------------------------------------------------------------------------


def _grants(acl: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g["Grantee"]["Type"], g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
        for g in acl["Grants"]
    }


def test_bucket_acl(s3: Any, bucket: str) -> None:
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"] == {"ID": "root", "DisplayName": "root"}
    assert _grants(acl) == {("CanonicalUser", "root", "FULL_CONTROL")}
    assert acl["Grants"][0]["Grantee"]["DisplayName"] == "root"
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert _grants(acl) == {
        ("CanonicalUser", "root", "FULL_CONTROL"),
        ("Group", ALL_USERS, "READ"),
    }
    # Writing back what was read (the usual read-modify-write) restates a canned ACL.
    s3.put_bucket_acl(
        Bucket=bucket, AccessControlPolicy={"Owner": acl["Owner"], "Grants": acl["Grants"][:1]}
    )
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {("CanonicalUser", "root", "FULL_CONTROL")}
    with pytest.raises(ClientError) as error:
        s3.put_bucket_acl(
            Bucket=bucket,
            AccessControlPolicy={
                "Owner": acl["Owner"],
                "Grants": [
                    {"Grantee": {"Type": "CanonicalUser", "ID": "someone"}, "Permission": "READ"}
                ],
            },
        )
    assert error_code(error) == ("NotImplemented", 501)
    assert "canned ACLs only" in error.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as error:
        s3.put_bucket_acl(Bucket=bucket, GrantRead=f'uri="{ALL_USERS}"')
    assert error_code(error) == ("NotImplemented", 501)
    assert "x-amz-grant-read" in error.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as error:
        s3.put_bucket_acl(Bucket=bucket, ACL="bucket-owner-full-control")
    assert error_code(error) == ("InvalidArgument", 400)


def test_create_bucket_with_a_canned_acl(s3: Any) -> None:
    s3.create_bucket(Bucket="born-public", ACL="public-read")
    try:
        assert ("Group", ALL_USERS, "READ") in _grants(s3.get_bucket_acl(Bucket="born-public"))
    finally:
        s3.delete_bucket(Bucket="born-public")
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket="born-wrong", ACL="everyone-writes")  # type: ignore[arg-type]
    assert error_code(error) == ("InvalidArgument", 400)


def test_object_acl(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", ACL="public-read")
    acl = s3.get_object_acl(Bucket=bucket, Key="open")
    assert acl["Owner"]["ID"] == "root"
    assert _grants(acl) == {("CanonicalUser", "root", "FULL_CONTROL"), ("Group", ALL_USERS, "READ")}
    s3.put_object(Bucket=bucket, Key="closed", Body=b"c")
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="closed")) == {
        ("CanonicalUser", "root", "FULL_CONTROL")
    }
    s3.put_object_acl(Bucket=bucket, Key="closed", ACL="authenticated-read")
    assert (
        "Group",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
        "READ",
    ) in _grants(s3.get_object_acl(Bucket=bucket, Key="closed"))
    with pytest.raises(ClientError) as error:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert error_code(error) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="x", Body=b"x", ACL="bogus")  # type: ignore[arg-type]
    assert error_code(error) == ("InvalidArgument", 400)


def test_multipart_upload_acl_applies_to_the_completed_object(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ACL="public-read")
    part = s3.upload_part(
        Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"only part"
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert ("Group", ALL_USERS, "READ") in _grants(s3.get_object_acl(Bucket=bucket, Key="mp"))
    with pytest.raises(ClientError) as error:
        s3.create_multipart_upload(Bucket=bucket, Key="mp", ACL="bogus")  # type: ignore[arg-type]
    assert error_code(error) == ("InvalidArgument", 400)


def test_object_acls_per_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"1", ACL="public-read")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    assert len(s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]) == 1
    assert len(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=first)["Grants"]) == 2
    response = s3.put_object_acl(Bucket=bucket, Key="k", VersionId=first, ACL="private")
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-version-id"] == first
    assert len(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=first)["Grants"]) == 1
