"""The DataBase: tables, SQL over tables, files and the catalog, on DuckDB.

A table is ``bucket/name`` with an Arrow schema; its rows are Parquet data
files stored in the element store like objects' bytes (chunked, deduplicated,
durable before commit, garbage-collected), listed in the metadata backend and
changed only by group-committed transactions that also write the change's
event and audit record. Every process and gateway on the same metadata and
chunks sees the same tables at once.

`Engine` is the per-store DuckDB that runs queries; `Database` is one
principal's view (tables, SQL); `Table` one table.

    >>> docs = t0.db.create_table("b/docs", {"id": "BIGINT", "text": "VARCHAR"})  # doctest: +SKIP
    >>> docs.insert([{"id": 1, "text": "hello"}])
    1
    >>> t0.sql("SELECT count(*) FROM b.docs").rows
    [(1,)]
"""

from __future__ import annotations

from tier0.db._database import Database, split_table_path
from tier0.db._engine import Engine, EngineStatistics
from tier0.db._schema import SchemaSpec, parse_schema
from tier0.db._semantic import Embedder, IndexReport, embedder, index_bucket, search_passages
from tier0.db._sql import parse as parse_sql
from tier0.db._table import Table
from tier0.db._tables import TableInfo

__all__ = [
    "Database",
    "Embedder",
    "Engine",
    "EngineStatistics",
    "IndexReport",
    "SchemaSpec",
    "Table",
    "TableInfo",
    "embedder",
    "index_bucket",
    "parse_schema",
    "parse_sql",
    "search_passages",
    "split_table_path",
]
