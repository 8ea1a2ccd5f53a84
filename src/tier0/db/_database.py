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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from tier0.catalog import Catalog
from tier0.catalog._dialect import JSON_COLUMNS
from tier0.db import _sql, _tables
from tier0.db._engine import QUERY_TIMEOUT_S, Engine
from tier0.db._files import Grant, GrantedFile
from tier0.db._replica import REPLICATED_VIEWS, ReplicaCheck
from tier0.db._schema import (
    SchemaSpec,
    describe_schema,
    parse_schema,
)
from tier0.db._sql import FILE_COLUMN, ROWID_COLUMN, quote
from tier0.db._table import Table
from tier0.db._tables import Change, DataFile, NewFile, TableInfo
from tier0.db._transaction import Transaction
from tier0.db._vectors import IndexInfo
from tier0.errors import (
    InvalidArgument,
    NoSuchTable,
    SQLNotAllowed,
    SQLSyntaxError,
    TableAlreadyExists,
    TableSchemaError,
)
from tier0.store import Blob, Store, read_blob, validate_bucket_name, write_blob

#: A data file holds at most this many rows, or about this many bytes of Arrow data.
FILE_ROWS_MAX: Final = 1_000_000
FILE_BYTES_MAX: Final = 128 * 1024**2
ROW_GROUP_ROWS: Final = 128 * 1024
#: Catalog rows a query joining a catalog view with tables may read.
CATALOG_ROWS_MAX: Final = 1_000_000
#: Every data file's hidden column: the row's id, unique in its table, kept by rewrites.
STORED_ROWID: Final = "_rowid"
_CATALOG_TIMES: Final = frozenset({"created", "modified", "time", "initiated", "started", "ended"})
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
_CATALOG_JSON: Final = JSON_COLUMNS
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
    "triggers": frozenset({"after_seq"}),
    "invocations": frozenset({"id", "function_version", "seq", "attempts", "duration_ms"}),
    "functions": frozenset({"version"}),
    "streams": frozenset(
        {"first_offset", "next_offset", "messages", "bytes", "retention_s", "retention_bytes"}
    ),
}


class Database:
    """The DataBase as one store handle (one principal) sees it."""

    def __init__(
        self, store: Store, engine: Engine, catalog: Catalog, visible: Callable[[], Any],
        transaction: Transaction | None = None,
    ) -> None:  # fmt: skip
        self._store = store
        self._engine = engine
        self._catalog = catalog
        #: The buckets the principal may list (None: all), for catalog views.
        self._visible = visible
        #: Set on the Database of a transaction: reads see it, changes are staged in it.
        self._transaction = transaction

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A Database whose table changes commit together when the block ends, or not at
        all if it raises (see `tier0.db._transaction`)::

            with t0.db.transaction() as db:
                db.table("bank/accounts").update({"balance": 90}, where="id = 1")
                db.sql("UPDATE bank.accounts SET balance = balance + 10 WHERE id = 2")

        `TableConflict` at the end if a table written here changed meanwhile.
        """
        if self._transaction is not None:
            raise SQLNotAllowed("a transaction is open already: transactions do not nest")
        age_s_max = self._store._kernel.config.gc_grace_s / 2
        bound = Database(self._store, self._engine, self._catalog, self._visible,
                         Transaction(self, age_s_max=age_s_max))  # fmt: skip
        assert bound._transaction is not None
        try:
            yield bound
        except BaseException:
            bound._transaction.rollback()
            raise
        for info in bound._transaction.commit():
            Table(self, info.bucket, info.name)._fold_indexes(info)

    def check(self) -> ReplicaCheck:
        """The engine's copy of the catalog against the metadata (see
        `tier0.db._replica`), brought up to date first."""
        replica = self._engine.replica
        if replica is None:
            raise InvalidArgument("this engine keeps no copy of the catalog")
        return replica.check()

    def _refuse_in_transaction(self, what: str) -> None:
        if self._transaction is not None:
            raise SQLNotAllowed(f"{what} is not transactional: run it outside BEGIN ... COMMIT")

    # -- tables ----------------------------------------------------------------------------

    def create_table(self, path: str, schema: SchemaSpec, *, exist_ok: bool = False) -> Table:
        """Create table ``bucket/name`` with ``schema`` (see `parse_schema`)."""
        self._refuse_in_transaction("CREATE TABLE")
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
        self._refuse_in_transaction("DROP TABLE")
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
        Statements run one after another, each committed when it returns, except
        between ``BEGIN`` and ``COMMIT`` (or ``ROLLBACK``), which commit together (see
        `transaction`); a transaction begun must end within the same call.

        A query that reads only the catalog's copied views is bound once per text
        (and principal's buckets) and reused: parsing and binding cost more than
        answering it (~2 ms against ~1 ms for a lookup in ``prefixes``)."""
        replica = self._engine.replica
        if replica is None or self._transaction is not None or not isinstance(query, str):
            return self.execute(_sql.parse(query), timeout_s=timeout_s)
        visible = self._visible()
        key = f"{None if visible is None else sorted(visible)}\n{query}"
        bound: str | None = self._engine.bound.get(key)
        if bound is not None:
            replica.sync()
            return self._engine.query(bound, timeout_s=timeout_s)
        statements = _sql.parse(query)
        if len(statements) != 1 or statements[0].kind != "query":
            return self.execute(statements, timeout_s=timeout_s)
        with self._binding() as (binder, _):
            copied_only = _watch_copied_only(binder)
            bound = _sql.bind(statements[0].tree, binder)
            if copied_only():
                self._engine.bound.put(key, bound, len(key) + len(bound))
            return self._engine.query(bound, timeout_s=timeout_s)

    def execute(
        self, statements: Sequence[_sql.Statement], *, timeout_s: float = QUERY_TIMEOUT_S
    ) -> pa.Table:
        """`sql` for statements parsed already (by `tier0.db.parse_sql`)."""
        result = pa.table({})
        position = 0
        while position < len(statements):
            statement = statements[position]
            if statement.kind in ("commit", "rollback"):
                raise SQLSyntaxError(f"{statement.kind.upper()} without BEGIN")
            if statement.kind != "begin":
                result = self._run(statement, timeout_s)
                position += 1
                continue
            if self._transaction is not None:
                raise SQLNotAllowed("a transaction is open already: transactions do not nest")
            end = next(
                (n for n in range(position + 1, len(statements))
                 if statements[n].kind in ("begin", "commit", "rollback")),
                None,
            )  # fmt: skip
            if end is None or statements[end].kind == "begin":
                raise SQLSyntaxError(
                    "BEGIN without COMMIT or ROLLBACK: a transaction ends in the call that"
                    " begins it"
                )
            try:
                with self.transaction() as bound:
                    for inner in statements[position + 1 : end]:
                        result = bound._run(inner, timeout_s)
                    if statements[end].kind == "rollback":
                        raise _RolledBack
            except _RolledBack:
                pass
            position = end + 1
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
        if self._transaction is not None:
            return self._transaction.readable(bucket, name)
        self._store.authorize_element_read("tier0:ReadTable", bucket, name)
        with self._store._kernel.meta.reader() as db:
            return self._engine.tables.load(db, bucket, name)

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
        """A catalog view's visible rows: the engine's copy of the large views brought up
        to date (`tier0.db._replica`), the others read now and handed to DuckDB as
        Parquet (at most CATALOG_ROWS_MAX rows)."""
        visible = self._visible()
        replica = self._engine.replica
        if replica is not None and view in REPLICATED_VIEWS:
            replica.sync()
            return replica.relation(view, visible)
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

    def _save_index(self, table: Table, info: TableInfo, index: IndexInfo, blob: Blob) -> int:
        """Install ``index`` (its bytes durable in ``blob``) on ``table``, replacing the
        column's; returns the sequence number it was installed at."""
        self._refuse_in_transaction("building an index")
        bucket, name = table.bucket, table.name
        decision = self._store.authorize_element_write("tier0:AlterTable", bucket, name)
        built_seq: int = self._store.commit_element_write(
            "tier0:AlterTable", bucket, name, decision,
            lambda decided: lambda tx: _tables.save_index(
                tx, bucket, name, info.table_id, index, blob, decided
            ),
        )  # fmt: skip
        return built_seq

    def _commit(self, table: Table, action: str, info: TableInfo, change: Change) -> TableInfo:
        if self._transaction is not None:
            return self._transaction.stage(table.bucket, table.name, action, change)
        bucket, name = table.bucket, table.name
        decision = self._store.authorize_element_write(action, bucket, name)
        result: TableInfo = self._store.commit_element_write(
            action, bucket, name, decision,
            lambda decided: lambda tx: _tables.commit_change(
                tx, bucket, name, info.table_id, change, decided
            ),
        )  # fmt: skip
        return result


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


def _watch_copied_only(binder: _sql.Binder) -> Callable[[], bool]:
    """Wrap ``binder`` so that the returned function tells whether the query bound
    with it read nothing but the catalog's copied views (and may be reused bound)."""
    other: list[bool] = []
    table, files, search, catalog = binder.table, binder.files, binder.search, binder.catalog

    def note(result: Any) -> Any:
        other.append(True)
        return result

    binder.table = lambda bucket, name: note(table(bucket, name))
    binder.files = lambda url: note(files(url))
    if search is not None:
        binder.search = lambda function, call: note(search(function, call))

    def catalog_sql(view: str) -> str:
        sql = catalog(view)
        return sql if view in REPLICATED_VIEWS else note(sql)

    binder.catalog = catalog_sql
    return lambda: not other


class _RolledBack(Exception):
    """ROLLBACK: leaves the transaction's block without committing."""


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
