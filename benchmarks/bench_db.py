"""The DataBase: bulk inserts and analytical queries over a tier0 table.

tier0 keeps a table's rows as Parquet files in the element store and runs
SQL on DuckDB. Baselines, in the same run, over the same rows:

- DuckDB's native insert of the same Arrow table, into a database file
  (checkpointed, so durable like tier0's commit) and in memory;
- the same queries on DuckDB's native table (the engine without tier0), and
  on SQLite (the other engine the issue weighs: SQL straight on the metadata
  backend), which is how the engine was chosen.

Rows: an id, a category (100 values), a float, a timestamp and ~40 bytes of
text; generated with a fixed seed.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from _common import BUCKET, Context, Section, median, open_store, trials

QUERIES = {
    "group by (100 groups)": (
        "SELECT category, count(*) AS n, avg(value) AS mean FROM {t} GROUP BY category"
        " ORDER BY n DESC LIMIT 5"
    ),
    "filtered count": "SELECT count(*) FROM {t} WHERE value > 0.9 AND category = 'c7'",
    "top 10": "SELECT id, value FROM {t} WHERE category = 'c3' ORDER BY value DESC LIMIT 10",
    "point lookup": "SELECT * FROM {t} WHERE id = 123457",
}


def make_rows(count: int, *, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    texts = np.array([f"document {i:08d} about subject {i % 977}" for i in range(count)])
    return pa.table(
        {
            "id": pa.array(np.arange(count, dtype=np.int64)),
            "category": pa.array([f"c{i}" for i in rng.integers(0, 100, count)]),
            "value": pa.array(rng.random(count)),
            "ts": pa.array(
                [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 10**7, count)],
                pa.timestamp("us", tz="UTC"),
            ),
            "text": pa.array(texts),
        }
    )


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(context: Context) -> Section:
    count = 100_000 if context.quick else 1_000_000
    section = Section("db", f"DataBase: {count:,} rows, bulk insert and queries")
    rows = make_rows(count)
    repeat = trials(context.quick, full=5)

    insert_s: list[float] = []
    native_file_s: list[float] = []
    native_memory_s: list[float] = []
    timings: dict[tuple[str, str], float] = {}
    for trial in range(trials(context.quick)):
        with context.scratch("db") as directory, open_store(directory) as t0:
            t0.create_bucket(BUCKET)
            table = t0.create_table(f"{BUCKET}/events", rows.schema)
            start = time.perf_counter()
            inserted = table.insert(rows)
            insert_s.append(time.perf_counter() - start)
            if inserted != count or table.count() != count:
                raise AssertionError(f"inserted {inserted}, table holds {table.count()}")
            if trial == 0:
                for name, sql in QUERIES.items():
                    query = sql.format(t=f"{BUCKET}.events")
                    t0.sql(query)  # warm: the page cache and DuckDB's metadata
                    timings["tier0", name] = best_of(repeat, lambda q=query: t0.sql(q))
                problems = t0.check().problems
                if problems:
                    raise AssertionError(f"check() after the inserts: {problems[:3]}")
        with context.scratch("db-duckdb") as directory:
            native_file_s.append(_duckdb_file_insert(directory / "native.duckdb", rows))
        memory = duckdb.connect()
        start = time.perf_counter()
        memory.execute("CREATE TABLE events AS SELECT * FROM rows")
        native_memory_s.append(time.perf_counter() - start)
        if trial == 0:
            for name, sql in QUERIES.items():
                query = sql.format(t="events")
                timings["duckdb", name] = best_of(
                    repeat, lambda q=query, m=memory: m.sql(q).fetchall()
                )
        memory.close()
    with context.scratch("db-sqlite") as directory:
        sqlite = _sqlite_table(directory / "rows.db", rows)
        for name, sql in QUERIES.items():
            query = sql.format(t="events")
            timings["sqlite", name] = best_of(repeat, lambda q=query: sqlite.execute(q).fetchall())
        sqlite.close()

    section.add_paired(
        "bulk insert from Arrow, rows/s",
        [count / s for s in insert_s],
        "/s",
        "DuckDB native insert into a database file (checkpointed)",
        [count / s for s in native_file_s],
        target_ratio=None,
    )
    section.add_paired(
        "bulk insert from Arrow, rows/s",
        [count / s for s in insert_s],
        "/s",
        "DuckDB native insert in memory",
        [count / s for s in native_memory_s],
    )
    for name in QUERIES:
        tier0_s = timings["tier0", name]
        section.add(
            f"{name}, latency", tier0_s * 1e3, "ms", "DuckDB native table",
            timings["duckdb", name] * 1e3, higher_is_better=False,
        )  # fmt: skip
        section.add(
            f"{name}, latency", tier0_s * 1e3, "ms", "SQLite table, no index",
            timings["sqlite", name] * 1e3, higher_is_better=False,
        )  # fmt: skip
    section.facts["insert: median seconds"] = f"{median(insert_s):.2f}"
    section.notes.append(
        "tier0 writes Parquet (zstd) into the store, durably, and commits the files with"
        " their event; each query reads the table's files through the store (chunks"
        " verified) on an in-memory DuckDB"
    )
    return section


def _duckdb_file_insert(path: Path, rows: pa.Table) -> float:
    connection = duckdb.connect(str(path))
    start = time.perf_counter()
    connection.execute("CREATE TABLE events AS SELECT * FROM rows")
    connection.execute("CHECKPOINT")
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


def _sqlite_table(path: Path, rows: pa.Table) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE events (id INTEGER, category TEXT, value REAL, ts TEXT, text TEXT)")
    columns = [rows.column(name).to_pylist() for name in rows.column_names]
    columns[3] = [value.isoformat() for value in columns[3]]
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", zip(*columns, strict=True))
    db.commit()
    return db
