"""Functions on real worker processes (``tier0.engine._pool`` under ``EngineLoop``), deployed
as a code package stored in tier0: PUT, the function runs as its own principal, its output
appears; failures, timeouts, memory and dying workers are recorded and retried while the
rest carries on; per-key order; a slow function delays only itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.engine import wait_for
from tier0.engine import EngineLoop, FunctionSpec, TriggerSpec
from tier0.engine._service import HELD_PER_SLOT
from tier0.errors import AccessDenied, InvalidArgument, NoSuchFunction

PACKAGE = Path(__file__).parent / "functions"


def _deploy(t0: tier0.Tier0, name: str, handler: str, **limits: Any) -> None:
    limits.setdefault("grants", (("s3:*", "/docs/*"), ("s3:*", "/docs")))
    t0.engine.deploy(FunctionSpec(name, f"t0test_fns:{handler}", **limits), package=PACKAGE)


def _wait(condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    return wait_for(condition, timeout_s)


def _settled(t0: tier0.Tier0, count: int) -> Callable[[], bool]:
    def check() -> bool:
        found = t0.engine.invocations(limit=1000)
        return len(found) >= count and all(i.status in ("done", "dead") for i in found)

    return check


@pytest.fixture
def engine(t0: tier0.Tier0) -> Any:
    t0.create_bucket("docs")
    loop = t0.engine.start(workers=4, idle_s=0.2)
    yield loop
    loop.close()


def test_a_put_runs_the_deployed_function_as_its_own_principal(
    t0: tier0.Tier0, engine: EngineLoop
) -> None:
    t0.engine.set_secret("TOKEN", "s3cr3t")
    _deploy(t0, "upper", "upper", secrets=("TOKEN",), concurrency=1)
    t0.engine.add_trigger(TriggerSpec("shout", "upper", bucket="docs", prefix="in/"))
    for i in range(3):
        t0.put("docs", f"in/{i}", f"hello {i}".encode())
    _wait(_settled(t0, 3))
    assert [t0.get("docs", f"out/{i}").read() for i in range(3)] == [
        b"HELLO 0",
        b"HELLO 1",
        b"HELLO 2",
    ]
    head = t0.head("docs", "out/2")
    meta = head.metadata
    assert meta["principal"] == "fn.upper" and head.owner != t0.principal.id
    assert meta["secret"] == "s3cr3t" and meta["attempt"] == "1"
    assert meta["inits"] == "1"  # init ran once in the worker that ran all three
    assert meta["remaining"] == "True"
    [record] = [i for i in t0.engine.invocations() if i.idempotency_key == meta["key"]]
    assert (record.status, record.attempts, record.error) == ("done", 1, None)
    lines = [line.message for line in t0.engine.logs(invocation=record.id)]
    assert lines == ["upper-cased in/2", "a printed line"]
    assert len(t0.engine.logs(function="upper")) == 6
    # The invocations view says the same, with the lines.
    rows = t0.sql(
        "SELECT function, function_version, status, json_array_length(logs) FROM invocations"
    ).rows
    assert rows == [("upper", 1, "done", 2)] * 3


def test_without_a_grant_the_functions_writes_are_denied(
    t0: tier0.Tier0, engine: EngineLoop
) -> None:
    _deploy(t0, "upper", "upper", grants=(("s3:GetObject", "/docs/*"),), attempts=1)
    t0.engine.add_trigger(TriggerSpec("shout", "upper", bucket="docs", prefix="in/"))
    t0.put("docs", "in/x", b"x")
    _wait(_settled(t0, 1))
    [record] = t0.engine.invocations()
    assert record.status == "dead" and record.error is not None
    assert "AccessDenied" in record.error
    assert not t0.list("docs", prefix="out/").objects
    # The worker's audit lines are flushed within AUDIT_FLUSH_S.
    denied = (
        "SELECT count(*) FROM audit WHERE principal = (SELECT id FROM principals"
        " WHERE name = 'fn.upper') AND action = 's3:PutObject' AND allowed = 0"
    )
    _wait(lambda: t0.sql(denied).rows == [(1,)], timeout_s=5)


def test_failures_are_retried_then_dead_lettered_while_others_carry_on(
    t0: tier0.Tier0, engine: EngineLoop
) -> None:
    # Every order runs under the hang's timeout: room for a get and a put in a
    # fresh worker on a loaded machine, beside the memory hogs.
    _deploy(t0, "behave", "behave", attempts=2, timeout_s=5, memory_mb=400)
    t0.engine.add_trigger(TriggerSpec("behave", "behave", bucket="docs", prefix="in/"))
    orders = {
        "in/raise": b"raise", "in/hang": b"hang", "in/exit": b"exit", "in/kill": b"kill",
        "in/memory": b"memory", "in/flaky": b"fail-until 2", "in/ok": b"ok",
    }  # fmt: skip
    for key, order in orders.items():
        t0.put("docs", key, order)
    _wait(_settled(t0, len(orders)), timeout_s=60)
    ended = {}
    for record in t0.engine.invocations():
        ended[record.event["key"]] = (record.status, record.attempts, record.error or "")
        assert record.idempotency_key == f"{record.event['seq']}:behave"
    assert ended["in/ok"][:2] == ("done", 1)
    assert ended["in/flaky"][:2] == ("done", 2)
    assert ended["in/raise"][:2] == ("dead", 2)
    assert "ValueError: told to raise on attempt 2" in ended["in/raise"][2]
    assert ended["in/hang"][:2] == ("dead", 2) and "timed out after 5 s" in ended["in/hang"][2]
    assert ended["in/exit"][:2] == ("dead", 2)
    assert "exited with status 3" in ended["in/exit"][2]
    assert ended["in/kill"][:2] == ("dead", 2) and "killed by SIGKILL" in ended["in/kill"][2]
    assert ended["in/memory"][:2] == ("dead", 2)
    assert "memory limit of 400 MiB" in ended["in/memory"][2]
    assert t0.get("docs", "done/in/ok").read().decode().endswith(":behave")
    assert engine.runtime.statistics()["killed"] >= 4  # two hangs, two hogs


def test_events_of_one_key_run_in_order_under_concurrency(
    t0: tier0.Tier0, engine: EngineLoop
) -> None:
    _deploy(t0, "span", "span", concurrency=4)
    # Two workers up first (two events at once start two), so that the keys can run side
    # by side from their first event, whatever the machine's load makes of start times.
    t0.engine.add_trigger(TriggerSpec("warm", "span", bucket="docs", prefix="warm/"))
    t0.put("docs", "warm/1", b"x")
    t0.put("docs", "warm/2", b"x")
    _wait(_settled(t0, 2))
    t0.engine.remove_trigger("warm")
    t0.engine.add_trigger(
        TriggerSpec("in-order", "span", bucket="docs", prefix="in/", ordered=True)
    )
    for _ in range(4):
        for key in ("in/a", "in/b"):
            t0.put("docs", key, b"x")
    _wait(_settled(t0, 10))
    # Each run's own times, as the function logged them: when it began and ended.
    spans = {line.invocation: tuple(map(int, line.message.split()))
             for line in t0.engine.logs(function="span")}  # fmt: skip
    by_key: dict[str, list[tuple[int, int]]] = {}
    for record in sorted(t0.engine.invocations(trigger="in-order"), key=lambda r: r.seq):
        assert record.status == "done"
        by_key.setdefault(record.event["key"], []).append(spans[record.id])
    assert sorted(by_key) == ["in/a", "in/b"]
    for runs in by_key.values():
        assert len(runs) == 4
        for before, after in itertools.pairwise(runs):
            assert after[0] >= before[1]  # began only once the one before it ended
    # The two keys did run side by side.
    a, b = by_key["in/a"], by_key["in/b"]
    assert any(x[0] < y[1] and y[0] < x[1] for x in a for y in b)


def test_a_slow_function_delays_only_itself(t0: tier0.Tier0, engine: EngineLoop) -> None:
    _deploy(t0, "slow", "behave", concurrency=1)
    _deploy(t0, "fast", "behave", concurrency=2)
    t0.engine.add_trigger(TriggerSpec("slow", "slow", bucket="docs", prefix="slow/"))
    t0.engine.add_trigger(TriggerSpec("fast", "fast", bucket="docs", prefix="fast/"))
    for i in range(6):
        t0.put("docs", f"slow/{i}", b"sleep 3")
    for i in range(6):
        t0.put("docs", f"fast/{i}", b"ok")
    _wait(lambda: len(t0.engine.invocations(function="fast", status="done")) == 6)
    slow = t0.engine.invocations(function="slow")
    # The slow one still has most of its work ahead; at most HELD_PER_SLOT were leased.
    assert sum(1 for i in slow if i.status == "done") <= 3
    assert sum(1 for i in slow if i.status == "running") <= HELD_PER_SLOT


def test_deploys_and_triggers_refuse_bad_input(t0: tier0.Tier0, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"no module 't0test_fns\.nope'"):
        t0.engine.deploy(FunctionSpec("f", "t0test_fns.nope:handler"), package=PACKAGE)
    with pytest.raises(InvalidArgument, match="cannot be imported here"):
        t0.engine.deploy(FunctionSpec("f", "no_such_module_anywhere:handler"))
    with pytest.raises(InvalidArgument, match="not a zip"):
        t0.engine.deploy(FunctionSpec("f", "m:handler"), package=b"not a zip")
    with pytest.raises(InvalidArgument, match="no secret named 'MISSING'"):
        t0.engine.deploy(FunctionSpec("f", "t0test_fns:upper", secrets=("MISSING",)),
                         package=PACKAGE)  # fmt: skip
    for bad in ({"timeout_s": 0}, {"concurrency": 0}, {"memory_mb": 1}, {"attempts": 0},
                {"handler": "no colon"}, {"name": "bad name"}):  # fmt: skip
        with pytest.raises(InvalidArgument):
            FunctionSpec(**{"name": "f", "handler": "m:h", **bad})
    with pytest.raises(NoSuchFunction, match="deploy it first"):
        t0.engine.add_trigger(TriggerSpec("t", "missing"))
    with pytest.raises(InvalidArgument, match="filter"):
        _deploy(t0, "f", "upper")
        t0.engine.add_trigger(TriggerSpec("t", "f", filter="size >"))
    assert t0.engine.triggers() == []
    first = t0.engine.function("f")
    _deploy(t0, "f", "behave")
    assert (first.version, t0.engine.function("f").version) == (1, 2)
    t0.engine.add_trigger(TriggerSpec("t", "f"))
    with pytest.raises(InvalidArgument, match="remove them first"):
        t0.engine.remove_function("f")
    t0.engine.remove_trigger("t")
    assert t0.engine.remove_function("f") == 2
    t0.create_user("bob")
    with pytest.raises(AccessDenied):
        t0.as_principal("bob").engine.deploy(FunctionSpec("g", "t0test_fns:upper"), package=PACKAGE)


def test_two_engines_on_one_store_share_the_work_without_running_twice(
    t0: tier0.Tier0, tmp_path: Path, meta_url: str
) -> None:
    # Two engines, as on two hosts: each its own opened store (its own connections and
    # worker processes) over the same metadata; leases in the database split the work.
    t0.create_bucket("docs")
    _deploy(t0, "once", "once", concurrency=2)
    t0.engine.add_trigger(TriggerSpec("once", "once", bucket="docs", prefix="in/"))
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        first = t0.engine.start(workers=2, idle_s=0.2)
        second = other.engine.start(workers=2, idle_s=0.2)
        try:
            for i in range(20):
                t0.put("docs", f"in/{i}", b"x")
            _wait(lambda: len(t0.engine.invocations(status="done")) == 20, timeout_s=60)
        finally:
            first.close()
            second.close()
    records = t0.engine.invocations()
    assert len(records) == 20 and all(r.attempts == 1 for r in records)
    effects = t0.list("docs", prefix="effects/").objects
    assert len(effects) == 20
    # Both took a share: the statistics of each engine count what it recorded.
    shares = [first.statistics().recorded, second.statistics().recorded]
    assert sum(shares) == 20 and min(shares) > 0, shares
