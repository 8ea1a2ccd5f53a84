"""Streams: append and consume rates, beside appending the same messages to a local file
with fsync (the floor of a durable log on this disk).

Messages of 256 bytes. Appends: one at a time from one producer (each durable before the
next: a commit, or a write and an fsync), from eight producers at once (tier0 group-commits
them; the file takes each writer's fsync in turn), and in batches of 100 (one commit; one
fsync per 100 lines). Consume: a consumer group reading batches of 1,000 and committing
its offset after each, beside reading the file's lines.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from _common import Context, Section, open_store

MESSAGE = b"m" * 255 + b"\n"
PRODUCERS = 8


def _file_appends(path: Path, count: int, *, threads: int = 1, batch: int = 1) -> float:
    """Messages/s appending ``count`` lines to ``path`` with an fsync per ``batch``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lock = threading.Lock()

    def writer(share: int) -> None:
        for _ in range(0, share, batch):
            data = MESSAGE * batch
            with lock:  # one writer at a time, as a log's appends are ordered
                os.write(fd, data)
                os.fsync(fd)

    started = time.perf_counter()
    workers = [threading.Thread(target=writer, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    os.close(fd)
    return count / elapsed


def _stream_appends(t0: Any, name: str, count: int, *, threads: int = 1, batch: int = 1) -> float:
    t0.streams.create(name)

    def producer(share: int) -> None:
        for _ in range(0, share, batch):
            if batch == 1:
                t0.streams.append(name, MESSAGE)
            else:
                t0.streams.append_many(name, [(MESSAGE, None, None)] * batch)

    started = time.perf_counter()
    workers = [threading.Thread(target=producer, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    assert t0.streams.info(name).next_offset == count
    return count / elapsed


def run(context: Context) -> Section:
    count = 1_000 if context.quick else 4_000
    batched = 20_000 if context.quick else 100_000
    section = Section("streams", "Streams: append and consume, beside a file with fsync")
    with context.scratch("streams") as directory, open_store(directory / "store") as t0:
        log = directory / "file-log"
        rows = [
            ("append, one producer, each durable", count, 1, 1),
            (f"append, {PRODUCERS} producers, each durable", count, PRODUCERS, 1),
            ("append, batches of 100", batched, 1, 100),
        ]
        for index, (measure, n, threads, batch) in enumerate(rows):
            file_rate = _file_appends(log.with_suffix(f".{index}"), n, threads=threads, batch=batch)
            rate = _stream_appends(t0, f"s{index}", n, threads=threads, batch=batch)
            fsyncs = "an fsync per line" if batch == 1 else f"an fsync per {batch} lines"
            section.add(measure, rate, "msg/s", f"file append, {fsyncs}", file_rate)
        # Consume the batched stream with a group, committing after every batch.
        started = time.perf_counter()
        consumed = 0
        while messages := t0.streams.read("s2", group="bench", limit=1000):
            consumed += len(messages)
            t0.streams.commit("s2", "bench", messages[-1].offset + 1)
        consume_rate = consumed / (time.perf_counter() - started)
        assert consumed == batched
        started = time.perf_counter()
        with open(log.with_suffix(".2"), "rb") as handle:
            lines = sum(1 for _ in handle)
        file_read_rate = lines / (time.perf_counter() - started)
        section.add(
            "consume, group batches of 1,000, committed", consume_rate, "msg/s",
            "file read, line by line", file_read_rate,
        )  # fmt: skip
    section.notes.append(
        "messages of 256 bytes; tier0's appends are metadata transactions (SQLite WAL,"
        " synchronous=FULL), concurrent ones group-committed"
    )
    return section
