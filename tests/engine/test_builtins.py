"""Built-in functions (``tier0.engine.builtins``) on real worker processes: automatic
embedding makes a document searchable by meaning (the real all-MiniLM-L6-v2) moments after
its PUT, and forgets a removed one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import tier0
from tier0.engine.builtins import embedding

pytestmark = pytest.mark.slow


def _wait(condition: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)
    return result


def _nearest(t0: tier0.Tier0, text: str) -> list[str]:
    hits = t0.search(text, bucket="docs", k=3, elements=True)
    return [str(key) for key in hits.column("key").to_pylist()]


def test_a_put_document_becomes_searchable_and_a_removed_one_goes(t0: tier0.Tier0) -> None:
    t0.create_bucket("docs")
    function, trigger = embedding("docs", prefix="kb/")
    t0.engine.deploy(function)
    t0.engine.add_trigger(trigger)
    with t0.engine.start(workers=2, idle_s=0.2):
        t0.put("docs", "kb/bread.txt", b"Knead the dough, let it rise overnight, then bake.")
        t0.put("docs", "kb/stars.txt", b"Telescopes gather light from distant galaxies.")
        t0.put("docs", "other/x.txt", b"Sourdough starters need flour and water daily.")
        _wait(lambda: len(t0.engine.invocations(status="done")) >= 1
              and _nearest(t0, "astronomy and the night sky")[:1] == ["kb/stars.txt"])  # fmt: skip
        assert _nearest(t0, "how to make bread at home")[0] == "kb/bread.txt"
        assert "other/x.txt" not in _nearest(t0, "sourdough starter")  # not under the prefix
        t0.delete("docs", "kb/stars.txt")
        _wait(lambda: "kb/stars.txt" not in _nearest(t0, "astronomy and the night sky"))
        _wait(lambda: all(r.status in ("done", "dead") for r in t0.engine.invocations()))
    records = t0.engine.invocations()
    assert len(records) == 3  # two PUTs and the DELETE under kb/
    assert all(r.status == "done" for r in records), [r.error for r in records]
    lines = [line.message for line in t0.engine.logs(function="embed-docs")]
    assert any(line.startswith("indexed docs: ") for line in lines)
