"""Inline threshold: at which object size should a put stop inlining into the metadata row?

For each object size, 8 threads put distinct random objects into a fresh
store three ways: with the current ``StoreConfig.inline_bytes_max``, with
forced chunking (``inline_bytes_max=0``: every object becomes a chunk file)
and with forced inlining (a threshold above every size tried). Then each
object is read back once. Reported per cell: puts/s, gets/s, stored bytes
(from ``stats()``) and bytes allocated on disk (metadata database and chunk
files, after closing, which checkpoints the WAL).

A second, smaller pass puts compressible objects (slices of JSON-lines logs)
with forced inlining and forced chunking and reports stored / logical bytes:
chunks are compressed, inline values are stored as they are.

The threshold the data supports is the largest size up to which inlining is
at least as fast as chunking for puts, while gets are not slower either
(within ``TOLERANCE``). Sizes above 256 KiB (the smallest chunk FastCDC cuts)
are measured too, to show where the crossover lies.
"""

from __future__ import annotations

import os
import random
from typing import Any

from _common import BUCKET, Context, KiB, MiB, Section, disk_bytes, open_store
from bench_ingest import json_log_blocks
from bench_small import THREADS, run_threads
from tier0.store import StoreConfig

SIZES_KIB = (1, 4, 16, 32, 64, 128, 256, 512, 1024)
#: Within this fraction, two rates count as equal (this machine's run-to-run noise).
TOLERANCE = 0.10


def _count(size: int, quick: bool) -> int:
    if quick:
        return max(64, min(200, (8 * MiB) // size))
    return max(400, min(2000, (128 * MiB) // size))


def _measure(context: Context, size: int, count: int, inline_bytes_max: int) -> dict[str, Any]:
    rng = random.Random(size)
    items = [(f"{rng.getrandbits(128):032x}.bin", os.urandom(size)) for _ in range(count)]
    with context.scratch("inline") as directory:
        with open_store(directory, inline_bytes_max=inline_bytes_max) as t0:
            t0.create_bucket(BUCKET)
            before = t0.stats()
            put_s = run_threads(THREADS, items, lambda item: t0.put(BUCKET, item[0], item[1]))
            after = t0.stats()

            def get(item: tuple[str, bytes]) -> None:
                if t0.get_bytes(BUCKET, item[0]) != item[1]:
                    raise AssertionError(f"{item[0]} read back different bytes")

            random.Random(1).shuffle(items)
            get_s = run_threads(THREADS, items, get)
        logical = after.logical_bytes - before.logical_bytes
        return {
            "puts_per_s": count / put_s,
            "gets_per_s": count / get_s,
            "stored_per_logical": (after.stored_bytes - before.stored_bytes) / logical,
            "inline_share": (after.inline_bytes - before.inline_bytes) / logical,
            "disk_per_logical": disk_bytes(directory) / logical,
        }


def _stored_json(context: Context, size: int, count: int, inline_bytes_max: int) -> float:
    """Stored / logical bytes of ``count`` distinct JSON-lines objects of ``size`` bytes."""
    text = b"".join(json_log_blocks(size * count, seed=size))
    items = [(f"{i:08d}.jsonl", text[i * size : (i + 1) * size]) for i in range(count)]
    with (
        context.scratch("inline-json") as directory,
        open_store(directory, inline_bytes_max=inline_bytes_max) as t0,
    ):
        t0.create_bucket(BUCKET)
        before = t0.stats()
        run_threads(THREADS, items, lambda item: t0.put(BUCKET, item[0], item[1]))
        after = t0.stats()
    return (after.stored_bytes - before.stored_bytes) / (after.logical_bytes - before.logical_bytes)


def run(context: Context) -> Section:
    current = StoreConfig().inline_bytes_max
    configs = {
        f"current ({current // KiB} KiB)": current,
        "chunk all (0)": 0,
        "inline all (1 MiB)": MiB,
    }
    if context.quick:
        # The current setting takes one of the other two paths at every size: a check
        # worth its time in a full run only.
        del configs[f"current ({current // KiB} KiB)"]
    section = Section(
        "inline",
        f"Inline threshold: 8 threads, distinct random objects, {len(configs)} settings of inline_bytes_max",
    )
    results: dict[tuple[int, str], dict[str, Any]] = {}
    for size_kib in SIZES_KIB:
        size = size_kib * KiB
        count = _count(size, context.quick)
        # Alternate the settings within a size so drift in the machine's load hits all three.
        for name, threshold in configs.items():
            results[size_kib, name] = _measure(context, size, count, threshold) | {"count": count}

    json_count = 16 if context.quick else 64
    json_stored = {
        (size_kib, name): _stored_json(context, size_kib * KiB, json_count, configs[name])
        for size_kib in SIZES_KIB
        for name in ("chunk all (0)", "inline all (1 MiB)")
    }

    columns = [
        "size",
        "objects",
        "setting",
        "puts/s",
        "gets/s",
        "stored/logical",
        "disk/logical",
        "inline share",
        f"JSON stored/logical ({json_count} objects)",
    ]
    cells = []
    for size_kib in SIZES_KIB:
        for name in configs:
            r = results[size_kib, name]
            path = (
                name
                if name != f"current ({current // KiB} KiB)"
                else ("inline all (1 MiB)" if size_kib * KiB <= current else "chunk all (0)")
            )  # the current setting takes one of the two paths measured with JSON
            cells.append([
                f"{size_kib} KiB", r["count"], name, r["puts_per_s"], r["gets_per_s"],
                r["stored_per_logical"], r["disk_per_logical"], r["inline_share"],
                json_stored[size_kib, path],
            ])  # fmt: skip
    section.tables["inline threshold: every cell"] = (columns, cells)

    inline_name, chunk_name = "inline all (1 MiB)", "chunk all (0)"
    supported = 0
    for size_kib in SIZES_KIB:
        inline, chunked = results[size_kib, inline_name], results[size_kib, chunk_name]
        section.add(
            f"puts/s {size_kib} KiB, inlined",
            inline["puts_per_s"],
            "/s",
            "same, chunked",
            chunked["puts_per_s"],
        )
        section.add(
            f"gets/s {size_kib} KiB, inlined",
            inline["gets_per_s"],
            "/s",
            "same, chunked",
            chunked["gets_per_s"],
        )
    for size_kib in SIZES_KIB:  # the smallest sizes first: stop at the first that loses
        inline, chunked = results[size_kib, inline_name], results[size_kib, chunk_name]
        puts_ok = inline["puts_per_s"] >= (1 - TOLERANCE) * chunked["puts_per_s"]
        gets_ok = inline["gets_per_s"] >= (1 - TOLERANCE) * chunked["gets_per_s"]
        if not (puts_ok and gets_ok):
            break
        supported = size_kib
    section.facts["current inline_bytes_max (KiB)"] = current // KiB
    section.facts["largest size up to which inlining is no slower (puts and gets, ±10 %)"] = (
        f"{supported} KiB" if supported else "none"
    )
    section.facts["inline vs chunked put speed-up by size"] = {
        f"{s} KiB": round(
            results[s, inline_name]["puts_per_s"] / results[s, chunk_name]["puts_per_s"], 2
        )
        for s in SIZES_KIB
    }
    section.facts["JSON objects: stored/logical inlined vs chunked, by size"] = {
        f"{s} KiB": f"{json_stored[s, inline_name]:.2f} vs {json_stored[s, chunk_name]:.2f}"
        for s in SIZES_KIB
    }
    context.shared["inline_supported_kib"] = supported
    return section
