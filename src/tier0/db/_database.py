"""Tables and SQL as one principal sees them.

`Database` is a store handle's view of the DataBase: it creates, lists and
drops tables, and runs SQL over tables, files and the catalog (`sql`).
`Table` is one table: bulk inserts from Arrow, pandas, polars or rows;
updates and deletes by predicate; columns added and dropped; reads back as
Arrow. Every change is authorized (``tier0:CreateTable``, ``tier0:WriteTable``,
``tier0:AlterTable``, ``tier0:DropTable``; reads ``tier0:ReadTable``, on
``/<bucket>/<table>``: the bucket's owner may, others need a grant), written
durably, and committed with its event (see `tier0.db._tables`).

Reads see the last committed snapshot when they start, so a query issued
after a write returned sees it; updates and deletes rewrite the data files
their predicate touches (copy on write) and retry on the new snapshot when
a concurrent rewrite got there first.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from tier0.catalog import Catalog
from tier0.db import _search, _sql, _tables, _text
from tier0.db._engine import QUERY_TIMEOUT_S, Engine
from tier0.db._files import Grant, GrantedFile
from tier0.db._schema import (
    SchemaSpec,
    check_column_name,
    conform,
    describe_schema,
    parse_schema,
    to_arrow,
    vector_columns,
)
from tier0.db._sql import FILE_COLUMN, ROWID_COLUMN, TARGET, quote
from tier0.db._tables import Change, DataFile, NewFile, TableInfo
from tier0.db._vectors import HNSW_EF_CONSTRUCTION, HNSW_M, IndexInfo
from tier0.errors import (
    InvalidArgument,
    NoSuchTable,
    SQLSyntaxError,
    TableAlreadyExists,
    TableConflict,
    TableSchemaError,
)
from tier0.store import Store, read_blob, validate_bucket_name, write_blob

#: A data file holds at most this many rows, or about this many bytes of Arrow data.
FILE_ROWS_MAX: Final = 1_000_000
FILE_BYTES_MAX: Final = 128 * 1024**2
ROW_GROUP_ROWS: Final = 128 * 1024
#: Rows inserted since a vector index was built past which an insert folds them in.
FOLD_ROWS_MIN: Final = 10_000
#: Times an update or delete is retried on a new snapshot after a conflict.
REWRITE_ATTEMPTS_MAX: Final = 5
#: Catalog rows a query joining a catalog view with tables may read.
CATALOG_ROWS_MAX: Final = 1_000_000
#: Every data file's hidden column: the row's id, unique in its table, kept by rewrites.
STORED_ROWID: Final = "_rowid"
_CATALOG_TIMES: Final = frozenset({"created", "modified", "time", "initiated"})
#: The search table functions of SQL (`Database._search_sql`): their arguments after
#: the table, the options they take by name, how to call them, and what they take.
_SEARCH_FUNCTIONS: Final = {
    "nearest": (
        ("vector", "k"), ("where", "column", "metric", "ef"),
        "nearest('bucket/table', vector, k [, filter := '...', column := '...'])",
        "a table path, a list of numbers, an integer",
    ),
    "text_search": (
        ("query", "k"), ("where", "column"),
        "text_search('bucket/table', 'query', k [, filter := '...', column := '...'])",
        "a table path, a text, an integer",
    ),
    "hybrid_search": (
        ("query", "vector", "k"), ("where", "text_column", "vector_column", "rrf_k"),
        "hybrid_search('bucket/table', 'query', vector, k [, filter := '...'])",
        "a table path, a text, a list of numbers, an integer",
    ),
}  # fmt: skip
_CATALOG_JSON: Final = frozenset({"metadata", "tags", "detail", "columns"})
#: The catalog views' integer columns (the others are text, times and JSON). Typed
#: explicitly: a view with no visible rows, or a column of NULLs, has no values to
#: infer a type from, and ``sum(size)`` must not depend on whether objects exist.
_CATALOG_INTEGERS: Final = {
    "objects": frozenset({"size", "stored_bytes", "seq"}),
    "versions": frozenset({"is_latest", "is_delete_marker", "size", "stored_bytes", "seq"}),
    "prefixes": frozenset({"depth", "objects", "bytes"}),
    "events": frozenset({"seq", "size"}),
    "audit": frozenset({"id", "allowed"}),
    "tables": frozenset({"rows", "bytes", "snapshot"}),
    "uploads": frozenset({"parts", "bytes"}),
}


class Database:
    """The DataBase as one store handle (one principal) sees it."""

    def __init__(self, store: Store, engine: Engine, catalog: Catalog, visible: Callable[[], Any]):
        self._store = store
        self._engine = engine
        self._catalog = catalog
        #: The buckets the principal may list (None: all), for catalog views.
        self._visible = visible

    # -- tables ----------------------------------------------------------------------------

    def create_table(self, path: str, schema: SchemaSpec, *, exist_ok: bool = False) -> Table:
        """Create table ``bucket/name`` with ``schema`` (see `parse_schema`)."""
        bucket, name = split_table_path(path)
        parsed = parse_schema(schema)
        decision = self._store.authorize_element_write("tier0:CreateTable", bucket, name)
        try:
            self._store.commit_element_write(
                "tier0:CreateTable", bucket, name, decision,
                lambda decided: lambda tx: _tables.create_table(tx, bucket, name, parsed, decided),
            )  # fmt: skip
        except TableAlreadyExists:
            if not exist_ok:
                raise
        return Table(self, bucket, name)

    def table(self, path: str) -> Table:
        """Table ``bucket/name``; `NoSuchTable` if it does not exist."""
        bucket, name = split_table_path(path)
        table = Table(self, bucket, name)
        table.info()
        return table

    def tables(self, bucket: str) -> list[TableInfo]:
        """The tables of ``bucket`` that this principal may read, by name."""
        validate_bucket_name(bucket)
        self._store.head_bucket(bucket)
        with self._store._kernel.meta.reader() as db:
            infos = _tables.list_tables(db, bucket)
        readable = []
        for info in infos:
            try:
                self._store.authorize_element_read("tier0:ReadTable", bucket, info.name)
            except PermissionError:
                continue
            readable.append(info)
        return readable

    def drop_table(self, path: str, *, missing_ok: bool = False) -> None:
        bucket, name = split_table_path(path)
        decision = self._store.authorize_element_write("tier0:DropTable", bucket, name)
        try:
            self._store.commit_element_write(
                "tier0:DropTable", bucket, name, decision,
                lambda decided: lambda tx: _tables.drop_table(tx, bucket, name, decided),
            )  # fmt: skip
        except NoSuchTable:
            if not missing_ok:
                raise

    # -- SQL -------------------------------------------------------------------------------

    def sql(self, query: str, *, timeout_s: float = QUERY_TIMEOUT_S) -> pa.Table:
        """Run ``query`` (one statement or several, separated by ``;``) and return the
        last one's result as Arrow. Writes return one row: ``rows`` affected; DDL none.
        Statements run one after another, each committed when it returns."""
        return self.execute(_sql.parse(query), timeout_s=timeout_s)

    def execute(
        self, statements: Sequence[_sql.Statement], *, timeout_s: float = QUERY_TIMEOUT_S
    ) -> pa.Table:
        """`sql` for statements parsed already (by `tier0.db.parse_sql`)."""
        result = pa.table({})
        for statement in statements:
            result = self._run(statement, timeout_s)
        return result

    def _run(self, statement: _sql.Statement, timeout_s: float) -> pa.Table:
        if statement.kind == "query":
            return self._select(statement.tree, timeout_s)
        assert statement.target is not None
        bucket, name = statement.target
        tree = statement.tree
        if statement.kind == "create":
            return self._create_from_sql(tree, bucket, name, timeout_s)
        if statement.kind == "drop":
            self.drop_table(f"{bucket}/{name}", missing_ok=bool(tree.args.get("exists")))
            return pa.table({})
        table = Table(self, bucket, name)
        if statement.kind == "alter":
            return self._alter_from_sql(table, tree)
        if statement.kind == "insert":
            return _affected(self._insert_from_sql(table, tree, timeout_s))
        where = tree.args.get("where")
        predicate = where.this.sql("duckdb") if where is not None else "true"
        if statement.kind == "delete":
            return _affected(table.delete(predicate, timeout_s=timeout_s))
        values = {}
        for assignment in tree.expressions:
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                raise SQLSyntaxError("UPDATE sets columns: SET column = expression, ...")
            values[assignment.this.name] = assignment.expression.sql("duckdb")
        return _affected(table.update(where=predicate, values_sql=values, timeout_s=timeout_s))

    def _select(self, tree: exp.Expr, timeout_s: float) -> pa.Table:
        with self._binding() as (binder, _):
            return self._engine.query(_sql.bind(tree, binder), timeout_s=timeout_s)

    def _create_from_sql(
        self, tree: exp.Expr, bucket: str, name: str, timeout_s: float
    ) -> pa.Table:
        exists_ok = bool(tree.args.get("exists"))
        source = tree.args.get("expression")
        if source is not None:  # CREATE TABLE ... AS SELECT
            rows = self._select(source, timeout_s)
            try:
                self.create_table(f"{bucket}/{name}", rows.schema)
            except TableAlreadyExists:
                if not exists_ok:
                    raise
                # IF NOT EXISTS leaves an existing table alone, as in PostgreSQL and
                # DuckDB: appending the rows to it would change a table the
                # statement promised not to touch.
                return _affected(0)
            return _affected(Table(self, bucket, name).insert(rows))
        if not isinstance(tree.this, exp.Schema):
            raise SQLSyntaxError("CREATE TABLE bucket.table (column type, ...) or ... AS SELECT")
        columns: list[pa.Field] = []
        for definition in tree.this.expressions:
            if not isinstance(definition, exp.ColumnDef) or definition.args.get("kind") is None:
                raise SQLSyntaxError(f"{definition.sql('duckdb')}: columns are `name type`")
            schema = parse_schema({definition.name: definition.args["kind"].sql("duckdb")})
            not_null = _not_null(definition)
            columns.append(schema.field(0).with_nullable(not not_null))
        self.create_table(f"{bucket}/{name}", pa.schema(columns), exist_ok=exists_ok)
        return pa.table({})

    def _alter_from_sql(self, table: Table, tree: exp.Expr) -> pa.Table:
        for action in tree.args.get("actions") or []:
            if isinstance(action, exp.ColumnDef) and action.args.get("kind") is not None:
                added = parse_schema({action.name: action.args["kind"].sql("duckdb")}).field(0)
                not_null = _not_null(action)
                # NOT NULL goes on to add_columns, which refuses it as the Python API
                # does (existing rows would hold NULL), instead of being dropped.
                table.add_columns(pa.schema([added.with_nullable(not not_null)]))
            elif isinstance(action, exp.Drop) and str(action.args.get("kind")).upper() == "COLUMN":
                table.drop_columns([column.name for column in action.args.get("tables") or []])
            else:
                raise SQLSyntaxError(
                    f"{action.sql('duckdb')}: ALTER TABLE supports ADD COLUMN and DROP COLUMN"
                )
        return pa.table({})

    def _insert_from_sql(self, table: Table, tree: exp.Expr, timeout_s: float) -> int:
        info = table.info()
        names = [c.name for c in tree.this.expressions] if isinstance(tree.this, exp.Schema) else []
        source = tree.args.get("expression")
        if isinstance(source, exp.Values):
            source = exp.select("*").from_(
                exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier("v")))
            )
        if not isinstance(source, exp.Query):
            raise SQLSyntaxError("INSERT INTO bucket.table [(columns)] VALUES ... or SELECT ...")
        rows = self._select(source, timeout_s)
        names = names or info.schema.names[: rows.num_columns]
        if len(names) != rows.num_columns:
            raise TableSchemaError(
                f"INSERT names {len(names)} column(s) but gives {rows.num_columns} value(s) per row"
            )
        return table.insert(rows.rename_columns(names))

    @contextmanager
    def _binding(self) -> Iterator[tuple[_sql.Binder, list[Grant]]]:
        """A binder, and the list of its grants, which last until the block ends."""
        grants: list[Grant] = []

        def table_sql(bucket: str, name: str) -> str:
            info, files = self._readable(bucket, name)
            return self._table_sql(info, files, grants)

        def catalog_sql(view: str) -> str:
            return self._catalog_sql(view, grants)

        def files(url: str) -> list[str]:
            return self._file_urls(url, grants)

        def search_sql(function: str, call: exp.Anonymous) -> str:
            return self._search_sql(function, call, grants)

        binder = _sql.Binder(table=table_sql, catalog=catalog_sql, files=files, search=search_sql)
        try:
            yield binder, grants
        finally:
            for grant in grants:
                grant.revoke()

    def _readable(self, bucket: str, name: str) -> tuple[TableInfo, list[DataFile]]:
        self._store.authorize_element_read("tier0:ReadTable", bucket, name)
        with self._store._kernel.meta.reader() as db:
            return _tables.load_table(db, bucket, name)

    def _table_sql(
        self, info: TableInfo, files: Sequence[DataFile], grants: list[Grant], *,
        with_file: bool = False,
    ) -> str:  # fmt: skip
        """A query over ``files`` with the table's current columns, in order; ``with_file``
        adds each row's file (``__t0_file``: its granted URL) and rowid (``__t0_rowid``)."""
        kernel = self._store._kernel

        def reader(manifest: bytes) -> Callable[[int, int], bytes]:
            return lambda offset, length: read_blob(kernel, manifest, offset, length)

        grant = self._engine.files.grant(
            (f"{file.file_id}.parquet", GrantedFile(file.size, reader(file.manifest)))
            for file in files
        )
        grants.append(grant)
        types = dict(describe_schema(info.schema))

        def projection(present: Sequence[str]) -> list[str]:
            return [
                quote(name) if name in present else f"CAST(NULL AS {types[name]}) AS {quote(name)}"
                for name in info.schema.names
            ]

        parts = []
        if with_file:
            # One SELECT per file: each numbers its rows its own way.
            for file in files:
                url = grant.url(f"{file.file_id}.parquet")
                if file.row_base is None:
                    rowid, options = STORED_ROWID, "filename = true"
                else:
                    rowid, options = (
                        f"{file.row_base} + file_row_number",
                        ("filename = true, file_row_number = true"),
                    )
                columns = [*projection(file.columns), f"filename AS {FILE_COLUMN}",
                           f"{rowid} AS {ROWID_COLUMN}"]  # fmt: skip
                parts.append(f"SELECT {', '.join(columns)} FROM read_parquet('{url}', {options})")
        else:
            groups: dict[tuple[str, ...], list[str]] = {}
            for file in files:
                groups.setdefault(file.columns, []).append(grant.url(f"{file.file_id}.parquet"))
            for present, urls in groups.items():
                listed = ", ".join(f"'{url}'" for url in urls)
                parts.append(
                    f"SELECT {', '.join(projection(present))}"
                    f" FROM read_parquet([{listed}], union_by_name = true)"
                )
        if not parts:
            columns = projection(())
            if with_file:
                columns += [f"CAST(NULL AS VARCHAR) AS {FILE_COLUMN}",
                            f"CAST(NULL AS BIGINT) AS {ROWID_COLUMN}"]  # fmt: skip
            parts.append(f"SELECT {', '.join(columns)} WHERE false")
        return " UNION ALL ".join(parts)

    def _catalog_sql(self, view: str, grants: list[Grant]) -> str:
        """A catalog view's visible rows, handed to DuckDB as Arrow (at most CATALOG_ROWS_MAX)."""
        visible = self._visible()
        result = self._catalog.query(
            f"SELECT * FROM {view}", visible_buckets=visible, rows_max=CATALOG_ROWS_MAX
        )
        if result.truncated:
            raise SQLSyntaxError(
                f"the catalog view {view} has more than {CATALOG_ROWS_MAX:,} rows; join tables"
                " with it in a catalog-only query's result, or filter it first"
            )
        columns: dict[str, list[Any]] = {name: [] for name in result.columns}
        for row in result.rows:
            for name, value in zip(result.columns, row, strict=True):
                columns[name].append(json.dumps(value) if name in _CATALOG_JSON else value)
        integers = _CATALOG_INTEGERS.get(view, frozenset())
        arrays = {
            name: pa.array(values, pa.int64() if name in integers else pa.string())
            for name, values in columns.items()
        }
        buffer = io.BytesIO()
        pq.write_table(pa.table(arrays), buffer)
        data = buffer.getvalue()
        grant = self._engine.files.grant(
            [(f"{view}.parquet", GrantedFile(len(data), lambda o, n: data[o : o + n]))]
        )
        grants.append(grant)
        projection = [
            f"CAST({quote(name)} AS TIMESTAMP) AS {quote(name)}" if name in _CATALOG_TIMES
            else f"CAST({quote(name)} AS JSON) AS {quote(name)}" if name in _CATALOG_JSON
            else quote(name)
            for name in result.columns
        ]  # fmt: skip
        return f"SELECT {', '.join(projection)} FROM read_parquet('{grant.url(view + '.parquet')}')"

    def _search_sql(self, function: str, call: exp.Anonymous, grants: list[Grant]) -> str:
        """A search table function's rows, handed to DuckDB (see `_SEARCH_FUNCTIONS`):

        - ``nearest('bucket/table', vector, k [, filter := ..., column := ..., metric :=
          ..., ef := ...])``: `Table.search`, with ``_distance``;
        - ``text_search('bucket/table', 'query', k [, filter := ..., column := ...])``:
          `Table.text_search`, with ``_score``;
        - ``hybrid_search('bucket/table', 'query', vector, k [, filter := ...,
          text_column := ..., vector_column := ..., rrf_k := ...])``:
          `Table.hybrid_search`, with ``_score``.

        Each argument is a constant or a scalar subquery (the vector of another row, say).
        """
        arguments, options_allowed, usage, described = _SEARCH_FUNCTIONS[function]
        positional = [a for a in call.expressions if not isinstance(a, exp.PropertyEQ)]
        named = {
            str(a.this.this).lower(): a.expression
            for a in call.expressions
            if isinstance(a, exp.PropertyEQ)
        }
        if "filter" in named:  # WHERE is a keyword: SQL callers would have to quote it
            named["where"] = named.pop("filter")
        if len(positional) != 1 + len(arguments) or set(named) - set(options_allowed):
            raise SQLSyntaxError(f"call {usage}")
        path, *values = (self._constant(argument) for argument in positional)
        options = {name: self._constant(value) for name, value in named.items()}
        kinds = {"vector": list, "k": int, "query": str}
        if not isinstance(path, str) or not all(
            isinstance(value, kinds[argument])
            for argument, value in zip(arguments, values, strict=True)
        ):
            raise SQLSyntaxError(f"call {usage}: {described}")
        bucket, name = split_table_path(path)
        table = Table(self, bucket, name)
        if function == "nearest":
            result = table.search(*values, **options)
        elif function == "text_search":
            result = table.text_search(*values, **options)
        else:
            result = table.hybrid_search(*values, **options)
        buffer = io.BytesIO()
        pq.write_table(result, buffer)
        data = buffer.getvalue()
        grant = self._engine.files.grant(
            [(f"{function}.parquet", GrantedFile(len(data), lambda o, n: data[o : o + n]))]
        )
        grants.append(grant)
        return f"SELECT * FROM read_parquet('{grant.url(function + '.parquet')}')"

    def _constant(self, node: exp.Expr) -> Any:
        """The value of a constant argument (a literal, a list, or a scalar subquery)."""
        query = exp.select(exp.alias_(node.copy(), "value"))
        (value,) = self._select(query, QUERY_TIMEOUT_S).column("value").to_pylist()
        return value

    def _file_urls(self, url: str, grants: list[Grant]) -> list[str]:
        """Grant the objects ``url`` names (a key, or a glob) and return their URLs."""
        bucket, pattern = _sql.split_url(url)
        if _sql.glob_prefix(pattern) == pattern:
            keys = [pattern]
        else:
            prefix = _sql.glob_prefix(pattern)
            keys = [
                info.key
                for info in self._store.iter_objects(bucket, prefix=prefix)
                if _sql.glob_matches(pattern, info.key)
            ]
            if not keys:
                raise SQLSyntaxError(f"no object matches {url}")
        files = []
        for key in keys:
            info, read = self._store.open_version(bucket, key)
            files.append((f"{bucket}/{key}", GrantedFile(info.size, read)))
        grant = self._engine.files.grant(files)
        grants.append(grant)
        return [grant.url(name) for name, _ in files]

    def _write_files(
        self, info: TableInfo, rows: pa.Table, rowids: pa.Array | None = None
    ) -> tuple[NewFile, ...]:
        """``rows`` (already conformed) as durable Parquet files: new rows (the commit
        numbers them), or rows keeping their ``rowids`` (stored in the files)."""
        if not rows.num_rows:
            return ()
        if rowids is not None:
            rows = rows.append_column(STORED_ROWID, rowids.cast(pa.int64()))
        per_row = max(1, rows.nbytes // max(rows.num_rows, 1))
        step = max(1, min(FILE_ROWS_MAX, FILE_BYTES_MAX // per_row))
        files = []
        for start in range(0, rows.num_rows, step):
            piece = rows.slice(start, step)
            buffer = io.BytesIO()
            pq.write_table(
                piece, buffer, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                write_statistics=True,
            )  # fmt: skip
            blob = write_blob(self._store._kernel, buffer.getvalue())
            rowid_max = None
            if rowids is not None:
                rowid_max = int(pc.max(piece.column(STORED_ROWID)).as_py())
            files.append(
                NewFile(
                    secrets.token_hex(8), piece.num_rows, blob, tuple(info.schema.names),
                    rowid_max,
                )
            )  # fmt: skip
        return tuple(files)

    def _commit(self, table: Table, action: str, info: TableInfo, change: Change) -> TableInfo:
        bucket, name = table.bucket, table.name
        decision = self._store.authorize_element_write(action, bucket, name)
        result: TableInfo = self._store.commit_element_write(
            action, bucket, name, decision,
            lambda decided: lambda tx: _tables.commit_change(
                tx, bucket, name, info.table_id, change, decided
            ),
        )  # fmt: skip
        return result


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
        more than a fold (FOLD_ROWS_MIN rows, or a tenth of what an index holds)."""
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


def _not_null(definition: exp.ColumnDef) -> bool:
    """Whether a column definition says NOT NULL; any other constraint is refused
    (tables have no keys, defaults or checks yet: better an error than a silent no)."""
    not_null = False
    for constraint in definition.args.get("constraints") or []:
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.NotNullColumnConstraint) and not kind.args.get("allow_null"):
            not_null = True
        else:
            raise SQLSyntaxError(
                f"column {definition.name!r}: {constraint.sql('duckdb')} is not supported"
                " (tables take NOT NULL; no keys, defaults or checks)"
            )
    return not_null


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    return exp.convert(value).sql("duckdb")


def _affected(rows: int) -> pa.Table:
    return pa.table({"rows": pa.array([rows], pa.int64())})


def split_table_path(path: str) -> tuple[str, str]:
    """(bucket, name) of ``bucket/name``; `InvalidArgument` for anything else."""
    if not isinstance(path, str) or path.count("/") != 1:
        raise InvalidArgument(f"a table is named bucket/name, not {path!r}")
    bucket, name = path.split("/")
    validate_bucket_name(bucket)
    check_table_name(name)
    return bucket, name


def check_table_name(name: str) -> None:
    if not name or len(name.encode()) > _tables.TABLE_NAME_BYTES_MAX or not name.isprintable():
        raise InvalidArgument(
            f"table name {name!r}: 1..{_tables.TABLE_NAME_BYTES_MAX} printable bytes, no '/'"
        )
