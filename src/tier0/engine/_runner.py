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

A runner is named after its process (host, pid and the process's start
time): a runner that finds leases held by a process of its own host that no
longer exists takes them back at once (`reclaim_orphans`) rather than
waiting for them to expire, so an engine restarted after a crash retries
what the crashed one was running within a second.

`run_once` runs functions in the caller's thread; the worker processes
(`tier0.engine._pool`) and Ray come on top of `lease` and `finish_many`.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tier0.engine._events import Event, EventLog
from tier0.errors import InvalidArgument
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json, load_json

LEASE_S: Final = 60.0
ATTEMPTS_MAX: Final = 3
BACKOFF_S: Final = 1.0
BACKOFF_S_MAX: Final = 300.0
LEASE_BATCH_MAX: Final = 1000
ERROR_CHARS_MAX: Final = 8192
#: Log lines kept per invocation, over all its attempts (the oldest go first).
LOG_LINES_MAX: Final = 2000
DONE: Final = "done"
DEAD: Final = "dead"
RUNNING: Final = "running"
QUEUED: Final = "queued"
LOST: Final = "lost"

# Ready: queued and due, or running under a lease that expired, with tries left;
# and, for a trigger that keeps each key's order, no earlier invocation of the
# same key still waiting or running.
_READY: Final = (
    "((status = 'queued' AND not_before_us <= ?)"
    " OR (status = 'running' AND lease_until_us < ? AND attempts < ?))"
    " AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM t0_invocations p"
    " WHERE p.trigger_name = t0_invocations.trigger_name AND p.order_key = t0_invocations.order_key"
    " AND p.id < t0_invocations.id AND p.status IN ('queued', 'running')))"
)


@dataclass(frozen=True)
class Invocation:
    id: int
    trigger: str
    function: str
    #: The function's version the trigger pinned (None for rows from before versions).
    function_version: int | None
    #: What happened: the event log's event as a JSON document (see `event_document`).
    event: dict[str, Any]
    #: This attempt's number, from 1.
    attempt: int
    #: ``<seq>:<trigger>``: the same for every attempt, for effects made exactly once.
    idempotency_key: str


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: ``error`` None for success; the lines it logged."""

    invocation: Invocation
    error: str | None = None
    #: ``[time_us, level, message]`` per line.
    logs: Sequence[Sequence[Any]] = ()


@dataclass(frozen=True)
class RunReport:
    leased: int
    done: int
    retried: int
    dead: int


def event_document(event: Event) -> dict[str, Any]:
    """The event as a function receives it: JSON types only (times as ISO 8601 text)."""
    return {
        "seq": event.seq, "type": event.type, "bucket": event.bucket, "key": event.key,
        "version_id": event.version_id, "size": event.size, "etag": event.etag,
        "principal": event.principal, "time": event.time.isoformat(), "detail": event.detail,
    }  # fmt: skip


def process_name() -> str:
    """``host/pid/start``: this process, told apart from a later one with its pid."""
    return f"{socket.gethostname()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the command name


class Runner:
    """Leases invocations and records how they ended; see the module docstring."""

    def __init__(
        self,
        meta: MetaBackend,
        committer: Committer,
        *,
        name: str | None = None,
        resolve: Callable[[str], Callable[[Invocation], Any]] | None = None,
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
        self.name = name or process_name()
        self._resolve = resolve
        self._lease_s = lease_s
        self._attempts_max = attempts_max
        self._backoff_s = backoff_s
        self._clock = clock

    def ready_functions(self) -> list[str]:
        """The deployed functions with invocations ready to lease (one indexed probe each:
        the cost does not grow with the backlog)."""
        now_us = self._now_us()
        with self._meta.reader() as db:
            rows = db.query_all(
                "SELECT f.name FROM (SELECT DISTINCT name FROM t0_functions) f WHERE EXISTS"
                " (SELECT 1 FROM t0_invocations i WHERE i.function_name = f.name"
                " AND i.status = 'queued' AND i.not_before_us <= ?) OR EXISTS"
                " (SELECT 1 FROM t0_invocations i WHERE i.function_name = f.name"
                " AND i.status = 'running' AND i.lease_until_us < ?) ORDER BY f.name",
                (now_us, now_us),
            )
        return [row[0] for row in rows]

    def lease(
        self,
        limit: int = 10,
        *,
        function: str | None = None,
        lease_s: float | None = None,
        attempts_max: int | None = None,
    ) -> list[Invocation]:
        """Take up to ``limit`` ready invocations (of ``function`` only, if given),
        oldest first, for ``lease_s`` (the runner's, if None). ``attempts_max`` is
        the function's tries (the runner's, if None)."""
        if not 1 <= limit <= LEASE_BATCH_MAX:
            raise InvalidArgument(f"limit is 1..{LEASE_BATCH_MAX}")
        now_us = self._now_us()
        until_us = now_us + int((lease_s or self._lease_s) * 1e6)
        attempts_max = attempts_max or self._attempts_max
        ready = (now_us, now_us, attempts_max)
        only, only_args = ("", ()) if function is None else (" AND function_name = ?", (function,))
        order = (
            " AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM t0_invocations p"
            " WHERE p.trigger_name = t0_invocations.trigger_name"
            " AND p.order_key = t0_invocations.order_key AND p.id < t0_invocations.id"
            " AND p.status IN ('queued', 'running')))"
        )

        def op(tx: WriteTx) -> list[Any]:
            # A runner that died in its last attempt leaves it to the dead letter.
            dead_letter(tx, tx.query_all(
                "UPDATE t0_invocations SET status = 'dead', ended_us = ?, lease_owner = NULL,"
                " error = coalesce(error, 'its runner stopped answering (the lease expired)')"
                " || ' in the last attempt'"
                f" WHERE status = 'running' AND lease_until_us < ? AND attempts >= ?{only}"
                f" RETURNING {DEAD_COLUMNS}",
                (now_us, now_us, attempts_max, *only_args),
            ))  # fmt: skip
            # Candidates first, each kind by its index in id order (the backlog is not
            # sorted whole), then the update, which checks each row again.
            queued = tx.query_all(
                f"SELECT id FROM t0_invocations WHERE status = 'queued'{only}"
                f" AND not_before_us <= ?{order} ORDER BY id LIMIT ?",
                (*only_args, now_us, limit),
            )
            expired = tx.query_all(
                f"SELECT id FROM t0_invocations WHERE status = 'running'{only}"
                f" AND lease_until_us < ? AND attempts < ?{order} ORDER BY id LIMIT ?",
                (*only_args, now_us, attempts_max, limit),
            )
            ids = sorted(int(row[0]) for row in (*queued, *expired))[:limit]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
            rows: list[Any] = tx.query_all(
                "UPDATE t0_invocations SET status = 'running', lease_owner = ?,"
                " lease_until_us = ?, attempts = attempts + 1, started_us = ?, error = NULL"
                f" WHERE id IN ({marks}) AND {_READY}"
                " RETURNING id, trigger_name, function_name, function_version, seq, attempts,"
                " idempotency_key, event",
                (self.name, until_us, now_us, *ids, *ready),
            )
            return rows

        rows = sorted(self._committer.run(op))
        return [
            Invocation(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3]),
                       self._event(r[7], int(r[4])), int(r[5]), r[6])
            for r in rows
        ]  # fmt: skip

    def finish(self, invocation: Invocation, error: str | None = None) -> str:
        """Record how ``invocation`` ended; its new status (``done``, ``queued`` for a
        retry, ``dead``), or ``lost`` if this runner's lease had passed to another."""
        return self.finish_many([Outcome(invocation, error)])[0]

    def finish_many(
        self,
        outcomes: Iterable[Outcome],
        *,
        attempts_max: Callable[[Invocation], int] | None = None,
    ) -> list[str]:
        """`finish` for several, in one transaction; their statuses in order.
        ``attempts_max(invocation)`` gives its function's tries (the runner's if None)."""
        now_us = self._now_us()
        plans = []
        for outcome in outcomes:
            invocation, error = outcome.invocation, outcome.error
            tries = attempts_max(invocation) if attempts_max else self._attempts_max
            if error is None:
                status, not_before_us = DONE, now_us
            elif invocation.attempt >= tries:
                status, not_before_us = DEAD, now_us
            else:
                delay_s = min(self._backoff_s * 2 ** (invocation.attempt - 1), BACKOFF_S_MAX)
                status, not_before_us = QUEUED, now_us + int(delay_s * 1e6)
            lines = [[line[0], invocation.attempt, *line[1:]] for line in outcome.logs]
            plans.append((outcome, status, not_before_us, lines))

        def op(tx: WriteTx) -> list[str]:
            statuses = []
            dead: list[Any] = []
            for outcome, status, not_before_us, lines in plans:
                invocation = outcome.invocation
                logs = None
                if lines:
                    before = tx.query_one(
                        "SELECT logs FROM t0_invocations WHERE id = ?", (invocation.id,)
                    )
                    kept = (load_json(before[0]) if before and before[0] else []) + lines
                    logs = dump_json(kept[-LOG_LINES_MAX:])
                error = outcome.error
                row = tx.query_one(
                    "UPDATE t0_invocations SET status = ?, not_before_us = ?, ended_us = ?,"
                    " error = ?, lease_owner = NULL, lease_until_us = NULL,"
                    " logs = coalesce(?, logs)"
                    " WHERE id = ? AND status = 'running' AND lease_owner = ? AND attempts = ?"
                    f" RETURNING {DEAD_COLUMNS}",
                    (status, not_before_us, now_us, None if error is None else
                     error[:ERROR_CHARS_MAX], logs, invocation.id, self.name, invocation.attempt),
                )  # fmt: skip
                if row is not None and status == DEAD:
                    dead.append(row)
                statuses.append(status if row is not None else LOST)
            dead_letter(tx, dead)
            return statuses

        return self._committer.run(op) if plans else []

    def reclaim_orphans(self) -> int:
        """Take back the leases of runners of this host whose process is gone: queued
        again (dead after their last try). Returns how many."""
        host = socket.gethostname()
        with self._meta.reader() as db:
            owners = [
                row[0]
                for row in db.query_all(
                    "SELECT DISTINCT lease_owner FROM t0_invocations WHERE status = 'running'"
                )
            ]
        orphans = [owner for owner in owners if owner and _gone(owner, host)]
        if not orphans:
            return 0
        marks = ", ".join("?" for _ in orphans)

        # Their leases end now: the next lease retries them, or sends them to the
        # dead letter after their last try, by each function's own count.
        def op(tx: WriteTx) -> int:
            cursor = tx.execute(
                "UPDATE t0_invocations SET lease_until_us = 0, error = ?"
                f" WHERE status = 'running' AND lease_owner IN ({marks})",
                ("its runner process died while it ran", *orphans),
            )
            return int(cursor.rowcount)

        reclaimed: int = self._committer.run(op)
        return reclaimed

    def run_once(self, limit: int = 10) -> RunReport:
        """Lease up to ``limit`` invocations and run each here, in this thread, with
        ``resolve(function)(invocation)``; what became of them."""
        if self._resolve is None:
            raise InvalidArgument("this runner was made without resolve: it only leases")
        leased = self.lease(limit)
        outcomes = []
        for invocation in leased:
            try:
                self._resolve(invocation.function)(invocation)
            except Exception as failure:  # recorded; the runner carries on
                outcomes.append(Outcome(invocation, describe(failure)))
            else:
                outcomes.append(Outcome(invocation))
        statuses = self.finish_many(outcomes)
        return RunReport(
            len(leased), statuses.count(DONE), statuses.count(QUEUED), statuses.count(DEAD)
        )

    def _event(self, document: str | None, seq: int) -> dict[str, Any]:
        if document is not None:
            event: dict[str, Any] = load_json(document)
            return event
        found = [e for e in self._events.read(seq - 1, limit=1) if e.seq == seq]
        if found:  # an invocation queued before events were stored with it
            return event_document(found[0])
        return {"seq": seq, "type": "Unknown", "time": dt.datetime.now(dt.UTC).isoformat()}

    def _now_us(self) -> int:
        return int(self._clock() * 1e6)


#: What `dead_letter` needs of an invocation row (an UPDATE's RETURNING list).
DEAD_COLUMNS: Final = (
    "id, trigger_name, function_name, function_version, idempotency_key, attempts, error, event"
)


def dead_letter(tx: WriteTx, rows: Sequence[Sequence[Any]]) -> None:
    """Append the invocations ``rows`` (`DEAD_COLUMNS`), which ran out of tries, to the
    dead-letter stream: one message each, keyed by trigger, in ``tx``."""
    if not rows:
        return
    from tier0.engine._streams import DEAD_LETTER, append_in

    messages = []
    for r in rows:
        document = {
            "invocation": int(r[0]), "trigger": r[1], "function": r[2],
            "function_version": r[3], "idempotency_key": r[4], "attempts": int(r[5]),
            "error": r[6], "event": load_json(r[7]) if r[7] else None,
        }  # fmt: skip
        messages.append((dump_json(document).encode(), r[1], None))
    append_in(tx, DEAD_LETTER, messages, producer="tier0.engine")


def describe(failure: BaseException) -> str:
    """An exception as an invocation's error: its type, message and where it was raised."""
    summary = "".join(traceback.format_exception_only(failure)).strip()
    frames = traceback.extract_tb(failure.__traceback__)[-3:]
    where = "".join(traceback.format_list(frames)).rstrip()
    return f"{summary}\n{where}" if where else summary


def _gone(owner: str, host: str) -> bool:
    """Whether runner ``owner`` (`process_name`) ran on ``host`` in a process now gone."""
    owner_host, _, rest = owner.partition("/")
    pid_text, _, start = rest.partition("/")
    if owner_host != host or not pid_text.isdigit():
        return False  # another host's: its lease expires instead
    return _start_ticks(int(pid_text)) != start
