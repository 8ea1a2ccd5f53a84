"""Which CPUs the store's bulk-data threads may run on.

A server worker keeps its request threads on one CPU (`tier0.server.pin_to_cpu`):
they hand the GIL to each other on every request, which is cheap on one CPU.
The store's own threads for bulk data (chunk reads and writes, a large
object's digests) are started from those threads and would inherit the pin,
putting a large transfer's hashing and I/O, which run outside the GIL, on
that one CPU too: a 64 MiB S3 PUT fell from 0.37 to 0.26 GB/s and a GET from
1.6 to 0.9 GB/s. Such a thread calls `spread` when it starts, which returns it
to the CPUs its process had before it pinned itself. Without a pin (the
embedded store, one server process) nothing changes.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["set_bulk_cpus", "spread"]

_bulk_cpus: frozenset[int] | None = None


def set_bulk_cpus(cpus: set[int] | frozenset[int]) -> None:
    """Where the calling process's bulk-data threads run from now on (before a pin)."""
    global _bulk_cpus
    _bulk_cpus = frozenset(cpus)


def spread() -> None:
    """Let the calling thread run on the bulk-data CPUs, when a pin set them.

    Never raises (a CPU taken offline since): a thread left pinned is slower,
    while an error here would break the thread pool it initializes.
    """
    if _bulk_cpus is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, _bulk_cpus)
