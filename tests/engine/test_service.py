"""The engine's loop (``tier0.engine._service``): a PUT wakes it, the function runs,
and its output is visible, with no polling of the store; on both backends."""

from __future__ import annotations

import threading
import time

import tier0
from tier0.engine import Dispatcher, EngineLoop, Invocation, Runner, Triggers, TriggerSpec


def test_a_put_runs_the_function_and_its_output_appears(t0: tier0.Tier0) -> None:
    kernel = t0._kernel
    t0.create_bucket("docs")
    Triggers(kernel.meta, kernel.committer).create(
        TriggerSpec("shout", "upper", bucket="docs", prefix="in/"), created_by="root"
    )
    ran = threading.Event()
    failures: list[int] = []

    def upper(invocation: Invocation) -> None:
        if invocation.event.key == "in/bad":
            failures.append(invocation.attempt)
            raise RuntimeError("cannot shout this")
        data = t0.get("docs", invocation.event.key).read()
        t0.put("docs", invocation.event.key.replace("in/", "out/"), data.upper())
        ran.set()

    runner = Runner(kernel.meta, kernel.committer, name="loop", resolve=lambda _: upper,
                    attempts_max=2, backoff_s=0.05)  # fmt: skip
    loop = EngineLoop(kernel.meta, Dispatcher(kernel.meta, kernel.committer), runner,
                      idle_s=0.05).start()  # fmt: skip
    try:
        t0.put("docs", "in/bad", b"x")
        t0.put("docs", "in/hello", b"hello")
        assert ran.wait(10), "the function did not run"
        deadline = time.monotonic() + 10
        while len(failures) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loop.close()
    assert t0.get("docs", "out/hello").read() == b"HELLO"
    assert failures == [1, 2]  # retried once after its backoff, then dead
    assert loop.failures == 0
    with kernel.meta.reader() as db:
        statuses = sorted(r[0] for r in db.query_all("SELECT status FROM t0_invocations"))
    assert statuses == ["dead", "done"]
