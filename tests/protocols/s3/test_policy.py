"""Bucket policies and ACLs deciding real S3 requests: a second principal with boto3, and
anonymous requests with urllib, against a live ``tier0 serve``.

tier0's rule for who a Deny binds, after AWS: an explicit Deny in a bucket
policy binds everyone, the bucket's owner included, except root (tier0's
operator, as the AWS account is above its buckets' policies). The owner keeps
the right to read, replace and delete the policy, so it can always repair one.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import ACCESS, SECRET, bucket_numbers, error_code, make_client
from tests.server.test_serve import ServeProcess, _self_signed, clean_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policy") / "store"


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[ServeProcess]:
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    with ServeProcess(data, environment) as process:
        yield process


@pytest.fixture(scope="module")
def alice(server: ServeProcess, data: Path) -> Any:
    """A boto3 client for a second principal, alice, who may create buckets."""
    with tier0.open(data) as t0:
        principal, credential = t0.create_user("alice")
        t0.grant(principal, "s3:CreateBucket", "/alice-*")
    return make_client(server.url, access=credential.access_key, secret=credential.secret_key)


def _anonymous(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    tls: ssl.SSLContext | None = None,
    **headers: str,
) -> Any:
    """(status, body, S3 error code or None) of an unsigned request."""
    request = urllib.request.Request(url, method=method, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls) as response:
            return response.status, response.read(), None
    except urllib.error.HTTPError as error:
        content = error.read()
        return error.code, content, ET.fromstring(content).findtext("Code") if content else None


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _statement(
    effect: str, principal: Any, action: Any, resource: str, **extra: Any
) -> dict[str, Any]:
    return {
        "Effect": effect,
        "Principal": principal,
        "Action": action,
        "Resource": resource,
        **extra,
    }


def test_a_public_read_policy_lets_anonymous_requests_read(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="docs/readme.txt", Body=b"read me")
    url = f"{server.url}/{bucket}/docs/readme.txt"
    assert _anonymous(url)[::2] == (403, "AccessDenied")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(_statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*")),
    )
    assert _anonymous(url)[:2] == (200, b"read me")
    assert _anonymous(url, "HEAD")[0] == 200
    # Reading is all it allows: no listing, no writing, no deleting, no buckets.
    assert _anonymous(f"{server.url}/{bucket}?list-type=2")[::2] == (403, "AccessDenied")
    assert _anonymous(url, "PUT", b"overwritten")[::2] == (403, "AccessDenied")
    assert _anonymous(url, "DELETE")[::2] == (403, "AccessDenied")
    assert _anonymous(f"{server.url}/")[::2] == (403, "AccessDenied")
    assert _anonymous(f"{server.url}/anonymous-bucket", "PUT")[::2] == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="docs/readme.txt")["Body"].read() == b"read me"
    s3.delete_bucket_policy(Bucket=bucket)
    assert _anonymous(url)[::2] == (403, "AccessDenied")


def test_policy_conditions_on_the_request(server: ServeProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"b")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            # Hotlink protection: only pages of one site may embed the objects.
            _statement(
                "Allow",
                "*",
                "s3:GetObject",
                f"arn:aws:s3:::{bucket}/*",
                Condition={"StringLike": {"aws:Referer": "https://site.example/*"}},
            ),
            # Listing, but only of public/.
            _statement(
                "Allow",
                "*",
                "s3:ListBucket",
                f"arn:aws:s3:::{bucket}",
                Condition={"StringEquals": {"s3:prefix": "public/"}},
            ),
        ),
    )
    url = f"{server.url}/{bucket}/public/a"
    assert _anonymous(url, Referer="https://site.example/page")[:2] == (200, b"a")
    assert _anonymous(url, Referer="https://other.example/page")[0] == 403
    assert _anonymous(url)[0] == 403
    status, body, _ = _anonymous(f"{server.url}/{bucket}?list-type=2&prefix=public/")
    assert status == 200
    keys = [
        e.text for e in ET.fromstring(body).iter("{http://s3.amazonaws.com/doc/2006-03-01/}Key")
    ]
    assert keys == ["public/a"]
    assert _anonymous(f"{server.url}/{bucket}?list-type=2&prefix=private/")[0] == 403
    assert _anonymous(f"{server.url}/{bucket}?list-type=2")[0] == 403


def test_ip_address_conditions_see_the_client_address(
    server: ServeProcess, s3: Any, alice: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    allow_alice = _statement("Allow", {"AWS": "alice"}, "s3:GetObject", f"arn:aws:s3:::{bucket}/*")

    def only_from(network: str) -> str:
        return _policy(
            allow_alice,
            _statement(
                "Deny",
                "*",
                "s3:GetObject",
                f"arn:aws:s3:::{bucket}/*",
                Condition={"NotIpAddress": {"aws:SourceIp": network}},
            ),
        )

    s3.put_bucket_policy(Bucket=bucket, Policy=only_from("127.0.0.1/32"))
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.put_bucket_policy(Bucket=bucket, Policy=only_from("10.0.0.0/8"))
    with pytest.raises(ClientError) as error:
        alice.get_object(Bucket=bucket, Key="k")
    assert error_code(error) == ("AccessDenied", 403)
    # Root is not bound by bucket policies, not even by an explicit Deny.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    anonymous = _statement(
        "Allow",
        "*",
        "s3:GetObject",
        f"arn:aws:s3:::{bucket}/*",
        Condition={"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}},
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(anonymous))
    assert _anonymous(f"{server.url}/{bucket}/k")[:2] == (200, b"v")


def test_insecure_transport_can_be_denied(
    server: ServeProcess, s3: Any, alice: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"),
            _statement(
                "Deny",
                "*",
                "s3:*",
                f"arn:aws:s3:::{bucket}/*",
                Condition={"Bool": {"aws:SecureTransport": "false"}},
            ),
        ),
    )
    # This server speaks plain HTTP: every request is insecure transport.
    assert _anonymous(f"{server.url}/{bucket}/k")[0] == 403
    with pytest.raises(ClientError) as error:
        alice.get_object(Bucket=bucket, Key="k")
    assert error_code(error) == ("AccessDenied", 403)


def test_secure_transport_is_true_over_tls(
    tmp_path: Path, data: Path, server: ServeProcess, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"),
            _statement(
                "Deny",
                "*",
                "s3:GetObject",
                f"arn:aws:s3:::{bucket}/*",
                Condition={"Bool": {"aws:SecureTransport": "false"}},
            ),
        ),
    )
    certfile, keyfile = _self_signed(tmp_path)
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    tls = ("--certfile", str(certfile), "--keyfile", str(keyfile))
    # A second gateway over the same store, speaking HTTPS.
    with ServeProcess(data, environment, *tls) as secure:
        trusted = ssl.create_default_context(cafile=str(certfile))
        assert _anonymous(f"{secure.url}/{bucket}/k", tls=trusted)[:2] == (200, b"v")
    assert _anonymous(f"{server.url}/{bucket}/k")[::2] == (403, "AccessDenied")


def test_a_second_principal_gets_what_the_policy_names(
    server: ServeProcess, s3: Any, alice: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="shared/report.csv", Body=b"1,2,3")
    s3.put_object(Bucket=bucket, Key="secret/keys", Body=b"k")
    with pytest.raises(ClientError) as error:
        alice.get_object(Bucket=bucket, Key="shared/report.csv")
    assert error_code(error) == ("AccessDenied", 403)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement(
                "Allow",
                {"AWS": ["arn:aws:iam::000000000000:user/alice"]},
                ["s3:GetObject", "s3:PutObject"],
                f"arn:aws:s3:::{bucket}/shared/*",
            ),
            _statement(
                "Allow",
                {"AWS": "alice"},
                "s3:ListBucket",
                f"arn:aws:s3:::{bucket}",
            ),
        ),
    )
    assert alice.get_object(Bucket=bucket, Key="shared/report.csv")["Body"].read() == b"1,2,3"
    alice.put_object(Bucket=bucket, Key="shared/from-alice.txt", Body=b"hello")
    keys = [o["Key"] for o in alice.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "shared/from-alice.txt" in keys
    for call in (
        lambda: alice.get_object(Bucket=bucket, Key="secret/keys"),
        lambda: alice.delete_object(Bucket=bucket, Key="shared/report.csv"),
        lambda: alice.get_bucket_policy(Bucket=bucket),
        lambda: alice.put_bucket_policy(Bucket=bucket, Policy=_policy()),
        lambda: alice.put_bucket_acl(Bucket=bucket, ACL="public-read"),
        lambda: alice.get_bucket_tagging(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == ("AccessDenied", 403)


def test_an_explicit_deny_binds_the_owner_but_not_root(s3: Any, alice: Any) -> None:
    name = f"alice-{next(bucket_numbers)}"
    alice.create_bucket(Bucket=name)
    alice.put_object(Bucket=name, Key="mine", Body=b"m")
    alice.put_bucket_policy(
        Bucket=name,
        Policy=_policy(
            _statement("Deny", "*", ["s3:GetObject", "s3:DeleteObject"], f"arn:aws:s3:::{name}/*")
        ),
    )
    for call in (
        lambda: alice.get_object(Bucket=name, Key="mine"),
        lambda: alice.delete_object(Bucket=name, Key="mine"),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == ("AccessDenied", 403)
        assert "bucket policy statement #1 denies" in error.value.response["Error"]["Message"]
    assert s3.get_object(Bucket=name, Key="mine")["Body"].read() == b"m"
    # A policy that denies everything still leaves the owner able to repair it.
    alice.put_bucket_policy(
        Bucket=name, Policy=_policy(_statement("Deny", "*", "s3:*", f"arn:aws:s3:::{name}"))
    )
    assert "s3:*" in alice.get_bucket_policy(Bucket=name)["Policy"]
    alice.delete_bucket_policy(Bucket=name)
    assert alice.get_object(Bucket=name, Key="mine")["Body"].read() == b"m"


def test_acls_admit_anonymous_requests(server: ServeProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="closed", Body=b"c")
    assert _anonymous(f"{server.url}/{bucket}/open")[:2] == (200, b"o")
    assert _anonymous(f"{server.url}/{bucket}/closed")[::2] == (403, "AccessDenied")
    assert _anonymous(f"{server.url}/{bucket}?list-type=2")[0] == 403
    assert _anonymous(f"{server.url}/{bucket}/missing")[::2] == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    status, body, _ = _anonymous(f"{server.url}/{bucket}?list-type=2")
    assert status == 200 and b"<Key>closed</Key>" in body
    assert _anonymous(f"{server.url}/{bucket}/closed")[0] == 403  # listing is not reading
    # A missing key is NoSuchKey to whoever may list the bucket, AccessDenied to others.
    assert _anonymous(f"{server.url}/{bucket}/missing")[::2] == (404, "NoSuchKey")
    assert _anonymous(f"{server.url}/{bucket}/missing", "HEAD")[0] == 404
    assert _anonymous(f"{server.url}/{bucket}/dropped", "PUT", b"d")[0] == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert _anonymous(f"{server.url}/{bucket}/dropped", "PUT", b"d")[0] == 200
    assert s3.get_object(Bucket=bucket, Key="dropped")["Body"].read() == b"d"
    assert _anonymous(f"{server.url}/{bucket}/dropped", "DELETE")[0] == 204
    s3.put_object_acl(Bucket=bucket, Key="open", ACL="private")
    assert _anonymous(f"{server.url}/{bucket}/open")[0] == 403


def test_authenticated_read_admits_signed_requests_only(
    server: ServeProcess, s3: Any, alice: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="members", Body=b"m", ACL="authenticated-read")
    assert alice.get_object(Bucket=bucket, Key="members")["Body"].read() == b"m"
    assert _anonymous(f"{server.url}/{bucket}/members")[0] == 403


def test_bucket_reads_are_authorized_as_their_own_actions(
    server: ServeProcess, s3: Any, bucket: str, alice: Any
) -> None:
    # GetBucketVersioning and GetBucketLocation are actions of their own, not ListBucket.
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement(
                "Allow",
                {"AWS": "alice"},
                ["s3:GetBucketVersioning", "s3:GetBucketLocation"],
                f"arn:aws:s3:::{bucket}",
            )
        ),
    )
    assert alice.get_bucket_versioning(Bucket=bucket).get("Status") is None
    assert alice.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    with pytest.raises(ClientError) as error:
        alice.list_objects_v2(Bucket=bucket)
    assert error_code(error) == ("AccessDenied", 403)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement("Allow", {"AWS": "alice"}, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
        ),
    )
    assert alice.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    with pytest.raises(ClientError) as error:
        alice.get_bucket_versioning(Bucket=bucket)
    assert error_code(error) == ("AccessDenied", 403)


def test_object_tags_are_authorized_as_their_own_actions(
    server: ServeProcess, s3: Any, bucket: str, alice: Any
) -> None:
    # Reading an object does not reveal its tags, and putting tags does not remove
    # them: GetObjectTagging, PutObjectTagging and DeleteObjectTagging each stand alone.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="team=data")

    def allow(*actions: str) -> None:
        s3.put_bucket_policy(
            Bucket=bucket,
            Policy=_policy(
                _statement("Allow", {"AWS": "alice"}, list(actions), f"arn:aws:s3:::{bucket}/k")
            ),
        )

    def denied(call: Any) -> None:
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == ("AccessDenied", 403)

    allow("s3:GetObject", "s3:PutObjectTagging")
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    denied(lambda: alice.get_object_tagging(Bucket=bucket, Key="k"))
    denied(lambda: alice.delete_object_tagging(Bucket=bucket, Key="k"))
    alice.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": []})
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    allow("s3:GetObjectTagging", "s3:DeleteObjectTagging")
    denied(lambda: alice.get_object(Bucket=bucket, Key="k"))
    assert alice.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "a", "Value": "1"}
    ]
    alice.delete_object_tagging(Bucket=bucket, Key="k")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    # A named version is its own action again.
    version = s3.head_object(Bucket=bucket, Key="k").get("VersionId", "null")
    denied(lambda: alice.get_object_tagging(Bucket=bucket, Key="k", VersionId=version))
    allow("s3:GetObjectVersionTagging")
    assert alice.get_object_tagging(Bucket=bucket, Key="k", VersionId=version)["TagSet"] == []


def test_grant_headers_on_writes_are_refused_not_dropped(s3: Any, bucket: str) -> None:
    # tier0 keeps canned ACLs only: a grant it cannot keep is refused, never ignored.
    grant = "id=p-0123456789abcdef"
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="g", Body=b"x", GrantRead=grant),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="g", GrantFullControl=grant),
        lambda: s3.copy_object(
            Bucket=bucket, Key="g2", CopySource={"Bucket": bucket, "Key": "g"}, GrantRead=grant
        ),
        lambda: s3.create_bucket(Bucket=f"{bucket}-granted", GrantRead=grant),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key="g")
    assert error_code(error)[1] == 404
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="g", Body=b"x", ACL="public-read", GrantRead=grant)
    assert error_code(error) == ("InvalidArgument", 400)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_who_writes_into_anothers_bucket_keeps_their_object_and_upload(
    server: ServeProcess, s3: Any, alice: Any, bucket: str
) -> None:
    # As in S3 with ACLs: the writer owns the object (FULL_CONTROL: read it, read and
    # set its ACL) and the upload it began (list its parts, abort it).
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    alice.put_object(Bucket=bucket, Key="mine", Body=b"m", ACL="bucket-owner-read")
    assert alice.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"m"
    assert alice.head_object(Bucket=bucket, Key="mine")["ContentLength"] == 1
    owner = alice.get_object_acl(Bucket=bucket, Key="mine")["Owner"]["ID"]
    alice.put_object_acl(Bucket=bucket, Key="mine", ACL="private")
    assert s3.get_object_acl(Bucket=bucket, Key="mine")["Owner"]["ID"] == owner
    s3.put_object(Bucket=bucket, Key="roots", Body=b"r")
    with pytest.raises(ClientError) as error:
        alice.get_object(Bucket=bucket, Key="roots")  # the bucket's WRITE is not READ
    assert error_code(error) == ("AccessDenied", 403)
    assert _anonymous(f"{server.url}/{bucket}/mine")[0] == 403
    upload = alice.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    alice.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"p")
    assert [
        p["PartNumber"]
        for p in alice.list_parts(Bucket=bucket, Key="big", UploadId=upload)["Parts"]
    ] == [1]
    assert _anonymous(f"{server.url}/{bucket}/big?uploadId={upload}")[0] == 403
    assert _anonymous(f"{server.url}/{bucket}/big?uploadId={upload}", "DELETE")[0] == 403
    alice.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_policies_can_condition_writes_on_their_copy_source_and_tags(
    s3: Any, alice: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"b")
    everything = f"arn:aws:s3:::{bucket}/*"
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement("Allow", {"AWS": "alice"}, "s3:GetObject", everything),
            _statement(
                "Allow",
                {"AWS": "alice"},
                "s3:PutObject",
                everything,
                Condition={
                    "StringLike": {"s3:x-amz-copy-source": f"{bucket}/public/*"},
                    "StringEquals": {"s3:x-amz-metadata-directive": "COPY"},
                },
            ),
        ),
    )
    alice.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "public/a"})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == b"a"
    for call in (
        lambda: alice.copy_object(
            Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "private/b"}
        ),
        lambda: alice.copy_object(
            Bucket=bucket,
            Key="copied",
            CopySource={"Bucket": bucket, "Key": "public/a"},
            MetadataDirective="REPLACE",
        ),
        lambda: alice.put_object(Bucket=bucket, Key="copied", Body=b"not a copy"),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == ("AccessDenied", 403)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement(
                "Allow",
                {"AWS": "alice"},
                "s3:PutObject",
                everything,
                Condition={"StringEquals": {"s3:RequestObjectTag/team": "data"}},
            ),
        ),
    )
    alice.put_object(Bucket=bucket, Key="tagged", Body=b"t", Tagging="team=data")
    for tagging in ("team=ops", "Team=data", ""):
        with pytest.raises(ClientError) as error:
            alice.put_object(Bucket=bucket, Key="tagged", Body=b"t", Tagging=tagging)
        assert error_code(error) == ("AccessDenied", 403)
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [
        {"Key": "team", "Value": "data"}
    ]


def test_a_named_version_is_read_as_get_object_version(s3: Any, alice: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement("Allow", {"AWS": "alice"}, "s3:GetObject", f"arn:aws:s3:::{bucket}/*")
        ),
    )
    # The current version, whole, by range and under a condition: s3:GetObject is enough.
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    assert alice.get_object(Bucket=bucket, Key="k", Range="bytes=1-3")["Body"].read() == b"eco"
    etag = alice.head_object(Bucket=bucket, Key="k")["ETag"]
    ranged = alice.get_object(Bucket=bucket, Key="k", Range="bytes=0-0", IfMatch=etag)
    assert ranged["Body"].read() == b"s"
    for call in (
        lambda: alice.get_object(Bucket=bucket, Key="k", VersionId=old),
        lambda: alice.head_object(Bucket=bucket, Key="k", VersionId=old),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error)[1] == 403
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            _statement(
                "Allow",
                {"AWS": "alice"},
                ["s3:GetObject", "s3:GetObjectVersion"],
                f"arn:aws:s3:::{bucket}/*",
            )
        ),
    )
    body = alice.get_object(Bucket=bucket, Key="k", VersionId=old, Range="bytes=0-1")["Body"]
    assert body.read() == b"fi"
