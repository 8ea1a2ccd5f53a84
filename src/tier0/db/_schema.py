"""Table schemas: Arrow types in, Arrow types stored, rows made to fit them.

A schema is a `pyarrow.Schema`. Users may also give column types as SQL
type names in DuckDB's spelling (``"BIGINT"``, ``"VARCHAR"``, ``"FLOAT[384]"``
for a 384-d vector, ``"INT[]"``, ``"STRUCT(a INT, b VARCHAR)"``,
``"TIMESTAMP"``), which DuckDB itself translates, so SQL ``CREATE TABLE`` and
the Python API agree on every type. Lists are normalised to Arrow's default
child name (``item``) so that equal types compare equal whoever built them.

`conform` turns what a caller inserts (an Arrow table or batch, a pandas or
polars DataFrame, a dict of columns, a list of row dicts) into an Arrow table
of exactly the table's schema: columns in the table's order, missing ones
null, each cast safely to its type. What does not fit raises
`TableSchemaError` naming the column: an unknown column, a value that does
not convert, a vector of the wrong dimension, a null in a non-null column.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from tier0.errors import InvalidArgument, TableSchemaError

COLUMNS_MAX: Final = 4096
COLUMN_NAME_BYTES_MAX: Final = 255
_COLUMN_NAME: Final = re.compile(r"[^\x00-\x1f\"]+")
#: Column names the DataBase keeps for itself (distances and scores in search results).
RESERVED_COLUMNS: Final = frozenset({"_distance", "_score", "_rowid"})

SchemaSpec: TypeAlias = "pa.Schema | Mapping[str, Any] | Sequence[tuple[str, Any]]"


def parse_schema(spec: SchemaSpec) -> pa.Schema:
    """A checked Arrow schema from ``spec`` (a schema, or name → type, types as
    `pyarrow.DataType` or SQL type names); `InvalidArgument` says what is wrong."""
    if isinstance(spec, pa.Schema):
        fields = list(spec)
    else:
        items = spec.items() if isinstance(spec, Mapping) else spec
        fields = []
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise InvalidArgument(f"a column is (name, type), not {item!r}")
            name, kind = item
            check_column_name(name)  # before pa.field, which raises TypeError for a non-str
            fields.append(pa.field(name, _arrow_type(kind, name)))
    if not fields:
        raise InvalidArgument("a table needs at least one column")
    if len(fields) > COLUMNS_MAX:
        raise InvalidArgument(f"a table has at most {COLUMNS_MAX} columns, not {len(fields)}")
    seen: set[str] = set()
    normal = []
    for field in fields:
        check_column_name(field.name)
        if field.name.lower() in seen:
            raise InvalidArgument(f"column {field.name!r} appears twice (names ignore case)")
        seen.add(field.name.lower())
        normal.append(pa.field(field.name, _normal(field.type), nullable=field.nullable))
    return pa.schema(normal)


def check_column_name(name: object) -> None:
    if not isinstance(name, str) or not name or not _COLUMN_NAME.fullmatch(name):
        raise InvalidArgument(
            f"column name {name!r}: use a non-empty name without control characters or '\"'"
        )
    if len(name.encode()) > COLUMN_NAME_BYTES_MAX:
        raise InvalidArgument(
            f"column name {name[:40]!r}...: at most {COLUMN_NAME_BYTES_MAX} bytes"
        )
    if name.lower() in RESERVED_COLUMNS:
        raise InvalidArgument(f"column name {name!r} is reserved for search results")


def _arrow_type(kind: Any, column: str) -> pa.DataType:
    if isinstance(kind, pa.DataType):
        return kind
    if not isinstance(kind, str):
        raise InvalidArgument(
            f"column {column!r}: a type is a pyarrow type or SQL name, not {kind!r}"
        )
    try:
        # Parsed and re-rendered, so the text DuckDB sees is a type and nothing else.
        # Strictly: `exp.DataType.build` ignores what follows a type, so it would
        # take "INT); DROP TABLE x; --" for INT instead of refusing it.
        parsed = sqlglot.parse_one(kind, read="duckdb", into=exp.DataType)
        rendered = parsed.sql("duckdb")
    except (SqlglotError, ValueError) as error:
        raise InvalidArgument(f"column {column!r}: {kind!r} is not a SQL type") from error
    try:
        return _sql_type(rendered)
    except duckdb.Error as error:
        raise InvalidArgument(f"column {column!r}: type {kind!r}: {error}") from error


@functools.lru_cache(maxsize=1024)
def _sql_type(rendered: str) -> pa.DataType:
    cursor = _scratch().cursor()
    try:
        return cursor.sql(f"SELECT CAST(NULL AS {rendered}) AS x").to_arrow_table().schema[0].type
    finally:
        cursor.close()


def _normal(kind: pa.DataType) -> pa.DataType:
    """``kind`` with list children named ``item`` at every depth."""
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_normal(kind.value_type), kind.list_size)
    if pa.types.is_large_list(kind):
        return pa.large_list(_normal(kind.value_type))
    if pa.types.is_list(kind):
        return pa.list_(_normal(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _normal(f.type), f.nullable) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(_normal(kind.key_type), _normal(kind.item_type))
    if pa.types.is_dictionary(kind):
        return _normal(kind.value_type)
    return kind


def serialize_schema(schema: pa.Schema) -> bytes:
    return bytes(schema.serialize())


def deserialize_schema(blob: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(blob))


def describe_schema(schema: pa.Schema) -> list[list[str]]:
    """[[name, SQL type], ...] in DuckDB's spelling, for the catalog's ``tables`` view."""
    return [list(pair) for pair in _describe(serialize_schema(schema))]


@functools.lru_cache(maxsize=256)
def _describe(serialized: bytes) -> tuple[tuple[str, str], ...]:
    # Asking DuckDB costs a connection (~10 ms): once per schema, not per query.
    relation = _scratch().from_arrow(deserialize_schema(serialized).empty_table())
    return tuple(
        (name, str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)
    )


@functools.lru_cache(maxsize=1)
def _scratch() -> duckdb.DuckDBPyConnection:
    """An empty DuckDB that only translates types (no data, no file access)."""
    connection = duckdb.connect()
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def vector_columns(schema: pa.Schema) -> dict[str, int]:
    """Columns that hold fixed-size float vectors, with their dimension."""
    return dict(_vector_columns(schema))


@functools.lru_cache(maxsize=1024)
def _vector_columns(schema: pa.Schema) -> tuple[tuple[str, int], ...]:
    # Asked several times per search: schemas are few, and hash by value.
    return tuple(
        (field.name, field.type.list_size)
        for field in schema
        if pa.types.is_fixed_size_list(field.type) and pa.types.is_floating(field.type.value_type)
    )


def to_arrow(data: Any) -> pa.Table:
    """An Arrow table from what a caller may insert; `InvalidArgument` otherwise."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping | list):
        return _from_python(data)
    to_pandas_module = type(data).__module__.split(".")[0]
    if to_pandas_module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if to_pandas_module == "polars":
        table: pa.Table = data.to_arrow()
        return table
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    raise InvalidArgument(
        "insert an Arrow table or batch, a pandas or polars DataFrame, a dict of columns"
        f" or a list of row dicts, not {type(data).__name__}"
    )


def _from_python(data: Mapping[str, Any] | list[Any]) -> pa.Table:
    if isinstance(data, list) and not all(isinstance(row, Mapping) for row in data):
        raise InvalidArgument("a list of rows holds dicts (column name → value)")
    try:
        if isinstance(data, list):
            # Every key of every row, not `pa.Table.from_pylist`'s keys of the first
            # row only, which silently drops a value whose key the first row lacks.
            names = dict.fromkeys(name for row in data for name in row)
            return pa.table({name: [row.get(name) for row in data] for name in names})
        return pa.table(dict(data))
    except (pa.ArrowException, OverflowError, TypeError) as error:
        # Values Arrow cannot put in one column (1 and "x"), columns of unequal
        # length, an int past 64 bits, a column that is no sequence: the
        # caller's data is not a table, which is theirs to fix, not an internal error.
        raise InvalidArgument(f"the data is not a table of columns: {error}") from error


def conform(data: pa.Table, schema: pa.Schema, *, table: str) -> pa.Table:
    """``data`` as exactly ``schema`` (see the module docstring)."""
    by_name = {name.lower(): name for name in schema.names}
    given: dict[str, pa.ChunkedArray] = {}
    for name, column in zip(data.column_names, data.columns, strict=True):
        target = by_name.get(str(name).lower())
        if target is None:
            raise TableSchemaError(
                f"table {table} has no column {name!r} (its columns: {', '.join(schema.names)})"
            )
        if target in given:
            raise TableSchemaError(f"column {name!r} is given twice")
        given[target] = column
    columns = []
    for field in schema:
        column = given.get(field.name)
        if column is None:
            column = pa.chunked_array([pa.nulls(data.num_rows, field.type)], field.type)
        else:
            column = _cast(column, field, table)
        if not field.nullable and column.null_count:
            raise TableSchemaError(f"column {field.name!r} of {table} may not be null")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, table: str) -> pa.ChunkedArray:
    if column.type == field.type:
        return column
    target = field.type
    vector = pa.types.is_fixed_size_list(target)
    if vector:
        _check_dimension(column, field, table)
    try:
        # Vectors cast unsafely: float64 → float32 rounds, as a vector store does.
        return column.cast(target, safe=not vector)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise TableSchemaError(
            f"column {field.name!r} of {table} is {target}; {column.type} values do not"
            f" convert: {error}"
        ) from error


def _check_dimension(column: pa.ChunkedArray, field: pa.Field, table: str) -> None:
    """Lists of numbers bound for fixed-size vectors must have the vectors' length."""
    dimension = field.type.list_size
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.list_value_length(column)
        wrong = pc.filter(lengths, pc.not_equal(lengths, dimension))
        if len(wrong):
            raise TableSchemaError(
                f"column {field.name!r} of {table} holds {dimension}-d vectors;"
                f" got one of {wrong[0].as_py()} values"
            )
    elif pa.types.is_fixed_size_list(column.type) and column.type.list_size != dimension:
        raise TableSchemaError(
            f"column {field.name!r} of {table} holds {dimension}-d vectors;"
            f" got {column.type.list_size}-d ones"
        )
