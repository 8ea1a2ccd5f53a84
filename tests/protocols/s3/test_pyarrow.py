"""pyarrow's own S3 filesystem (the AWS SDK for C++ inside pyarrow) against a live ``tier0 serve``.

It checks the root element of CompleteMultipartUploadResult, so a large
write is the multipart path end to end (../shared/notes/s3-clients.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.protocols.s3.live import ACCESS, REGION, SECRET
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def filesystem(server: ServeProcess) -> Any:
    return pafs.S3FileSystem(
        access_key=ACCESS,
        secret_key=SECRET,
        endpoint_override=urlsplit(server.url).netloc,
        scheme="http",
        region=REGION,
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
    )


def test_parquet_round_trip_listing_and_delete(filesystem: Any) -> None:
    filesystem.create_dir("pyarrow-tables")
    table = pa.table({"n": list(range(50_000)), "s": [f"row {i}" for i in range(50_000)]})
    pq.write_table(table, "pyarrow-tables/logs/2024/part-0.parquet", filesystem=filesystem)
    assert pq.read_table("pyarrow-tables/logs/2024/part-0.parquet", filesystem=filesystem).equals(
        table
    )
    found = filesystem.get_file_info(pafs.FileSelector("pyarrow-tables", recursive=True))
    assert {(info.path, info.type) for info in found} == {
        ("pyarrow-tables/logs", pafs.FileType.Directory),
        ("pyarrow-tables/logs/2024", pafs.FileType.Directory),
        ("pyarrow-tables/logs/2024/part-0.parquet", pafs.FileType.File),
    }
    filesystem.delete_dir("pyarrow-tables/logs")
    assert filesystem.get_file_info(pafs.FileSelector("pyarrow-tables", recursive=True)) == []
    filesystem.delete_dir("pyarrow-tables")


def test_a_large_stream_goes_multipart_and_reads_back_by_range(filesystem: Any, s3: Any) -> None:
    filesystem.create_dir("pyarrow-big")
    blocks = [bytes([i]) * MiB for i in range(12)]  # past pyarrow's first part
    with filesystem.open_output_stream("pyarrow-big/big.bin") as stream:
        for block in blocks:
            stream.write(block)
    assert filesystem.get_file_info("pyarrow-big/big.bin").size == 12 * MiB
    # Completed as a multipart upload: S3's md5-of-md5s-N ETag, N parts.
    etag = s3.head_object(Bucket="pyarrow-big", Key="big.bin")["ETag"].strip('"')
    assert int(etag.rpartition("-")[2]) >= 2
    with filesystem.open_input_file("pyarrow-big/big.bin") as file:
        file.seek(7 * MiB - 2)
        assert file.read(4) == bytes([6, 6, 7, 7])
