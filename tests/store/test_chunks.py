"""LocalChunkBackend: the conformance kit, plus faults and races only a local disk has."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.store.chunk_backend_kit import IDLE_S, ChunkBackendKit, FakeClock, blob_of, name_of
from tier0.errors import ChunkCorrupted, ChunkMissing, StorageFull, StoreFailed
from tier0.store._chunking import HEADER_BYTES, Codec, EncodedChunk, chunk_name, encode_chunk
from tier0.store._chunks import ChunkBackend
from tier0.store._chunks_local import LocalChunkBackend, OsSeam


class TestLocalChunkBackend(ChunkBackendKit):
    def make_backend(self, tmp_path: Path) -> ChunkBackend:
        return LocalChunkBackend(tmp_path / "chunks", clock=self.clock)


class FaultySeam(OsSeam):
    """Delegates to ``os``, except for the faults a test plans.

    Operations are the method names, with ``open`` split into ``create`` (an
    open that creates a file) and ``open``, and ``fsync`` into
    ``fsync_file`` and ``fsync_directory``. Writes are cut to 64 KiB per call,
    so a blob takes several ``write`` calls, as it may on a real disk.
    """

    write_bytes_max = 64 * 1024

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fsynced_directories: list[str] = []
        self._faults: dict[str, tuple[int, int]] = {}
        self._directories: dict[int, str] = {}
        self.before: dict[str, Callable[[str], None]] = {}

    def fail(self, operation: str, error_number: int, *, after_calls: int = 0) -> None:
        """Make ``operation`` raise ``error_number`` from its ``after_calls + 1``-th call on."""
        self._faults[operation] = (error_number, self.calls[operation] + after_calls)

    def heal(self) -> None:
        self._faults.clear()

    def _enter(self, operation: str, path: str = "") -> None:
        self.calls[operation] += 1
        hook = self.before.get(operation)
        if hook is not None:
            hook(path)
        fault = self._faults.get(operation)
        if fault is not None and self.calls[operation] > fault[1]:
            raise OSError(fault[0], os.strerror(fault[0]), path or None)

    def open(self, path: str, flags: int, mode: int) -> int:
        self._enter("create" if flags & os.O_CREAT else "open", path)
        fd = super().open(path, flags, mode)
        if flags & os.O_DIRECTORY:
            self._directories[fd] = path
        return fd

    def write(self, fd: int, data: memoryview) -> int:
        self._enter("write")
        return super().write(fd, data[: self.write_bytes_max])

    def read(self, fd: int, size: int) -> bytes:
        self._enter("read")
        return super().read(fd, size)

    def preadv(self, fd: int, buffer: memoryview, offset: int) -> int:
        self._enter("preadv")
        return super().preadv(fd, buffer, offset)

    def fsync(self, fd: int) -> None:
        directory = self._directories.get(fd)
        self._enter("fsync_file" if directory is None else "fsync_directory", directory or "")
        super().fsync(fd)
        if directory is not None:
            self.fsynced_directories.append(directory)

    def close(self, fd: int) -> None:
        self._directories.pop(fd, None)
        super().close(fd)

    def replace(self, source: str, target: str) -> None:
        self._enter("replace", target)
        super().replace(source, target)

    def unlink(self, path: str) -> None:
        self._enter("unlink", path)
        super().unlink(path)

    def mkdir(self, path: str) -> None:
        self._enter("mkdir", path)
        super().mkdir(path)

    def stat(self, path: str) -> os.stat_result:
        self._enter("stat", path)
        return super().stat(path)


@pytest.fixture
def seam() -> FaultySeam:
    return FaultySeam()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "chunks"


@pytest.fixture
def backend(root: Path, clock: FakeClock, seam: FaultySeam) -> LocalChunkBackend:
    return LocalChunkBackend(root, clock=clock, os_seam=seam)


BLOB = blob_of(0, 300_000)  # several 64 KiB writes
NAME = name_of(BLOB)


def assert_nothing_stored(backend: LocalChunkBackend, root: Path, name: str) -> None:
    assert os.listdir(root / "tmp") == []
    with pytest.raises(ChunkMissing):
        backend.read(name)
    assert list(backend.names()) == []


# -- layout and durability ----------------------------------------------------


def test_write_puts_blob_under_two_fan_out_levels(backend: LocalChunkBackend, root: Path) -> None:
    backend.write(NAME, BLOB)
    assert (root / NAME[:2] / NAME).read_bytes() == BLOB
    assert os.listdir(root / "tmp") == []


def test_open_creates_root_and_missing_parents_durably(tmp_path: Path, seam: FaultySeam) -> None:
    root = tmp_path / "a" / "b" / "chunks"
    LocalChunkBackend(root, os_seam=seam).write(NAME, BLOB)
    assert (root / NAME[:2] / NAME).read_bytes() == BLOB
    for directory in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", root):
        assert str(directory) in seam.fsynced_directories


def test_write_fsyncs_the_file_and_its_directory_only(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    seam.fsynced_directories.clear()
    backend.write(NAME, BLOB)
    assert seam.calls["fsync_file"] == 1
    # The fan-out directories were made durable when the store opened.
    assert seam.fsynced_directories == [str(root / NAME[:2])]


def test_a_write_whose_name_waits_syncs_its_directory_only_at_flush(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    seam.fsynced_directories.clear()
    backend.write(NAME, BLOB, name_durable=False)
    assert seam.calls["fsync_file"] == 1  # the content is durable at once
    assert seam.fsynced_directories == []
    assert backend.read(NAME) == BLOB
    backend.flush([NAME])
    assert seam.fsynced_directories == [str(root / NAME[:2])]


def test_open_creates_every_fan_out_directory_durably(root: Path, seam: FaultySeam) -> None:
    seam.fsynced_directories.clear()
    LocalChunkBackend(root / "fresh", os_seam=seam)
    assert sorted(p.name for p in (root / "fresh").iterdir()) == sorted(
        [f"{i:02x}" for i in range(256)] + ["tmp", "trash"]
    )
    assert str(root / "fresh") in seam.fsynced_directories


def test_open_raises_storage_full_when_fan_out_cannot_be_created(
    root: Path, seam: FaultySeam
) -> None:
    seam.fail("mkdir", errno.ENOSPC, after_calls=2)
    with pytest.raises(StorageFull, match="Free space"):
        LocalChunkBackend(root / "fresh", os_seam=seam)
    seam.heal()
    LocalChunkBackend(root / "fresh", os_seam=seam).write(NAME, BLOB)


# -- running out of space: StorageFull, and the backend keeps working ----------


@pytest.mark.parametrize(
    ("operation", "after_calls"),
    [("create", 0), ("write", 0), ("write", 2), ("replace", 0)],
)
@pytest.mark.parametrize("error_number", [errno.ENOSPC, errno.EDQUOT])
def test_write_raises_storage_full_and_leaves_nothing_when_space_runs_out(
    backend: LocalChunkBackend,
    root: Path,
    seam: FaultySeam,
    operation: str,
    after_calls: int,
    error_number: int,
) -> None:
    calls_before = seam.calls[operation]
    seam.fail(operation, error_number, after_calls=after_calls)
    with pytest.raises(StorageFull, match="Free space") as caught:
        backend.write(NAME, BLOB)
    assert caught.value.errno == errno.ENOSPC
    assert seam.calls[operation] == calls_before + after_calls + 1
    assert_nothing_stored(backend, root, NAME)
    assert backend.statistics().failed is False

    seam.heal()
    backend.write(NAME, BLOB)
    assert backend.read(NAME) == BLOB
    assert backend.check() == []


# -- fsync and I/O errors: fail-stop ------------------------------------------


def assert_fail_stop(backend: LocalChunkBackend, seam: FaultySeam) -> None:
    """Every mutating call refuses, without touching the disk; reads keep working."""
    fsyncs = seam.calls["fsync_file"] + seam.calls["fsync_directory"]
    seam.heal()
    other = blob_of(1)
    calls: list[Callable[[], object]] = [
        lambda: backend.write(name_of(other), other),
        lambda: backend.touch(NAME),
        lambda: backend.flush([NAME]),
        lambda: backend.delete_if_idle(NAME, 0.0),
    ]
    for call in calls:
        with pytest.raises(StoreFailed, match="fail-stop"):
            call()
    assert seam.calls["fsync_file"] + seam.calls["fsync_directory"] == fsyncs
    assert backend.statistics().failed is True
    assert any("fail-stop" in problem for problem in backend.check())
    with pytest.raises(ChunkMissing):
        backend.read(name_of(other))


@pytest.mark.parametrize("error_number", [errno.EIO, errno.ENOSPC])
def test_write_fails_stop_when_file_fsync_fails(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam, error_number: int
) -> None:
    kept = blob_of(2)
    backend.write(name_of(kept), kept)
    seam.fail("fsync_file", error_number)
    with pytest.raises(StoreFailed, match="fsync") as caught:
        backend.write(NAME, BLOB)
    assert caught.value.errno == error_number
    assert os.listdir(root / "tmp") == []
    with pytest.raises(ChunkMissing):
        backend.read(NAME)
    assert_fail_stop(backend, seam)
    assert backend.read(name_of(kept)) == kept


def test_write_fails_stop_when_directory_fsync_fails(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    # The store's fan-out directories are durable since it opened: the first
    # directory fsync of a write is the one after the rename.
    seam.fail("fsync_directory", errno.EIO)
    with pytest.raises(StoreFailed, match=f"fsync of directory {root / NAME[:2]}"):
        backend.write(NAME, BLOB)
    assert_fail_stop(backend, seam)
    # The blob was complete and fsynced before its rename: it is intact.
    assert backend.read(NAME) == BLOB


def test_write_fails_stop_and_leaves_nothing_when_write_hits_io_error(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    seam.fail("write", errno.EIO, after_calls=1)
    with pytest.raises(StoreFailed):
        backend.write(NAME, BLOB)
    assert_nothing_stored(backend, root, NAME)
    assert_fail_stop(backend, seam)


def test_read_fails_stop_when_read_hits_io_error(
    backend: LocalChunkBackend, seam: FaultySeam
) -> None:
    backend.write(NAME, BLOB)
    seam.fail("read", errno.EIO)
    with pytest.raises(StoreFailed):
        backend.read(NAME)
    assert_fail_stop(backend, seam)
    assert backend.read(NAME) == BLOB


def test_flush_fails_stop_when_directory_fsync_fails(
    backend: LocalChunkBackend, seam: FaultySeam
) -> None:
    backend.write(NAME, BLOB)
    seam.fail("fsync_directory", errno.EIO)
    with pytest.raises(StoreFailed):
        backend.flush([NAME])
    assert_fail_stop(backend, seam)


# -- open_raw: a chunk's bytes where they lie, checked ---------------------------


def _stored(backend: LocalChunkBackend, data: bytes) -> EncodedChunk:
    encoded = encode_chunk(data)
    backend.write(chunk_name(encoded.hash), encoded.parts)
    return encoded


def test_open_raw_gives_the_file_extent_holding_a_raw_chunk(backend: LocalChunkBackend) -> None:
    data = os.urandom(2_500_000)  # more than the 1 MiB the CRC is read through at a time
    encoded = _stored(backend, data)
    raw = backend.open_raw(chunk_name(encoded.hash), encoded.hash)
    assert raw is not None
    try:
        assert (raw.offset, raw.length) == (HEADER_BYTES, len(data))
        assert os.pread(raw.fd, raw.length, raw.offset) == data
    finally:
        raw.close()
    raw.close()  # twice is harmless


def test_open_raw_is_none_for_a_compressed_chunk(backend: LocalChunkBackend) -> None:
    encoded = _stored(backend, b"compresses well " * 20_000)
    assert encoded.codec == Codec.ZSTD
    open_before = len(os.listdir("/proc/self/fd"))
    assert backend.open_raw(chunk_name(encoded.hash), encoded.hash) is None
    assert len(os.listdir("/proc/self/fd")) == open_before


@pytest.mark.parametrize("where", ["payload", "crc", "name"])
def test_open_raw_raises_chunk_corrupted_and_closes_the_file(
    backend: LocalChunkBackend, root: Path, where: str
) -> None:
    encoded = _stored(backend, os.urandom(200_000))
    name = chunk_name(encoded.hash)
    path = root / name[:2] / name
    blob = bytearray(path.read_bytes())
    blob[{"payload": HEADER_BYTES + 150_000, "crc": 14, "name": 30}[where]] ^= 0x40
    path.write_bytes(bytes(blob))
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ChunkCorrupted, match=f"chunk {name}"):
        backend.open_raw(name, encoded.hash)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_open_raw_checks_a_file_again_once_its_check_is_older_than_the_ttl(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    backend.verified_ttl_s = 0.5
    encoded = _stored(backend, os.urandom(200_000))
    name = chunk_name(encoded.hash)

    def opened() -> None:
        raw = backend.open_raw(name, encoded.hash)
        assert raw is not None
        raw.close()

    opened()
    reads = seam.calls["preadv"]
    opened()  # checked a moment ago: the payload is not read again
    assert seam.calls["preadv"] == reads
    path = root / name[:2] / name
    blob = bytearray(path.read_bytes())
    blob[HEADER_BYTES + 1000] ^= 0x01
    with open(path, "r+b") as file:  # in place: the same file, damaged
        file.write(bytes(blob))
    time.sleep(0.6)
    with pytest.raises(ChunkCorrupted, match="fails its CRC-32C"):
        backend.open_raw(name, encoded.hash)


def test_open_raw_checked_only_answers_for_files_checked_recently(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    encoded = _stored(backend, os.urandom(200_000))
    name = chunk_name(encoded.hash)
    opens = seam.calls["open"]
    assert backend.open_raw(name, encoded.hash, checked_only=True) is None
    assert seam.calls["open"] == opens  # not checked yet: nothing is even opened
    checked = backend.open_raw(name, encoded.hash)
    assert checked is not None
    checked.close()
    reads = seam.calls["preadv"]
    raw = backend.open_raw(name, encoded.hash, checked_only=True)
    assert raw is not None and seam.calls["preadv"] == reads
    assert os.pread(raw.fd, raw.length, raw.offset) == bytes(encoded.payload)
    raw.close()
    # Another file under the name since (deleted and written again): not vouched for.
    path = root / name[:2] / name
    replacement = root / "replacement"
    replacement.write_bytes(path.read_bytes())
    os.replace(replacement, path)
    assert backend.open_raw(name, encoded.hash, checked_only=True) is None


def test_open_raw_remembers_at_most_its_limit_of_checked_files(
    backend: LocalChunkBackend, seam: FaultySeam
) -> None:
    backend.verified_entries_max = 2
    stored = [_stored(backend, os.urandom(100_000)) for _ in range(3)]

    def payload_reads(encoded: EncodedChunk) -> int:
        reads = seam.calls["preadv"]
        raw = backend.open_raw(chunk_name(encoded.hash), encoded.hash)
        assert raw is not None
        raw.close()
        return seam.calls["preadv"] - reads

    assert [payload_reads(encoded) for encoded in stored] == [1, 1, 1]
    assert [payload_reads(encoded) for encoded in stored[1:]] == [0, 0]
    assert payload_reads(stored[0]) == 1  # the oldest was forgotten


def test_open_raw_checks_a_file_put_in_place_of_a_checked_one(
    backend: LocalChunkBackend, root: Path
) -> None:
    # A blob deleted and written again is a new file: its check is its own.
    encoded = _stored(backend, os.urandom(200_000))
    name = chunk_name(encoded.hash)
    raw = backend.open_raw(name, encoded.hash)
    assert raw is not None
    raw.close()
    path = root / name[:2] / name
    blob = bytearray(path.read_bytes())
    blob[HEADER_BYTES + 1000] ^= 0x01
    replacement = root / "replacement"
    replacement.write_bytes(bytes(blob))
    os.replace(replacement, path)
    with pytest.raises(ChunkCorrupted, match="fails its CRC-32C"):
        backend.open_raw(name, encoded.hash)


def test_open_raw_raises_chunk_corrupted_when_the_file_is_cut_short(
    backend: LocalChunkBackend, root: Path
) -> None:
    encoded = _stored(backend, os.urandom(200_000))
    name = chunk_name(encoded.hash)
    path = root / name[:2] / name
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ChunkCorrupted, match="declares 200000"):
        backend.open_raw(name, encoded.hash)


def test_open_raw_fails_stop_when_its_read_hits_io_error(
    backend: LocalChunkBackend, seam: FaultySeam
) -> None:
    encoded = _stored(backend, os.urandom(200_000))
    seam.fail("preadv", errno.EIO)
    with pytest.raises(StoreFailed):
        backend.open_raw(chunk_name(encoded.hash), encoded.hash)
    assert_fail_stop(backend, seam)


def test_open_raw_raises_chunk_missing_when_absent(backend: LocalChunkBackend) -> None:
    encoded = encode_chunk(b"never stored")
    with pytest.raises(ChunkMissing):
        backend.open_raw(chunk_name(encoded.hash), encoded.hash)


# -- races with delete_if_idle, made deterministic with seam hooks --------------


def test_touch_returns_false_when_delete_moves_blob_away_during_touch(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    backend.write(NAME, BLOB)
    trashed = root / "trash" / f"{NAME}.{'0' * 16}"
    path = root / NAME[:2] / NAME
    # touch() stamps the inode, then looks under the name: a deleter renames
    # the blob into trash/ in between, and would unlink it.
    seam.before["stat"] = lambda _: os.replace(path, trashed)
    assert backend.touch(NAME) is None
    assert backend.statistics().dedup_hits == 0


def test_delete_if_idle_puts_blob_back_when_touched_before_its_rename(
    backend: LocalChunkBackend, clock: FakeClock, root: Path, seam: FaultySeam
) -> None:
    backend.write(NAME, BLOB)
    clock.advance(IDLE_S * 10)
    path = root / NAME[:2] / NAME
    stamp_s = clock()

    def touch_just_before_rename(target: str) -> None:
        if os.path.dirname(target) == str(root / "trash"):
            os.utime(path, (stamp_s, stamp_s))

    seam.before["replace"] = touch_just_before_rename
    assert backend.delete_if_idle(NAME, IDLE_S) is False
    assert backend.read(NAME) == BLOB
    assert os.listdir(root / "trash") == []
    assert backend.check() == []


def test_read_finds_blob_while_delete_holds_it_in_trash(
    backend: LocalChunkBackend, root: Path
) -> None:
    backend.write(NAME, BLOB)
    os.replace(root / NAME[:2] / NAME, root / "trash" / f"{NAME}.{'1' * 16}")
    assert backend.read(NAME) == BLOB
    with pytest.raises(ChunkMissing):
        backend.read(name_of(b"absent"))


def test_open_puts_back_blob_left_in_trash_by_interrupted_delete(
    backend: LocalChunkBackend, root: Path, clock: FakeClock
) -> None:
    backend.write(NAME, BLOB)
    os.replace(root / NAME[:2] / NAME, root / "trash" / f"{NAME}.{'2' * 16}")
    clock.advance(LocalChunkBackend.stale_s_min + 1)
    assert any("interrupted deletion" in problem for problem in backend.check())

    reopened = LocalChunkBackend(root, clock=clock)
    assert (root / NAME[:2] / NAME).read_bytes() == BLOB
    assert os.listdir(root / "trash") == []
    assert reopened.check() == []


def test_open_removes_temp_files_only_when_stale(
    backend: LocalChunkBackend, root: Path, clock: FakeClock
) -> None:
    stale = root / "tmp" / f"{NAME}.{'3' * 16}"
    fresh = root / "tmp" / f"{NAME}.{'4' * 16}"
    for path, age_s in ((stale, LocalChunkBackend.stale_s_min + 1), (fresh, 60.0)):
        path.write_bytes(b"partial")
        os.utime(path, (clock() - age_s, clock() - age_s))
    problems = backend.check()
    assert len(problems) == 1 and "tmp/" + stale.name in problems[0]

    LocalChunkBackend(root, clock=clock)
    assert os.listdir(root / "tmp") == [fresh.name]


def test_check_reports_entries_that_do_not_belong(backend: LocalChunkBackend, root: Path) -> None:
    backend.write(NAME, BLOB)
    (root / "stray").write_bytes(b"")
    (root / NAME[:2] / "zz").mkdir()
    (root / NAME[:2] / ("f" * 64)).write_bytes(b"wrong directory")
    (root / "tmp" / "not-a-temp-file").write_bytes(b"")
    problems = backend.check()
    assert len(problems) == 4
    for where in ("stray", f"{NAME[:2]}/zz", "f" * 64, "tmp/not-a-temp-file"):
        assert any(where in problem for problem in problems), where


# -- another process ----------------------------------------------------------

_TOUCHER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from tier0.store._chunks_local import LocalChunkBackend

    backend = LocalChunkBackend(Path(sys.argv[1]))
    print("ready", flush=True)
    for line in sys.stdin:
        names = json.loads(line)
        print(json.dumps([name for name in names if backend.touch(name) is not None]), flush=True)
    """
)


class NoSyncSeam(OsSeam):
    """Skips fsync: the race below is about renames and stamps, not durability."""

    def fsync(self, fd: int) -> None:
        pass


@pytest.mark.slow
def test_delete_if_idle_never_deletes_blob_when_touch_races_from_another_process(
    root: Path,
) -> None:
    # Each round makes 200 idle blobs; the other process touches them from the
    # first, this one deletes from the last, so they meet and race somewhere.
    backend = LocalChunkBackend(root, os_seam=NoSyncSeam())
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    claimed: set[str] = set()
    deleted: set[str] = set()
    every_name: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", _TOUCHER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    ) as toucher:
        assert toucher.stdin is not None and toucher.stdout is not None
        assert toucher.stdout.readline() == "ready\n"
        for round_number in range(20):
            names = []
            for seed in range(200):
                blob = blob_of(round_number * 1000 + seed, 64)
                name = name_of(blob)
                backend.write(name, blob)
                path = root / name[:2] / name
                old_s = path.stat().st_mtime - IDLE_S * 10
                os.utime(path, (old_s, old_s))
                names.append(name)
            toucher.stdin.write(json.dumps(names) + "\n")
            toucher.stdin.flush()
            deleted.update(name for name in reversed(names) if backend.delete_if_idle(name, IDLE_S))
            claimed.update(json.loads(toucher.stdout.readline()))
            every_name += names
        toucher.stdin.close()
        assert toucher.wait(timeout=10) == 0
    assert claimed and deleted
    assert claimed.isdisjoint(deleted)
    # A touch that lost the race answers False but may still have stamped the
    # blob, which then stays: present may hold more than what was claimed.
    present = set(backend.names())
    assert claimed <= present
    assert present.isdisjoint(deleted)
    assert present | deleted == set(every_name)
    assert backend.check() == []


def test_write_falls_back_to_buffered_io_when_direct_io_is_refused_at_write(
    backend: LocalChunkBackend, root: Path, seam: FaultySeam
) -> None:
    refusals = []

    def refuse_once(path: str) -> None:
        if not refusals:
            refusals.append(path)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    seam.before["write"] = refuse_once
    backend.write(NAME, BLOB)
    assert refusals and backend.read(NAME) == BLOB
    assert os.listdir(root / "tmp") == []
    assert backend.check() == []
