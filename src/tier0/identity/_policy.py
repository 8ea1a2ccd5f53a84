"""The authorize seam and the audit log.

Every API calls ``Authorizer.authorize(principal, action, resource)`` before it
acts. The decision is deny-by-default, in this order:

1. root may do anything, whatever a bucket policy says (tier0's root is the
   operator of the whole store, like the AWS account that owns every bucket);
2. an explicit Deny in the bucket's policy (`tier0.identity._s3policy`) wins
   over everything below, the bucket's owner included, as in S3; the owner
   keeps only the right to read, replace and delete the policy itself
   (`OWNER_KEEPS`), so that a policy can always be repaired;
3. the bucket's owner may do anything to it and its elements;
4. a grant (``t0_grants``) allows what it names;
5. an Allow statement of the bucket policy;
6. the bucket's canned ACL, then the object's (`tier0.identity._acl`);
7. otherwise, deny.

The anonymous principal (unsigned requests) owns nothing and holds no grant,
so only steps 5 and 6 can admit it. Policies and ACLs are read through a
per-process cache (`BucketRulesCache`), so a decision costs no query unless
it reaches the grants (4) or needs the object's ACL or tags, which the
caller supplies lazily (`ObjectFacts`). Conditions read the request context
(`RequestContext`) the protocol handed in.

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
from tier0.identity._acl import acl_permits, object_owner_permits
from tier0.identity._bucketrules import BucketRulesCache
from tier0.identity._context import EMPTY_CONTEXT, ObjectFacts, RequestContext
from tier0.identity._principals import Principal
from tier0.identity._s3policy import PolicyRequest
from tier0.meta import Committer, MetaBackend, WriteTx

AUDIT_FLUSH_S: Final = 0.2
AUDIT_BUFFER_ROWS_MAX: Final = 4096
GRANTS_PER_PRINCIPAL_MAX: Final = 1000
#: What a bucket's owner may do whatever the bucket policy denies (lower case).
OWNER_KEEPS: Final = frozenset(
    {"s3:getbucketpolicy", "s3:putbucketpolicy", "s3:deletebucketpolicy"}
)


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
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
        #: Each bucket's policy, ACL and configuration; forget a bucket after changing them.
        self.rules = BucketRulesCache(backend)
        self._buffer: list[tuple[int, str, str, str, int, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="tier0-audit", daemon=True)
        self._flusher.start()

    def decide(
        self,
        principal: Principal,
        action: str,
        resource: str,
        *,
        owner: str | None,
        context: RequestContext | None = None,
        facts: ObjectFacts | None = None,
    ) -> Decision:
        """The decision, without recording it (see the module docstring for the order).

        ``owner`` is the bucket's owner; ``context`` what the protocol knows of
        the request; ``facts`` the object acted on, for its ACL and tags.
        """
        if principal.is_root:
            return Decision(principal, action, resource, True, "root")
        is_owner = owner is not None and owner == principal.id and not principal.is_anonymous
        bucket, key = _split(resource) if action[:3].lower() == "s3:" else (None, None)
        rules = None
        request = None
        if bucket is not None:
            rules = self.rules.get(bucket)
            if rules.policy is not None:
                request = PolicyRequest(
                    principal, action, resource, context or EMPTY_CONTEXT, facts, self._clock_us()
                )
                denying = rules.policy.denying(request)
                if denying is not None and not (is_owner and action.lower() in OWNER_KEEPS):
                    reason = f"bucket policy statement {denying.label} denies it"
                    return Decision(principal, action, resource, False, reason)
        if is_owner:
            return Decision(principal, action, resource, True, "owner")
        if not principal.is_anonymous:
            for grant in self.grants(principal):
                if fnmatch.fnmatchcase(action, grant.action) and fnmatch.fnmatchcase(
                    resource, grant.resource
                ):
                    reason = f"grant {grant.action} on {grant.resource}"
                    return Decision(principal, action, resource, True, reason)
        if rules is not None:
            if request is not None and rules.policy is not None:
                allowing = rules.policy.allowing(request)
                if allowing is not None:
                    reason = f"bucket policy statement {allowing.label}"
                    return Decision(principal, action, resource, True, reason)
            if acl_permits(rules.acl, principal, action, on_object=False):
                return Decision(principal, action, resource, True, f"bucket acl {rules.acl}")
            if key is not None and facts is not None:
                acl = facts.acl()
                if acl is not None and acl_permits(acl, principal, action, on_object=True):
                    return Decision(principal, action, resource, True, f"object acl {acl}")
                if (
                    not principal.is_anonymous
                    and facts.owner() == principal.id
                    and object_owner_permits(action)
                ):
                    return Decision(principal, action, resource, True, "object owner")
        return Decision(principal, action, resource, False, "no grant (deny by default)")

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        *,
        owner: str | None = None,
        deferred: bool = False,
        context: RequestContext | None = None,
        facts: ObjectFacts | None = None,
    ) -> Decision:
        """Decide; raise AccessDenied when denied.

        The decision is recorded now (buffered), unless ``deferred`` is set and
        it allows: then the caller writes it in its own transaction with
        ``record_in``.
        """
        decision = self.decide(
            principal, action, resource, owner=owner, context=context, facts=facts
        )
        if not decision.allowed or not deferred:
            self.record(decision)
        if not decision.allowed:
            advice = (
                decision.reason
                if decision.reason.startswith("bucket policy")
                else "ask its owner or root for a grant"
            )
            raise AccessDenied(f"{principal.name} may not {action} on {resource}: {advice}")
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
        if principal.is_anonymous:
            raise InvalidArgument(
                "grants name signed principals; admit anonymous requests with a bucket policy"
                " or an ACL"
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


def _split(resource: str) -> tuple[str | None, str | None]:
    """(bucket, key) of ``/bucket/key``; key None for ``/bucket``, both None for ``/``."""
    bucket, slash, key = resource[1:].partition("/")
    if not resource.startswith("/") or not bucket:
        return None, None
    return bucket, key if slash else None


def _audit_row(decision: Decision, time_us: int) -> tuple[int, str, str, str, int, str]:
    return (
        time_us,
        decision.principal.id,
        decision.action,
        decision.resource,
        int(decision.allowed),
        decision.reason,
    )
