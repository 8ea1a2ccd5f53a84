"""Two ``tier0 serve`` gateways over one PostgreSQL and one chunk store act as one S3 service.

The chunks live in an S3 bucket on a third tier0 instance, or (the second
variant) in a directory both gateways share. Everything goes through boto3,
raw HTTP and the ``tier0`` command, as an operator's processes would; each
test ends with ``tier0 fsck --deep`` finding nothing wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import itertools
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.pgcluster import PostgresCluster
from tests.protocols.s3.live import ACCESS, REGION, SECRET, error_code, make_client
from tests.server.test_serve import ServeProcess, clean_environment, tier0_executable
from tests.store.test_chunks_s3 import (
    BUCKET,
    ChunkStore,
    _chunks_cut_before_the_stream_pauses,
    running_chunk_store,
)
from tests.store.test_store import _random
from tier0.store import iter_chunks

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: The GC grace of the race test: long enough for a `tier0 gc` process to
#: start and finish while the chunks a write touched are still fresh.
GRACE_S = 8.0
MIB = 1024 * 1024

_bucket_numbers = itertools.count(1)


@dataclass
class Cluster:
    """Gateways A and B, their data directories, and what they share."""

    kind: str  # "s3" or "shared-directory"
    meta: str
    chunks: str
    chunk_store: ChunkStore | None
    environment: dict[str, str]
    data_a: Path
    data_b: Path
    url_a: str
    url_b: str
    a: Any
    b: Any

    def bucket(self) -> str:
        """A fresh bucket, made through A."""
        name = f"scale-{next(_bucket_numbers)}"
        self.a.create_bucket(Bucket=name)
        return name

    def tier0(
        self, data: Path, *args: str, environment: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [tier0_executable(), "--data", str(data), *args],
            env=environment or self.environment,
            capture_output=True,
            timeout=120,
        )

    def assert_consistent(self) -> None:
        """``tier0 fsck --deep`` through either gateway's data directory finds no problem."""
        for data in (self.data_a, self.data_b):
            result = self.tier0(data, "fsck", "--deep")
            output = result.stdout.decode() + result.stderr.decode()
            assert result.returncode == 0, output
            assert "fsck: ok" in output


@pytest.fixture(scope="module", params=["s3", "shared-directory"])
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_cluster: PostgresCluster,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp(f"scaleout-{request.param}")
    database = f"scaleout_{request.param.replace('-', '_')}"
    meta = postgres_cluster.create_database(database)
    try:
        with contextlib.ExitStack() as stack:
            environment = clean_environment(
                TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET, TIER0_META=meta
            )
            store = None
            if request.param == "s3":
                store = stack.enter_context(running_chunk_store(root / "chunk-store"))
                chunks = f"s3://{BUCKET}/scaleout"
                environment.update(
                    store.environment(), TIER0_CHUNKS=chunks, TIER0_CHUNKS_ENDPOINT=store.url
                )
            else:
                chunks = str(root / "shared-chunks")
                environment["TIER0_CHUNKS"] = chunks
            gateway_a = stack.enter_context(ServeProcess(root / "a", environment))
            gateway_b = stack.enter_context(ServeProcess(root / "b", environment))
            yield Cluster(
                kind=request.param,
                meta=meta,
                chunks=chunks,
                chunk_store=store,
                environment=environment,
                data_a=root / "a",
                data_b=root / "b",
                url_a=gateway_a.url,
                url_b=gateway_b.url,
                a=make_client(gateway_a.url),
                b=make_client(gateway_b.url),
            )
    finally:
        postgres_cluster.drop_database(database)


def test_a_write_through_one_gateway_is_listed_read_and_deleted_through_the_other(
    cluster: Cluster,
) -> None:
    bucket = cluster.bucket()
    bodies = {"big.bin": _random(3 * MIB + 5, seed=1), "small.txt": b"hello from A"}
    for key, body in bodies.items():
        cluster.a.put_object(Bucket=bucket, Key=key, Body=body)

    listed = cluster.b.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(entry["Key"], entry["Size"]) for entry in listed] == [
        ("big.bin", len(bodies["big.bin"])),
        ("small.txt", len(bodies["small.txt"])),
    ]
    for key, body in bodies.items():
        got = cluster.b.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body
        assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'

    cluster.b.delete_object(Bucket=bucket, Key="big.bin")
    with pytest.raises(ClientError) as gone:
        cluster.a.get_object(Bucket=bucket, Key="big.bin")
    assert error_code(gone) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as gone:
        cluster.a.head_object(Bucket=bucket, Key="big.bin")
    assert error_code(gone)[1] == 404
    assert [e["Key"] for e in cluster.a.list_objects_v2(Bucket=bucket)["Contents"]] == ["small.txt"]

    # And the other way round.
    body = _random(2 * MIB, seed=2)
    cluster.b.put_object(Bucket=bucket, Key="from-b", Body=body)
    assert cluster.a.get_object(Bucket=bucket, Key="from-b")["Body"].read() == body
    cluster.assert_consistent()


def test_an_object_of_20_mib_written_through_a_is_range_read_through_b(
    cluster: Cluster,
) -> None:
    bucket = cluster.bucket()
    body = _random(20 * MIB, seed=3)
    cluster.a.put_object(Bucket=bucket, Key="big", Body=body)
    size = len(body)
    for header, first, last in [
        ("bytes=0-99", 0, 99),
        (f"bytes={5 * MIB - 10}-{5 * MIB + 9}", 5 * MIB - 10, 5 * MIB + 9),
        (f"bytes={3 * MIB}-{17 * MIB - 1}", 3 * MIB, 17 * MIB - 1),  # many chunks
        ("bytes=-1000", size - 1000, size - 1),
        (f"bytes={19 * MIB}-", 19 * MIB, size - 1),
    ]:
        got = cluster.b.get_object(Bucket=bucket, Key="big", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert got["Body"].read() == body[first : last + 1], header
    assert cluster.b.get_object(Bucket=bucket, Key="big")["Body"].read() == body
    cluster.assert_consistent()


def test_a_bucket_made_through_a_is_there_for_b_at_once(cluster: Cluster) -> None:
    bucket = cluster.bucket()
    cluster.b.head_bucket(Bucket=bucket)
    assert bucket in [entry["Name"] for entry in cluster.b.list_buckets()["Buckets"]]
    cluster.b.put_object(Bucket=bucket, Key="k", Body=b"through B")
    assert cluster.a.get_object(Bucket=bucket, Key="k")["Body"].read() == b"through B"
    cluster.b.delete_object(Bucket=bucket, Key="k")
    cluster.b.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as gone:
        cluster.a.head_bucket(Bucket=bucket)
    assert error_code(gone)[1] == 404
    with pytest.raises(ClientError) as gone:
        cluster.a.put_object(Bucket=bucket, Key="k", Body=b"too late")
    assert error_code(gone) == ("NoSuchBucket", 404)


def test_gc_through_a_spares_the_chunks_a_write_through_b_is_about_to_reference(
    cluster: Cluster,
) -> None:
    # B receives an upload whose first 12 MiB are the bytes of an object
    # deleted long enough ago for the GC to condemn its chunks; B dedups
    # against them (touching them) and waits for the rest of the body.
    # Meanwhile `tier0 gc`, as A's data directory configures it, runs: it must
    # keep exactly the touched chunks and reclaim the others.
    bucket = cluster.bucket()
    old = _random(12 * MIB, seed=4)
    tail = _random(MIB, seed=5)
    blocks = [old[i : i + MIB] for i in range(0, len(old), MIB)]
    expected_touched = _chunks_cut_before_the_stream_pauses(blocks)
    chunk_count = len(list(iter_chunks([old])))
    cluster.a.put_object(Bucket=bucket, Key="old", Body=old)
    cluster.a.delete_object(Bucket=bucket, Key="old")
    time.sleep(GRACE_S + 0.5)

    started_s = time.time()
    release = threading.Event()
    answer: list[tuple[int, bytes]] = []
    upload = threading.Thread(
        target=lambda: answer.append(
            _slow_put(cluster.url_b, bucket, "new", blocks, release=release, tail=tail)
        )
    )
    upload.start()
    try:
        deadline = time.monotonic() + 30
        while _touched_since(cluster, started_s) < expected_touched:
            assert time.monotonic() < deadline, "B never touched the chunks it dedups against"
            time.sleep(0.05)
        time.sleep(0.5)  # a touch still on its way would be counted by the GC, not here
        touched = _touched_since(cluster, started_s)
        result = cluster.tier0(cluster.data_a, "gc", "--grace-s", str(GRACE_S))
    finally:
        release.set()
        upload.join(60)
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    found = re.search(r"deleted (\d+) chunks .* kept (\d+) chunks in use", output)
    assert found is not None, output
    deleted, kept = int(found[1]), int(found[2])
    assert kept == touched
    assert deleted >= chunk_count - touched  # and chunks earlier tests let go
    assert answer and answer[0][0] == 200, answer
    assert cluster.a.get_object(Bucket=bucket, Key="new")["Body"].read() == old + tail
    cluster.assert_consistent()


def test_the_tier0_command_reaches_the_shared_store_with_its_options(
    cluster: Cluster, tmp_path: Path
) -> None:
    bucket = cluster.bucket()
    body = _random(MIB + 3, seed=6)
    cluster.a.put_object(Bucket=bucket, Key="k", Body=body)
    options = ["--meta", cluster.meta, "--chunks", cluster.chunks]
    if cluster.chunk_store is not None:
        options += ["--chunks-endpoint", cluster.chunk_store.url]
    # Only the S3 store's credentials come from the environment.
    environment = clean_environment(
        **(cluster.chunk_store.environment() if cluster.chunk_store else {})
    )
    data = tmp_path / "c"
    result = cluster.tier0(
        data, *options, "get", f"tier0://{bucket}/k", "-", environment=environment
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == body
    # The data directory remembers where the metadata and the chunks are.
    result = cluster.tier0(data, "get", f"tier0://{bucket}/k", "-", environment=environment)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == body


def _slow_put(
    url: str, bucket: str, key: str, blocks: list[bytes], *, release: threading.Event, tail: bytes
) -> tuple[int, bytes]:
    """PUT ``blocks`` then, once ``release`` is set, ``tail``: one upload that
    pauses midway. Signed by botocore with an unsigned payload, so that the
    body can stream."""
    parts = urlsplit(url)
    length = sum(len(block) for block in blocks) + len(tail)
    request = AWSRequest(
        method="PUT", url=f"{url}/{bucket}/{key}", headers={"Content-Length": str(length)}
    )
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", REGION).add_auth(request)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    try:
        connection.putrequest("PUT", f"/{bucket}/{key}", skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", parts.netloc)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        for block in blocks:
            connection.send(block)
        release.wait(60)
        connection.send(tail)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _touched_since(cluster: Cluster, started_s: float) -> int:
    """How many chunks were written or touched since ``started_s``, as the store shows it."""
    if cluster.chunk_store is not None:
        # One lease per use, named by its time (S3ChunkBackend's layout).
        keys = []
        client = cluster.chunk_store.client
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="scaleout/leases/"
        ):
            keys += [entry["Key"] for entry in page.get("Contents", [])]
        stamps = [int(key.rsplit("/", 1)[1].split(".")[0]) for key in keys]
        return sum(1 for stamp in stamps if stamp >= started_s * 1e9)
    # A touch stamps the chunk file's modification time.
    root = Path(cluster.chunks)
    return sum(
        1 for entry in root.glob("[0-9a-f][0-9a-f]/*") if os.stat(entry).st_mtime >= started_s
    )
