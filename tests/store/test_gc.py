"""Garbage collection reclaims what nothing references, and never what a write is about to."""

from __future__ import annotations

import os
import pathlib
import random
import threading
import time

import pytest

import tier0
from tier0.store import StoreConfig


def test_gc_spares_chunks_within_the_grace_period(t0: tier0.Tier0) -> None:
    t0.create_bucket("gcb")
    t0.put("gcb", "k", os.urandom(2_000_000))
    t0.delete("gcb", "k")
    assert t0.gc().chunks_deleted == 0  # default grace: an hour
    assert t0.stats().unreferenced_chunks > 0
    report = t0.gc(grace_s=0)
    assert report.chunks_deleted > 0 and report.bytes_freed > 1_900_000
    assert t0.stats().chunk_count == 0
    assert t0.check(deep=True).ok


def test_gc_sweeps_orphan_chunk_files(tmp_path: pathlib.Path) -> None:
    with tier0.open(tmp_path / "data") as t0:
        t0.create_bucket("gcb")
        # A chunk written by a writer that died before its commit: a file with no row.
        from tier0.store import chunk_name, encode_chunk

        encoded = encode_chunk(os.urandom(300_000))
        t0._kernel.chunks.write(chunk_name(encoded.hash), encoded.blob)
        assert t0.check().orphans == 1
        assert t0.gc().orphans_deleted == 0  # too young
        assert t0.gc(grace_s=0).orphans_deleted == 1
        assert t0.check().orphans == 0


@pytest.mark.slow
def test_gc_racing_dedup_writers_never_loses_a_referenced_chunk(tmp_path: pathlib.Path) -> None:
    grace_s = 1.0
    bodies = [os.urandom(random.Random(i).randrange(300_000, 2_000_000)) for i in range(6)]
    config = StoreConfig(gc_grace_s=grace_s)
    stop = threading.Event()
    errors: list[BaseException] = []
    with tier0.open(tmp_path / "data", config=config) as t0:
        t0.create_bucket("gcb")

        def churn(index: int) -> None:
            rng = random.Random(index)
            key = f"k{index}"
            try:
                while not stop.is_set():
                    t0.put("gcb", key, bodies[index])
                    t0.delete("gcb", key)
                    # Re-put the same bytes just as the GC may condemn their chunks.
                    time.sleep(grace_s * rng.uniform(0.8, 1.3))
            except BaseException as error:
                errors.append(error)

        def collect() -> None:
            try:
                while not stop.is_set():
                    t0.gc()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=churn, args=(i,)) for i in range(len(bodies))]
        threads.append(threading.Thread(target=collect))
        for thread in threads:
            thread.start()
        time.sleep(8)
        stop.set()
        for thread in threads:
            thread.join()
        assert errors == []
        for index, body in enumerate(bodies):
            t0.put("gcb", f"final{index}", body)
        t0.gc()
        for index, body in enumerate(bodies):
            assert t0.get_bytes("gcb", f"final{index}") == body
        report = t0.check(deep=True)
        assert report.ok, report.problems
