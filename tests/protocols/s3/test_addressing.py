"""Virtual-hosted-style addressing: ``Host: bucket.<domain>`` under ``tier0 serve --s3-domain``.

Names under ``.localhost`` do not resolve on every machine (glibc resolves them
only with nss-myhostname), and tests must not edit /etc/hosts. So the clients
here reach the server the way they would reach it through an HTTP proxy: the
connection goes to 127.0.0.1, and the request carries the full URL
(``GET http://bucket.s3.localhost:PORT/key``) and the matching Host header,
exactly as the client built and signed them. uvicorn accepts that form
(RFC 9112 requires servers to), and the gateway sees the same Host and path
as with a resolving name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.protocols.s3.live import ACCESS, REGION, SECRET, bucket_numbers, error_code, make_client
from tests.server.test_serve import ServeProcess, clean_environment
from tier0.errors import InvalidArgument
from tier0.protocols.s3 import bucket_of_host, normal_domain

DOMAIN = "s3.localhost"
#: A second, shorter domain that the first one sits under: the longest match must win.
OUTER_DOMAIN = "localhost"

# -- the host parser (no server) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "bucket"),
    [
        ("photos.s3.localhost:9000", "photos"),
        ("photos.s3.localhost", "photos"),
        ("Photos.S3.LocalHost.:9000", "photos"),  # DNS names are case-blind; FQDN dot
        ("my.dotted.bucket.s3.localhost", "my.dotted.bucket"),
        ("s3.localhost:9000", None),  # the domain itself: path-style
        ("photos.localhost", "photos"),  # under the shorter domain
        ("photos.s3.localhost.evil.test", None),
        ("photoss3.localhost", "photoss3"),
        ("xs3.localhost", "xs3"),
        ("127.0.0.1:9000", None),
        ("[::1]:9000", None),
        ("", None),
        (None, None),
    ],
)
def test_bucket_of_host(host: str | None, bucket: str | None) -> None:
    domains = tuple(sorted({normal_domain(DOMAIN), OUTER_DOMAIN}, key=len, reverse=True))
    assert bucket_of_host(host, domains) == bucket


def test_bucket_of_host_without_domains_is_always_path_style() -> None:
    assert bucket_of_host("photos.s3.localhost:9000", ()) is None


@pytest.mark.parametrize(
    "domain", ["", ".", "s3.localhost:9000", "http://s3.localhost", "s3 .localhost", "-s3.test"]
)
def test_normal_domain_refuses_what_is_not_a_host_name(domain: str) -> None:
    with pytest.raises(InvalidArgument, match="not a domain name"):
        normal_domain(domain)


# -- a live server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data: Path = tmp_path_factory.mktemp("addressing")
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    args = ("--s3-domain", DOMAIN, "--s3-domain", OUTER_DOMAIN)
    with ServeProcess(data / "store", environment, *args) as process:
        yield process


def _port(server: ServeProcess) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def _client(
    server: ServeProcess,
    *,
    style: str = "virtual",
    domain: str = DOMAIN,
    sent: list[str] | None = None,
    **config: Any,
) -> Any:
    """A boto3 client for ``http://<domain>:PORT``, connecting to 127.0.0.1 (see the
    module docstring); the URLs it sends are appended to ``sent``."""
    port = _port(server)
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{domain}:{port}",
        region_name=REGION,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=Config(
            s3={"addressing_style": style},
            proxies={"http": f"http://127.0.0.1:{port}"},
            retries={"max_attempts": 1},
            **config,
        ),
    )
    if sent is not None:

        def record(request: Any, **kwargs: Any) -> None:
            sent.append(request.url)

        client.meta.events.register("before-send.s3", record)
    return client


@pytest.fixture
def bucket() -> str:
    return f"virtual-{next(bucket_numbers)}"


def _hosts_and_paths(urls: list[str]) -> set[tuple[str, str]]:
    return {(urlsplit(url).netloc, urlsplit(url).path) for url in urls}


@pytest.mark.slow
@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_virtual_hosted_requests_address_the_bucket_by_host(
    server: ServeProcess, bucket: str, signature_version: str
) -> None:
    sent: list[str] = []
    s3 = _client(server, sent=sent, signature_version=signature_version)
    key = "dir/a b+c ü.txt"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=b"virtually hosted")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"virtually hosted"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 16
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket, Prefix="dir/")["Contents"]] == [key]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    # Every request named the bucket in its Host and not in its path.
    host = f"{bucket}.{DOMAIN}:{_port(server)}"
    hosts_and_paths = _hosts_and_paths(sent)
    assert {netloc for netloc, _ in hosts_and_paths} == {host}
    assert {path for _, path in hosts_and_paths} == {"/", "/dir/a%20b%2Bc%20%C3%BC.txt"}
    # botocore sends GetBucketLocation path-style whatever it is told; on the
    # domain's own host that is a path-style request, and answers as one.
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    assert urlsplit(sent[-1]).netloc == f"{DOMAIN}:{_port(server)}"
    # The same object, path-style, straight to 127.0.0.1.
    plain = make_client(server.url)
    assert plain.get_object(Bucket=bucket, Key=key)["Body"].read() == b"virtually hosted"
    s3.delete_object(Bucket=bucket, Key=key)
    assert plain.list_object_versions(Bucket=bucket)["DeleteMarkers"][0]["Key"] == key


@pytest.mark.slow
def test_path_style_stays_valid_on_the_domain_and_on_the_address(
    server: ServeProcess, bucket: str
) -> None:
    sent: list[str] = []
    path_style = _client(server, style="path", sent=sent)
    path_style.create_bucket(Bucket=bucket)
    path_style.put_object(Bucket=bucket, Key="k", Body=b"path")
    # ListBuckets at Host s3.localhost: a domain of its own, not the bucket
    # "s3" under the shorter domain localhost.
    assert bucket in [b["Name"] for b in path_style.list_buckets()["Buckets"]]
    assert _hosts_and_paths(sent) >= {(f"{DOMAIN}:{_port(server)}", f"/{bucket}/k")}
    assert make_client(server.url).get_object(Bucket=bucket, Key="k")["Body"].read() == b"path"


@pytest.mark.slow
def test_the_longest_matching_domain_wins(server: ServeProcess, bucket: str) -> None:
    outer = _client(server, domain=OUTER_DOMAIN)
    outer.create_bucket(Bucket=bucket)
    outer.put_object(Bucket=bucket, Key="k", Body=b"outer")
    inner = _client(server)
    assert inner.get_object(Bucket=bucket, Key="k")["Body"].read() == b"outer"


@pytest.mark.slow
def test_a_missing_bucket_in_the_host_is_no_such_bucket(server: ServeProcess) -> None:
    s3 = _client(server)
    with pytest.raises(ClientError) as error:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert error_code(error) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert error_code(error) == ("NoSuchBucket", 404)


@pytest.mark.slow
@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_a_signature_for_one_bucket_does_not_open_another(
    server: ServeProcess, signature_version: str
) -> None:
    """Moving a signed request to another bucket's host must break the signature:
    SigV4 signs the Host header, SigV2 signs ``/bucket/key`` (the bucket taken from the host)."""
    owner = make_client(server.url)
    mine, other = f"virtual-{next(bucket_numbers)}", f"virtual-{next(bucket_numbers)}"
    for name in (mine, other):
        owner.create_bucket(Bucket=name)
        owner.put_object(Bucket=name, Key="k", Body=name.encode())
    s3 = _client(server, signature_version=signature_version)

    def move(request: Any, **kwargs: Any) -> None:
        # After signing: the URL, and the Host header botocore may have set.
        parts = urlsplit(request.url)
        moved = parts.netloc.replace(mine, other, 1)
        request.url = urlunsplit(parts._replace(netloc=moved))
        if "host" in request.headers:
            request.headers["host"] = moved

    s3.meta.events.register("before-send.s3.GetObject", move)
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=mine, Key="k")
    assert error_code(error) == ("SignatureDoesNotMatch", 403)


@pytest.mark.slow
@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_virtual_hosted_urls(
    server: ServeProcess, bucket: str, signature_version: str
) -> None:
    make_client(server.url).create_bucket(Bucket=bucket)
    make_client(server.url).put_object(Bucket=bucket, Key="shared file", Body=b"presigned")
    signer = _client(server, signature_version=signature_version)
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared file"}, ExpiresIn=60
    )
    assert urlsplit(url).netloc == f"{bucket}.{DOMAIN}:{_port(server)}"
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{_port(server)}"})
    )
    with opener.open(url, timeout=10) as response:
        assert response.read() == b"presigned"
    # The same URL for another bucket's object is refused.
    forged = url.replace(f"//{bucket}.", "//no-such-bucket-here.", 1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(forged, timeout=10)
    refused.value.close()
    assert refused.value.code == 403


@pytest.mark.slow
def test_aws_cli_with_virtual_addressing(server: ServeProcess, bucket: str, tmp_path: Path) -> None:
    make_client(server.url).create_bucket(Bucket=bucket)
    make_client(server.url).put_object(Bucket=bucket, Key="dir/a b", Body=b"cli")
    config = tmp_path / "config"
    config.write_text("[default]\ns3 =\n    addressing_style = virtual\n")
    port = _port(server)
    environment = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in {"no_proxy", "http_proxy", "https_proxy", "aws_profile"}
    }
    environment.update(
        AWS_ACCESS_KEY_ID=ACCESS,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        HTTP_PROXY=f"http://127.0.0.1:{port}",
        PYTHONIOENCODING="utf-8",
    )
    endpoint = f"http://{DOMAIN}:{port}"
    command = ["s3", "ls", f"s3://{bucket}/", "--recursive"]
    completed = subprocess.run(
        [sys.executable, "-m", "awscli", "--debug", "--endpoint-url", endpoint, *command],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.splitlines()[0].split(maxsplit=3)[3] == "dir/a b"
    assert f"http://{bucket}.{DOMAIN}:{port}/" in completed.stderr  # the CLI's own debug log


@pytest.mark.slow
def test_a_virtual_hosted_key_under_the_servers_own_prefix_is_an_object(
    server: ServeProcess, bucket: str
) -> None:
    # Path-style, /_tier0/... is the server's own API; in a bucket's Host the
    # whole path is a key, even one that starts with _tier0/.
    s3 = _client(server)
    s3.create_bucket(Bucket=bucket)
    for key in ("_tier0/health", "_tier0/sql"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="_tier0/")["Contents"]
    assert [o["Key"] for o in listed] == ["_tier0/health", "_tier0/sql"]
    # The server's own route is still there, path-style.
    with urllib.request.urlopen(f"{server.url}/_tier0/health", timeout=10) as response:
        assert response.status == 200
