"""A writer for the crash test: random puts, overwrites and deletes until killed.

Run as ``python -m tests.store.crash_writer DATA META BUCKET SEED LOG``. Each
thread owns its keys, so per key the log is sequential. Before an operation
the thread appends ``B thread op kind key digest`` to the log, and after the
store acknowledged it ``A thread op``. Lines are written with one ``write``
to an ``O_APPEND`` descriptor, so a SIGKILL leaves whole lines (the page
cache outlives the process; only a machine crash would need an fsync here).
"""

from __future__ import annotations

import os
import random
import sys
import threading

import blake3

import tier0

THREADS = 3
KEYS_PER_THREAD = 6
SIZE_MAX_BYTES = 3 * 1024 * 1024


def content(rng: random.Random) -> bytes:
    size = rng.choice([1, 100, 4096, 70_000, rng.randrange(1, SIZE_MAX_BYTES)])
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return (b"compressible %d " % rng.randrange(1000)) * (size // 16) + b"x" * (size % 16)


def main() -> None:
    data, meta, bucket, seed, log_path = sys.argv[1:6]
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with tier0.open(data, meta=meta) as t0:

        def work(thread: int) -> None:
            rng = random.Random(f"{seed}:{thread}")
            for op in range(1_000_000):
                key = f"t{thread}/k{rng.randrange(KEYS_PER_THREAD)}"
                if rng.random() < 0.25:
                    os.write(log, f"B {thread} {op} delete {key} -\n".encode())
                    t0.delete(bucket, key)
                else:
                    body = content(rng)
                    digest = blake3.blake3(body).hexdigest()
                    os.write(log, f"B {thread} {op} put {key} {digest}\n".encode())
                    t0.put(bucket, key, body)
                os.write(log, f"A {thread} {op}\n".encode())

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        os.write(log, b"S\n")  # started: the test may kill us from now on
        for thread in threads:
            thread.join()


if __name__ == "__main__":
    main()
