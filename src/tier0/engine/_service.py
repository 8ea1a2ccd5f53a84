"""The engine's loop: dispatch new events, lease what a runtime can take, record what ended.

`EngineLoop` is the DataEngine of one process, on a thread of its own: it
wakes on any commit (the metadata backend's commit signal: inotify on
SQLite, LISTEN/NOTIFY on PostgreSQL, so nothing is polled), turns new events
into invocations (`Dispatcher`), leases as many ready invocations of each
function as the runtime has room for (`Runtime.free`: so a slow function
fills its own slots and is leased no more, while the others carry on), and
hands them over (`Runtime.submit`). The runtime reports how they ended,
in batches, and the loop records each batch in one transaction
(`Runner.finish_many`), which wakes it again to lease more. It sleeps at most
``idle_s`` without a commit, for retries whose backoff ends and leases that
expire.

Runtimes: worker processes (`tier0.engine._pool.ProcessRuntime`, the
default) and Ray. Several loops, in several processes or on several hosts
sharing a PostgreSQL database, share the work: the dispatcher makes each
invocation once, and a lease is held by one runner at a time.
"""

from __future__ import annotations

import abc
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from tier0.engine._dispatch import IDLE_CURSOR_S, Dispatcher
from tier0.engine._functions import FunctionInfo, Functions
from tier0.engine._runner import BACKOFF_S, LOST, Invocation, Outcome, Runner
from tier0.errors import NoSuchFunction
from tier0.meta import Committer, MetaBackend

IDLE_S: Final = 1.0
#: How often leases held by dead processes of this host are looked for.
RECLAIM_INTERVAL_S: Final = 5.0
LATEST_TTL_S: Final = 1.0
_log = logging.getLogger(__name__)


class Runtime(Protocol):
    """Where invocations run; it reports each batch that ended to the loop."""

    def free(self, info: FunctionInfo) -> int:
        """How many more invocations of ``info``'s function it takes now."""
        ...

    def lease_s(self, info: FunctionInfo) -> float:
        """How long a lease of ``info``'s invocations must last (waiting, then running)."""
        ...

    def submit(self, invocations: list[Invocation]) -> None: ...

    def close(self) -> None: ...


OnFinished = Callable[[list[Outcome]], None]
#: Invocations a runtime holds per unit of a function's concurrency: one running, the
#: rest leased and waiting in the runtime, so that a worker never waits on the loop and
#: one lease (a commit) serves several runs.
HELD_PER_SLOT: Final = 4
#: How long a worker may take to import its code and run ``init`` before its first run.
INIT_TIMEOUT_S: Final = 300.0


class HoldingRuntime(abc.ABC):
    """What the runtimes share: the invocations each function holds, running and
    waiting, bounded (`free`), and leases long enough for both (`lease_s`). A subclass
    counts its runs (`_running`), wakes its supervisor (`_wake`) and sets
    ``workers_max``."""

    workers_max: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Leased invocations waiting for a worker, per function name.
        self._waiting: dict[str, collections.deque[Invocation]] = collections.defaultdict(
            collections.deque
        )

    def free(self, info: FunctionInfo) -> int:
        """How many more invocations of ``info``'s function to lease now."""
        concurrency = min(info.spec.concurrency, self.workers_max)
        with self._lock:
            held = self._running(info.name) + len(self._waiting[info.name])
        return max(0, HELD_PER_SLOT * concurrency - held)

    def lease_s(self, info: FunctionInfo) -> float:
        """How long to lease ``info``'s invocations: long enough to wait here and run."""
        return HELD_PER_SLOT * info.spec.timeout_s + INIT_TIMEOUT_S

    def submit(self, invocations: list[Invocation]) -> None:
        """Run ``invocations`` (leased by the caller) as workers come free."""
        with self._lock:
            for invocation in invocations:
                self._waiting[invocation.function].append(invocation)
        self._wake()

    @abc.abstractmethod
    def _running(self, function: str) -> int:
        """Invocations of ``function`` running now (called holding the lock)."""

    @abc.abstractmethod
    def _wake(self) -> None:
        """Make the supervisor look at the waiting invocations now."""


@dataclass(frozen=True)
class EngineStatistics:
    rounds: int
    #: Events and stream messages read, and invocations the dispatch made of them.
    events_read: int
    invocations_made: int
    #: Invocations this engine leased, and whose end it recorded.
    leased: int
    recorded: int
    #: Rounds that failed (logged; the loop carried on).
    failures: int
    #: Leases of dead processes of this host taken back.
    reclaimed: int


class EngineLoop:
    """Dispatches and runs invocations on a thread until `close`."""

    def __init__(
        self,
        meta: MetaBackend,
        committer: Committer,
        runtime: Callable[[OnFinished], Runtime],
        *,
        idle_s: float = IDLE_S,
        runner_name: str | None = None,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._meta = meta
        self.functions = Functions(meta, committer)
        self.dispatcher = Dispatcher(meta, committer, clock=clock)
        self.runner = Runner(meta, committer, name=runner_name, backoff_s=backoff_s, clock=clock)
        self.runtime = runtime(self._record)
        self._idle_s = idle_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tier0-engine", daemon=True)
        self._reclaimed_at = 0.0
        self._latest_infos: dict[str, tuple[FunctionInfo, float]] = {}
        #: Loop rounds that failed (logged; the loop carries on after ``idle_s``).
        self.failures = 0
        self._counts = {"rounds": 0, "events_read": 0, "invocations_made": 0, "leased": 0,
                        "recorded": 0, "reclaimed": 0}  # fmt: skip

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(failures=self.failures, **self._counts)

    def start(self) -> EngineLoop:
        self._meta.start_watching()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._meta.signal.bump()  # wake the wait
        self._thread.join()
        self.runtime.close()

    def __enter__(self) -> EngineLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        signal = self._meta.signal
        while not self._stop.is_set():
            generation = signal.generation()  # before looking: a commit meanwhile wakes us
            try:
                busy = self._round()
            except Exception:  # a lost connection, say: logged, tried again
                self.failures += 1
                _log.exception("engine round failed")
                busy = False
            if not busy and self.dispatcher.quiet:
                # No trigger is active: commits fire nothing, and waking for
                # each took CPU from the writers (a look a second will do).
                self._stop.wait(min(self._idle_s, IDLE_CURSOR_S))
            elif not busy:
                signal.wait_changed(generation, self._idle_s)

    def _round(self) -> bool:
        """One dispatch and one lease per ready function; whether there was work."""
        dispatched = self.dispatcher.dispatch()
        counts = self._counts
        counts["rounds"] += 1
        counts["events_read"] += dispatched.events_read
        counts["invocations_made"] += dispatched.invocations_made
        now = time.monotonic()
        if now - self._reclaimed_at >= RECLAIM_INTERVAL_S:
            self._reclaimed_at = now
            counts["reclaimed"] += self.runner.reclaim_orphans()
        leased = 0
        for name in self.runner.ready_functions():
            try:
                info = self._latest(name)
            except NoSuchFunction as missing:  # removed since: its invocations fail
                batch = self.runner.lease(100, function=name)
                self._record([Outcome(invocation, str(missing)) for invocation in batch])
                leased += len(batch)
                continue
            free = self.runtime.free(info)
            if free:
                batch = self.runner.lease(
                    min(free, 1000), function=name, lease_s=self.runtime.lease_s(info),
                    attempts_max=info.spec.attempts,
                )  # fmt: skip
                if batch:
                    self.runtime.submit(batch)
                    leased += len(batch)
        counts["leased"] += leased
        return bool(dispatched.events_read or leased)

    def _latest(self, name: str) -> FunctionInfo:
        """The latest version of ``name``, looked up at most every LATEST_TTL_S (its
        limits decide how much to lease; a new deploy's apply that much later)."""
        now = time.monotonic()
        cached = self._latest_infos.get(name)
        if cached is not None and cached[1] > now:
            return cached[0]
        info = self.functions.get(name)
        self._latest_infos[name] = (info, now + LATEST_TTL_S)
        return info

    def _record(self, outcomes: list[Outcome]) -> None:
        statuses = self.runner.finish_many(outcomes, attempts_max=self._attempts)
        self._counts["recorded"] += sum(1 for status in statuses if status != LOST)

    def _attempts(self, invocation: Invocation) -> int:
        try:
            return self.functions.get(
                invocation.function, invocation.function_version
            ).spec.attempts
        except NoSuchFunction:
            return 1  # the function is gone: no point trying again
