"""Writes and reads back one large object, then reports peak memory.

``python -m tests.store.stream_worker DATA SIZE_BYTES`` prints a JSON line:
the checksums of what was sent and what came back, and the peak RSS.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import blake3

import tier0

BLOCK_BYTES = 1024 * 1024


def blocks(size: int, sent: blake3.blake3) -> Iterator[bytes]:
    # 16 random blocks, each stamped with its position: every chunk is new
    # (nothing deduplicates away), yet generating 5 GiB costs almost nothing.
    pool = [os.urandom(BLOCK_BYTES) for _ in range(16)]
    position = 0
    while position < size:
        block = position.to_bytes(8, "little") + pool[(position // BLOCK_BYTES) % 16][8:]
        block = block[: size - position]
        sent.update(block)
        position += len(block)
        yield block


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (VmHWM).

    Not ``getrusage``'s ru_maxrss: Linux carries that across execve, so a child
    forked from a large parent (a long pytest run) reports the parent's size.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    data, size = sys.argv[1], int(sys.argv[2])
    sent, received = blake3.blake3(), blake3.blake3()
    with tier0.open(data) as t0:
        t0.create_bucket("big")
        info = t0.put("big", "object", blocks(size, sent))
        after_put = peak_rss_bytes()
        with t0.get("big", "object") as reader:
            for block in reader:
                received.update(block)
        peak = peak_rss_bytes()
        print(
            json.dumps(
                {
                    "size": info.size,
                    "sent": sent.hexdigest(),
                    "received": received.hexdigest(),
                    "checksum": info.checksum,
                    "peak_rss_bytes": peak,
                    "peak_rss_bytes_after_put": after_put,
                }
            )
        )


if __name__ == "__main__":
    main()
