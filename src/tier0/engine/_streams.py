"""Streams: named, ordered, retained logs; producers append, consumer groups read.

A stream's messages (a value of bytes, an optional key, optional headers)
are numbered by a gap-free offset per stream, in commit order, and kept
until the stream's retention drops them: older than ``retention_s``, or
the oldest while the stream holds more than ``retention_bytes`` (checked
as messages are appended, a bounded amount of work per append). Appends
from several threads are group-committed together; a batch (`append_many`)
is one transaction.

A consumer group remembers the next offset it will read (``committed``):
`read` with a group starts there, and `commit` moves it after the messages
were handled, so a consumer that dies before committing reads them again
(at least once); `seek` replays from an offset or a time. A new group
starts at the oldest retained message. ``read`` without a group reads from
any offset (``after``). `wait` blocks on the commit signal until messages
arrive: nothing is polled.

Two streams are built in. ``events`` is the element event log itself
(offsets are its sequence numbers; read-only, retained as the log is): a
consumer group reads every mutation with a committed offset, as from
Kafka. ``dead-letter`` receives every invocation that ran out of tries,
with its error (the runner appends it in the transaction that marks it
dead); it keeps 30 days.

A trigger on a stream (``TriggerSpec(stream=...)``) is a consumer group
of its own (``trigger.<name>``) that the dispatcher reads: one invocation
per message, the group's offset committed with them.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tier0.errors import InvalidArgument, NoSuchStream
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json, load_json

EVENTS: Final = "events"
DEAD_LETTER: Final = "dead-letter"
BUILT_IN: Final = (EVENTS, DEAD_LETTER)
DEAD_LETTER_RETENTION_S: Final = 30 * 86_400
STREAM_NAME_CHARS_MAX: Final = 128
MESSAGE_BYTES_MAX: Final = 1024 * 1024
KEY_BYTES_MAX: Final = 1024
HEADERS_BYTES_MAX: Final = 16 * 1024
BATCH_MESSAGES_MAX: Final = 10_000
READ_LIMIT_MAX: Final = 10_000
STREAMS_MAX: Final = 10_000
GROUPS_MAX: Final = 1_000
#: Messages one append may drop for retention (the rest go with later appends).
TRIM_MESSAGES_MAX: Final = 1_000
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Message:
    stream: str
    offset: int
    time: dt.datetime
    key: str | None
    value: bytes
    headers: dict[str, str]
    producer: str

    def to_json(self) -> dict[str, Any]:
        """As a function's event: ``value`` in base64 (``value_b64``), JSON for the rest."""
        return {
            "type": "StreamMessage", "stream": self.stream, "offset": self.offset,
            "time": self.time.isoformat(), "key": self.key,
            "value_b64": base64.b64encode(self.value).decode(), "headers": self.headers,
            "producer": self.producer,
        }  # fmt: skip


@dataclass(frozen=True)
class StreamInfo:
    name: str
    first_offset: int
    next_offset: int
    bytes: int
    retention_s: int | None
    retention_bytes: int | None

    @property
    def messages(self) -> int:
        return self.next_offset - self.first_offset


def check_stream_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > STREAM_NAME_CHARS_MAX:
        raise InvalidArgument(
            f"a stream name is 1..{STREAM_NAME_CHARS_MAX} letters, digits, '.', '_' and '-',"
            f" starting with a letter or digit, not {name!r}"
        )
    return name


def _check_group(group: object) -> str:
    if not isinstance(group, str) or not _NAME.fullmatch(group) or len(group) > 128:
        raise InvalidArgument(f"a group name is like a stream name, not {group!r}")
    return group


class Streams:
    """The streams of one store (no authorization here: `tier0.engine._api` checks)."""

    def __init__(self, meta: MetaBackend, committer: Committer) -> None:
        self._meta = meta
        self._committer = committer

    # -- streams ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        retention_s: float | None = 7 * 86_400,
        retention_bytes: int | None = None,
        created_by: str,
        exist_ok: bool = False,
    ) -> StreamInfo:
        """Make stream ``name`` keeping messages ``retention_s`` seconds (None: for good)
        and at most ``retention_bytes`` bytes (None: no bound)."""
        check_stream_name(name)
        if name in BUILT_IN:
            raise InvalidArgument(f"{name!r} is a built-in stream; choose another name")
        if retention_s is not None and not (
            isinstance(retention_s, int | float) and 1 <= retention_s <= 100 * 365 * 86_400
        ):
            raise InvalidArgument(f"retention_s is 1 s .. 100 years, or None, not {retention_s!r}")
        if retention_bytes is not None and not (
            isinstance(retention_bytes, int) and retention_bytes >= MESSAGE_BYTES_MAX
        ):
            raise InvalidArgument(
                f"retention_bytes is at least {MESSAGE_BYTES_MAX} (one message), or None"
            )
        seconds = None if retention_s is None else int(-(-retention_s // 1))

        def op(tx: WriteTx) -> StreamInfo:
            found = _stream_row(tx, name)
            if found is not None:
                if exist_ok:
                    return found
                raise InvalidArgument(f"a stream named {name!r} exists")
            if tx.query_one("SELECT count(*) FROM t0_streams")[0] >= STREAMS_MAX:
                raise InvalidArgument(f"a store holds at most {STREAMS_MAX} streams")
            _insert_stream(tx, name, seconds, retention_bytes, created_by)
            return StreamInfo(name, 0, 0, 0, seconds, retention_bytes)

        info: StreamInfo = self._committer.run(op)
        return info

    def get(self, name: str) -> StreamInfo:
        if name == EVENTS:
            with self._meta.reader() as db:
                latest = int(db.query_one("SELECT value FROM t0_counters WHERE name = 'seq'")[0])
                first = db.query_one("SELECT min(seq) FROM t0_events")[0]
            return StreamInfo(EVENTS, int(first or latest + 1), latest + 1, 0, None, None)
        with self._meta.reader() as db:
            info = _stream_row(db, name)
        if info is None:
            if name == DEAD_LETTER:
                return StreamInfo(DEAD_LETTER, 0, 0, 0, DEAD_LETTER_RETENTION_S, None)
            raise NoSuchStream(f"there is no stream named {name!r}: create it first")
        return info

    def all(self) -> list[StreamInfo]:
        with self._meta.reader() as db:
            rows = db.query_all(f"SELECT {_STREAM_COLUMNS} FROM t0_streams ORDER BY name")
        return [_stream_info(row) for row in rows]

    def remove(self, name: str) -> None:
        """Drop stream ``name``, its messages and its groups (refused while a trigger
        reads it)."""

        def op(tx: WriteTx) -> None:
            users = [
                row[0] for row in tx.query_all("SELECT name, spec FROM t0_triggers ORDER BY name")
                if load_json(row[1]).get("stream") == name
            ]  # fmt: skip
            if users:
                raise InvalidArgument(
                    f"stream {name!r} runs trigger(s) {', '.join(users)}: remove them first"
                )
            if not tx.execute("DELETE FROM t0_streams WHERE name = ?", (name,)).rowcount:
                raise NoSuchStream(f"there is no stream named {name!r}")
            tx.execute("DELETE FROM t0_stream_messages WHERE stream = ?", (name,))
            tx.execute("DELETE FROM t0_stream_groups WHERE stream = ?", (name,))

        self._committer.run(op)

    # -- producing ----------------------------------------------------------------------------

    def append(
        self, name: str, value: bytes, *, key: str | None = None,
        headers: Mapping[str, str] | None = None, producer: str,
    ) -> int:  # fmt: skip
        """Append one message; its offset."""
        return self.append_many(name, [(value, key, headers)], producer=producer)[0]

    def append_many(
        self,
        name: str,
        messages: Iterable[tuple[bytes, str | None, Mapping[str, str] | None]],
        *,
        producer: str,
    ) -> list[int]:
        """Append ``(value, key, headers)`` messages in one transaction; their offsets."""
        if name == EVENTS:
            raise InvalidArgument("the events stream is the event log: write elements instead")
        rows = [_message_row(value, key, headers) for value, key, headers in messages]
        if not 1 <= len(rows) <= BATCH_MESSAGES_MAX:
            raise InvalidArgument(f"an append carries 1..{BATCH_MESSAGES_MAX} messages")

        def op(tx: WriteTx) -> list[int]:
            return append_in(tx, name, rows, producer=producer)

        offsets: list[int] = self._committer.run(op)
        return offsets

    # -- consuming ----------------------------------------------------------------------------

    def read(
        self, name: str, *, after: int | None = None, group: str | None = None,
        since: dt.datetime | None = None, limit: int = 100,
    ) -> list[Message]:  # fmt: skip
        """Up to ``limit`` messages, oldest first: from ``group``'s committed offset, or
        after offset ``after``, or from time ``since`` (the oldest retained if none)."""
        if not 1 <= limit <= READ_LIMIT_MAX:
            raise InvalidArgument(f"limit is 1..{READ_LIMIT_MAX}")
        if sum(x is not None for x in (after, group, since)) > 1:
            raise InvalidArgument("read from one of: a group, after an offset, since a time")
        start = 0
        if group is not None:
            start = self.committed(name, group)
        elif after is not None:
            start = after + 1
        elif since is not None:
            start = self.offset_at(name, since)
        return self._read_from(name, start, limit)

    def wait(
        self, name: str, *, timeout_s: float, after: int | None = None,
        group: str | None = None, limit: int = 100,
    ) -> list[Message]:  # fmt: skip
        """`read`, blocking up to ``timeout_s`` until there is something; [] on timeout."""
        self.get(name)  # exists
        self._meta.start_watching()
        signal = self._meta.signal
        deadline = time.monotonic() + timeout_s
        while True:
            generation = signal.generation()
            found = self.read(name, after=after, group=group, limit=limit)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            signal.wait_changed(generation, remaining)

    def committed(self, name: str, group: str) -> int:
        """The next offset ``group`` reads (the oldest retained for a new group)."""
        _check_group(group)
        with self._meta.reader() as db:
            row = db.query_one(
                "SELECT committed FROM t0_stream_groups WHERE stream = ? AND group_name = ?",
                (name, group),
            )
        if row is not None:
            return int(row[0])
        return self.get(name).first_offset

    def commit(self, name: str, group: str, offset: int) -> None:
        """``group`` has handled everything before ``offset``: it reads from there next."""
        _check_group(group)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"an offset is a whole number, not {offset!r}")
        info = self.get(name)
        if offset > info.next_offset:
            raise InvalidArgument(
                f"offset {offset} is past the end of {name} (next offset {info.next_offset})"
            )

        def op(tx: WriteTx) -> None:
            if tx.query_one("SELECT count(*) FROM t0_stream_groups WHERE stream = ?", (name,))[
                0
            ] >= GROUPS_MAX and not tx.query_one(
                "SELECT 1 FROM t0_stream_groups WHERE stream = ? AND group_name = ?", (name, group)
            ):
                raise InvalidArgument(f"a stream has at most {GROUPS_MAX} consumer groups")
            _set_committed(tx, name, group, offset)

        self._committer.run(op)

    def seek(
        self, name: str, group: str, *, offset: int | None = None,
        since: dt.datetime | None = None,
    ) -> int:  # fmt: skip
        """Replay: make ``group`` read next from ``offset``, or from the first message at
        or after ``since``. Returns the offset set."""
        if (offset is None) == (since is None):
            raise InvalidArgument("seek to an offset or to a time")
        target = offset if offset is not None else self.offset_at(name, since)  # type: ignore[arg-type]
        self.commit(name, group, max(target, 0))
        return target

    def groups(self, name: str) -> dict[str, int]:
        """Each consumer group of ``name`` and its committed offset."""
        with self._meta.reader() as db:
            rows = db.query_all(
                "SELECT group_name, committed FROM t0_stream_groups WHERE stream = ?"
                " ORDER BY group_name",
                (name,),
            )
        return {row[0]: int(row[1]) for row in rows}

    def offset_at(self, name: str, since: dt.datetime) -> int:
        """The offset of the first message at or after ``since`` (the end if none)."""
        if since.tzinfo is None:
            raise InvalidArgument("give the time with its zone (e.g. 2026-01-31T12:00:00+00:00)")
        moment_us = int(since.timestamp() * 1_000_000)
        with self._meta.reader() as db:
            if name == EVENTS:
                row = db.query_one(
                    "SELECT min(seq) FROM t0_events WHERE time_us >= ?", (moment_us,)
                )
            else:
                row = db.query_one(
                    "SELECT min(msg_offset) FROM t0_stream_messages WHERE stream = ?"
                    " AND time_us >= ?",
                    (name, moment_us),
                )
        return int(row[0]) if row and row[0] is not None else self.get(name).next_offset

    def _read_from(self, name: str, start: int, limit: int) -> list[Message]:
        if name == EVENTS:
            return self._read_events(start, limit)
        with self._meta.reader() as db:
            rows = db.query_all(
                "SELECT msg_offset, time_us, key, value, headers, producer FROM t0_stream_messages"
                " WHERE stream = ? AND msg_offset >= ? ORDER BY msg_offset LIMIT ?",
                (name, start, limit),
            )
            if not rows and _stream_row(db, name) is None and name != DEAD_LETTER:
                raise NoSuchStream(f"there is no stream named {name!r}: create it first")
        return [
            Message(name, int(r[0]), _time(r[1]), r[2], bytes(r[3]), load_json(r[4]) or {}, r[5])
            for r in rows
        ]

    def _read_events(self, start: int, limit: int) -> list[Message]:
        from tier0.engine._events import EventLog
        from tier0.engine._runner import event_document

        events = EventLog(self._meta).read(max(start - 1, 0), limit=limit)
        return [
            Message(EVENTS, e.seq, e.time, f"{e.bucket}/{e.key}",
                    dump_json(event_document(e)).encode(), {"type": e.type}, e.principal)
            for e in events
        ]  # fmt: skip


# -- inside a transaction (the runner's dead letter, the dispatcher's stream triggers) ----------

_STREAM_COLUMNS: Final = "name, first_offset, next_offset, bytes, retention_s, retention_bytes"


def _stream_info(row: Sequence[Any]) -> StreamInfo:
    return StreamInfo(
        row[0], int(row[1]), int(row[2]), int(row[3]),
        None if row[4] is None else int(row[4]), None if row[5] is None else int(row[5]),
    )  # fmt: skip


def _stream_row(db: Any, name: str) -> StreamInfo | None:
    row = db.query_one(f"SELECT {_STREAM_COLUMNS} FROM t0_streams WHERE name = ?", (name,))
    return None if row is None else _stream_info(row)


def _insert_stream(
    tx: WriteTx, name: str, retention_s: int | None, retention_bytes: int | None, by: str
) -> None:
    tx.execute(
        "INSERT INTO t0_streams (name, retention_s, retention_bytes, first_offset, next_offset,"
        " bytes, created_us, created_by) VALUES (?, ?, ?, 0, 0, 0, ?, ?)",
        (name, retention_s, retention_bytes, tx.now_us, by),
    )


def _message_row(
    value: bytes, key: str | None, headers: Mapping[str, str] | None
) -> tuple[bytes, str | None, str | None]:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidArgument(f"a message's value is bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) > MESSAGE_BYTES_MAX:
        raise InvalidArgument(f"a message holds at most {MESSAGE_BYTES_MAX} bytes")
    if key is not None and (not isinstance(key, str) or len(key.encode()) > KEY_BYTES_MAX):
        raise InvalidArgument(f"a message's key is a string of at most {KEY_BYTES_MAX} bytes")
    document = None
    if headers:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise InvalidArgument("a message's headers map strings to strings")
        document = dump_json(dict(headers))
        if len(document) > HEADERS_BYTES_MAX:
            raise InvalidArgument(f"a message's headers are at most {HEADERS_BYTES_MAX} bytes")
    return value, key, document


def append_in(
    tx: WriteTx,
    name: str,
    rows: Sequence[tuple[bytes, str | None, str | None]],
    *,
    producer: str,
) -> list[int]:
    """Append ``rows`` (see `_message_row`) to ``name`` in ``tx``; their offsets. The
    dead-letter stream is made on its first message."""
    info = _stream_row(tx, name)
    if info is None:
        if name != DEAD_LETTER:
            raise NoSuchStream(f"there is no stream named {name!r}: create it first")
        _insert_stream(tx, name, DEAD_LETTER_RETENTION_S, None, "root")
        info = StreamInfo(name, 0, 0, 0, DEAD_LETTER_RETENTION_S, None)
    first = info.next_offset
    tx.executemany(
        "INSERT INTO t0_stream_messages (stream, msg_offset, time_us, key, value, headers,"
        " producer) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(name, first + i, tx.now_us, key, value, headers, producer)
         for i, (value, key, headers) in enumerate(rows)],
    )  # fmt: skip
    added = sum(len(row[0]) for row in rows)
    tx.execute(
        "UPDATE t0_streams SET next_offset = ?, bytes = bytes + ? WHERE name = ?",
        (first + len(rows), added, name),
    )
    _trim(tx, info, first + len(rows), info.bytes + added)
    return list(range(first, first + len(rows)))


def _trim(tx: WriteTx, info: StreamInfo, next_offset: int, size: int) -> None:
    """Drop up to TRIM_MESSAGES_MAX of the oldest messages past the retention."""
    drop_to = info.first_offset
    if info.retention_s is not None:
        cutoff_us = tx.now_us - info.retention_s * 1_000_000
        row = tx.query_one(
            "SELECT max(msg_offset) FROM t0_stream_messages WHERE stream = ? AND msg_offset < ?"
            " AND time_us < ?",
            (info.name, info.first_offset + TRIM_MESSAGES_MAX, cutoff_us),
        )
        if row and row[0] is not None:
            drop_to = max(drop_to, int(row[0]) + 1)
    dropped_bytes = 0
    if info.retention_bytes is not None and size > info.retention_bytes:
        excess = size - info.retention_bytes
        for offset, length in tx.query_all(
            "SELECT msg_offset, length(value) FROM t0_stream_messages WHERE stream = ?"
            " AND msg_offset >= ? ORDER BY msg_offset LIMIT ?",
            (info.name, info.first_offset, TRIM_MESSAGES_MAX),
        ):
            if excess <= 0 or offset >= next_offset - 1:  # always keep the newest
                break
            excess -= int(length)
            drop_to = max(drop_to, int(offset) + 1)
    if drop_to <= info.first_offset:
        return
    row = tx.query_one(
        "SELECT coalesce(sum(length(value)), 0) FROM t0_stream_messages WHERE stream = ?"
        " AND msg_offset < ?",
        (info.name, drop_to),
    )
    dropped_bytes = int(row[0])
    tx.execute(
        "DELETE FROM t0_stream_messages WHERE stream = ? AND msg_offset < ?", (info.name, drop_to)
    )
    tx.execute(
        "UPDATE t0_streams SET first_offset = ?, bytes = bytes - ? WHERE name = ?",
        (drop_to, dropped_bytes, info.name),
    )


def _set_committed(tx: WriteTx, name: str, group: str, offset: int) -> None:
    tx.execute(
        "INSERT INTO t0_stream_groups (stream, group_name, committed, updated_us)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (stream, group_name) DO UPDATE"
        " SET committed = excluded.committed, updated_us = excluded.updated_us",
        (name, group, offset, tx.now_us),
    )


def read_in(tx: WriteTx, name: str, start: int, limit: int) -> list[Message]:
    """Messages of ``name`` from ``start`` in ``tx`` (the dispatcher's stream triggers)."""
    rows = tx.query_all(
        "SELECT msg_offset, time_us, key, value, headers, producer FROM t0_stream_messages"
        " WHERE stream = ? AND msg_offset >= ? ORDER BY msg_offset LIMIT ?",
        (name, start, limit),
    )
    return [
        Message(name, int(r[0]), _time(r[1]), r[2], bytes(r[3]), load_json(r[4]) or {}, r[5])
        for r in rows
    ]


def _time(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)
