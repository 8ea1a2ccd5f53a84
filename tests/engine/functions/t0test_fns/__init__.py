"""Functions the engine's tests deploy as a code package (``tests/engine/functions``)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

#: How many times ``init`` ran in this worker.
inits = 0


def init(ctx: Any) -> None:
    global inits
    inits += 1
    ctx.log.info("init ran %d time(s)", inits)


def upper(ctx: Any, event: dict[str, Any]) -> None:
    """``in/NAME`` becomes ``out/NAME``, upper-cased, written as the function's principal."""
    client = ctx.client
    body = client.get(event["bucket"], event["key"]).read()
    name = event["key"].split("/", 1)[1]
    client.put(
        event["bucket"], f"out/{name}", body.upper(),
        metadata={
            "attempt": str(ctx.attempt), "inits": str(inits), "key": ctx.idempotency_key,
            "secret": ctx.secrets.get("TOKEN", ""), "principal": client.principal.name,
            "pid": str(os.getpid()), "remaining": str(ctx.remaining_s() is not None),
        },
    )  # fmt: skip
    ctx.log.info("upper-cased %s", event["key"])
    print("a printed line")


def behave(ctx: Any, event: dict[str, Any]) -> None:
    """Does what the element's body says: ``ok``, ``raise``, ``hang``, ``exit``, ``kill``,
    ``memory``, ``sleep SECONDS``, or ``fail-until N`` (fails before attempt N)."""
    order = ctx.client.get(event["bucket"], event["key"]).read().decode().split()
    if order[0] == "raise":
        raise ValueError(f"told to raise on attempt {ctx.attempt}")
    if order[0] == "hang":
        time.sleep(3600)
    if order[0] == "exit":
        os._exit(3)
    if order[0] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if order[0] == "memory":
        hog = b"x" * (1024 * 1024 * 1024)  # touched: resident
        time.sleep(5)
        del hog
    if order[0] == "sleep":
        time.sleep(float(order[1]))
    if order[0] == "fail-until" and ctx.attempt < int(order[1]):
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    ctx.client.put(event["bucket"], "done/" + event["key"], ctx.idempotency_key.encode())


def once(ctx: Any, event: dict[str, Any]) -> None:
    """Writes ``effects/<idempotency key>`` exactly once however often it runs (slowly,
    so that a killed engine leaves some mid-run)."""
    from tier0.errors import PreconditionFailed

    time.sleep(0.3)
    try:
        ctx.client.put(event["bucket"], f"effects/{ctx.idempotency_key}", event["key"].encode(),
                       if_none_match="*")  # fmt: skip
    except PreconditionFailed:
        ctx.log.info("already done by an earlier attempt")


def record(ctx: Any, event: dict[str, Any]) -> None:
    """A stream message becomes ``seen/<stream>/<offset>`` holding its value."""
    ctx.client.put("docs", f"seen/{event['stream']}/{event['offset']}", event["value"],
                   metadata={"key": event["key"] or ""})  # fmt: skip


def span(ctx: Any, event: dict[str, Any]) -> None:
    """Sleep a little, logging when it began and ended (ns): for ordering tests."""
    began = time.time_ns()
    time.sleep(0.2)
    ctx.log.info("%d %d", began, time.time_ns())
