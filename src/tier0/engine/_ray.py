"""The scale-out runtime: the same functions, run on a Ray cluster (``pip install 'tier0[ray]'``).

The engine loop is unchanged (it leases, the runtime runs, the loop records);
only where the code runs differs:

- a function whose module has no ``init`` runs as Ray tasks (stateless: any
  worker of the cluster, its loaded module cached per Ray worker process);
- a function with ``init`` (a model to load) runs on Ray actors, one per
  concurrent invocation, each of which ran ``init`` once, as a worker process
  of the embedded runtime does.

Code travels with the call: a code package is put in Ray's object store once
per version and unpacked on each node that runs it; a function named by
import path must be installed on the cluster. Inside Ray, ``ctx.client``
opens the store the engine's own settings name (`tier0.json`): the data
directory itself on the engine's host, elsewhere a node-local directory with
the same PostgreSQL metadata and shared chunk store (a SQLite store is
reachable from a local Ray only).

Limits: concurrency and in-flight bounds as in the embedded runtime, and at
most ``workers_max`` actors, busy or idle (an idle actor holds its CPU in
Ray: the longest idle goes to make room for another function's); a run
past its timeout is cancelled with ``force=True`` (its Ray worker process
is killed) or, on an actor, the actor is killed and replaced; memory is
requested from Ray's scheduler (``memory=``), and Ray's memory monitor kills
a worker that exhausts its node, which fails the invocation like any crash.
Ray's own retries are off (``max_retries=0``, ``max_restarts=0``): the
engine retries, with backoff, and dead-letters, the same on every runtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tier0.engine._context import LogLines
from tier0.engine._functions import FunctionInfo, Functions, unpack
from tier0.engine._runner import Invocation, Outcome, describe
from tier0.engine._service import INIT_TIMEOUT_S, HoldingRuntime
from tier0.errors import InvalidArgument, NoSuchFunction

TICK_S: Final = 0.05
_log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidArgument("the Ray runtime needs Ray: pip install 'tier0[ray]'") from None
    return ray


# -- what runs inside Ray -----------------------------------------------------------------------

#: Functions one Ray worker process keeps loaded.
LOADED_MAX: Final = 32
#: Loaded functions of this Ray worker process, by (name, version).
_LOADED: dict[tuple[str, int], tuple[Any, Any, LogLines]] = {}


def _code_here(setup: dict[str, Any], package: bytes | None) -> dict[str, Any]:
    """``setup`` with ``code`` pointing at the package unpacked on this node."""
    if package is None:
        return {**setup, "code": None}
    digest = hashlib.sha256(package).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / "tier0-ray-code" / f"{setup['function']}-{digest}"
    return {**setup, "code": str(unpack(package, target))}


def _opened_setup(setup: dict[str, Any]) -> dict[str, Any]:
    """Where ``ctx.client`` opens the store on this node (see the module docstring)."""
    data_dir = Path(setup["data_dir"])
    if (data_dir / "tier0.json").exists():
        return setup
    local = Path(tempfile.gettempdir()) / f"tier0-ray-{setup['store_id']}"
    local.mkdir(parents=True, exist_ok=True)
    settings = setup["settings"]
    (local / "tier0.json").write_text(json.dumps(settings))
    return {**setup, "data_dir": str(local)}


def _load(setup: dict[str, Any], package: bytes | None) -> tuple[Any, Any, LogLines]:
    from tier0.engine._worker import load as load_function

    key = (setup["function"], setup["version"])
    if key not in _LOADED:
        if len(_LOADED) >= LOADED_MAX:  # the longest loaded goes (its client closed)
            oldest = next(iter(_LOADED))
            _LOADED.pop(oldest)[0].close()
        sink = LogLines()
        ctx, handler = load_function(_opened_setup(_code_here(setup, package)), sink)
        _LOADED[key] = (ctx, handler, sink)
    return _LOADED[key]


def _has_init(setup: dict[str, Any], package: bytes | None) -> bool:
    """Whether the function's module defines ``init`` (imported, not run)."""
    import importlib
    import sys

    code = _code_here(setup, package)["code"]
    if code is not None and code not in sys.path:
        sys.path.insert(0, code)
    module = importlib.import_module(setup["handler"].partition(":")[0])
    return callable(getattr(module, "init", None))


def _run_task(setup: dict[str, Any], package: bytes | None, message: tuple[Any, ...]) -> Any:
    """A stateless function's invocation, on any Ray worker."""
    from tier0.engine._worker import run

    try:
        ctx, handler, sink = _load(setup, package)
    except BaseException as failure:
        return f"init failed: {describe(failure)}", []
    _, invocation_id, attempt, key, event, timeout_s = message
    error = run(ctx, handler, sink, (invocation_id, attempt, key, timeout_s), event)
    return error, sink.take()


class _FunctionActor:
    """A function with ``init``: loaded (``init`` run) once, then invoked many times."""

    def __init__(self, setup: dict[str, Any], package: bytes | None) -> None:
        self._sink = LogLines()
        from tier0.engine._worker import load as load_function

        self._ctx, self._handler = load_function(
            _opened_setup(_code_here(setup, package)), self._sink
        )

    def ready(self) -> bool:
        """Answers once ``init`` has run (calls on an actor run in order)."""
        return True

    def run(self, message: tuple[Any, ...]) -> Any:
        from tier0.engine._worker import run

        _, invocation_id, attempt, key, event, timeout_s = message
        call = (invocation_id, attempt, key, timeout_s)
        error = run(self._ctx, self._handler, self._sink, call, event)
        return error, self._sink.take()


# -- the engine's side --------------------------------------------------------------------------


@dataclass
class _Run:
    invocation: Invocation
    info: FunctionInfo
    ref: Any
    deadline: float
    actor: Any = None
    #: A new actor's ``ready`` call: until it answers, the deadline allows for ``init``.
    starting: Any = None


@dataclass
class _Kind:
    """What the runtime knows of one function version in Ray."""

    package: Any  # an ObjectRef, or None
    stateful: bool
    idle_actors: list[Any] = field(default_factory=list)


class RayRuntime(HoldingRuntime):
    """Runs invocations on Ray; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        functions: Functions,
        *,
        on_finished: Callable[[list[Outcome]], None],
        address: str | None = None,
        workers_max: int | None = None,
        ray_options: dict[str, Any] | None = None,
    ) -> None:
        ray = _ray()
        self._ray = ray
        #: Whether this runtime started Ray (and so stops it).
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            options = {"include_dashboard": False, "log_to_driver": False, **(ray_options or {})}
            # No address: a new local instance of our own ("auto" joins a running one).
            ray.init(address=address or "local", **options)
        self._data_dir = Path(data_dir)
        self._functions = functions
        self._on_finished = on_finished
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers_max = workers_max or max(2, cpus)
        self._settings = json.loads((self._data_dir / "tier0.json").read_text())
        self._store_id = functions.store_id()
        self._task = ray.remote(max_retries=0, num_cpus=1)(_run_task)
        self._probe = ray.remote(max_retries=0, num_cpus=0)(_has_init)
        self._actor = ray.remote(max_restarts=0, max_task_retries=0, num_cpus=1)(_FunctionActor)
        super().__init__()
        self._kinds: dict[tuple[str, int], _Kind] = {}
        self._runs: list[_Run] = []
        self._finished: list[Outcome] = []
        self._closed = False
        self._wakeup = threading.Event()
        self.killed = 0
        self._thread = threading.Thread(target=self._supervise, name="tier0-ray", daemon=True)
        self._thread.start()

    def _running(self, function: str) -> int:
        return sum(1 for r in self._runs if r.info.name == function)

    def _wake(self) -> None:
        self._wakeup.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wakeup.set()
        self._thread.join()
        for run in self._runs:
            self._ray.cancel(run.ref, force=True) if run.actor is None else self._kill(run.actor)
        for kind in self._kinds.values():
            for actor in kind.idle_actors:
                self._kill(actor)
        if self._owns_ray:
            self._ray.shutdown()

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": len(self._runs),
                "waiting": sum(len(q) for q in self._waiting.values()),
                "actors": sum(1 for run in self._runs if run.actor is not None)
                + sum(len(kind.idle_actors) for kind in self._kinds.values()),
                "killed": self.killed,
            }

    def _supervise(self) -> None:
        ray = self._ray
        while True:
            with self._lock:
                if self._closed:
                    return
                self._assign()
                refs = [run.ref for run in self._runs]
                refs += [run.starting for run in self._runs if run.starting is not None]
            if refs:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=TICK_S, fetch_local=True)
            else:
                self._wakeup.wait(TICK_S)
                done = []
            self._wakeup.clear()
            with self._lock:
                ended = set(done)
                for run in self._runs:
                    if run.starting is not None and run.starting in ended:
                        run.starting = None  # init is over: the timeout counts from now
                        run.deadline = time.monotonic() + run.info.spec.timeout_s
                for run in [r for r in self._runs if r.ref in ended]:
                    self._runs.remove(run)
                    self._collect(run)
                self._enforce_timeouts()
                self._assign()
                finished, self._finished = self._finished, []
            if finished:
                try:
                    self._on_finished(finished)
                except Exception:
                    _log.exception("recording %d finished invocations failed", len(finished))

    def _collect(self, run: _Run) -> None:
        ray = self._ray
        try:
            error, logs = ray.get(run.ref)
        except ray.exceptions.RayError as failure:
            error, logs = _ray_failure(failure), []
            if run.actor is not None:
                self._kill(run.actor)
                run.actor = None
        if run.actor is not None:
            self._kinds[(run.info.name, run.info.version)].idle_actors.append(run.actor)
        self._finished.append(Outcome(run.invocation, error, logs))

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for run in [r for r in self._runs if now > r.deadline]:
            self._runs.remove(run)
            self.killed += 1
            if run.actor is None:
                self._ray.cancel(run.ref, force=True)
            else:
                self._kill(run.actor)
            said = f"timed out after {run.info.spec.timeout_s:g} s (its Ray worker was killed)"
            self._finished.append(Outcome(run.invocation, said))

    def _assign(self) -> None:
        for name, queue in self._waiting.items():
            while queue:
                invocation = queue[0]
                try:
                    info = self._functions.get(name, invocation.function_version)
                    mine = sum(1 for r in self._runs if r.info.name == name)
                    if mine >= info.spec.concurrency or len(self._runs) >= self.workers_max:
                        break
                    run = self._start(info, invocation)
                except NoSuchFunction as missing:
                    run, error = None, str(missing)
                except Exception as failure:  # Ray refused the call, the probe failed, ...
                    run, error = None, f"cannot run on Ray: {describe(failure)}"
                queue.popleft()
                if run is None:
                    self._finished.append(Outcome(invocation, error))
                else:
                    self._runs.append(run)

    def _start(self, info: FunctionInfo, invocation: Invocation) -> _Run:
        ray = self._ray
        key = (info.name, info.version)
        setup = self._setup(info)
        kind = self._kinds.get(key)
        if kind is None:
            package = self._functions.package(info.name, info.version)
            package_ref = None if package is None else ray.put(package)
            stateful = ray.get(self._probe.remote(setup, package_ref), timeout=INIT_TIMEOUT_S)
            kind = self._kinds[key] = _Kind(package_ref, bool(stateful))
        message = ("run", invocation.id, invocation.attempt, invocation.idempotency_key,
                   invocation.event, info.spec.timeout_s)  # fmt: skip
        memory = info.spec.memory_mb * 1024 * 1024
        if not kind.stateful:
            ref = self._task.options(memory=memory).remote(setup, kind.package, message)
            return _Run(invocation, info, ref, time.monotonic() + info.spec.timeout_s)
        if kind.idle_actors:
            actor, starting, allowance = kind.idle_actors.pop(), None, 0.0
        else:
            self._make_room()
            actor = self._actor.options(memory=memory).remote(setup, kind.package)
            starting, allowance = actor.ready.remote(), INIT_TIMEOUT_S
        ref = actor.run.remote(message)
        deadline = time.monotonic() + info.spec.timeout_s + allowance
        return _Run(invocation, info, ref, deadline, actor, starting)

    def _make_room(self) -> None:
        """Keep the actors, busy and idle, within ``workers_max``: an idle actor holds
        its CPU in Ray, and enough of them would leave none for a new one."""
        busy = sum(1 for run in self._runs if run.actor is not None)
        idle = [kind for kind in self._kinds.values() if kind.idle_actors]
        while idle and busy + sum(len(kind.idle_actors) for kind in idle) >= self.workers_max:
            largest = max(idle, key=lambda kind: len(kind.idle_actors))
            self._kill(largest.idle_actors.pop(0))  # its longest idle
            idle = [kind for kind in idle if kind.idle_actors]

    def _setup(self, info: FunctionInfo) -> dict[str, Any]:
        return {
            "data_dir": str(self._data_dir), "settings": self._settings,
            "store_id": self._store_id, "function": info.name, "version": info.version,
            "handler": info.spec.handler, "principal": info.spec.principal,
            "environment": dict(info.spec.environment),
            "secrets": self._functions.secrets_for(info.spec),
        }  # fmt: skip

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            _log.debug("killing a Ray actor failed", exc_info=True)


def _ray_failure(failure: Exception) -> str:
    """What a Ray error says about the invocation, in one line."""
    name = type(failure).__name__
    if "OutOfMemory" in name:
        return f"its Ray worker ran out of memory and was killed ({name})"
    if "WorkerCrashed" in name or "ActorDied" in name or "ActorError" in name:
        return f"its Ray worker died ({name})"
    if "TaskCancelled" in name:
        return "it was cancelled"
    first = str(failure).strip().splitlines()
    return f"{name}: {first[0] if first else ''}"
