"""The embedded runtime: a pool of worker processes running leased invocations.

The engine loop leases invocations (`Runner.lease`) and hands them to the
pool (`submit`); the pool runs each on a worker process bound to its
function version (`tier0.engine._worker`), and reports how each ended
(`on_finished`, in batches: the loop records them in one transaction).

Limits, all enforced here, in the engine's process:

- a function runs at most ``concurrency`` invocations at once, and holds at
  most ``HELD_PER_SLOT - 1`` times as many more leased and waiting here
  (`free`; one lease, a commit, serves several runs): a slow function fills
  its own slots and is leased no more, while the others carry on;
- the pool has at most ``workers_max`` processes; a worker idle for another
  function is stopped to make room;
- an invocation past its ``timeout_s`` has its worker killed (SIGKILL: a
  hung function may ignore anything gentler); a worker whose resident memory
  passes ``memory_mb`` (read from ``/proc`` every tick) is killed too; a
  worker that dies (a segfault, ``os._exit``, the kernel's OOM killer) is
  noticed by its socket closing. Each case fails the invocation with what
  happened, to be retried per its function's policy, and the next
  invocation gets a fresh worker.

One supervisor thread waits on every worker's socket at once
(`multiprocessing.connection.wait`), so a result is seen as it arrives; it
hands the worker its next invocation before it reports (the report is a
database commit, the next run need not wait for it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Final

from tier0.engine._functions import FunctionInfo, Functions, unpack
from tier0.engine._runner import Invocation, Outcome
from tier0.engine._service import INIT_TIMEOUT_S, HoldingRuntime
from tier0.errors import InvalidArgument, NoSuchFunction

WORKERS_MAX: Final = 256
#: How often timeouts and memory are checked (and the longest a result waits to be seen
#: when nothing else wakes the supervisor).
TICK_S: Final = 0.05
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")
_log = logging.getLogger(__name__)


def default_workers() -> int:
    """Two per core (functions wait on I/O too), at least two."""
    return max(2, 2 * (os.cpu_count() or 1))


@dataclass
class _Worker:
    key: tuple[str, int]
    info: FunctionInfo
    process: subprocess.Popen[bytes]
    connection: Connection
    ready: bool = False
    #: The invocation it runs (or will, once ready), and when that must end.
    running: Invocation | None = None
    deadline: float = 0.0
    started: float = field(default_factory=time.monotonic)


class ProcessRuntime(HoldingRuntime):
    """Worker processes for the engine loop; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        functions: Functions,
        *,
        on_finished: Callable[[list[Outcome]], None],
        workers_max: int | None = None,
        cache_directory: Path | None = None,
    ) -> None:
        workers_max = workers_max or default_workers()
        if not 1 <= workers_max <= WORKERS_MAX:
            raise InvalidArgument(f"workers_max is 1..{WORKERS_MAX}")
        self._data_dir = Path(data_dir)
        self._functions = functions
        self._on_finished = on_finished
        self.workers_max = workers_max
        self._code_root = cache_directory or self._data_dir / "cache" / "functions"
        super().__init__()
        self._workers: list[_Worker] = []
        self._finished: list[Outcome] = []
        self._closed = False
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        #: Counters for `statistics`.
        self.started = self.killed = self.crashed = 0
        self._thread = threading.Thread(target=self._supervise, name="tier0-pool", daemon=True)
        self._thread.start()

    # -- what the engine loop calls --------------------------------------------------------------

    def _running(self, function: str) -> int:
        return sum(1 for w in self._workers if w.running and w.key[0] == function)

    def close(self) -> None:
        """Stop every worker. What they ran is not reported: its leases expire, or the
        next engine on this host takes them back (`Runner.reclaim_orphans`)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        self._thread.join()
        for worker in self._workers:
            self._stop(worker, kill=True)
        self._workers.clear()
        self._wake_read.close()
        self._wake_write.close()

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return {
                "workers": len(self._workers),
                "busy": sum(1 for w in self._workers if w.running),
                "waiting": sum(len(q) for q in self._waiting.values()),
                "started": self.started,
                "killed": self.killed,
                "crashed": self.crashed,
            }

    # -- the supervisor --------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: it is awake already
            self._wake_write.send(b"x")

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._assign()
                connections = [w.connection for w in self._workers]
            ready = wait([*connections, self._wake_read], timeout=TICK_S)
            if self._wake_read in ready:
                try:
                    while self._wake_read.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            with self._lock:
                for worker in list(self._workers):
                    if worker.connection in ready:
                        self._receive(worker)
                self._enforce_limits()
                self._assign()
                finished, self._finished = self._finished, []
            if finished:
                try:
                    self._on_finished(finished)
                except Exception:  # the leases expire and the runs are retried
                    _log.exception("recording %d finished invocations failed", len(finished))

    def _receive(self, worker: _Worker) -> None:
        """Read what ``worker`` said; a closed socket means it died."""
        try:
            while worker.connection.poll():
                self._handle(worker, worker.connection.recv())
        except (EOFError, OSError):
            self._lost(worker, self._death(worker))

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            if worker.running is not None:
                worker.deadline = time.monotonic() + worker.info.spec.timeout_s
        elif kind == "failed":
            self._lost(worker, f"init failed: {message[1]}", logs=message[2])
        elif kind == "done":
            _, invocation_id, error, logs = message
            invocation = worker.running
            if invocation is not None and invocation.id == invocation_id:
                self._finished.append(Outcome(invocation, error, logs))
            worker.running = None

    def _lost(self, worker: _Worker, error: str, logs: list[Any] | None = None) -> None:
        """``worker`` is gone (or must go): fail what it ran, and forget it."""
        if worker.running is not None:
            self._finished.append(Outcome(worker.running, error, logs or ()))
            worker.running = None
        self._stop(worker, kill=True)
        self._workers.remove(worker)

    def _death(self, worker: _Worker) -> str:
        try:
            code = worker.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "its worker process stopped answering"
        self.crashed += 1
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return f"its worker process was killed by {name}"
        return f"its worker process exited with status {code}"

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.running is None:
                continue
            spec = worker.info.spec
            if now > worker.deadline:
                self.killed += 1
                if worker.ready:
                    said = f"timed out after {spec.timeout_s:g} s (its worker was killed)"
                else:
                    said = f"its worker did not start (import and init) within {INIT_TIMEOUT_S:g} s"
                self._lost(worker, said)
                continue
            rss_mb = _resident_mb(worker.process.pid)
            if rss_mb > spec.memory_mb:
                self.killed += 1
                self._lost(
                    worker,
                    f"exceeded its memory limit of {spec.memory_mb} MiB ({rss_mb:.0f} MiB"
                    " resident; its worker was killed)",
                )

    def _assign(self) -> None:
        """Give waiting invocations to idle workers of their version, starting workers
        (and stopping idle ones of other functions) within the limits."""
        for name, queue in self._waiting.items():
            while queue:
                invocation = queue[0]
                try:
                    info = self._functions.get(name, invocation.function_version)
                except NoSuchFunction as missing:
                    queue.popleft()
                    self._finished.append(Outcome(invocation, str(missing)))
                    continue
                try:
                    worker = self._idle_worker(info) or self._new_worker(info)
                except Exception as failure:  # e.g. its code package could not be unpacked
                    _log.exception("starting a worker for %s %d failed", info.name, info.version)
                    queue.popleft()
                    self._finished.append(Outcome(invocation, f"cannot start a worker: {failure}"))
                    continue
                if worker is None:
                    break  # at its concurrency, or the pool is full of busy workers
                queue.popleft()
                self._send(worker, invocation)

    def _idle_worker(self, info: FunctionInfo) -> _Worker | None:
        key = (info.name, info.version)
        for worker in self._workers:
            if worker.running is None and worker.key == key:
                return worker
        return None

    def _new_worker(self, info: FunctionInfo) -> _Worker | None:
        mine = sum(1 for w in self._workers if w.key[0] == info.name and w.running is not None)
        if mine >= info.spec.concurrency:
            return None
        if len(self._workers) >= self.workers_max:
            spare = [w for w in self._workers if w.running is None]
            if not spare:
                return None
            oldest = min(spare, key=lambda w: w.started)  # another function's, or an old version
            self._stop(oldest, kill=False)
            self._workers.remove(oldest)
        worker = self._spawn(info)
        self._workers.append(worker)
        return worker

    def _spawn(self, info: FunctionInfo) -> _Worker:
        ours, theirs = socket.socketpair()
        code = self._code_directory(info)
        process = subprocess.Popen(
            [sys.executable, "-m", "tier0.engine._worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        theirs.close()
        connection = Connection(ours.detach())
        connection.send(
            {
                "data_dir": str(self._data_dir),
                "function": info.name,
                "version": info.version,
                "handler": info.spec.handler,
                "principal": info.spec.principal,
                "environment": dict(info.spec.environment),
                "secrets": self._functions.secrets_for(info.spec),
                "code": None if code is None else str(code),
            }
        )
        self.started += 1
        return _Worker((info.name, info.version), info, process, connection)

    def _send(self, worker: _Worker, invocation: Invocation) -> None:
        spec = worker.info.spec
        worker.running = invocation
        worker.deadline = time.monotonic() + (
            spec.timeout_s if worker.ready else INIT_TIMEOUT_S + spec.timeout_s
        )
        try:
            worker.connection.send(
                ("run", invocation.id, invocation.attempt, invocation.idempotency_key,
                 invocation.event, spec.timeout_s)
            )  # fmt: skip
        except OSError:
            self._lost(worker, self._death(worker))

    def _stop(self, worker: _Worker, *, kill: bool) -> None:
        try:
            if kill:
                worker.process.kill()
            else:
                worker.connection.send(("stop",))
        except OSError:
            pass
        worker.connection.close()
        try:
            worker.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()

    def _code_directory(self, info: FunctionInfo) -> Path | None:
        """Where ``info``'s code package is unpacked (once per version; None without one)."""
        if info.package_sha256 is None:
            return None
        target = self._code_root / info.name / f"{info.version}-{info.package_sha256[:16]}"
        if target.is_dir():
            return target
        package = self._functions.package(info.name, info.version)
        if package is None:
            raise InvalidArgument(f"function {info.name} version {info.version} has no package")
        return unpack(package, target)


def _resident_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_BYTES / (1024 * 1024)
    except (OSError, IndexError, ValueError):
        return 0.0
