"""What a trigger matches: events by bucket, key prefix and suffix, type, and a filter.

`TriggerSpec` is checked whole when it is made, so that a trigger that could
never match, or that names something unknown, is refused at creation with a
clear message (not discovered when the first event goes by). `matches` then
decides per event, in microseconds: the dispatcher asks it of every active
trigger for every event it reads.

Event types are S3's names (``ObjectCreated:Put``) and tier0's own
(``TableRowsInserted``); a pattern is a type, ``Family:*`` (every type of a
family: ``ObjectCreated:*``), ``*``, or one of the short names in `ALIASES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tier0.engine._filters import Predicate, compile_filter
from tier0.errors import InvalidArgument

TRIGGER_NAME_CHARS_MAX: Final = 128
EVENT_PATTERNS_MAX: Final = 32
AFFIX_BYTES_MAX: Final = 1024
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Every event type the kernel emits, by family.
EVENT_TYPES: Final = (
    "ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy",
    "ObjectCreated:CompleteMultipartUpload",
    "ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated",
    "ObjectTagging:Put", "ObjectTagging:Delete", "ObjectAcl:Put", "ObjectMetadata:Put",
    "TableCreated", "TableRowsInserted", "TableRowsUpdated", "TableRowsDeleted",
    "TableRowsChanged", "TableAltered", "TableIndexed", "TableDropped",
)  # fmt: skip
#: Short names for the common patterns (the issue's words for them).
ALIASES: Final = {
    "created": "ObjectCreated:*",
    "removed": "ObjectRemoved:*",
    "tagged": "ObjectTagging:*",
    "annotated": "ObjectMetadata:*",
    "rows-inserted": "TableRowsInserted",
    "rows-changed": "TableRows*",
}


@dataclass(frozen=True)
class TriggerSpec:
    """Which events run a function: all of bucket, prefix, suffix, types and filter."""

    name: str
    function: str
    #: None: every bucket.
    bucket: str | None = None
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = ("ObjectCreated:*",)
    filter: str | None = None
    #: The function's version this trigger runs; None at creation pins the latest.
    function_version: int | None = None
    #: Run the events of one key one at a time, in the order they happened.
    ordered: bool = False
    #: A stream whose messages run the function (instead of the event log's events).
    stream: str | None = None
    #: A cron line (UTC) on which the function runs (instead of on events).
    schedule: str | None = None
    _predicate: Predicate | None = field(default=None, repr=False, compare=False)
    _types: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        for label, value in (("trigger", self.name), ("function", self.function)):
            if (
                not isinstance(value, str)
                or not _NAME.fullmatch(value)
                or (len(value) > TRIGGER_NAME_CHARS_MAX)
            ):
                raise InvalidArgument(
                    f"a {label} name is 1..{TRIGGER_NAME_CHARS_MAX} letters, digits, '.', '_'"
                    f" and '-', starting with a letter or digit, not {value!r}"
                )
        for label, affix in (("prefix", self.prefix), ("suffix", self.suffix)):
            if not isinstance(affix, str) or len(affix.encode()) > AFFIX_BYTES_MAX:
                raise InvalidArgument(f"the {label} is a string of at most {AFFIX_BYTES_MAX} bytes")
        if self.bucket is not None and (not isinstance(self.bucket, str) or not self.bucket):
            raise InvalidArgument("the bucket is a bucket name, or None for every bucket")
        events = (self.events,) if isinstance(self.events, str) else tuple(self.events)
        if not events or len(events) > EVENT_PATTERNS_MAX:
            raise InvalidArgument(f"a trigger matches 1..{EVENT_PATTERNS_MAX} event patterns")
        object.__setattr__(self, "events", events)
        if self.stream is None and self.schedule is None:
            object.__setattr__(self, "_types", frozenset(t for p in events for t in _expand(p)))
        if self.filter is not None:
            object.__setattr__(self, "_predicate", compile_filter(self.filter))
        if self.function_version is not None and (
            isinstance(self.function_version, bool)
            or not isinstance(self.function_version, int)
            or self.function_version < 1
        ):
            raise InvalidArgument(
                f"function_version is a version number (1, 2, ...), not {self.function_version!r}"
            )
        if not isinstance(self.ordered, bool):
            raise InvalidArgument(f"ordered is True or False, not {self.ordered!r}")
        if self.schedule is not None:
            from tier0.engine._cron import Cron

            Cron.parse(self.schedule)
            if (
                self.stream is not None
                or self.bucket is not None
                or self.prefix
                or (self.suffix or self.filter is not None)
            ):
                raise InvalidArgument(
                    "a schedule trigger runs on its schedule alone: it takes no stream, bucket,"
                    " prefix, suffix or filter"
                )
            object.__setattr__(self, "events", ("Scheduled",))
            object.__setattr__(self, "_types", frozenset())
        if self.stream is not None:
            from tier0.engine._streams import check_stream_name

            check_stream_name(self.stream)
            if self.stream == "events":
                raise InvalidArgument(
                    "the events stream is the event log: trigger on it without a stream"
                    " (events=('*',) for every event)"
                )
            if self.bucket is not None or self.prefix or self.suffix or self.filter is not None:
                raise InvalidArgument(
                    "a stream trigger runs for every message of its stream: it takes no"
                    " bucket, prefix, suffix or filter"
                )
            object.__setattr__(self, "events", ("StreamMessage",))
            object.__setattr__(self, "_types", frozenset())

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` (its facts: ``type``, ``bucket``, ``key``, and what the
        filter reads; see `tier0.engine._filters`) runs this trigger's function."""
        if event.get("type") not in self._types:
            return False
        if self.bucket is not None and event.get("bucket") != self.bucket:
            return False
        key = str(event.get("key") or "")
        if not key.startswith(self.prefix) or not key.endswith(self.suffix):
            return False
        return self._predicate is None or self._predicate(event)


def _expand(pattern: str) -> list[str]:
    """The event types ``pattern`` stands for; `InvalidArgument` for none."""
    if not isinstance(pattern, str):
        raise InvalidArgument(f"an event pattern is a string, not {pattern!r}")
    resolved = ALIASES.get(pattern, pattern)
    if resolved == "*":
        return list(EVENT_TYPES)
    if resolved.endswith("*"):
        found = [t for t in EVENT_TYPES if t.startswith(resolved[:-1])]
    else:
        found = [t for t in EVENT_TYPES if t == resolved]
    if not found:
        raise InvalidArgument(
            f"no event type matches {pattern!r}: use a type (e.g. ObjectCreated:Put),"
            f" Family:* (e.g. ObjectCreated:*), '*' or one of {', '.join(ALIASES)}"
        )
    return found
