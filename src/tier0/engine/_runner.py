"""Leasing and running invocations: at-least-once, with retries, backoff and a dead letter.

A runner leases a batch of ready invocations (queued and due, or running with
an expired lease: their runner died) by marking them ``running`` under its
name until ``lease_until``, runs each function, and finishes it: ``done``;
or, if it raised, ``queued`` again after an exponential backoff; or, after its
last attempt, ``dead`` (the dead letter), with its error. A finish counts only
while the runner still holds the lease, so a runner that comes back after its
lease expired cannot overwrite the work of the one that took over.

Leases are rows, so runners in several processes, and on several hosts over
one PostgreSQL database, share the work without double-running it: every
metadata transaction takes the sequence counter's row lock first (SQLite has
one writer at a time anyway), and the lease re-checks each row's state in its
outer condition too, which PostgreSQL re-evaluates after a row-lock wait.

This module runs functions in the caller's thread; worker processes and Ray
come on top of `Runner.lease` and `Runner.finish`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tier0.engine._events import Event, EventLog
from tier0.errors import InvalidArgument
from tier0.meta import Committer, MetaBackend, WriteTx

LEASE_S: Final = 60.0
ATTEMPTS_MAX: Final = 3
BACKOFF_S: Final = 1.0
BACKOFF_S_MAX: Final = 300.0
LEASE_BATCH_MAX: Final = 100
ERROR_CHARS_MAX: Final = 8192
DONE: Final = "done"
DEAD: Final = "dead"
RUNNING: Final = "running"
QUEUED: Final = "queued"

_READY: Final = (
    "((status = 'queued' AND not_before_us <= ?)"
    " OR (status = 'running' AND lease_until_us < ? AND attempts < ?))"
)


@dataclass(frozen=True)
class Invocation:
    id: int
    trigger: str
    function: str
    event: Event
    #: This attempt's number, from 1.
    attempt: int
    #: ``<seq>:<trigger>``: the same for every attempt, for effects made exactly once.
    idempotency_key: str


@dataclass(frozen=True)
class RunReport:
    leased: int
    done: int
    retried: int
    dead: int


class Runner:
    """Leases invocations and runs them with ``resolve(function_name)(invocation)``."""

    def __init__(
        self,
        meta: MetaBackend,
        committer: Committer,
        *,
        name: str,
        resolve: Callable[[str], Callable[[Invocation], Any]],
        lease_s: float = LEASE_S,
        attempts_max: int = ATTEMPTS_MAX,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < lease_s <= 86_400 or not 1 <= attempts_max <= 100 or backoff_s < 0:
            raise InvalidArgument("lease_s is (0, 86400], attempts_max 1..100, backoff_s >= 0")
        self._meta = meta
        self._committer = committer
        self._events = EventLog(meta)
        self.name = name
        self._resolve = resolve
        self._lease_s = lease_s
        self._attempts_max = attempts_max
        self._backoff_s = backoff_s
        self._clock = clock

    def lease(self, limit: int = 10) -> list[Invocation]:
        """Take up to ``limit`` ready invocations, oldest first, for ``lease_s``."""
        if not 1 <= limit <= LEASE_BATCH_MAX:
            raise InvalidArgument(f"limit is 1..{LEASE_BATCH_MAX}")
        now_us = self._now_us()
        until_us = now_us + int(self._lease_s * 1e6)

        attempts_max = self._attempts_max
        ready = (now_us, now_us, attempts_max)

        def op(tx: WriteTx) -> list[Any]:
            # A runner that died in its last attempt leaves it to the dead letter.
            tx.execute(
                "UPDATE t0_invocations SET status = 'dead', ended_us = ?, lease_owner = NULL,"
                " error = 'its runner stopped answering (the lease expired) in the last attempt'"
                " WHERE status = 'running' AND lease_until_us < ? AND attempts >= ?",
                (now_us, now_us, attempts_max),
            )
            rows: list[Any] = tx.query_all(
                "UPDATE t0_invocations SET status = 'running', lease_owner = ?,"
                " lease_until_us = ?, attempts = attempts + 1, started_us = ?"
                f" WHERE {_READY} AND id IN (SELECT id FROM t0_invocations WHERE {_READY}"
                " ORDER BY id LIMIT ?)"
                " RETURNING id, trigger_name, function_name, seq, attempts, idempotency_key",
                (self.name, until_us, now_us, *ready, *ready, limit),
            )
            return rows

        rows = sorted(self._committer.run(op))
        events = {event.seq: event for event in self._events_for([row[3] for row in rows])}
        return [Invocation(int(r[0]), r[1], r[2], events[int(r[3])], int(r[4]), r[5]) for r in rows]

    def finish(self, invocation: Invocation, error: str | None = None) -> str:
        """Record how ``invocation`` ended; its new status (``done``, ``queued`` for a
        retry, ``dead``), or ``lost`` if this runner's lease had passed to another."""
        now_us = self._now_us()
        if error is None:
            status, not_before_us = DONE, now_us
        elif invocation.attempt >= self._attempts_max:
            status, not_before_us = DEAD, now_us
        else:
            delay_s = min(self._backoff_s * 2 ** (invocation.attempt - 1), BACKOFF_S_MAX)
            status, not_before_us = QUEUED, now_us + int(delay_s * 1e6)

        def op(tx: WriteTx) -> bool:
            row = tx.query_one(
                "UPDATE t0_invocations SET status = ?, not_before_us = ?, ended_us = ?,"
                " error = ?, lease_owner = NULL, lease_until_us = NULL"
                " WHERE id = ? AND status = 'running' AND lease_owner = ? AND attempts = ?"
                " RETURNING id",
                (status, not_before_us, now_us, None if error is None else
                 error[:ERROR_CHARS_MAX], invocation.id, self.name, invocation.attempt),
            )  # fmt: skip
            return row is not None

        return status if self._committer.run(op) else "lost"

    def run_once(self, limit: int = 10) -> RunReport:
        """Lease up to ``limit`` invocations and run each here; what became of them."""
        outcomes = {DONE: 0, QUEUED: 0, DEAD: 0, "lost": 0}
        leased = self.lease(limit)
        for invocation in leased:
            try:
                self._resolve(invocation.function)(invocation)
            except Exception as failure:  # recorded; the runner carries on
                error = "".join(traceback.format_exception_only(failure)).strip()
                outcomes[self.finish(invocation, error)] += 1
            else:
                outcomes[self.finish(invocation)] += 1
        return RunReport(len(leased), outcomes[DONE], outcomes[QUEUED], outcomes[DEAD])

    def _events_for(self, seqs: list[int]) -> list[Event]:
        found: list[Event] = []
        for seq in sorted(set(seqs)):
            found += [event for event in self._events.read(seq - 1, limit=1) if event.seq == seq]
        return found

    def _now_us(self) -> int:
        return int(self._clock() * 1e6)
