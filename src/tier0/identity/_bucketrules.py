"""Each bucket's access rules (policy, canned ACL) and configuration, cached in the process.

Every decision on a bucket first looks for an explicit Deny in its policy, so
the rules must cost no query on the hot path. `BucketRulesCache.get` answers
from memory and reloads a bucket's rows from ``t0_bucket_config`` (one
indexed query for all of them) when its entry is older than ``ttl_s``.

Staleness, and why a TTL: a change made through this process forgets the
entry at once (`BucketRulesCache.forget`), so this process never acts on old
rules. A change made by another process sharing the metadata (a second
gateway, the CLI) is seen within ``ttl_s`` (`RULES_TTL_S`, 1 s). A version
stamp checked per decision would cost the query the cache exists to save,
and the commit signal cannot tell a policy change from the thousands of puts
around it; one query per bucket per second is nothing, and a second is well
within the "eventually consistent, typically seconds" that AWS promises for
policy changes. A reload that raced with a change in this process is
dropped rather than cached, so a forgotten entry cannot come back stale.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tier0.identity._s3policy import Policy, parse_policy
from tier0.meta import MetaBackend, dump_json, load_json

__all__ = [
    "BUCKETS_CACHED_MAX",
    "RULES_TTL_S",
    "BucketRules",
    "BucketRulesCache",
    "decode_config",
    "encode_config",
]

RULES_TTL_S: Final = 1.0
BUCKETS_CACHED_MAX: Final = 10_000


def encode_config(value: Any) -> str:
    """A configuration value as ``t0_bucket_config.value`` holds it.

    Wrapped in an object, because PostgreSQL hands a JSONB string back decoded
    and SQLite as JSON text, and a bare string could not tell them apart.
    """
    return dump_json({"value": value})


def decode_config(column: Any) -> Any:
    """The value `encode_config` stored."""
    return load_json(column)["value"]


@dataclass(frozen=True, slots=True)
class BucketRules:
    """One bucket's configuration as loaded: the parsed policy, the canned ACL
    (``private`` when none is set), and every configuration value by name (raw JSON)."""

    policy: Policy | None = None
    acl: str = "private"
    values: Mapping[str, Any] = field(default_factory=dict)
    #: What users of these rules derive from ``values`` (parsed CORS rules, ...),
    #: kept for as long as these rules are.
    derived: dict[str, Any] = field(default_factory=dict)
    loaded_s: float = 0.0


class BucketRulesCache:
    """`BucketRules` per bucket, from memory; see the module docstring for staleness."""

    def __init__(
        self,
        backend: MetaBackend,
        *,
        ttl_s: float = RULES_TTL_S,
        clock_s: Callable[[], float] = time.monotonic,
        buckets_max: int = BUCKETS_CACHED_MAX,
    ) -> None:
        self._backend = backend
        self._ttl_s = ttl_s
        self._clock_s = clock_s
        self._buckets_max = buckets_max
        self._entries: dict[str, BucketRules] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self.loads = 0

    def get(self, bucket: str) -> BucketRules:
        """The bucket's rules (empty rules for a bucket with none, or no such bucket)."""
        now = self._clock_s()
        entry = self._entries.get(bucket)
        if entry is not None and now - entry.loaded_s < self._ttl_s:
            return entry
        generation = self._generation
        loaded = self._load(bucket, now)
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self._buckets_max:
                    self._entries.clear()
                self._entries[bucket] = loaded
        return loaded

    def forget(self, bucket: str) -> None:
        """Drop the bucket's entry: its configuration changed through this process."""
        with self._lock:
            self._generation += 1
            self._entries.pop(bucket, None)

    def _load(self, bucket: str, now: float) -> BucketRules:
        with self._backend.reader() as db:
            rows = db.query_all(
                "SELECT name, value FROM t0_bucket_config WHERE bucket = ?", (bucket,)
            )
        self.loads += 1
        values = {str(name): decode_config(value) for name, value in rows}
        policy = values.get("policy")
        return BucketRules(
            policy=None if policy is None else parse_policy(policy, bucket=bucket),
            acl=str(values.get("acl") or "private"),
            values=values,
            loaded_s=now,
        )
