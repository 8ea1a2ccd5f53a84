"""Catalog analytics over 10,000,000 objects: ``t0.sql`` vs the same query straight on SQLite.

The data set is bench_catalog's (``tenant-{0..9}/{year}/{month}/{day}/{id}.{ext}``,
log-normal sizes, user metadata ``{"kind": ...}``), ten times larger, loaded
the same way (catalog rows in bulk through the metadata committer, with the
prefix statistics a put keeps). tier0 answers through ``t0.sql``, which reads
the engine's columnar copy of the catalog (``tier0.db._replica``), brought up
to date from the event log before each query; the baseline runs the same
question in SQLite's dialect straight on the metadata database's views (the
"SQL on the metadata backend" option), on warm caches. Also measured: how
long the copy takes to build on a process's first catalog query, and how long
a query waits to see writes that just returned (read-your-writes).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from _common import BUCKET, Context, Section, disk_bytes, median, open_store, timed, trials
from bench_catalog import load_catalog, make_entries, raw_sqlite

#: name: (t0.sql, in DuckDB's dialect; SQLite's, on the metadata database's views).
QUERIES = {
    "GROUP BY prefix (tenant)": (
        "SELECT split_part(key, '/', 1) AS tenant, count(*), sum(size) FROM objects"
        " GROUP BY 1 ORDER BY 1",
        "SELECT substr(key, 1, instr(key, '/') - 1) AS tenant, count(*), sum(size) FROM objects"
        " GROUP BY 1 ORDER BY 1",
    ),
    "GROUP BY prefix (tenant/year)": (
        "SELECT left(key, 13) AS prefix, count(*), sum(size) FROM objects GROUP BY 1 ORDER BY 1",
        "SELECT substr(key, 1, 13) AS prefix, count(*), sum(size) FROM objects"
        " GROUP BY 1 ORDER BY 1",
    ),
    "GROUP BY user metadata (kind)": (
        "SELECT metadata->>'kind' AS kind, count(*), sum(size) FROM objects GROUP BY 1 ORDER BY 1",
        "SELECT metadata->>'kind' AS kind, count(*), sum(size) FROM objects GROUP BY 1 ORDER BY 1",
    ),
    "top 10 images by size": (
        "SELECT key, size FROM objects WHERE metadata->>'kind' = 'image'"
        " ORDER BY size DESC, key LIMIT 10",
        "SELECT key, size FROM objects WHERE metadata->>'kind' = 'image'"
        " ORDER BY size DESC, key LIMIT 10",
    ),
    "top 10 newest of a tenant": (
        "SELECT key, created FROM objects WHERE key LIKE 'tenant-7/%'"
        " ORDER BY created DESC, key LIMIT 10",
        "SELECT key, created FROM objects WHERE key LIKE 'tenant-7/%'"
        " ORDER BY created DESC, key LIMIT 10",
    ),
    "filtered count (JPEGs over 1 MB)": (
        "SELECT count(*), sum(size) FROM objects"
        " WHERE content_type = 'image/jpeg' AND size > 1000000",
        "SELECT count(*), sum(size) FROM objects"
        " WHERE content_type = 'image/jpeg' AND size > 1000000",
    ),
    "filtered count (a month, any tenant)": (
        "SELECT count(*), sum(size) FROM objects WHERE key LIKE '%/2024/03/%'",
        "SELECT count(*), sum(size) FROM objects WHERE key LIKE '%/2024/03/%'",
    ),
}
TARGET_S = 1.0
SLOW_S = 3.0
LOAD_CHUNK_ROWS = 1_000_000  # entries generated and loaded at a time (bounded memory)


def _answer(rows: list[Any]) -> list[tuple[str, ...]]:
    """Rows in one shape whatever the engine (times and numbers as text)."""
    return [tuple(str(value)[:19] for value in row) for row in rows]


def run(context: Context) -> Section:
    count = 1_000_000 if context.quick else 10_000_000
    section = Section(
        "analytics", f"Catalog analytics: {count:,} objects, t0.sql vs SQL straight on SQLite"
    )
    repeat = trials(context.quick)
    with context.scratch("analytics") as directory, open_store(directory / "store") as t0:
        t0.create_bucket(BUCKET)
        loaded = 0.0
        for chunk in range(0, count, LOAD_CHUNK_ROWS):
            entries = make_entries(min(LOAD_CHUNK_ROWS, count - chunk), seed=chunk + 1)
            loaded += timed(lambda e=entries: load_catalog(t0, e))[0]
        section.facts["catalog rows bulk-loaded in (s)"] = round(loaded, 1)
        database = Path(t0._kernel.meta.location)
        section.facts["metadata database on disk (GB)"] = round(
            disk_bytes(database.parent) / 1e9, 2
        )
        first, _ = timed(lambda: t0.sql("SELECT count(*) FROM objects").rows)
        section.facts["first catalog query, building the columnar copy (s)"] = round(first, 1)
        cache = directory / "store" / "cache"
        section.facts["columnar copy on disk (GB)"] = round(disk_bytes(cache) / 1e9, 2)

        raw = raw_sqlite(database)
        results: dict[str, dict[str, Any]] = {}
        for name, (ours_sql, raw_sql) in QUERIES.items():
            ours: list[float] = []
            floor: list[float] = []
            for _ in range(repeat + 1):  # the first of each warms caches, not counted
                elapsed, our_rows = timed(lambda q=ours_sql: t0.sql(q).rows)
                ours.append(elapsed)
            for _ in range(repeat + 1):
                elapsed, raw_rows = timed(lambda q=raw_sql: raw.execute(q).fetchall())
                floor.append(elapsed)
                if len(floor) >= 2 and elapsed > SLOW_S:
                    break  # a scan of 10M rows in SQLite: one warm run is enough
            results[name] = {
                "tier0": median(ours[1:]),
                "raw": median(floor[1:]),
                "same": _answer(our_rows) == _answer(raw_rows),
            }
        raw.close()

        # Read-your-writes: a put, then a query that must see it (the copy
        # catches up from the event log first).
        waits = []
        for i in range(20 if context.quick else 100):
            key = f"fresh/{i}.txt"
            t0.put(BUCKET, key, b"x")
            elapsed, rows = timed(
                lambda k=key: t0.sql(f"SELECT count(*) FROM objects WHERE key = '{k}'").rows
            )
            assert rows == [(1,)], rows
            waits.append(elapsed)
        batch = 1_000
        for i in range(batch):
            t0.put(BUCKET, f"burst/{i}.txt", b"y")
        caught_up, rows = timed(
            lambda: t0.sql("SELECT count(*) FROM objects WHERE key LIKE 'burst/%'").rows
        )
        assert rows == [(batch,)], rows
        replica = t0._owned.engine().replica
        check = replica.check()
        section.facts["copy check() after the writes"] = "ok" if check.ok else str(check)

    for name, r in results.items():
        section.add(
            f"{name} (t0.sql)", r["tier0"], "s", "the same query on SQLite", r["raw"],
            higher_is_better=False, target="< 1 s", met=r["tier0"] < TARGET_S,
            note="" if r["same"] else "ANSWERS DIFFER",
        )  # fmt: skip
    section.facts["query right after a put (read-your-writes), median / p99 (ms)"] = (
        f"{statistics.median(waits) * 1e3:.1f} / {sorted(waits)[int(len(waits) * 0.99) - 1] * 1e3:.1f}"
    )
    section.facts[f"first query after {batch:,} puts (ms)"] = round(caught_up * 1e3, 1)
    for name, (ours_sql, raw_sql) in QUERIES.items():
        section.notes.append(
            f"{name}: {ours_sql}" + (f" | SQLite: {raw_sql}" if raw_sql != ours_sql else "")
        )
    return section
