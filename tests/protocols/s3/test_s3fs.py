"""fsspec's ``s3fs`` against a live ``tier0 serve``, and pandas and pyarrow reading through it.

s3fs drives the gateway through aiobotocore (botocore's request model and
checksums on aiohttp), with its own habits: directories inferred from
delimiter listings, ranged GETs for every read, multipart uploads from
``open(..., "wb")`` once a block fills, DeleteObjects for recursive removal.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import s3fs

from tests.protocols.s3.live import ACCESS, REGION, SECRET
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
PART_BYTES = 5 * MiB


def _options(url: str) -> dict[str, Any]:
    """What S3FileSystem (and pandas' ``storage_options``) need to reach the server."""
    return {
        "key": ACCESS,
        "secret": SECRET,
        "endpoint_url": url,
        "client_kwargs": {"region_name": REGION},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }


@pytest.fixture(scope="module")
def fs(server: ServeProcess) -> Iterator[s3fs.S3FileSystem]:
    # No instance cache and no listings cache: every call below asks the server.
    yield s3fs.S3FileSystem(
        **_options(server.url), skip_instance_cache=True, use_listings_cache=False
    )


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _md5s_etag(data: bytes, part_bytes: int) -> str:
    parts = [data[start : start + part_bytes] for start in range(0, len(data), part_bytes)]
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


TREE = {
    "a.txt": b"alpha\n",
    "dir/b.txt": b"bravo " * 2000,
    "dir/sub/c.bin": _data(100_000, 1),
    "dir/sub/d.txt": b"",
    "other/ünï code.txt": "ünï".encode(),
}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_put_ls_info_find_glob_get(
    fs: s3fs.S3FileSystem, s3: Any, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "up"
    _write_tree(local, TREE)
    fs.put(f"{local}/", f"{bucket}/tree/", recursive=True)
    stored = {
        entry["Key"]: entry["Size"]
        for entry in s3.list_objects_v2(Bucket=bucket, Prefix="tree/").get("Contents", [])
    }
    assert stored == {f"tree/{name}": len(data) for name, data in TREE.items()}

    root = f"{bucket}/tree"
    assert sorted(fs.ls(root, detail=False)) == [f"{root}/a.txt", f"{root}/dir", f"{root}/other"]
    listed = {entry["name"]: entry for entry in fs.ls(f"{root}/dir", detail=True)}
    assert {name: entry["type"] for name, entry in listed.items()} == {
        f"{root}/dir/b.txt": "file",
        f"{root}/dir/sub": "directory",
    }
    assert listed[f"{root}/dir/b.txt"]["size"] == len(TREE["dir/b.txt"])

    info = fs.info(f"{root}/dir/sub/c.bin")
    assert (info["type"], info["size"]) == ("file", 100_000)
    assert info["ETag"] == f'"{hashlib.md5(TREE["dir/sub/c.bin"]).hexdigest()}"'
    assert fs.info(f"{root}/dir/sub")["type"] == "directory"
    assert fs.exists(f"{root}/other/ünï code.txt")
    assert not fs.exists(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/missing")

    assert fs.find(root) == sorted(f"{root}/{name}" for name in TREE)
    assert fs.find(f"{root}/dir", maxdepth=1) == [f"{root}/dir/b.txt"]
    assert fs.glob(f"{root}/**/*.txt") == sorted(
        f"{root}/{name}" for name in TREE if name.endswith(".txt")
    )
    assert fs.glob(f"{root}/dir/*") == [f"{root}/dir/b.txt", f"{root}/dir/sub"]
    assert fs.du(root) == sum(len(data) for data in TREE.values())

    down = tmp_path / "down"
    fs.get(f"{root}/", f"{down}/", recursive=True)
    got = {
        path.relative_to(down).as_posix(): path.read_bytes()
        for path in down.rglob("*")
        if path.is_file()
    }
    assert got == TREE


def test_open_write_goes_multipart_and_reads_by_ranges(
    fs: s3fs.S3FileSystem, s3: Any, bucket: str
) -> None:
    data = _data(12 * MiB + 4321, 2)
    path = f"{bucket}/big.bin"
    with fs.open(path, "wb", block_size=PART_BYTES) as out:
        for start in range(0, len(data), MiB):
            out.write(data[start : start + MiB])
    # Each time its buffer reached a block, s3fs sent it as a part: 5 + 5 + the rest.
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ETag"] == _md5s_etag(data, PART_BYTES)
    assert head["ContentLength"] == len(data)

    with fs.open(path, "rb", block_size=MiB) as read:
        assert read.size == len(data)
        read.seek(7 * MiB + 3)
        assert read.read(1000) == data[7 * MiB + 3 : 7 * MiB + 1003]
        read.seek(-10, 2)
        assert read.read() == data[-10:]
        read.seek(0)
        assert read.read() == data

    assert fs.cat_file(path, start=5, end=10) == data[5:10]
    assert fs.cat_file(path, start=len(data) - 100) == data[-100:]
    assert fs.cat_file(path, start=-50) == data[-50:]
    ranges = [(0, 1), (MiB, MiB + 17), (len(data) - 3, len(data))]
    assert fs.cat_ranges([path] * 3, [s for s, _ in ranges], [e for _, e in ranges]) == [
        data[s:e] for s, e in ranges
    ]
    assert fs.cat(path) == data

    small = f"{bucket}/small.txt"
    with fs.open(small, "wb") as out:
        out.write(b"written whole, in one PUT")
    assert s3.get_object(Bucket=bucket, Key="small.txt")["Body"].read() == (
        b"written whole, in one PUT"
    )
    assert "-" not in s3.head_object(Bucket=bucket, Key="small.txt")["ETag"]
    fs.pipe_file(small, b"replaced")
    assert fs.cat_file(small) == b"replaced"


def test_rm_one_and_recursive(fs: s3fs.S3FileSystem, s3: Any, bucket: str) -> None:
    keys = ["keep.txt", "gone.txt", "dir/a", "dir/b/c", "dir/b/d"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    fs.rm(f"{bucket}/gone.txt")
    fs.rm(f"{bucket}/dir", recursive=True)
    left = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert left == ["keep.txt"]
    assert not fs.exists(f"{bucket}/dir")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{bucket}/gone.txt")


def test_pandas_and_pyarrow_read_parquet_through_s3fs(
    fs: s3fs.S3FileSystem, server: ServeProcess, bucket: str
) -> None:
    frame = pd.DataFrame(
        {
            "n": range(1000),
            "name": [f"row {i} ü" for i in range(1000)],
            "group": [["a", "b", "c"][i % 3] for i in range(1000)],
        }
    )
    url = f"s3://{bucket}/frames/table.parquet"
    frame.to_parquet(url, storage_options=_options(server.url), index=False)
    assert fs.info(url)["size"] > 0
    read = pd.read_parquet(url, storage_options=_options(server.url))
    pd.testing.assert_frame_equal(read, frame)

    # pyarrow with s3fs as its filesystem: a footer read, then ranged column reads.
    table = pq.read_table(f"{bucket}/frames/table.parquet", filesystem=fs, columns=["n", "group"])
    assert table.column("n").to_pylist() == list(range(1000))
    assert table.schema.names == ["n", "group"]

    # A partitioned dataset written and read back through the same filesystem.
    pq.write_to_dataset(
        pa.Table.from_pandas(frame, preserve_index=False),
        f"{bucket}/dataset",
        filesystem=fs,
        partition_cols=["group"],
    )
    assert sorted(fs.ls(f"{bucket}/dataset", detail=False)) == [
        f"{bucket}/dataset/group={g}" for g in "abc"
    ]
    dataset = ds.dataset(f"{bucket}/dataset", filesystem=fs, partitioning="hive")
    only_b = dataset.to_table(filter=ds.field("group") == "b").to_pandas()
    assert sorted(only_b["n"]) == [i for i in range(1000) if i % 3 == 1]

    # Bytes that are not parquet fail as pyarrow's error, not as an S3 one.
    fs.pipe_file(f"{bucket}/frames/bad.parquet", b"not parquet at all")
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(f"{bucket}/frames/bad.parquet", filesystem=fs)
