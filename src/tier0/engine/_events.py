"""The event log: every mutation, in commit order, for the engine to consume.

Events are written by the mutation's own transaction (an outbox), numbered by
a gap-free sequence in commit order: a reader that has seen ``seq = n`` has
seen everything before it, and nothing numbered ``n`` or less can appear
later. ``wait`` blocks on the metadata backend's commit signal (inotify on
SQLite, LISTEN/NOTIFY on PostgreSQL), so a consumer never polls.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from tier0.errors import InvalidArgument
from tier0.meta import MetaBackend, load_json

READ_LIMIT_MAX: Final = 10_000
_COLUMNS: Final = "seq, type, bucket, key, version_id, size, etag, principal, time_us, detail"


@dataclass(frozen=True, slots=True)
class Event:
    """One mutation. ``type`` follows S3's names (``ObjectCreated:Put``, ...)."""

    seq: int
    type: str
    bucket: str
    key: str
    version_id: str | None
    size: int | None
    etag: str | None
    principal: str
    time: dt.datetime
    detail: dict[str, Any] = field(default_factory=dict)


def _event(row: Any) -> Event:
    return Event(
        seq=row[0],
        type=row[1],
        bucket=row[2],
        key=row[3],
        version_id=row[4],
        size=row[5],
        etag=row[6],
        principal=row[7],
        time=dt.datetime.fromtimestamp(row[8] / 1_000_000, tz=dt.UTC),
        detail=load_json(row[9]),
    )


class EventLog:
    """Reads and waits for events after a sequence number."""

    def __init__(self, backend: MetaBackend) -> None:
        self._backend = backend

    def latest_seq(self) -> int:
        """The sequence number of the newest committed event (0 when none)."""
        with self._backend.reader() as db:
            return int(db.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0])

    def read(self, after: int = 0, *, limit: int = 1000) -> list[Event]:
        """Up to ``limit`` events with ``seq > after``, oldest first."""
        if not 1 <= limit <= READ_LIMIT_MAX:
            raise InvalidArgument(f"limit must be 1..{READ_LIMIT_MAX}, got {limit}")
        with self._backend.reader() as db:
            rows = db.query_all(
                f"SELECT {_COLUMNS} FROM t0_events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            )
        return [_event(row) for row in rows]

    def wait(self, after: int, *, timeout_s: float, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after``, blocking up to ``timeout_s`` until there are some.

        Returns ``[]`` on timeout. Any process's commit wakes the wait.
        """
        self._backend.start_watching()
        signal = self._backend.signal
        deadline = time.monotonic() + timeout_s
        while True:
            # Snapshot the generation before looking, so a commit in between still wakes us.
            generation = signal.generation()
            events = self.read(after, limit=limit)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return events
            signal.wait_changed(generation, remaining)

    def follow(self, after: int = 0, *, wait_s: float = 30.0) -> Iterator[Event]:
        """Every event after ``after``, forever, in order (a generator: stop by closing it)."""
        while True:
            for event in self.wait(after, timeout_s=wait_s):
                after = event.seq
                yield event
