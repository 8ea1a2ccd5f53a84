"""Slow clients: a request whose client stops sending its body, or stops reading
its answer, is cut after a timeout instead of holding the gateway's resources.

uvicorn times out only an idle keep-alive connection between requests; the
request head has its own deadline in `tier0.server` (the connection). Once
the head is in, a request holds a slot in `Admission`, perhaps a thread
(a streamed write) and a few MiB of queued blocks, for as long as its client
keeps it alive. `Watchdog` bounds that time:

- no body bytes for ``io_timeout_s`` while the gateway waits for them, or no
  progress for as long while it waits to hand the client more of the answer,
  cuts the request;
- a body that trickles in (a byte every few seconds defeats an idle timer)
  must come at ``body_rate_bytes_per_s_min`` on average, after a grace of
  ``io_timeout_s``: the time the gateway spent waiting for body bytes must
  stay under ``io_timeout_s + received / body_rate_bytes_per_s_min``. Only
  the time spent waiting for the client counts, never the time the gateway
  itself took (a slow disk holding back the reads is no fault of the client's).

A body timed out answers S3's ``400 RequestTimeout`` (and closes the
connection, the rest of the body unread); an answer the client stopped
reading can only be cut short. One timer per event loop (`Watchdogs`) looks
at every request that has waited on its client: a timer per request, armed
and cancelled, cost ~10 us of a small GET's ~180.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Final

from tier0.errors import InvalidArgument
from tier0.protocols.s3._http import Message, Receive, Send

__all__ = ["TIMEOUT_MESSAGE", "RequestTimeout", "Watchdog", "Watchdogs"]

#: S3's own words for the error.
TIMEOUT_MESSAGE: Final = (
    "Your socket connection to the server was not read from or written to within the"
    " timeout period. Idle connections will be closed."
)
#: The watchdog looks this many times per ``io_timeout_s`` (and at least once a second).
_TICKS_PER_TIMEOUT: Final = 4


class RequestTimeout(InvalidArgument):
    """The client stopped sending the request's body, or sent it too slowly."""

    s3_code: ClassVar[str] = "RequestTimeout"


class Watchdogs:
    """The watchdogs of a gateway's requests, and the one timer that looks at them.

    `watch` makes a request's `Watchdog`; a watchdog is looked at every
    ``min(io_timeout_s / 4, 1 s)`` from its first wait until it is closed.
    """

    def __init__(self, *, io_timeout_s: float, body_rate_bytes_per_s_min: float) -> None:
        assert io_timeout_s > 0 and body_rate_bytes_per_s_min >= 0
        self.io_timeout_s = io_timeout_s
        self.body_rate_bytes_per_s_min = body_rate_bytes_per_s_min
        self._tick_s = min(io_timeout_s / _TICKS_PER_TIMEOUT, 1.0)
        #: Watchdogs that have waited and are not closed yet.
        self._watched: set[Watchdog] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def watch(self) -> Watchdog:
        """A watchdog for the request of the current task."""
        return Watchdog(self)

    def __len__(self) -> int:
        """Requests being watched."""
        return len(self._watched)

    def _enrol(self, watchdog: Watchdog, loop: asyncio.AbstractEventLoop) -> None:
        self._watched.add(watchdog)
        if self._timer is None or self._timer_loop is not loop:
            self._timer_loop = loop
            self._timer = loop.call_later(self._tick_s, self._tick)

    def _tick(self) -> None:
        loop = self._timer_loop
        assert loop is not None
        now = loop.time()
        for watchdog in list(self._watched):
            watchdog._look(now)
        self._timer = loop.call_later(self._tick_s, self._tick) if self._watched else None


class Watchdog:
    """Times one request's waits on its client; see the module docstring.

    Made by `Watchdogs.watch`, inside the request's task (the watchdog cancels
    that task to interrupt a wait). Wrap the request's ``receive`` and
    ``send`` in `receive` and `send`; they raise `RequestTimeout` when the
    client is too slow. `close` after the answer.

    Example::

        watchdog = watchdogs.watch()
        try:
            message = await watchdog.receive(receive)
        finally:
            watchdog.close()
    """

    __slots__ = (
        "_body_wait_s",
        "_cancelling",
        "_closed",
        "_enrolled",
        "_expired",
        "_loop",
        "_received",
        "_receiving",
        "_task",
        "_waiting_since",
        "_watchdogs",
    )

    def __init__(self, watchdogs: Watchdogs) -> None:
        self._watchdogs = watchdogs
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "a Watchdog belongs to the task of its request"
        self._task = task
        #: When the wait in progress began (loop time), None when not waiting.
        self._waiting_since: float | None = None
        self._receiving = False
        self._received = 0
        #: Time spent waiting for body bytes, the wait in progress excluded.
        self._body_wait_s = 0.0
        self._expired = False
        #: Set when the watchdog cancelled the task, until the wait turns it into the error.
        self._cancelling = False
        self._closed = False
        self._enrolled = False

    @property
    def expired(self) -> bool:
        """Whether the watchdog cut the request."""
        return self._expired

    async def receive(self, receive: Receive) -> Message:
        """``await receive()``, timed; raises `RequestTimeout` when the client is too slow."""
        self._begin_wait(receiving=True)
        try:
            message = await receive()
        except asyncio.CancelledError:
            self._interrupted()
            raise
        finally:
            waited = self._end_wait()
            self._body_wait_s += waited
        self._received += len(message.get("body", b""))
        return message

    async def send(self, send: Send, message: Message) -> None:
        """``await send(message)``, timed; raises `RequestTimeout` when the client
        stopped reading for ``io_timeout_s``."""
        self._begin_wait(receiving=False)
        try:
            await send(message)
        except asyncio.CancelledError:
            self._interrupted()
            raise
        finally:
            self._end_wait()

    def close(self) -> None:
        """Stop watching (the answer is complete, or the request failed)."""
        self._closed = True
        if self._enrolled:
            self._watchdogs._watched.discard(self)

    # -- internals -------------------------------------------------------------------------

    def _begin_wait(self, *, receiving: bool) -> None:
        if self._expired and receiving:
            # The body timed out once: the rest of it is not read. The answer
            # that says so is still sent (and timed again).
            raise RequestTimeout(TIMEOUT_MESSAGE)
        self._waiting_since = self._loop.time()
        self._receiving = receiving
        if not self._enrolled and not self._closed:
            self._enrolled = True
            self._watchdogs._enrol(self, self._loop)

    def _end_wait(self) -> float:
        since, self._waiting_since = self._waiting_since, None
        return 0.0 if since is None else self._loop.time() - since

    def _interrupted(self) -> None:
        """In a wait's ``except CancelledError``: turn our own cancellation into the error."""
        if self._cancelling:
            # The cancellation was ours, not the server's: the task goes on to answer.
            self._cancelling = False
            self._task.uncancel()
            raise RequestTimeout(TIMEOUT_MESSAGE) from None

    def _look(self, now: float) -> None:
        """The timer's look: cut the request if its wait under way is too slow."""
        if self._closed or self._expired or self._waiting_since is None:
            return
        if self._too_slow(now):
            # The task is suspended in the wait (the loop runs one thing at a
            # time), so the cancellation lands there, in `receive` or `send`.
            self._expired = self._cancelling = True
            self._task.cancel()

    def _too_slow(self, now: float) -> bool:
        assert self._waiting_since is not None
        waited = now - self._waiting_since
        io_timeout_s = self._watchdogs.io_timeout_s
        if waited > io_timeout_s:
            return True
        rate_min = self._watchdogs.body_rate_bytes_per_s_min
        if not self._receiving or rate_min == 0:
            return False
        allowed = io_timeout_s + self._received / rate_min
        return self._body_wait_s + waited > allowed
