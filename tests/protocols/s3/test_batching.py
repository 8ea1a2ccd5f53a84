"""Small PUTs committed on the event loop, together (`_batching`), through a real
uvicorn server in this process (so the test can hold its event loop), boto3 and
http.client."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tier0
from tests import tcp
from tests.protocols.s3.live import in_process_server, make_client
from tier0.protocols.s3 import S3Gateway, create_s3_app
from tier0.server import connection_protocol

SMALL = 4096


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[S3Gateway, tier0.Tier0, Callable[[], Any], Any]]:
    """(gateway, its store, a boto3 client factory, the event loop serving it)."""
    with tier0.open(tmp_path / "store") as t0:
        credential = t0.root_credential
        assert credential is not None
        gateway = create_s3_app(t0)
        try:
            with in_process_server(gateway, http=connection_protocol(gateway.limits)) as (
                url,
                server,
            ):
                yield (
                    gateway,
                    t0,
                    lambda: make_client(
                        url, access=credential.access_key, secret=credential.secret_key
                    ),
                    server.servers[0].get_loop(),
                )
        finally:
            gateway.close()


def test_small_puts_arriving_together_share_a_commit(
    served: tuple[S3Gateway, tier0.Tier0, Callable[[], Any], Any],
) -> None:
    gateway, _, client, loop = served
    s3 = client()
    s3.create_bucket(Bucket="batched")
    bodies = {f"k{i:02d}": bytes([i]) * SMALL for i in range(16)}
    port = urllib.parse.urlsplit(s3.meta.endpoint_url).port
    assert port is not None

    def target(method: str, params: dict[str, str]) -> str:
        url = urllib.parse.urlsplit(s3.generate_presigned_url(method, Params=params))
        return f"{url.path}?{url.query}"

    # Keep-alive connections, accepted and used once (so the server has the
    # caller's secret cached), as an S3 client's pool holds them.
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in bodies]
    for connection in connections:
        connection.request("HEAD", target("head_bucket", {"Bucket": "batched"}))
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    # Hold the loop, send every PUT whole (presigned by boto3, so without the
    # Expect: 100-continue boto3 would wait on), and let the loop go once the
    # server's socket holds each one: it reads them all in one turn and
    # commits them in one batch.
    held, gate = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        gate.wait(30)

    loop.call_soon_threadsafe(hold)
    assert held.wait(10)
    try:
        before = gateway.loop_commits.statistics()
        for connection, (key, body) in zip(connections, bodies.items(), strict=True):
            connection.request("PUT", target("put_object", {"Bucket": "batched", "Key": key}), body)
        tcp.wait_until(
            lambda sockets: (
                sum(
                    s.local_port == port and s.state == tcp.ESTABLISHED and s.unread_bytes > 0
                    for s in sockets
                )
                == len(connections)
            ),
            "every PUT waiting in the server's sockets",
        )
    finally:
        gate.set()
    responses = [connection.getresponse() for connection in connections]
    assert [r.status for r in responses] == [200] * len(bodies), [r.read() for r in responses]
    etags = [r.getheader("etag") for r in responses]
    after = gateway.loop_commits.statistics()
    assert (after.batches - before.batches, after.writes - before.writes) == (1, len(bodies))
    for (key, body), etag in zip(bodies.items(), etags, strict=True):
        got = s3.get_object(Bucket="batched", Key=key)
        assert (got["Body"].read(), got["ETag"]) == (body, etag)
    for connection in connections:
        connection.close()


def test_a_put_too_large_to_inline_is_committed_on_a_thread(
    served: tuple[S3Gateway, tier0.Tier0, Callable[[], Any], Any],
) -> None:
    gateway, t0, client, _ = served
    s3 = client()
    s3.create_bucket(Bucket="batched")
    before = gateway.loop_commits.statistics()
    body = b"x" * (t0.inline_bytes_max + 1)
    s3.put_object(Bucket="batched", Key="big", Body=body)
    s3.put_object(Bucket="batched", Key="small", Body=b"y")
    assert gateway.loop_commits.statistics().writes == before.writes + 1  # the small one
    assert s3.get_object(Bucket="batched", Key="big")["Body"].read() == body
