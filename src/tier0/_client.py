"""``tier0.open()``: the embedded platform in one object.

A data directory holds everything an embedded tier0 needs::

    <data>/tier0.json          which metadata backend (SQLite here, or a PostgreSQL URL),
                               and where chunks live when not in <data>/chunks
    <data>/meta/meta.db        SQLite metadata (absent with PostgreSQL)
    <data>/chunks/             chunk files, named by hash
    <data>/root-credentials    root's first keys, owner-only, in AWS credentials-file form

Several processes may open one directory at once. With PostgreSQL metadata
and a shared chunk store (an S3 bucket, or a shared directory), processes on
several hosts, each with a data directory of its own, form one store.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tier0.catalog import Catalog, QueryResult

if TYPE_CHECKING:  # the DataBase loads DuckDB and Arrow: only when first used
    import pyarrow as pa

    from tier0.db import Database, Engine, SchemaSpec, Table
    from tier0.db._semantic import IndexReport, Progress
    from tier0.engine._api import DataEngine, StreamsAPI
from tier0.engine import EventLog
from tier0.errors import MetaError, MetaUnavailable
from tier0.identity import (
    ROOT,
    Authorizer,
    Credential,
    Decision,
    Grant,
    Principal,
    Principals,
    RequestContext,
)
from tier0.meta import Committer, MetaBackend, MetaStatistics, open_backend
from tier0.store import (
    CheckReport,
    ChunkBackend,
    GCReport,
    Kernel,
    Store,
    StoreConfig,
    StoreStatistics,
    open_chunk_backend,
    spread,
)
from tier0.store import check as check_store
from tier0.store import collect as collect_garbage
from tier0.store import statistics as store_statistics

CONFIG_NAME: Final = "tier0.json"
CREDENTIALS_NAME: Final = "root-credentials"
FORMAT_VERSION: Final = 1


def default_data_dir() -> Path:
    """``$TIER0_DATA``, else ``$XDG_DATA_HOME/tier0`` (``~/.local/share/tier0``)."""
    if "TIER0_DATA" in os.environ:
        return Path(os.environ["TIER0_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tier0"


def _resolve_settings(
    data: Path, *, meta: str | None, chunks: str | None, chunks_endpoint: str | None
) -> tuple[dict[str, Any], bool]:
    """What ``data`` opens: ``meta``, and ``chunks``/``chunks_endpoint`` when not local.

    Each is as given (and then remembered), else as remembered, else from the
    environment (``TIER0_META``, ``TIER0_CHUNKS``, ``TIER0_CHUNKS_ENDPOINT``).
    Returns the settings and whether they differ from the remembered ones.
    Remembering the chunk location matters: opening a store whose chunks
    are in S3 without it would find every chunk missing.
    """
    config_path = data / CONFIG_NAME
    saved: dict[str, Any] = {}
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        if saved.get("format") != FORMAT_VERSION:
            raise MetaUnavailable(
                f"{config_path} has format {saved.get('format')}, expected {FORMAT_VERSION}"
            )
    settings: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "meta": meta or saved.get("meta") or os.environ.get("TIER0_META") or "sqlite",
    }
    place: tuple[str | None, str | None]
    if chunks:
        place = (chunks, chunks_endpoint)
    elif saved.get("chunks"):
        place = (saved["chunks"], chunks_endpoint or saved.get("chunks_endpoint"))
    else:
        place = (os.environ.get("TIER0_CHUNKS"), os.environ.get("TIER0_CHUNKS_ENDPOINT"))
    for name, value in zip(("chunks", "chunks_endpoint"), place, strict=True):
        if value:
            settings[name] = value
    return settings, settings != saved


def _save_settings(data: Path, settings: dict[str, Any]) -> None:
    config_path = data / CONFIG_NAME
    text = json.dumps(settings, indent=2) + "\n"
    temporary = config_path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, config_path)


def _write_credentials(path: Path, credential: Credential) -> None:
    text = (
        "# tier0 root credentials, shown once when they were made. Keep this file private.\n"
        "[tier0]\n"
        f"aws_access_key_id = {credential.access_key}\n"
        f"aws_secret_access_key = {credential.secret_key}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


class Tier0(Store):
    """An opened tier0: the element store plus SQL, events and identity, as one principal.

    Object and bucket methods come from ``Store`` (``put``, ``get``, ``list``,
    ``copy``, ``delete``, ...). Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        kernel: Kernel,
        principal: Principal,
        *,
        owned: _Owned,
        closes: bool,
        context: RequestContext | None = None,
    ) -> None:
        super().__init__(kernel, principal, context=context)
        self._owned = owned
        self._closes = closes
        self.data_dir = owned.data

    @property
    def root_credential(self) -> Credential | None:
        """Root's keys if this open created them (show them once), else None."""
        return self._owned.root_credential

    def as_principal(
        self, principal: str | Principal, *, context: RequestContext | None = None
    ) -> Tier0:
        """The same store, acting as another principal (the caller vouches for it).

        ``context`` describes the request it serves (client address, TLS,
        User-Agent, Referer), for bucket policy conditions; a protocol passes
        one per request. ``"anonymous"`` (`tier0.identity.ANONYMOUS`) is the
        principal of unsigned requests, admitted only by policies and ACLs.

        >>> t0.as_principal(ANONYMOUS, context=RequestContext(source_ip="10.0.0.7"))  # doctest: +SKIP
        """
        if isinstance(principal, str):
            principal = self.principals.get(principal)
        return Tier0(self._kernel, principal, owned=self._owned, closes=False, context=context)

    # -- SQL and events ---------------------------------------------------------------------

    def sql(
        self, query: str, *, timeout_s: float | None = None, rows_max: int | None = None
    ) -> QueryResult:
        """SQL over tables, files and the live catalog (see `tier0.db` and the README):
        the catalog views ``objects``, ``versions``, ``prefixes``, ``buckets``,
        ``tables``, ``events``, ``uploads``, ``principals``, ``audit``, ``triggers``,
        ``invocations``; tables as
        ``bucket.table``; files as ``tier0://`` URLs; DDL and DML on tables. At most
        ``rows_max`` rows come back (`sql_arrow` returns them all).

        One dialect, DuckDB's, whatever the metadata backend. A query sees every
        write that returned before it started. Other principals than root see
        only buckets they may list. Times come as ``datetime``, JSON as JSON text.
        """
        result = self.sql_arrow(query, timeout_s=timeout_s)
        rows_max = self._owned.catalog.rows_max if rows_max is None else rows_max
        if not result.num_columns:  # DDL: Arrow counts rows of a zero-column table oddly
            return QueryResult([], [], truncated=False)
        rows = [
            tuple(row.values()) for row in _whole_numbers(result.slice(0, rows_max)).to_pylist()
        ]
        return QueryResult(result.column_names, rows, truncated=result.num_rows > rows_max)

    def sql_arrow(self, query: str, *, timeout_s: float | None = None) -> pa.Table:
        """`sql`, with every row, as an Arrow table (for large results: no Python rows)."""
        self._kernel.authorizer.record(
            Decision(self.principal, "tier0:Sql", "/", True, "scoped to the buckets it may list")
        )
        timeout_s = timeout_s or self._owned.catalog.timeout_s
        table: pa.Table = self.db.sql(query, timeout_s=timeout_s)
        return table

    @property
    def db(self) -> Database:
        """Tables and SQL over tables, files and the catalog (see `tier0.db`)."""
        from tier0.db import Database

        return Database(self, self._owned.engine(), self._owned.catalog, self._visible_buckets)

    def create_table(self, path: str, schema: SchemaSpec, *, exist_ok: bool = False) -> Table:
        """Create table ``bucket/name`` (see `tier0.db.Database.create_table`)."""
        return self.db.create_table(path, schema, exist_ok=exist_ok)

    def table(self, path: str) -> Table:
        """Table ``bucket/name``; `NoSuchTable` if there is none."""
        return self.db.table(path)

    def index(
        self, bucket: str, *, prefix: str = "", progress: Progress | None = None
    ) -> IndexReport:
        """Embed the text elements of ``bucket`` under ``prefix`` for `search`: the first
        run reads them all, later ones only what changed since (see `tier0.db._semantic`).
        Needs ``pip install 'tier0[embeddings]'``; ``progress(done, total)`` is called
        as elements are looked at.

        >>> t0.index("docs").elements_indexed  # doctest: +SKIP
        12
        """
        from tier0.db._semantic import index_bucket

        return index_bucket(self.db, bucket, prefix=prefix, progress=progress)

    def search(
        self, query: str, *, bucket: str, k: int = 10, prefix: str | None = None,
        elements: bool = False,
    ) -> pa.Table:  # fmt: skip
        """The ``k`` passages of ``bucket`` nearest in meaning to ``query`` (key,
        version_id, passage, text, _distance), or with ``elements=True`` the ``k``
        nearest elements with their best passage; only what this principal may read.
        The bucket must have been indexed (`index`).

        >>> t0.search("sourdough starter", bucket="docs", k=3)  # doctest: +SKIP
        """
        from tier0.db._semantic import search_passages

        return search_passages(self.db, query, bucket=bucket, k=k, prefix=prefix, elements=elements)

    @property
    def events(self) -> EventLog:
        """The event log (root, or a principal granted ``tier0:ReadEvents`` on ``/events``)."""
        self._authorize("tier0:ReadEvents", "/events", owner=None)
        return self._owned.events

    @property
    def engine(self) -> DataEngine:
        """The DataEngine: functions, triggers, secrets, invocations (see `tier0.engine`)."""
        from tier0.engine._api import DataEngine

        return DataEngine(
            self._kernel, self.principal.id,
            authorize=lambda action, resource: self._authorize(action, resource, owner=None),
            principals=self._owned.principals, data_dir=self._owned.data,
        )  # fmt: skip

    @property
    def streams(self) -> StreamsAPI:
        """Named, retained logs with consumer groups (see `tier0.engine._streams`)."""
        from tier0.engine._api import StreamsAPI

        return StreamsAPI(
            self._kernel, self.principal.id,
            authorize=lambda action, resource: self._authorize(action, resource, owner=None),
        )  # fmt: skip

    # -- identity --------------------------------------------------------------------------

    @property
    def principals(self) -> Principals:
        """The principals registry, with their credentials: root (or a grant of
        ``tier0:ManagePrincipals``) only, since it reaches every secret."""
        self._authorize("tier0:ManagePrincipals", "/principals", owner=None)
        return self._owned.principals

    def create_user(self, name: str, kind: str = "user") -> tuple[Principal, Credential]:
        """A new principal (user, agent or service) with one credential; root only."""
        self._authorize("tier0:CreatePrincipal", f"/principals/{name}", owner=None)
        return self.principals.create(name, kind, created_by=self.principal)

    def delete_user(self, name: str) -> None:
        self._authorize("tier0:DeletePrincipal", f"/principals/{name}", owner=None)
        self.principals.delete(name)

    def list_users(self) -> list[Principal]:
        self._authorize("tier0:ListPrincipals", "/principals", owner=None)
        return self.principals.all()

    def grant(self, principal: str | Principal, action: str, resource: str) -> Grant:
        """Allow ``principal`` to perform ``action`` (glob) on ``resource`` (glob); root only."""
        target = self.principals.get(principal) if isinstance(principal, str) else principal
        self._authorize("tier0:Grant", f"/principals/{target.name}", owner=None)
        return self._kernel.authorizer.grant(target, action, resource)

    # -- maintenance -----------------------------------------------------------------------

    def gc(self, *, grace_s: float | None = None) -> GCReport:
        """Reclaim chunks no version has referenced for longer than the grace period."""
        self._authorize("tier0:GC", "/", owner=None)
        return collect_garbage(self._kernel, grace_s=grace_s)

    def check(self, *, deep: bool = False) -> CheckReport:
        """fsck: verify metadata against chunks (``deep`` re-hashes every chunk)."""
        self._authorize("tier0:Check", "/", owner=None)
        return check_store(self._kernel, deep=deep)

    def stats(self) -> StoreStatistics:
        self._authorize("tier0:Stats", "/", owner=None)
        return store_statistics(self._kernel)

    def statistics(self) -> MetaStatistics:
        """The metadata committer's counters (commits, operations per commit)."""
        return self._kernel.committer.statistics()

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Finish in-flight writes, then release everything (only the opener closes)."""
        if self._closes:
            self._owned.close()

    def __enter__(self) -> Tier0:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _visible_buckets(self) -> list[str] | None:
        return None if self.principal.is_root else self._listable_buckets()

    def _listable_buckets(self) -> list[str]:
        with self._kernel.meta.reader() as db:
            rows = db.query_all("SELECT name, owner FROM t0_buckets ORDER BY name")
        authorizer = self._kernel.authorizer
        return [
            name
            for name, owner in rows
            if authorizer.decide(self.principal, "s3:ListBucket", f"/{name}", owner=owner).allowed
        ]


class _Owned:
    """What an ``open()`` made and must release."""

    def __init__(
        self, data: Path, kernel: Kernel, catalog: Catalog, root_credential: Credential | None
    ) -> None:
        self.data = data
        self.kernel = kernel
        self.catalog = catalog
        self.events = EventLog(kernel.meta)
        self.principals = Principals(kernel.meta, kernel.committer)
        self.root_credential = root_credential
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._closed = False

    def engine(self) -> Engine:
        """The DataBase's DuckDB, started on first use (~15 ms, and memory)."""
        with self._engine_lock:
            if self._closed:
                raise MetaError("the store is closed: open it again")
            if self._engine is None:
                from tier0.db import Engine

                self._engine = Engine(meta=self.kernel.meta, cache_directory=self.data / "cache")
            return self._engine

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        kernel = self.kernel
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
        kernel.authorizer.close()  # its last flush goes through the committer
        kernel.committer.close()
        kernel.executor.shutdown(wait=True)
        self.catalog.close()
        kernel.chunks.close()
        kernel.meta.close()


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    meta: str | None = None,
    principal: str | None = None,
    config: StoreConfig | None = None,
    chunks: ChunkBackend | None = None,
    chunks_url: str | None = None,
    chunks_endpoint: str | None = None,
) -> Tier0:
    """Open (creating if needed) the tier0 data directory ``path``.

    ``meta`` picks the metadata backend the first time (``"sqlite"``, the
    default, or a ``postgresql://`` URL); later opens remember it.
    ``chunks_url`` likewise picks where chunks live: ``<path>/chunks`` by
    default, ``s3://BUCKET[/PREFIX]`` for an S3-compatible store at
    ``chunks_endpoint`` (AWS when not given; credentials from
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or boto3's other
    sources), or an absolute directory path for a shared filesystem. Both
    fall back to ``TIER0_CHUNKS`` and ``TIER0_CHUNKS_ENDPOINT``. Several
    processes with one PostgreSQL ``meta`` and one chunk location are one
    store. ``chunks`` passes a ChunkBackend object instead (not remembered). Root's
    credentials come from ``TIER0_ROOT_ACCESS_KEY``/``TIER0_ROOT_SECRET_KEY``
    when set, else are generated on first open and saved to
    ``<path>/root-credentials`` (mode 0600). The result acts as root unless
    ``principal`` names another.

    >>> with tier0.open("/tmp/t0") as t0:               # doctest: +SKIP
    ...     t0.create_bucket("docs")
    ...     t0.put("docs", "hello.txt", b"hi")
    """
    data = Path(path) if path is not None else default_data_dir()
    try:
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise MetaUnavailable(f"cannot create data directory {data}: {error}") from error
    settings, changed = _resolve_settings(
        data, meta=meta, chunks=chunks_url, chunks_endpoint=chunks_endpoint
    )
    owns_chunks = chunks is None
    if chunks is None:
        chunks = open_chunk_backend(
            settings.get("chunks"), data_dir=data, endpoint_url=settings.get("chunks_endpoint")
        )
    try:
        backend: MetaBackend = open_backend(settings["meta"], data_dir=data)
    except BaseException:
        if owns_chunks:
            chunks.close()
        raise
    try:
        backend.install_schema()
        if changed:
            _save_settings(data, settings)  # once both backends opened: they work
    except BaseException:
        backend.close()
        if owns_chunks:
            chunks.close()
        raise
    config = config or StoreConfig()
    committer = Committer(backend)
    authorizer = Authorizer(backend, committer, clock_us=_now_us)
    kernel = Kernel(
        meta=backend,
        committer=committer,
        chunks=chunks,
        authorizer=authorizer,
        config=config,
        executor=ThreadPoolExecutor(
            config.io_threads, thread_name_prefix="tier0-io", initializer=spread
        ),
    )
    access = os.environ.get("TIER0_ROOT_ACCESS_KEY") or None
    secret = os.environ.get("TIER0_ROOT_SECRET_KEY") or None
    owned = _Owned(data, kernel, Catalog(backend), None)
    try:
        created = owned.principals.ensure_root(access_key=access, secret_key=secret)
        if created is not None:
            _write_credentials(data / CREDENTIALS_NAME, created)
            owned.root_credential = created
        acting = ROOT if principal is None else owned.principals.get(principal)
    except BaseException:
        owned.close()
        raise
    return Tier0(kernel, acting, owned=owned, closes=True)


def _whole_numbers(table: pa.Table) -> pa.Table:
    """``table`` with its whole-number decimals as integers where they fit (DuckDB sums
    BIGINTs into 128-bit integers, which Arrow carries as decimals)."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type) and field.type.scale == 0:
            try:
                column = table.column(index).cast(pa.int64())
            except pa.ArrowInvalid:
                continue  # beyond 64 bits: stays a Decimal
            table = table.set_column(index, field.name, column)
    return table


def _now_us() -> int:
    return time.time_ns() // 1000
