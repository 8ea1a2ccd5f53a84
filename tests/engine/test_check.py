"""The engine's fsck (``tier0.engine._check``, ``t0.engine.check()``, ``tier0 fsck``):
clean after real use, and each kind of damage found, on both metadata backends."""

from __future__ import annotations

import tier0
from tests.engine import deploy
from tier0.engine import TriggerSpec
from tier0.meta import WriteTx


def _use(t0: tier0.Tier0) -> None:
    t0.create_bucket("docs")
    deploy(t0, "f")
    t0.streams.create("orders")
    t0.streams.append_many("orders", [(b"one", None, None), (b"two", None, None)])
    t0.streams.commit("orders", "billing", 1)
    t0.engine.add_trigger(TriggerSpec("on-put", "f", bucket="docs"))
    t0.engine.add_trigger(TriggerSpec("on-order", "f", stream="orders"))
    t0.engine.add_trigger(TriggerSpec("nightly", "f", schedule="@daily"))
    t0.put("docs", "a", b"x")


def test_clean_after_use_and_every_damage_found(t0: tier0.Tier0) -> None:
    _use(t0)
    report = t0.engine.check()
    assert report.ok, report.problems
    assert (report.triggers_checked, report.streams_checked) == (3, 1)

    def damage(tx: WriteTx) -> None:
        tx.execute("UPDATE t0_streams SET bytes = bytes + 5, next_offset = 3")
        tx.execute("UPDATE t0_stream_groups SET committed = 9 WHERE group_name = 'billing'")
        tx.execute("DELETE FROM t0_cursors WHERE name = 'schedule.nightly'")
        tx.execute("DELETE FROM t0_stream_groups WHERE group_name = 'trigger.on-order'")
        tx.execute("DELETE FROM t0_functions WHERE name = 'f'")
        tx.execute(
            "INSERT INTO t0_invocations (idempotency_key, trigger_name, function_name,"
            " function_version, seq, status, attempts, not_before_us, created_us)"
            " VALUES ('x', 'on-put', 'f', 1, 1, 'running', 1, 0, 0)"
        )

    t0._kernel.committer.run(damage)
    problems = "\n".join(t0.engine.check().problems)
    for said in (
        "1 invocation(s) running without a lease",
        "wait for f version 1, which is not deployed",
        "trigger on-put runs f version 1, which is not deployed",
        "stream trigger on-order has no consumer group on orders",
        "schedule trigger nightly has no cursor",
        "stream orders holds offsets 0..1 (2 messages), its counters say 0..2 (3)",
        "stream orders holds 6 bytes, its counter says 11",
        "group billing of orders committed offset 9, past its end (3)",
    ):
        assert said in problems, problems
