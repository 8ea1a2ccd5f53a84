"""``tier0 fn``, ``tier0 trigger`` and ``tier0 secret`` through click's CliRunner, with the
engine running on real worker processes beside them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tier0
from tier0.cli import cli

PACKAGE = Path(__file__).parent / "engine" / "functions"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TIER0_DATA", "TIER0_META", "TIER0_ROOT_ACCESS_KEY", "TIER0_ROOT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "data"
    with tier0.open(path) as t0:
        t0.create_bucket("docs")
    return path


def run(data: Path, *args: str, expect: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, ["--data", str(data), *args], input=input,
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == expect, result.output
    return result


def test_deploy_trigger_run_and_read_invocations_and_logs(data: Path) -> None:
    said = run(data, "fn", "deploy", "upper", "t0test_fns:upper", "--package", str(PACKAGE),
               "--grant", "s3:*=/docs/*", "--secret", "TOKEN", expect=1)  # fmt: skip
    assert "no secret named 'TOKEN'" in said.output
    assert "stored secret" in run(data, "secret", "set", "TOKEN", input="abc\n").output.lower()
    assert run(data, "secret", "list").output.split() == ["TOKEN"]
    said = run(data, "fn", "deploy", "upper", "t0test_fns:upper", "--package", str(PACKAGE),
               "--grant", "s3:*=/docs/*", "--secret", "TOKEN", "--timeout", "30")  # fmt: skip
    assert "Deployed upper version 1" in said.output and "fn.upper" in said.output
    assert "upper" in run(data, "fn", "list").output
    said = run(data, "trigger", "add", "shout", "--function", "upper", "--bucket", "docs",
               "--prefix", "in/")  # fmt: skip
    assert "runs upper version 1" in said.output
    listed = run(data, "trigger", "list").output
    assert "shout" in listed and "active" in listed
    with tier0.open(data) as t0, t0.engine.start(workers=2, idle_s=0.2):
        t0.put("docs", "in/a", b"abc")
        deadline = time.monotonic() + 30
        while not t0.engine.invocations(status="done"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert t0.get("docs", "out/a").read() == b"ABC"
        assert t0.head("docs", "out/a").metadata["secret"] == "abc"
    [line] = run(data, "fn", "invocations", "upper", "--json").output.splitlines()
    record = json.loads(line)
    assert (record["status"], record["attempts"], record["event"]["key"]) == ("done", 1, "in/a")
    table = run(data, "fn", "invocations").output
    assert "done" in table and "upper:1" in table
    logs = run(data, "fn", "logs", "upper").output
    assert "upper-cased in/a" in logs and "a printed line" in logs
    assert "upper-cased" in run(data, "fn", "logs", "--invocation", str(record["id"])).output
    run(data, "trigger", "pause", "shout")
    assert "paused" in run(data, "trigger", "list").output
    run(data, "trigger", "resume", "shout")
    said = run(data, "fn", "rm", "upper", expect=1)
    assert "remove them first" in said.output
    run(data, "trigger", "rm", "shout")
    assert "Removed upper (1 version)" in run(data, "fn", "rm", "upper").output
    run(data, "secret", "rm", "TOKEN")
    assert run(data, "secret", "list").output == ""


def test_bad_input_is_one_clear_line(data: Path) -> None:
    said = run(data, "fn", "deploy", "f", "m:h", "--grant", "s3:GetObject", expect=2)
    assert "ACTION=RESOURCE" in said.output
    said = run(data, "trigger", "add", "t", "--function", "missing", expect=1)
    assert "no function 'missing': deploy it first" in said.output
    run(data, "fn", "deploy", "noop", "tier0.engine.builtins.basic:noop")
    said = run(data, "trigger", "add", "t", "--function", "noop", "--filter", "size >", expect=1)
    assert "filter" in said.output.lower()
    said = run(data, "trigger", "add", "t", "--function", "noop", "--event", "Nope", expect=1)
    assert "no event type matches 'Nope'" in said.output
    assert "name a function" in run(data, "fn", "logs", expect=2).output


def test_streams_from_the_command_line(data: Path) -> None:
    assert (
        "Created stream orders"
        in run(data, "stream", "create", "orders", "--retention", "1d").output
    )
    assert run(data, "stream", "append", "orders", "hello", "--key", "k").output.strip() == "0"
    assert (
        run(data, "stream", "append", "orders", "--lines", input="a\nb\n").output.strip() == "1..2"
    )
    lines = run(data, "stream", "read", "orders", "--group", "g", "--commit", "-n", "2").output
    first = [json.loads(line) for line in lines.splitlines()]
    assert [(m["offset"], m["value"], m["key"]) for m in first] == [
        (0, "hello", "k"),
        (1, "a", None),
    ]
    rest = run(data, "stream", "read", "orders", "--group", "g", "--commit").output.splitlines()
    assert [json.loads(line)["value"] for line in rest] == ["b"]
    groups = run(data, "stream", "groups", "orders").output
    assert "g" in groups and "3" in groups
    assert "from offset 1" in run(data, "stream", "seek", "orders", "g", "--offset", "1").output
    listed = run(data, "stream", "list").output
    assert "orders" in listed and "86400 s" in listed
    said = run(data, "stream", "create", "x", "--retention", "soon", expect=2)
    assert "duration like" in said.output
    assert "Removed stream orders" in run(data, "stream", "rm", "orders").output


def test_pipelines_from_the_command_line(data: Path) -> None:
    definition = Path(__file__).parent / "engine" / "pipeline.yaml"
    said = run(data, "pipeline", "deploy", str(definition)).output
    assert "Deployed pipeline ingest: 3 functions, 3 triggers." in said
    assert run(data, "pipeline", "list").output.split() == ["ingest"]
    status = run(data, "pipeline", "status", "ingest").output
    assert "new-raw" in status and "extract" in status and "last error" in status
    assert "Removed pipeline ingest" in run(data, "pipeline", "rm", "ingest").output
    said = run(data, "pipeline", "status", "ingest", expect=1)
    assert "no pipeline named 'ingest'" in said.output
