"""Triggers, stored, and the dispatcher that turns matching events into invocations.

The dispatcher reads the event log after its cursor (``engine.dispatch`` in
``t0_cursors``), asks every active trigger whether each event matches
(`TriggerSpec.matches`), and writes one ``t0_invocations`` row per match in
the same transaction that advances the cursor. So nothing is lost between
"the data changed" and "an invocation exists" (a crash before the commit
reads the same events again; after it, they are done), and nothing is made
twice: the row's ``idempotency_key`` (``<seq>:<trigger>``) is unique, which
also lets several dispatchers on one PostgreSQL database run at once.

A trigger fires for events after it was created (``after_seq``), never for
the log before it. Element facts a filter may read beyond the event's own
(content type, user metadata, tags) are read from the version the event
names, only for triggers that have a filter.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from tier0.engine._cron import Cron
from tier0.engine._events import Event
from tier0.engine._runner import event_document
from tier0.engine._streams import DEAD_LETTER, EVENTS, read_in
from tier0.engine._triggers import TriggerSpec
from tier0.errors import InvalidArgument, NoSuchFunction, NoSuchStream, NoSuchTrigger
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json, load_json

CURSOR: Final = "engine.dispatch"
#: Events one dispatch reads at most (one transaction).
DISPATCH_EVENTS_MAX: Final = 1000
TRIGGERS_MAX: Final = 10_000
#: While no trigger is active, how often the cursor is moved past the events.
IDLE_CURSOR_S: Final = 1.0
ACTIVE: Final = "active"
PAUSED: Final = "paused"
QUEUED: Final = "queued"


@dataclass(frozen=True)
class TriggerInfo:
    spec: TriggerSpec
    state: str
    #: The last event before the trigger existed: it fires for later ones only.
    after_seq: int


@dataclass(frozen=True)
class DispatchReport:
    events_read: int
    invocations_made: int
    #: The cursor after this dispatch (the last event read).
    cursor: int


class Triggers:
    """The triggers of one store: create, list, pause, resume, remove."""

    def __init__(
        self, meta: MetaBackend, committer: Committer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._meta = meta
        self._committer = committer
        self._clock = clock

    def create(self, spec: TriggerSpec, *, created_by: str) -> TriggerInfo:
        """Store ``spec`` (active), pinned to its function's latest version unless it names
        one; `InvalidArgument` if its name is taken or the function (version) is missing."""

        def op(tx: WriteTx) -> TriggerInfo:
            if tx.query_one("SELECT 1 FROM t0_triggers WHERE name = ?", (spec.name,)):
                raise InvalidArgument(f"a trigger named {spec.name!r} exists: remove it first")
            count = tx.query_one("SELECT count(*) FROM t0_triggers")[0]
            if count >= TRIGGERS_MAX:
                raise InvalidArgument(f"a store holds at most {TRIGGERS_MAX} triggers")
            pinned = replace(
                spec, function_version=_version(tx, spec.function, spec.function_version)
            )
            if spec.stream is not None:
                _start_group(tx, spec)
            if spec.schedule is not None:  # fires for times after it was made
                _set_cursor(tx, _schedule_cursor(spec.name), int(self._clock() * 1_000_000))
            tx.execute(
                "INSERT INTO t0_triggers (name, spec, state, after_seq, created_us, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (spec.name, dump_json(_spec_json(pinned)), ACTIVE, tx.seq, tx.now_us, created_by),
            )
            return TriggerInfo(pinned, ACTIVE, tx.seq)

        result: TriggerInfo = self._committer.run(op)
        return result

    def get(self, name: str) -> TriggerInfo:
        with self._meta.reader() as db:
            row = db.query_one(
                "SELECT spec, state, after_seq FROM t0_triggers WHERE name = ?", (name,)
            )
        if row is None:
            raise NoSuchTrigger(f"there is no trigger named {name!r}")
        return TriggerInfo(_spec(load_json(row[0])), row[1], int(row[2]))

    def repin(self, name: str, version: int | None = None) -> TriggerInfo:
        """Make trigger ``name`` run ``version`` of its function (the latest if None)
        from its next invocation on; invocations already queued keep theirs."""

        def op(tx: WriteTx) -> TriggerInfo:
            row = tx.query_one(
                "SELECT spec, state, after_seq FROM t0_triggers WHERE name = ?", (name,)
            )
            if row is None:
                raise NoSuchTrigger(f"there is no trigger named {name!r}")
            spec = _spec(load_json(row[0]))
            spec = replace(spec, function_version=_version(tx, spec.function, version))
            tx.execute(
                "UPDATE t0_triggers SET spec = ? WHERE name = ?",
                (dump_json(_spec_json(spec)), name),
            )
            return TriggerInfo(spec, row[1], int(row[2]))

        result: TriggerInfo = self._committer.run(op)
        return result

    def update(self, spec: TriggerSpec) -> TriggerInfo:
        """Make trigger ``spec.name`` match and run as ``spec`` says (pinned to its
        function's latest version unless it names one), keeping its place: events,
        messages and times after the last it dispatched still run it, under the new
        spec, so a redeploy misses nothing. Its state (active, paused) stays."""

        def op(tx: WriteTx) -> TriggerInfo:
            row = tx.query_one(
                "SELECT spec, state, after_seq FROM t0_triggers WHERE name = ?", (spec.name,)
            )
            if row is None:
                raise NoSuchTrigger(f"there is no trigger named {spec.name!r}")
            before = _spec(load_json(row[0]))
            pinned = replace(
                spec, function_version=_version(tx, spec.function, spec.function_version)
            )
            if pinned.stream is not None and pinned.stream != before.stream:
                _start_group(tx, pinned)
            if pinned.schedule is not None and before.schedule is None:
                _set_cursor(tx, _schedule_cursor(spec.name), int(self._clock() * 1_000_000))
            tx.execute(
                "UPDATE t0_triggers SET spec = ? WHERE name = ?",
                (dump_json(_spec_json(pinned)), spec.name),
            )
            return TriggerInfo(pinned, row[1], int(row[2]))

        result: TriggerInfo = self._committer.run(op)
        return result

    def list(self) -> list[TriggerInfo]:
        with self._meta.reader() as db:
            rows = db.query_all("SELECT spec, state, after_seq FROM t0_triggers ORDER BY name")
        return [TriggerInfo(_spec(load_json(r[0])), r[1], int(r[2])) for r in rows]

    def pause(self, name: str) -> None:
        """Stop firing ``name``: what happens while it is paused never fires it,
        not even once it is resumed."""
        self._set_state(name, PAUSED)

    def resume(self, name: str) -> None:
        """Fire a paused ``name`` again, for the events from now on."""
        self._change(
            name,
            lambda tx: tx.execute(
                "UPDATE t0_triggers SET state = ?,"
                " after_seq = CASE WHEN state = ? THEN ? ELSE after_seq END WHERE name = ?",
                (ACTIVE, PAUSED, tx.seq, name),
            ),
        )

    def remove(self, name: str) -> None:
        def drop(tx: WriteTx) -> None:
            tx.execute("DELETE FROM t0_triggers WHERE name = ?", (name,))
            tx.execute("DELETE FROM t0_stream_groups WHERE group_name = ?", (_group(name),))
            tx.execute("DELETE FROM t0_cursors WHERE name = ?", (_schedule_cursor(name),))

        self._change(name, drop)

    def _set_state(self, name: str, state: str) -> None:
        self._change(
            name,
            lambda tx: tx.execute("UPDATE t0_triggers SET state = ? WHERE name = ?", (state, name)),
        )

    def _change(self, name: str, apply: Callable[[WriteTx], Any]) -> None:
        def op(tx: WriteTx) -> None:
            if not tx.query_one("SELECT 1 FROM t0_triggers WHERE name = ?", (name,)):
                raise NoSuchTrigger(f"there is no trigger named {name!r}")
            apply(tx)

        self._committer.run(op)


class Dispatcher:
    """Turns events after its cursor into invocations; see the module docstring."""

    def __init__(
        self, meta: MetaBackend, committer: Committer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._meta = meta
        self._committer = committer
        self._clock = clock
        #: When this dispatcher last wrote its cursor (monotonic).
        self._dispatched_at = -math.inf
        #: Whether no trigger was active at the last look (`dispatch`): then
        #: commits need not wake an engine; a look every `IDLE_CURSOR_S` will do.
        self.quiet = False

    def dispatch(self, *, events_max: int = DISPATCH_EVENTS_MAX) -> DispatchReport:
        """Handle the next events (at most ``events_max``) in one transaction.

        Looks first, with reads (which never wait on a writer), whether there is
        anything to do: an engine round runs after every commit, and a write
        transaction each time would take the write lock from the writers it serves.
        """
        if not 1 <= events_max <= DISPATCH_EVENTS_MAX:
            raise InvalidArgument(f"events_max is 1..{DISPATCH_EVENTS_MAX}")
        idle = self._idle()
        if idle is not None:
            return DispatchReport(0, 0, idle)
        report = self._committer.run(lambda tx: self._dispatch(tx, events_max))
        self._dispatched_at = time.monotonic()
        return report

    def _idle(self) -> int | None:
        """The cursor, if no event, message or scheduled time awaits dispatch; else None.

        While no trigger is active, events fire nothing: the cursor is moved
        past them at most every `IDLE_CURSOR_S` rather than in a write
        transaction after every commit, which took the metadata write lock
        from the writers a server serves. (A trigger made or resumed meanwhile
        fires only for events after that, whatever the cursor.)
        """
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        with self._meta.reader() as db:
            latest = int(db.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0])
            row = db.query_one("SELECT seq FROM t0_cursors WHERE name = ?", (CURSOR,))
            cursor = int(row[0]) if row else 0
            active = db.query_one("SELECT 1 FROM t0_triggers WHERE state = ? LIMIT 1", (ACTIVE,))
            self.quiet = active is None
            if latest > cursor and (
                active is not None or time.monotonic() - self._dispatched_at >= IDLE_CURSOR_S
            ):
                return None
            if db.query_one(_STREAM_TRIGGERS_BEHIND + " LIMIT 1", (ACTIVE,)):
                return None
            if _due(db.query_all(_SCHEDULE_TRIGGERS, (ACTIVE,)), now):
                return None
        return cursor

    def _dispatch(self, tx: WriteTx, events_max: int) -> DispatchReport:
        messages, made = _dispatch_streams(tx, events_max)
        made += _dispatch_schedules(tx, self._clock())
        report = self._dispatch_events(tx, events_max)
        return DispatchReport(
            report.events_read + messages, report.invocations_made + made, report.cursor
        )

    def _dispatch_events(self, tx: WriteTx, events_max: int) -> DispatchReport:
        row = tx.query_one("SELECT seq FROM t0_cursors WHERE name = ?", (CURSOR,))
        cursor = int(row[0]) if row else 0
        events = tx.query_all(
            "SELECT seq, type, bucket, key, version_id, size, etag, principal, time_us, detail"
            " FROM t0_events WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor, events_max),
        )
        if not events:
            return DispatchReport(0, 0, cursor)
        triggers = [
            (spec, int(r[1]))
            for r in tx.query_all(
                "SELECT spec, after_seq FROM t0_triggers WHERE state = ?", (ACTIVE,)
            )
            if (spec := _spec(load_json(r[0]))).stream is None
        ]
        made = 0
        for row in events:
            seq, kind, bucket, key, version_id, size, etag, principal = row[:8]
            facts: dict[str, Any] = {
                "seq": seq, "type": kind, "bucket": bucket, "key": key,
                "version_id": version_id, "size": size, "etag": etag, "principal": principal,
            }  # fmt: skip
            element_read = False
            document: str | None = None
            for spec, after_seq in triggers:
                if seq <= after_seq:
                    continue
                if spec.filter is not None and not element_read:
                    facts.update(_element_facts(tx, bucket, key, version_id))
                    element_read = True
                if spec.matches(facts):
                    document = document or dump_json(event_document(_event(row)))
                    made += _queue(tx, spec, seq, document, f"{bucket}/{key}")
        last = int(events[-1][0])
        tx.execute(
            "INSERT INTO t0_cursors (name, seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            (CURSOR, last),
        )
        return DispatchReport(len(events), made, last)


def _queue(
    tx: WriteTx, spec: TriggerSpec, seq: int, event: str, key: str, idempotency: str | None = None
) -> int:
    """Queue ``spec``'s invocation for event ``seq``; 0 if it exists (another
    dispatcher on the same database made it first)."""
    made = tx.query_one(
        "INSERT INTO t0_invocations (idempotency_key, trigger_name, function_name,"
        " function_version, seq, status, attempts, not_before_us, created_us, event, order_key)"
        " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (idempotency or f"{seq}:{spec.name}", spec.name, spec.function, spec.function_version,
         seq, QUEUED, tx.now_us, tx.now_us, event, key if spec.ordered else None),
    )  # fmt: skip
    return 0 if made is None else 1


def _group(trigger: str) -> str:
    """The consumer group through which a stream trigger reads its stream."""
    return f"trigger.{trigger}"


def _start_group(tx: WriteTx, spec: TriggerSpec) -> None:
    """A stream trigger fires for messages after it was made: its group starts at the end."""
    assert spec.stream is not None
    if spec.stream == EVENTS:
        end = int(tx.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0]) + 1
    else:
        row = tx.query_one("SELECT next_offset FROM t0_streams WHERE name = ?", (spec.stream,))
        if row is None and spec.stream != DEAD_LETTER:
            raise NoSuchStream(f"there is no stream named {spec.stream!r}: create it first")
        end = int(row[0]) if row else 0
    tx.execute(
        "INSERT INTO t0_stream_groups (stream, group_name, committed, updated_us)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (stream, group_name) DO UPDATE"
        " SET committed = excluded.committed, updated_us = excluded.updated_us",
        (spec.stream, _group(spec.name), end, tx.now_us),
    )


def _schedule_cursor(trigger: str) -> str:
    """Where a schedule trigger keeps the last time it fired (microseconds)."""
    return f"schedule.{trigger}"


def _set_cursor(tx: WriteTx, name: str, value: int) -> None:
    tx.execute(
        "INSERT INTO t0_cursors (name, seq) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
        (name, value),
    )


#: Active schedule triggers and the time each last fired (microseconds).
_SCHEDULE_TRIGGERS: Final = (
    "SELECT t.spec, c.seq FROM t0_triggers t JOIN t0_cursors c"
    " ON c.name = 'schedule.' || t.name WHERE t.state = ?"
)
#: Active stream triggers whose group is behind the end of their stream.
_STREAM_TRIGGERS_BEHIND: Final = (
    "SELECT t.spec, g.committed FROM t0_triggers t JOIN t0_stream_groups g"
    " ON g.group_name = 'trigger.' || t.name JOIN t0_streams s ON s.name = g.stream"
    " WHERE t.state = ? AND g.committed < s.next_offset"
)


def _due(rows: list[Any], now: dt.datetime) -> list[tuple[TriggerSpec, dt.datetime, Cron]]:
    """Of ``_SCHEDULE_TRIGGERS`` rows, those whose next time has come: (spec, that time,
    its schedule)."""
    found = []
    for spec_json, last_us in rows:
        spec = _spec(load_json(spec_json))
        assert spec.schedule is not None
        cron = Cron.parse(spec.schedule)
        due = cron.after(dt.datetime.fromtimestamp(int(last_us) / 1_000_000, tz=dt.UTC))
        if due is not None and due <= now:
            found.append((spec, due, cron))
    return found


def _dispatch_schedules(tx: WriteTx, now: float) -> int:
    """An invocation for each active schedule trigger whose next time has come.

    Times missed while no engine ran are not run one by one (a day down would
    be a burst of a day's runs): the latest of them runs once, its event
    saying how many it stands for (``missed``), as cron and Kubernetes'
    CronJobs skip what they missed.
    """
    moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    made = 0
    for spec, due, cron in _due(tx.query_all(_SCHEDULE_TRIGGERS, (ACTIVE,)), moment):
        missed = 0
        while (later := cron.after(due)) is not None and later <= moment and missed < 100_000:
            due, missed = later, missed + 1
        event = {"type": "Scheduled", "time": due.isoformat(), "schedule": spec.schedule,
                 "missed": missed}  # fmt: skip
        key = f"schedule:{due.isoformat()}:{spec.name}"
        made += _queue(tx, spec, 0, dump_json(event), spec.name, idempotency=key)
        _set_cursor(tx, _schedule_cursor(spec.name), int(due.timestamp() * 1_000_000))
    return made


def _dispatch_streams(tx: WriteTx, messages_max: int) -> tuple[int, int]:
    """Invocations for the new messages of streams that active triggers read: (messages
    read, invocations made). Each trigger's group moves past what it read, in ``tx``."""
    rows = tx.query_all(_STREAM_TRIGGERS_BEHIND, (ACTIVE,))
    read = made = 0
    for spec_json, committed in rows:
        spec = _spec(load_json(spec_json))
        assert spec.stream is not None
        messages = read_in(tx, spec.stream, int(committed), messages_max)
        for message in messages:
            made += _queue(
                tx, spec, 0, dump_json(message.to_json()), f"{spec.stream}/{message.key}",
                idempotency=f"{spec.stream}:{message.offset}:{spec.name}",
            )  # fmt: skip
        if messages:
            read += len(messages)
            tx.execute(
                "UPDATE t0_stream_groups SET committed = ?, updated_us = ?"
                " WHERE stream = ? AND group_name = ?",
                (messages[-1].offset + 1, tx.now_us, spec.stream, _group(spec.name)),
            )
    return read, made


def _version(tx: WriteTx, function: str, version: int | None) -> int:
    """``version`` of ``function`` (its latest if None), checked to exist."""
    if version is None:
        row = tx.query_one("SELECT max(version) FROM t0_functions WHERE name = ?", (function,))
        found = row[0] if row else None
    else:
        row = tx.query_one(
            "SELECT version FROM t0_functions WHERE name = ? AND version = ?", (function, version)
        )
        found = row[0] if row else None
    if found is None:
        which = "" if version is None else f" version {version}"
        raise NoSuchFunction(
            f"there is no function {function!r}{which}: deploy it first (tier0 fn deploy)"
        )
    return int(found)


def _event(row: Any) -> Event:
    return Event(
        seq=int(row[0]), type=row[1], bucket=row[2], key=row[3], version_id=row[4], size=row[5],
        etag=row[6], principal=row[7],
        time=dt.datetime.fromtimestamp(row[8] / 1_000_000, tz=dt.UTC), detail=load_json(row[9]),
    )  # fmt: skip


def _element_facts(tx: WriteTx, bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    """What a filter may read of the element beyond the event: its version's content
    type, user metadata and tags (nothing, if the version is gone)."""
    if not key or version_id is None:
        return {}
    row = tx.query_one(
        "SELECT content_type, metadata, tags FROM t0_versions"
        " WHERE bucket = ? AND key = ? AND version_id = ?",
        (bucket, key, version_id),
    )
    if row is None:
        return {}
    metadata = {str(k).lower(): v for k, v in (load_json(row[1]) or {}).items()}
    return {"content_type": row[0], "metadata": metadata, "tags": load_json(row[2]) or {}}


def _spec_json(spec: TriggerSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "function": spec.function, "function_version": spec.function_version,
        "bucket": spec.bucket, "prefix": spec.prefix, "suffix": spec.suffix,
        "events": list(spec.events), "filter": spec.filter, "ordered": spec.ordered,
        "stream": spec.stream, "schedule": spec.schedule,
    }  # fmt: skip


def _spec(document: Any) -> TriggerSpec:
    return TriggerSpec(
        name=document["name"], function=document["function"], bucket=document["bucket"],
        prefix=document["prefix"], suffix=document["suffix"],
        events=tuple(document["events"]), filter=document["filter"],
        function_version=document.get("function_version"),
        ordered=bool(document.get("ordered", False)), stream=document.get("stream"),
        schedule=document.get("schedule"),
    )  # fmt: skip
