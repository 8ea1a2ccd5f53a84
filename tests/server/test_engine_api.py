"""The DataEngine over HTTP (``tier0.server._engine_api``): deploy a code package, add a
trigger, run it on real worker processes, read invocations and logs; errors as JSON with
the status of the error table; a principal without rights is refused."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tier0
from tier0 import Tier0
from tier0.engine import zip_directory
from tier0.server import App, create_app

PACKAGE = Path(__file__).parents[1] / "engine" / "functions"
Auth = tuple[str, str]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Tier0]:
    with tier0.open(tmp_path / "data") as t0:
        t0.create_bucket("docs")
        yield t0


@pytest.fixture
def root(store: Tier0) -> Auth:
    credential = store.root_credential
    assert credential is not None
    return credential.access_key, credential.secret_key


@pytest.fixture
def app(store: Tier0) -> Iterator[App]:
    application = create_app(store)
    yield application
    application.close()


@pytest.fixture
async def client(app: App, root: Auth) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tier0", auth=root) as http:
        yield http


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@pytest.mark.anyio
async def test_deploy_trigger_run_and_read_back(client: httpx.AsyncClient, store: Tier0) -> None:
    package = base64.b64encode(zip_directory(str(PACKAGE))).decode()
    _ok(await client.put("/_tier0/secrets/TOKEN", json={"value": "over-http"}), 204)
    assert _ok(await client.get("/_tier0/secrets")) == {"secrets": ["TOKEN"]}
    deployed = _ok(await client.post("/_tier0/functions", json={
        "name": "upper", "handler": "t0test_fns:upper", "package": package, "timeout_s": 20,
        "secrets": ["TOKEN"], "grants": [["s3:*", "/docs/*"]],
    }), 201)  # fmt: skip
    assert (deployed["version"], deployed["principal"]) == (1, "fn.upper")
    assert len(deployed["package_sha256"]) == 64
    listed = _ok(await client.get("/_tier0/functions"))["functions"]
    assert [f["name"] for f in listed] == ["upper"]
    trigger = _ok(await client.post("/_tier0/triggers", json={
        "name": "shout", "function": "upper", "bucket": "docs", "prefix": "in/",
    }), 201)  # fmt: skip
    assert (trigger["function_version"], trigger["state"]) == (1, "active")
    paused = _ok(await client.post("/_tier0/triggers/shout/pause"))
    assert paused["state"] == "paused"
    _ok(await client.post("/_tier0/triggers/shout/resume"))
    with store.engine.start(workers=2, idle_s=0.2):
        store.put("docs", "in/h", b"hi")
        deadline = time.monotonic() + 30
        while not (done := _ok(await client.get("/_tier0/invocations?status=done"))["invocations"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    [record] = done
    assert (record["function"], record["attempts"], record["event"]["key"]) == ("upper", 1, "in/h")
    assert store.head("docs", "out/h").metadata["secret"] == "over-http"
    lines = _ok(await client.get(f"/_tier0/invocations/{record['id']}/logs"))["lines"]
    assert [line["message"] for line in lines] == ["upper-cased in/h", "a printed line"]
    by_function = _ok(await client.get("/_tier0/functions/upper/logs"))["lines"]
    assert len(by_function) == 2
    _ok(await client.delete("/_tier0/triggers/shout"), 204)
    assert _ok(await client.delete("/_tier0/functions/upper")) == {"removed_versions": 1}


@pytest.mark.anyio
async def test_errors_are_json_with_the_tables_status(
    client: httpx.AsyncClient, store: Tier0
) -> None:
    missing = await client.post("/_tier0/triggers", json={"name": "t", "function": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NoSuchFunction"
    bad = await client.post("/_tier0/functions", json={"name": "f", "handler": "no-colon"})
    assert bad.status_code == 400 and "module.path:function" in bad.json()["error"]["message"]
    unknown = await client.post("/_tier0/functions", json={"name": "f", "handler": "m:h", "x": 1})
    assert unknown.status_code == 400 and "unknown field(s) x" in unknown.json()["error"]["message"]
    assert (await client.get("/_tier0/triggers/none")).status_code == 404
    assert (await client.get("/_tier0/invocations/99/logs")).status_code == 404
    wrong = await client.put("/_tier0/functions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"
    _, credential = store.create_user("eve")
    denied = await client.get(
        "/_tier0/invocations", auth=(credential.access_key, credential.secret_key)
    )
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "AccessDenied"


@pytest.mark.anyio
async def test_streams_over_http_with_a_long_poll(client: httpx.AsyncClient) -> None:
    made = _ok(await client.post("/_tier0/streams", json={"name": "orders"}), 201)
    assert (made["next_offset"], made["retention_s"]) == (0, 7 * 86_400)
    appended = _ok(await client.post("/_tier0/streams/orders/messages", json={"messages": [
        {"value": "one", "key": "a"}, {"value_b64": base64.b64encode(b"\xff\x00").decode()},
    ]}))  # fmt: skip
    assert appended == {"offsets": [0, 1]}
    read = _ok(await client.get("/_tier0/streams/orders/messages?group=g"))
    assert [m.get("value", m.get("value_b64")) for m in read["messages"]] == ["one", "/wA="]
    assert read["next_after"] == 1
    _ok(await client.post("/_tier0/streams/orders/groups/g/commit", json={"offset": 2}))
    assert _ok(await client.get("/_tier0/streams/orders"))["groups"] == {"g": 2}

    async def append_later() -> None:
        await asyncio.sleep(0.3)
        await client.post("/_tier0/streams/orders/messages", json={"messages": [{"value": "3"}]})

    later = asyncio.ensure_future(append_later())
    started = time.monotonic()
    polled = _ok(await client.get("/_tier0/streams/orders/messages?group=g&wait_s=10"))
    await later
    assert [m["value"] for m in polled["messages"]] == ["3"] and time.monotonic() - started < 5
    seek = _ok(await client.post("/_tier0/streams/orders/groups/g/seek", json={"offset": 0}))
    assert seek["committed"] == 0
    bad = await client.post("/_tier0/streams/orders/messages", json={"messages": [{"key": "x"}]})
    assert bad.status_code == 400 and "value" in bad.json()["error"]["message"]
    missing = await client.get("/_tier0/streams/none/messages")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NoSuchStream"
    _ok(await client.delete("/_tier0/streams/orders"), 204)
    assert _ok(await client.get("/_tier0/streams")) == {"streams": []}


@pytest.mark.anyio
async def test_pipelines_over_http(client: httpx.AsyncClient) -> None:
    package = base64.b64encode(zip_directory(str(PACKAGE))).decode()
    definition = {
        "name": "p", "package_b64": package,
        "functions": {"up": {"handler": "t0test_fns:upper", "grants": [["s3:*", "/docs/*"]]}},
        "triggers": {"raw": {"function": "up", "bucket": "docs", "prefix": "in/"}},
    }  # fmt: skip
    made = _ok(await client.post("/_tier0/pipelines", json=definition), 201)
    assert made == {"name": "p", "functions": ["p.up"], "triggers": ["p.raw"]}
    function = _ok(await client.get("/_tier0/functions/p.up"))
    assert function["package_sha256"] is not None  # the code came with it
    assert _ok(await client.get("/_tier0/pipelines")) == {"pipelines": ["p"]}
    [step] = _ok(await client.get("/_tier0/pipelines/p"))["steps"]
    assert (step["trigger"], step["function"], step["counts"]) == ("p.raw", "p.up", {})
    path = await client.post("/_tier0/pipelines", json={**definition, "package": "/etc"})
    assert path.status_code == 400 and "package_b64" in path.json()["error"]["message"]
    _ok(await client.delete("/_tier0/pipelines/p"), 204)
    gone = await client.get("/_tier0/pipelines/p")
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "NoSuchPipeline"
