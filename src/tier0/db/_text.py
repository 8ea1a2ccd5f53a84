"""Full-text search (BM25) over a table's text column, and hybrid search.

`text_search` answers with the ``k`` rows that score best for a query by
Okapi BM25 (Lucene's formulation: ``k1`` 1.2, ``b`` 0.75, idf
``ln(1 + (N - df + 0.5) / (df + 0.5))``), best first, each with its
``_score``. The collection statistics (N, the average document length, each
term's document frequency) are those of every row of the table with a
non-NULL text, as it is now: a ``where`` filter chooses which rows come back,
not how they score. Rows that hold none of the query's words are not
returned, so an answer may have fewer than ``k`` rows.

Words (`tokenize`): the text in Unicode NFKC, case-folded, split into runs of
word characters (Python's ``\\w``, and the combining marks that follow one,
so that "हिन्दी" or "İstanbul" stay one word); words longer than
`TOKEN_CHARS_MAX` are dropped, and a document counts its first
`DOCUMENT_TERMS_MAX` words. No stemming, no stop words. A query's distinct
words each count once.

An index (`create_text_index`) is an inverted index (per word: the documents
holding it and how often; per document: its rowid and length) over the data
files live when it was built, stored as a blob in the element store and
described by a ``t0_table_indexes`` row with metric ``bm25``, like a vector
index (`tier0.db._search`), and kept loaded in the engine's `IndexCache`.
It covers *files*, not a rowid range: a file is immutable, so the documents
the index took from a file that is still part of the table are still exactly
its rows. Files added since (inserts, and the files an update or delete
wrote) are indexed on the fly (kept per file: files never change), and the
documents of files removed since (deleted rows, and the old text of updated
ones) are left out of the statistics and the results. So a search with an
index equals one without, score for score; `fold` makes the index cover
the table as it is (`Table.optimize`, and inserts once enough rows are new).

`hybrid_search` fuses the best `HYBRID_DEPTH_MIN` (or ``k``, if more) rows
of a text search and of a vector search by reciprocal rank fusion: a row's
``_score`` is the sum over the lists it is in of ``1 / (rrf_k + rank)``,
ranks counted from 1.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import io
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from tier0.db import _search
from tier0.db._sql import ROWID_COLUMN as ROWID
from tier0.db._sql import TARGET, quote
from tier0.db._vectors import EXACT_ROWS_MAX, IndexInfo
from tier0.errors import InvalidArgument
from tier0.store import read_blob, write_blob

if TYPE_CHECKING:
    from tier0.db._table import Table
    from tier0.db._tables import DataFile, TableInfo

#: The ``metric`` of a text index's ``t0_table_indexes`` row.
BM25: Final = "bm25"
K1: Final = 1.2
B: Final = 0.75
SCORE_COLUMN: Final = "_score"
#: Words longer than this (characters, after normalization) are dropped: no one
#: searches for them, and a base64 blob in the text would fill the vocabulary.
TOKEN_CHARS_MAX: Final = 64
#: A document counts its first this many words.
DOCUMENT_TERMS_MAX: Final = 100_000
QUERY_CHARS_MAX: Final = 65_536
#: Distinct words in a query: each reads its postings.
QUERY_TERMS_MAX: Final = 1024
#: Each list a hybrid search fuses holds at least this many rows.
HYBRID_DEPTH_MIN: Final = 50
RRF_K_MAX: Final = 100_000
#: How words are made (see the module docstring), with the Unicode version its
#: normalization and character classes come from: an index made by another one is
#: not used (searches are exact) until `fold` rebuilds it.
TOKENIZER: Final = f"nfkc-casefold-words-64/unicode-{unicodedata.unidata_version}"
_FORMAT: Final = 1
#: Rounds of filter checks grow by this factor when a filter rejects many of the best rows.
_GROWTH: Final = 4
_ALL: Final = np.ones(1, dtype=bool)


# -- words -----------------------------------------------------------------------------------


@functools.cache
def _word() -> re.Pattern[str]:
    """A word: a word character, then word characters and combining marks (Unicode
    category M, which ``\\w`` leaves out: Hindi vowel signs, Hebrew points, the dot
    that case-folding "İ" leaves). Built on first use (~50 ms)."""
    # Marks are in planes 0, 1 and 14 only (scanning all 17 would take 0.3 s).
    planes = itertools.chain(range(0x20000), range(0xE0000, 0xE1000))
    marks = [code for code in planes if unicodedata.category(chr(code))[0] == "M"]
    ranges = []
    for _, group in itertools.groupby(enumerate(marks), lambda pair: pair[1] - pair[0]):
        run = [code for _, code in group]
        ranges.append(f"{re.escape(chr(run[0]))}-{re.escape(chr(run[-1]))}")
    return re.compile(rf"\w[\w{''.join(ranges)}]*")


def tokenize(text: str, *, terms_max: int = DOCUMENT_TERMS_MAX) -> list[str]:
    """The words of ``text``, in order (see the module docstring), at most ``terms_max``.

    >>> tokenize("Straße, HELLO wörld! x_y-z")
    ['strasse', 'hello', 'wörld', 'x_y', 'z']
    """
    normal = unicodedata.normalize("NFKC", text).casefold()
    words = []
    for match in _word().finditer(normal):
        word = match.group()
        if len(word) <= TOKEN_CHARS_MAX:
            words.append(word)
            if len(words) >= terms_max:
                break
    return words


def query_terms(query: object) -> list[str]:
    """The distinct words of a query, in order; `InvalidArgument` past the limits."""
    if not isinstance(query, str):
        raise InvalidArgument(f"a text query is a string, not {type(query).__name__}")
    if len(query) > QUERY_CHARS_MAX:
        raise InvalidArgument(
            f"the text query has {len(query)} characters, more than {QUERY_CHARS_MAX}"
        )
    terms = list(dict.fromkeys(tokenize(query, terms_max=QUERY_CHARS_MAX)))
    if len(terms) > QUERY_TERMS_MAX:
        raise InvalidArgument(
            f"the text query has {len(terms)} distinct words, more than {QUERY_TERMS_MAX}:"
            " search with fewer"
        )
    return terms


# -- postings --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Postings:
    """An inverted index over the documents (non-NULL texts) of some data files.

    Term ``vocabulary[t]`` (sorted) is in documents ``documents[offsets[t]:offsets[t+1]]``
    (ascending), ``frequencies[...]`` times each. Document ``d`` is row ``rowids[d]`` of
    file ``files[document_files[d]]`` and has ``lengths[d]`` words. Per file: its rows
    (NULL texts too), documents and words, for the statistics of any subset of files.
    """

    vocabulary: list[str]
    offsets: np.ndarray
    documents: np.ndarray
    frequencies: np.ndarray
    rowids: np.ndarray
    lengths: np.ndarray
    document_files: np.ndarray
    files: tuple[str, ...]
    file_rows: np.ndarray
    file_documents: np.ndarray
    file_lengths: np.ndarray

    def lookup(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(documents, frequencies) of ``term`` (empty if no document holds it)."""
        at = bisect.bisect_left(self.vocabulary, term)
        if at == len(self.vocabulary) or self.vocabulary[at] != term:
            return self.documents[:0], self.frequencies[:0]
        start, end = int(self.offsets[at]), int(self.offsets[at + 1])
        return self.documents[start:end], self.frequencies[start:end]

    @property
    def nbytes(self) -> int:
        arrays = (self.offsets, self.documents, self.frequencies, self.rowids, self.lengths,
                  self.document_files)  # fmt: skip
        words = sum(len(term) + 56 for term in self.vocabulary)  # a str's overhead, about
        return sum(array.nbytes for array in arrays) + words + 80 * len(self.files)

    def check(self) -> None:
        """Assert the invariants a search relies on (after a blob is read back)."""
        terms, documents, files = len(self.vocabulary), len(self.rowids), len(self.files)
        assert self.offsets.shape == (terms + 1,) and int(self.offsets[0]) == 0
        assert int(self.offsets[-1]) == len(self.documents) == len(self.frequencies)
        assert bool(np.all(np.diff(self.offsets) > 0)), "a term without postings"
        assert len(self.lengths) == len(self.document_files) == documents
        assert len(self.file_rows) == len(self.file_documents) == len(self.file_lengths) == files
        assert not len(self.documents) or int(self.documents.max()) < documents
        assert not documents or int(self.document_files.max()) < files
        assert int(self.file_documents.sum()) == documents
        assert int(self.file_lengths.sum()) == int(self.lengths.sum())
        assert all(a < b for a, b in itertools.pairwise(self.vocabulary))


def build(file_id: str, rows: int, rowids: np.ndarray, texts: Sequence[str]) -> Postings:
    """The postings of one data file's ``texts`` (its non-NULL ones, rows ``rowids``)."""
    words = [tokenize(text) for text in texts]
    count = len(words)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=count)
    flat = list(itertools.chain.from_iterable(words))
    vocabulary = sorted(set(flat))
    number = {term: n for n, term in enumerate(vocabulary)}
    terms = np.fromiter((number[word] for word in flat), dtype=np.int64, count=len(flat))
    owners = np.repeat(np.arange(count, dtype=np.int64), lengths)
    # One key per (term, document), so unique() sorts by term, then document, and counts.
    keys, frequencies = np.unique(terms * max(count, 1) + owners, return_counts=True)
    per_term = np.bincount(keys // max(count, 1), minlength=len(vocabulary))
    return Postings(
        vocabulary=vocabulary,
        offsets=np.concatenate([[0], np.cumsum(per_term)]).astype(np.int64),
        documents=keys % max(count, 1),
        frequencies=frequencies.astype(np.int64),
        rowids=np.asarray(rowids, dtype=np.int64),
        lengths=lengths,
        document_files=np.zeros(count, dtype=np.int64),
        files=(file_id,),
        file_rows=np.array([rows], dtype=np.int64),
        file_documents=np.array([count], dtype=np.int64),
        file_lengths=np.array([int(lengths.sum())], dtype=np.int64),
    )


Part = tuple[Postings, np.ndarray]  # postings, and which of its files are still live


def merge(parts: Sequence[Part]) -> Postings:
    """One `Postings` over the live files of ``parts`` (documents in the parts' order)."""
    vocabulary = sorted(set().union(*(postings.vocabulary for postings, _ in parts)))
    number = {term: n for n, term in enumerate(vocabulary)}
    files: list[str] = []
    per_file: list[np.ndarray] = [np.empty((0, 3), dtype=np.int64)]
    empty = np.empty(0, np.int64)  # each list starts with one, for concatenate's sake
    rowids, lengths, owners = [empty], [empty], [empty]
    terms, documents, frequencies = [empty], [empty], [empty]
    document_base = 0
    for postings, live in parts:
        file_number = np.full(len(postings.files), -1, dtype=np.int64)
        file_number[live] = np.arange(len(files), len(files) + int(live.sum()))
        files.extend(name for name, keep in zip(postings.files, live, strict=True) if keep)
        per_file.append(
            np.stack([postings.file_rows, postings.file_documents, postings.file_lengths], 1)[live]
        )
        kept = live[postings.document_files]
        renumbered = np.full(len(kept), -1, dtype=np.int64)
        renumbered[kept] = np.arange(document_base, document_base + int(kept.sum()))
        document_base += int(kept.sum())
        rowids.append(postings.rowids[kept])
        lengths.append(postings.lengths[kept].astype(np.int64))
        owners.append(file_number[postings.document_files[kept]])
        term_numbers = np.fromiter(
            (number[term] for term in postings.vocabulary), np.int64, len(postings.vocabulary)
        )
        posting_terms = np.repeat(term_numbers, np.diff(postings.offsets))
        alive = kept[postings.documents]
        terms.append(posting_terms[alive])
        documents.append(renumbered[postings.documents[alive]])
        frequencies.append(postings.frequencies[alive].astype(np.int64))
    all_terms, all_documents = np.concatenate(terms), np.concatenate(documents)
    order = np.lexsort((all_documents, all_terms))
    per_term = np.bincount(all_terms, minlength=len(vocabulary))
    used = per_term > 0  # a term whose documents were all dropped leaves the vocabulary
    stats = np.concatenate(per_file)
    return Postings(
        vocabulary=[term for term, keep in zip(vocabulary, used, strict=True) if keep],
        offsets=np.concatenate([[0], np.cumsum(per_term[used])]).astype(np.int64),
        documents=all_documents[order],
        frequencies=np.concatenate(frequencies)[order],
        rowids=np.concatenate(rowids),
        lengths=np.concatenate(lengths),
        document_files=np.concatenate(owners),
        files=tuple(files),
        file_rows=stats[:, 0].copy(),
        file_documents=stats[:, 1].copy(),
        file_lengths=stats[:, 2].copy(),
    )


def serialize(postings: Postings) -> bytes:
    """The postings as a numpy ``.npz`` archive, integers in the narrowest type that fits."""
    vocabulary, vocabulary_ends = _encode_strings(postings.vocabulary)
    files, file_ends = _encode_strings(postings.files)
    arrays = {
        "format": np.array([_FORMAT], dtype=np.int64),
        "vocabulary": vocabulary, "vocabulary_ends": vocabulary_ends,
        "offsets": postings.offsets.astype(np.int64),
        "documents": _narrow(postings.documents), "frequencies": _narrow(postings.frequencies),
        "rowids": postings.rowids.astype(np.int64), "lengths": _narrow(postings.lengths),
        "document_files": _narrow(postings.document_files),
        "files": files, "file_ends": file_ends,
        "file_rows": postings.file_rows.astype(np.int64),
        "file_documents": postings.file_documents.astype(np.int64),
        "file_lengths": postings.file_lengths.astype(np.int64),
    }  # fmt: skip
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # integer arrays: nothing pickled
    return buffer.getvalue()


def deserialize(data: bytes) -> Postings:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert int(arrays["format"][0]) == _FORMAT, f"text index format {arrays['format'][0]}"
    postings = Postings(
        vocabulary=_decode_strings(arrays["vocabulary"], arrays["vocabulary_ends"]),
        offsets=arrays["offsets"],
        documents=arrays["documents"],
        frequencies=arrays["frequencies"],
        rowids=arrays["rowids"],
        lengths=arrays["lengths"],
        document_files=arrays["document_files"],
        files=tuple(_decode_strings(arrays["files"], arrays["file_ends"])),
        file_rows=arrays["file_rows"],
        file_documents=arrays["file_documents"],
        file_lengths=arrays["file_lengths"],
    )
    postings.check()
    return postings


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the smallest unsigned type that holds them."""
    top = int(values.max()) if len(values) else 0
    return values.astype(np.min_scalar_type(top))


def _encode_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [text.encode() for text in strings]
    ends = np.cumsum([len(item) for item in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), ends


def _decode_strings(data: np.ndarray, ends: np.ndarray) -> list[str]:
    raw, bounds = data.tobytes(), ends.tolist()
    starts = [0, *bounds[:-1]] if bounds else []  # no strings: no first one at 0
    return [raw[start:end].decode() for start, end in zip(starts, bounds, strict=True)]


# -- scoring ---------------------------------------------------------------------------------


def score(parts: Sequence[Part], terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, BM25 scores) of the live documents of ``parts`` that hold any of the
    distinct ``terms``, best first (equal scores: lower rowid first)."""
    count = sum(int(postings.file_documents[live].sum()) for postings, live in parts)
    total = sum(int(postings.file_lengths[live].sum()) for postings, live in parts)
    if not count or not terms:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    average = total / count
    found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in parts]
    idfs = []
    for term in terms:
        frequency = 0
        for n, (postings, live) in enumerate(parts):
            documents, frequencies = postings.lookup(term)
            alive = live[postings.document_files[documents]]
            found[n].append((documents[alive], frequencies[alive]))
            frequency += int(alive.sum())
        idfs.append(math.log(1 + (count - frequency + 0.5) / (frequency + 0.5)))
    rowids: list[np.ndarray] = [np.empty(0, np.int64)]
    scores: list[np.ndarray] = [np.empty(0, np.float64)]
    for (postings, _), per_term in zip(parts, found, strict=True):
        documents = np.concatenate([docs for docs, _ in per_term]).astype(np.int64)
        if not len(documents):
            continue
        tf = np.concatenate([tfs for _, tfs in per_term]).astype(np.float64)
        idf = np.repeat(idfs, [len(docs) for docs, _ in per_term])
        length = postings.lengths[documents].astype(np.float64)
        terms_scores = idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        # Summed per document in the order of the query's terms, whatever the parts.
        unique, inverse = np.unique(documents, return_inverse=True)
        scores.append(np.bincount(inverse, weights=terms_scores, minlength=len(unique)))
        rowids.append(postings.rowids[unique])
    all_rowids, all_scores = np.concatenate(rowids), np.concatenate(scores)
    order = np.lexsort((all_rowids, -all_scores))
    return all_rowids[order], all_scores[order]


# -- the table operations --------------------------------------------------------------------


def create_text_index(table: Table, column: str | None) -> IndexInfo:
    database = table._db
    database._store.authorize_element_write("tier0:AlterTable", table.bucket, table.name)
    info, files = database._readable(table.bucket, table.name)
    column = _text_column(info, column)
    held = [file for file in files if column in file.columns]
    index = merge([(_segment(table, info, file, column, keep=False), _ALL) for file in held])
    return _save(table, info, column, index)


def fold(table: Table, column: str | None = None) -> IndexInfo | None:
    """Make the column's text index cover the table as it is; None if it has none."""
    database = table._db
    database._store.authorize_element_write("tier0:AlterTable", table.bucket, table.name)
    info, files = database._readable(table.bucket, table.name)
    column = _text_column(info, column)
    current = _search._indexes(table, info).get(column)
    if current is None or current.metric != BM25:
        return None
    if current.params.get("tokenizer") != TOKENIZER:
        return create_text_index(table, column)
    parts = _parts(table, info, files, column, current, keep=False)
    _, live = parts[0]
    if len(parts) == 1 and bool(live.all()):
        return current  # no file added or removed since it was built
    return _save(table, info, column, merge(parts))


def text_search(
    table: Table, query: str, *, k: int, where: str | None, column: str | None,
    columns: Sequence[str] | None,
) -> pa.Table:  # fmt: skip
    _search.check_k(k)
    _check_where(where)
    terms = query_terms(query)
    info, files = table._db._readable(table.bucket, table.name)
    column = _text_column(info, column)
    chosen = _search._columns(info, columns)
    hits = _text_hits(table, info, files, column, terms, k, where)
    return _result(table, info, files, hits, chosen)


def hybrid_search(
    table: Table, text: str, vector: Sequence[float] | np.ndarray, *, k: int,
    where: str | None, text_column: str | None, vector_column: str | None, rrf_k: int,
    columns: Sequence[str] | None,
) -> pa.Table:  # fmt: skip
    _search.check_k(k)
    _check_where(where)
    if not isinstance(rrf_k, int) or isinstance(rrf_k, bool) or not 0 <= rrf_k <= RRF_K_MAX:
        raise InvalidArgument(f"rrf_k is 0..{RRF_K_MAX}, not {rrf_k!r}")
    terms = query_terms(text)
    # One snapshot for both lists: a row fused from them is the same row.
    info, files = table._db._readable(table.bucket, table.name)
    text_column = _text_column(info, text_column)
    chosen = _search._columns(info, columns)
    depth = max(k, HYBRID_DEPTH_MIN)
    fused: dict[int, float] = {}
    for hits in (
        _text_hits(table, info, files, text_column, terms, depth, where),
        _search.nearest_hits(
            table, info, files, vector, k=depth, where=where, column=vector_column
        ),
    ):
        for rank, (rowid, _) in enumerate(hits, start=1):
            fused[rowid] = fused.get(rowid, 0.0) + 1.0 / (rrf_k + rank)
    ranked = sorted(fused.items(), key=lambda hit: (-hit[1], hit[0]))[:k]
    return _result(table, info, files, ranked, chosen)


def is_text_column(schema: pa.Schema, column: str) -> bool:
    return any(name.lower() == column.lower() for name in _text_columns(schema))


# -- the parts -------------------------------------------------------------------------------

Hit = tuple[int, float]  # (rowid, score or distance)


def _text_hits(
    table: Table, info: TableInfo, files: Sequence[DataFile], column: str,
    terms: Sequence[str], k: int, where: str | None,
) -> list[Hit]:  # fmt: skip
    """The ``k`` best rows (passing ``where``) for ``terms``, best first."""
    passing: np.ndarray | None = None
    if where is not None and _search._count(table, info, files, where, column) <= EXACT_ROWS_MAX:
        passing = _passing(table, info, files, column, where)
    index = _search._indexes(table, info).get(column)
    if index is not None and (index.metric != BM25 or index.params.get("tokenizer") != TOKENIZER):
        index = None
    rowids, scores = score(_parts(table, info, files, column, index), terms)
    if where is None or passing is not None:
        if passing is not None:
            keep = np.isin(rowids, passing)
            rowids, scores = rowids[keep], scores[keep]
        return [(int(r), float(s)) for r, s in zip(rowids[:k], scores[:k], strict=True)]
    # A filter many rows pass: check the best rows, more each round, until k pass.
    hits: list[Hit] = []
    checked, want = 0, k
    while len(hits) < k and checked < len(rowids):
        batch = rowids[checked : checked + want].tolist()
        live = _search._live(table, info, files, batch, where)
        hits += [(r, float(s)) for r, s in zip(batch, scores[checked:], strict=False) if r in live]
        checked += len(batch)
        want *= _GROWTH
    return hits[:k]


def _parts(
    table: Table, info: TableInfo, files: Sequence[DataFile], column: str,
    index_info: IndexInfo | None, *, keep: bool = True,
) -> list[Part]:  # fmt: skip
    """What to score: the index (if any) with which of its files are still live, and
    a `build` of each file it does not cover (``keep``: kept for the next search)."""
    held = [file for file in files if column in file.columns]
    parts: list[Part] = []
    covered: set[str] = set()
    if index_info is not None:
        index = _load(table, index_info)
        current = {file.file_id for file in held}
        live = np.fromiter((name in current for name in index.files), bool, len(index.files))
        parts.append((index, live))
        covered = set(index.files)
    for file in held:
        if file.file_id not in covered:
            parts.append((_segment(table, info, file, column, keep=keep), _ALL))
    return parts


def _segment(table: Table, info: TableInfo, file: DataFile, column: str, *, keep: bool) -> Postings:
    cache = table._db._engine.decoded
    key = f"text {file.file_id} {column}"
    postings: Postings | None = cache.get(key)
    if postings is None:
        result = _search._query(
            table, info, [file],
            f"SELECT {ROWID}, {quote(column)} FROM {TARGET} WHERE {quote(column)} IS NOT NULL",
            trusted=True,
        )  # fmt: skip
        rowids = result.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        postings = build(file.file_id, file.rows, rowids, result.column(1).to_pylist())
        if keep:
            cache.put(key, postings, postings.nbytes)
    return postings


def _passing(
    table: Table, info: TableInfo, files: Sequence[DataFile], column: str, where: str
) -> np.ndarray:
    result = _search._query(
        table, info, files,
        f"SELECT {ROWID} FROM {TARGET} WHERE {quote(column)} IS NOT NULL"
        f" AND coalesce(({where}), false)",
    )  # fmt: skip
    passing: np.ndarray = result.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return passing


def _result(
    table: Table, info: TableInfo, files: Sequence[DataFile], hits: list[Hit],
    columns: Sequence[str],
) -> pa.Table:  # fmt: skip
    """The rows of ``hits``, in order, with their ``_score``."""
    rows = _search._rows(table, info, files, hits, columns)  # ends with _distance
    scores = pa.array([value for _, value in hits], pa.float64())
    return rows.set_column(rows.num_columns - 1, SCORE_COLUMN, scores)


def _text_columns(schema: pa.Schema) -> list[str]:
    return [
        field.name
        for field in schema
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    ]


def _text_column(info: TableInfo, column: str | None) -> str:
    return _search.pick_column(info, _text_columns(info.schema), column, "text",
                               "a text column is VARCHAR")  # fmt: skip


def _check_where(where: object) -> None:
    if where is not None and not isinstance(where, str):
        raise InvalidArgument(f"where is a SQL predicate (a string), not {where!r}")


def _load(table: Table, index_info: IndexInfo) -> Postings:
    cache = table._db._engine.indexes
    index: Postings | None = cache.get(index_info.manifest)
    if index is None:
        data = read_blob(table._db._store._kernel, index_info.manifest)
        index = deserialize(data)
        cache.put(index_info.manifest, index, max(len(data), index.nbytes))
    return index


def _save(table: Table, info: TableInfo, column: str, index: Postings) -> IndexInfo:
    database = table._db
    data = serialize(index)
    blob = write_blob(database._store._kernel, data)
    params: dict[str, Any] = {"tokenizer": TOKENIZER, "documents": len(index.rowids)}
    # ``rows``: the table's rows in the files it covers (NULL texts too), as an insert
    # compares them with the table's to decide when to fold.
    described = IndexInfo(
        column, BM25, params, int(index.file_rows.sum()), info.next_rowid - 1, blob.size,
        blob.manifest, 0,
    )  # fmt: skip
    built_seq = database._save_index(table, info, described, blob)
    database._engine.indexes.put(blob.manifest, index, max(len(data), index.nbytes))
    return dataclasses.replace(described, built_seq=built_seq)
