"""Browser-form POST uploads against a live ``tier0 serve``: boto3's
``generate_presigned_post`` (SigV4 and SigV2) and real multipart forms sent by
``requests``, every refusal answered with S3's code and nothing written."""

from __future__ import annotations

import base64
import hashlib
import http.client
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.auth import S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import REGION, RSSPeak, error_code, make_client
from tests.protocols.s3.raw import ROOT
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

File = tuple[str, bytes] | tuple[str, bytes, str]


@pytest.fixture(scope="module")
def s3v4(server: ServeProcess) -> Any:
    """A client whose presigned POSTs are SigV4 (boto3's default for us-east-1 is SigV2)."""
    return make_client(server.url, signature_version="s3v4")


def form_post(
    url: str, fields: Mapping[str, str], file: File = ("hello.txt", b"hello world")
) -> requests.Response:
    """POST the form as a browser does: the fields in order, then the file."""
    return requests.post(
        url, data=dict(fields), files={"file": file}, allow_redirects=False, timeout=30
    )


def code_of(response: requests.Response) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a refused POST."""
    assert response.headers["content-type"] == "application/xml", response.text
    return ET.fromstring(response.content).findtext("Code") or "", response.status_code


def message_of(response: requests.Response) -> str:
    return ET.fromstring(response.content).findtext("Message") or ""


def absent(s3: Any, bucket: str, key: str) -> bool:
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key=key)
    return error_code(error) == ("404", 404)


def signed_form(url: str, policy: dict[str, Any], fields: Mapping[str, str]) -> dict[str, str]:
    """``fields`` with a policy and SigV4 signature as botocore writes them, for
    policies ``generate_presigned_post`` would not make."""
    request = AWSRequest(method="POST", url=url)
    request.context["s3-presign-post-fields"] = dict(fields)
    request.context["s3-presign-post-policy"] = policy
    S3SigV4PostAuth(ROOT, "s3", REGION).add_auth(request)
    signed: dict[str, str] = request.context["s3-presign-post-fields"]
    return signed


# -- uploads --------------------------------------------------------------------------------


def test_post_presigned_v4_writes_the_file_and_answers_204(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "docs/a.txt")
    assert "x-amz-signature" in post["fields"]
    response = form_post(post["url"], post["fields"], ("a.txt", b"hello world"))
    assert response.status_code == 204, response.text
    assert response.content == b""
    etag = f'"{hashlib.md5(b"hello world").hexdigest()}"'
    assert response.headers["etag"] == etag
    assert response.headers["location"] == f"{post['url']}/docs/a.txt"
    got = s3.get_object(Bucket=bucket, Key="docs/a.txt")
    assert (got["Body"].read(), got["ETag"]) == (b"hello world", etag)


def test_post_presigned_v2_writes_the_file(s3: Any, bucket: str) -> None:
    s3v2 = s3  # boto3's default for a presigned POST in us-east-1
    post = s3v2.generate_presigned_post(bucket, "v2.txt")
    assert {"AWSAccessKeyId", "signature"} <= set(post["fields"])
    response = form_post(post["url"], post["fields"], ("x", b"signed the old way"))
    assert response.status_code == 204, response.text
    assert s3v2.get_object(Bucket=bucket, Key="v2.txt")["Body"].read() == b"signed the old way"


def test_post_filename_variable_names_the_key(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "uploads/${filename}")
    response = form_post(post["url"], post["fields"], ("photo.png", b"\x89PNG"))
    assert response.status_code == 204, response.text
    assert s3.get_object(Bucket=bucket, Key="uploads/photo.png")["Body"].read() == b"\x89PNG"


def test_post_stores_the_fields_s3_keeps(s3v4: Any, s3: Any, bucket: str) -> None:
    fields = {
        "Content-Type": "image/png",
        "Cache-Control": "max-age=60",
        "x-amz-meta-note": "from a form",
        "tagging": "<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>",
    }
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    post = s3v4.generate_presigned_post(bucket, "kept.png", Fields=fields, Conditions=conditions)
    # The file part's own Content-Type is not the object's: the field is.
    response = form_post(post["url"], post["fields"], ("kept.png", b"png", "text/plain"))
    assert response.status_code == 204, response.text
    head = s3.head_object(Bucket=bucket, Key="kept.png")
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"note": "from a form"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="kept.png")["TagSet"]
    assert tags == [{"Key": "k", "Value": "v"}]


def test_post_field_values_reach_get_as_the_bytes_sent(s3v4: Any, s3: Any, bucket: str) -> None:
    """Form fields are UTF-8; a GET answers with the same bytes in its headers."""
    fields = {"x-amz-meta-note": "naïve ✓", "Content-Disposition": 'inline; filename="ü.txt"'}
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    post = s3v4.generate_presigned_post(bucket, "utf8.txt", Fields=fields, Conditions=conditions)
    assert form_post(post["url"], post["fields"]).status_code == 204
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "utf8.txt"})
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    for name, value in fields.items():
        assert response.headers[name].encode("latin-1") == value.encode("utf-8")


def test_post_a_header_field_with_a_line_break_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    fields = {"x-amz-meta-note": "a\r\nSet-Cookie: session=stolen"}
    post = s3v4.generate_presigned_post(
        bucket,
        "injected.txt",
        Fields=fields,
        Conditions=[{"x-amz-meta-note": fields["x-amz-meta-note"]}],
    )
    response = form_post(post["url"], post["fields"])
    assert code_of(response) == ("InvalidArgument", 400)
    assert absent(s3, bucket, "injected.txt")


def test_post_success_action_status_201_answers_post_response(
    s3v4: Any, s3: Any, bucket: str
) -> None:
    post = s3v4.generate_presigned_post(
        bucket,
        "with status.txt",
        Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}],
    )
    response = form_post(post["url"], post["fields"])
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/xml"
    document = ET.fromstring(response.content)
    etag = f'"{hashlib.md5(b"hello world").hexdigest()}"'
    location = f"{post['url']}/with%20status.txt"
    assert document.tag == "PostResponse"
    assert [(child.tag, child.text) for child in document] == [
        ("Location", location),
        ("Bucket", bucket),
        ("Key", "with status.txt"),
        ("ETag", etag),
    ]
    assert response.headers["location"] == location


@pytest.mark.parametrize(("asked", "status"), [("200", 200), ("204", 204), ("302", 204)])
def test_post_success_action_status_200_and_others(
    s3v4: Any, s3: Any, bucket: str, asked: str, status: int
) -> None:
    post = s3v4.generate_presigned_post(
        bucket,
        "status.txt",
        Fields={"success_action_status": asked},
        Conditions=[{"success_action_status": asked}],
    )
    response = form_post(post["url"], post["fields"])
    assert (response.status_code, response.content) == (status, b"")
    assert response.headers["etag"]


def test_post_success_action_redirect_answers_303(s3v4: Any, s3: Any, bucket: str) -> None:
    redirect = "https://example.com/done?from=form"
    post = s3v4.generate_presigned_post(
        bucket,
        "redirected.txt",
        Fields={"success_action_redirect": redirect},
        Conditions=[{"success_action_redirect": redirect}],
    )
    response = form_post(post["url"], post["fields"])
    assert response.status_code == 303, response.text
    target = urlsplit(response.headers["location"])
    assert (target.scheme, target.netloc, target.path) == ("https", "example.com", "/done")
    etag = f'"{hashlib.md5(b"hello world").hexdigest()}"'
    assert parse_qs(target.query) == {
        "from": ["form"],
        "bucket": [bucket],
        "key": ["redirected.txt"],
        "etag": [etag],
    }
    assert s3.head_object(Bucket=bucket, Key="redirected.txt")["ETag"] == etag


def test_post_ignores_x_ignore_fields_and_fields_after_the_file(
    s3v4: Any, s3: Any, bucket: str
) -> None:
    post = s3v4.generate_presigned_post(bucket, "ignored.txt")
    boundary = "tier0boundary"
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in {**post["fields"], "x-ignore-tracking": "free"}.items()
    )
    body = (
        head + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        "the file\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="x-amz-meta-late"\r\n\r\nno\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = requests.post(
        post["url"],
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert response.status_code == 204, response.text
    head_object = s3.head_object(Bucket=bucket, Key="ignored.txt")
    assert head_object["ContentLength"] == len(b"the file")
    assert head_object["Metadata"] == {}


def test_post_anonymous_writes_only_where_the_bucket_allows(s3: Any, bucket: str) -> None:
    url = f"{s3.meta.endpoint_url}/{bucket}"
    response = form_post(url, {"key": "anonymous.txt"})
    assert code_of(response) == ("AccessDenied", 403)
    assert absent(s3, bucket, "anonymous.txt")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    response = form_post(url, {"key": "anonymous.txt"})
    assert response.status_code == 204, response.text
    assert s3.get_object(Bucket=bucket, Key="anonymous.txt")["Body"].read() == b"hello world"


def test_post_streams_a_large_file(
    s3v4: Any, server: ServeProcess, store: tier0.Tier0, bucket: str
) -> None:
    """A 160 MiB file goes through without the server holding it: its RSS grows
    by far less than the file (after one upload has warmed the server up)."""
    block = hashlib.sha256(b"post").digest() * 32768  # 1 MiB
    post = s3v4.generate_presigned_post(bucket, "large.bin")
    assert form_post(post["url"], post["fields"], ("warm.bin", block * 32)).status_code == 204
    data = block * 160
    peak = RSSPeak(server.process.pid)
    with peak:
        response = form_post(post["url"], post["fields"], ("large.bin", data))
    assert response.status_code == 204, response.text
    assert response.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert peak.growth_bytes < 64 * 1024 * 1024, peak.growth_bytes
    assert store.head(bucket, "large.bin").size == len(data)


# -- refusals: S3's code, and nothing written -----------------------------------------------


def test_post_expired_policy_is_access_denied(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "expired.txt", ExpiresIn=-5)
    response = form_post(post["url"], post["fields"])
    assert code_of(response) == ("AccessDenied", 403)
    assert "Policy expired" in message_of(response)
    assert absent(s3, bucket, "expired.txt")


@pytest.mark.parametrize("field", ["x-amz-signature", "policy"])
def test_post_wrong_signature_v4(s3v4: Any, s3: Any, bucket: str, field: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "tampered.txt")
    fields = dict(post["fields"])
    if field == "policy":
        # A policy that allows more, with the signature of the original.
        other = s3v4.generate_presigned_post(bucket, "tampered.txt", ExpiresIn=7200)
        fields["policy"] = other["fields"]["policy"]
    else:
        fields[field] = fields[field][:-1] + ("0" if fields[field][-1] != "0" else "1")
    response = form_post(post["url"], fields)
    assert code_of(response) == ("SignatureDoesNotMatch", 403)
    assert absent(s3, bucket, "tampered.txt")


def test_post_wrong_signature_v2(server: ServeProcess, bucket: str) -> None:
    s3v2 = make_client(server.url, signature_version="s3")
    post = s3v2.generate_presigned_post(bucket, "tampered2.txt")
    fields = {**post["fields"], "signature": base64.b64encode(b"x" * 20).decode()}
    assert code_of(form_post(post["url"], fields)) == ("SignatureDoesNotMatch", 403)
    assert absent(s3v2, bucket, "tampered2.txt")


def test_post_unknown_access_key(server: ServeProcess, bucket: str) -> None:
    stranger = make_client(
        server.url, access="T0NOSUCHACCESSKEY000", secret="whatever", signature_version="s3v4"
    )
    post = stranger.generate_presigned_post(bucket, "stranger.txt")
    assert code_of(form_post(post["url"], post["fields"])) == ("InvalidAccessKeyId", 403)
    assert absent(make_client(server.url), bucket, "stranger.txt")


def test_post_field_not_in_the_policy_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "extra.txt")
    response = form_post(post["url"], {**post["fields"], "x-amz-meta-sneaky": "1"})
    assert code_of(response) == ("AccessDenied", 403)
    assert "Extra input fields: x-amz-meta-sneaky" in message_of(response)
    assert absent(s3, bucket, "extra.txt")


def test_post_starts_with_mismatch_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "uploads/${filename}")
    fields = {**post["fields"], "key": "elsewhere/${filename}"}
    response = form_post(post["url"], fields, ("x.txt", b"x"))
    assert code_of(response) == ("AccessDenied", 403)
    assert '["starts-with", "$key", "uploads/"]' in message_of(response)
    assert absent(s3, bucket, "elsewhere/x.txt")


def test_post_eq_mismatch_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(
        bucket, "typed.txt", Fields={"Content-Type": "text/plain"},
        Conditions=[{"Content-Type": "text/plain"}],
    )  # fmt: skip
    response = form_post(post["url"], {**post["fields"], "Content-Type": "text/html"})
    assert code_of(response) == ("AccessDenied", 403)
    assert "Policy Condition failed" in message_of(response)
    assert absent(s3, bucket, "typed.txt")


def test_post_to_another_bucket_than_the_policy_names(s3v4: Any, s3: Any, bucket: str) -> None:
    other = f"{bucket}-other"
    s3.create_bucket(Bucket=other)
    post = s3v4.generate_presigned_post(bucket, "moved.txt")
    response = form_post(f"{s3.meta.endpoint_url}/{other}", post["fields"])
    assert code_of(response) == ("AccessDenied", 403)
    assert absent(s3, other, "moved.txt")


def test_post_over_the_content_length_range_is_too_large(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(
        bucket, "big.txt", Conditions=[["content-length-range", 1, 10]]
    )
    response = form_post(post["url"], post["fields"], ("big.txt", b"x" * 11))
    assert code_of(response) == ("EntityTooLarge", 400)
    document = ET.fromstring(response.content)
    assert (document.findtext("ProposedSize"), document.findtext("MaxSizeAllowed")) == ("11", "10")
    assert absent(s3, bucket, "big.txt")


def test_post_under_the_content_length_range_is_too_small(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(
        bucket, "small.txt", Conditions=[["content-length-range", 5, 10]]
    )
    response = form_post(post["url"], post["fields"], ("small.txt", b"xy"))
    assert code_of(response) == ("EntityTooSmall", 400)
    assert ET.fromstring(response.content).findtext("MinSizeAllowed") == "5"
    assert absent(s3, bucket, "small.txt")


def test_post_in_the_content_length_range_is_written(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(
        bucket, "fits.txt", Conditions=[["content-length-range", 5, 10]]
    )
    assert form_post(post["url"], post["fields"], ("f", b"x" * 10)).status_code == 204
    assert s3.head_object(Bucket=bucket, Key="fits.txt")["ContentLength"] == 10


def test_post_not_a_form_is_a_failed_precondition(s3: Any, bucket: str) -> None:
    response = requests.post(
        f"{s3.meta.endpoint_url}/{bucket}", data={"key": "plain.txt"}, timeout=30
    )
    assert code_of(response) == ("PreconditionFailed", 412)
    condition = ET.fromstring(response.content).findtext("Condition")
    assert condition == "Bucket POST must be of the enclosure-type multipart/form-data"


def test_post_without_a_file_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "nofile.txt")
    response = requests.post(post["url"], files={**post["fields"]}, timeout=30)
    assert code_of(response) == ("IncorrectNumberOfFilesInPostRequest", 400)
    assert absent(s3, bucket, "nofile.txt")


def test_post_with_two_files_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "twofiles.txt")
    files = [*((name, (None, value)) for name, value in post["fields"].items())]
    files += [("file", ("a", b"first")), ("file", ("b", b"second"))]
    response = requests.post(post["url"], files=files, timeout=30)
    assert code_of(response) == ("IncorrectNumberOfFilesInPostRequest", 400)
    assert absent(s3, bucket, "twofiles.txt")


def test_post_without_a_key_is_refused(s3: Any, bucket: str) -> None:
    url = f"{s3.meta.endpoint_url}/{bucket}"
    fields = signed_form(url, {"expiration": "2100-01-01T00:00:00Z", "conditions": []}, {})
    response = form_post(url, fields)
    assert code_of(response) == ("InvalidArgument", 400)
    assert "must contain a field named 'key'" in message_of(response)


def test_post_unsigned_policy_is_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "unsigned.txt")
    fields = {"key": "unsigned.txt", "policy": post["fields"]["policy"]}
    assert code_of(form_post(post["url"], fields)) == ("InvalidArgument", 400)
    assert absent(s3, bucket, "unsigned.txt")


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({"conditions": []}, id="no expiration"),
        pytest.param(
            {"expiration": "2100-01-01T00:00:00Z", "conditions": [["in", "$key", "a"]]},
            id="unknown operator",
        ),
    ],
)
def test_post_malformed_signed_policy_is_refused(
    s3: Any, bucket: str, policy: dict[str, Any]
) -> None:
    url = f"{s3.meta.endpoint_url}/{bucket}"
    fields = signed_form(url, policy, {"key": "malformed.txt"})
    assert code_of(form_post(url, fields)) == ("InvalidPolicyDocument", 400)
    assert absent(s3, bucket, "malformed.txt")


def test_post_fields_before_the_file_are_bounded(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "padded.txt")
    fields = {**post["fields"], "x-ignore-padding": "p" * (21 * 1024)}
    response = form_post(post["url"], fields)
    assert code_of(response) == ("MaxPostPreDataLengthExceededError", 400)
    assert absent(s3, bucket, "padded.txt")


def test_post_too_many_fields_are_refused(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "many.txt")
    fields = {**post["fields"], **{f"x-ignore-{n}": "" for n in range(100)}}
    assert code_of(form_post(post["url"], fields)) == ("MaxPostPreDataLengthExceededError", 400)


def test_post_malformed_body_is_refused_and_writes_nothing(s3v4: Any, s3: Any, bucket: str) -> None:
    post = s3v4.generate_presigned_post(bucket, "truncated.txt")
    boundary = "tier0boundary"
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in post["fields"].items()
    )
    # The file part never ends: no closing delimiter.
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\ncut short'
    parts = urlsplit(post["url"])
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request(
            "POST",
            parts.path,
            body=body.encode(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        response = connection.getresponse()
        document = ET.fromstring(response.read())
    finally:
        connection.close()
    assert (document.findtext("Code"), response.status) == ("MalformedPOSTRequest", 400)
    assert absent(s3, bucket, "truncated.txt")
