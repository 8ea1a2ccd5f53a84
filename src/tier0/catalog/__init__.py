"""SQL over the live catalog: one PostgreSQL-flavoured, read-only dialect on every backend.

``Catalog(backend).query("SELECT bucket, sum(size) FROM objects GROUP BY bucket")``
returns a `QueryResult` whose values are the same whether the metadata lives in
SQLite or PostgreSQL. `tier0.catalog._dialect` holds the dialect and its rules,
`tier0.catalog._catalog` running it and the values it returns.
"""

from __future__ import annotations

from tier0.catalog._catalog import Catalog, CatalogStatistics, QueryResult

__all__ = ["Catalog", "CatalogStatistics", "QueryResult"]
