"""Catalog queries over a million objects vs walking and stat-ing the same tree of files.

The data set: objects under ``tenant-{0..9}/{year}/{month}/{day}/{id}.{ext}``
(2023-2024), log-normal sizes (median ~60 kB, a long tail into GB), user
metadata ``{"kind": ...}`` derived from the extension (about a third are
images). tier0 answers through ``t0.sql``; the baseline answers the same
questions by walking the same tree of files with ``os.scandir`` and ``stat``
(sizes are file lengths, set with ftruncate on empty, sparse files; the kind is
an extended attribute ``user.kind``). Both run on warm caches: the files and
the database were just written.

The catalog rows are inserted in bulk through the metadata backend (one
committer transaction per 100,000 rows of ``t0_versions``, inline empty data),
not through ``put``: putting a million objects of these sizes would mean
writing hundreds of GB. The rows are the ones ``put`` writes (same columns,
same JSON, same views), without the event and audit rows.
"""

from __future__ import annotations

import datetime as dt
import heapq
import mimetypes
import multiprocessing
import os
import random
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import BUCKET, Context, Section, disk_bytes, median, open_store, timed, trials
from tier0.meta import dump_json

LOAD_BATCH_ROWS = 100_000
KIND_XATTR = "user.kind"

_EXTENSIONS = {
    # extension: (kind, weight)
    "jpg": ("image", 25), "png": ("image", 8), "webp": ("image", 3), "mp4": ("video", 4),
    "json": ("record", 20), "jsonl": ("record", 5), "parquet": ("table", 10), "csv": ("table", 8),
    "txt": ("text", 10), "md": ("text", 3), "pt": ("model", 2), "safetensors": ("model", 2),
}  # fmt: skip
_SIZE_BYTES_MAX = 50 * 1024**3

#: The questions, as a user asks them of the catalog. The first two read the
#: prefix statistics tier0 keeps in the same transaction as every write; the
#: "scanning objects" variants ask the same of the per-object rows, for scale.
QUERIES = {
    "count/sum by prefix": (
        f"SELECT objects, bytes FROM prefixes WHERE bucket = '{BUCKET}' AND prefix = 'tenant-3/2024/'"
    ),
    "GROUP BY tenant": (
        "SELECT prefix, objects, bytes FROM prefixes"
        f" WHERE bucket = '{BUCKET}' AND depth = 1 ORDER BY prefix"
    ),
    "top 10 images by size": (
        "SELECT key, size FROM objects WHERE metadata->>'kind' = 'image' ORDER BY size DESC LIMIT 10"
    ),
    "count/sum by prefix, scanning objects": (
        f"SELECT count(*), sum(size) FROM objects WHERE bucket = '{BUCKET}' AND key LIKE 'tenant-3/2024/%'"
    ),
    "GROUP BY tenant, scanning objects": (
        "SELECT split_part(key, '/', 1) AS tenant, count(*), sum(size) FROM objects"
        f" WHERE bucket = '{BUCKET}' GROUP BY 1 ORDER BY 1"
    ),
}
#: Queries with a target; the others are reported for comparison.
TARGETED = ("count/sum by prefix", "GROUP BY tenant", "top 10 images by size")
#: The same questions in SQLite's own dialect, run straight on the metadata database:
#: the floor under whatever t0.sql adds.
RAW_SQLITE = {
    **QUERIES,
    "GROUP BY tenant, scanning objects": (
        "SELECT substr(key, 1, instr(key, '/') - 1) AS tenant, count(*), sum(size) FROM objects"
        f" WHERE bucket = '{BUCKET}' GROUP BY 1 ORDER BY 1"
    ),
}

Entry = tuple[str, int, str, int]  # key, size, kind, created_us


# -- the data set ----------------------------------------------------------------------------


def make_entries(count: int, *, seed: int = 1) -> list[Entry]:
    """``count`` objects, sorted by key (so files can be created directory by directory)."""
    rng = random.Random(seed)
    extensions = list(_EXTENSIONS)
    weights = [_EXTENSIONS[e][1] for e in extensions]
    first_day = dt.date(2023, 1, 1)
    days = (dt.date(2024, 12, 31) - first_day).days + 1
    epoch_us = int(dt.datetime(2023, 1, 1, tzinfo=dt.UTC).timestamp()) * 1_000_000
    day_paths = [(first_day + dt.timedelta(d)).strftime("%Y/%m/%d") for d in range(days)]
    entries: list[Entry] = []
    chosen = rng.choices(extensions, weights, k=count)
    for extension in chosen:
        day = rng.randrange(days)
        size = min(int(rng.lognormvariate(11.0, 2.2)), _SIZE_BYTES_MAX)
        key = f"tenant-{rng.randrange(10)}/{day_paths[day]}/{rng.getrandbits(128):032x}.{extension}"
        created_us = epoch_us + day * 86_400_000_000 + rng.randrange(86_400_000_000)
        entries.append((key, size, _EXTENSIONS[extension][0], created_us))
    entries.sort()
    return entries


# -- the baseline: a tree of files ----------------------------------------------------------

_ENTRIES: list[Entry] = []  # handed to forked workers without pickling a million tuples


def _create_range(root: str, start: int, stop: int) -> None:
    made = None
    for key, size, kind, _ in _ENTRIES[start:stop]:
        directory = key.rpartition("/")[0]
        if directory != made:
            os.makedirs(os.path.join(root, directory), exist_ok=True)
            made = directory
        fd = os.open(os.path.join(root, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, size)  # sparse: the length is the size, no blocks
            os.setxattr(fd, KIND_XATTR, kind.encode())
        finally:
            os.close(fd)


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def create_tree(root: Path, entries: list[Entry], *, processes: int = 2) -> None:
    """Create one empty (sparse) file per entry, in ``processes`` processes split by tenant."""
    global _ENTRIES
    _ENTRIES = entries
    bounds = [0]
    for tenant in range(1, processes):
        prefix = f"tenant-{tenant * 10 // processes}/"
        bounds.append(next(i for i, e in enumerate(entries) if e[0] >= prefix))
    bounds.append(len(entries))
    context = multiprocessing.get_context("fork")
    with context.Pool(processes) as pool:
        pool.starmap(
            _create_range, [(str(root), bounds[i], bounds[i + 1]) for i in range(processes)]
        )
    _ENTRIES = []


def remove_tree(root: Path, *, processes: int = 2) -> None:
    parts = [str(p) for p in root.iterdir()]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_remove, parts)
    shutil.rmtree(root, ignore_errors=True)


def walk_files(top: str) -> Iterator[os.DirEntry[str]]:
    """Every regular file below ``top`` (os.scandir, no recursion limit)."""
    stack = [top]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    yield entry


def walk_count_sum(root: Path) -> tuple[int, int]:
    count = total = 0
    for entry in walk_files(str(root / "tenant-3" / "2024")):
        count += 1
        total += entry.stat(follow_symlinks=False).st_size
    return count, total


def walk_group_by_tenant(root: Path) -> list[tuple[str, int, int]]:
    result = []
    for tenant in sorted(os.listdir(root)):
        count = total = 0
        for entry in walk_files(str(root / tenant)):
            count += 1
            total += entry.stat(follow_symlinks=False).st_size
        result.append((tenant, count, total))
    return result


def walk_top_images(root: Path) -> list[tuple[str, int]]:
    prefix = len(str(root)) + 1

    def images() -> Iterator[tuple[str, int]]:
        for entry in walk_files(str(root)):
            if os.getxattr(entry.path, KIND_XATTR) == b"image":
                yield entry.path[prefix:], entry.stat(follow_symlinks=False).st_size

    return heapq.nlargest(10, images(), key=lambda item: item[1])


WALKS = {
    "count/sum by prefix": walk_count_sum,
    "GROUP BY tenant": walk_group_by_tenant,
    "top 10 images by size": walk_top_images,
    "count/sum by prefix, scanning objects": walk_count_sum,
    "GROUP BY tenant, scanning objects": walk_group_by_tenant,
}


# -- tier0 ------------------------------------------------------------------------------------


def load_catalog(t0: Any, entries: list[Entry]) -> None:
    """Insert the entries as current versions, straight through the metadata committer.

    The prefix statistics are kept by the kernel's own accounting (``_account``),
    as a put would keep them.
    """
    from tier0.store._ops import VERSION_COLUMNS, _account

    owner = t0.principal.id
    columns = f"{VERSION_COLUMNS}, inline_data, manifest"
    sql = f"INSERT INTO t0_versions ({columns}) VALUES ({', '.join('?' * len(columns.split(',')))})"
    content_types = {
        e: mimetypes.guess_type(f"x.{e}")[0] or "application/octet-stream" for e in _EXTENSIONS
    }
    metadata = {kind: dump_json({"kind": kind}) for kind, _ in _EXTENSIONS.values()}

    def insert(batch: list[Entry]) -> Any:
        def op(tx: Any) -> None:
            tx.executemany(
                sql,
                [
                    (
                        tx.next_seq(), BUCKET, key, "null", 1, 0, size, 0,
                        f"{random.getrandbits(128):032x}-b3", content_types[key.rpartition(".")[2]],
                        created_us, created_us, owner, metadata[kind], "{}", "{}",
                        f"blake3:{random.getrandbits(256):064x}", "{}", None, b"", None,
                    )
                    for key, size, kind, created_us in batch
                ],
            )  # fmt: skip
            for key, size, _, _ in batch:
                _account(tx, BUCKET, key, None, size)

        return op

    for start in range(0, len(entries), LOAD_BATCH_ROWS):
        t0._kernel.committer.run(insert(entries[start : start + LOAD_BATCH_ROWS]))


def normalise(name: str, rows: list[Any]) -> Any:
    """Query answers in one shape, whatever types the engine returned."""
    rows = [tuple(row) for row in rows]
    if name.startswith("count/sum by prefix"):
        return (int(rows[0][0]), int(rows[0][1] or 0))
    if name.startswith("GROUP BY tenant"):
        return [(str(t).rstrip("/"), int(c), int(s)) for t, c, s in rows]
    return [(str(k), int(s)) for k, s in rows]


def same_answer(name: str, ours: Any, walked: Any) -> bool:
    if name == "top 10 images by size":
        # Ties in size may order differently; the sizes and the set of keys must agree.
        return [s for _, s in ours] == [s for _, s in walked] and {k for k, _ in ours} == {
            k for k, _ in walked
        }
    return bool(ours == walked)


def _has_sql(t0: Any) -> bool:
    try:
        t0.sql("SELECT 1")
    except Exception:
        return False
    return True


def raw_sqlite(database: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    # As on tier0's own connections: only then can LIKE 'prefix%' use the index.
    db.execute("PRAGMA case_sensitive_like = ON")
    return db


# -- the benchmark -------------------------------------------------------------------------


def run(context: Context) -> Section:
    count = 100_000 if context.quick else 1_000_000
    section = Section(
        "catalog", f"Catalog: {count:,} objects, t0.sql vs walking a tree of {count:,} files"
    )
    repeat = trials(context.quick)
    entries = make_entries(count)
    with context.scratch("catalog") as directory:
        root = directory / "tree"
        root.mkdir()
        seconds, _ = timed(lambda: create_tree(root, entries))
        section.facts["baseline tree created in (s, 2 processes)"] = round(seconds, 1)
        with open_store(directory / "store") as t0:
            t0.create_bucket(BUCKET)
            seconds, _ = timed(lambda: load_catalog(t0, entries))
            section.facts["catalog rows bulk-loaded in (s)"] = round(seconds, 1)
            put_rate = context.shared.get("put_small_per_s")
            if put_rate:
                section.facts[
                    "the same through put() at this run's 4 KiB put rate would take (s)"
                ] = round(count / put_rate)
            use_sql = _has_sql(t0)
            if not use_sql:
                section.notes.append(
                    "t0.sql is not available (tier0.catalog is a stub): the tier0 column is raw SQLite "
                    "on the catalog views, hand-written in SQLite's dialect"
                )
            database = Path(t0._kernel.meta.location)
            raw = raw_sqlite(database)
            answers: dict[str, dict[str, Any]] = {}
            for name in QUERIES:
                ours: list[float] = []
                floor: list[float] = []
                # The first run warms SQLite's own page cache; it is reported, not counted.
                for _ in range(repeat + 1):
                    if use_sql:
                        elapsed, result = timed(lambda n=name: t0.sql(QUERIES[n]).rows)
                        ours.append(elapsed)
                        answer = normalise(name, result)
                    elapsed, result = timed(lambda n=name: raw.execute(RAW_SQLITE[n]).fetchall())
                    floor.append(elapsed)
                    if not use_sql:
                        ours.append(elapsed)
                        answer = normalise(name, result)
                answers[name] = {
                    "tier0": median(ours[1:]),
                    "raw": median(floor[1:]),
                    "first": ours[0],
                    "answer": answer,
                }
            raw.close()
            section.facts["metadata database on disk (MB)"] = round(
                disk_bytes(database.parent) / 1e6
            )
        for name, walk in WALKS.items():
            walks = [timed(lambda w=walk: w(root)) for _ in range(repeat)]
            answers[name]["walk"] = median([seconds for seconds, _ in walks])
            answers[name]["same"] = same_answer(name, answers[name]["answer"], walks[0][1])
        seconds, _ = timed(lambda: remove_tree(root))
        section.facts["baseline tree removed in (s)"] = round(seconds, 1)

    engine = "t0.sql" if use_sql else "raw SQLite"
    for name, a in answers.items():
        ratio = a["walk"] / a["tier0"]
        aggregate = name != "top 10 images by size"
        targeted = name in TARGETED
        section.add(
            f"{name} ({engine})", a["tier0"], "s", "os.scandir walk + stat" + (" + getxattr" if not aggregate else ""),
            a["walk"], higher_is_better=False,
            target=("≥ 100x, < 1 s" if aggregate else "≥ 100x") if targeted else "",
            met=(ratio >= 100 and (a["tier0"] < 1 or not aggregate)) if targeted else None,
            note="" if a["same"] else "ANSWERS DIFFER",
        )  # fmt: skip
    section.tables["catalog queries"] = (
        [
            "query",
            f"{engine} (s)",
            f"{engine}, first run (s)",
            "raw SQLite (s)",
            "walk (s)",
            "same answer",
        ],
        [[n, a["tier0"], a["first"], a["raw"], a["walk"], a["same"]] for n, a in answers.items()],
    )
    for name, sql in QUERIES.items():
        section.notes.append(f"{name}: {sql}")
    return section
