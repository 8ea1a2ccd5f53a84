"""Vector search over tables (`Table.search`, `create_index`, `optimize`, SQL ``nearest()``).

Every test runs on both metadata backends (the ``t0`` fixture) with the real
DuckDB engine and real faiss HNSW indexes. The data are clustered vectors
from a fixed seed, and every answer is checked against brute force computed
here with numpy in float64: exact search must equal it, indexed search must
recall nearly all of it, and both must report the same distances.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import tier0
from tier0.db import Table, _search
from tier0.errors import InvalidArgument, SQLSyntaxError, TableSchemaError
from tier0.store import chunk_name
from tier0.store._manifest import Manifest

BUCKET = "bkt"
DOCS = f"{BUCKET}/docs"
DIM = 32
ROWS = 3000
CLUSTERS = 24
QUERY_COUNT = 40
K = 10
METRICS = ("cosine", "l2", "dot")


def _clustered(count: int, *, seed: int) -> np.ndarray:
    """``count`` float32 vectors around ``CLUSTERS`` centres (the same centres for every
    seed: queries drawn with another seed land in the data's clusters)."""
    centres = np.random.default_rng(1234).normal(size=(CLUSTERS, DIM))
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, CLUSTERS, count)] + 0.35 * rng.normal(size=(count, DIM))
    return points.astype(np.float32)


VECTORS = _clustered(ROWS, seed=7)
QUERIES = _clustered(QUERY_COUNT, seed=8)


def _distances(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """The distances `search` reports, in float64: 1 - cosine, Euclidean, -inner product."""
    matrix, target = vectors.astype(np.float64), np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        return 1 - (matrix @ target) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(target))
    if metric == "l2":
        return np.linalg.norm(matrix - target, axis=1)
    return -(matrix @ target)


def _brute(
    query: np.ndarray, k: int, metric: str = "cosine", ids: np.ndarray | None = None
) -> list[int]:
    """The ids of the ``k`` rows of VECTORS (only ``ids`` if given) nearest ``query``."""
    ids = np.arange(ROWS) if ids is None else np.asarray(ids)
    distances = _distances(VECTORS[ids], query, metric)
    return [int(i) for i in ids[np.argsort(distances, kind="stable")[:k]]]


def _assert_top_k(
    found: list[int], query: np.ndarray, k: int, metric: str = "cosine",
    ids: np.ndarray | None = None,
) -> None:  # fmt: skip
    """``found`` is numpy's top ``k``, in order: the same ids, except where two rows lie
    so near the same distance (1e-5) that float32 may order them either way."""
    expected = _brute(query, k, metric, ids)
    assert len(found) == len(expected) == len(set(found))
    at_found = _distances(VECTORS[found], query, metric)
    at_expected = _distances(VECTORS[expected], query, metric)
    for n, (got, want) in enumerate(zip(found, expected, strict=True)):
        assert got == want or abs(at_found[n] - at_expected[n]) < 1e-5, (n, found, expected)


def _ids(result: pa.Table) -> list[int]:
    return [int(i) for i in result.column("id").to_pylist()]


def _distance_list(result: pa.Table) -> list[float]:
    return [float(d) for d in result.column("_distance").to_pylist()]


def _tag(i: int) -> str:
    return f"g{i % 10}"


def _insert(table: Table, ids: range | list[int], vectors: np.ndarray) -> None:
    ids = list(ids)
    table.insert({"id": ids, "tag": [_tag(i) for i in ids], "v": list(vectors)})


def _indexed_events(t0: tier0.Tier0) -> int:
    return sum(1 for event in t0.events.read(0, limit=10_000) if event.type == "TableIndexed")


def _index_chunks(manifest: bytes) -> set[str]:
    return {chunk_name(digest) for digest in Manifest.decode(manifest).hashes}


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(x)) for x in vector) + "]"


@pytest.fixture
def docs(t0: tier0.Tier0) -> Table:
    """Table ``bkt/docs`` (id, tag, v FLOAT[32]) holding VECTORS as ids 0..ROWS-1."""
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "tag": "VARCHAR", "v": f"FLOAT[{DIM}]"})
    _insert(table, range(ROWS), VECTORS)
    return table


# --- accuracy -------------------------------------------------------------------------------


def test_indexed_search_recalls_exact_cosine_neighbours(docs: Table) -> None:
    docs.create_index(metric="cosine")
    found = total = 0
    for query in QUERIES:
        result = docs.search(query, K, columns=["id"])
        assert result.num_rows == K
        found += len(set(_ids(result)) & set(_brute(query, K)))
        total += K
    assert found / total >= 0.95


def test_indexed_search_with_a_tiny_ef_is_approximate(docs: Table) -> None:
    # The same searches with the graph barely explored miss some neighbours: proof that
    # the answers above come from the index, not from a silent exhaustive scan.
    docs.create_index(metric="cosine", m=4, ef_construction=8)
    found = sum(
        len(set(_ids(docs.search(query, K, ef=1, columns=["id"]))) & set(_brute(query, K)))
        for query in QUERIES
    )
    assert found < K * QUERY_COUNT


@pytest.mark.parametrize("metric", METRICS)
def test_indexed_search_reports_numpy_distances_nearest_first(docs: Table, metric: str) -> None:
    docs.create_index(metric=metric)
    found = 0
    for query in QUERIES[:10]:
        result = docs.search(query, K)
        assert result.column_names == ["id", "tag", "v", "_distance"]
        assert result.schema.field("_distance").type == pa.float32()
        ids, reported = _ids(result), _distance_list(result)
        assert reported == sorted(reported)
        expected = _distances(VECTORS[ids], query, metric)
        np.testing.assert_allclose(reported, expected, rtol=1e-4, atol=1e-4)
        # The row's other columns come with it, its own vector included.
        assert result.column("tag").to_pylist() == [_tag(i) for i in ids]
        np.testing.assert_array_equal(np.array(result.column("v").to_pylist()), VECTORS[ids])
        found += len(set(ids) & set(_brute(query, K, metric)))
    assert found >= 0.9 * K * 10  # the index of each metric finds that metric's nearest


@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_without_an_index_equals_numpy_top_k(docs: Table, metric: str) -> None:
    for query in QUERIES[:10]:
        result = docs.search(query, K, metric=metric, columns=["id"])
        _assert_top_k(_ids(result), query, K, metric)
        np.testing.assert_allclose(
            _distance_list(result), _distances(VECTORS[_ids(result)], query, metric), atol=1e-4
        )


def test_search_with_another_metric_than_the_index_is_exact(docs: Table) -> None:
    docs.create_index(metric="cosine")
    for query in QUERIES[:5]:
        _assert_top_k(_ids(docs.search(query, K, metric="l2", columns=["id"])), query, K, "l2")


def test_search_columns_selects_the_returned_columns(docs: Table) -> None:
    docs.create_index()
    query = QUERIES[0]
    everything = docs.search(query, 5)
    assert everything.column_names == ["id", "tag", "v", "_distance"]
    for columns in (["id"], ["tag", "id"], ["v"], ["TAG"]):
        result = docs.search(query, 5, columns=columns)
        names = [docs.schema.field(c.lower()).name for c in columns]
        assert result.column_names == [*names, "_distance"]
        for name in names:
            assert result.column(name).to_pylist() == everything.column(name).to_pylist()
    only = docs.search(query, 5, columns=[])
    assert only.column_names == ["_distance"]
    assert _distance_list(only) == _distance_list(everything)


def test_search_of_a_row_s_own_vector_finds_it_first(docs: Table) -> None:
    docs.create_index()
    for row in (0, 1234, ROWS - 1):
        result = docs.search(VECTORS[row], 3, columns=["id"])
        assert _ids(result)[0] == row
        assert abs(_distance_list(result)[0]) < 1e-5


# --- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "indexed"])
def test_filtered_search_returns_only_rows_that_pass(docs: Table, indexed: bool) -> None:
    if indexed:
        docs.create_index()
    passing = np.array([i for i in range(ROWS) if _tag(i) == "g3"])
    for query in QUERIES[:5]:
        result = docs.search(query, K, where="tag = 'g3'", columns=["id", "tag"])
        assert set(result.column("tag").to_pylist()) == {"g3"}
        _assert_top_k(_ids(result), query, K, ids=passing)


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "indexed"])
def test_very_selective_filter_returns_the_brute_force_answer(docs: Table, indexed: bool) -> None:
    if indexed:
        docs.create_index()
    chosen = np.array([17, 1234, 2901])
    for query in QUERIES[:5]:
        result = docs.search(query, K, where="id IN (17, 1234, 2901)", columns=["id"])
        _assert_top_k(_ids(result), query, K, ids=chosen)
        np.testing.assert_allclose(
            _distance_list(result),
            _distances(VECTORS[_ids(result)], query, "cosine"),
            atol=1e-4,
        )


def test_filtered_search_through_the_index_drops_rows_that_fail(
    docs: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Filters that many rows pass go through the index (candidates that fail are
    # dropped, and more asked for); a low threshold takes that path with few rows.
    monkeypatch.setattr(_search, "EXACT_ROWS_MAX", 10)
    docs.create_index()
    passing = np.array([i for i in range(ROWS) if i % 2 == 0])
    found = 0
    for query in QUERIES[:10]:
        result = docs.search(query, K, where="id % 2 = 0", columns=["id"])
        ids = _ids(result)
        assert len(ids) == K and all(i % 2 == 0 for i in ids)
        assert _distance_list(result) == sorted(_distance_list(result))
        found += len(set(ids) & set(_brute(query, K, ids=passing)))
    assert found >= 0.95 * K * 10


def test_filtered_search_through_the_index_widens_until_k_pass(
    docs: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three passing rows among thousands: the candidate list grows until it has them.
    monkeypatch.setattr(_search, "EXACT_ROWS_MAX", 0)
    docs.create_index()
    chosen = np.array([17, 1234, 2901])
    result = docs.search(QUERIES[0], K, where="id IN (17, 1234, 2901)", columns=["id"])
    _assert_top_k(_ids(result), QUERIES[0], K, ids=chosen)


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "indexed"])
def test_filter_matching_nothing_returns_an_empty_table_with_the_columns(
    docs: Table, indexed: bool
) -> None:
    if indexed:
        docs.create_index()
    result = docs.search(QUERIES[0], K, where="id < 0")
    assert result.num_rows == 0
    assert result.column_names == ["id", "tag", "v", "_distance"]
    assert result.schema.field("v").type == docs.schema.field("v").type
    assert result.schema.field("_distance").type == pa.float32()
    chosen = docs.search(QUERIES[0], K, where="tag = 'none'", columns=["tag"])
    assert (chosen.num_rows, chosen.column_names) == (0, ["tag", "_distance"])


def test_rows_without_a_vector_are_never_returned(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "v": "DOUBLE[4]"})
    table.insert({"id": [1, 2, 3], "v": [[1.0, 0, 0, 0], None, [0, 1.0, 0, 0]]})
    for indexed in (False, True):
        if indexed:
            table.create_index()
        assert _ids(table.search([1, 0, 0, 0], 10, columns=["id"])) == [1, 3]


# --- the index follows the table ------------------------------------------------------------


def test_rows_inserted_after_the_index_are_found_before_and_after_optimize(
    t0: tier0.Tier0, docs: Table
) -> None:
    built = docs.create_index()
    assert (built.rows, built.rowid_max) == (ROWS, ROWS - 1)
    added = _clustered(100, seed=9) + 5  # off to one side: nearer each other than to VECTORS
    _insert(docs, range(ROWS, ROWS + 100), added)
    for n in (0, 50, 99):
        assert _ids(docs.search(added[n], 1, columns=["id"])) == [ROWS + n]
    events = _indexed_events(t0)
    folded = docs.optimize()
    assert folded is not None
    assert (folded.rows, folded.rowid_max) == (ROWS + 100, ROWS + 99)
    assert folded.built_seq > built.built_seq
    assert _indexed_events(t0) == events + 1
    assert docs.indexes() == [folded]
    for n in (0, 50, 99):
        assert _ids(docs.search(added[n], 1, columns=["id"])) == [ROWS + n]
    assert docs.optimize() == folded  # nothing new: the same index, no new build
    assert _indexed_events(t0) == events + 1


def test_deleted_rows_are_never_returned(docs: Table) -> None:
    docs.create_index()
    assert docs.delete("id % 5 = 0") == ROWS // 5
    live = np.array([i for i in range(ROWS) if i % 5])
    for row in (0, 5, 1500):  # a deleted row's own vector: it would come first
        result = docs.search(VECTORS[row], K, columns=["id"])
        assert len(result) == K and all(i % 5 for i in _ids(result))
        assert set(_ids(result)) == set(_brute(VECTORS[row], K, ids=live))
    folded = docs.optimize()  # a fifth stale: under the rebuild threshold, kept
    assert folded is not None and folded.rows == ROWS
    assert all(i % 5 for i in _ids(docs.search(VECTORS[10], K, columns=["id"])))


def test_optimize_rebuilds_after_many_deletes(t0: tier0.Tier0, docs: Table) -> None:
    docs.create_index()
    docs.delete("id < 1000")
    events = _indexed_events(t0)
    rebuilt = docs.optimize()
    assert rebuilt is not None
    assert (rebuilt.rows, rebuilt.rowid_max) == (ROWS - 1000, ROWS - 1)
    assert _indexed_events(t0) == events + 1
    for row in (0, 999, 1000, 2500):
        ids = _ids(docs.search(VECTORS[row], K, columns=["id"]))
        assert min(ids) >= 1000
        assert (row in ids) == (row >= 1000)


def test_an_updated_vector_is_found_at_its_new_position_only(docs: Table) -> None:
    docs.create_index()
    moved = np.full(DIM, -4.0, dtype=np.float32)
    moved[0] = 9.0  # far from every cluster
    assert docs.update({"v": moved.tolist()}, "id = 7") == 1
    for optimized in (False, True):
        if optimized:
            folded = docs.optimize()
            assert folded is not None and folded.rows == ROWS + 1  # one old id now stale
        first = docs.search(moved, 1, columns=["id", "v"])
        assert _ids(first) == [7]
        np.testing.assert_array_equal(first.column("v").to_pylist()[0], moved)
        assert 7 not in _ids(docs.search(VECTORS[7], K, columns=["id"]))


def test_an_update_of_another_column_keeps_the_row_findable(docs: Table) -> None:
    docs.create_index()
    assert docs.update({"tag": "renamed"}, "id = 7") == 1
    for optimized in (False, True):
        if optimized:
            docs.optimize()
        result = docs.search(VECTORS[7], 3, columns=["id", "tag"])
        assert result.to_pylist()[0]["id"] == 7
        assert result.to_pylist()[0]["tag"] == "renamed"
        found = docs.search(VECTORS[7], 3, where="tag = 'renamed'", columns=["id"])
        assert _ids(found) == [7]


def test_a_column_dropped_and_added_again_reads_as_null_in_results(docs: Table) -> None:
    docs.create_index()
    assert docs.search(VECTORS[7], 1, columns=["id", "tag"]).to_pylist()[0]["tag"] == "g7"
    docs.drop_columns(["tag"])
    docs.add_columns({"tag": "VARCHAR"})
    assert docs.search(VECTORS[7], 1, columns=["id", "tag"]).to_pylist() == [
        {"id": 7, "tag": None, "_distance": pytest.approx(0, abs=1e-5)}
    ]


def test_an_index_built_on_an_empty_table_answers_and_covers_later_rows(
    t0: tier0.Tier0,
) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "tag": "VARCHAR", "v": f"FLOAT[{DIM}]"})
    built = table.create_index()
    assert built.rows == 0
    empty = table.search(QUERIES[0], K)
    assert (empty.num_rows, empty.column_names) == (0, ["id", "tag", "v", "_distance"])
    _insert(table, range(200), VECTORS[:200])
    ids = np.arange(200)
    _assert_top_k(_ids(table.search(QUERIES[0], K, columns=["id"])), QUERIES[0], K, ids=ids)
    folded = table.optimize()
    assert folded is not None and folded.rows == 200
    assert _ids(table.search(VECTORS[42], 1, columns=["id"])) == [42]


def test_a_large_insert_folds_itself_into_the_index(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "tag": "VARCHAR", "v": "FLOAT[8]"})
    rng = np.random.default_rng(11)
    table.insert({"id": list(range(100)), "v": list(rng.normal(size=(100, 8)))})
    table.create_index()
    small = rng.normal(size=(50, 8))
    table.insert({"id": list(range(100, 150)), "v": list(small)})
    assert [index.rows for index in table.indexes()] == [100]  # a few: searched exactly
    big = rng.normal(size=(10_001, 8))
    table.insert({"id": list(range(150, 10_151)), "v": list(big)})
    assert [index.rows for index in table.indexes()] == [10_151]


# --- persistence ----------------------------------------------------------------------------


def test_index_survives_reopen_and_is_used_without_a_rebuild(
    tmp_path: pathlib.Path, meta_url: str, t0: tier0.Tier0, docs: Table
) -> None:
    built = docs.create_index(metric="l2", m=16)
    before = [docs.search(query, K, columns=["id"]) for query in QUERIES[:5]]
    events = _indexed_events(t0)
    t0.close()
    with tier0.open(tmp_path / "data", meta=meta_url) as reopened:
        table = reopened.table(DOCS)
        (listed,) = table.indexes()
        assert listed == built
        assert (listed.metric, listed.params["m"], listed.rows) == ("l2", 16, ROWS)
        cache = reopened.db._engine.indexes
        assert cache.get(built.manifest) is None
        after = [table.search(query, K, columns=["id"]) for query in QUERIES[:5]]
        assert cache.get(built.manifest) is not None  # loaded from its blob, not rebuilt
        assert [_ids(r) for r in after] == [_ids(r) for r in before]
        for old, new in zip(before, after, strict=True):
            np.testing.assert_allclose(_distance_list(new), _distance_list(old), atol=1e-6)
        assert _indexed_events(reopened) == events
        assert reopened.check().ok


# --- errors ---------------------------------------------------------------------------------


def test_query_vector_of_the_wrong_dimension_is_refused(docs: Table) -> None:
    for vector in (VECTORS[0][:16], np.zeros(DIM + 1), []):
        with pytest.raises(TableSchemaError, match=f"{DIM}-d vectors"):
            docs.search(vector, K)
    with pytest.raises(TableSchemaError, match="finite numbers"):
        docs.search(["x"] * DIM, K)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_query_vector_with_non_finite_values_is_refused(docs: Table, bad: float) -> None:
    vector = VECTORS[0].copy()
    vector[3] = bad
    with pytest.raises(TableSchemaError, match="NaN or infinity"):
        docs.search(vector, K)


@pytest.mark.parametrize("k", [0, -1, 10_001, 2.0, "5", True, None])
def test_k_out_of_range_is_refused(docs: Table, k: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"k is 1\.\.10000"):
        docs.search(VECTORS[0], k)


@pytest.mark.parametrize("ef", [0, 10_001, "wide", 1.5])
def test_ef_out_of_range_is_refused(docs: Table, ef: Any) -> None:
    docs.create_index()
    with pytest.raises(InvalidArgument, match=r"ef is 1\.\.10000"):
        docs.search(VECTORS[0], K, ef=ef)


def test_unknown_or_non_vector_column_is_refused(docs: Table) -> None:
    for column in ("nope", "tag", "id"):
        with pytest.raises(TableSchemaError, match=rf"'{column}' is not a vector column.*v"):
            docs.search(VECTORS[0], K, column=column)
        with pytest.raises(TableSchemaError, match=f"'{column}' is not a vector column"):
            docs.create_index(column)
    assert _ids(docs.search(VECTORS[0], 1, column="V", columns=["id"])) == [0]


def test_unknown_returned_column_is_refused(docs: Table) -> None:
    with pytest.raises(TableSchemaError, match="no column 'nope'"):
        docs.search(VECTORS[0], K, columns=["id", "nope"])


def test_two_vector_columns_need_the_column_named(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "a": "FLOAT[4]", "b": "FLOAT[2]"})
    table.insert({"id": [1, 2], "a": [[1, 0, 0, 0], [0, 1, 0, 0]], "b": [[0, 1], [1, 0]]})
    with pytest.raises(TableSchemaError, match=r"2 vector columns \(a, b\): name the one"):
        table.search([1, 0, 0, 0], 1)
    with pytest.raises(TableSchemaError, match="2 vector columns"):
        table.create_index()
    assert _ids(table.search([1, 0, 0, 0], 1, column="a", columns=["id"])) == [1]
    assert _ids(table.search([1, 0], 1, column="b", columns=["id"])) == [2]


def test_a_table_without_vector_columns_cannot_be_searched(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "tag": "VARCHAR"})
    with pytest.raises(TableSchemaError, match=r"0 vector columns \(none\)"):
        table.search([1.0], 1)


def test_unknown_metric_is_refused(docs: Table) -> None:
    with pytest.raises(InvalidArgument, match="metric is one of cosine, l2, dot, not 'hamming'"):
        docs.search(VECTORS[0], K, metric="hamming")
    with pytest.raises(InvalidArgument, match="not 'manhattan'"):
        docs.create_index(metric="manhattan")
    assert docs.indexes() == []


def test_index_parameters_out_of_range_are_refused(docs: Table) -> None:
    for options in ({"m": 2}, {"m": 129}, {"ef_construction": 4}, {"ef_construction": 2000}):
        with pytest.raises(InvalidArgument, match=r"m is 4\.\.128 and ef_construction 8\.\.1024"):
            docs.create_index(**options)
    assert docs.indexes() == []


# --- SQL ------------------------------------------------------------------------------------


def test_sql_nearest_returns_the_search_s_rows(t0: tier0.Tier0, docs: Table) -> None:
    docs.create_index()
    query = QUERIES[0]
    result = t0.sql(f"SELECT id, _distance FROM nearest('{DOCS}', {_vector_literal(query)}, 5)")
    assert result.columns == ["id", "_distance"]
    expected = docs.search(query, 5, columns=["id"])
    assert [row[0] for row in result.rows] == _ids(expected)
    np.testing.assert_allclose([row[1] for row in result.rows], _distance_list(expected), atol=1e-5)


def test_sql_nearest_takes_a_filter_and_options(t0: tier0.Tier0, docs: Table) -> None:
    docs.create_index()
    query = QUERIES[1]
    result = t0.sql(
        f"SELECT id, tag FROM nearest('{DOCS}', {_vector_literal(query)}, 4,"
        " filter := 'tag = ''g3''', column := 'v', metric := 'l2', ef := 64)"
    )
    passing = np.array([i for i in range(ROWS) if _tag(i) == "g3"])
    _assert_top_k([row[0] for row in result.rows], query, 4, "l2", ids=passing)
    assert {row[1] for row in result.rows} == {"g3"}


def test_sql_nearest_takes_the_vector_of_another_row(t0: tier0.Tier0, docs: Table) -> None:
    result = t0.sql(
        f"SELECT id FROM nearest('{DOCS}', (SELECT v FROM bkt.docs WHERE id = 7), 5)"
        " ORDER BY _distance"
    )
    _assert_top_k([row[0] for row in result.rows], VECTORS[7], 5)
    assert result.rows[0][0] == 7


def test_sql_nearest_joins_the_table_and_a_catalog_view(t0: tier0.Tier0, docs: Table) -> None:
    docs.create_index()
    nearest = _brute(VECTORS[7], 3)
    for i in nearest[:2]:  # the third has no object: the inner join drops it
        t0.put(BUCKET, f"doc-{i}.txt", b"x" * (i + 1))
    joined = t0.sql(
        f"SELECT n.id, d.tag, o.size FROM nearest('{DOCS}', {_vector_literal(VECTORS[7])}, 3) n"
        " JOIN bkt.docs d ON d.id = n.id"
        f" JOIN objects o ON o.bucket = '{BUCKET}' AND o.key = 'doc-' || n.id || '.txt'"
        " ORDER BY n._distance"
    )
    assert joined.rows == [(i, _tag(i), i + 1) for i in nearest[:2]]


def test_sql_nearest_refuses_malformed_calls(t0: tier0.Tier0, docs: Table) -> None:
    vector = _vector_literal(VECTORS[0])
    with pytest.raises(SQLSyntaxError, match="call nearest"):
        t0.sql(f"SELECT * FROM nearest('{DOCS}', {vector})")
    with pytest.raises(SQLSyntaxError, match="call nearest"):
        t0.sql(f"SELECT * FROM nearest('{DOCS}', {vector}, 5, colour := 'v')")
    with pytest.raises(SQLSyntaxError, match="a list of numbers"):  # no row 99999: NULL
        t0.sql(f"SELECT * FROM nearest('{DOCS}', (SELECT v FROM bkt.docs WHERE id = 99999), 5)")
    with pytest.raises(InvalidArgument, match=r"k is 1\.\.10000"):
        t0.sql(f"SELECT * FROM nearest('{DOCS}', {vector}, 0)")
    with pytest.raises(TableSchemaError, match=f"{DIM}-d vectors"):
        t0.sql(f"SELECT * FROM nearest('{DOCS}', [1.0, 2.0], 5)")


# --- dropping -------------------------------------------------------------------------------


def test_dropping_the_vector_column_drops_its_index(t0: tier0.Tier0, docs: Table) -> None:
    built = docs.create_index()
    chunks = _index_chunks(built.manifest)
    assert chunks and chunks <= set(t0._kernel.chunks.names())
    docs.drop_columns(["v"])
    assert docs.indexes() == []
    assert t0.check().ok
    t0.gc(grace_s=0)
    assert not chunks & set(t0._kernel.chunks.names())
    docs.add_columns({"v": f"FLOAT[{DIM}]"})  # the same name again: empty, unindexed
    assert docs.indexes() == []
    assert docs.search(VECTORS[0], K).num_rows == 0
    assert docs.optimize() is None
    assert t0.check(deep=True).ok


def test_dropping_the_table_releases_the_index_to_gc(t0: tier0.Tier0, docs: Table) -> None:
    built = docs.create_index()
    _insert(docs, range(ROWS, ROWS + 10), _clustered(10, seed=10))
    folded = docs.optimize()
    assert folded is not None and folded.manifest != built.manifest
    chunks = _index_chunks(built.manifest) | _index_chunks(folded.manifest)
    t0.db.drop_table(DOCS)
    assert t0.check().ok
    report = t0.gc(grace_s=0)
    assert report.chunks_deleted >= len(chunks)
    assert not chunks & set(t0._kernel.chunks.names())
    with t0._kernel.meta.reader() as db:
        assert db.query_all("SELECT count(*) FROM t0_table_indexes")[0][0] == 0
    assert t0.check(deep=True).ok


def test_changes_by_another_process_reach_a_cached_table_state(
    t0: tier0.Tier0, docs: Table, tmp_path: pathlib.Path, meta_url: str
) -> None:
    # This process caches the table's state (files, indexes) and where each row
    # is; another store on the same metadata (as another process) changes all
    # three. Every answer here must follow at once.
    query = VECTORS[5]
    assert _ids(docs.search(query, 1, columns=["id"])) == [5]
    assert docs.indexes() == []
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        theirs = other.table(DOCS)
        theirs.create_index(metric="cosine")
        theirs.delete("id = 5")  # rewrites a file: its rows keep their rowids
        theirs.update({"tag": "moved"}, where="id = 6")
        _insert(theirs, [ROWS], VECTORS[5:6])  # row 5's vector again, as a new row
    assert [index.column for index in docs.indexes()] == ["v"]
    found = docs.search(query, 2, columns=["id", "tag"])
    assert _ids(found)[0] == ROWS  # the deleted row is gone, its twin is found
    assert 5 not in _ids(found)
    assert docs.search(VECTORS[6], 1, columns=["id", "tag"]).column("tag").to_pylist() == ["moved"]
