"""The authorize seam and the audit log.

Every API calls ``Authorizer.authorize(principal, action, resource)`` before it
acts. The rule here is deliberately small and deny-by-default: root may do
anything, the owner of a bucket may do anything to it and its elements, and
anyone else only what a grant allows. A richer policy language replaces
``decide`` later without touching the callers.

Every decision, allowed or denied, becomes an audit row. A mutation's decision
is written in the mutation's own transaction (an acknowledged write always has
its audit row); reads and denials are buffered and group-committed within
``AUDIT_FLUSH_S``, so auditing a read does not cost it a commit.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from tier0.errors import AccessDenied, InvalidArgument
from tier0.identity._principals import Principal
from tier0.meta import Committer, MetaBackend, WriteTx

AUDIT_FLUSH_S: Final = 0.2
AUDIT_BUFFER_ROWS_MAX: Final = 4096
GRANTS_PER_PRINCIPAL_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class Decision:
    """One authorization decision, as it is recorded."""

    principal: Principal
    action: str
    resource: str
    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Grant:
    """Allows ``action`` (a glob such as ``s3:Get*``) on ``resource`` (a glob such as ``/b/logs/*``)."""

    principal_id: str
    action: str
    resource: str


class Authorizer:
    """Decides and records. ``authorize`` raises AccessDenied on a denial."""

    def __init__(
        self, backend: MetaBackend, committer: Committer, *, clock_us: Callable[[], int]
    ) -> None:
        self._backend = backend
        self._committer = committer
        self._clock_us = clock_us
        self._buffer: list[tuple[int, str, str, str, int, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="tier0-audit", daemon=True)
        self._flusher.start()

    def decide(
        self, principal: Principal, action: str, resource: str, *, owner: str | None
    ) -> Decision:
        """The decision, without recording it."""
        if principal.is_root:
            return Decision(principal, action, resource, True, "root")
        if owner is not None and owner == principal.id:
            return Decision(principal, action, resource, True, "owner")
        for grant in self.grants(principal):
            if fnmatch.fnmatchcase(action, grant.action) and fnmatch.fnmatchcase(
                resource, grant.resource
            ):
                return Decision(
                    principal, action, resource, True, f"grant {grant.action} on {grant.resource}"
                )
        return Decision(principal, action, resource, False, "no grant (deny by default)")

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        *,
        owner: str | None = None,
        deferred: bool = False,
    ) -> Decision:
        """Decide; raise AccessDenied when denied.

        The decision is recorded now (buffered), unless ``deferred`` is set and
        it allows: then the caller writes it in its own transaction with
        ``record_in``.
        """
        decision = self.decide(principal, action, resource, owner=owner)
        if not decision.allowed or not deferred:
            self.record(decision)
        if not decision.allowed:
            raise AccessDenied(
                f"{principal.name} may not {action} on {resource}: ask its owner or root for a grant"
            )
        return decision

    def record(self, decision: Decision) -> None:
        """Buffer a decision for the next group commit of the audit log."""
        row = _audit_row(decision, self._clock_us())
        with self._lock:
            self._buffer.append(row)
            full = len(self._buffer) >= AUDIT_BUFFER_ROWS_MAX
        if full:
            self.flush()

    @staticmethod
    def record_in(tx: WriteTx, decision: Decision) -> None:
        """Write a decision in the caller's transaction."""
        tx.defer(_AUDIT_INSERT, _audit_row(decision, tx.now_us))

    def flush(self) -> None:
        """Commit buffered decisions now."""
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return
        try:
            self._committer.run(lambda tx: tx.executemany(_AUDIT_INSERT, list(rows)))
        except BaseException:
            # Keep the decisions for the next flush rather than lose them.
            with self._lock:
                self._buffer[:0] = rows[: AUDIT_BUFFER_ROWS_MAX * 4]
            raise

    def grant(self, principal: Principal, action: str, resource: str) -> Grant:
        if not action or not resource.startswith("/"):
            raise InvalidArgument(
                f"a grant needs an action glob and a resource glob starting with '/', got {action!r} on {resource!r}"
            )
        grant = Grant(principal.id, action, resource)

        def op(tx: WriteTx) -> None:
            count = tx.query_one(
                "SELECT count(*) FROM t0_grants WHERE principal_id = ?", (principal.id,)
            )[0]
            if count >= GRANTS_PER_PRINCIPAL_MAX:
                raise InvalidArgument(f"{principal.name} has {count} grants, the most allowed")
            tx.execute(
                "INSERT INTO t0_grants (principal_id, action, resource, created_us) VALUES (?, ?, ?, ?)",
                (principal.id, action, resource, tx.now_us),
            )

        self._committer.run(op)
        return grant

    def revoke(self, principal: Principal, action: str, resource: str) -> int:
        """Remove matching grants; returns how many were removed."""

        def op(tx: WriteTx) -> int:
            cursor = tx.execute(
                "DELETE FROM t0_grants WHERE principal_id = ? AND action = ? AND resource = ?",
                (principal.id, action, resource),
            )
            return int(cursor.rowcount)

        return self._committer.run(op)

    def grants(self, principal: Principal) -> list[Grant]:
        with self._backend.reader() as db:
            rows = db.query_all(
                "SELECT principal_id, action, resource FROM t0_grants WHERE principal_id = ? ORDER BY id",
                (principal.id,),
            )
        return [Grant(*row) for row in rows]

    def close(self) -> None:
        self._stop.set()
        self._flusher.join(timeout=5)
        self.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(AUDIT_FLUSH_S):
            try:
                self.flush()
            except Exception:
                continue


_AUDIT_INSERT: Final = "INSERT INTO t0_audit (time_us, principal, action, resource, allowed, reason) VALUES (?, ?, ?, ?, ?, ?)"


def _audit_row(decision: Decision, time_us: int) -> tuple[int, str, str, str, int, str]:
    return (
        time_us,
        decision.principal.id,
        decision.action,
        decision.resource,
        int(decision.allowed),
        decision.reason,
    )
