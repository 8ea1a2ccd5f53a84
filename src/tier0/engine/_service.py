"""The engine's loop: dispatch new events, run what is ready, sleep until a commit.

`EngineLoop` is the embedded runtime's heart, on a thread of its own: it wakes
on any commit (the metadata backend's commit signal: inotify on SQLite,
LISTEN/NOTIFY on PostgreSQL, so nothing is polled), turns the new events
into invocations (`Dispatcher`), runs the ready ones (`Runner`), and sleeps
again, at most ``idle_s`` (for retries whose backoff ends, and leases that
expire, without a commit to wake it).
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from tier0.engine._dispatch import Dispatcher
from tier0.engine._runner import Runner
from tier0.meta import MetaBackend

IDLE_S: Final = 1.0
_log = logging.getLogger(__name__)


class EngineLoop:
    """Dispatches and runs invocations on a thread until `close`."""

    def __init__(
        self, meta: MetaBackend, dispatcher: Dispatcher, runner: Runner, *, idle_s: float = IDLE_S
    ) -> None:
        self._meta = meta
        self._dispatcher = dispatcher
        self._runner = runner
        self._idle_s = idle_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tier0-engine", daemon=True)
        #: Loop rounds that failed (logged; the loop carries on after ``idle_s``).
        self.failures = 0

    def start(self) -> EngineLoop:
        self._meta.start_watching()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._meta.signal.bump()  # wake the wait
        self._thread.join()

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
            if not busy:
                signal.wait_changed(generation, self._idle_s)

    def _round(self) -> bool:
        """One dispatch and one run; whether there was anything to do."""
        dispatched = self._dispatcher.dispatch()
        ran = self._runner.run_once()
        return bool(dispatched.events_read or ran.leased)
