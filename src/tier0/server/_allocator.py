"""The C allocator's settings for a server process, whose buffers are chunk-sized.

Reads and writes pass chunks of about 1 MiB (up to 16 MiB) as fresh ``bytes``
on the store's threads (a GET over TLS or of compressed chunks, an upload's
blocks), freed once used. glibc's malloc serves blocks that large with
``mmap`` and returns them with ``munmap`` (or trims its heaps below them), so
every one faulted in a fresh zeroed page per 4 KiB: measured on this VM,
reading 1-2.5 MiB chunk files from the page cache on four threads ran at
2.5 GB/s that way and at 8-10 GB/s with the settings below, which keep such
buffers inside malloc's heaps and reuse them.

The price is memory that stays with the process after a burst: each heap
keeps up to ``TRIM_THRESHOLD_BYTES`` free at its top (about 30 MiB more
resident for two workers after a 1 GiB upload, measured). Only ``tier0 serve``
sets this (the process is ours); a program that opens tier0 embedded keeps
its own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "tune_allocator"]

#: Blocks below this come from malloc's heaps (every chunk up to CHUNK_BYTES_MAX).
MMAP_THRESHOLD_BYTES: Final = 16 * 1024 * 1024
#: Free memory a heap keeps at its top before giving it back to the system.
TRIM_THRESHOLD_BYTES: Final = 32 * 1024 * 1024

# <malloc.h>
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def tune_allocator() -> bool:
    """Apply the settings to this process (and the processes it forks later).

    Returns False, changing nothing, where the C library is not glibc (no
    ``mallopt``) or refuses them.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
