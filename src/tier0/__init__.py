"""tier0: a data platform for AI in one package.

>>> import tier0
>>> with tier0.open("/tmp/tier0-demo") as t0:          # doctest: +SKIP
...     t0.create_bucket("docs")
...     t0.put("docs", "a.txt", b"hello")
...     t0.sql("SELECT key, size FROM objects").rows
"""

from __future__ import annotations

from tier0._client import Tier0, default_data_dir, open
from tier0.catalog import QueryResult
from tier0.engine import Event, EventLog
from tier0.errors import *  # noqa: F403 - the error tree is part of the public surface
from tier0.errors import __all__ as _errors
from tier0.identity import ANONYMOUS, Credential, Principal, RequestContext
from tier0.store import (
    AccessControl,
    BucketInfo,
    CheckReport,
    CORSRule,
    DeleteResult,
    GCReport,
    ListPage,
    ObjectInfo,
    ObjectReader,
    ObjectTags,
    StoreConfig,
    StoreStatistics,
    VersionPage,
)

__version__ = "0.1.0"

__all__ = [
    "ANONYMOUS",
    "AccessControl",
    "BucketInfo",
    "CORSRule",
    "CheckReport",
    "Credential",
    "DeleteResult",
    "Event",
    "EventLog",
    "GCReport",
    "ListPage",
    "ObjectInfo",
    "ObjectReader",
    "ObjectTags",
    "Principal",
    "QueryResult",
    "RequestContext",
    "StoreConfig",
    "StoreStatistics",
    "Tier0",
    "VersionPage",
    "default_data_dir",
    "open",
    *_errors,
]
