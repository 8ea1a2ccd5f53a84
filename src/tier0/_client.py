"""``tier0.open()``: the embedded platform in one object.

A data directory holds everything an embedded tier0 needs::

    <data>/tier0.json          which metadata backend (SQLite here, or a PostgreSQL URL)
    <data>/meta/meta.db        SQLite metadata (absent with PostgreSQL)
    <data>/chunks/             chunk files, named by hash
    <data>/root-credentials    root's first keys, owner-only, in AWS credentials-file form

Several processes may open one directory at once. With PostgreSQL metadata
and a shared chunk directory, processes on several hosts form one store.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from tier0.catalog import Catalog, QueryResult
from tier0.engine import EventLog
from tier0.errors import MetaUnavailable
from tier0.identity import ROOT, Authorizer, Credential, Decision, Grant, Principal, Principals
from tier0.meta import Committer, MetaBackend, MetaStatistics, open_backend
from tier0.store import (
    CheckReport,
    ChunkBackend,
    GCReport,
    Kernel,
    LocalChunkBackend,
    Store,
    StoreConfig,
    StoreStatistics,
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


def _resolve_meta(data: Path, meta: str | None) -> str:
    """The metadata backend for ``data``: as given (and then remembered), else as remembered."""
    config_path = data / CONFIG_NAME
    saved: dict[str, Any] = {}
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        if saved.get("format") != FORMAT_VERSION:
            raise MetaUnavailable(
                f"{config_path} has format {saved.get('format')}, expected {FORMAT_VERSION}"
            )
    chosen = meta or saved.get("meta") or os.environ.get("TIER0_META") or "sqlite"
    if saved.get("meta") != chosen:
        text = json.dumps({"format": FORMAT_VERSION, "meta": chosen}, indent=2) + "\n"
        temporary = config_path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, config_path)
    return str(chosen)


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
        self, kernel: Kernel, principal: Principal, *, owned: _Owned, closes: bool
    ) -> None:
        super().__init__(kernel, principal)
        self._owned = owned
        self._closes = closes
        self.data_dir = owned.data

    @property
    def root_credential(self) -> Credential | None:
        """Root's keys if this open created them (show them once), else None."""
        return self._owned.root_credential

    def as_principal(self, principal: str | Principal) -> Tier0:
        """The same store, acting as another principal (the caller vouches for it)."""
        if isinstance(principal, str):
            principal = self.principals.get(principal)
        return Tier0(self._kernel, principal, owned=self._owned, closes=False)

    # -- SQL and events ---------------------------------------------------------------------

    def sql(
        self, query: str, *, timeout_s: float | None = None, rows_max: int | None = None
    ) -> QueryResult:
        """Read-only SQL over the live catalog (views ``objects``, ``versions``, ``prefixes``,
        ``buckets``, ``events``, ``principals``, ``audit``), in PostgreSQL's dialect on
        every backend.

        A query sees every write that returned before it started. Other
        principals than root see only buckets they may list.
        """
        visible = None
        if not self.principal.is_root:
            visible = self._listable_buckets()
        self._kernel.authorizer.record(
            Decision(self.principal, "tier0:Sql", "/", True, "scoped to the buckets it may list")
        )
        return self._owned.catalog.query(
            query, visible_buckets=visible, timeout_s=timeout_s, rows_max=rows_max
        )

    @property
    def events(self) -> EventLog:
        """The event log (root, or a principal granted ``tier0:ReadEvents`` on ``/events``)."""
        self._authorize("tier0:ReadEvents", "/events", owner=None)
        return self._owned.events

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
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        kernel = self.kernel
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
) -> Tier0:
    """Open (creating if needed) the tier0 data directory ``path``.

    ``meta`` picks the metadata backend the first time (``"sqlite"``, the
    default, or a ``postgresql://`` URL); later opens remember it. Root's
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
    meta_url = _resolve_meta(data, meta)
    backend: MetaBackend = open_backend(meta_url, data_dir=data)
    try:
        backend.install_schema()
    except BaseException:
        backend.close()
        raise
    config = config or StoreConfig()
    committer = Committer(backend)
    authorizer = Authorizer(backend, committer, clock_us=_now_us)
    kernel = Kernel(
        meta=backend,
        committer=committer,
        chunks=chunks or LocalChunkBackend(data / "chunks"),
        authorizer=authorizer,
        config=config,
        executor=ThreadPoolExecutor(config.io_threads, thread_name_prefix="tier0-io"),
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


def _now_us() -> int:
    return time.time_ns() // 1000
