"""The C allocator's settings under ``tier0 serve``: chunk-sized blocks stay in malloc's heaps."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap

import pytest

from tier0.server import tune_allocator
from tier0.server._allocator import MMAP_THRESHOLD_BYTES

# Counts the blocks malloc maps for a chunk-sized bytes object (glibc's
# mallinfo2().hblks while it is alive) before and after tune_allocator; in a
# process of its own, so the test process keeps its allocator as it was.
_PROBE = textwrap.dedent(
    """
    import ctypes, ctypes.util
    from tier0.server import tune_allocator

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = Info

    def mapped_while_alive(size):
        base = libc.mallinfo2().hblks
        block = bytes(size)
        mapped = libc.mallinfo2().hblks - base
        del block
        return mapped

    before = mapped_while_alive(1536 * 1024)
    tuned = tune_allocator()
    after = mapped_while_alive(1536 * 1024)
    print(before, tuned, after)
    """
)


def _is_glibc() -> bool:
    return "glibc" in " ".join(map(str, __import__("platform").libc_ver()))


@pytest.mark.skipif(not _is_glibc(), reason="mallopt and mallinfo2 are glibc's")
def test_tune_allocator_keeps_chunk_sized_blocks_out_of_mmap() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    before, tuned, after = result.stdout.split()
    assert tuned == "True"
    assert int(before) == 1, "glibc's default serves a 1.5 MiB block with mmap"
    assert int(after) == 0
    assert MMAP_THRESHOLD_BYTES >= 16 * 1024 * 1024  # every chunk (CHUNK_BYTES_MAX)


def test_tune_allocator_returns_whether_it_applied() -> None:
    # Idempotent: applying the same settings again succeeds where glibc is.
    assert tune_allocator() is (_is_glibc() and ctypes.util.find_library("c") is not None)
