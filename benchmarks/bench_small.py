"""Small objects: 4 KiB puts and gets per second, embedded on SQLite, durability kept.

tier0 keeps a 4 KiB object inline in its metadata row, and its group
committer packs concurrent puts into shared transactions. Baselines, in the
same run on the same disk:

- SQLite alone doing the equivalent durable work: one INSERT of a 4 KiB blob
  per transaction (WAL, ``synchronous=FULL``), from one thread; and the same
  batched 100 INSERTs per transaction;
- 4 KiB files written with fsync (open, write, fsync, close), 1 and 8 threads;
- for gets: SQLite ``SELECT`` by key, and reading the 4 KiB files.

Keys are random (hex), the worst case for the B-tree indexes.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from _common import BUCKET, Context, KiB, Section, open_store, trials

OBJECT_BYTES = 4 * KiB
THREADS = 8
#: A third, wider level of concurrency: how far group commit stretches with more writers.
THREADS_WIDE = 32

Item = TypeVar("Item")


def run_threads(threads: int, items: Sequence[Item], work: Callable[[Item], Any]) -> float:
    """Seconds for ``threads`` threads to call ``work`` on every item (each takes every n-th)."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(part: Sequence[Item]) -> None:
        barrier.wait()
        try:
            for item in part:
                work(item)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=worker, args=(items[k::threads],)) for k in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def make_items(count: int, *, seed: int = 3) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"{rng.getrandbits(128):032x}.bin", os.urandom(OBJECT_BYTES)) for _ in range(count)]


# -- baselines -----------------------------------------------------------------------------


def sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    return db


def sqlite_inserts(path: Path, items: list[tuple[str, bytes]], *, per_transaction: int) -> float:
    """Seconds to insert every item, ``per_transaction`` INSERTs per durable commit."""
    db = sqlite_connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
    start = time.perf_counter()
    for index in range(0, len(items), per_transaction):
        db.execute("BEGIN IMMEDIATE")
        for item in items[index : index + per_transaction]:
            db.execute("INSERT INTO objects (key, data) VALUES (?, ?)", item)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def sqlite_selects(path: Path, items: list[tuple[str, bytes]], threads: int) -> float:
    local = threading.local()
    connections: list[sqlite3.Connection] = []
    lock = threading.Lock()

    def select(item: tuple[str, bytes]) -> None:
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = sqlite_connect(path)
            with lock:
                connections.append(db)
        row = db.execute("SELECT data FROM objects WHERE key = ?", (item[0],)).fetchone()
        assert row[0] == item[1], "the baseline reads what it wrote"

    # Open each thread's connection before the clock starts (tier0's readers are warm too).
    run_threads(threads, items[: threads * 4], select)
    elapsed = run_threads(threads, items, select)
    for db in connections:
        db.close()
    return elapsed


def file_writes(directory: Path, items: list[tuple[str, bytes]], threads: int) -> float:
    def write(item: tuple[str, bytes]) -> None:
        fd = os.open(directory / item[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, item[1])
            os.fsync(fd)
        finally:
            os.close(fd)

    return run_threads(threads, items, write)


def file_reads(directory: Path, items: list[tuple[str, bytes]], threads: int) -> float:
    def read(item: tuple[str, bytes]) -> None:
        with open(directory / item[0], "rb", buffering=0) as handle:
            assert handle.read() == item[1], "the baseline reads what it wrote"

    return run_threads(threads, items, read)


# -- the benchmark -------------------------------------------------------------------------


def run(context: Context) -> Section:
    count = 2_000 if context.quick else 10_000
    section = Section("small", f"Small objects: {count:,} x 4 KiB, embedded SQLite metadata")
    items = make_items(count)
    shuffled = items[:]
    random.Random(5).shuffle(shuffled)

    tier0: dict[tuple[str, int], float] = {}
    for threads in (THREADS, 1, THREADS_WIDE):
        # The puts at 8 threads, the target, are the median of several fresh
        # stores: one 2-second run swung 3,900-5,200 puts/s on this VM.
        rates: list[float] = []
        for _ in range(trials(context.quick) - 1 if threads == THREADS else 0):
            with context.scratch("small") as directory, open_store(directory) as t0:
                t0.create_bucket(BUCKET)
                rates.append(
                    count / run_threads(threads, items, lambda item: t0.put(BUCKET, *item))
                )
        with context.scratch("small") as directory, open_store(directory) as t0:
            t0.create_bucket(BUCKET)
            before = t0.statistics()
            rates.append(count / run_threads(threads, items, lambda item: t0.put(BUCKET, *item)))
            tier0["put", threads] = statistics.median(rates)
            if len(rates) > 1:
                section.facts[f"puts/s, {threads} threads, each trial"] = ", ".join(
                    f"{rate:,.0f}" for rate in rates
                )
            after = t0.statistics()
            commits = after.commits - before.commits
            ops = after.ops_committed - before.ops_committed
            section.facts[
                f"group commit, {threads} thread(s): commits / operations / ops per commit (max)"
            ] = f"{commits:,} / {ops:,} / {ops / max(commits, 1):.1f} ({after.ops_per_commit_max})"

            def get(item: tuple[str, bytes]) -> None:
                if t0.get_bytes(BUCKET, item[0]) != item[1]:
                    raise AssertionError(f"{item[0]} read back different bytes")

            if threads == THREADS_WIDE:
                continue  # puts only: the gets are measured at 8 threads and 1
            run_threads(threads, shuffled[: threads * 4], get)  # open each thread's reader first
            tier0["get", threads] = count / run_threads(threads, shuffled, get)

    base: dict[str, float] = {}
    with context.scratch("small-sqlite") as directory:
        base["sqlite 1/txn"] = count / sqlite_inserts(
            directory / "one.db", items, per_transaction=1
        )
        base["sqlite 100/txn"] = count / sqlite_inserts(
            directory / "batch.db", items, per_transaction=100
        )
        base["sqlite select 1"] = count / sqlite_selects(directory / "batch.db", shuffled, 1)
        base["sqlite select 8"] = count / sqlite_selects(directory / "batch.db", shuffled, THREADS)
    for threads in (1, THREADS):
        with context.scratch("small-files") as directory:
            base[f"files {threads}"] = count / file_writes(directory, items, threads)
            if threads == 1:
                base["file reads 1"] = count / file_reads(directory, shuffled, 1)

    put8, put1 = tier0["put", THREADS], tier0["put", 1]
    target = {"target": "≥ 5,000 puts/s", "met": put8 >= 5000}
    section.add(
        "puts/s, 8 threads",
        put8,
        "/s",
        "SQLite, 1 INSERT per txn, 1 thread",
        base["sqlite 1/txn"],
        **target,
    )
    section.add(
        "puts/s, 8 threads",
        put8,
        "/s",
        "SQLite, 100 INSERTs per txn, 1 thread",
        base["sqlite 100/txn"],
    )
    section.add(
        "puts/s, 8 threads", put8, "/s", "4 KiB files + fsync, 8 threads", base[f"files {THREADS}"]
    )
    section.add(
        f"puts/s, {THREADS_WIDE} threads", tier0["put", THREADS_WIDE], "/s", "SQLite, 1 INSERT per txn, 1 thread",
        base["sqlite 1/txn"],
    )  # fmt: skip
    section.add(
        "puts/s, 1 thread", put1, "/s", "SQLite, 1 INSERT per txn, 1 thread", base["sqlite 1/txn"]
    )
    section.add("puts/s, 1 thread", put1, "/s", "4 KiB files + fsync, 1 thread", base["files 1"])
    section.add(
        "gets/s, 8 threads",
        tier0["get", THREADS],
        "/s",
        "SQLite SELECT by key, 8 threads",
        base["sqlite select 8"],
    )
    section.add(
        "gets/s, 1 thread",
        tier0["get", 1],
        "/s",
        "SQLite SELECT by key, 1 thread",
        base["sqlite select 1"],
    )
    section.add(
        "gets/s, 1 thread",
        tier0["get", 1],
        "/s",
        "4 KiB file reads, 1 thread",
        base["file reads 1"],
    )
    section.notes.append(
        "a tier0 put commits a version row (2 indexes), an event row and an audit row; "
        "the SQLite baseline one row with 1 index"
    )
    context.shared["put_small_per_s"] = put8
    return section
