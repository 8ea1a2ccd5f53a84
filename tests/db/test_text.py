"""Full-text (BM25) and hybrid search over tables (`Table.text_search`,
`create_text_index`, `hybrid_search`, SQL ``text_search()`` and ``hybrid_search()``).

Every table test runs on both metadata backends (the ``t0`` fixture) with the
real DuckDB engine. Scores are checked against `_reference`, a plain BM25
written here from the formula (Lucene's: k1 1.2, b 0.75, idf
ln(1 + (N - df + 0.5) / (df + 0.5))), over the table's rows as they are:
with an index and without, before and after inserts, updates, deletes and
optimize, the answer must be the reference's, row for row.
"""

from __future__ import annotations

import collections
import math
import pathlib
import re
import unicodedata
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tier0
from tier0.db import Table, _text
from tier0.db._vectors import EXACT_ROWS_MAX
from tier0.errors import AccessDenied, InvalidArgument, SQLSyntaxError, TableSchemaError

BUCKET = "bkt"
DOCS = f"{BUCKET}/docs"
CORPUS = [
    "The quick brown fox jumps over the lazy dog",
    "A quick brown dog outpaces a quick fox",
    "Lazy afternoons: the dog sleeps, the fox watches",
    "Foxes are small omnivorous mammals; a fox is quick",
    "Brown bears and brown dogs are not the same animal",
    "Stock markets fell sharply as investors fled",
    "Investors bought bonds; the bond market rallied",
    "A recipe for brown bread with quick yeast",
    "Bread, butter and jam: a quick breakfast",
    "The Straße is long; STRASSE means street",
    "Café au lait and a croissant in the café",
    "Dogs dogs dogs: a dog lover's guide to dogs",
    "",
    "!!! ??? ...",
    "fox",
    "the the the the the the the the fox",
]
QUERIES = [
    "quick fox",
    "brown dog",
    "fox",
    "investors market",
    "THE",
    "café strasse",
    "dogs",
    "bread quick brown",
    "Fox fox FOX",
    "unknownword fox",
]
K1, B = 1.2, 0.75

Ranked = list[tuple[int, float]]


# -- a reference BM25 ------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Words as the module docstring defines them (for texts without combining marks)."""
    found = re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
    return [word for word in found if len(word) <= 64]


def _reference(texts: Mapping[int, str | None], query: str, k: int = 10**9) -> Ranked:
    """The ``k`` best (id, score) of ``texts`` for ``query``, best first (equal scores:
    lower id first), by the BM25 formula, term by term, as a textbook states it."""
    documents = {i: collections.Counter(_words(t)) for i, t in texts.items() if t is not None}
    lengths = {i: sum(counts.values()) for i, counts in documents.items()}
    n = len(documents)
    if not n:
        return []
    average = sum(lengths.values()) / n
    terms = list(dict.fromkeys(_words(query)))
    df = {term: sum(1 for counts in documents.values() if term in counts) for term in terms}
    scores = {}
    for i, counts in documents.items():
        score, matched = 0.0, False
        for term in terms:
            tf = counts[term]
            if tf:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[i] / average))
                matched = True
        if matched:
            scores[i] = score
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def _ranked(result: pa.Table) -> Ranked:
    return list(
        zip(result.column("id").to_pylist(), result.column("_score").to_pylist(), strict=True)
    )


def _assert_ranked(found: Ranked, expected: Ranked) -> None:
    assert [i for i, _ in found] == [i for i, _ in expected]
    for (_, got), (_, want) in zip(found, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-12)


def _texts(table: Table) -> dict[int, str | None]:
    rows = table.to_arrow(columns=["id", "body"]).to_pylist()
    return {row["id"]: row["body"] for row in rows}


def _vector(i: int) -> list[float]:
    return [math.cos(i), math.sin(i), (i % 5) / 5, 1.0]


@pytest.fixture
def docs(t0: tier0.Tier0) -> Table:
    """Table ``bkt/docs`` (id, grp, body VARCHAR, v FLOAT[4]) holding CORPUS as ids 0..,
    in one insert (rowids follow ids, so equal scores order by id as by rowid)."""
    t0.create_bucket(BUCKET)
    table = t0.create_table(
        DOCS, {"id": "BIGINT", "grp": "BIGINT", "body": "VARCHAR", "v": "FLOAT[4]"}
    )
    ids = list(range(len(CORPUS)))
    table.insert({"id": ids, "grp": [i % 3 for i in ids], "body": CORPUS,
                  "v": [_vector(i) for i in ids]})  # fmt: skip
    return table


# -- words -----------------------------------------------------------------------------------


def test_tokenize_folds_case_width_and_compatibility_forms() -> None:
    assert _text.tokenize("The QUICK, quick fox!") == ["the", "quick", "quick", "fox"]
    assert _text.tokenize("Straße STRASSE") == ["strasse", "strasse"]  # casefold, not lower
    assert _text.tokenize("\uff28\uff25\uff2c\uff2c\uff2f \ufb01ne") == ["hello", "fine"]
    assert _text.tokenize("e\u0301te\u0301") == ["été"]  # NFKC composes accents
    assert _text.tokenize("x_y-z 3.14 2024-01-05") == ["x_y", "z", "3", "14", "2024", "01", "05"]
    assert _text.tokenize("") == [] and _text.tokenize("!!! ... ---") == []


def test_tokenize_keeps_combining_marks_inside_words() -> None:
    # Python's \w alone would cut these words at every vowel sign or point.
    assert _text.tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert _text.tokenize("עִבְרִית") == ["עִבְרִית"]
    assert _text.tokenize("İstanbul") == ["i\u0307stanbul"]
    assert _text.tokenize("\u0301abc") == ["abc"]  # a mark alone starts no word


def test_tokenize_drops_long_words_and_stops_at_the_terms_limit() -> None:
    longest, too_long = "a" * _text.TOKEN_CHARS_MAX, "b" * (_text.TOKEN_CHARS_MAX + 1)
    assert _text.tokenize(f"x {too_long} {longest} y") == ["x", longest, "y"]
    many = " ".join(f"w{n}" for n in range(_text.DOCUMENT_TERMS_MAX + 10))
    words = _text.tokenize(many)
    assert len(words) == _text.DOCUMENT_TERMS_MAX
    assert words[-1] == f"w{_text.DOCUMENT_TERMS_MAX - 1}"
    assert _text.tokenize("a b c d", terms_max=2) == ["a", "b"]


# -- postings (no table) ---------------------------------------------------------------------

WORDS = st.sampled_from(["fox", "dog", "Fox", "brown", "é", "e\u0301", "straße", "a_b", "x" * 70])
TEXTS = st.lists(st.lists(WORDS, max_size=12).map(" ".join), max_size=8)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(files=st.lists(TEXTS, min_size=1, max_size=4), data=st.data())
def test_merged_postings_score_as_their_parts_and_survive_serialization(
    files: list[list[str]], data: st.DataObject
) -> None:
    parts, rowid = [], 0
    for n, texts in enumerate(files):
        rowids = np.arange(rowid, rowid + len(texts), dtype=np.int64)
        rowid += len(texts) + 3
        parts.append(_text.build(f"file{n}", len(texts) + 1, rowids, texts))
    live = np.array(data.draw(st.lists(st.booleans(), min_size=len(files), max_size=len(files))))
    merged = _text.merge([(part, _text._ALL) for part in parts])
    merged.check()
    copy = _text.deserialize(_text.serialize(merged))
    assert copy.vocabulary == merged.vocabulary and copy.files == merged.files
    for name in ("offsets", "documents", "frequencies", "rowids", "lengths", "file_rows"):
        assert np.array_equal(getattr(copy, name), getattr(merged, name)), name
    terms = data.draw(st.lists(st.sampled_from(["fox", "dog", "é", "brown", "zzz"]), max_size=4))
    terms = list(dict.fromkeys(terms))
    # The index over all files, with some no longer live, scores as the live files alone;
    # and a merge that drops the dead files (a fold) scores the same again.
    by_parts = _text.score(
        [(p, _text._ALL) for p, keep in zip(parts, live, strict=True) if keep], terms
    )
    by_index = _text.score([(copy, live)], terms)
    folded = _text.merge([(copy, live)])
    folded.check()
    by_fold = _text.score([(folded, np.ones(len(folded.files), dtype=bool))], terms)
    for rowids, scores in (by_index, by_fold):
        assert np.array_equal(rowids, by_parts[0])
        assert np.array_equal(scores, by_parts[1])
    texts = {
        int(r): t
        for part, keep, texts in zip(parts, live, files, strict=True)
        if keep
        for r, t in zip(part.rowids, texts, strict=True)
    }
    expected = _reference(texts, " ".join(terms))
    assert [int(r) for r in by_parts[0]] == [i for i, _ in expected]
    np.testing.assert_allclose(by_parts[1], [s for _, s in expected], rtol=1e-12)


# -- scores ----------------------------------------------------------------------------------


def test_score_of_a_two_document_corpus_is_the_formula_s(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "body": "VARCHAR"})
    table.insert({"id": [1, 2], "body": ["a b", "a a c"]})
    # N 2, average length 2.5; "c": df 1, idf ln(1 + 1.5 / 1.5) = ln 2; in document 2
    # tf 1, length 3: 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 2.5)) = 2.2 / 2.38.
    assert _ranked(table.text_search("c")) == [(2, pytest.approx(math.log(2) * 2.2 / 2.38))]
    # "a": df 2, idf ln(1 + 0.5 / 2.5); document 2 has it twice, so it ranks first.
    idf = math.log(1.2)
    expected = [(2, idf * 2 * 2.2 / (2 + 1.2 * 1.15)), (1, idf * 2.2 / (1 + 1.2 * 0.85))]
    found = _ranked(table.text_search("a"))
    assert [i for i, _ in found] == [2, 1]
    assert [s for _, s in found] == pytest.approx([s for _, s in expected], rel=1e-12)


def test_text_search_scores_equal_the_reference_bm25(docs: Table) -> None:
    texts = dict(enumerate(CORPUS))
    for query in QUERIES:
        for k in (1, 3, 10):
            _assert_ranked(_ranked(docs.text_search(query, k)), _reference(texts, query, k))


def test_indexed_search_equals_search_without_the_index(docs: Table) -> None:
    without = {query: _ranked(docs.text_search(query, 20)) for query in QUERIES}
    built = docs.create_text_index()
    assert (built.column, built.metric, built.rows) == ("body", "bm25", len(CORPUS))
    assert built.params["documents"] == len(CORPUS)
    assert docs.indexes() == [built]
    for query in QUERIES:
        found = _ranked(docs.text_search(query, 20))
        assert [i for i, _ in found] == [i for i, _ in without[query]]
        np.testing.assert_allclose(
            [s for _, s in found], [s for _, s in without[query]], rtol=1e-12
        )
        _assert_ranked(found, _reference(dict(enumerate(CORPUS)), query, 20))


def test_search_reads_the_index_not_every_row(t0: tier0.Tier0, docs: Table) -> None:
    built = docs.create_text_index()
    assert t0.db._engine.indexes.get(built.manifest) is not None  # kept loaded by the build
    # The index covers the table's one file: a search tokenizes no file itself ...
    segments = t0.db._engine.decoded
    (file,) = t0.db._readable(BUCKET, "docs")[1]
    docs.text_search("fox")
    assert segments.get(f"text {file.file_id} body") is None
    # ... while without an index it builds (and keeps) each file's postings.
    plain = t0.create_table(f"{BUCKET}/plain", {"id": "BIGINT", "body": "VARCHAR"})
    plain.insert({"id": [0], "body": ["fox"]})
    (plain_file,) = t0.db._readable(BUCKET, "plain")[1]
    assert segments.get(f"text {plain_file.file_id} body") is None
    plain.text_search("fox")
    assert segments.get(f"text {plain_file.file_id} body") is not None


# -- changes ---------------------------------------------------------------------------------


def test_rows_inserted_after_the_index_are_found_before_and_after_optimize(
    docs: Table,
) -> None:
    built = docs.create_text_index()
    added = ["a brand new fox story", "quick quick quick", None, "zebra crossing"]
    ids = list(range(100, 100 + len(added)))
    docs.insert({"id": ids, "grp": [1] * len(added), "body": added})
    texts = {**dict(enumerate(CORPUS)), **dict(zip(ids, added, strict=True))}
    for optimized in (False, True):
        if optimized:
            folded = docs.optimize("body")
            assert folded is not None and folded.built_seq > built.built_seq
            assert (folded.rows, folded.params["documents"]) == (len(texts), len(texts) - 1)
            assert docs.indexes() == [folded]
            assert docs.optimize("body") == folded  # nothing new: no new build
        for query in (*QUERIES, "zebra", "brand new"):
            _assert_ranked(_ranked(docs.text_search(query, 8)), _reference(texts, query, 8))
    assert [i for i, _ in _ranked(docs.text_search("zebra"))] == [103]


def test_deleted_rows_are_never_returned_nor_counted(docs: Table) -> None:
    docs.create_text_index()
    assert docs.delete("id IN (0, 3, 14, 15)") == 4
    texts = {i: t for i, t in enumerate(CORPUS) if i not in (0, 3, 14, 15)}
    for optimized in (False, True):
        if optimized:
            folded = docs.optimize(column="body")
            assert folded is not None and folded.params["documents"] == len(texts)
        for query in QUERIES:
            found = _ranked(docs.text_search(query, 20))
            assert not {0, 3, 14, 15} & {i for i, _ in found}
            _assert_ranked(found, _reference(texts, query, 20))


def test_updated_text_is_scored_by_its_new_words(docs: Table) -> None:
    docs.create_text_index()
    assert docs.update({"body": "penguins waddle on the quick ice"}, "id = 14") == 1
    texts = {**dict(enumerate(CORPUS)), 14: "penguins waddle on the quick ice"}
    for optimized in (False, True):
        if optimized:
            docs.optimize()
        assert 14 not in [i for i, _ in _ranked(docs.text_search("fox", 20))]
        assert [i for i, _ in _ranked(docs.text_search("penguins"))] == [14]
        for query in (*QUERIES, "penguins ice"):
            _assert_ranked(_ranked(docs.text_search(query, 20)), _reference(texts, query, 20))


def test_text_index_is_dropped_with_its_column(docs: Table) -> None:
    docs.create_text_index()
    docs.drop_columns(["body"])
    assert docs.indexes() == []
    docs.add_columns({"body": "VARCHAR"})  # the same name: old values read as NULL
    assert docs.text_search("fox").num_rows == 0
    docs.insert({"id": [50], "body": ["one fox"]})
    assert [i for i, _ in _ranked(docs.text_search("fox"))] == [50]


# -- filters ---------------------------------------------------------------------------------


def test_where_chooses_rows_but_scores_stay_the_whole_table_s(docs: Table) -> None:
    texts = dict(enumerate(CORPUS))
    for indexed in (False, True):
        if indexed:
            docs.create_text_index()
        for query in QUERIES:
            expected = [hit for hit in _reference(texts, query) if hit[0] % 3 == 1][:4]
            _assert_ranked(_ranked(docs.text_search(query, 4, where="grp = 1")), expected)
        assert docs.text_search("fox", where="grp = 99").num_rows == 0
        with pytest.raises(SQLSyntaxError):
            docs.text_search("fox", where="no_such_column = 1")


def test_a_filter_many_rows_pass_checks_the_best_rows_in_rounds(t0: tier0.Tier0) -> None:
    # More rows pass than EXACT_ROWS_MAX, and the filter rejects the 400 best: the
    # search walks down the ranking in growing rounds until k rows pass.
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "body": "VARCHAR"})
    rng = np.random.default_rng(11)
    count = EXACT_ROWS_MAX + 1000
    texts = {}
    for i in range(count):
        words = [f"w{n}" for n in rng.integers(0, 300, rng.integers(3, 12))]
        if i < 500:
            words += ["needle"] * int(1 + i % 4)
        elif i % 97 == 0:
            words.append("needle")
        texts[i] = " ".join(words)
    table.insert({"id": list(texts), "body": list(texts.values())})
    expected = [hit for hit in _reference(texts, "needle w7") if hit[0] >= 400][:5]
    for indexed in (False, True):
        if indexed:
            table.create_text_index()
        found = _ranked(table.text_search("needle w7", 5, where="id >= 400"))
        _assert_ranked(found, expected)


def test_columns_picks_what_comes_back(docs: Table) -> None:
    result = docs.text_search("fox", 3, columns=["id"])
    assert result.column_names == ["id", "_score"]
    assert result.schema.field("_score").type == pa.float64()
    only = docs.text_search("fox", 3, columns=[])
    assert only.column_names == ["_score"] and only.num_rows == 3
    full = docs.text_search("fox", 2)
    assert full.column_names == ["id", "grp", "body", "v", "_score"]
    assert full.column("body").to_pylist() == [CORPUS[i] for i, _ in _ranked(full)]
    with pytest.raises(TableSchemaError, match="no column 'nope'"):
        docs.text_search("fox", columns=["nope"])


# -- queries ---------------------------------------------------------------------------------


def test_empty_and_odd_queries(docs: Table) -> None:
    texts = dict(enumerate(CORPUS))
    for query in ("", "   ", "!!! ???", "unknownword", "x" * 65):
        result = docs.text_search(query)
        assert result.num_rows == 0
        assert result.column_names == ["id", "grp", "body", "v", "_score"]
    fullwidth = "\uff26\uff2f\uff38"  # FOX in fullwidth letters
    _assert_ranked(_ranked(docs.text_search(fullwidth, 20)), _reference(texts, "fox", 20))
    hostile = "'; DROP TABLE bkt.docs; -- the\x00fox"
    _assert_ranked(_ranked(docs.text_search(hostile, 20)), _reference(texts, hostile, 20))
    assert docs.count() == len(CORPUS)
    # A repeated word counts once: the same as asking for it once.
    _assert_ranked(_ranked(docs.text_search("fox " * 5000)), _ranked(docs.text_search("fox")))


def test_queries_past_the_limits_are_refused(docs: Table) -> None:
    with pytest.raises(InvalidArgument, match="more than 65536"):
        docs.text_search("a" * (_text.QUERY_CHARS_MAX + 1))
    many = " ".join(f"w{n}" for n in range(_text.QUERY_TERMS_MAX + 1))
    with pytest.raises(InvalidArgument, match="1025 distinct words, more than 1024"):
        docs.text_search(many)
    most = " ".join(["fox", *(f"w{n}" for n in range(_text.QUERY_TERMS_MAX - 1))])
    assert [i for i, _ in _ranked(docs.text_search(most, 3))] == [
        i for i, _ in _reference(dict(enumerate(CORPUS)), "fox", 3)
    ]


def test_a_long_document_counts_its_first_words(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "body": "VARCHAR"})
    limit = _text.DOCUMENT_TERMS_MAX
    table.insert({"id": [1, 2], "body": ["filler " * limit + "tail", "tail " + "y" * 65]})
    table.create_text_index()
    assert [i for i, _ in _ranked(table.text_search("tail"))] == [2]  # 1's tail is past it
    assert table.text_search("y" * 65).num_rows == 0  # too long to be a word
    assert [i for i, _ in _ranked(table.text_search("filler"))] == [1]


# -- errors ----------------------------------------------------------------------------------


def test_a_non_text_column_is_refused(docs: Table) -> None:
    for column in ("id", "v", "nope"):
        with pytest.raises(TableSchemaError, match=f"'{column}' is not a text column"):
            docs.text_search("fox", column=column)
        with pytest.raises(TableSchemaError, match=f"'{column}' is not a text column"):
            docs.create_text_index(column)
    assert docs.indexes() == []
    assert _ranked(docs.text_search("fox", column="BODY")) == _ranked(docs.text_search("fox"))


def test_the_text_column_must_be_named_when_there_are_several_or_none(
    t0: tier0.Tier0,
) -> None:
    t0.create_bucket(BUCKET)
    two = t0.create_table(DOCS, {"id": "BIGINT", "a": "VARCHAR", "b": "VARCHAR"})
    two.insert({"id": [1, 2], "a": ["fox", "dog"], "b": ["dog", "fox"]})
    with pytest.raises(TableSchemaError, match=r"2 text columns \(a, b\): name the one"):
        two.text_search("fox")
    assert [i for i, _ in _ranked(two.text_search("fox", column="b"))] == [2]
    none = t0.create_table(f"{BUCKET}/numbers", {"id": "BIGINT"})
    with pytest.raises(TableSchemaError, match=r"0 text columns \(none\)"):
        none.text_search("fox")


def test_bad_k_query_and_where_are_refused(docs: Table) -> None:
    for k in (0, -1, 10_001, True, 2.0, "3"):
        with pytest.raises(InvalidArgument, match=r"k is 1\.\.10000"):
            docs.text_search("fox", k)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match=r"k is 1\.\.10000"):
            docs.hybrid_search("fox", _vector(0), k)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="a text query is a string"):
        docs.text_search(["fox"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="where is a SQL predicate"):
        docs.text_search("fox", where=1)  # type: ignore[arg-type]


# -- persistence -----------------------------------------------------------------------------


def test_text_index_survives_reopen_and_is_used_without_a_rebuild(
    tmp_path: pathlib.Path, meta_url: str, t0: tier0.Tier0, docs: Table
) -> None:
    docs.create_text_index()  # replaced below: its blob becomes garbage
    docs.insert({"id": [99], "body": ["a fox that came later"]})
    built = docs.create_text_index()
    before = {query: _ranked(docs.text_search(query, 20)) for query in QUERIES}
    t0.close()
    with tier0.open(tmp_path / "data", meta=meta_url) as reopened:
        assert reopened.gc(grace_s=0).chunks_deleted >= 1  # the old index's blob
        table = reopened.table(DOCS)
        assert table.indexes() == [built]
        cache = reopened.db._engine.indexes
        assert cache.get(built.manifest) is None
        after = {query: _ranked(table.text_search(query, 20)) for query in QUERIES}
        assert cache.get(built.manifest) is not None  # loaded from its blob, not rebuilt
        assert after == before
        assert table.indexes() == [built]
        assert reopened.check().ok


def test_an_index_over_no_text_reopens_and_grows(
    tmp_path: pathlib.Path, meta_url: str, t0: tier0.Tier0
) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "body": "VARCHAR"})
    table.insert({"id": [1], "body": [None]})
    built = table.create_text_index()
    assert (built.rows, built.params["documents"]) == (1, 0)
    t0.close()
    with tier0.open(tmp_path / "data", meta=meta_url) as reopened:
        again = reopened.table(DOCS)
        assert again.text_search("fox").num_rows == 0  # its blob reads back empty
        again.insert({"id": [2], "body": ["fox"]})
        assert _ranked(again.text_search("fox")) == [(2, pytest.approx(math.log(1 + 0.5 / 1.5)))]
        folded = again.optimize()
        assert folded is not None and folded.params["documents"] == 1


# -- the insert-time fold --------------------------------------------------------------------


def test_a_large_insert_folds_the_text_index(docs: Table) -> None:
    built = docs.create_text_index()
    count = 10_001  # past FOLD_ROWS_MIN
    ids = list(range(1000, 1000 + count))
    bodies = [f"row {i} word{i % 7} fox" if i % 11 == 0 else f"row {i} word{i % 7}" for i in ids]
    docs.insert({"id": ids, "body": bodies})
    (folded,) = docs.indexes()
    assert folded.built_seq > built.built_seq
    assert folded.rows == len(CORPUS) + count
    texts = {**dict(enumerate(CORPUS)), **dict(zip(ids, bodies, strict=True))}
    for query in ("fox", "word3 quick", "row 1011"):
        _assert_ranked(_ranked(docs.text_search(query, 10)), _reference(texts, query, 10))


def test_a_writer_who_may_not_alter_the_table_still_inserts(t0: tier0.Tier0, docs: Table) -> None:
    # The insert commits, then would fold the index, which needs tier0:AlterTable: a
    # writer without it gets the insert done and leaves the index as it was.
    built = docs.create_text_index()
    t0.create_user("alice")
    t0.grant("alice", "tier0:ReadTable", f"/{BUCKET}/docs")
    t0.grant("alice", "tier0:WriteTable", f"/{BUCKET}/docs")
    hers = t0.as_principal("alice").table(DOCS)
    ids = list(range(1000, 1000 + 10_001))
    assert hers.insert({"id": ids, "body": ["zebra"] * len(ids)}) == len(ids)
    assert docs.indexes() == [built]
    with pytest.raises(AccessDenied):
        hers.optimize()
    assert hers.text_search("zebra", 3, columns=["id"]).column("id").to_pylist() == ids[:3]
    assert docs.optimize("body") is not None  # the owner may


def test_optimize_without_a_column_folds_text_and_vector_indexes(docs: Table) -> None:
    text = docs.create_text_index()
    vector = docs.create_index()
    docs.insert({"id": [200], "body": ["a late fox"], "v": [_vector(200)]})
    assert docs.optimize() is not None
    indexes = {index.column: index for index in docs.indexes()}
    assert indexes["body"].built_seq > text.built_seq
    assert indexes["v"].built_seq > vector.built_seq
    assert indexes["body"].params["documents"] == len(CORPUS) + 1
    assert indexes["v"].rows == len(CORPUS) + 1
    assert docs.optimize("body") == indexes["body"]  # up to date: kept as it is


# -- hybrid ----------------------------------------------------------------------------------


def _rrf(lists: list[list[int]], rrf_k: int) -> Ranked:
    fused: dict[int, float] = {}
    for ids in lists:
        for rank, i in enumerate(ids, start=1):
            fused[i] = fused.get(i, 0.0) + 1 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


@pytest.mark.parametrize("rrf_k", [60, 0, 5])
def test_hybrid_search_fuses_the_two_rankings_by_reciprocal_rank(docs: Table, rrf_k: int) -> None:
    for query in ("quick fox", "brown dog", "investors"):
        vector = _vector(3)
        text_ids = [i for i, _ in _ranked(docs.text_search(query, 50))]
        vector_ids = docs.search(vector, 50, columns=["id"]).column("id").to_pylist()
        expected = _rrf([text_ids, vector_ids], rrf_k)[:5]
        found = _ranked(docs.hybrid_search(query, vector, 5, rrf_k=rrf_k))
        _assert_ranked(found, expected)


def test_hybrid_search_ranks_a_row_good_in_both_lists_first(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    table = t0.create_table(DOCS, {"id": "BIGINT", "body": "VARCHAR", "v": "FLOAT[2]"})
    rows = [
        (1, "solar panel solar panel solar panel efficiency", [-1.0, 0.0]),  # text's best
        (2, "gardening tips for spring", [1.0, 0.0]),  # the vector's nearest
        (3, "solar panel installation guide", [0.9, 0.3]),  # second in both
        *((10 + n, f"unrelated note number {n}", [0.0, 1.0]) for n in range(60)),
    ]
    table.insert({"id": [r[0] for r in rows], "body": [r[1] for r in rows],
                  "v": [r[2] for r in rows]})  # fmt: skip
    assert [i for i, _ in _ranked(table.text_search("solar panel", 2))] == [1, 3]
    assert table.search([1.0, 0.0], 2, columns=["id"]).column("id").to_pylist() == [2, 3]
    found = _ranked(table.hybrid_search("solar panel", [1.0, 0.0], 3))
    assert [i for i, _ in found] == [3, 1, 2]
    assert found[0][1] == pytest.approx(2 / 62)
    # With a filter, both lists are filtered before they are fused.
    # Row 1 is last by vector (not among the 50 fused): 1/61 from the text alone, which
    # ties with row 2's 1/61 from the vector alone (the lower rowid first).
    filtered = _ranked(table.hybrid_search("solar panel", [1.0, 0.0], 3, where="id <> 3"))
    assert [i for i, _ in filtered][:2] == [1, 2]
    assert [s for _, s in filtered][:2] == [pytest.approx(1 / 61)] * 2


def test_hybrid_search_is_the_same_with_indexes(docs: Table) -> None:
    before = _ranked(docs.hybrid_search("quick brown fox", _vector(1), 8, where="grp <> 2"))
    docs.create_text_index()
    docs.create_index()
    after = _ranked(docs.hybrid_search("quick brown fox", _vector(1), 8, where="grp <> 2"))
    assert [i for i, _ in after] == [i for i, _ in before]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in before], rtol=1e-12)


def test_hybrid_search_refuses_bad_arguments(docs: Table) -> None:
    for rrf_k in (-1, _text.RRF_K_MAX + 1, 1.5, True):
        with pytest.raises(InvalidArgument, match=r"rrf_k is 0\.\.100000"):
            docs.hybrid_search("fox", _vector(0), rrf_k=rrf_k)  # type: ignore[arg-type]
    with pytest.raises(TableSchemaError, match="4-d vectors"):
        docs.hybrid_search("fox", [1.0, 2.0])
    with pytest.raises(TableSchemaError, match="NaN or infinity"):
        docs.hybrid_search("fox", [1.0, 2.0, float("nan"), 0.0])
    with pytest.raises(TableSchemaError, match="'id' is not a text column"):
        docs.hybrid_search("fox", _vector(0), text_column="id")
    with pytest.raises(TableSchemaError, match="'body' is not a vector column"):
        docs.hybrid_search("fox", _vector(0), vector_column="body")
    # No word in the text: the vector's ranking alone.
    alone = docs.hybrid_search("!!!", _vector(0), 3, columns=["id"]).column("id").to_pylist()
    assert alone == docs.search(_vector(0), 3, columns=["id"]).column("id").to_pylist()


# -- SQL -------------------------------------------------------------------------------------


def test_sql_text_search_returns_the_search_rows(t0: tier0.Tier0, docs: Table) -> None:
    result = t0.sql(f"SELECT id, _score FROM text_search('{DOCS}', 'quick fox', 4)")
    assert result.rows == [tuple(hit) for hit in _ranked(docs.text_search("quick fox", 4))]
    filtered = t0.sql(
        f"SELECT t.id, d.grp FROM text_search('{DOCS}', 'fox', 3, filter := 'grp <> 1',"
        " column := 'body') AS t JOIN bkt.docs d ON d.id = t.id ORDER BY t._score DESC"
    )
    expected = _ranked(docs.text_search("fox", 3, where="grp <> 1"))
    assert filtered.rows == [(i, i % 3) for i, _ in expected]
    assert len(filtered.rows) == 3 and all(grp != 1 for _, grp in filtered.rows)


def test_sql_hybrid_search_returns_the_fused_rows(t0: tier0.Tier0, docs: Table) -> None:
    vector = _vector(5)
    literal = "[" + ", ".join(repr(x) for x in vector) + "]"
    result = t0.sql(
        f"SELECT id, _score FROM hybrid_search('{DOCS}', 'brown dog', {literal}, 5,"
        " filter := 'grp <> 0', rrf_k := 10)"
    )
    expected = _ranked(docs.hybrid_search("brown dog", vector, 5, where="grp <> 0", rrf_k=10))
    assert result.rows == [tuple(hit) for hit in expected] and len(expected) == 5
    by_row = t0.sql(
        f"SELECT id FROM hybrid_search('{DOCS}', (SELECT body FROM bkt.docs WHERE id = 1),"
        " (SELECT v FROM bkt.docs WHERE id = 1), 1)"
    )
    assert by_row.rows == [(1,)]  # its own text and vector: first in both lists
    assert _ranked(docs.hybrid_search(CORPUS[1], _vector(1), 1))[0][0] == 1


def test_sql_search_functions_refuse_malformed_calls(t0: tier0.Tier0, docs: Table) -> None:
    with pytest.raises(SQLSyntaxError, match="call text_search"):
        t0.sql(f"SELECT * FROM text_search('{DOCS}', 'fox')")
    with pytest.raises(SQLSyntaxError, match="call text_search"):
        t0.sql(f"SELECT * FROM text_search('{DOCS}', 'fox', 3, metric := 'l2')")
    with pytest.raises(SQLSyntaxError, match="a table path, a text, an integer"):
        t0.sql(f"SELECT * FROM text_search('{DOCS}', 42, 3)")
    with pytest.raises(SQLSyntaxError, match="call hybrid_search"):
        t0.sql(f"SELECT * FROM hybrid_search('{DOCS}', 'fox', 3)")
    with pytest.raises(SQLSyntaxError, match="a text, a list of numbers, an integer"):
        t0.sql(f"SELECT * FROM hybrid_search('{DOCS}', 'fox', 'v', 3)")
    with pytest.raises(InvalidArgument, match=r"k is 1\.\.10000"):
        t0.sql(f"SELECT * FROM text_search('{DOCS}', 'fox', 0)")
    with pytest.raises(TableSchemaError, match="'id' is not a text column"):
        t0.sql(f"SELECT * FROM text_search('{DOCS}', 'fox', 3, column := 'id')")
