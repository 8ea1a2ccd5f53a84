"""The HTTP app in process: httpx's ASGITransport against a real store, no socket."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tier0
from tier0 import Tier0
from tier0.errors import (
    AccessDenied,
    BucketNotEmpty,
    InvalidBucketName,
    InvalidCredentials,
    NoSuchKey,
    NoSuchVersion,
    QueryTimeout,
    SQLNotAllowed,
    SQLSyntaxError,
    StorageFull,
    Tier0Error,
)
from tier0.server import App, Limits, create_app, status_for

pytestmark = pytest.mark.anyio

Auth = tuple[str, str]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Tier0]:
    with tier0.open(tmp_path / "data") as t0:
        yield t0


@pytest.fixture
def root(store: Tier0) -> Auth:
    credential = store.root_credential
    assert credential is not None  # a fresh directory makes root's keys
    return credential.access_key, credential.secret_key


@pytest.fixture
def app(store: Tier0) -> Iterator[App]:
    # Short wait slices keep the shutdown test fast; the rest are the defaults.
    application = create_app(store, limits=Limits(event_wait_slice_s=0.1))
    yield application
    application.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tier0") as http:
        yield http


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "message"} and error["message"]
    return error


# -- health, routing, request ids ------------------------------------------------------------


async def test_health_answers_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/_tier0/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": tier0.__version__}
    assert len(response.headers["x-request-id"]) == 16


async def test_head_health_has_get_headers_and_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/_tier0/health")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def test_request_id_echoed_when_plain_replaced_when_not(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/_tier0/health", headers={"x-request-id": "trace-42.a"})
    assert echoed.headers["x-request-id"] == "trace-42.a"
    replaced = await client.get("/_tier0/health", headers={"x-request-id": "x" * 500})
    assert replaced.headers["x-request-id"] != "x" * 500
    assert len(replaced.headers["x-request-id"]) == 16


async def test_unknown_path_is_json_404_with_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/_tier0/nothing-here")
    assert response.status_code == 404
    assert _error(response)["type"] == "NotFound"
    assert response.headers["x-request-id"]
    outside = await client.get("/some-bucket/some-key")
    assert outside.status_code == 404
    assert outside.headers["x-request-id"]


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient, root: Auth) -> None:
    response = await client.get("/_tier0/sql", auth=root)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _error(response)["type"] == "MethodNotAllowed"


async def test_other_paths_go_to_the_fallback_untouched(store: Tier0) -> None:
    seen: list[str] = []

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    application = create_app(store, fallback=fallback)
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://tier0") as http:
            response = await http.get("/bucket/key")
            health = await http.get("/_tier0/health")
    finally:
        application.close()
    assert response.status_code == 204
    # The fallback names its own requests (S3 answers with x-amz-request-id).
    assert "x-request-id" not in response.headers
    assert seen == ["/bucket/key"]
    assert health.status_code == 200


# -- authentication --------------------------------------------------------------------------


async def test_sql_without_credentials_is_401_with_realm(client: httpx.AsyncClient) -> None:
    response = await client.post("/_tier0/sql", json={"sql": "SELECT 1"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="tier0"'
    assert response.headers["x-request-id"]
    assert _error(response)["type"] == "Unauthorized"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
async def test_malformed_basic_header_is_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post(
        "/_tier0/sql", json={"sql": "SELECT 1"}, headers={"authorization": header}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="tier0"'


async def test_wrong_secret_and_unknown_key_are_401(client: httpx.AsyncClient, root: Auth) -> None:
    for auth in ((root[0], root[1] + "x"), ("T0NOSUCHKEY", root[1])):
        response = await client.post("/_tier0/sql", json={"sql": "SELECT 1"}, auth=auth)
        assert response.status_code == 401
        assert _error(response)["type"] == "InvalidCredentials"
        assert response.headers["www-authenticate"] == 'Basic realm="tier0"'


# -- SQL -------------------------------------------------------------------------------------


async def test_sql_sees_a_write_at_once(
    client: httpx.AsyncClient, store: Tier0, root: Auth
) -> None:
    store.create_bucket("docs")
    store.put("docs", "a.txt", b"hello")
    response = await client.post(
        "/_tier0/sql",
        json={"sql": "SELECT bucket, key, size FROM objects ORDER BY key"},
        auth=root,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "columns": ["bucket", "key", "size"],
        "rows": [["docs", "a.txt", 5]],
        "truncated": False,
    }


async def test_sql_runs_as_the_authenticated_principal(
    client: httpx.AsyncClient, store: Tier0, root: Auth
) -> None:
    store.create_bucket("roots")
    store.put("roots", "secret.txt", b"root only")
    alice, credential = store.create_user("alice")
    store.grant(alice, "s3:CreateBucket", "/alices")
    as_alice = store.as_principal(alice)
    as_alice.create_bucket("alices")
    as_alice.put("alices", "mine.txt", b"hi")
    query = {"sql": "SELECT bucket, key FROM objects ORDER BY bucket"}
    seen_by_alice = await client.post(
        "/_tier0/sql", json=query, auth=(credential.access_key, credential.secret_key)
    )
    seen_by_root = await client.post("/_tier0/sql", json=query, auth=root)
    assert seen_by_alice.status_code == 200, seen_by_alice.text
    assert seen_by_alice.json()["rows"] == [["alices", "mine.txt"]]
    assert seen_by_root.json()["rows"] == [["alices", "mine.txt"], ["roots", "secret.txt"]]


async def test_bad_sql_is_400_with_the_error_type(client: httpx.AsyncClient, root: Auth) -> None:
    response = await client.post(
        "/_tier0/sql", json={"sql": "SELECT key FROM objects WHERE"}, auth=root
    )
    assert response.status_code == 400
    assert _error(response)["type"] == "SQLSyntaxError"


async def test_writing_sql_is_403(client: httpx.AsyncClient, root: Auth) -> None:
    response = await client.post("/_tier0/sql", json={"sql": "DELETE FROM objects"}, auth=root)
    assert response.status_code == 403
    assert _error(response)["type"] == "SQLNotAllowed"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "InvalidJSON"),
        (b'["SELECT 1"]', "InvalidArgument"),
        (b'{"query": "SELECT 1"}', "InvalidArgument"),
        (b'{"sql": "SELECT 1", "timeout": 5}', "InvalidArgument"),
        (b'{"sql": "SELECT 1", "timeout_s": 0}', "InvalidArgument"),
        (b'{"sql": "SELECT 1", "timeout_s": true}', "InvalidArgument"),
        (b'{"sql": "SELECT 1", "timeout_s": 100000}', "InvalidArgument"),
    ],
)
async def test_malformed_sql_request_is_400(
    client: httpx.AsyncClient, root: Auth, body: bytes, kind: str
) -> None:
    response = await client.post("/_tier0/sql", content=body, auth=root)
    assert response.status_code == 400
    assert _error(response)["type"] == kind


async def test_sql_body_over_the_limit_is_413(client: httpx.AsyncClient, root: Auth) -> None:
    limit = Limits().sql_body_bytes_max
    padding = " " * limit
    response = await client.post(
        "/_tier0/sql", content=json.dumps({"sql": "SELECT 1" + padding}), auth=root
    )
    assert response.status_code == 413
    assert _error(response)["type"] == "RequestTooLarge"


# -- events ----------------------------------------------------------------------------------


async def test_events_after_n_are_in_order(
    client: httpx.AsyncClient, store: Tier0, root: Auth
) -> None:
    store.create_bucket("docs")
    store.put("docs", "a.txt", b"1")
    store.put("docs", "b.txt", b"22")
    response = await client.get("/_tier0/events", params={"after": 0}, auth=root)
    assert response.status_code == 200, response.text
    document = response.json()
    puts = [e for e in document["events"] if e["type"] == "ObjectCreated:Put"]
    assert [(e["key"], e["size"]) for e in puts] == [("a.txt", 1), ("b.txt", 2)]
    seqs = [e["seq"] for e in document["events"]]
    assert seqs == sorted(seqs) and document["next_after"] == seqs[-1]
    later = await client.get("/_tier0/events", params={"after": seqs[0]}, auth=root)
    assert [e["seq"] for e in later.json()["events"]] == seqs[1:]


async def test_long_poll_returns_an_event_written_while_it_waits(
    client: httpx.AsyncClient, store: Tier0, root: Auth
) -> None:
    store.create_bucket("docs")
    after = store.events.latest_seq()
    started = time.monotonic()
    poll = asyncio.create_task(
        client.get("/_tier0/events", params={"after": after, "wait_s": 10}, auth=root)
    )
    await asyncio.sleep(0.3)
    assert not poll.done()  # it is waiting, not answering with nothing
    await asyncio.to_thread(store.put, "docs", "late.txt", b"news")
    response = await poll
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    events = response.json()["events"]
    assert [(e["type"], e["key"]) for e in events] == [("ObjectCreated:Put", "late.txt")]
    assert elapsed < 5


async def test_long_poll_returns_nothing_after_wait_s(
    client: httpx.AsyncClient, store: Tier0, root: Auth
) -> None:
    after = store.events.latest_seq()
    started = time.monotonic()
    response = await client.get("/_tier0/events", params={"after": after, "wait_s": 0.4}, auth=root)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"events": [], "next_after": after}
    assert 0.4 <= elapsed < 3


async def test_long_poll_ends_when_the_server_shuts_down(
    client: httpx.AsyncClient, app: App, store: Tier0, root: Auth
) -> None:
    after = store.events.latest_seq()
    started = time.monotonic()
    poll = asyncio.create_task(
        client.get("/_tier0/events", params={"after": after, "wait_s": 30}, auth=root)
    )
    await asyncio.sleep(0.2)
    app.begin_shutdown()
    response = await poll
    assert response.status_code == 200
    assert response.json()["events"] == []
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "params",
    [{"after": "x"}, {"after": "-1"}, {"limit": "0"}, {"wait_s": "61"}, {"since": "3"}],
)
async def test_bad_event_parameters_are_400(
    client: httpx.AsyncClient, root: Auth, params: dict[str, str]
) -> None:
    response = await client.get("/_tier0/events", params=params, auth=root)
    assert response.status_code == 400
    assert _error(response)["type"] == "InvalidArgument"


async def test_events_need_a_grant(client: httpx.AsyncClient, store: Tier0) -> None:
    _, credential = store.create_user("bob")
    response = await client.get(
        "/_tier0/events", auth=(credential.access_key, credential.secret_key)
    )
    assert response.status_code == 403
    assert _error(response)["type"] == "AccessDenied"


# -- the error table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SQLSyntaxError("x"), 400),
        (InvalidBucketName("x"), 400),
        (InvalidCredentials("x"), 401),
        (AccessDenied("x"), 403),
        (SQLNotAllowed("x"), 403),
        (NoSuchKey("x"), 404),
        (NoSuchVersion("x"), 404),
        (BucketNotEmpty("x"), 409),
        (QueryTimeout("x"), 504),
        (StorageFull("x"), 507),
        (Tier0Error("x"), 500),
    ],
)
def test_status_for_maps_each_error_once(error: Tier0Error, status: int) -> None:
    assert status_for(error) == status


async def test_sql_rows_past_the_limit_are_cut_and_flagged(store: Tier0, root: Auth) -> None:
    store.create_bucket("docs")
    for key in ("a", "b", "c"):
        store.put("docs", key, b".")
    application = create_app(store, limits=Limits(sql_rows_max=2))
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://tier0") as http:
            response = await http.post(
                "/_tier0/sql", json={"sql": "SELECT key FROM objects ORDER BY key"}, auth=root
            )
    finally:
        application.close()
    assert response.json() == {"columns": ["key"], "rows": [["a"], ["b"]], "truncated": True}
