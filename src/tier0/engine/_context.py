"""What a function is given: ``handler(ctx, event)`` and ``init(ctx)``.

``ctx`` carries:

- ``ctx.client``: a tier0 client acting as the function's own principal
  (``fn.<name>``), opened on first use and kept for the worker's life: every
  read and write the function makes is authorized, and audited, as its own;
- ``ctx.log``: a `logging.Logger` whose lines are stored with the invocation
  (``tier0 fn logs``, the ``logs`` column of the ``invocations`` view); what
  the function prints to stdout and stderr is stored the same way;
- ``ctx.secrets``: the values of the secrets the function declared;
- ``ctx.idempotency_key``: ``<seq>:<trigger>``, the same on every attempt of
  one event, for effects made exactly once (write under it, or skip when an
  element named by it exists);
- ``ctx.invocation_id``, ``ctx.attempt``, ``ctx.function``, ``ctx.version``,
  and ``ctx.remaining_s()``, the seconds left before the timeout.

In ``init`` the invocation's fields are None. ``event`` is a JSON document:
for element and table events the event log's event (``seq``, ``type``,
``bucket``, ``key``, ``version_id``, ``size``, ``etag``, ``principal``,
``time``, ``detail``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

LINE_CHARS_MAX: Final = 4096
#: Lines one attempt keeps; past it one line says how many were dropped.
ATTEMPT_LINES_MAX: Final = 1000


class LogLines:
    """The lines one attempt logged: ``[time_us, level, message]`` each, bounded."""

    def __init__(self) -> None:
        self.lines: list[list[Any]] = []
        self.dropped = 0

    def add(self, level: str, message: str) -> None:
        if len(self.lines) >= ATTEMPT_LINES_MAX:
            self.dropped += 1
            return
        self.lines.append([time.time_ns() // 1000, level, message[:LINE_CHARS_MAX]])

    def take(self) -> list[list[Any]]:
        lines = self.lines
        if self.dropped:
            lines.append([time.time_ns() // 1000, "WARNING", f"{self.dropped} more lines dropped"])
        self.lines, self.dropped = [], 0
        return lines


class _Handler(logging.Handler):
    def __init__(self, sink: LogLines) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a bad format string must not fail the function
            message = str(record.msg)
        self._sink.add(record.levelname, message)


class StreamLines:
    """A text stream (stdout, stderr) whose complete lines go to the log."""

    def __init__(self, sink: LogLines, level: str) -> None:
        self._sink = sink
        self._level = level
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._sink.add(self._level, line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._sink.add(self._level, self._partial)
            self._partial = ""

    def isatty(self) -> bool:
        return False


class Context:
    """The ``ctx`` of ``handler(ctx, event)``; see the module docstring."""

    def __init__(
        self,
        *,
        function: str,
        version: int,
        secrets: Mapping[str, str],
        sink: LogLines,
        open_client: Callable[[], Any],
    ) -> None:
        self.function = function
        self.version = version
        self.secrets: Mapping[str, str] = dict(secrets)
        self.log = logging.getLogger(f"tier0.fn.{function}")
        self.log.setLevel(logging.DEBUG)
        self.log.propagate = False
        self.log.handlers[:] = [_Handler(sink)]
        self._open_client = open_client
        self._client: Any = None
        self.invocation_id: int | None = None
        self.attempt: int | None = None
        self.idempotency_key: str | None = None
        self._deadline: float | None = None

    @property
    def client(self) -> Any:
        """A `tier0.Tier0` acting as ``fn.<name>`` (opened on first use)."""
        if self._client is None:
            self._client = self._open_client()
        return self._client

    def remaining_s(self) -> float | None:
        """Seconds left before this invocation's timeout (None in ``init``)."""
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def begin(self, invocation_id: int, attempt: int, key: str, timeout_s: float) -> None:
        self.invocation_id, self.attempt, self.idempotency_key = invocation_id, attempt, key
        self._deadline = time.monotonic() + timeout_s

    def end(self) -> None:
        self.invocation_id = self.attempt = self.idempotency_key = None
        self._deadline = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
