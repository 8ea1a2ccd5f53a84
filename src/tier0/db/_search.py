"""Nearest-neighbour search over a table, with or without an index and a filter.

`search` answers with the ``k`` rows whose vectors are nearest the query, in
order, each with its ``_distance``. How it finds them:

- With a ``where`` filter that few rows pass (at most `EXACT_ROWS_MAX`),
  it computes the distance of each of them exactly: an index would have to
  wade through the many rows the filter rejects, and exact is exact.
- Otherwise it asks the column's index (if there is one with the asked
  metric) for candidates, drops those that are stale (their file was
  rewritten) or fail the filter, and asks again for more until ``k`` remain
  or the index is exhausted; rows in files added since the index was built
  are searched exactly and merged in.
- Without an index, every row is searched exactly.

`create_index` builds a column's index over the table as it is; `fold` adds
the files written since (or rebuilds when a quarter of the index is stale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from tier0.db import _tables, _vectors
from tier0.db._schema import vector_columns
from tier0.db._sql import ROWID_COLUMN as ROWID
from tier0.db._sql import TARGET, quote
from tier0.db._vectors import EF_MAX, EXACT_ROWS_MAX, K_MAX, IndexInfo
from tier0.errors import InvalidArgument, TableSchemaError
from tier0.store import read_blob, write_blob

if TYPE_CHECKING:
    from tier0.db._table import Table
    from tier0.db._tables import DataFile, TableInfo

DISTANCE_COLUMN: Final = "_distance"
#: A rebuild (not an incremental fold) once this share of the index is stale.
STALE_SHARE_MAX: Final = 0.25
#: Candidate lists grow by this factor per round when filters or staleness thin them.
_GROWTH: Final = 4


def create_index(
    table: Table, column: str | None, *, metric: str, params: dict[str, Any]
) -> IndexInfo:
    _vectors.check_metric(metric)
    database = table._db
    database._store.authorize_element_write("tier0:AlterTable", table.bucket, table.name)
    info, files = database._readable(table.bucket, table.name)
    column = _vector_column(info, column)
    rowids, vectors = _vectors_of(table, info, files, column)
    index = _vectors.build(vectors, rowids, metric, params)
    # Rows committed after this snapshot get rowids from info.next_rowid up.
    return _save(table, info, column, metric, params, len(rowids), info.next_rowid - 1, index)


def fold(table: Table, column: str | None = None) -> IndexInfo | None:
    """Bring the column's index up to date with the table; None if it has none."""
    database = table._db
    database._store.authorize_element_write("tier0:AlterTable", table.bucket, table.name)
    info, files = database._readable(table.bucket, table.name)
    column = _vector_column(info, column)
    current = _indexes(table, info).get(column)
    if current is None:
        return None
    covered = _count(table, info, files, f"{ROWID} <= {current.rowid_max}", column)
    if current.rows - covered > STALE_SHARE_MAX * max(current.rows, 1):
        return create_index(table, column, metric=current.metric, params=current.params)
    rowids, vectors = _vectors_of(table, info, files, column, rowid_above=current.rowid_max)
    if not len(rowids):
        return current
    index = _vectors.deserialize(_vectors.serialize(_load(table, current)))  # a copy: never
    _vectors.add(index, vectors, rowids, current.metric)  # mutate a cached index
    return _save(
        table, info, column, current.metric, current.params, current.rows + len(rowids),
        info.next_rowid - 1, index,
    )  # fmt: skip


def search(
    table: Table,
    vector: Sequence[float] | np.ndarray,
    *,
    k: int,
    where: str | None,
    column: str | None,
    metric: str | None,
    ef: int | None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    check_k(k)
    info, files = table._db._readable(table.bucket, table.name)
    hits = nearest_hits(table, info, files, vector, k=k, where=where, column=column,
                        metric=metric, ef=ef)  # fmt: skip
    return _rows(table, info, files, hits, _columns(info, columns))


def nearest_hits(
    table: Table,
    info: TableInfo,
    files: Sequence[DataFile],
    vector: Sequence[float] | np.ndarray,
    *,
    k: int,
    where: str | None,
    column: str | None,
    metric: str | None = None,
    ef: int | None = None,
) -> list[Hit]:
    """The ``k`` nearest rows of the snapshot ``info``/``files`` as (rowid, distance),
    nearest first (see the module docstring for how they are found)."""
    if ef is not None and (
        not isinstance(ef, int) or isinstance(ef, bool) or not 1 <= ef <= EF_MAX
    ):
        raise InvalidArgument(f"ef is 1..{EF_MAX}, not {ef!r}")
    column = _vector_column(info, column)
    query = _query_vector(column, vector_columns(info.schema)[column], vector)
    index = _indexes(table, info).get(column)
    metric = _vectors.check_metric(metric or (index.metric if index else "cosine"))
    if index is not None and index.metric != metric:
        index = None  # an index answers for its own metric only
    if index is None or (
        where is not None and _count(table, info, files, where, column) <= EXACT_ROWS_MAX
    ):
        return _exact(table, info, files, column, query, k, metric, where, None)
    hits = _exact(table, info, files, column, query, k, metric, where, index.rowid_max)
    hits += _approximate(table, info, files, index, query, k, ef, where)
    hits.sort(key=lambda hit: hit[1])
    return hits[:k]


def _query_vector(column: str, dimension: int, vector: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as error:
        raise TableSchemaError(
            f"column {column!r} holds {dimension}-d vectors: search with {dimension} finite"
            f" numbers ({error})"
        ) from error
    if query.shape != (dimension,):
        raise TableSchemaError(
            f"column {column!r} holds {dimension}-d vectors: search with {dimension} finite"
            f" numbers, not {query.shape[0]}"
        )
    if not np.all(np.isfinite(query)):
        raise TableSchemaError(
            f"the query vector for column {column!r} holds NaN or infinity: search with"
            f" {dimension} finite numbers"
        )
    return query


def _columns(info: TableInfo, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return list(info.schema.names)
    by_name = {name.lower(): name for name in info.schema.names}
    chosen = []
    for name in columns:
        if not isinstance(name, str) or name.lower() not in by_name:
            raise TableSchemaError(f"table {info.path} has no column {name!r}")
        chosen.append(by_name[name.lower()])
    return chosen


# -- the parts -----------------------------------------------------------------------------

Hit = tuple[int, float]  # (rowid, distance)


def _approximate(
    table: Table,
    info: TableInfo,
    files: Sequence[DataFile],
    index_info: IndexInfo,
    query: np.ndarray,
    k: int,
    ef: int | None,
    where: str | None,
) -> list[Hit]:
    """The ``k`` nearest live rows (passing ``where``) the index finds."""
    index = _load(table, index_info)
    total = index.ntotal
    if not total:  # built over no vectors (an empty table): faiss refuses k = 0
        return []
    want = k
    while True:
        distances, rowids = _vectors.ann(
            index, query, min(want, total), index_info.metric,
            max(ef or _vectors.HNSW_EF_SEARCH, want),
        )  # fmt: skip
        candidates = {int(r): float(d) for r, d in zip(rowids, distances, strict=True) if r >= 0}
        if where is None:
            live = _live_by_files(table, info, files, list(candidates))
        else:
            live = _live(table, info, files, list(candidates), where)
        hits = sorted(((rowid, candidates[rowid]) for rowid in live), key=lambda hit: hit[1])
        if len(hits) >= k or want >= total:
            return hits[:k]
        want = min(want * _GROWTH, total)


def _exact(
    table: Table,
    info: TableInfo,
    files: Sequence[DataFile],
    column: str,
    query: np.ndarray,
    k: int,
    metric: str,
    where: str | None,
    rowid_above: int | None,
) -> list[Hit]:
    rowids, vectors = _vectors_of(table, info, files, column, where=where, rowid_above=rowid_above)
    distances, positions = _vectors.exact(vectors, query, k, metric)
    return [(int(rowids[p]), float(d)) for d, p in zip(distances, positions, strict=True)]


def _vectors_of(
    table: Table,
    info: TableInfo,
    files: Sequence[DataFile],
    column: str,
    *,
    where: str | None = None,
    rowid_above: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, vectors) of the rows with a non-null ``column`` (passing ``where``,
    with rowids above ``rowid_above``)."""
    dimension = vector_columns(info.schema)[column]
    condition = f"{quote(column)} IS NOT NULL"
    if rowid_above is not None:
        files = [file for file in files if file.rowid_max > rowid_above]
        condition += f" AND {ROWID} > {rowid_above}"
    if where is not None:
        condition += f" AND coalesce(({where}), false)"
    if not files:
        return np.empty(0, np.int64), np.empty((0, dimension), np.float32)
    if where is None and rowid_above is not None:
        # Rows newer than the index: searched exactly on every query until folded in,
        # so kept decoded (files never change).
        parts = [_file_vectors(table, info, file, column) for file in files]
        rowids = np.concatenate([part[0] for part in parts])
        vectors = np.concatenate([part[1] for part in parts])
        newer = rowids > rowid_above
        return rowids[newer], vectors[newer]
    result = _query(table, info, files, f"SELECT {ROWID}, {quote(column)} FROM {TARGET}"
                    f" WHERE {condition}")  # fmt: skip
    return _decode_vectors(result, dimension)


def _decode_vectors(result: pa.Table, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    rowids = result.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = result.column(1).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return rowids, flat.reshape(-1, dimension).astype(np.float32, copy=False)


def _file_vectors(
    table: Table, info: TableInfo, file: DataFile, column: str
) -> tuple[np.ndarray, np.ndarray]:
    cache = table._db._engine.decoded
    key = f"vectors {file.file_id} {column}"
    cached: tuple[np.ndarray, np.ndarray] | None = cache.get(key)
    if cached is None:
        result = _query(
            table, info, [file],
            f"SELECT {ROWID}, {quote(column)} FROM {TARGET} WHERE {quote(column)} IS NOT NULL",
            trusted=True,
        )  # fmt: skip
        cached = _decode_vectors(result, vector_columns(info.schema)[column])
        cache.put(key, cached, cached[0].nbytes + cached[1].nbytes)
    return cached


def _count(
    table: Table, info: TableInfo, files: Sequence[DataFile], where: str, column: str
) -> int:
    """Rows with a vector in ``column`` that pass ``where``."""
    result = _query(
        table, info, files,
        f"SELECT count(*) FROM {TARGET} WHERE {quote(column)} IS NOT NULL"
        f" AND coalesce(({where}), false)",
    )  # fmt: skip
    return int(result.column(0)[0].as_py())


def _live(
    table: Table, info: TableInfo, files: Sequence[DataFile], rowids: list[int],
    where: str | None,
) -> set[int]:  # fmt: skip
    """Those of ``rowids`` that are rows of the table now (and pass ``where``)."""
    if not rowids:
        return set()
    condition = f"{ROWID} IN ({', '.join(map(str, rowids))})"
    if where is not None:
        condition += f" AND coalesce(({where}), false)"
    result = _query(table, info, _holding(files, rowids), f"SELECT {ROWID} FROM {TARGET}"
                    f" WHERE {condition}")  # fmt: skip
    return set(result.column(0).to_pylist())


def _live_by_files(
    table: Table, info: TableInfo, files: Sequence[DataFile], rowids: list[int]
) -> set[int]:
    """`_live` without a filter, from where the rows are (`_locator`)."""
    wanted = np.asarray(rowids, dtype=np.int64)
    rows = _locator(table, info, files).locate(wanted)
    return {int(rowid) for rowid in wanted[rows >= 0]}


def _stored_rowids(table: Table, info: TableInfo, file: DataFile) -> np.ndarray:
    cache = table._db._engine.decoded
    rowids = cache.get(file.file_id)
    if rowids is None:
        result = _query(table, info, [file], f"SELECT {ROWID} FROM {TARGET}", trusted=True)
        rowids = np.sort(result.column(0).to_numpy(zero_copy_only=False).astype(np.int64))
        cache.put(file.file_id, rowids, rowids.nbytes)
    return rowids


def _rows(
    table: Table, info: TableInfo, files: Sequence[DataFile], hits: list[Hit],
    columns: Sequence[str],
) -> pa.Table:  # fmt: skip
    """``columns`` of the rows for ``hits``, in their order, with ``_distance``."""
    distances = pa.array([distance for _, distance in hits], pa.float32())
    if not columns:  # Arrow loses the row count of slices with no columns: build it here
        return pa.table({DISTANCE_COLUMN: distances})
    if not hits:
        return info.schema.empty_table().select(columns).append_column(DISTANCE_COLUMN, distances)
    rowids = [rowid for rowid, _ in hits]
    if set(columns) & set(vector_columns(info.schema)):
        # Vectors are big: read just these rows' (a search for ids and text, the
        # common case, is answered from the cached small columns below).
        result = _query(
            table, info, _holding(files, rowids),
            f"SELECT * FROM {TARGET} WHERE {ROWID} IN ({', '.join(map(str, rowids))})",
            trusted=True,
        )  # fmt: skip
        positions = {rowid: n for n, rowid in enumerate(result.column(ROWID).to_pylist())}
        order = pa.array([positions[rowid] for rowid in rowids], pa.int64())
        return result.take(order).select(columns).append_column(DISTANCE_COLUMN, distances)
    locator = _locator(table, info, files)
    rows = locator.locate(np.asarray(rowids, dtype=np.int64))
    taken = locator.slim.select(columns).take(pa.array(rows, pa.int64()))
    return taken.append_column(DISTANCE_COLUMN, distances)


@dataclasses.dataclass(frozen=True)
class _Locator:
    """Where each row of a table state is, and its small (not vector) columns: the
    files' cached columns side by side (``slim``), and how a rowid maps to a row of
    it. A file numbered from ``row_base`` holds its whole range; the others store
    their rowids. Built once per table state, so that a search's hits are found
    with two binary searches and one take, whatever the number of files."""

    slim: pa.Table
    bases: np.ndarray  # row_base of the numbered files, ascending
    maxes: np.ndarray  # their highest rowid
    starts: np.ndarray  # their first row in slim
    stored: np.ndarray  # the rowids the other files store, ascending
    stored_rows: np.ndarray  # their rows in slim

    def locate(self, rowids: np.ndarray) -> np.ndarray:
        """The row in ``slim`` of each rowid; -1 for rowids not in the table."""
        rows = np.full(len(rowids), -1, dtype=np.int64)
        if len(self.bases):
            at = np.searchsorted(self.bases, rowids, side="right") - 1
            inside = at >= 0
            inside[inside] &= rowids[inside] <= self.maxes[at[inside]]
            rows[inside] = self.starts[at[inside]] + rowids[inside] - self.bases[at[inside]]
        if len(self.stored):
            at = np.minimum(np.searchsorted(self.stored, rowids), len(self.stored) - 1)
            found = self.stored[at] == rowids
            rows[found] = self.stored_rows[at[found]]
        return rows

    @property
    def nbytes(self) -> int:
        arrays = (self.bases, self.maxes, self.starts, self.stored, self.stored_rows)
        return sum(array.nbytes for array in arrays)


def _locator(table: Table, info: TableInfo, files: Sequence[DataFile]) -> _Locator:
    """The `_Locator` of the table state ``info`` (whose files are ``files``: a state's
    files change only with its snapshot, which is in the key)."""
    small = [name for name in info.schema.names if name not in vector_columns(info.schema)]
    key = f"locator {info.table_id} {info.snapshot} {small}"
    cache = table._db._engine.decoded
    cached: _Locator | None = cache.get(key)
    if cached is not None:
        return cached
    pieces, numbered, stored, stored_rows = [], [], [], []
    start = 0
    for file in files:
        slim, ordered, order = _slim(table, info, file, small)
        pieces.append(slim)
        if file.row_base is not None:
            numbered.append((file.row_base, file.rowid_max, start))
        else:
            stored.append(ordered)
            stored_rows.append(start + order)
        start += slim.num_rows
    numbered.sort()
    columns = np.asarray(numbered, dtype=np.int64).reshape(-1, 3).T
    rowids = np.concatenate(stored) if stored else np.empty(0, np.int64)
    positions = np.concatenate(stored_rows) if stored else np.empty(0, np.int64)
    by_rowid = np.argsort(rowids, kind="stable")
    # One chunk: Arrow's take on a column of many chunks concatenates them first
    # (400 us a search at 1M rows in 12 files).
    slim = pa.concat_tables(pieces) if pieces else info.schema.empty_table().select(small)
    slim = slim.combine_chunks()
    locator = _Locator(slim, columns[0], columns[1], columns[2], rowids[by_rowid],
                       positions[by_rowid])  # fmt: skip
    cache.put(key, locator, locator.nbytes)
    return locator


def _slim(
    table: Table, info: TableInfo, file: DataFile, names: list[str]
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """A file's columns ``names`` (not vectors), with its rowids sorted and their
    positions (decoded once per process: a file never changes; the columns asked may,
    so they are part of the key, and so are the columns the file still holds: a column
    dropped and added again under its name reads as NULL, not as the old values)."""
    key = f"slim {file.file_id} {names} {list(file.columns)}"
    cache = table._db._engine.decoded
    cached: tuple[pa.Table, np.ndarray, np.ndarray] | None = cache.get(key)
    if cached is None:
        projection = ", ".join([*(quote(name) for name in names), ROWID])
        result = _query(table, info, [file], f"SELECT {projection} FROM {TARGET}", trusted=True)
        rowids = result.column(ROWID).to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(rowids, kind="stable")
        cached = (result.select(names), rowids[order], order)
        cache.put(key, cached, result.nbytes + rowids.nbytes * 2)
    return cached


def _holding(files: Sequence[DataFile], rowids: list[int]) -> list[DataFile]:
    """The files that may hold any of ``rowids``: those that store rowids, and those
    whose numbered range covers one."""
    ordered = np.sort(np.asarray(rowids, dtype=np.int64))
    kept = []
    for file in files:
        if file.row_base is None:
            kept.append(file)
            continue
        first = np.searchsorted(ordered, file.row_base)
        if first < len(ordered) and ordered[first] <= file.rowid_max:
            kept.append(file)
    return kept


def _query(
    table: Table, info: TableInfo, files: Sequence[DataFile], template: str, *,
    trusted: bool = False,
) -> pa.Table:  # fmt: skip
    """Run ``template`` over ``files`` bound as TARGET (with rowids); user SQL inside
    it is checked as a query's is, unless the template is ``trusted`` (all ours)."""
    import sqlglot

    from tier0.db import _sql

    database = table._db
    with database._binding() as (binder, grants):
        binder.local[TARGET] = database._table_sql(info, files, grants, with_file=True)
        if trusted:
            sql = _sql.bind(sqlglot.parse_one(template, read="duckdb"), binder)
        else:
            sql = _sql.bind_template(template, binder)
        return database._engine.query(sql)


def _vector_column(info: TableInfo, column: str | None) -> str:
    return pick_column(info, list(vector_columns(info.schema)), column, "vector",
                       "a vector column is FLOAT[n] or DOUBLE[n]")  # fmt: skip


def pick_column(
    info: TableInfo, candidates: list[str], column: str | None, kind: str, described: str
) -> str:
    """``column`` among ``candidates`` (case-insensitively), or the only candidate when
    None; `TableSchemaError` naming the ``kind`` of column otherwise."""
    if column is None:
        if len(candidates) != 1:
            raise TableSchemaError(
                f"table {info.path} has {len(candidates)} {kind} columns"
                f" ({', '.join(candidates) or 'none'}): name the one to search"
            )
        return candidates[0]
    matches = [
        name for name in candidates if isinstance(column, str) and name.lower() == column.lower()
    ]
    if not matches:
        raise TableSchemaError(
            f"{column!r} is not a {kind} column of {info.path} (those are: "
            f"{', '.join(candidates) or 'none'}; {described})"
        )
    return matches[0]


def check_k(k: object) -> None:
    # bool is an int to Python, but True is no count of rows.
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= K_MAX:
        raise InvalidArgument(f"k is 1..{K_MAX}, not {k!r}")


def _indexes(table: Table, info: TableInfo) -> dict[str, IndexInfo]:
    """The indexes of the table state ``info`` (read with it when it was cached)."""
    cached = table._db._engine.tables.indexes(info)
    if cached is not None:
        return cached
    with table._db._store._kernel.meta.reader() as db:
        return _tables.load_indexes(db, info.table_id)


def _load(table: Table, index_info: IndexInfo) -> Any:
    cache = table._db._engine.indexes
    key = index_info.manifest
    index = cache.get(key)
    if index is None:
        data = read_blob(table._db._store._kernel, index_info.manifest)
        index = _vectors.deserialize(data)
        cache.put(key, index, len(data))
    return index


def _save(
    table: Table,
    info: TableInfo,
    column: str,
    metric: str,
    params: dict[str, Any],
    rows: int,
    rowid_max: int,
    index: Any,
) -> IndexInfo:
    database = table._db
    data = _vectors.serialize(index)
    blob = write_blob(database._store._kernel, data)
    described = IndexInfo(
        column, metric, dict(params), rows, rowid_max, blob.size, blob.manifest, 0
    )
    built_seq = database._save_index(table, info, described, blob)
    database._engine.indexes.put(blob.manifest, index, len(data))
    # As `Table.indexes` will describe it, with the sequence number it was built at.
    return dataclasses.replace(described, built_seq=built_seq)
