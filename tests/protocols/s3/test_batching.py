"""Small PUTs committed on the event loop, together (`_batching`), through a real
uvicorn server in this process (so the test can hold the committer) and boto3."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import tier0
from tests.protocols.s3.live import in_process, make_client
from tier0.meta import WriteTx
from tier0.protocols.s3 import S3Gateway, create_s3_app
from tier0.server import connection_protocol

SMALL = 4096


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[S3Gateway, tier0.Tier0, Callable[[], Any]]]:
    with tier0.open(tmp_path / "store") as t0:
        credential = t0.root_credential
        assert credential is not None
        gateway = create_s3_app(t0)
        try:
            with in_process(gateway, http=connection_protocol(gateway.limits)) as url:
                yield (
                    gateway,
                    t0,
                    lambda: make_client(
                        url, access=credential.access_key, secret=credential.secret_key
                    ),
                )
        finally:
            gateway.close()


def test_small_puts_arriving_together_share_a_commit(
    served: tuple[S3Gateway, tier0.Tier0, Callable[[], Any]],
) -> None:
    gateway, t0, client = served
    client().create_bucket(Bucket="batched")
    # Hold a commit open: the loop's first batch waits behind it, and the
    # requests that arrive meanwhile are read in one turn of the loop, then
    # committed in one batch.
    gate, started = threading.Event(), threading.Event()

    def hold(tx: WriteTx) -> None:
        started.set()
        gate.wait(30)

    holder = threading.Thread(target=t0._kernel.committer.run, args=(hold,))
    holder.start()
    assert started.wait(10)
    bodies = {f"k{i:02d}": bytes([i]) * SMALL for i in range(16)}
    before = gateway.loop_commits.statistics()
    with ThreadPoolExecutor(len(bodies)) as pool:
        clients = [client() for _ in bodies]
        puts = [
            pool.submit(c.put_object, Bucket="batched", Key=key, Body=body)
            for c, (key, body) in zip(clients, bodies.items(), strict=True)
        ]
        time.sleep(0.5)
        assert not any(put.done() for put in puts)  # none acknowledged before its commit
        gate.set()
        etags = [put.result()["ETag"] for put in puts]
    holder.join(timeout=30)
    after = gateway.loop_commits.statistics()
    assert after.writes - before.writes == len(bodies)
    assert after.batches - before.batches < len(bodies)
    s3 = client()
    for (key, body), etag in zip(bodies.items(), etags, strict=True):
        got = s3.get_object(Bucket="batched", Key=key)
        assert (got["Body"].read(), got["ETag"]) == (body, etag)


def test_a_put_too_large_to_inline_is_committed_on_a_thread(
    served: tuple[S3Gateway, tier0.Tier0, Callable[[], Any]],
) -> None:
    gateway, t0, client = served
    s3 = client()
    s3.create_bucket(Bucket="batched")
    before = gateway.loop_commits.statistics()
    body = b"x" * (t0.inline_bytes_max + 1)
    s3.put_object(Bucket="batched", Key="big", Body=body)
    s3.put_object(Bucket="batched", Key="small", Body=b"y")
    assert gateway.loop_commits.statistics().writes == before.writes + 1  # the small one
    assert s3.get_object(Bucket="batched", Key="big")["Body"].read() == body
