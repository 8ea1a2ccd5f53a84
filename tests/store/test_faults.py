"""Disk full and I/O failure, end to end through ``tier0.open``.

Real disk-full runs on a small tmpfs that the test mounts (CI runs as root);
the fsync and ENOSPC injections go through the chunk backend's OS seam.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

import tier0
from tier0.meta import WriteTx
from tier0.store import LocalChunkBackend, OsSeam


class FailingSeam(OsSeam):
    """Raises ``error`` from ``operation`` while ``armed``."""

    def __init__(self, operation: str, error: int) -> None:
        self.operation = operation
        self.error = error
        self.armed = False

    def fsync(self, fd: int) -> None:
        if self.armed and self.operation == "fsync":
            raise OSError(self.error, os.strerror(self.error))
        super().fsync(fd)

    def write(self, fd: int, data: memoryview) -> int:
        if self.armed and self.operation == "write":
            raise OSError(self.error, os.strerror(self.error))
        return super().write(fd, data)


def _open_with(tmp_path: pathlib.Path, seam: OsSeam) -> tier0.Tier0:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return tier0.open(data, chunks=LocalChunkBackend(data / "chunks", os_seam=seam))


def test_fsync_failure_is_fail_stop_and_reads_keep_working(tmp_path: pathlib.Path) -> None:
    seam = FailingSeam("fsync", errno.EIO)
    body = os.urandom(1_000_000)
    with _open_with(tmp_path, seam) as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "before", body)
        seam.armed = True
        with pytest.raises(tier0.StoreFailed):
            t0.put("bkt", "during", os.urandom(1_000_000))
        seam.armed = False
        # Fail-stop: the fsync that failed is never retried, and no later write is accepted.
        with pytest.raises(tier0.StoreFailed):
            t0.put("bkt", "after", os.urandom(1_000_000))
        assert t0.get_bytes("bkt", "before") == body
        with pytest.raises(tier0.NoSuchKey):
            t0.head("bkt", "during")
    # Reopening (after the operator checked the disk) accepts writes again.
    with tier0.open(tmp_path / "data") as t0:
        t0.put("bkt", "after", b"y" * 100_000)
        assert t0.check(deep=True).ok


def test_injected_enospc_is_a_typed_error_and_recovers(tmp_path: pathlib.Path) -> None:
    seam = FailingSeam("write", errno.ENOSPC)
    with _open_with(tmp_path, seam) as t0:
        t0.create_bucket("bkt")
        seam.armed = True
        with pytest.raises(tier0.StorageFull) as caught:
            t0.put("bkt", "k", os.urandom(2_000_000))
        assert caught.value.errno == errno.ENOSPC
        assert "free space" in str(caught.value).lower()
        seam.armed = False
        body = os.urandom(2_000_000)
        t0.put("bkt", "k", body)
        assert t0.get_bytes("bkt", "k") == body
        assert t0.check(deep=True).ok


@contextlib.contextmanager
def _tmpfs(path: pathlib.Path, size: str) -> Iterator[pathlib.Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="mounting a tmpfs needs root; the ENOSPC injection test covers the path",
)
def test_real_disk_full_on_tmpfs(tmp_path: pathlib.Path) -> None:
    with _tmpfs(tmp_path / "small", "48m") as mount:
        filler = mount / "filler"
        filler.write_bytes(b"\0" * (8 * 1024 * 1024))
        acknowledged: dict[str, bytes] = {}
        with tier0.open(mount / "data") as t0:
            t0.create_bucket("bkt")
            with pytest.raises(tier0.StorageFull):
                for i in range(100):
                    body = os.urandom(3 * 1024 * 1024)
                    t0.put("bkt", f"k{i}", body)
                    acknowledged[f"k{i}"] = body
            failed_key = f"k{len(acknowledged)}"
            assert len(acknowledged) >= 3
            # Reads keep working, nothing was half-written, the failed key does not exist.
            for key, body in acknowledged.items():
                assert t0.get_bytes("bkt", key) == body
            with pytest.raises(tier0.NoSuchKey):
                t0.head("bkt", failed_key)
            assert t0.check(deep=True).ok
            assert not any((mount / "data" / "chunks" / "tmp").iterdir())
            # Free space outside tier0: writes work again.
            filler.unlink()
            body = os.urandom(3 * 1024 * 1024)
            t0.put("bkt", failed_key, body)
            assert t0.get_bytes("bkt", failed_key) == body
            assert t0.check(deep=True).ok


def test_corrupted_inline_value_is_detected_not_returned(tmp_path: pathlib.Path) -> None:
    with tier0.open(tmp_path / "data") as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "k", b"inline value " * 100)

        def flip(tx: WriteTx) -> None:
            row = tx.query_one("SELECT seq, inline_data FROM t0_versions WHERE key = 'k'")
            blob = bytearray(row[1])
            blob[-1] ^= 0xFF
            tx.execute(
                "UPDATE t0_versions SET inline_data = ? WHERE seq = ?", (bytes(blob), row[0])
            )

        t0._kernel.committer.run(flip)
        with pytest.raises(tier0.ChunkCorrupted):
            t0.get_bytes("bkt", "k")
        assert t0.check().ok  # the header still matches: only a deep check re-hashes
        assert not t0.check(deep=True).ok
