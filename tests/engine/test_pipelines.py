"""Pipelines (``tier0.engine._pipelines``): a three-step pipeline from YAML, deployed as a
unit, run end to end on real worker processes (each step chained through the data the one
before wrote), its status, a redeploy, and its teardown; bad definitions refused whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.engine import wait_for
from tier0.engine._pipelines import Pipeline
from tier0.errors import InvalidArgument

DEFINITION = Path(__file__).parent / "pipeline.yaml"


def _wait(condition: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    return wait_for(condition, timeout_s)


def test_a_three_step_pipeline_runs_end_to_end(t0: tier0.Tier0) -> None:
    t0.create_bucket("docs")
    t0.engine.deploy_pipeline(DEFINITION)
    assert t0.engine.pipelines() == ["ingest"]
    names = sorted(t.spec.name for t in t0.engine.triggers())
    assert names == ["ingest.new-raw", "ingest.new-text", "ingest.new-vectors"]
    with t0.engine.start(workers=3, idle_s=0.2):
        t0.put("docs", "raw/a.txt", b"  Hello\n  World  ")
        t0.put("docs", "raw/b.txt", b"Second   DOCUMENT")
        t0.put("docs", "raw/skip.bin", b"not text")  # no step runs for it
        _wait(lambda: all(t0.get_tags("docs", f"raw/{n}.txt").get("indexed") == "true"
                          for n in ("a", "b")))  # fmt: skip
        _wait(lambda: all(s.counts.get("done", 0) >= 2 and not s.counts.get("running")
                          for s in t0.engine.pipeline_status("ingest")))  # fmt: skip
    assert t0.get("docs", "text/a.txt").read() == b"hello world"
    rows = t0.sql("SELECT source, text, len(vector) FROM docs.vectors ORDER BY source").rows
    assert rows == [("raw/a.txt", "hello world", 8), ("raw/b.txt", "second document", 8)]
    assert t0.get_tags("docs", "raw/skip.bin") == {}
    status = {s.trigger: s for s in t0.engine.pipeline_status("ingest")}
    assert status["ingest.new-raw"].counts == {"done": 2}
    assert status["ingest.new-text"].counts == {"done": 2}
    assert status["ingest.new-vectors"].function == "ingest.tag"
    assert all(s.last_error is None for s in status.values())
    # Each step is in the catalog and the event log.
    kinds = {row[0] for row in t0.sql(
        "SELECT type FROM events WHERE bucket = 'docs' AND (key LIKE 'text/%' OR key = 'vectors')"
    ).rows}  # fmt: skip
    assert {"ObjectCreated:Put", "TableRowsInserted"} <= kinds
    assert t0.sql("SELECT name FROM pipelines").rows == [("ingest",)]
    # Deployed again: new function versions, the same triggers pinned to them, keeping
    # their place in the event log (a PUT between the two deploys is not missed).
    places = {t.spec.name: t.after_seq for t in t0.engine.triggers()}
    t0.put("docs", "raw/c.txt", b"Written   BETWEEN")
    t0.engine.deploy_pipeline(DEFINITION)
    assert {t.spec.function_version for t in t0.engine.triggers()} == {2}
    assert {t.spec.name: t.after_seq for t in t0.engine.triggers()} == places
    with t0.engine.start(workers=3, idle_s=0.2):
        _wait(lambda: t0.get_tags("docs", "raw/c.txt").get("indexed") == "true")
    assert t0.get("docs", "text/c.txt").read() == b"written between"
    t0.engine.remove_pipeline("ingest")
    assert t0.engine.triggers() == [] and t0.engine.functions() == []
    assert t0.engine.pipelines() == []


def test_a_bad_definition_deploys_nothing(t0: tier0.Tier0, tmp_path: Path) -> None:
    good = {
        "name": "p",
        "functions": {"f": {"handler": "tier0.engine.builtins.basic:noop"}},
        "triggers": {"t": {"function": "f", "bucket": "docs"}},
    }
    for change, said in (
        ({"triggers": {"t": {"function": "f", "filter": "size >"}}}, "trigger 't'"),
        ({"functions": {"f": {"handler": "x:y", "timeout_s": -1}}}, "function 'f'"),
        ({"triggers": {}}, "at least one trigger"),
        ({"extra": 1}, "unknown field"),
        ({"functions": {"f": {"handler": "m:h", "name": "x"}}}, "its name is its key"),
        ({"package": "no/such/dir"}, "not a directory"),
    ):
        with pytest.raises(InvalidArgument, match=said):
            t0.engine.deploy_pipeline({**good, **change})
    assert t0.engine.functions() == [] and t0.engine.triggers() == []
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed")
    with pytest.raises(InvalidArgument, match="not YAML"):
        Pipeline.load(bad_yaml)
    t0.engine.deploy_pipeline(good)  # a trigger may name a built-in by import path
    assert [f.name for f in t0.engine.functions()] == ["p.f"]
