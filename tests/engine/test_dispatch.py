"""Stored triggers and the dispatcher (``tier0.engine._dispatch``): every matching
event yields exactly one durable invocation, on both metadata backends, with
two dispatchers (two opened stores, as two processes) sharing the work.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.engine import deploy
from tier0.engine import Dispatcher, Triggers, TriggerSpec
from tier0.errors import InvalidArgument, NoSuchFunction, NoSuchTrigger
from tier0.meta import load_json


def _engine(t0: tier0.Tier0) -> tuple[Triggers, Dispatcher]:
    kernel = t0._kernel
    deploy(t0, "extract", "embed", "f")
    return Triggers(kernel.meta, kernel.committer), Dispatcher(kernel.meta, kernel.committer)


def _invocations(t0: tier0.Tier0) -> list[tuple[Any, ...]]:
    with t0._kernel.meta.reader() as db:
        rows = db.query_all(
            "SELECT i.trigger_name, i.function_name, e.key, i.status, i.attempts,"
            " i.idempotency_key, i.seq FROM t0_invocations i JOIN t0_events e ON e.seq = i.seq"
            " ORDER BY i.seq, i.trigger_name"
        )
    return [tuple(row) for row in rows]


def test_matching_events_become_one_invocation_each(t0: tier0.Tier0) -> None:
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    t0.put("docs", "raw/old.pdf", b"before the trigger")  # before: never fires
    triggers.create(
        TriggerSpec("pdfs", "extract", bucket="docs", prefix="raw/", suffix=".pdf"),
        created_by=t0.principal.id,
    )
    triggers.create(
        TriggerSpec("big-english", "embed", bucket="docs", filter="metadata['lang'] = 'en'"
                    " AND size > 3"),
        created_by=t0.principal.id,
    )  # fmt: skip
    t0.put("docs", "raw/a.pdf", b"pdf", metadata={"lang": "en"})  # pdfs only (size 3)
    t0.put("docs", "raw/b.txt", b"text!", metadata={"Lang": "en"})  # big-english only
    t0.put("docs", "notes/c.pdf", b"x")  # neither
    t0.delete("docs", "raw/a.pdf")  # removed: neither listens
    report = dispatcher.dispatch()
    assert report.invocations_made == 2
    got = _invocations(t0)
    assert [(trigger, function, key, status, attempts) for trigger, function, key, status,
            attempts, _, _ in got] == [
        ("pdfs", "extract", "raw/a.pdf", "queued", 0),
        ("big-english", "embed", "raw/b.txt", "queued", 0),
    ]  # fmt: skip
    assert all(key == f"{seq}:{trigger}" for trigger, _, _, _, _, key, seq in got)
    # Nothing new: nothing made, and the cursor stays.
    again = dispatcher.dispatch()
    assert (again.events_read, again.invocations_made, again.cursor) == (0, 0, report.cursor)
    assert _invocations(t0) == got


def test_paused_and_removed_triggers_do_not_fire(t0: tier0.Tier0) -> None:
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    triggers.create(TriggerSpec("all", "f", bucket="docs"), created_by="root")
    triggers.pause("all")
    t0.put("docs", "a", b"1")
    assert dispatcher.dispatch().invocations_made == 0
    triggers.resume("all")
    t0.put("docs", "b", b"2")
    assert dispatcher.dispatch().invocations_made == 1
    triggers.remove("all")
    t0.put("docs", "c", b"3")
    assert dispatcher.dispatch().invocations_made == 0
    assert [row[2] for row in _invocations(t0)] == ["b"]
    assert triggers.list() == []


def test_what_happens_while_a_trigger_is_paused_never_fires_it(t0: tier0.Tier0) -> None:
    # No dispatch runs during the pause (an engine that was down): the events
    # of the pause are still in the log after the resume, and still skipped.
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    triggers.create(TriggerSpec("all", "f", bucket="docs"), created_by="root")
    triggers.pause("all")
    t0.put("docs", "during", b"1")
    triggers.resume("all")
    triggers.resume("all")  # resuming an active trigger changes nothing
    t0.put("docs", "after", b"2")
    assert dispatcher.dispatch().invocations_made == 1
    assert [row[2] for row in _invocations(t0)] == ["after"]


def test_with_no_trigger_active_the_cursor_moves_at_most_every_interval(
    t0: tier0.Tier0, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tier0.engine._dispatch as dispatch_module

    # Never due while the puts run, however slowly they do.
    monkeypatch.setattr(dispatch_module, "IDLE_CURSOR_S", 3600.0)
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    triggers.create(TriggerSpec("all", "f", bucket="docs"), created_by="root")
    triggers.pause("all")
    first = dispatcher.dispatch()  # moves the cursor to the end of the log
    commits = t0.statistics().commits
    for i in range(5):
        t0.put("docs", f"k{i}", b"x")
        assert dispatcher.dispatch().cursor == first.cursor  # nothing written
    assert t0.statistics().commits == commits + 5  # the puts' own commits only
    monkeypatch.setattr(dispatch_module, "IDLE_CURSOR_S", 0.0)
    assert dispatcher.dispatch().cursor == first.cursor + 5
    assert _invocations(t0) == []


def test_triggers_are_stored_whole_and_refused_when_wrong(t0: tier0.Tier0) -> None:
    triggers, _ = _engine(t0)
    spec = TriggerSpec("t", "f", bucket="b", prefix="p/", suffix=".x", events=("created",
                       "TableRowsInserted"), filter="size > 1")  # fmt: skip
    triggers.create(spec, created_by="root")
    [stored] = triggers.list()
    # Pinned to the function's latest version when made.
    assert (stored.spec, stored.state) == (replace(spec, function_version=1), "active")
    with pytest.raises(InvalidArgument, match="exists"):
        triggers.create(spec, created_by="root")
    with pytest.raises(NoSuchTrigger, match="no trigger named 'nope'"):
        triggers.pause("nope")
    with pytest.raises(NoSuchFunction, match="no function 'missing': deploy it first"):
        triggers.create(TriggerSpec("t2", "missing"), created_by="root")
    with pytest.raises(NoSuchFunction, match="no function 'f' version 2"):
        triggers.create(TriggerSpec("t2", "f", function_version=2), created_by="root")
    assert [t.spec.name for t in triggers.list()] == ["t"]


def test_a_trigger_runs_its_pinned_version_until_repinned(t0: tier0.Tier0) -> None:
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    triggers.create(TriggerSpec("t", "f", bucket="docs"), created_by="root")
    deploy(t0, "f")  # version 2: the trigger still runs 1
    t0.put("docs", "a", b"1")
    dispatcher.dispatch()
    triggers.repin("t")
    assert triggers.get("t").spec.function_version == 2
    t0.put("docs", "b", b"2")
    dispatcher.dispatch()
    with t0._kernel.meta.reader() as db:
        rows = db.query_all("SELECT function_version FROM t0_invocations ORDER BY id")
    assert [row[0] for row in rows] == [1, 2]
    with pytest.raises(NoSuchFunction, match="version 9"):
        triggers.repin("t", 9)


def test_a_long_log_is_dispatched_in_bounded_steps(t0: tier0.Tier0) -> None:
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    triggers.create(TriggerSpec("all", "f", bucket="docs"), created_by="root")
    for i in range(25):
        t0.put("docs", f"k{i}", b"x")
    steps = [dispatcher.dispatch(events_max=10) for _ in range(4)]
    # 26 events: the bucket's creation (which no trigger matches), then 25 puts.
    assert [step.events_read for step in steps] == [10, 10, 6, 0]
    assert [step.invocations_made for step in steps] == [9, 10, 6, 0]
    assert len(_invocations(t0)) == 25


def test_two_dispatchers_make_each_invocation_once(
    t0: tier0.Tier0, tmp_path: Path, meta_url: str
) -> None:
    triggers, mine = _engine(t0)
    t0.create_bucket("docs")
    triggers.create(TriggerSpec("all", "f", bucket="docs"), created_by="root")
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        _, theirs = _engine(other)
        for i in range(30):
            t0.put("docs", f"k{i}", b"x")
            (mine if i % 2 else theirs).dispatch(events_max=7)
        while mine.dispatch().events_read or theirs.dispatch().events_read:
            pass
    keys = [row[5] for row in _invocations(t0)]
    assert len(keys) == len(set(keys)) == 30


def test_schedule_triggers_fire_on_their_cron_times_with_an_injected_clock(
    t0: tier0.Tier0,
) -> None:
    import datetime as dt

    kernel = t0._kernel
    clock = {"now": dt.datetime(2026, 11, 30, 12, 3, 30, tzinfo=dt.UTC).timestamp()}
    deploy(t0, "report")
    triggers = Triggers(kernel.meta, kernel.committer, clock=lambda: clock["now"])
    dispatcher = Dispatcher(kernel.meta, kernel.committer, clock=lambda: clock["now"])
    triggers.create(TriggerSpec("every-5", "report", schedule="*/5 * * * *"), created_by="root")

    def at(hour: int, minute: int, second: int = 0) -> list[Any]:
        clock["now"] = dt.datetime(2026, 11, 30, hour, minute, second, tzinfo=dt.UTC).timestamp()
        dispatcher.dispatch()
        with kernel.meta.reader() as db:
            return [tuple(r) for r in db.query_all(
                "SELECT idempotency_key, event FROM t0_invocations ORDER BY id")]  # fmt: skip

    assert at(12, 4, 59) == []
    [(key, event)] = at(12, 5, 0)
    assert key == "schedule:2026-11-30T12:05:00+00:00:every-5"
    assert load_json(event) == {"type": "Scheduled", "time": "2026-11-30T12:05:00+00:00",
                                 "schedule": "*/5 * * * *", "missed": 0}  # fmt: skip
    assert len(at(12, 9, 59)) == 1  # nothing new before 12:10
    # Down from 12:10 to 12:31: the latest missed time runs once, saying what it stands for.
    runs = at(12, 31)
    assert len(runs) == 2 and load_json(runs[1][1])["time"] == "2026-11-30T12:30:00+00:00"
    assert load_json(runs[1][1])["missed"] == 4
    assert len(at(12, 31, 30)) == 2  # the same minute again: nothing twice
    triggers.pause("every-5")
    assert len(at(12, 40)) == 2
    with pytest.raises(InvalidArgument, match="five fields"):
        TriggerSpec("bad", "report", schedule="every day")
    with pytest.raises(InvalidArgument, match="takes no stream, bucket"):
        TriggerSpec("bad", "report", schedule="@daily", bucket="docs")


def test_an_updated_trigger_keeps_its_place_and_matches_anew(t0: tier0.Tier0) -> None:
    triggers, dispatcher = _engine(t0)
    t0.create_bucket("docs")
    made = triggers.create(TriggerSpec("t", "f", bucket="docs", prefix="a/"), created_by="root")
    t0.put("docs", "b/1", b"x")  # written before the update, after the trigger was made
    updated = triggers.update(TriggerSpec("t", "extract", bucket="docs", prefix="b/"))
    assert (updated.after_seq, updated.spec.function, updated.spec.function_version) == (
        made.after_seq, "extract", 1,
    )  # fmt: skip
    dispatcher.dispatch()
    assert [(row[0], row[1], row[2]) for row in _invocations(t0)] == [("t", "extract", "b/1")]
    with pytest.raises(NoSuchTrigger):
        triggers.update(TriggerSpec("nope", "f"))
