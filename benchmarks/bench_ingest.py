"""Large objects: put and get throughput, and what the store keeps of them.

Baselines, measured in the same run on the same disk: writing the same bytes
to one file (open, 1 MiB writes, fsync, close) and reading it back in 1 MiB
reads; MD5 alone over the same bytes (what an S3 single-part ETag costs);
zstd level 1 over the same bytes in 1 MiB pieces (what plain compression
keeps). Every tier0 trial writes into a fresh store, so a repeat never
deduplicates against the previous one. Trials alternate baseline and tier0.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import blake3
import zstandard

from _common import (
    BUCKET,
    GB,
    Context,
    MiB,
    Section,
    disk_bytes,
    drop_page_cache,
    open_store,
    timed,
    trials,
)

BLOCK_BYTES = MiB


# -- data sets -------------------------------------------------------------------------------


def random_blocks(total_bytes: int) -> list[bytes]:
    """Incompressible data as 1 MiB blocks."""
    return [os.urandom(BLOCK_BYTES) for _ in range(total_bytes // BLOCK_BYTES)]


def split_blocks(data: bytes) -> list[bytes]:
    return [data[i : i + BLOCK_BYTES] for i in range(0, len(data), BLOCK_BYTES)]


_SERVICES = ["api-gateway", "auth", "orders", "payments", "search", "inventory", "mailer", "reco"]
_LEVELS = ["INFO"] * 80 + ["DEBUG"] * 12 + ["WARN"] * 6 + ["ERROR"] * 2
_METHODS = ["GET"] * 7 + ["POST"] * 2 + ["PUT", "DELETE"]
_ROUTES = [
    "/v1/users/{id}", "/v1/users/{id}/orders", "/v1/orders/{id}", "/v1/search", "/v1/cart/{id}",
    "/v1/products/{id}", "/v1/login", "/healthz", "/v1/payments/{id}/capture", "/v2/reco/{id}",
]  # fmt: skip
_MESSAGES = {
    "INFO": ["request completed", "cache hit", "session refreshed", "order accepted"],
    "DEBUG": ["cache miss, loading from db", "retrying upstream call", "feature flag evaluated"],
    "WARN": ["slow upstream response", "rate limit close to threshold", "deprecated API used"],
    "ERROR": ["upstream timeout", "payment declined by processor", "invalid token signature"],
}


def json_log_blocks(total_bytes: int, *, seed: int = 7) -> list[bytes]:
    """JSON-lines application logs (~250 bytes a line), ``total_bytes`` long, deterministic.

    Fields are drawn in bulk (one C-level call per field and batch), which keeps
    generating 256 MiB to a couple of seconds.
    """
    rng = random.Random(seed)
    hosts = [f"web-{i:02d}" for i in range(24)]
    paths = [route.replace("{id}", str(rng.randrange(1, 200_000))) for route in _ROUTES * 2000]
    latencies = [f"{rng.lognormvariate(2.5, 0.8):.1f}" for _ in range(5000)]
    statuses = {
        level: ("200",) if level in ("INFO", "DEBUG") else ("429", "500", "503")
        for level in _MESSAGES
    }
    lines: list[str] = []
    size = 0
    clock_us = 1_714_521_600_000_000  # 2024-05-01T00:00:00Z
    batch = 10_000
    while size < total_bytes:
        steps = rng.choices(range(1, 800), k=batch)
        levels = rng.choices(_LEVELS, k=batch)
        trace_ids = rng.randbytes(8 * batch).hex()
        for i, (step, level, service, host, method, path, latency, sent) in enumerate(
            zip(
                steps, levels, rng.choices(_SERVICES, k=batch), rng.choices(hosts, k=batch),
                rng.choices(_METHODS, k=batch), rng.choices(paths, k=batch),
                rng.choices(latencies, k=batch), rng.choices(range(200, 60_000), k=batch),
                strict=True,
            )
        ):  # fmt: skip
            clock_us += step
            seconds, micros = divmod(clock_us, 1_000_000)
            day, second = divmod(seconds - 1_714_521_600, 86400)
            lines.append(
                f'{{"ts":"2024-05-{1 + day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:'
                f'{second % 60:02d}.{micros:06d}Z","level":"{level}","service":"{service}",'
                f'"host":"{host}","trace_id":"{trace_ids[16 * i : 16 * i + 16]}","method":"{method}",'
                f'"path":"{path}","status":{statuses[level][i % len(statuses[level])]},'
                f'"latency_ms":{latency},"bytes":{sent},"msg":"{_MESSAGES[level][i % len(_MESSAGES[level])]}"}}\n'
            )
        size += sum(len(line) for line in lines[-batch:])
    return split_blocks("".join(lines).encode()[:total_bytes])


def with_insertions(original: list[bytes], *, seed: int = 11) -> tuple[list[bytes], int]:
    """``original`` with a few random bytes inserted every 2-5 MiB; (blocks, insertions)."""
    rng = random.Random(seed)
    data = b"".join(original)
    pieces: list[bytes] = []
    position = insertions = 0
    while position < len(data):
        step = rng.randint(2 * MiB, 5 * MiB)
        pieces.append(data[position : position + step])
        position += step
        if position < len(data):
            pieces.append(rng.randbytes(rng.randint(8, 64)))
            insertions += 1
    return split_blocks(b"".join(pieces)), insertions


# -- the operations timed ------------------------------------------------------------------


def write_file(path: Path, blocks: Iterable[bytes]) -> None:
    """The baseline write: open, write in 1 MiB blocks, fsync, close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for block in blocks:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path) -> int:
    """The baseline read: 1 MiB reads to the end; returns the byte count."""
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(BLOCK_BYTES):
            total += len(block)
    return total


def get_stream(t0: Any, key: str) -> int:
    total = 0
    with t0.get(BUCKET, key) as reader:
        for block in reader:
            total += len(block)
    return total


def md5_alone(blocks: list[bytes]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def zstd1_bytes(blocks: list[bytes]) -> int:
    compressor = zstandard.ZstdCompressor(level=1)
    return sum(len(compressor.compress(block)) for block in blocks)


def blake3_of(blocks: Iterable[bytes]) -> str:
    digest = blake3.blake3()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def verify(t0: Any, key: str, blocks: list[bytes]) -> bool:
    """The stored object reads back byte-identical (checked untimed, once per data set)."""
    with t0.get(BUCKET, key) as reader:
        return blake3_of(reader) == blake3_of(blocks)


# -- the benchmark -------------------------------------------------------------------------


def gbps(total_bytes: int, seconds: list[float]) -> list[float]:
    """Per-trial rates in GB/s (10^9 bytes per second)."""
    return [total_bytes / s / GB for s in seconds]


def run(context: Context) -> Section:
    quick = context.quick
    total = (64 if quick else 256) * MiB
    label = f"{total // MiB} MiB"
    section = Section(
        "ingest", f"Large-object ingest and read-back ({label} objects, 1 MiB blocks)"
    )
    repeat = trials(quick, full=5)
    section.facts["trials (median reported)"] = repeat
    _random(context, section, total, label, repeat)
    _compressible(context, section, total, label, repeat)
    _half_duplicate(context, section, total // 2, repeat)
    return section


def _random(context: Context, section: Section, total: int, label: str, repeat: int) -> None:
    blocks = random_blocks(total)
    file_s: list[float] = []
    put_s: list[float] = []
    put_md5_s: list[float] = []
    md5_s: list[float] = []
    verified = True
    # The trials' files are deleted only once all have run: on this VM's ext4 (no
    # journal), a file created within ~30 s of a deletion skips over the recently
    # freed inodes (recently_deleted() in the inode allocator), ~0.6 ms a create,
    # so deleting a trial's store cost the next trial's put (a file per chunk) a
    # fifth of its speed, and the single-file baseline nothing.
    with context.scratch("ingest-random") as root:
        for trial in range(repeat):
            directory = root / f"trial-{trial}"
            directory.mkdir()
            baseline = directory / "baseline.bin"
            file_s.append(timed(lambda path=baseline: write_file(path, blocks))[0])
            for md5, times in ((False, put_s), (True, put_md5_s)):
                with open_store(directory / f"store-md5-{md5}") as t0:
                    t0.create_bucket(BUCKET)
                    elapsed, info = timed(lambda m=md5: t0.put(BUCKET, "big", iter(blocks), md5=m))
                    times.append(elapsed)
                    if trial == 0:
                        verified &= verify(t0, "big", blocks)
                        if md5:
                            verified &= info.etag == md5_alone(blocks)
            md5_s.append(timed(lambda: md5_alone(blocks))[0])
    file_rates = gbps(total, file_s)
    row = section.add_paired(
        f"put {label} random", gbps(total, put_s), "GB/s", "file write + fsync", file_rates,
        target_ratio=0.5,
    )  # fmt: skip
    put_md5 = gbps(total, put_md5_s)
    section.add_paired(
        f"put {label} random, md5=True", put_md5, "GB/s", "file write + fsync", file_rates
    )
    section.add_paired(
        f"put {label} random, md5=True", put_md5, "GB/s", "MD5 alone (hashlib, 1 thread)",
        gbps(total, md5_s),
    )  # fmt: skip
    section.facts["random data reads back byte-identical (and md5 ETag correct)"] = verified
    context.shared["put_random_gbps"] = row.value
    _read_back(context, section, blocks, label, repeat)


def _read_back(
    context: Context, section: Section, blocks: list[bytes], label: str, repeat: int
) -> None:
    total = sum(len(b) for b in blocks)
    times: dict[str, list[float]] = {
        "file warm": [],
        "get warm": [],
        "file cold": [],
        "get cold": [],
    }
    with context.scratch("read") as directory:
        path = directory / "baseline.bin"
        write_file(path, blocks)
        with open_store(directory / "store") as t0:
            t0.create_bucket(BUCKET)
            t0.put(BUCKET, "big", iter(blocks))
            read_file(path)  # warm the caches (and the thread pool)
            get_stream(t0, "big")
            for _ in range(repeat):
                times["file warm"].append(timed(lambda: read_file(path))[0])
                times["get warm"].append(timed(lambda: get_stream(t0, "big"))[0])
                drop_page_cache(path)
                times["file cold"].append(timed(lambda: read_file(path))[0])
                drop_page_cache(directory / "store" / "chunks")
                times["get cold"].append(timed(lambda: get_stream(t0, "big"))[0])
    rates = {name: gbps(total, values) for name, values in times.items()}
    section.add_paired(
        f"get {label} (stream), page cache warm", rates["get warm"], "GB/s", "file read, warm",
        rates["file warm"],
    )  # fmt: skip
    section.add_paired(
        f"get {label} (stream), cold", rates["get cold"], "GB/s", "file read, cold", rates["file cold"],
        note="fadvise DONTNEED; the VM host may still cache",
    )  # fmt: skip


def _compressible(context: Context, section: Section, total: int, label: str, repeat: int) -> None:
    elapsed, blocks = timed(lambda: json_log_blocks(total))
    section.facts["JSON-lines log data generated in (s)"] = round(elapsed, 1)
    total = sum(len(b) for b in blocks)
    file_s: list[float] = []
    put_s: list[float] = []
    stored = logical = on_disk = 0
    verified = True
    for trial in range(repeat):
        with context.scratch("ingest-logs") as directory:
            file_s.append(timed(lambda: write_file(directory / "baseline.bin", blocks))[0])
            os.unlink(directory / "baseline.bin")
            with open_store(directory / "store") as t0:
                t0.create_bucket(BUCKET)
                before = t0.stats()
                put_s.append(timed(lambda: t0.put(BUCKET, "logs.jsonl", iter(blocks)))[0])
                after = t0.stats()
                if trial == 0:
                    verified = verify(t0, "logs.jsonl", blocks)
            stored = after.stored_bytes - before.stored_bytes
            logical = after.logical_bytes - before.logical_bytes
            on_disk = disk_bytes(directory / "store" / "chunks")
    zstd_stored = zstd1_bytes(blocks)
    section.add_paired(
        f"put {label} JSON logs",
        gbps(total, put_s),
        "GB/s",
        "file write + fsync",
        gbps(total, file_s),
    )
    section.add(
        "JSON logs stored / logical", stored / logical, "", "zstd -1 per 1 MiB block", zstd_stored / total,
        higher_is_better=False, note="file: 1.00",
    )  # fmt: skip
    section.facts["JSON logs: chunk files on disk / logical"] = round(on_disk / total, 3)
    section.facts["JSON logs read back byte-identical"] = verified


def _half_duplicate(context: Context, section: Section, total: int, repeat: int) -> None:
    original = random_blocks(total)
    copy, insertions = with_insertions(original)
    copy_bytes = sum(len(b) for b in copy)
    label = f"{total // MiB} MiB"
    file_s: list[float] = []
    put_s: list[float] = []
    copy_stored = both_stored = both_logical = 0
    verified = True
    for trial in range(repeat):
        with context.scratch("ingest-dedup") as directory:
            file_s.append(timed(lambda: write_file(directory / "baseline.bin", copy))[0])
            os.unlink(directory / "baseline.bin")
            with open_store(directory / "store") as t0:
                t0.create_bucket(BUCKET)
                start = t0.stats()
                t0.put(BUCKET, "original.bin", iter(original))
                middle = t0.stats()
                put_s.append(timed(lambda: t0.put(BUCKET, "edited.bin", iter(copy)))[0])
                end = t0.stats()
                if trial == 0:
                    verified = verify(t0, "original.bin", original) and verify(
                        t0, "edited.bin", copy
                    )
            copy_stored = end.stored_bytes - middle.stored_bytes
            both_stored = end.stored_bytes - start.stored_bytes
            both_logical = end.logical_bytes - start.logical_bytes
    section.add_paired(
        f"put edited copy of a {label} object", gbps(copy_bytes, put_s), "GB/s",
        "file write + fsync", gbps(copy_bytes, file_s),
        note=f"{insertions} insertions, 1 every 2-5 MiB",
    )  # fmt: skip
    section.add(
        "edited copy: stored / logical", copy_stored / copy_bytes, "", "second file", 1.0,
        higher_is_better=False,
    )  # fmt: skip
    section.add(
        "original + copy: stored / logical", both_stored / both_logical, "", "two files", 1.0,
        higher_is_better=False,
    )  # fmt: skip
    section.facts["share of the edited copy deduplicated"] = round(1 - copy_stored / copy_bytes, 3)
    section.facts["half-duplicate objects read back byte-identical"] = verified
