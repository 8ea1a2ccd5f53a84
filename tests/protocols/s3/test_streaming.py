"""GetObject's body streamed from the store behind a real ``tier0 serve``: chunks stored
raw are sent from their files (zero-copy), compressed ones as bytes, every chunk
checked before it is sent, and nothing left open after the response."""

from __future__ import annotations

import http.client
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError

from tests.server.test_serve import ServeProcess
from tier0.store._chunking import HEADER_BYTES

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def _chunk_files(server_data: Path) -> set[Path]:
    return {path for path in (server_data / "chunks").glob("??/*") if path.is_file()}


@pytest.fixture
def stored(s3: Any, bucket: str, server_data: Path) -> Iterator[tuple[str, bytes, list[Path]]]:
    """A 6 MiB object of random bytes (several raw chunks) and its chunk files."""
    data = os.urandom(6 * MiB + 11)
    before = _chunk_files(server_data)
    s3.put_object(Bucket=bucket, Key="large", Body=data)
    yield "large", data, sorted(_chunk_files(server_data) - before)


def test_get_returns_the_object_and_its_ranges(
    s3: Any, bucket: str, stored: tuple[str, bytes, list[Path]]
) -> None:
    key, data, files = stored
    assert len(files) >= 3
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    for first, last in [(0, 0), (1, MiB), (MiB - 3, 4 * MiB + 2), (5 * MiB, len(data) - 1)]:
        answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        assert answer["Body"].read() == data[first : last + 1]


def test_get_of_compressible_and_raw_chunks_together(s3: Any, bucket: str) -> None:
    # Compressed chunks go out as bytes, raw ones from their files: in order.
    text = b"".join(b"line %08d of a log that compresses well\n" % i for i in range(60_000))
    data = text + os.urandom(3 * MiB) + text[: MiB + 5]
    s3.put_object(Bucket=bucket, Key="mixed", Body=data)
    assert s3.get_object(Bucket=bucket, Key="mixed")["Body"].read() == data


def test_get_cuts_the_response_at_a_damaged_chunk_never_sending_its_bytes(
    s3: Any, bucket: str, stored: tuple[str, bytes, list[Path]]
) -> None:
    key, data, files = stored
    damaged = files[1]
    blob = damaged.read_bytes()
    flipped = bytearray(blob)
    flipped[HEADER_BYTES + len(blob) // 2] ^= 0x01
    damaged.write_bytes(bytes(flipped))
    try:
        received = b""
        with pytest.raises((BotoCoreError, http.client.HTTPException, ConnectionError)):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            while piece := body.read(64 * 1024):
                received += piece
        # What arrived is a prefix of the object: the damaged bytes never left.
        assert len(received) < len(data) and data.startswith(received)
    finally:
        damaged.write_bytes(blob)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_gets_finished_or_abandoned_leave_no_chunk_file_open(
    s3: Any, bucket: str, stored: tuple[str, bytes, list[Path]], server: ServeProcess
) -> None:
    key, data, _ = stored
    url = urllib.parse.urlsplit(
        s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    )
    pid = server.process.pid

    def get(abandon: bool) -> None:
        connection = http.client.HTTPConnection(url.hostname, url.port)
        connection.request("GET", f"{url.path}?{url.query}")
        response = connection.getresponse()
        if abandon:
            response.read(100_000)  # then hang up with chunks read ahead
        else:
            assert response.read() == data
        connection.close()

    get(abandon=False)
    before = _open_descriptors(pid)
    for number in range(16):
        get(abandon=number % 2 == 1)
    deadline = time.monotonic() + 10
    while (after := _open_descriptors(pid)) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after <= before
