"""One table: its rows in, out, changed, searched.

`Table` is a handle on ``bucket/name`` for one principal (through its
`Database`): bulk inserts from Arrow, pandas, polars or rows; updates and
deletes by predicate, which rewrite the data files the predicate touches
(copy on write: rows keep their rowids) and retry on the new snapshot when a
concurrent rewrite got there first; columns added and dropped; reads back as
Arrow; vector, full-text and hybrid search (`tier0.db._search`,
`tier0.db._text`). Each call works on the table's latest snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from tier0.db import _search, _sql, _tables, _text
from tier0.db._engine import QUERY_TIMEOUT_S
from tier0.db._schema import (
    SchemaSpec,
    check_column_name,
    conform,
    parse_schema,
    to_arrow,
    vector_columns,
)
from tier0.db._sql import FILE_COLUMN, ROWID_COLUMN, TARGET, quote
from tier0.db._tables import Change, TableInfo
from tier0.db._vectors import HNSW_EF_CONSTRUCTION, HNSW_M, IndexInfo
from tier0.errors import InvalidArgument, TableConflict, TableSchemaError

if TYPE_CHECKING:
    from tier0.db._database import Database

#: Rows inserted since a vector index was built past which an insert folds them in.
FOLD_ROWS_MIN: Final = 10_000
#: Times an update or delete is retried on a new snapshot after a conflict.
REWRITE_ATTEMPTS_MAX: Final = 5


class Table:
    """One table, ``bucket/name``; each call reads or changes its latest snapshot."""

    def __init__(self, database: Database, bucket: str, name: str) -> None:
        self._db = database
        self.bucket = bucket
        self.name = name

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.name}"

    def __repr__(self) -> str:
        return f"Table({self.path!r})"

    def info(self) -> TableInfo:
        """The table as of now (schema, rows, bytes, snapshot); `NoSuchTable`."""
        return self._db._readable(self.bucket, self.name)[0]

    @property
    def schema(self) -> pa.Schema:
        return self.info().schema

    def insert(self, data: Any) -> int:
        """Append ``data`` (Arrow, pandas, polars, a dict of columns or a list of row
        dicts) and return the rows inserted; it must fit the schema (`TableSchemaError`)."""
        rows = to_arrow(data)
        # Decided before any bytes are written, so a denied caller stores nothing.
        self._db._store.authorize_element_write("tier0:WriteTable", self.bucket, self.name)
        for _ in range(REWRITE_ATTEMPTS_MAX):
            info = self.info()
            conformed = conform(rows, info.schema, table=self.path)
            if not conformed.num_rows:
                return 0
            files = self._db._write_files(info, conformed)
            change = Change(
                "TableRowsInserted", add=files, rows_affected=conformed.num_rows,
                schema_read=info.schema,
            )  # fmt: skip
            try:
                after = self._db._commit(self, "tier0:WriteTable", info, change)
            except TableConflict:
                if self.info().schema.equals(info.schema):
                    raise  # not a change of columns: trying again would not help
                continue  # columns were added or dropped meanwhile: conform to the new ones
            self._fold_indexes(after)
            inserted: int = conformed.num_rows
            return inserted
        raise TableConflict(
            f"the columns of table {self.path} kept changing under this insert: retried"
            f" {REWRITE_ATTEMPTS_MAX} times"
        )

    def _fold_indexes(self, info: TableInfo) -> None:
        """Fold new rows into the vector indexes once exact search over them would cost
        more than a fold (FOLD_ROWS_MIN rows, or a tenth of what an index holds); in a
        transaction, once it commits."""
        if self._db._transaction is not None:
            return
        with self._db._store._kernel.meta.reader() as db:
            indexes = _tables.load_indexes(db, info.table_id)
        for index in indexes.values():
            fresh = info.rows - index.rows
            if fresh > max(FOLD_ROWS_MIN, index.rows // 10):
                try:
                    if index.metric == _text.BM25:
                        _text.fold(self, index.column)
                    else:
                        _search.fold(self, index.column)
                except PermissionError:
                    # The rows are committed; a writer who may not alter the table
                    # leaves the fold to one who may (searches stay exact meanwhile).
                    continue

    # -- vectors ---------------------------------------------------------------------------

    def create_index(
        self, column: str | None = None, *, metric: str = "cosine", m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
    ) -> IndexInfo:  # fmt: skip
        """Build an approximate nearest-neighbour index (HNSW) on a vector column (the
        only one by default), replacing any it had; ``metric``: cosine, l2 or dot."""
        if not (4 <= m <= 128 and 8 <= ef_construction <= 1024):
            raise InvalidArgument("m is 4..128 and ef_construction 8..1024")
        params = {"m": m, "ef_construction": ef_construction}
        return _search.create_index(self, column, metric=metric, params=params)

    def optimize(self, column: str | None = None) -> IndexInfo | None:
        """Fold rows written since the index was built into it (rebuilding it when much
        of it is stale); None when the column has no index. ``column`` names a vector or
        text column; by default every text index is brought up to date, then the only
        vector column's index, whose description is returned (or, in a table with no
        vector column, that of its text index, the first by name)."""
        if column is not None:
            if _text.is_text_column(self.schema, column):
                return _text.fold(self, column)
            return _search.fold(self, column)
        texts = sorted(index.column for index in self.indexes() if index.metric == _text.BM25)
        folded = [_text.fold(self, name) for name in texts]
        if folded and not vector_columns(self.schema):
            return folded[0]
        return _search.fold(self, None)

    def indexes(self) -> list[IndexInfo]:
        info = self.info()
        with self._db._store._kernel.meta.reader() as db:
            return list(_tables.load_indexes(db, info.table_id).values())

    def search(
        self, vector: Sequence[float] | Any, k: int = 10, *, where: str | None = None,
        column: str | None = None, metric: str | None = None, ef: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:  # fmt: skip
        """The ``k`` rows nearest ``vector`` (in the vector column, the only one by
        default), nearest first, with their ``_distance``; ``where`` filters rows by
        a SQL predicate first (exactly: selective filters are searched exhaustively).
        ``ef`` trades speed for recall on indexed columns (default 96). ``columns``
        picks the columns returned (all by default; leaving out vector columns makes
        the search much faster)."""
        return _search.search(
            self, vector, k=k, where=where, column=column, metric=metric, ef=ef, columns=columns
        )

    # -- text ------------------------------------------------------------------------------

    def create_text_index(self, column: str | None = None) -> IndexInfo:
        """Build a full-text (BM25) index on a text column (the only VARCHAR one by
        default), replacing any it had: `text_search` then reads postings instead of
        every row's text. Its ``metric`` is ``bm25``; see `tier0.db._text`."""
        return _text.create_text_index(self, column)

    def text_search(
        self, query: str, k: int = 10, *, where: str | None = None, column: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:  # fmt: skip
        """The ``k`` rows that best match ``query`` by BM25 (in the text column, the only
        one by default), best first, with their ``_score``; only rows holding at least
        one of its words. ``where`` filters rows by a SQL predicate (scores stay those of
        the whole table); ``columns`` picks the columns returned. The same answer with
        an index as without.

        >>> docs.text_search("quick brown fox", 5, where="lang = 'en'")  # doctest: +SKIP
        """
        return _text.text_search(self, query, k=k, where=where, column=column, columns=columns)

    def hybrid_search(
        self, text: str, vector: Sequence[float] | Any, k: int = 10, *,
        where: str | None = None, text_column: str | None = None,
        vector_column: str | None = None, rrf_k: int = 60,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:  # fmt: skip
        """The ``k`` best rows by reciprocal rank fusion of `text_search` for ``text`` and
        `search` for ``vector`` (the best max(k, 50) of each, both filtered by ``where``):
        ``_score`` is the sum of ``1 / (rrf_k + rank)`` over the lists a row is in, best
        first."""
        return _text.hybrid_search(
            self, text, vector, k=k, where=where, text_column=text_column,
            vector_column=vector_column, rrf_k=rrf_k, columns=columns,
        )  # fmt: skip

    def to_arrow(
        self, *, where: str | None = None, columns: Sequence[str] | None = None,
        limit: int | None = None, timeout_s: float = QUERY_TIMEOUT_S,
    ) -> pa.Table:  # fmt: skip
        """The rows (``where``: a SQL predicate), all columns or ``columns``, as Arrow."""
        selected = "*" if columns is None else ", ".join(quote(c) for c in columns)
        sql = f"SELECT {selected} FROM {quote(self.bucket)}.{quote(self.name)}"
        if where is not None:
            sql += f" WHERE {where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._db.sql(sql, timeout_s=timeout_s)

    def to_pandas(self, **kwargs: Any) -> Any:
        return self.to_arrow(**kwargs).to_pandas()

    def count(self, where: str | None = None) -> int:
        if where is None:
            return self.info().rows
        sql = f"SELECT count(*) FROM {quote(self.bucket)}.{quote(self.name)} WHERE {where}"
        value: int = self._db.sql(sql).column(0)[0].as_py()
        return int(value)

    def delete(self, where: str, *, timeout_s: float = QUERY_TIMEOUT_S) -> int:
        """Delete the rows where the SQL predicate ``where`` holds; returns how many."""
        return self._rewrite("TableRowsDeleted", where, None, timeout_s)

    def update(
        self, values: Mapping[str, Any] | None = None, where: str = "true", *,
        values_sql: Mapping[str, str] | None = None, timeout_s: float = QUERY_TIMEOUT_S,
    ) -> int:  # fmt: skip
        """Set columns where the SQL predicate ``where`` holds and return how many rows
        changed. ``values`` maps a column to a Python value (stored as it is);
        ``values_sql`` to a SQL expression, which may name columns (``{"n": "n + 1"}``).

        >>> docs.update({"lang": "en"}, "id < 10")  # doctest: +SKIP
        """
        sets = {column: _literal(value) for column, value in (values or {}).items()}
        for column, expression in (values_sql or {}).items():
            if not isinstance(expression, str):
                raise InvalidArgument(f"values_sql[{column!r}] is SQL text, not {expression!r}")
            sets[column] = expression
        if not sets:
            raise InvalidArgument("update needs at least one column to set")
        return self._rewrite("TableRowsUpdated", where, sets, timeout_s)

    def add_columns(self, columns: SchemaSpec) -> TableInfo:
        """Add nullable columns (existing rows hold NULL in them)."""
        added = parse_schema(columns)
        info = self.info()
        existing = {name.lower() for name in info.schema.names}
        for field in added:
            if field.name.lower() in existing:
                raise TableSchemaError(f"table {self.path} has a column {field.name!r} already")
            if not field.nullable:
                raise TableSchemaError(f"column {field.name!r}: added columns must be nullable")
        schema = pa.schema(list(info.schema) + list(added))
        change = Change("TableAltered", schema=schema, schema_read=info.schema)
        return self._db._commit(self, "tier0:AlterTable", info, change)

    def drop_columns(self, names: Sequence[str]) -> TableInfo:
        info = self.info()
        by_name = {name.lower(): name for name in info.schema.names}
        dropped = []
        for name in names:
            check_column_name(name)
            if name.lower() not in by_name:
                raise TableSchemaError(f"table {self.path} has no column {name!r}")
            dropped.append(by_name[name.lower()])
        kept = [field for field in info.schema if field.name not in dropped]
        if not kept:
            raise TableSchemaError(f"table {self.path} would have no columns left: drop the table")
        change = Change(
            "TableAltered", schema=pa.schema(kept), dropped_columns=tuple(dropped),
            schema_read=info.schema,
        )  # fmt: skip
        return self._db._commit(self, "tier0:AlterTable", info, change)

    def _rewrite(
        self, event_type: str, where: str, values: dict[str, Any] | None, timeout_s: float
    ) -> int:
        for _ in range(REWRITE_ATTEMPTS_MAX):
            try:
                return self._rewrite_once(event_type, where, values, timeout_s)
            except TableConflict:
                continue
        raise TableConflict(
            f"table {self.path} kept changing under this {event_type}: retried"
            f" {REWRITE_ATTEMPTS_MAX} times"
        )

    def _rewrite_once(
        self, event_type: str, where: str, values: dict[str, Any] | None, timeout_s: float
    ) -> int:
        database = self._db
        engine = database._engine
        database._store.authorize_element_write("tier0:WriteTable", self.bucket, self.name)
        info, files = database._readable(self.bucket, self.name)
        predicate = f"coalesce(({where}), false)"
        replaced: list[str] = []
        rewritten: list[tuple[pa.Table, pa.ChunkedArray | None]] = []
        with database._binding() as (binder, grants):
            # Which files hold rows the predicate selects, and how many.
            binder.local[TARGET] = database._table_sql(info, files, grants, with_file=True)
            touched = engine.query(
                _sql.bind_template(
                    f"SELECT {FILE_COLUMN} AS f, count(*) AS n FROM {TARGET}"
                    f" WHERE {predicate} GROUP BY 1",
                    binder,
                ),
                timeout_s=timeout_s,
            ).to_pylist()
            hits = {
                str(row["f"]).rsplit("/", 1)[-1].removesuffix(".parquet"): row["n"]
                for row in touched
            }
            for file in files:
                if file.file_id not in hits:
                    continue
                binder.local[TARGET] = database._table_sql(info, [file], grants, with_file=True)
                template = _rewrite_template(info, predicate, values)
                rows = engine.query(_sql.bind_template(template, binder), timeout_s=timeout_s)
                replaced.append(file.file_id)
                # Rows keep their rowids, but rows whose vector changed are new rows.
                rowids = rows.column(ROWID_COLUMN)
                kept = pc.is_valid(rowids)
                for part, ids in (
                    (rows.filter(kept), rowids.filter(kept)),
                    (rows.filter(pc.invert(kept)), None),
                ):
                    user_rows = conform(
                        part.drop_columns([ROWID_COLUMN]), info.schema, table=self.path
                    )
                    rewritten.append((user_rows, ids))
        affected = sum(int(n) for n in hits.values())
        if not affected:
            return 0
        added = tuple(
            new
            for rows, rowids in rewritten
            for new in database._write_files(
                info, rows, None if rowids is None else rowids.combine_chunks()
            )
        )
        change = Change(
            event_type, add=added, remove=tuple(replaced), rows_affected=affected,
            schema_read=info.schema,
        )  # fmt: skip
        database._commit(self, "tier0:WriteTable", info, change)
        return affected


def _rewrite_template(info: TableInfo, predicate: str, values: dict[str, Any] | None) -> str:
    """The query that computes a rewritten data file from the one bound as TARGET.

    Rows keep their rowids, except rows whose vector changes: those get NULL here and
    fresh rowids before they are written, so that no vector index keeps an old vector
    under a live rowid.
    """
    names = info.schema.names
    if values is None:
        projection = ", ".join([*(quote(name) for name in names), ROWID_COLUMN])
        return f"SELECT {projection} FROM {TARGET} WHERE NOT {predicate}"
    by_name = {name.lower(): name for name in names}
    sets = {}
    for column, value in values.items():
        target = by_name.get(column.lower())
        if target is None:
            raise TableSchemaError(f"table {info.path} has no column {column!r}")
        sets[target] = value  # SQL: literals were rendered by `update`
    projection = ", ".join(
        f"CASE WHEN {predicate} THEN ({sets[name]}) ELSE {quote(name)} END AS {quote(name)}"
        if name in sets
        else quote(name)
        for name in names
    )
    moved = set(sets) & set(vector_columns(info.schema))
    rowid = f"CASE WHEN {predicate} THEN NULL ELSE {ROWID_COLUMN} END" if moved else ROWID_COLUMN
    return f"SELECT {projection}, {rowid} AS {ROWID_COLUMN} FROM {TARGET}"


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    return exp.convert(value).sql("duckdb")
