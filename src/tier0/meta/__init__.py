"""Metadata backends: SQLite (embedded default) and PostgreSQL (scale-out).

One schema, one group committer and one set of queries run on both; a backend
supplies connections and a commit signal (see ``MetaBackend``).
"""

from __future__ import annotations

from pathlib import Path

from tier0.meta._backend import (
    ChangeSignal,
    Connection,
    MetaBackend,
    MetaStatistics,
    dump_json,
    load_json,
)
from tier0.meta._committer import Committer, Outcome, WriteTx
from tier0.meta._postgres import PostgresBackend, redact
from tier0.meta._schema import CATALOG_VIEWS, SCHEMA_VERSION
from tier0.meta._sqlite import SQLiteBackend

__all__ = [
    "CATALOG_VIEWS",
    "SCHEMA_VERSION",
    "ChangeSignal",
    "Committer",
    "Connection",
    "MetaBackend",
    "MetaStatistics",
    "Outcome",
    "PostgresBackend",
    "SQLiteBackend",
    "WriteTx",
    "dump_json",
    "load_json",
    "open_backend",
    "redact",
]


def open_backend(meta: str | None, *, data_dir: Path) -> MetaBackend:
    """The backend named by ``meta``: a ``postgresql://`` URL, or None for SQLite in ``data_dir``."""
    if meta is None or meta in ("", "sqlite"):
        return SQLiteBackend(data_dir / "meta")
    if meta.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(meta)
    from tier0.errors import InvalidArgument

    raise InvalidArgument(
        f"unknown metadata backend {redact(meta)!r}: use 'sqlite' or a postgresql:// URL"
    )
