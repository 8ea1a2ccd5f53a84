"""Vector indexes: approximate nearest neighbours over a table's vector column.

An index is a faiss HNSW graph (chosen by measurement: see
../shared/notes/measurements.md and benchmarks/bench_vectors.py) over the
vectors of the data files that were live when it was built. It is stored as
a blob in the element store and described by a ``t0_table_indexes`` row (the
metric, the build parameters, and the files it covers with their row
counts), so it persists, reopens without a rebuild, and every process on the
same metadata shares it. Each process keeps recently used indexes loaded
(`IndexCache`).

A vector's id in the index is its row's ``_rowid``, which a row keeps when an
update or delete rewrites its file (an update that changes the vector gives
the row a new rowid). Rows deleted since the build leave stale ids, which
searches drop (asking for more candidates to make up for them); rows added
since (rowids above the index's ``rowid_max``) are searched exactly until
`fold` adds them. Metrics: ``cosine`` (distance 1 - cosine
similarity), ``l2`` (Euclidean distance) and ``dot`` (distance: the negated
inner product), smaller always nearer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from tier0.errors import InvalidArgument

METRICS: Final = ("cosine", "l2", "dot")
HNSW_M: Final = 32
HNSW_EF_CONSTRUCTION: Final = 80
HNSW_EF_SEARCH: Final = 96
#: The most candidates a caller may ask the graph to explore (``ef``) per search.
EF_MAX: Final = 10_000
#: Rows matching a search filter up to which the search is exact (no index).
EXACT_ROWS_MAX: Final = 20_000
#: Loaded indexes kept per process, by their blob's bytes.
INDEX_CACHE_BYTES_MAX: Final = 4 * 1024**3
K_MAX: Final = 10_000


@dataclass(frozen=True)
class IndexInfo:
    column: str
    metric: str
    params: dict[str, Any]
    #: Vectors in the index, and the highest rowid among the rows it covers.
    rows: int
    rowid_max: int
    size: int
    manifest: bytes
    built_seq: int


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise InvalidArgument(
            "vector indexes need faiss: pip install 'tier0[vectors]' (exact search works without)"
        ) from error
    return faiss


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidArgument(f"metric is one of {', '.join(METRICS)}, not {metric!r}")
    return metric


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Vectors as faiss takes them: float32, contiguous, unit length for cosine."""
    prepared: np.ndarray = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(prepared, axis=1, keepdims=True)
        prepared = np.ascontiguousarray(prepared / np.where(norms == 0, 1, norms), np.float32)
    return prepared


def build(vectors: np.ndarray, ids: np.ndarray, metric: str, params: dict[str, Any]) -> Any:
    faiss = faiss_module()
    dimension = vectors.shape[1]
    space = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    graph = faiss.IndexHNSWFlat(dimension, int(params.get("m", HNSW_M)), space)
    graph.hnsw.efConstruction = int(params.get("ef_construction", HNSW_EF_CONSTRUCTION))
    index = faiss.IndexIDMap2(graph)
    add(index, vectors, ids, metric)
    return index


def add(index: Any, vectors: np.ndarray, ids: np.ndarray, metric: str) -> None:
    if len(ids):
        index.add_with_ids(prepare(vectors, metric), np.ascontiguousarray(ids, dtype=np.int64))


def serialize(index: Any) -> bytes:
    return bytes(faiss_module().serialize_index(index).tobytes())


def deserialize(data: bytes) -> Any:
    return faiss_module().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def ann(
    index: Any, query: np.ndarray, k: int, metric: str, ef: int
) -> tuple[np.ndarray, np.ndarray]:
    """(distances, rowids) of the ``k`` nearest indexed vectors (-1 pads a short answer)."""
    faiss = faiss_module()
    parameters = faiss.SearchParametersHNSW(efSearch=max(ef, k))
    raw, ids = index.search(prepare(query[None, :], metric), k, params=parameters)
    return to_distance(raw[0], metric), ids[0]


def exact(
    vectors: np.ndarray, query: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(distances, positions) of the ``k`` nearest of ``vectors``, nearest first."""
    if not len(vectors):
        return np.empty(0, np.float32), np.empty(0, np.int64)
    matrix = prepare(vectors, metric)
    target = prepare(query[None, :], metric)[0]
    if metric == "l2":
        distances = np.sqrt(np.maximum(((matrix - target) ** 2).sum(axis=1), 0))
    elif metric == "cosine":
        distances = 1 - matrix @ target
    else:
        distances = -(matrix @ target)
    k = min(k, len(distances))
    nearest = np.argpartition(distances, k - 1)[:k]
    order = nearest[np.argsort(distances[nearest], kind="stable")]
    return distances[order].astype(np.float32), order.astype(np.int64)


def to_distance(raw: np.ndarray, metric: str) -> np.ndarray:
    """faiss's scores as the module's distances."""
    distances: np.ndarray
    if metric == "l2":
        distances = np.sqrt(np.maximum(raw, 0))
    elif metric == "cosine":
        distances = 1 - raw
    else:
        distances = -raw
    return distances


class IndexCache:
    """Immutable things by key (loaded indexes by their blob's manifest, a file's stored
    rowids by file id), the least recently used dropped past a byte budget."""

    def __init__(self, bytes_max: int = INDEX_CACHE_BYTES_MAX) -> None:
        self._bytes_max = bytes_max
        self._entries: OrderedDict[bytes | str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: bytes | str) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: bytes | str, index: Any, size: int) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (index, size)
            self._bytes += size
            while self._bytes > self._bytes_max and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
