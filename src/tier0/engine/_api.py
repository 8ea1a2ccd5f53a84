"""``t0.engine``: the DataEngine as one principal sees it.

Functions, triggers, secrets and invocations, each checked against the
caller's rights first (root has them all; others need grants):

===========================  ===============================  =================================
what                         action                           resource
===========================  ===============================  =================================
deploy, remove a function    ``tier0:DeployFunction``         ``/functions/<name>``
add, change, remove triggers ``tier0:ManageTriggers``         ``/triggers/<name>``
set, remove secrets          ``tier0:ManageSecrets``          ``/secrets/<name>``
deploy, remove pipelines     ``tier0:DeployPipeline``         ``/pipelines/<name>`` (and each
                                                              function's and trigger's own)
read functions, triggers,    ``tier0:ReadEngine``             ``/functions/<name>`` (or ``/``)
invocations and their logs
run the engine here          ``tier0:RunEngine``              ``/engine``
===========================  ===============================  =================================
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tier0.engine._check import EngineCheckReport, check_engine
from tier0.engine._dispatch import TriggerInfo, Triggers
from tier0.engine._functions import FunctionInfo, Functions, FunctionSpec, zip_directory
from tier0.engine._pipelines import Pipeline, Pipelines, StepStatus
from tier0.engine._service import EngineLoop, OnFinished, Runtime
from tier0.engine._streams import EVENTS, Message, StreamInfo, Streams
from tier0.engine._triggers import TriggerSpec
from tier0.errors import InvalidArgument, NoSuchInvocation, NoSuchPrincipal
from tier0.identity import Principals
from tier0.meta import load_json

if TYPE_CHECKING:
    from tier0.store import Kernel

INVOCATIONS_LIMIT_MAX: Final = 10_000
STATUSES: Final = ("queued", "running", "done", "dead")


@dataclass(frozen=True)
class InvocationRecord:
    """One invocation as ``tier0 fn invocations`` shows it."""

    id: int
    trigger: str
    function: str
    function_version: int | None
    seq: int
    status: str
    attempts: int
    created: dt.datetime
    started: dt.datetime | None
    ended: dt.datetime | None
    error: str | None
    idempotency_key: str
    #: What it handled (the event as the function received it).
    event: dict[str, Any]

    @property
    def duration_ms(self) -> float | None:
        if self.started is None or self.ended is None or self.ended < self.started:
            return None
        return (self.ended - self.started).total_seconds() * 1000


@dataclass(frozen=True)
class LogLine:
    invocation: int
    attempt: int
    time: dt.datetime
    level: str
    message: str


class DataEngine:
    """Functions, triggers, secrets and invocations (see the module docstring)."""

    def __init__(
        self,
        kernel: Kernel,
        principal_id: str,
        *,
        authorize: Callable[[str, str], object],
        principals: Principals,
        data_dir: Path,
    ) -> None:
        self._kernel = kernel
        self._principal_id = principal_id
        self._authorize = authorize
        self._principals = principals
        self._data_dir = data_dir
        self._functions = Functions(kernel.meta, kernel.committer)
        self._triggers = Triggers(kernel.meta, kernel.committer)
        self._pipelines = Pipelines(kernel.meta, kernel.committer)

    # -- functions ------------------------------------------------------------------------------

    def deploy(
        self, spec: FunctionSpec, *, package: str | os.PathLike[str] | bytes | None = None
    ) -> FunctionInfo:
        """Deploy ``spec`` as its function's next version.

        ``package`` is the function's code: a directory (zipped here) or a zip's
        bytes, stored in tier0 with the version; without it, the handler's module
        must be importable where the engine runs. The function's principal,
        ``fn.<name>``, is made at the first deploy and given ``spec.grants``.

        >>> t0.engine.deploy(FunctionSpec("thumbs", "thumbs:handler",
        ...     grants=(("s3:*", "/photos/*"),)), package="./thumbs")  # doctest: +SKIP
        """
        self._authorize("tier0:DeployFunction", f"/functions/{spec.name}")
        if isinstance(package, (str, os.PathLike)):
            package = zip_directory(os.fspath(package))
        info = self._functions.deploy(spec, package=package, deployed_by=self._principal_id)
        principal = self._function_principal(spec)
        authorizer = self._kernel.authorizer
        held = {(g.action, g.resource) for g in authorizer.grants(principal)}
        for action, resource in spec.grants:
            if (action, resource) not in held:
                authorizer.grant(principal, action, resource)
        return info

    def function(self, name: str, version: int | None = None) -> FunctionInfo:
        self._authorize("tier0:ReadEngine", f"/functions/{name}")
        return self._functions.get(name, version)

    def functions(self) -> list[FunctionInfo]:
        """The latest version of every function."""
        self._authorize("tier0:ReadEngine", "/")
        return self._functions.list()

    def remove_function(self, name: str) -> int:
        """Remove every version of ``name`` (refused while a trigger runs it)."""
        self._authorize("tier0:DeployFunction", f"/functions/{name}")
        return self._functions.remove(name)

    # -- triggers -------------------------------------------------------------------------------

    def add_trigger(self, spec: TriggerSpec) -> TriggerInfo:
        """Run ``spec.function`` for every matching event from now on."""
        self._authorize("tier0:ManageTriggers", f"/triggers/{spec.name}")
        return self._triggers.create(spec, created_by=self._principal_id)

    def update_trigger(self, spec: TriggerSpec) -> TriggerInfo:
        """Change trigger ``spec.name`` to ``spec``, keeping its place in the event log."""
        self._authorize("tier0:ManageTriggers", f"/triggers/{spec.name}")
        return self._triggers.update(spec)

    def trigger(self, name: str) -> TriggerInfo:
        self._authorize("tier0:ReadEngine", f"/triggers/{name}")
        return self._triggers.get(name)

    def triggers(self) -> list[TriggerInfo]:
        self._authorize("tier0:ReadEngine", "/")
        return self._triggers.list()

    def pause_trigger(self, name: str) -> None:
        """Stop making invocations for ``name`` (events meanwhile are skipped)."""
        self._authorize("tier0:ManageTriggers", f"/triggers/{name}")
        self._triggers.pause(name)

    def resume_trigger(self, name: str) -> None:
        self._authorize("tier0:ManageTriggers", f"/triggers/{name}")
        self._triggers.resume(name)

    def repin_trigger(self, name: str, version: int | None = None) -> TriggerInfo:
        """Make ``name`` run ``version`` of its function (the latest if None)."""
        self._authorize("tier0:ManageTriggers", f"/triggers/{name}")
        return self._triggers.repin(name, version)

    def remove_trigger(self, name: str) -> None:
        self._authorize("tier0:ManageTriggers", f"/triggers/{name}")
        self._triggers.remove(name)

    # -- pipelines ------------------------------------------------------------------------------

    def deploy_pipeline(
        self, definition: Pipeline | Mapping[str, Any] | str | os.PathLike[str]
    ) -> Pipeline:
        """Deploy (or replace) a pipeline: a `Pipeline`, its definition as a dict, or the
        path of its YAML file (see `tier0.engine._pipelines`). Each function and trigger
        is checked against the caller's rights like any other."""
        if isinstance(definition, Pipeline):
            pipeline = definition
        elif isinstance(definition, Mapping):
            pipeline = Pipeline.parse(definition)
        else:
            pipeline = Pipeline.load(definition)
        self._authorize("tier0:DeployPipeline", f"/pipelines/{pipeline.name}")
        self._pipelines.deploy(
            pipeline, deploy_function=self.deploy, add_trigger=self.add_trigger,
            update_trigger=self.update_trigger, deployed_by=self._principal_id,
        )  # fmt: skip
        return pipeline

    def pipelines(self) -> list[str]:
        self._authorize("tier0:ReadEngine", "/")
        return self._pipelines.names()

    def pipeline_status(self, name: str) -> list[StepStatus]:
        """Each trigger of pipeline ``name`` with its invocations by status, last error."""
        self._authorize("tier0:ReadEngine", f"/pipelines/{name}")
        return self._pipelines.status(name)

    def remove_pipeline(self, name: str) -> None:
        """Tear pipeline ``name`` down: its triggers, its functions, its record."""
        self._authorize("tier0:DeployPipeline", f"/pipelines/{name}")
        self._pipelines.remove(name)

    # -- secrets --------------------------------------------------------------------------------

    def set_secret(self, name: str, value: str) -> None:
        """Store secret ``name`` for functions that declare it (its workers see a new
        value when they next start)."""
        self._authorize("tier0:ManageSecrets", f"/secrets/{name}")
        self._functions.set_secret(name, value, set_by=self._principal_id)

    def secrets(self) -> list[str]:
        """The names of the stored secrets (values are never read back)."""
        self._authorize("tier0:ManageSecrets", "/secrets/")
        return self._functions.secret_names()

    def remove_secret(self, name: str) -> None:
        self._authorize("tier0:ManageSecrets", f"/secrets/{name}")
        self._functions.remove_secret(name)

    # -- invocations ----------------------------------------------------------------------------

    def invocations(
        self,
        *,
        function: str | None = None,
        trigger: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        """The newest ``limit`` invocations, newest first, optionally of one function,
        trigger or status (``queued``, ``running``, ``done``, ``dead``)."""
        self._authorize("tier0:ReadEngine", f"/functions/{function}" if function else "/")
        if status is not None and status not in STATUSES:
            raise InvalidArgument(f"status is one of {', '.join(STATUSES)}, not {status!r}")
        if not 1 <= limit <= INVOCATIONS_LIMIT_MAX:
            raise InvalidArgument(f"limit is 1..{INVOCATIONS_LIMIT_MAX}")
        where, args = _where(function=function, trigger=trigger, status=status)
        with self._kernel.meta.reader() as db:
            rows = db.query_all(
                "SELECT id, trigger_name, function_name, function_version, seq, status, attempts,"
                " created_us, started_us, ended_us, error, idempotency_key, event FROM t0_invocations"
                f"{where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            )
        return [
            InvocationRecord(
                int(r[0]), r[1], r[2], r[3], int(r[4]), r[5], int(r[6]), _time(r[7]),
                _time(r[8]) if r[8] is not None else None,
                _time(r[9]) if r[9] is not None else None, r[10], r[11],
                load_json(r[12]) if r[12] else {},
            )
            for r in rows
        ]  # fmt: skip

    def logs(
        self, *, function: str | None = None, invocation: int | None = None, limit: int = 100
    ) -> list[LogLine]:
        """The lines logged by one invocation, or by the newest ``limit`` invocations
        of ``function``, oldest line first."""
        if (function is None) == (invocation is None):
            raise InvalidArgument("name a function or an invocation")
        if not 1 <= limit <= INVOCATIONS_LIMIT_MAX:
            raise InvalidArgument(f"limit is 1..{INVOCATIONS_LIMIT_MAX}")
        with self._kernel.meta.reader() as db:
            if invocation is not None:
                rows = db.query_all(
                    "SELECT id, function_name, logs FROM t0_invocations WHERE id = ?", (invocation,)
                )
                if not rows:
                    raise NoSuchInvocation(f"there is no invocation {invocation}")
            else:
                rows = db.query_all(
                    "SELECT id, function_name, logs FROM t0_invocations WHERE function_name = ?"
                    " AND logs IS NOT NULL ORDER BY id DESC LIMIT ?",
                    (function, limit),
                )
        for name in {row[1] for row in rows} or {function}:
            self._authorize("tier0:ReadEngine", f"/functions/{name}")
        lines = [
            LogLine(int(row[0]), int(line[1]), _time(line[0]), line[2], line[3])
            for row in rows
            for line in (load_json(row[2]) if row[2] else [])
        ]
        return sorted(lines, key=lambda line: (line.time, line.invocation))

    def check(self) -> EngineCheckReport:
        """The engine's fsck: invocations, triggers and streams against each other."""
        self._authorize("tier0:Check", "/")
        return check_engine(self._kernel.meta)

    # -- running --------------------------------------------------------------------------------

    def start(
        self,
        *,
        workers: int | None = None,
        runtime: str = "process",
        ray_address: str | None = None,
        idle_s: float = 1.0,
    ) -> EngineLoop:
        """Run the engine here until the result is closed (or leaves its ``with``
        block): functions on ``workers`` worker processes (``runtime="process"``) or
        on the Ray cluster at ``ray_address`` (``runtime="ray"``; a local Ray when
        None). ``tier0 serve`` does this for you."""
        self._authorize("tier0:RunEngine", "/engine")
        kernel = self._kernel
        functions = Functions(kernel.meta, kernel.committer)
        make: Callable[[OnFinished], Runtime]
        if runtime == "process":
            from tier0.engine._pool import ProcessRuntime

            def make(on_finished: OnFinished) -> Runtime:
                return ProcessRuntime(
                    self._data_dir, functions, on_finished=on_finished, workers_max=workers
                )
        elif runtime == "ray":
            from tier0.engine._ray import RayRuntime

            def make(on_finished: OnFinished) -> Runtime:
                return RayRuntime(
                    self._data_dir, functions, on_finished=on_finished, address=ray_address,
                    workers_max=workers,
                )  # fmt: skip
        else:
            raise InvalidArgument(f"the runtime is 'process' or 'ray', not {runtime!r}")
        return EngineLoop(kernel.meta, kernel.committer, make, idle_s=idle_s).start()

    def _function_principal(self, spec: FunctionSpec) -> Any:
        try:
            return self._principals.get(spec.principal)
        except NoSuchPrincipal:
            principal, _ = self._principals.create(
                spec.principal, "service", created_by=self._principals.get(self._principal_id)
            )
            return principal


def _where(**conditions: Any) -> tuple[str, tuple[Any, ...]]:
    columns = {"function": "function_name", "trigger": "trigger_name", "status": "status"}
    parts = [(f"{columns[k]} = ?", v) for k, v in conditions.items() if v is not None]
    if not parts:
        return "", ()
    return " WHERE " + " AND ".join(p for p, _ in parts), tuple(v for _, v in parts)


def _time(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)


class StreamsAPI:
    """``t0.streams``: named, retained logs (see `tier0.engine._streams`), as one principal.

    Rights, on ``/streams/<name>``: ``tier0:CreateStream``, ``tier0:DeleteStream``,
    ``tier0:AppendStream`` (produce), ``tier0:ReadStream`` (consume, commit, seek);
    ``tier0:ListStreams`` on ``/streams``. The built-in ``events`` stream needs what
    ``t0.events`` needs (``tier0:ReadEvents`` on ``/events``).
    """

    def __init__(
        self, kernel: Kernel, principal_id: str, *, authorize: Callable[[str, str], object]
    ) -> None:
        self._authorize = authorize
        self._principal_id = principal_id
        self._streams = Streams(kernel.meta, kernel.committer)

    def create(
        self, name: str, *, retention_s: float | None = 7 * 86_400,
        retention_bytes: int | None = None, exist_ok: bool = False,
    ) -> StreamInfo:  # fmt: skip
        """Make stream ``name``: messages kept ``retention_s`` (None: for good), at most
        ``retention_bytes`` in all (None: no bound)."""
        self._authorize("tier0:CreateStream", f"/streams/{name}")
        return self._streams.create(
            name, retention_s=retention_s, retention_bytes=retention_bytes,
            created_by=self._principal_id, exist_ok=exist_ok,
        )  # fmt: skip

    def all(self) -> list[StreamInfo]:
        self._authorize("tier0:ListStreams", "/streams")
        return self._streams.all()

    def info(self, name: str) -> StreamInfo:
        self._read(name)
        return self._streams.get(name)

    def remove(self, name: str) -> None:
        self._authorize("tier0:DeleteStream", f"/streams/{name}")
        self._streams.remove(name)

    def append(
        self, name: str, value: bytes | str, *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:  # fmt: skip
        """Append one message (text is stored as UTF-8); its offset."""
        return self.append_many(name, [(value, key, headers)])[0]

    def append_many(
        self, name: str, messages: list[tuple[bytes | str, str | None, dict[str, str] | None]]
    ) -> list[int]:
        """Append ``(value, key, headers)`` messages in one transaction; their offsets."""
        self._authorize("tier0:AppendStream", f"/streams/{name}")
        encoded = [
            (value.encode() if isinstance(value, str) else value, key, headers)
            for value, key, headers in messages
        ]
        return self._streams.append_many(name, encoded, producer=self._principal_id)

    def read(
        self, name: str, *, group: str | None = None, after: int | None = None,
        since: dt.datetime | None = None, limit: int = 100, wait_s: float = 0.0,
    ) -> list[Message]:  # fmt: skip
        """Up to ``limit`` messages: from ``group``'s committed offset (then `commit`),
        after offset ``after``, from time ``since``, or from the oldest retained; waiting
        up to ``wait_s`` for some."""
        self._read(name)
        if wait_s > 0 and since is None:
            return self._streams.wait(name, timeout_s=wait_s, after=after, group=group, limit=limit)
        return self._streams.read(name, group=group, after=after, since=since, limit=limit)

    def commit(self, name: str, group: str, offset: int) -> None:
        """``group`` handled everything before ``offset`` (the last message's offset + 1)."""
        self._read(name)
        self._streams.commit(name, group, offset)

    def seek(
        self, name: str, group: str, *, offset: int | None = None,
        since: dt.datetime | None = None,
    ) -> int:  # fmt: skip
        """Replay: ``group`` reads next from ``offset``, or from time ``since``."""
        self._read(name)
        return self._streams.seek(name, group, offset=offset, since=since)

    def groups(self, name: str) -> dict[str, int]:
        """Consumer groups of ``name`` and their committed offsets."""
        self._read(name)
        return self._streams.groups(name)

    def _read(self, name: str) -> None:
        if name == EVENTS:
            self._authorize("tier0:ReadEvents", "/events")
        else:
            self._authorize("tier0:ReadStream", f"/streams/{name}")
