"""Table schemas (`tier0.db._schema`): parsing, conforming inserted data, codecs.

Everything runs on real pyarrow and DuckDB: SQL type names are translated by
DuckDB itself, so these tests also pin what DuckDB makes of them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tier0.db._schema import (
    COLUMN_NAME_BYTES_MAX,
    COLUMNS_MAX,
    conform,
    describe_schema,
    deserialize_schema,
    parse_schema,
    serialize_schema,
    to_arrow,
    vector_columns,
)
from tier0.errors import InvalidArgument, TableSchemaError

# --- parse_schema: SQL type names -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("BIGINT", pa.int64()),
        ("INT", pa.int32()),
        ("VARCHAR", pa.string()),
        ("DOUBLE", pa.float64()),
        ("BOOLEAN", pa.bool_()),
        ("BLOB", pa.binary()),
        ("DATE", pa.date32()),
        ("TIMESTAMP", pa.timestamp("us")),
        ("DECIMAL(10, 2)", pa.decimal128(10, 2)),
        ("FLOAT[384]", pa.list_(pa.float32(), 384)),
        ("INT[]", pa.list_(pa.int32())),
        ("INT[][]", pa.list_(pa.list_(pa.int32()))),
        ("STRUCT(a INT, b VARCHAR)", pa.struct([("a", pa.int32()), ("b", pa.string())])),
        ("STRUCT(a INT[])", pa.struct([("a", pa.list_(pa.int32()))])),
        ("MAP(VARCHAR, INT)", pa.map_(pa.string(), pa.int32())),
        ("bigint", pa.int64()),
    ],
)
def test_parse_schema_translates_sql_type_names_as_duckdb_does(
    sql: str, expected: pa.DataType
) -> None:
    schema = parse_schema({"c": sql})
    assert schema.names == ["c"]
    assert schema.field("c").type == expected
    assert schema.field("c").nullable


def test_parse_schema_keeps_column_order_and_accepts_pairs() -> None:
    from_dict = parse_schema({"z": "INT", "a": "VARCHAR", "m": pa.float32()})
    from_pairs = parse_schema([("z", "INT"), ("a", "VARCHAR"), ("m", pa.float32())])
    assert from_dict.names == ["z", "a", "m"]
    assert from_dict == from_pairs
    assert from_dict.field("m").type == pa.float32()


def test_parse_schema_names_list_children_item_whoever_built_them() -> None:
    # pyarrow's default child name is "item"; Parquet readers and pandas often say "element".
    built = pa.schema(
        [
            pa.field("v", pa.list_(pa.field("element", pa.int32()))),
            pa.field("f", pa.list_(pa.field("x", pa.float32()), 3)),
            pa.field("s", pa.struct([("inner", pa.list_(pa.field("element", pa.string())))])),
            pa.field("m", pa.map_(pa.string(), pa.list_(pa.field("element", pa.int64())))),
            pa.field("l", pa.large_list(pa.field("element", pa.int8()))),
        ]
    )
    from_sql = parse_schema(
        {
            "v": "INT[]",
            "f": "FLOAT[3]",
            "s": "STRUCT(inner VARCHAR[])",
            "m": "MAP(VARCHAR, BIGINT[])",
            "l": pa.large_list(pa.int8()),
        }
    )
    parsed = parse_schema(built)
    assert parsed == from_sql
    assert parsed.field("v").type.value_field.name == "item"
    assert parsed.field("f").type.value_field.name == "item"


def test_parse_schema_unwraps_dictionary_types_and_keeps_nullability() -> None:
    schema = parse_schema(
        pa.schema(
            [
                pa.field("tag", pa.dictionary(pa.int8(), pa.string())),
                pa.field("id", pa.int64(), nullable=False),
            ]
        )
    )
    assert schema.field("tag").type == pa.string()
    assert not schema.field("id").nullable
    assert schema.field("tag").nullable


# --- parse_schema: what it refuses -------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"id": "INT", "ID": "BIGINT"},
        [("Text", "VARCHAR"), ("text", "VARCHAR")],
        pa.schema([("a", pa.int32()), ("A", pa.int64())]),
    ],
)
def test_parse_schema_refuses_duplicate_names_ignoring_case(spec: Any) -> None:
    with pytest.raises(InvalidArgument, match="appears twice"):
        parse_schema(spec)


@pytest.mark.parametrize("name", ["_distance", "_score", "_rowid", "_Distance", "_ROWID"])
def test_parse_schema_refuses_reserved_column_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        parse_schema({"id": "INT", name: "DOUBLE"})


@pytest.mark.parametrize(
    "name", ["", 'say "hi"', "tab\there", "new\nline", "x" * (COLUMN_NAME_BYTES_MAX + 1), 7]
)
def test_parse_schema_refuses_bad_column_names(name: Any) -> None:
    with pytest.raises(InvalidArgument, match="column name"):
        parse_schema({name: "INT"})


def test_parse_schema_accepts_names_that_need_quoting() -> None:
    names = ["my column", "ünïcode", "x" * COLUMN_NAME_BYTES_MAX, "a-b.c", "select"]
    assert parse_schema(dict.fromkeys(names, "INT")).names == names


@pytest.mark.parametrize(
    "kind",
    [
        "INT); DROP TABLE x; --",
        "INT; SELECT 1",
        "INT, b INT",
        "INT NOT NULL",
        "NOTATYPE",
        "",
        "x'",
        "1",
        "FLOAT[0]",
        "INT[-1]",
    ],
)
def test_parse_schema_refuses_bad_type_strings(kind: str) -> None:
    with pytest.raises(InvalidArgument, match="'c'"):
        parse_schema({"c": kind})


@pytest.mark.parametrize("kind", [int, 3, None, ["INT"]])
def test_parse_schema_refuses_types_that_are_not_types(kind: Any) -> None:
    with pytest.raises(InvalidArgument, match="pyarrow type or SQL name"):
        parse_schema({"c": kind})


@pytest.mark.parametrize("spec", [{}, [], pa.schema([])])
def test_parse_schema_refuses_no_columns(spec: Any) -> None:
    with pytest.raises(InvalidArgument, match="at least one column"):
        parse_schema(spec)


def test_parse_schema_refuses_too_many_columns() -> None:
    assert len(parse_schema({f"c{i}": pa.int8() for i in range(COLUMNS_MAX)})) == COLUMNS_MAX
    with pytest.raises(InvalidArgument, match=f"at most {COLUMNS_MAX}"):
        parse_schema({f"c{i}": pa.int8() for i in range(COLUMNS_MAX + 1)})


@pytest.mark.parametrize("item", ["id", ("id",), ("id", "INT", "extra"), ["id", "INT"]])
def test_parse_schema_refuses_items_that_are_not_pairs(item: Any) -> None:
    with pytest.raises(InvalidArgument, match="a column is"):
        parse_schema([item])


# --- conform ------------------------------------------------------------------------------

SCHEMA = parse_schema(
    pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("text", pa.string()),
            pa.field("n", pa.int32()),
            pa.field("v", pa.list_(pa.float32(), 3)),
        ]
    )
)


def test_conform_puts_columns_in_table_order_and_fills_missing_with_null() -> None:
    data = pa.table({"n": [7, 8], "id": [1, 2]})
    out = conform(data, SCHEMA, table="b/t")
    assert out.schema == SCHEMA
    assert out.to_pylist() == [
        {"id": 1, "text": None, "n": 7, "v": None},
        {"id": 2, "text": None, "n": 8, "v": None},
    ]


def test_conform_matches_column_names_ignoring_case() -> None:
    out = conform(pa.table({"ID": [5], "Text": ["x"]}), SCHEMA, table="b/t")
    assert out.column_names == SCHEMA.names
    assert out.to_pylist() == [{"id": 5, "text": "x", "n": None, "v": None}]


def test_conform_casts_safely_to_column_types() -> None:
    out = conform(pa.table({"id": pa.array([1], pa.int8()), "n": ["12"]}), SCHEMA, table="b/t")
    assert out.column("id").type == pa.int64()
    assert out.column("n").to_pylist() == [12]


def test_conform_refuses_an_unknown_column_naming_it() -> None:
    with pytest.raises(TableSchemaError, match="has no column 'colour'") as caught:
        conform(pa.table({"id": [1], "colour": ["red"]}), SCHEMA, table="b/t")
    assert "b/t" in str(caught.value)


def test_conform_refuses_a_column_given_twice_in_different_case() -> None:
    data = pa.table([pa.array([1]), pa.array([2])], names=["id", "ID"])
    with pytest.raises(TableSchemaError, match="given twice"):
        conform(data, SCHEMA, table="b/t")


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("n", ["not a number"]),
        ("n", [2**40]),  # past int32: a safe cast refuses to wrap it
        ("id", [1.5]),  # a safe cast refuses to truncate
        ("text", [[1, 2]]),
    ],
)
def test_conform_refuses_values_that_do_not_convert_naming_the_column(
    column: str, values: list[Any]
) -> None:
    columns: dict[str, Any] = {"id": [1] * len(values)}
    columns[column] = pa.array(values)
    data = pa.table(columns)
    with pytest.raises(TableSchemaError, match=f"column '{column}' of b/t"):
        conform(data, SCHEMA, table="b/t")


@pytest.mark.parametrize(
    "vectors",
    [
        pa.array([[1.0, 2.0, 3.0], [1.0, 2.0]]),
        pa.array([[1.0, 2.0, 3.0, 4.0]]),
        pa.array([[1.0, 2.0, 3.0, 4.0]], pa.list_(pa.float32(), 4)),
        pa.array([[]], pa.list_(pa.float64())),
    ],
)
def test_conform_refuses_vectors_of_the_wrong_dimension(vectors: pa.Array) -> None:
    data = pa.table({"id": list(range(len(vectors))), "v": vectors})
    with pytest.raises(TableSchemaError, match="column 'v' of b/t holds 3-d vectors"):
        conform(data, SCHEMA, table="b/t")


def test_conform_casts_float64_lists_to_float32_vectors() -> None:
    data = pa.table({"id": [1, 2, 3], "v": [[0.1, 0.2, 0.3], None, [1, 2, 3]]})
    out = conform(data, SCHEMA, table="b/t")
    assert out.column("v").type == pa.list_(pa.float32(), 3)
    assert vector_columns(out.schema) == {"v": 3}
    first, missing, ints = out.column("v").to_pylist()
    assert first == pytest.approx([0.1, 0.2, 0.3], rel=1e-6)
    assert missing is None
    assert ints == [1.0, 2.0, 3.0]


def test_conform_refuses_null_in_a_non_null_column() -> None:
    with pytest.raises(TableSchemaError, match="column 'id' of b/t may not be null"):
        conform(pa.table({"id": [1, None]}), SCHEMA, table="b/t")
    with pytest.raises(TableSchemaError, match="column 'id' of b/t may not be null"):
        conform(pa.table({"text": ["no id"]}), SCHEMA, table="b/t")


def test_conform_keeps_zero_rows_as_an_empty_table_of_the_schema() -> None:
    out = conform(pa.table({"id": pa.array([], pa.int64())}), SCHEMA, table="b/t")
    assert out.num_rows == 0
    assert out.schema == SCHEMA


# --- to_arrow -----------------------------------------------------------------------------

ROWS = [{"id": 1, "text": "a"}, {"id": 2, "text": None}]


@pytest.mark.parametrize(
    "data",
    [
        pa.table({"id": [1, 2], "text": ["a", None]}),
        pa.record_batch({"id": [1, 2], "text": ["a", None]}),
        pd.DataFrame({"id": [1, 2], "text": ["a", None]}),
        pd.DataFrame({"id": [1, 2], "text": ["a", None]}, index=[10, 20]),
        {"id": [1, 2], "text": ["a", None]},
        ROWS,
        pa.RecordBatchReader.from_batches(
            pa.schema([("id", pa.int64()), ("text", pa.string())]),
            [pa.record_batch({"id": [1, 2], "text": ["a", None]})],
        ),
    ],
    ids=["table", "batch", "pandas", "pandas-index", "columns", "rows", "arrow-stream"],
)
def test_to_arrow_reads_every_accepted_input(data: Any) -> None:
    table = to_arrow(data)
    assert isinstance(table, pa.Table)
    # A pandas index is not a column: it would be an unknown column on insert.
    assert table.column_names == ["id", "text"]
    assert table.to_pylist() == ROWS


@pytest.mark.parametrize(
    "data",
    [
        "id,text\n1,a",
        b"bytes",
        42,
        None,
        (1, 2),
        [{"id": 1}, (2,)],
        [1, 2],
        {"id": [1, 2], "text": ["a"]},
        {"id": 5},
        [{"id": 1}, {"id": "x"}],
        {"id": [2**70]},
    ],
)
def test_to_arrow_refuses_bad_input(data: Any) -> None:
    with pytest.raises(InvalidArgument):
        to_arrow(data)


# --- codecs -------------------------------------------------------------------------------

_NAMES = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"'),
    min_size=1,
    max_size=12,
).filter(lambda name: name.lower() not in {"_distance", "_score", "_rowid"})

_SCALARS = st.sampled_from(
    [
        pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint64(), pa.float32(),
        pa.float64(), pa.string(), pa.binary(), pa.bool_(), pa.date32(), pa.timestamp("us"),
        pa.timestamp("ns"), pa.decimal128(18, 3), pa.time64("us"),
    ]
)  # fmt: skip


def _nested(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    return st.one_of(
        children.map(pa.list_),
        st.tuples(children, st.integers(1, 8)).map(lambda pair: pa.list_(*pair)),
        st.lists(st.tuples(_NAMES, children), min_size=1, max_size=3, unique_by=lambda f: f[0])
        .map(pa.struct),
        st.tuples(st.sampled_from([pa.string(), pa.int64()]), children)
        .map(lambda pair: pa.map_(*pair)),
    )  # fmt: skip


_TYPES = st.recursive(_SCALARS, _nested, max_leaves=6)

_SCHEMAS = st.lists(
    st.tuples(_NAMES, _TYPES, st.booleans()),
    min_size=1,
    max_size=6,
    unique_by=lambda column: column[0].lower(),
).map(lambda columns: pa.schema([pa.field(n, t, nullable=b) for n, t, b in columns]))


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(_SCHEMAS)
def test_serialize_schema_round_trips_generated_schemas(schema: pa.Schema) -> None:
    parsed = parse_schema(schema)
    back = deserialize_schema(serialize_schema(parsed))
    assert back == parsed
    assert [f.nullable for f in back] == [f.nullable for f in schema]
    # Parsing is idempotent: a stored schema parses to itself.
    assert parse_schema(back) == parsed


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(_SCHEMAS)
def test_describe_schema_names_types_that_parse_back_to_the_same_schema(
    schema: pa.Schema,
) -> None:
    # The catalog shows DuckDB's type names; given back to create_table, they
    # must build the very same table, so SQL and Python agree on every type.
    parsed = parse_schema(schema)
    described = describe_schema(parsed)
    assert [name for name, _ in described] == parsed.names
    again = parse_schema({name: sql for name, sql in described})
    assert again == parse_schema(pa.schema([f.with_nullable(True) for f in parsed]))
