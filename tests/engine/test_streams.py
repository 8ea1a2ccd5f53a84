"""Streams (``tier0.engine._streams``, ``t0.streams``) on both metadata backends: ordered
offsets, consumer groups whose committed offsets survive a restart, replay from an offset or
a time, retention by age and size, the built-in events and dead-letter streams, long polls,
and stream messages triggering functions on worker processes."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest

import tier0
from tier0.engine import FunctionSpec, TriggerSpec
from tier0.errors import AccessDenied, InvalidArgument, NoSuchStream

PACKAGE = Path(__file__).parent / "functions"


def test_append_and_read_in_order_with_keys_and_headers(t0: tier0.Tier0) -> None:
    streams = t0.streams
    streams.create("orders")
    assert streams.append("orders", b"first", key="k1", headers={"h": "v"}) == 0
    assert streams.append_many("orders", [(b"second", None, None), ("third", "k2", None)]) == [1, 2]
    messages = streams.read("orders")
    assert [(m.offset, m.value, m.key) for m in messages] == [
        (0, b"first", "k1"), (1, b"second", None), (2, b"third", "k2"),
    ]  # fmt: skip
    assert messages[0].headers == {"h": "v"} and messages[0].producer == t0.principal.id
    assert [m.offset for m in streams.read("orders", after=0, limit=1)] == [1]
    info = streams.info("orders")
    assert (info.first_offset, info.next_offset, info.messages, info.bytes) == (0, 3, 3, 16)
    assert t0.sql("SELECT name, messages, bytes FROM streams").rows == [("orders", 3, 16)]


def test_concurrent_producers_get_distinct_gap_free_offsets(t0: tier0.Tier0) -> None:
    t0.streams.create("s")
    offsets: list[int] = []
    lock = threading.Lock()

    def produce(n: int) -> None:
        for i in range(25):
            offset = t0.streams.append("s", f"{n}-{i}".encode())
            with lock:
                offsets.append(offset)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(offsets) == list(range(100))
    values = [m.value.decode() for m in t0.streams.read("s", limit=1000)]
    for n in range(4):  # each producer's messages in its own order
        mine = [v for v in values if v.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(25)]


def test_groups_commit_and_resume_after_a_restart(t0: tier0.Tier0, tmp_path: Path,
                                                  meta_url: str) -> None:  # fmt: skip
    t0.streams.create("jobs")
    t0.streams.append_many("jobs", [(f"job {i}".encode(), None, None) for i in range(10)])
    batch = t0.streams.read("jobs", group="workers", limit=4)
    assert [m.offset for m in batch] == [0, 1, 2, 3]
    # Not committed: a consumer that died reads them again (at least once).
    assert [m.offset for m in t0.streams.read("jobs", group="workers", limit=4)] == [0, 1, 2, 3]
    t0.streams.commit("jobs", "workers", batch[-1].offset + 1)
    with tier0.open(tmp_path / "data", meta=meta_url) as again:  # another process's view
        assert again.streams.groups("jobs") == {"workers": 4}
        assert [m.offset for m in again.streams.read("jobs", group="workers", limit=3)] == [4, 5, 6]
    # Another group has its own offset.
    assert [m.offset for m in t0.streams.read("jobs", group="audit", limit=2)] == [0, 1]
    with pytest.raises(InvalidArgument, match="past the end"):
        t0.streams.commit("jobs", "workers", 11)


def test_replay_from_an_offset_or_a_time(t0: tier0.Tier0) -> None:
    t0.streams.create("log")
    t0.streams.append_many("log", [(b"old", None, None)] * 3)
    time.sleep(0.05)
    middle = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    t0.streams.append_many("log", [(b"new", None, None)] * 2)
    t0.streams.commit("log", "g", 5)
    assert t0.streams.read("log", group="g") == []
    assert t0.streams.seek("log", "g", since=middle) == 3
    assert [m.value for m in t0.streams.read("log", group="g")] == [b"new", b"new"]
    t0.streams.seek("log", "g", offset=1)
    assert [m.offset for m in t0.streams.read("log", group="g")] == [1, 2, 3, 4]
    assert [m.offset for m in t0.streams.read("log", since=middle)] == [3, 4]


def test_retention_by_size_and_by_age(t0: tier0.Tier0) -> None:
    megabyte = 1024 * 1024
    t0.streams.create("big", retention_bytes=2 * megabyte, retention_s=None)
    for i in range(5):
        t0.streams.append("big", bytes([i]) * (megabyte - 100))
    info = t0.streams.info("big")
    assert info.bytes <= 2 * megabyte and info.next_offset == 5
    assert [m.offset for m in t0.streams.read("big")] == list(range(info.first_offset, 5))
    assert info.first_offset == 3
    t0.streams.create("short", retention_s=1)
    t0.streams.append("short", b"a")
    time.sleep(1.1)
    t0.streams.append("short", b"b")  # the append trims what is older than a second
    assert [m.value for m in t0.streams.read("short")] == [b"b"]
    assert t0.streams.info("short").first_offset == 1


def test_long_poll_wakes_on_append(t0: tier0.Tier0) -> None:
    t0.streams.create("chat")
    timer = threading.Timer(0.2, lambda: t0.streams.append("chat", b"hello"))
    timer.start()
    started = time.monotonic()
    got = t0.streams.read("chat", after=-1, wait_s=10)
    timer.join()
    assert [m.value for m in got] == [b"hello"] and time.monotonic() - started < 5
    assert t0.streams.read("chat", after=0, wait_s=0.2) == []


def test_element_events_are_a_built_in_stream(t0: tier0.Tier0) -> None:
    t0.create_bucket("docs")
    t0.put("docs", "a", b"1")
    t0.put("docs", "b", b"2")
    messages = t0.streams.read("events", group="indexer", limit=1000)
    keys = [m.key for m in messages if m.headers["type"] == "ObjectCreated:Put"]
    assert keys == ["docs/a", "docs/b"]
    t0.streams.commit("events", "indexer", messages[-1].offset + 1)
    t0.put("docs", "c", b"3")
    [latest] = t0.streams.read("events", group="indexer")
    assert latest.key == "docs/c" and b'"ObjectCreated:Put"' in latest.value
    with pytest.raises(InvalidArgument, match="event log"):
        t0.streams.append("events", b"x")


def test_bad_input_and_rights(t0: tier0.Tier0) -> None:
    with pytest.raises(NoSuchStream, match="create it first"):
        t0.streams.append("nope", b"x")
    with pytest.raises(InvalidArgument, match="stream name"):
        t0.streams.create("bad name")
    with pytest.raises(InvalidArgument, match="built-in"):
        t0.streams.create("dead-letter")
    t0.streams.create("s")
    with pytest.raises(InvalidArgument, match="exists"):
        t0.streams.create("s")
    with pytest.raises(InvalidArgument, match="at most"):
        t0.streams.append("s", b"x" * (1024 * 1024 + 1))
    with pytest.raises(InvalidArgument, match="bytes"):
        t0.streams.append("s", 42)  # type: ignore[arg-type]
    t0.create_user("eve")
    with pytest.raises(AccessDenied):
        t0.as_principal("eve").streams.append("s", b"x")
    with pytest.raises(AccessDenied):
        t0.as_principal("eve").streams.read("events")
    t0.grant("eve", "tier0:AppendStream", "/streams/s")
    assert t0.as_principal("eve").streams.append("s", b"ok") == 0
    t0.streams.remove("s")
    with pytest.raises(NoSuchStream):
        t0.streams.read("s")


def test_messages_trigger_functions_and_dead_ones_reach_the_dead_letter(
    t0: tier0.Tier0,
) -> None:
    t0.create_bucket("docs")
    t0.streams.create("orders")
    t0.streams.append("orders", b"before the trigger")  # not run: the trigger is newer
    engine = t0.engine
    engine.deploy(FunctionSpec("record", "t0test_fns:record", grants=(("s3:*", "/docs/*"),)),
                  package=PACKAGE)  # fmt: skip
    engine.deploy(FunctionSpec("fail", "t0test_fns:behave", attempts=1), package=PACKAGE)
    engine.add_trigger(TriggerSpec("on-order", "record", stream="orders"))
    engine.add_trigger(TriggerSpec("always-fails", "fail", bucket="docs", prefix="in/"))
    with pytest.raises(InvalidArgument, match="takes no bucket"):
        TriggerSpec("x", "record", stream="orders", bucket="docs")
    with engine.start(workers=2, idle_s=0.2):
        t0.streams.append_many("orders", [(b"one", "a", None), (b"two", "b", None)])
        t0.put("docs", "in/x", b"whatever")  # behave: no grant to read it, so it fails
        deadline = time.monotonic() + 30
        while len([r for r in engine.invocations() if r.status in ("done", "dead")]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert t0.get("docs", "seen/orders/1").read() == b"one"
    assert t0.get("docs", "seen/orders/2").read() == b"two"
    assert t0.head("docs", "seen/orders/2").metadata["key"] == "b"
    keys = sorted(r.idempotency_key for r in engine.invocations(trigger="on-order"))
    assert keys == ["orders:1:on-order", "orders:2:on-order"]
    [dead] = t0.streams.read("dead-letter")
    import json

    letter = json.loads(dead.value)
    assert (letter["trigger"], letter["function"], letter["attempts"]) == (
        "always-fails",
        "fail",
        1,
    )
    assert "AccessDenied" in letter["error"] and letter["event"]["key"] == "in/x"
