"""Several server processes on one address: a pre-forking supervisor.

One Python process serves requests on about one core (the GIL); the kernel
runs in several processes at once already (SQLite in WAL mode and PostgreSQL
both take writers from many processes, and the chunk directory is shared), so
``tier0 serve --workers N`` forks N processes that each open the store and
serve. Each worker has its own listening socket bound with ``SO_REUSEPORT``
to the same port, so the operating system spreads connections over them
evenly (one shared socket lets whichever process wakes first take most
connections).

The supervisor forks before it opens anything: no thread, no database
connection, no file the store holds is ever shared across a fork. It
forwards SIGTERM and SIGINT to the workers, waits for their graceful
shutdown, and replaces a worker that died (a crash, an OOM kill) unless
workers keep dying: after ``RESTARTS_MAX`` restarts within
``RESTART_WINDOW_S`` it stops them all and fails, rather than spin.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Final

from tier0.errors import InvalidArgument
from tier0.store import set_bulk_cpus

__all__ = [
    "RESTARTS_MAX",
    "RESTART_WINDOW_S",
    "WORKERS_MAX",
    "bind_reuseport",
    "pin_to_cpu",
    "run_workers",
    "worker_cpus",
]

WORKERS_MAX: Final = 256
RESTARTS_MAX: Final = 5
RESTART_WINDOW_S: Final = 60.0
#: How long a worker gets to finish its requests after SIGTERM before SIGKILL.
STOP_TIMEOUT_S: Final = 60.0
_POLL_S: Final = 0.1
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>


def bind_reuseport(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` listening sockets on one (host, port), each bound with SO_REUSEPORT.

    Port 0 is resolved by the first bind; the others bind the port it got.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise OSError(f"cannot resolve host {host!r}: {error.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            address = sock.getsockname()  # port 0 becomes the real port for the next ones
            sock.listen(backlog)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sockets


def worker_cpus(count: int) -> list[int] | None:
    """The CPU for each of ``count`` workers, round-robin over the CPUs this
    process may use; None where the system cannot pin threads."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[index % len(cpus)] for index in range(count)]


def pin_to_cpu(cpu: int) -> None:
    """Keep the calling thread, and the threads it starts from now on, on ``cpu``.

    What a worker gains: its threads pass the GIL among themselves for every
    request (the event loop, the gateway's threads, the commit leader), and on
    one CPU a hand-over is a local switch; spread over several it is a wake-up
    of another CPU (an interrupt between virtual CPUs here), and the caches
    follow the work around. 4 KiB S3 mix, two workers on two CPUs: 2,800-3,240
    -> 3,670-3,870 ops/s pinned; but one client's 64 MiB GET 1.48 -> 1.28 GB/s,
    stuck on a CPU it shares with the client's network stack. Threads started
    earlier (the DataEngine's) and the processes they start keep every CPU,
    and so do the store's bulk-data threads (`tier0.store.spread`). (nginx's
    ``worker_cpu_affinity``.)
    """
    set_bulk_cpus(os.sched_getaffinity(0))  # where the store's bulk-data threads go
    os.sched_setaffinity(0, {cpu})  # 0: the calling thread, on Linux


def run_workers(sockets: list[socket.socket], work: Callable[[socket.socket], None]) -> int:
    """Fork one worker per socket running ``work(sock)``; supervise until told to stop.

    Returns the exit status for the supervisor: 0 after a requested stop, 1 when
    workers kept dying. Must be called with no other thread running: a fork
    copies only the calling thread, and a lock another thread held would stay
    held forever in the child.
    """
    if not 1 <= len(sockets) <= WORKERS_MAX:
        raise InvalidArgument(f"workers must be 1..{WORKERS_MAX}, got {len(sockets)}")
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        raise RuntimeError(f"cannot fork workers while threads run: {', '.join(others)}")
    children: dict[int, socket.socket] = {}
    stopping = False
    restarts: list[float] = []

    def stop(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sock in sockets:
            children[_fork(sock, work)] = sock
        status = 0
        while children and not stopping:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                time.sleep(_POLL_S)
                continue
            if pid not in children:
                continue
            sock = children.pop(pid)
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(restarts) > RESTARTS_MAX:
                print(
                    f"tier0: worker {pid} {_ended(code)}; workers died {len(restarts)} times"
                    f" within {RESTART_WINDOW_S:.0f} s, stopping (see the errors above)",
                    file=sys.stderr,
                )
                status = 1
                stop(signal.SIGTERM, None)
                break
            print(f"tier0: worker {pid} {_ended(code)}; starting another", file=sys.stderr)
            children[_fork(sock, work)] = sock
        _reap(children)
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fork(sock: socket.socket, work: Callable[[socket.socket], None]) -> int:
    # Unflushed output would be written by the parent and again by the child.
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # The child: default signal handling (the server installs its own), then
    # serve until stopped. os._exit, never a return into the parent's stack.
    code = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _stop_with_parent(parent)
        work(sock)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies (even by SIGKILL).

    Without it a killed supervisor leaves its workers serving, unsupervised,
    on a port nobody will restart them on.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _ended(wait_status: int) -> str:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _reap(children: dict[int, socket.socket]) -> None:
    """Wait for workers still running after a stop; kill those past STOP_TIMEOUT_S."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while children:
        for pid in list(children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.pop(pid)
        if children and time.monotonic() > deadline:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(_POLL_S)
