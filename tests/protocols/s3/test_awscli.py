"""The AWS CLI (``python -m awscli s3 ...``) against a live ``tier0 serve``, over HTTP and HTTPS.

Each test runs once against a plain HTTP server and once against an HTTPS one
(a self-signed certificate, trusted through ``AWS_CA_BUNDLE``): over HTTPS
botocore sends its CRC32 checksums as ``aws-chunked`` trailers, over HTTP as
headers (../shared/notes/s3-clients.md), so the two runs take different
paths through the gateway. A config file in a temporary ``AWS_CONFIG_FILE``
sets the multipart threshold and part size to S3's 5 MiB minimum, so that a
20 MiB file goes up in four parts and comes down in ranged GETs.

What the CLI did is checked with boto3 against the same server, and the
CLI's own output (one ``upload:``/``download:``/``delete:`` line per file it
transferred) is checked for what it transferred, not only that it exited 0.
The last test drives boto3 itself with its default settings, over both.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import random
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.protocols.s3.live import ACCESS, REGION, SECRET, bucket_numbers, error_code
from tests.server.test_serve import ServeProcess, _self_signed, clean_environment

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
PART_BYTES = 5 * MiB
CLI_TIMEOUT_S = 120

# The CLI's s3 settings: S3's smallest part size, so that multipart starts at 5 MiB,
# and few threads, so that the two shared cores are not swamped.
AWS_CONFIG = f"""\
[default]
region = {REGION}
s3 =
    multipart_threshold = {PART_BYTES}
    multipart_chunksize = {PART_BYTES}
    max_concurrent_requests = 4
"""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A running server, the CLI's environment for it, and a boto3 client for checking."""

    url: str
    environment: dict[str, str]
    s3: Any

    def aws(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``aws ARGS --endpoint-url URL``; with ``check``, a non-zero exit fails the test."""
        done = subprocess.run(
            [sys.executable, "-m", "awscli", *args, "--endpoint-url", self.url],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        if check:
            assert done.returncode == 0, f"aws {' '.join(args)}: {done.stdout}{done.stderr}"
        return done


def _client(url: str, certfile: Path | None) -> Any:
    """boto3 with its default settings (checksums included), path-style, no retries."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        verify=str(certfile) if certfile else None,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def _cli_environment(directory: Path, certfile: Path | None) -> dict[str, str]:
    """The CLI's environment: these keys and this config only, nothing from the user's ~/.aws."""
    config = directory / "aws-config"
    config.write_text(AWS_CONFIG)
    environment = {
        name: value
        for name, value in clean_environment().items()
        if not name.startswith("AWS_") and name != "HOME"
    }
    environment.update(
        HOME=str(directory),
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(directory / "no-credentials"),
        AWS_ACCESS_KEY_ID=ACCESS,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION=REGION,
        AWS_PAGER="",
    )
    if certfile is not None:
        environment["AWS_CA_BUNDLE"] = str(certfile)
    return environment


@pytest.fixture(scope="module", params=["http", "https"])
def endpoint(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    directory = tmp_path_factory.mktemp(f"awscli-{request.param}")
    args: tuple[str, ...] = ()
    certfile = None
    if request.param == "https":
        certfile, keyfile = _self_signed(directory)
        args = ("--certfile", str(certfile), "--keyfile", str(keyfile))
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    with ServeProcess(directory / "store", environment, *args) as server:
        assert server.url.startswith(f"{request.param}://")
        yield Endpoint(
            server.url, _cli_environment(directory, certfile), _client(server.url, certfile)
        )
        output = "".join(server.stdout + server.stderr)
    assert "Traceback" not in output, output


@pytest.fixture
def cli_bucket(endpoint: Endpoint) -> str:
    """A fresh bucket, made by the CLI (``aws s3 mb``)."""
    name = f"cli-bucket-{next(bucket_numbers)}"
    done = endpoint.aws("s3", "mb", f"s3://{name}")
    assert done.stdout.strip() == f"make_bucket: {name}"
    endpoint.s3.head_bucket(Bucket=name)
    return name


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def _composite_crc32(data: bytes, part_bytes: int) -> str:
    """S3's COMPOSITE CRC32 of a multipart object: the CRC32 of the parts' CRC32s, then -N."""
    parts = [data[start : start + part_bytes] for start in range(0, len(data), part_bytes)]
    joined = b"".join(_crc32(part) for part in parts)
    return f"{base64.b64encode(_crc32(joined)).decode()}-{len(parts)}"


def _md5s_etag(data: bytes, part_bytes: int) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' MD5s, then -N."""
    parts = [data[start : start + part_bytes] for start in range(0, len(data), part_bytes)]
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def _keys(s3: Any, bucket: str) -> dict[str, int]:
    """Every key in ``bucket`` with its size, across pages."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({entry["Key"]: entry["Size"] for entry in page.get("Contents", [])})
    return found


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path (with /), with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _transferred(output: str, verb: str) -> list[str]:
    """The destinations of the CLI's ``verb:`` lines (``upload: a to s3://b/k`` -> ``s3://b/k``);
    local paths, which the CLI prints relative to its working directory (ours), made absolute."""
    found = [
        line.rsplit(" to ", 1)[1] if " to " in line else line.split(": ", 1)[1]
        for line in output.splitlines()
        if line.startswith(f"{verb}: ")
    ]
    return sorted(name if name.startswith("s3://") else os.path.abspath(name) for name in found)


# -- cp ----------------------------------------------------------------------------------------


def test_cp_up_and_down_small_and_multipart_sized_files(
    endpoint: Endpoint, cli_bucket: str, tmp_path: Path
) -> None:
    small = _data(1000, 1)
    big = _data(20 * MiB, 2)
    (tmp_path / "small.txt").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)

    there = f"s3://{cli_bucket}"
    up = endpoint.aws(
        "s3", "cp", str(tmp_path / "small.txt"), f"{there}/docs/small.txt", "--no-progress"
    )
    assert _transferred(up.stdout, "upload") == [f"{there}/docs/small.txt"]
    up = endpoint.aws(
        "s3", "cp", str(tmp_path / "big.bin"), f"{there}/data/big.bin", "--no-progress"
    )
    assert _transferred(up.stdout, "upload") == [f"{there}/data/big.bin"]

    # The CLI's checksums arrived (as headers over HTTP, as trailers over HTTPS) and were kept:
    # CRC32 of the whole small file, and the composite of the big file's four 5 MiB parts.
    head = endpoint.s3.head_object(Bucket=cli_bucket, Key="docs/small.txt", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(small)
    assert head["ChecksumCRC32"] == base64.b64encode(_crc32(small)).decode()
    assert head["ContentType"] == "text/plain"  # guessed by the CLI from the file name
    head = endpoint.s3.head_object(Bucket=cli_bucket, Key="data/big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(big)
    assert head["ETag"] == _md5s_etag(big, PART_BYTES)
    assert head["ChecksumCRC32"] == _composite_crc32(big, PART_BYTES)

    down = endpoint.aws(
        "s3", "cp", f"{there}/data/big.bin", str(tmp_path / "big.copy"), "--no-progress"
    )
    assert _transferred(down.stdout, "download") == [str(tmp_path / "big.copy")]
    assert (tmp_path / "big.copy").read_bytes() == big
    endpoint.aws(
        "s3", "cp", f"{there}/docs/small.txt", str(tmp_path / "small.copy"), "--no-progress"
    )
    assert (tmp_path / "small.copy").read_bytes() == small

    # A copy inside the store (CopyObject for the small one) and a download to stdout.
    endpoint.aws("s3", "cp", f"{there}/docs/small.txt", f"{there}/docs/again.txt")
    command = ["s3", "cp", f"{there}/docs/again.txt", "-", "--endpoint-url", endpoint.url]
    shown = subprocess.run(
        [sys.executable, "-m", "awscli", *command],
        env=endpoint.environment,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    )
    assert shown.stdout == small
    copied = endpoint.s3.head_object(Bucket=cli_bucket, Key="docs/again.txt")
    assert copied["ETag"] == f'"{hashlib.md5(small).hexdigest()}"'


def test_cp_of_a_missing_object_fails_with_its_status(
    endpoint: Endpoint, cli_bucket: str, tmp_path: Path
) -> None:
    done = endpoint.aws("s3", "cp", f"s3://{cli_bucket}/nothing", str(tmp_path / "x"), check=False)
    assert done.returncode != 0
    assert "404" in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


# -- sync --------------------------------------------------------------------------------------

TREE = {
    "a.txt": b"alpha\n",
    "dir/b.bin": _data(70_000, 3),
    "dir/sub/c.txt": b"gamma " * 1000,
    "dir/ünï code+plus %.txt": b"odd names go through the CLI's encoding too",
    "empty": b"",
}


def test_sync_up_and_down(endpoint: Endpoint, cli_bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    _write_tree(local, TREE)
    target = f"s3://{cli_bucket}/tree"

    first = endpoint.aws("s3", "sync", str(local), target, "--no-progress")
    assert _transferred(first.stdout, "upload") == sorted(f"{target}/{name}" for name in TREE)
    assert _keys(endpoint.s3, cli_bucket) == {f"tree/{n}": len(d) for n, d in TREE.items()}
    for name, data in TREE.items():
        got = endpoint.s3.get_object(Bucket=cli_bucket, Key=f"tree/{name}")["Body"].read()
        assert got == data, name

    # Nothing changed: nothing is sent.
    again = endpoint.aws("s3", "sync", str(local), target, "--no-progress")
    assert again.stdout.strip() == ""

    # One file changed (its size too, so the CLI cannot miss it): only that one is sent.
    changed = b"gamma, rewritten\n"
    (local / "dir/sub/c.txt").write_bytes(changed)
    resent = endpoint.aws("s3", "sync", str(local), target, "--no-progress")
    assert _transferred(resent.stdout, "upload") == [f"{target}/dir/sub/c.txt"]
    got = endpoint.s3.get_object(Bucket=cli_bucket, Key="tree/dir/sub/c.txt")["Body"].read()
    assert got == changed

    # A file removed here is removed there with --delete, and only then.
    (local / "a.txt").unlink()
    kept = endpoint.aws("s3", "sync", str(local), target, "--no-progress")
    assert kept.stdout.strip() == ""
    assert "tree/a.txt" in _keys(endpoint.s3, cli_bucket)
    deleted = endpoint.aws("s3", "sync", str(local), target, "--delete", "--no-progress")
    assert _transferred(deleted.stdout, "delete") == [f"{target}/a.txt"]
    expected = {**TREE, "dir/sub/c.txt": changed}
    del expected["a.txt"]
    assert _keys(endpoint.s3, cli_bucket) == {f"tree/{n}": len(d) for n, d in expected.items()}

    # Down into an empty directory: the same tree; again: nothing; --delete removes extras.
    copy = tmp_path / "copy"
    down = endpoint.aws("s3", "sync", target, str(copy), "--no-progress")
    assert len(_transferred(down.stdout, "download")) == len(expected)
    assert _tree(copy) == expected
    assert endpoint.aws("s3", "sync", target, str(copy), "--no-progress").stdout.strip() == ""
    (copy / "stray.txt").write_bytes(b"not in the bucket")
    pruned = endpoint.aws("s3", "sync", target, str(copy), "--delete", "--no-progress")
    assert _transferred(pruned.stdout, "delete") == [str(copy / "stray.txt")]
    assert _tree(copy) == expected


# -- ls ----------------------------------------------------------------------------------------


def test_ls_buckets_prefixes_and_recursive_human_readable(
    endpoint: Endpoint, cli_bucket: str
) -> None:
    sizes = {"top.txt": 10, "logs/2024/a.log": 2048, "logs/2024/b.log": 3 * MiB, "logs/c.log": 1}
    for key, size in sizes.items():
        endpoint.s3.put_object(Bucket=cli_bucket, Key=key, Body=b"x" * size)

    buckets = endpoint.aws("s3", "ls").stdout.splitlines()
    assert any(line.split()[-1] == cli_bucket for line in buckets), buckets

    top = endpoint.aws("s3", "ls", f"s3://{cli_bucket}/").stdout.splitlines()
    assert [line.split() for line in top if "PRE" in line] == [["PRE", "logs/"]]
    files = [line.split() for line in top if "PRE" not in line]
    assert [(f[-2], f[-1]) for f in files] == [("10", "top.txt")]

    inner = endpoint.aws("s3", "ls", f"s3://{cli_bucket}/logs/").stdout.splitlines()
    assert [line.split()[-1] for line in inner] == ["2024/", "c.log"]

    listing = endpoint.aws(
        "s3", "ls", f"s3://{cli_bucket}", "--recursive", "--human-readable", "--summarize"
    ).stdout
    rows = [line.split() for line in listing.splitlines() if line[:1].isdigit()]
    # date, time, size, unit, key: in UTF-8 key order, sizes in human units.
    assert [(row[2], row[3], row[4]) for row in rows] == [
        ("2.0", "KiB", "logs/2024/a.log"),
        ("3.0", "MiB", "logs/2024/b.log"),
        ("1", "Byte", "logs/c.log"),
        ("10", "Bytes", "top.txt"),
    ]
    assert "Total Objects: 4" in listing
    assert "Total Size: 3.0 MiB" in listing


# -- rm, mb, rb --------------------------------------------------------------------------------


def test_rm_recursive_then_rb(endpoint: Endpoint, cli_bucket: str) -> None:
    keys = ["a", "b/c", "b/d/e", "f g"]
    for key in keys:
        endpoint.s3.put_object(Bucket=cli_bucket, Key=key, Body=key.encode())

    refused = endpoint.aws("s3", "rb", f"s3://{cli_bucket}", check=False)
    assert refused.returncode != 0
    assert "BucketNotEmpty" in refused.stderr, refused.stderr
    endpoint.s3.head_bucket(Bucket=cli_bucket)

    some = endpoint.aws("s3", "rm", f"s3://{cli_bucket}/b/", "--recursive")
    there = f"s3://{cli_bucket}"
    assert _transferred(some.stdout, "delete") == [f"{there}/b/c", f"{there}/b/d/e"]
    assert sorted(_keys(endpoint.s3, cli_bucket)) == ["a", "f g"]
    rest = endpoint.aws("s3", "rm", f"s3://{cli_bucket}", "--recursive")
    assert _transferred(rest.stdout, "delete") == [f"{there}/a", f"{there}/f g"]
    assert _keys(endpoint.s3, cli_bucket) == {}

    removed = endpoint.aws("s3", "rb", f"s3://{cli_bucket}")
    assert removed.stdout.strip() == f"remove_bucket: {cli_bucket}"
    with pytest.raises(ClientError) as caught:
        endpoint.s3.head_bucket(Bucket=cli_bucket)
    assert error_code(caught)[1] == 404


def test_mb_of_an_existing_bucket_fails_and_rb_force_empties_first(
    endpoint: Endpoint, cli_bucket: str
) -> None:
    again = endpoint.aws("s3", "mb", f"s3://{cli_bucket}", check=False)
    assert again.returncode != 0
    assert "BucketAlreadyOwnedByYou" in again.stderr, again.stderr

    endpoint.s3.put_object(Bucket=cli_bucket, Key="left/over", Body=b"x")
    forced = endpoint.aws("s3", "rb", f"s3://{cli_bucket}", "--force")
    assert f"delete: s3://{cli_bucket}/left/over" in forced.stdout
    assert f"remove_bucket: {cli_bucket}" in forced.stdout
    names = [entry["Name"] for entry in endpoint.s3.list_buckets()["Buckets"]]
    assert cli_bucket not in names


# -- boto3, default settings -------------------------------------------------------------------


def test_boto3_default_checksums_go_as_trailers_over_https_headers_over_http_and_are_kept(
    endpoint: Endpoint, cli_bucket: str
) -> None:
    s3 = endpoint.s3
    sent: list[dict[str, str]] = []

    def keep_headers(request: Any, **_: Any) -> None:
        headers = {
            name.lower(): value.decode() if isinstance(value, bytes) else value
            for name, value in request.headers.items()
        }
        sent.append({"method": request.method, **headers})

    s3.meta.events.register("before-send.s3", keep_headers)
    try:
        small = os.urandom(300_000)
        s3.put_object(Bucket=cli_bucket, Key="small", Body=small)
        big = _data(2 * PART_BYTES + 1234, 4)
        config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
        s3.upload_fileobj(io.BytesIO(big), cli_bucket, "big", Config=config)
        small_got = s3.get_object(Bucket=cli_bucket, Key="small", ChecksumMode="ENABLED")
        big_got = s3.get_object(Bucket=cli_bucket, Key="big", ChecksumMode="ENABLED")
    finally:
        s3.meta.events.unregister("before-send.s3", keep_headers)

    # The PUT and the three UploadParts: over HTTPS each body went aws-chunked with its
    # CRC32 in a trailer; over HTTP whole, with its CRC32 in a header and its SHA-256 signed.
    bodies = [h for h in sent if h["method"] == "PUT"]
    assert len(bodies) == 4
    for headers in bodies:
        if endpoint.url.startswith("https://"):
            assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            assert "aws-chunked" in headers["content-encoding"]
            assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
            assert "x-amz-checksum-crc32" not in headers
        else:
            assert len(headers["x-amz-content-sha256"]) == 64
            assert "content-encoding" not in headers
            assert "x-amz-checksum-crc32" in headers

    # botocore checks a full-object checksum as it reads the body (and raises on a
    # mismatch); the composite one of a multipart object it leaves to the caller.
    assert small_got["ChecksumCRC32"] == base64.b64encode(_crc32(small)).decode()
    assert small_got["ChecksumType"] == "FULL_OBJECT"
    assert small_got["Body"].read() == small
    assert big_got["ChecksumCRC32"] == _composite_crc32(big, PART_BYTES)
    assert big_got["ChecksumType"] == "COMPOSITE"
    assert big_got["Body"].read() == big
