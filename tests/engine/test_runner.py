"""Leasing and running invocations (``tier0.engine._runner``): at-least-once delivery,
retries with backoff, the dead letter, leases that expire when a runner dies, and
effects made exactly once through the idempotency key. On both metadata backends,
with a second opened store as a second runner process; time is an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.engine import deploy
from tier0.engine import Dispatcher, Invocation, Runner, Triggers, TriggerSpec
from tier0.errors import InvalidArgument


class Clock:
    """Wall time, moved on by hand (invocations are queued at the real time)."""

    def __init__(self) -> None:
        self.now = time.time() + 1

    def __call__(self) -> float:
        return self.now


def _setup(t0: tier0.Tier0, count: int) -> None:
    kernel = t0._kernel
    t0.create_bucket("docs")
    deploy(t0, "copy")
    Triggers(kernel.meta, kernel.committer).create(
        TriggerSpec("on-put", "copy", bucket="docs", prefix="in/"), created_by="root"
    )
    for i in range(count):
        t0.put("docs", f"in/{i}", f"body {i}".encode())
    Dispatcher(kernel.meta, kernel.committer).dispatch()


def _runner(
    t0: tier0.Tier0, function: Callable[[Invocation], Any], clock: Clock, name: str = "r1",
    **options: Any,
) -> Runner:  # fmt: skip
    return Runner(t0._kernel.meta, t0._kernel.committer, name=name,
                  resolve=lambda _: function, clock=clock, **options)  # fmt: skip


def _statuses(t0: tier0.Tier0) -> list[tuple[str, int, str | None]]:
    with t0._kernel.meta.reader() as db:
        rows = db.query_all("SELECT status, attempts, error FROM t0_invocations ORDER BY id")
    return [(row[0], int(row[1]), row[2]) for row in rows]


def test_a_function_runs_once_per_event_and_its_output_is_visible(t0: tier0.Tier0) -> None:
    _setup(t0, 3)
    clock = Clock()

    def copy(invocation: Invocation) -> None:
        event = invocation.event
        data = t0.get(event["bucket"], event["key"]).read()
        t0.put("docs", event["key"].replace("in/", "out/"), data.upper())

    report = _runner(t0, copy, clock).run_once()
    assert (report.leased, report.done) == (3, 3)
    assert t0.get("docs", "out/1").read() == b"BODY 1"
    assert _statuses(t0) == [("done", 1, None)] * 3
    assert _runner(t0, copy, clock).run_once().leased == 0  # nothing runs twice


def test_failures_retry_with_backoff_then_go_to_the_dead_letter(t0: tier0.Tier0) -> None:
    _setup(t0, 1)
    clock = Clock()
    calls: list[int] = []

    def failing(invocation: Invocation) -> None:
        calls.append(invocation.attempt)
        raise ValueError(f"bad input on attempt {invocation.attempt}")

    runner = _runner(t0, failing, clock, attempts_max=3, backoff_s=10)
    assert runner.run_once().retried == 1
    assert runner.run_once().leased == 0  # backing off: not before 10 s
    clock.now += 9.9
    assert runner.run_once().leased == 0
    clock.now += 0.2
    assert runner.run_once().retried == 1  # second attempt; next wait 20 s
    clock.now += 19
    assert runner.run_once().leased == 0
    clock.now += 2
    assert runner.run_once().dead == 1
    assert calls == [1, 2, 3]
    [(status, attempts, error)] = _statuses(t0)
    assert (status, attempts) == ("dead", 3)
    assert error is not None and "ValueError: bad input on attempt 3" in error
    clock.now += 3600
    assert runner.run_once().leased == 0  # dead stays dead


def test_a_dead_runners_lease_expires_and_another_takes_over(
    t0: tier0.Tier0, tmp_path: Path, meta_url: str
) -> None:
    _setup(t0, 2)
    clock = Clock()
    done: list[str] = []
    crashed = _runner(t0, lambda inv: None, clock, name="crashed", lease_s=30)
    taken = crashed.lease(10)  # and then it dies: never finishes
    assert len(taken) == 2
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        survivor = _runner(other, lambda inv: done.append(inv.idempotency_key), clock,
                           name="survivor", lease_s=30)  # fmt: skip
        assert survivor.run_once().leased == 0  # leases still held
        clock.now += 31
        report = survivor.run_once()
        assert (report.leased, report.done) == (2, 2)
    assert sorted(done) == sorted(inv.idempotency_key for inv in taken)
    assert _statuses(t0) == [("done", 2, None)] * 2
    # The dead runner comes back: its finish no longer counts.
    assert crashed.finish(taken[0]) == "lost"
    assert _statuses(t0) == [("done", 2, None)] * 2


def test_a_lease_lost_in_the_last_attempt_goes_to_the_dead_letter(t0: tier0.Tier0) -> None:
    _setup(t0, 1)
    clock = Clock()
    runner = _runner(t0, lambda inv: None, clock, attempts_max=1, lease_s=5)
    assert len(runner.lease()) == 1  # and never finished
    clock.now += 6
    assert runner.run_once().leased == 0
    [(status, attempts, error)] = _statuses(t0)
    assert (status, attempts) == ("dead", 1) and error and "lease expired" in error


def test_the_idempotency_key_makes_effects_exactly_once(t0: tier0.Tier0) -> None:
    # At-least-once: a function that succeeded but whose runner died before
    # finishing runs again. Writing under the idempotency key makes the effect once.
    _setup(t0, 1)
    clock = Clock()

    def effect(invocation: Invocation) -> None:
        t0.put("docs", f"effects/{invocation.idempotency_key}", b"done")

    first = _runner(t0, effect, clock, name="a", lease_s=5)
    [invocation] = first.lease()
    effect(invocation)  # ran, then the runner died before finish()
    clock.now += 6
    assert _runner(t0, effect, clock, name="b").run_once().done == 1
    keys = [o.key for o in t0.list("docs", prefix="effects/").objects]
    assert keys == [f"effects/{invocation.idempotency_key}"]


def test_runner_limits_are_checked(t0: tier0.Tier0) -> None:
    with pytest.raises(InvalidArgument):
        _runner(t0, lambda inv: None, Clock(), lease_s=0)
    with pytest.raises(InvalidArgument):
        _runner(t0, lambda inv: None, Clock()).lease(0)


def test_concurrent_runners_never_lease_one_invocation_twice(
    t0: tier0.Tier0, tmp_path: Path, meta_url: str
) -> None:
    import threading

    _setup(t0, 40)
    clock = Clock()
    taken: dict[str, list[int]] = {"a": [], "b": []}
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        runners = {
            "a": _runner(t0, lambda inv: None, clock, name="a"),
            "b": _runner(other, lambda inv: None, clock, name="b"),
        }

        def drain(name: str) -> None:
            while batch := runners[name].lease(3):
                taken[name] += [invocation.id for invocation in batch]

        threads = [threading.Thread(target=drain, args=(name,)) for name in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    every = taken["a"] + taken["b"]
    assert len(every) == len(set(every)) == 40


def test_triggers_and_invocations_are_queryable_with_sql(t0: tier0.Tier0) -> None:
    _setup(t0, 2)
    clock = Clock()

    def sometimes(invocation: Invocation) -> None:
        if invocation.event["key"] == "in/1":
            raise KeyError("no such thing")

    _runner(t0, sometimes, clock, attempts_max=1).run_once()
    assert t0.sql("SELECT name, state, spec->>'function' AS f FROM triggers").rows == [
        ("on-put", "active", "copy")
    ]
    rows = t0.sql(
        "SELECT trigger, function, status, attempts, error LIKE '%no such thing%' AS said,"
        " ended >= started AS ordered, duration_ms >= 0 AS timed FROM invocations ORDER BY seq"
    ).rows
    assert rows == [
        ("on-put", "copy", "done", 1, None, True, True),
        ("on-put", "copy", "dead", 1, True, True, True),
    ]
    t0.create_user("alice")
    with pytest.raises(tier0.errors.SQLNotAllowed, match="only root"):
        t0.as_principal("alice").sql("SELECT count(*) FROM invocations")
