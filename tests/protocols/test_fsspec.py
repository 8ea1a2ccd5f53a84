"""The ``tier0://`` fsspec filesystem, through fsspec itself and the libraries that use it.

Most tests hand the filesystem the opened store of the ``t0`` fixture, on
each metadata backend (listing order and conditional writes live there);
the tests of the ``data=`` option check that stores opened that way are
shared and closed.
"""

from __future__ import annotations

import concurrent.futures
import errno
import gc
import hashlib
import os
import pathlib
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import weakref
from collections.abc import Iterator

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tier0
from tier0.protocols.fsspec import Tier0FileSystem
from tier0.protocols.fsspec._file import _Channel
from tier0.protocols.fsspec._paths import split_path, strip_protocol

MiB = 1024 * 1024


def _random(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def fs(t0: tier0.Tier0) -> Tier0FileSystem:
    """Over the store of the shared ``t0`` fixture: once per metadata backend."""
    filesystem = Tier0FileSystem(t0=t0, skip_instance_cache=True)
    filesystem.mkdir("bkt")
    return filesystem


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A data directory for ``data=``; its shared store is released after the test."""
    yield tmp_path / "shared"
    Tier0FileSystem.clear_instance_cache()
    gc.collect()


# -- paths -----------------------------------------------------------------------------------

_buckets = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True)
# A key segment: anything but "/" (empty segments have no fsspec path) and NUL.
_segments = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"), min_size=1
)


@given(
    bucket=_buckets,
    segments=st.lists(_segments, max_size=4),
    protocol=st.sampled_from(["", "tier0://", "tier0::"]),
    trailing_slash=st.booleans(),
)
def test_a_path_strips_and_splits_back_to_its_bucket_and_key(
    bucket: str, segments: list[str], protocol: str, trailing_slash: bool
) -> None:
    key = "/".join(segments)
    path = f"{protocol}{bucket}/{key}" + ("/" if trailing_slash else "")
    assert split_path(strip_protocol(path)) == (bucket, key)


# -- reading and writing ---------------------------------------------------------------------


def test_write_then_read_round_trips_across_blocks(fs: Tier0FileSystem) -> None:
    payload = _random(3 * MiB + 12345, seed=1)
    with fs.open("tier0://bkt/dir/blob.bin", "wb") as handle:
        for start in range(0, len(payload), 700_001):  # writes that straddle blocks
            handle.write(payload[start : start + 700_001])
    with fs.open("bkt/dir/blob.bin", "rb") as handle:
        assert handle.read() == payload
    assert fs.cat_file("bkt/dir/blob.bin") == payload
    assert fs.size("bkt/dir/blob.bin") == len(payload)
    fs.pipe_file("bkt/table.csv", b"a,b\n1,2\n")
    assert fs.info("bkt/table.csv")["content_type"] == "text/csv"
    with fs.open("bkt/notes", "wb", content_type="text/markdown") as handle:
        handle.write(b"# hi")
    assert fs.info("bkt/notes")["content_type"] == "text/markdown"


def test_text_mode_round_trips(fs: Tier0FileSystem) -> None:
    fs.write_text("bkt/hello.txt", "grüße\n", encoding="utf-8")
    assert fs.read_text("bkt/hello.txt", encoding="utf-8") == "grüße\n"
    assert fs.cat_file("bkt/hello.txt") == "grüße\n".encode()


@pytest.mark.parametrize(
    ("start", "end"),
    [(None, None), (0, 10), (5, None), (MiB - 3, MiB + 7), (-100, None), (-100, -10), (10, -10),
     (2 * MiB + 50, None), (10, 5), (None, 2 * MiB + 999)],
)  # fmt: skip
def test_cat_file_reads_ranges_like_slices(
    fs: Tier0FileSystem, start: int | None, end: int | None
) -> None:
    payload = _random(2 * MiB + 100, seed=2)
    fs.pipe_file("bkt/ranged", payload)
    assert fs.cat_file("bkt/ranged", start=start, end=end) == payload[start:end]


def test_open_for_reading_seeks_and_reads_ranges(fs: Tier0FileSystem) -> None:
    payload = _random(5 * MiB, seed=3)
    fs.pipe_file("bkt/seek", payload)
    with fs.open("bkt/seek", "rb", block_size=MiB) as handle:
        handle.seek(4 * MiB + 17)
        assert handle.read(100) == payload[4 * MiB + 17 : 4 * MiB + 117]
        handle.seek(-10, 2)
        assert handle.read() == payload[-10:]
        handle.seek(3)
        assert handle.read(5) == payload[3:8]


def test_reading_raises_estale_when_the_object_is_overwritten_while_open(
    fs: Tier0FileSystem,
) -> None:
    fs.pipe_file("bkt/moving", b"a" * 100)
    with fs.open("bkt/moving", "rb", cache_type="none") as handle:
        assert handle.read(10) == b"a" * 10
        fs.pipe_file("bkt/moving", b"b" * 100)
        with pytest.raises(OSError) as raised:
            handle.read(10)
    assert raised.value.errno == errno.ESTALE


def test_reading_a_versioned_object_keeps_the_version_opened(
    fs: Tier0FileSystem, t0: tier0.Tier0
) -> None:
    t0.set_versioning("bkt", "Enabled")
    fs.pipe_file("bkt/kept", b"old" * 50)
    with fs.open("bkt/kept", "rb", cache_type="none") as handle:
        assert handle.read(3) == b"old"
        fs.pipe_file("bkt/kept", b"new" * 50)
        assert handle.read() == (b"old" * 50)[3:]
    assert fs.cat_file("bkt/kept") == b"new" * 50


# -- listing ---------------------------------------------------------------------------------


def _tree(fs: Tier0FileSystem) -> None:
    for path in ["top.txt", "x/a.csv", "x/b.csv", "x/y/c.csv", "x/y/z/d.txt", "w/e.csv"]:
        fs.pipe_file(f"bkt/{path}", path.encode())


def test_ls_lists_files_and_directories_with_details(fs: Tier0FileSystem) -> None:
    _tree(fs)
    entries = {(e["name"], e["type"]) for e in fs.ls("tier0://bkt")}
    assert entries == {("bkt/top.txt", "file"), ("bkt/x", "directory"), ("bkt/w", "directory")}
    assert fs.ls("bkt/x", detail=False) == ["bkt/x/a.csv", "bkt/x/b.csv", "bkt/x/y"]
    [entry] = [e for e in fs.ls("bkt/x") if e["name"] == "bkt/x/a.csv"]
    head = fs.t0.head("bkt", "x/a.csv")
    assert entry["size"] == len(b"x/a.csv")
    assert entry["etag"] == head.etag
    assert entry["modified"] == head.modified
    assert entry["content_type"] == "text/csv"
    assert fs.ls("bkt/top.txt", detail=False) == ["bkt/top.txt"]  # a file lists itself
    fs.mkdir("other")
    assert fs.ls("", detail=False) == ["bkt", "other"]
    assert fs.ls("other") == []


def test_ls_of_a_missing_path_raises_file_not_found(fs: Tier0FileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        fs.ls("bkt/nothing")
    with pytest.raises(FileNotFoundError):
        fs.ls("nobucket")


@pytest.mark.slow
def test_ls_pages_through_more_than_a_page_of_directories(fs: Tier0FileSystem) -> None:
    # More children than one store page (1,000), all directories: every page
    # ends on a common prefix, which is where resuming is delicate.
    names = [f"d{i:04d}" for i in range(1_050)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # concurrent puts commit in groups
        list(pool.map(lambda name: fs.t0.put("bkt", f"many/{name}/leaf", b""), names))
    fs.t0.put("bkt", "many/zz-file", b"1")
    listed = fs.ls("bkt/many", detail=False)
    assert listed == [f"bkt/many/{name}" for name in names] + ["bkt/many/zz-file"]


def test_file_and_directory_may_share_a_name(fs: Tier0FileSystem) -> None:
    fs.pipe_file("bkt/a", b"file")
    fs.pipe_file("bkt/a/b", b"inside")
    assert fs.isfile("bkt/a") and fs.isdir("bkt/a")
    assert fs.info("bkt/a")["type"] == "file"
    assert fs.info("bkt/a/")["type"] == "directory"
    assert sorted((e["name"], e["type"]) for e in fs.ls("bkt")) == [
        ("bkt/a", "directory"),
        ("bkt/a", "file"),
    ]
    assert fs.ls("bkt/a", detail=False) == ["bkt/a/b"]
    assert fs.cat_file("bkt/a") == b"file"
    assert fs.find("bkt") == ["bkt/a", "bkt/a/b"]


def test_find_glob_and_walk_follow_nested_prefixes(fs: Tier0FileSystem) -> None:
    _tree(fs)
    assert fs.find("bkt/x") == ["bkt/x/a.csv", "bkt/x/b.csv", "bkt/x/y/c.csv", "bkt/x/y/z/d.txt"]
    assert fs.find("bkt/x", maxdepth=1) == ["bkt/x/a.csv", "bkt/x/b.csv"]
    assert fs.find("bkt/x", withdirs=True) == [
        "bkt/x", "bkt/x/a.csv", "bkt/x/b.csv", "bkt/x/y", "bkt/x/y/c.csv", "bkt/x/y/z",
        "bkt/x/y/z/d.txt",
    ]  # fmt: skip
    assert set(fs.find("", detail=True)) == {
        "bkt/top.txt", "bkt/x/a.csv", "bkt/x/b.csv", "bkt/x/y/c.csv", "bkt/x/y/z/d.txt",
        "bkt/w/e.csv",
    }  # fmt: skip
    assert fs.find("bkt/top.txt") == ["bkt/top.txt"]
    assert fs.find("bkt/nothing") == []
    assert fs.glob("tier0://bkt/**/*.csv") == [
        "bkt/w/e.csv", "bkt/x/a.csv", "bkt/x/b.csv", "bkt/x/y/c.csv",
    ]  # fmt: skip
    assert fs.glob("bkt/x/*") == ["bkt/x/a.csv", "bkt/x/b.csv", "bkt/x/y"]
    assert fs.glob("bkt/x/*.txt") == []
    walked = [(root, sorted(dirs), sorted(files)) for root, dirs, files in fs.walk("bkt/x")]
    assert walked == [
        ("bkt/x", ["y"], ["a.csv", "b.csv"]),
        ("bkt/x/y", ["z"], ["c.csv"]),
        ("bkt/x/y/z", [], ["d.txt"]),
    ]
    assert fs.du("bkt/x") == sum(
        len(p.encode()) for p in ["x/a.csv", "x/b.csv", "x/y/c.csv", "x/y/z/d.txt"]
    )


def test_folder_markers_are_directories_not_files(fs: Tier0FileSystem) -> None:
    fs.t0.put("bkt", "empty/", b"")  # what S3 consoles write for "create folder"
    assert fs.isdir("bkt/empty") and not fs.isfile("bkt/empty")
    assert fs.ls("bkt/empty") == []
    assert [(e["name"], e["type"]) for e in fs.ls("bkt")] == [("bkt/empty", "directory")]
    assert fs.find("bkt") == []
    fs.rmdir("bkt/empty")
    assert not fs.exists("bkt/empty")


def test_info_of_missing_paths_raises_file_not_found(fs: Tier0FileSystem) -> None:
    fs.pipe_file("bkt/dir/file", b"1")
    for missing in [
        "bkt/nothing",
        "bkt/dir/nothing",
        "bkt/dir/file/deeper",
        "nobucket/x",
        "nobucket",
    ]:
        with pytest.raises(FileNotFoundError):
            fs.info(missing)
        assert not fs.exists(missing)
        assert not fs.isfile(missing) and not fs.isdir(missing)
    assert fs.info("")["type"] == "directory"
    assert fs.info("bkt")["type"] == "directory"
    assert fs.exists("bkt/dir") and fs.exists("bkt/dir/file")


def test_wrong_kind_of_path_raises_the_posix_error(fs: Tier0FileSystem) -> None:
    fs.pipe_file("bkt/dir/file", b"1")
    with pytest.raises(IsADirectoryError):
        fs.open("bkt/dir", "rb")
    with pytest.raises(IsADirectoryError):
        fs.cat_file("bkt/dir")
    with pytest.raises(IsADirectoryError):
        fs.open("bkt", "wb")
    with pytest.raises(IsADirectoryError):
        fs.rm_file("bkt/dir")
    with pytest.raises(NotADirectoryError):
        fs.rmdir("bkt/dir/file")
    with pytest.raises(FileNotFoundError):
        fs.open("bkt/missing", "rb")
    with pytest.raises(FileNotFoundError):
        fs.open("nobucket/x", "wb")
    with pytest.raises(FileNotFoundError):
        fs.rm_file("bkt/missing")
    with pytest.raises(ValueError, match="append"):
        fs.open("bkt/dir/file", "ab")


def test_time_size_and_checksum_describe_the_content(fs: Tier0FileSystem) -> None:
    fs.pipe_file("bkt/f", b"one")
    first = fs.checksum("bkt/f")
    modified = fs.modified("bkt/f")
    assert fs.size("bkt/f") == 3
    assert fs.created("bkt") <= modified
    fs.pipe_file("bkt/f", b"two")
    assert fs.checksum("bkt/f") != first
    assert fs.modified("bkt/f") > modified
    fs.pipe_file("bkt/f", b"one")
    assert fs.checksum("bkt/f") == first  # same bytes, same etag
    fs.pipe_file("bkt/d/x", b"")
    with pytest.raises(IsADirectoryError):
        fs.modified("bkt/d")


# -- changing --------------------------------------------------------------------------------


def test_rm_recursive_removes_a_directory_and_spares_its_siblings(fs: Tier0FileSystem) -> None:
    _tree(fs)
    fs.t0.put("bkt", "x/y/marked/", b"")
    fs.rm("bkt/x", recursive=True)
    assert fs.find("bkt", withdirs=True) == ["bkt", "bkt/top.txt", "bkt/w", "bkt/w/e.csv"]
    assert list(fs.t0.iter_objects("bkt", prefix="x")) == []


def test_rm_recursive_of_a_bucket_removes_the_bucket(fs: Tier0FileSystem) -> None:
    _tree(fs)
    fs.rm("tier0://bkt", recursive=True)
    assert not fs.exists("bkt")
    assert fs.ls("") == []


def test_rm_without_recursive_refuses_directories(fs: Tier0FileSystem) -> None:
    _tree(fs)
    with pytest.raises(IsADirectoryError):
        fs.rm("bkt/x")
    with pytest.raises(IsADirectoryError):
        fs.rm("bkt")
    fs.rm(["bkt/x/a.csv", "bkt/x/b.csv"])
    assert fs.ls("bkt/x", detail=False) == ["bkt/x/y"]
    with pytest.raises(FileNotFoundError):
        fs.rm("bkt/x/a.csv")


def test_rm_in_a_versioned_bucket_adds_no_markers_for_absent_keys(
    fs: Tier0FileSystem, t0: tier0.Tier0
) -> None:
    t0.set_versioning("bkt", "Enabled")
    fs.pipe_file("bkt/d/f", b"1")
    with pytest.raises(FileNotFoundError):
        fs.rm_file("bkt/d/absent")
    fs.rm("bkt/d", recursive=True)
    versions = t0.list_versions("bkt").versions
    assert [(v.key, v.is_delete_marker) for v in versions] == [("d/f", True), ("d/f", False)]
    fs.pipe_file("bkt/g", b"2")
    with pytest.raises(OSError) as raised:
        fs.rm("bkt", recursive=True)  # the old versions stay, and so must the bucket
    assert raised.value.errno == errno.ENOTEMPTY
    assert fs.ls("bkt") == [] and len(t0.list_versions("bkt").versions) == 4


def test_copy_shares_chunks_instead_of_copying_bytes(fs: Tier0FileSystem, t0: tier0.Tier0) -> None:
    payload = _random(3 * MiB, seed=4)
    fs.pipe_file("bkt/src/big", payload)
    fs.pipe_file("bkt/src/sub/small", b"small")
    stored = t0.stats().chunk_stored_bytes
    fs.cp_file("bkt/src/big", "bkt/copy")
    fs.copy("bkt/src", "bkt/tree", recursive=True)
    assert fs.cat_file("bkt/copy") == payload
    assert fs.find("bkt/tree") == ["bkt/tree/big", "bkt/tree/sub/small"]
    assert fs.cat_file("bkt/tree/sub/small") == b"small"
    assert t0.stats().chunk_stored_bytes == stored
    fs.mv("bkt/copy", "bkt/moved")
    assert not fs.exists("bkt/copy") and fs.cat_file("bkt/moved") == payload
    with pytest.raises(FileNotFoundError):
        fs.cp_file("bkt/absent", "bkt/target")


def test_mkdir_makes_buckets_and_rmdir_removes_empty_ones(fs: Tier0FileSystem) -> None:
    fs.mkdir("tier0://fresh")
    assert fs.isdir("fresh")
    with pytest.raises(FileExistsError):
        fs.mkdir("fresh")
    fs.makedirs("fresh", exist_ok=True)
    fs.mkdir("fresh/sub/dir")  # implied by keys: nothing to create
    assert fs.ls("fresh") == []
    fs.makedirs("made/by/makedirs")
    assert fs.isdir("made")
    with pytest.raises(FileNotFoundError):
        fs.mkdir("absent/sub", create_parents=False)
    fs.pipe_file("fresh/f", b"1")
    with pytest.raises(OSError) as raised:
        fs.rmdir("fresh")
    assert raised.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as raised:
        fs.rmdir("fresh/")
    fs.rm_file("fresh/f")
    fs.rmdir("fresh")
    assert not fs.exists("fresh")
    with pytest.raises(FileNotFoundError):
        fs.rmdir("fresh")


def test_touch_creates_empty_files_and_refreshes_existing_ones(fs: Tier0FileSystem) -> None:
    fs.touch("bkt/new")
    assert fs.cat_file("bkt/new") == b""
    fs.pipe_file("bkt/kept", b"content")
    before = fs.modified("bkt/kept")
    fs.touch("bkt/kept", truncate=False)
    assert fs.cat_file("bkt/kept") == b"content"
    assert fs.modified("bkt/kept") > before
    fs.touch("bkt/kept")
    assert fs.cat_file("bkt/kept") == b""


def test_exclusive_creation_refuses_an_existing_object(fs: Tier0FileSystem) -> None:
    with fs.open("bkt/once", "xb") as handle:
        handle.write(b"first")
    with pytest.raises(FileExistsError):
        fs.open("bkt/once", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file("bkt/once", b"second", mode="create")
    # Another writer commits between our open and our close: the put's condition catches it.
    handle = fs.open("bkt/raced", "xb")
    handle.write(b"mine")
    fs.pipe_file("bkt/raced", b"theirs")
    with pytest.raises(FileExistsError):
        handle.close()
    assert fs.cat_file("bkt/raced") == b"theirs"


# -- atomic writes ---------------------------------------------------------------------------


class _Boom(Exception):
    pass


@pytest.mark.parametrize("size", [100, 3 * MiB], ids=["one-block", "streamed"])
def test_a_write_that_raises_leaves_no_object(fs: Tier0FileSystem, size: int) -> None:
    fs.pipe_file("bkt/existing", b"before")
    for path in ["bkt/new", "bkt/existing"]:
        with pytest.raises(_Boom), fs.open(path, "wb") as handle:
            handle.write(_random(size))
            raise _Boom
    assert not fs.exists("bkt/new")
    assert fs.cat_file("bkt/existing") == b"before"


@pytest.mark.parametrize("size", [100, 3 * MiB], ids=["one-block", "streamed"])
def test_a_put_that_fails_reaches_the_writer(
    fs: Tier0FileSystem, t0: tier0.Tier0, size: int
) -> None:
    t0.create_user("alice")
    t0.grant("alice", "s3:ListBucket", "/bkt")  # may look, may not write
    as_alice = Tier0FileSystem(t0=t0.as_principal("alice"), skip_instance_cache=True)
    with pytest.raises(PermissionError), as_alice.open("bkt/denied", "wb") as handle:
        for _ in range(4):
            # Streamed, the put fails on its thread; the next block raises here.
            handle.write(_random(size))
    assert not fs.exists("bkt/denied")


def test_a_bad_key_is_refused_at_open(fs: Tier0FileSystem) -> None:
    with pytest.raises(tier0.InvalidKey):
        fs.open("bkt/" + "k" * 1100, "wb")


def test_a_write_dropped_unclosed_leaves_no_object(fs: Tier0FileSystem) -> None:
    handle = fs.open("bkt/dropped", "wb")
    handle.write(_random(3 * MiB))  # streaming: a put is waiting on its thread
    del handle
    gc.collect()
    for thread in threading.enumerate():
        if thread.name == "tier0-fsspec-put":
            thread.join(timeout=10)
            assert not thread.is_alive(), "a dropped write's put must end, not wait forever"
    assert not fs.exists("bkt/dropped")


def test_the_write_queue_is_bounded_and_a_failed_reader_wakes_the_writer() -> None:
    channel = _Channel(blocks_max=2)
    sent: list[bool] = []
    writer = threading.Thread(target=lambda: sent.extend(channel.send(b"x") for _ in range(3)))
    writer.start()
    deadline = time.monotonic() + 10
    while len(channel._blocks) < 2:  # two queued, however slowly the thread runs
        assert time.monotonic() < deadline, f"queued {len(channel._blocks)} of 2 blocks"
        time.sleep(0.01)
    writer.join(timeout=0.2)
    assert writer.is_alive(), "the third block must wait for room"
    channel.hang_up()  # the reader failed: the waiting writer must learn it, not hang
    writer.join(timeout=10)
    assert not writer.is_alive() and sent == [True, True, False]


def test_an_object_appears_only_when_its_file_closes(fs: Tier0FileSystem) -> None:
    with fs.open("bkt/late", "wb") as handle:
        handle.write(_random(3 * MiB))
        handle.flush()
        assert not fs.exists("bkt/late")
    assert fs.size("bkt/late") == 3 * MiB


def test_a_transaction_commits_together_or_not_at_all(fs: Tier0FileSystem) -> None:
    with fs.transaction:
        fs.pipe_file("bkt/t1", b"one")  # pipe_file writes through open(), so it waits too
        with fs.open("bkt/t2", "wb") as handle:
            handle.write(_random(2 * MiB))
        assert not fs.exists("bkt/t1") and not fs.exists("bkt/t2")
    assert fs.cat_file("bkt/t1") == b"one" and fs.size("bkt/t2") == 2 * MiB
    with pytest.raises(_Boom), fs.transaction:
        with fs.open("bkt/t3", "wb") as handle:
            handle.write(_random(2 * MiB))
        raise _Boom
    assert not fs.exists("bkt/t3")


def test_streaming_a_large_write_keeps_memory_bounded(fs: Tier0FileSystem) -> None:
    size = 64 * MiB
    written = hashlib.sha256()
    generator = random.Random(5)
    tracemalloc.start()
    try:
        with fs.open("bkt/large", "wb") as handle:
            for _ in range(size // MiB):
                block = generator.randbytes(MiB)
                written.update(block)
                handle.write(block)
                del block
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Holding the file would take 64 MiB and more. The kernel's write path keeps
    # a few chunks and their compressed forms in flight (25-31 MiB measured for
    # a plain put of this stream); this layer adds its queue and two buffers.
    assert peak < 48 * MiB, f"peak {peak / MiB:.1f} MiB while writing {size // MiB} MiB"
    read = hashlib.sha256()
    with fs.open("bkt/large", "rb") as handle:
        while block := handle.read(4 * MiB):
            read.update(block)
    assert read.digest() == written.digest()


# -- fsspec's front doors --------------------------------------------------------------------


def test_entry_point_registers_the_protocol(data_dir: pathlib.Path) -> None:
    assert fsspec.get_filesystem_class("tier0") is Tier0FileSystem
    filesystem = fsspec.filesystem("tier0", data=str(data_dir))
    assert isinstance(filesystem, Tier0FileSystem)
    assert filesystem.t0.data_dir == data_dir.resolve()


def test_fsspec_open_reads_and_writes_tier0_urls(data_dir: pathlib.Path) -> None:
    fsspec.filesystem("tier0", data=str(data_dir)).mkdir("bkt")
    with fsspec.open("tier0://bkt/k.txt", "w", data=str(data_dir)) as handle:
        handle.write("hello")
    with fsspec.open("tier0://bkt/k.txt", "rb", data=str(data_dir)) as handle:
        assert handle.read() == b"hello"


def test_filesystems_on_one_data_directory_share_one_store(data_dir: pathlib.Path) -> None:
    first = fsspec.filesystem("tier0", data=str(data_dir))
    # fsspec keeps one instance per thread: another thread gets another instance.
    made: list[Tier0FileSystem] = []
    thread = threading.Thread(
        target=lambda: made.append(fsspec.filesystem("tier0", data=str(data_dir)))
    )
    thread.start()
    thread.join()
    [in_thread] = made
    unlisted = Tier0FileSystem(data=data_dir / ".", skip_instance_cache=True)
    assert in_thread is not first and unlisted is not first
    assert in_thread.t0 is first.t0 and unlisted.t0 is first.t0
    store = weakref.ref(first.t0)
    made.clear()
    del first, in_thread, unlisted
    Tier0FileSystem.clear_instance_cache()
    gc.collect()
    assert store() is None, "the last filesystem gone, the store is closed and dropped"


def test_a_filesystem_survives_pickling(data_dir: pathlib.Path) -> None:
    filesystem = fsspec.filesystem("tier0", data=str(data_dir))
    filesystem.mkdir("bkt")
    filesystem.pipe_file("bkt/k", b"v")
    revived = pickle.loads(pickle.dumps(filesystem))
    assert revived.cat_file("bkt/k") == b"v"


# Python 3.12+ warns that forking a threaded process is risky; that risk, for
# the store's threads, is exactly what this test exercises.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_store(data_dir: pathlib.Path) -> None:
    filesystem = fsspec.filesystem("tier0", data=str(data_dir))
    filesystem.mkdir("bkt")
    filesystem.pipe_file("bkt/parent", b"from the parent")
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports by exit code
        code = 1
        try:
            # The same filesystem object, inherited: its store's threads are gone here.
            filesystem.pipe_file(
                "bkt/child", filesystem.cat_file("bkt/parent") + b", then the child"
            )
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while (waited := os.waitpid(child, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if waited == (0, 0):  # a child that used its parent's store would wait forever
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    assert filesystem.cat_file("bkt/child") == b"from the parent, then the child"


def test_the_store_closes_cleanly_at_interpreter_exit(tmp_path: pathlib.Path) -> None:
    script = textwrap.dedent(
        f"""
        import fsspec
        fs = fsspec.filesystem("tier0", data={str(tmp_path / "exit")!r})
        fs.mkdir("bkt")
        with fs.open("bkt/k", "wb") as handle:
            handle.write(b"x" * (3 * 1024 * 1024))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    with tier0.open(tmp_path / "exit") as store:
        assert store.head("bkt", "k").size == 3 * MiB
        assert store.check().ok


# -- the libraries that speak fsspec ---------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": range(1_000), "name": [f"row {i}" for i in range(1_000)]})


def test_pandas_round_trips_csv(data_dir: pathlib.Path) -> None:
    options = {"data": str(data_dir)}
    fsspec.filesystem("tier0", **options).mkdir("frames")
    _frame().to_csv("tier0://frames/rows.csv", index=False, storage_options=options)
    back = pd.read_csv("tier0://frames/rows.csv", storage_options=options)
    pd.testing.assert_frame_equal(back, _frame(), check_dtype=False)


def test_pandas_round_trips_parquet(data_dir: pathlib.Path) -> None:
    options = {"data": str(data_dir)}
    fsspec.filesystem("tier0", **options).mkdir("frames")
    _frame().to_parquet("tier0://frames/rows.parquet", storage_options=options)
    back = pd.read_parquet("tier0://frames/rows.parquet", storage_options=options)
    pd.testing.assert_frame_equal(back, _frame())


def test_pyarrow_writes_and_reads_parquet_through_the_handler(fs: Tier0FileSystem) -> None:
    arrow = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    table = pa.table({"x": list(range(10_000)), "y": [str(i) for i in range(10_000)]})
    pq.write_table(table, "bkt/arrow/t.parquet", filesystem=arrow)
    assert pq.read_table("bkt/arrow/t.parquet", filesystem=arrow).equals(table)
    [info] = arrow.get_file_info(pafs.FileSelector("bkt/arrow"))
    assert info.type == pafs.FileType.File and info.size == fs.size("bkt/arrow/t.parquet")
    assert pq.read_table("bkt/arrow", filesystem=arrow).equals(table)  # as a dataset


def test_duckdb_reads_parquet_through_the_registered_filesystem(fs: Tier0FileSystem) -> None:
    table = pa.table({"x": list(range(1_000)), "g": [i % 3 for i in range(1_000)]})
    with fs.open("bkt/x.parquet", "wb") as handle:
        pq.write_table(table, handle)
    connection = duckdb.connect()
    try:
        connection.register_filesystem(fs)
        rows = connection.sql(
            "SELECT g, count(*), sum(x) FROM read_parquet('tier0://bkt/x.parquet') GROUP BY g ORDER BY g"
        ).fetchall()
    finally:
        connection.close()
    assert rows == [(g, len(range(g, 1_000, 3)), sum(range(g, 1_000, 3))) for g in range(3)]
