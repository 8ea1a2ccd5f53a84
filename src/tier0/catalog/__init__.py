"""SQL over the live catalog: one PostgreSQL-flavoured, read-only dialect on every backend.

``Catalog(backend).query("SELECT bucket, sum(size) FROM objects GROUP BY bucket")``
returns a `QueryResult` whose values are the same whether the metadata lives in
SQLite or PostgreSQL. See `tier0.catalog._sql` for the dialect and its rules.
"""

from __future__ import annotations

from tier0.catalog._sql import Catalog, QueryResult

__all__ = ["Catalog", "QueryResult"]
