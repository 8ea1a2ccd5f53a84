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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tier0.engine._triggers import TriggerSpec
from tier0.errors import InvalidArgument
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json, load_json

CURSOR: Final = "engine.dispatch"
#: Events one dispatch reads at most (one transaction).
DISPATCH_EVENTS_MAX: Final = 1000
TRIGGERS_MAX: Final = 10_000
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

    def __init__(self, meta: MetaBackend, committer: Committer) -> None:
        self._meta = meta
        self._committer = committer

    def create(self, spec: TriggerSpec, *, created_by: str) -> TriggerInfo:
        """Store ``spec`` (active); `InvalidArgument` if its name is taken."""

        def op(tx: WriteTx) -> TriggerInfo:
            if tx.query_one("SELECT 1 FROM t0_triggers WHERE name = ?", (spec.name,)):
                raise InvalidArgument(f"a trigger named {spec.name!r} exists: remove it first")
            count = tx.query_one("SELECT count(*) FROM t0_triggers")[0]
            if count >= TRIGGERS_MAX:
                raise InvalidArgument(f"a store holds at most {TRIGGERS_MAX} triggers")
            tx.execute(
                "INSERT INTO t0_triggers (name, spec, state, after_seq, created_us, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (spec.name, dump_json(_spec_json(spec)), ACTIVE, tx.seq, tx.now_us, created_by),
            )
            return TriggerInfo(spec, ACTIVE, tx.seq)

        result: TriggerInfo = self._committer.run(op)
        return result

    def list(self) -> list[TriggerInfo]:
        with self._meta.reader() as db:
            rows = db.query_all("SELECT spec, state, after_seq FROM t0_triggers ORDER BY name")
        return [TriggerInfo(_spec(load_json(r[0])), r[1], int(r[2])) for r in rows]

    def pause(self, name: str) -> None:
        self._set_state(name, PAUSED)

    def resume(self, name: str) -> None:
        self._set_state(name, ACTIVE)

    def remove(self, name: str) -> None:
        self._change(name, lambda tx: tx.execute("DELETE FROM t0_triggers WHERE name = ?", (name,)))

    def _set_state(self, name: str, state: str) -> None:
        self._change(
            name,
            lambda tx: tx.execute("UPDATE t0_triggers SET state = ? WHERE name = ?", (state, name)),
        )

    def _change(self, name: str, apply: Callable[[WriteTx], Any]) -> None:
        def op(tx: WriteTx) -> None:
            if not tx.query_one("SELECT 1 FROM t0_triggers WHERE name = ?", (name,)):
                raise InvalidArgument(f"there is no trigger named {name!r}")
            apply(tx)

        self._committer.run(op)


class Dispatcher:
    """Turns events after its cursor into invocations; see the module docstring."""

    def __init__(self, meta: MetaBackend, committer: Committer) -> None:
        self._meta = meta
        self._committer = committer

    def dispatch(self, *, events_max: int = DISPATCH_EVENTS_MAX) -> DispatchReport:
        """Handle the next events (at most ``events_max``) in one transaction."""
        if not 1 <= events_max <= DISPATCH_EVENTS_MAX:
            raise InvalidArgument(f"events_max is 1..{DISPATCH_EVENTS_MAX}")
        return self._committer.run(lambda tx: self._dispatch(tx, events_max))

    def _dispatch(self, tx: WriteTx, events_max: int) -> DispatchReport:
        row = tx.query_one("SELECT seq FROM t0_cursors WHERE name = ?", (CURSOR,))
        cursor = int(row[0]) if row else 0
        events = tx.query_all(
            "SELECT seq, type, bucket, key, version_id, size, etag, principal FROM t0_events"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor, events_max),
        )
        if not events:
            return DispatchReport(0, 0, cursor)
        triggers = [
            (_spec(load_json(r[0])), int(r[1]))
            for r in tx.query_all(
                "SELECT spec, after_seq FROM t0_triggers WHERE state = ?", (ACTIVE,)
            )
        ]
        made = 0
        for seq, kind, bucket, key, version_id, size, etag, principal in events:
            facts: dict[str, Any] = {
                "seq": seq, "type": kind, "bucket": bucket, "key": key,
                "version_id": version_id, "size": size, "etag": etag, "principal": principal,
            }  # fmt: skip
            element_read = False
            for spec, after_seq in triggers:
                if seq <= after_seq:
                    continue
                if spec.filter is not None and not element_read:
                    facts.update(_element_facts(tx, bucket, key, version_id))
                    element_read = True
                if spec.matches(facts):
                    made += _queue(tx, spec, seq)
        last = int(events[-1][0])
        tx.execute(
            "INSERT INTO t0_cursors (name, seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            (CURSOR, last),
        )
        return DispatchReport(len(events), made, last)


def _queue(tx: WriteTx, spec: TriggerSpec, seq: int) -> int:
    """Queue ``spec``'s invocation for event ``seq``; 0 if it exists (another
    dispatcher on the same database made it first)."""
    made = tx.query_one(
        "INSERT INTO t0_invocations (idempotency_key, trigger_name, function_name, seq, status,"
        " attempts, not_before_us, created_us) VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (f"{seq}:{spec.name}", spec.name, spec.function, seq, QUEUED, tx.now_us, tx.now_us),
    )
    return 0 if made is None else 1


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
        "name": spec.name, "function": spec.function, "bucket": spec.bucket,
        "prefix": spec.prefix, "suffix": spec.suffix, "events": list(spec.events),
        "filter": spec.filter,
    }  # fmt: skip


def _spec(document: Any) -> TriggerSpec:
    return TriggerSpec(
        name=document["name"], function=document["function"], bucket=document["bucket"],
        prefix=document["prefix"], suffix=document["suffix"],
        events=tuple(document["events"]), filter=document["filter"],
    )  # fmt: skip
