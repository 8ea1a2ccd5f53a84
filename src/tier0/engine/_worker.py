"""A function worker: one process running one version of one function, one invocation at a time.

Started by the pool (`tier0.engine._pool`) as ``python -m tier0.engine._worker FD``
with one end of a socket pair as FD. It receives its setup (the data
directory, the function, its code's directory, its secrets), imports the
handler, runs the module's ``init(ctx)`` if it has one, says ``ready``, and
then serves ``run`` messages until its socket closes. Each ``run`` answers
``done`` with the error (None on success) and the lines logged.

A worker is bound to one function version, as AWS Lambda's execution
environments are: the code's modules own ``sys.modules``, ``init`` runs once,
and a limit (memory, timeout) acts on the one function it concerns. It dies
with the engine (``PR_SET_PDEATHSIG``): a crashed server leaves no worker
running functions that nobody will record.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import importlib
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any, Final

from tier0.engine._context import Context, LogLines, StreamLines
from tier0.engine._runner import describe

_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>


def main() -> int:
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the engine died before prctl took effect
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the engine's to handle
    connection = Connection(int(sys.argv[1]))
    setup: dict[str, Any] = connection.recv()
    sink = LogLines()
    try:
        ctx, handler = load(setup, sink)
    except BaseException as failure:  # init failed: say why, and end
        connection.send(("failed", describe(failure), sink.take()))
        return 1
    connection.send(("ready", os.getpid(), sink.take()))
    try:
        while True:
            try:
                message = connection.recv()
            except EOFError:  # the engine closed our socket: stop
                return 0
            if message[0] == "stop":
                return 0
            _, invocation_id, attempt, key, event, timeout_s = message
            error = run(ctx, handler, sink, (invocation_id, attempt, key, timeout_s), event)
            connection.send(("done", invocation_id, error, sink.take()))
    finally:
        ctx.close()


def load(setup: dict[str, Any], sink: LogLines) -> tuple[Context, Any]:
    """Import the function ``setup`` names and run its module's ``init``."""
    os.environ.update(setup["environment"])
    if setup["code"] is not None:
        sys.path.insert(0, setup["code"])
    data_dir, principal = setup["data_dir"], setup["principal"]

    def open_client() -> Any:
        import tier0

        return tier0.open(data_dir, principal=principal)

    ctx = Context(
        function=setup["function"], version=setup["version"], secrets=setup["secrets"],
        sink=sink, open_client=open_client,
    )  # fmt: skip
    module_name, _, attribute = setup["handler"].partition(":")
    with _captured(sink):
        module = importlib.import_module(module_name)
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise AttributeError(f"module {module_name} has no function {attribute}")
        init = getattr(module, "init", None)
        if callable(init):
            init(ctx)
    return ctx, handler


def run(
    ctx: Context, handler: Any, sink: LogLines, call: tuple[int, int, str, float], event: Any
) -> str | None:
    """Run one invocation; its error (None on success)."""
    invocation_id, attempt, key, timeout_s = call
    if isinstance(event, dict) and "value_b64" in event:  # a stream message: its value as bytes
        value = base64.b64decode(event["value_b64"])
        event = {k: v for k, v in event.items() if k != "value_b64"}
        event["value"] = value
    ctx.begin(invocation_id, attempt, key, timeout_s)
    try:
        with _captured(sink):
            handler(ctx, event)
    except MemoryError:
        return "MemoryError: the function ran out of memory"
    except BaseException as failure:  # SystemExit and KeyboardInterrupt too: recorded
        return describe(failure)
    finally:
        ctx.end()
    return None


@contextlib.contextmanager
def _captured(sink: LogLines) -> Any:
    """What the function prints goes to its log."""
    out, err = StreamLines(sink, "INFO"), StreamLines(sink, "ERROR")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        out.flush()
        err.flush()


if __name__ == "__main__":
    sys.exit(main())
