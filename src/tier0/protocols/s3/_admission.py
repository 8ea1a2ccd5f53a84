"""Overload control for the S3 gateway: a bounded amount of work, and ``503 SlowDown`` beyond it.

Without a bound, every connection a server accepts adds a request, every
request adds a kernel call waiting for a thread, and memory grows with the
offered load until the process is killed. `Admission` bounds both:

- requests in flight (from the request head to the last byte of the answer):
  one over ``requests_max`` is answered ``503 SlowDown`` at once, before it is
  authenticated or its body read;
- kernel calls waiting for one of the gateway's threads: one over
  ``calls_queued_max`` fails with `SlowDown`, so its request is answered 503
  (unless its answer has begun: a GET's next block waits its turn, since a
  503 can no longer be sent).

Each admitted request holds a bounded amount of memory (an upload ~4 MiB of
queued blocks, a signed aws-chunked chunk at most 16 MiB), so the two bounds
bound the gateway's memory. ``503 SlowDown`` is the answer S3 gives when it
is asked for more than it can take, and the one every S3 SDK backs off and
retries on; the gateway adds ``Retry-After``.

`Admission.statistics` says how close the gateway came to its limits.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar

from tier0.errors import Tier0Error

__all__ = ["Admission", "AdmissionStatistics", "BoundedExecutor", "SlowDown"]

T = TypeVar("T")

#: Set in a request's task once its answer has begun (`Admission.answering`).
_ANSWERING: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar(
    "tier0_s3_answering", default=False
)


class SlowDown(Tier0Error):
    """The gateway is at one of its limits; retry after ``retry_after_s`` seconds."""

    s3_code: ClassVar[str] = "SlowDown"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclasses.dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """A snapshot of `Admission`: what runs now, the most seen at once, what was refused."""

    requests_in_flight: int
    requests_in_flight_peak: int
    requests_refused: int
    calls_running: int
    calls_queued: int
    calls_queued_peak: int
    calls_refused: int


class BoundedExecutor(concurrent.futures.Executor):
    """A thread pool of ``threads_max`` threads that queues at most ``calls_queued_max``
    calls: ``submit`` raises `SlowDown` rather than queue one more.

    Every call the gateway runs on a thread goes through it (kernel calls,
    streamed writes), so the count is exact: a call is queued while all
    threads are taken, and a call waiting in the queue holds its request's
    memory for as long as it waits.

    A request whose answer has begun (`Admission.answering`) can no longer be
    answered 503, so its calls (the blocks of a GET) are queued whatever the
    count, never refused: there is at most one per request in flight, so the
    queue stays under ``calls_queued_max + requests_max``.
    """

    def __init__(self, *, threads_max: int, calls_queued_max: int, retry_after_s: int) -> None:
        assert threads_max >= 1 and calls_queued_max >= 0 and retry_after_s >= 0
        self.threads_max = threads_max
        self.calls_queued_max = calls_queued_max
        self.retry_after_s = retry_after_s
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads_max, thread_name_prefix="tier0-s3"
        )
        self._lock = threading.Lock()
        self._calls = 0  # submitted and not yet finished: running, then queued
        self._queued_peak = 0
        self._refused = 0

    def submit(
        self, function: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._calls >= self.threads_max + self.calls_queued_max and not _ANSWERING.get():
                self._refused += 1
                refused = True
            else:
                self._calls += 1
                self._queued_peak = max(self._queued_peak, self._calls - self.threads_max)
                refused = False
        if refused:
            raise SlowDown(
                "Please reduce your request rate: "
                f"{self.calls_queued_max} calls wait for one of {self.threads_max} threads.",
                retry_after_s=self.retry_after_s,
            )
        try:
            future = self._pool.submit(function, *args, **kwargs)
        except BaseException:
            self._finished()
            raise
        # Called at once if the call finished already, otherwise on the worker thread.
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: object = None) -> None:
        with self._lock:
            self._calls -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def counts(self) -> tuple[int, int, int, int]:
        """(running, queued, queued peak, refused)."""
        with self._lock:
            running = min(self._calls, self.threads_max)
            return running, self._calls - running, self._queued_peak, self._refused


class Admission:
    """The gateway's bounds: requests in flight (`admit`, `release`) and calls
    waiting for a thread (`executor`); beyond either, `SlowDown`.

    Requests are admitted and released on the event loop; calls are counted
    from the loop and from the worker threads, so both counts sit under locks.

    >>> admission = Admission(requests_max=2, threads_max=4, calls_queued_max=8, retry_after_s=1)
    >>> admission.admit(); admission.admit()
    >>> admission.admit()
    Traceback (most recent call last):
    tier0.protocols.s3._admission.SlowDown: Please reduce your request rate: 2 requests are in flight.
    """

    def __init__(
        self, *, requests_max: int, threads_max: int, calls_queued_max: int, retry_after_s: int
    ) -> None:
        assert requests_max >= 1, requests_max
        self.requests_max = requests_max
        self.retry_after_s = retry_after_s
        #: Runs the gateway's kernel calls and streamed writes.
        self.executor = BoundedExecutor(
            threads_max=threads_max, calls_queued_max=calls_queued_max, retry_after_s=retry_after_s
        )
        self._lock = threading.Lock()
        self._requests = 0
        self._requests_peak = 0
        self._requests_refused = 0

    def admit(self) -> None:
        """Count one more request in flight, or raise `SlowDown` at ``requests_max``.

        Every admitted request is released (`release`) once, after its answer.
        """
        with self._lock:
            refused = self._requests >= self.requests_max
            if refused:
                self._requests_refused += 1
            else:
                self._requests += 1
                self._requests_peak = max(self._requests_peak, self._requests)
        # A new request in this task (a pipelined one inherits the task
        # context of the one before it) has not begun its answer.
        _ANSWERING.set(False)
        if refused:
            raise SlowDown(
                f"Please reduce your request rate: {self.requests_max} requests are in flight.",
                retry_after_s=self.retry_after_s,
            )

    def release(self) -> None:
        with self._lock:
            assert self._requests > 0, "release() without admit()"
            self._requests -= 1

    @staticmethod
    def answering() -> None:
        """Say, from a request's task, that its answer has begun: its calls from
        now on are never refused (a 503 can no longer be sent)."""
        _ANSWERING.set(True)

    def close(self) -> None:
        """Join the threads, after the calls already submitted have run."""
        self.executor.shutdown(wait=True)

    def statistics(self) -> AdmissionStatistics:
        running, queued, queued_peak, calls_refused = self.executor.counts()
        with self._lock:
            return AdmissionStatistics(
                requests_in_flight=self._requests,
                requests_in_flight_peak=self._requests_peak,
                requests_refused=self._requests_refused,
                calls_running=running,
                calls_queued=queued,
                calls_queued_peak=queued_peak,
                calls_refused=calls_refused,
            )

    def check(self) -> None:
        """Assert the counts are consistent: none negative, none past its limit."""
        stats = self.statistics()
        assert 0 <= stats.requests_in_flight <= self.requests_max, stats
        assert stats.requests_in_flight_peak <= self.requests_max, stats
        assert 0 <= stats.calls_running <= self.executor.threads_max, stats
        queued_max = self.executor.calls_queued_max + self.requests_max
        assert 0 <= stats.calls_queued <= queued_max, stats
        assert stats.calls_queued_peak <= queued_max, stats
