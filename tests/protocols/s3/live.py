"""Helpers for tests against a live ``tier0 serve``: credentials, clients, error codes.

The fixtures (``server``, ``s3``, ``bucket``) live in this folder's conftest;
one server is started per test module.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ACCESS = "T0GATEWAYTESTROOTKEY"
SECRET = "gateway-test-secret-0123456789abcdefghij"
REGION = "us-east-1"

bucket_numbers = itertools.count(1)


@contextlib.contextmanager
def in_process(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a thread of this process (so a test can
    reach inside the gateway or the store it serves); yields the base URL."""
    with in_process_server(app, **config) as (url, _):
        yield url


@contextlib.contextmanager
def in_process_server(app: Any, **config: Any) -> Iterator[tuple[str, Any]]:
    """`in_process`, yielding the base URL and the uvicorn server (whose
    ``servers[0].get_loop()`` is the event loop serving ``app``)."""
    import uvicorn

    from tier0.server._serve import bind

    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, **config)
    )
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def make_client(url: str, *, secret: str = SECRET, access: str = ACCESS, **config: Any) -> Any:
    """A boto3 S3 client with its default behaviour (checksums included), path-style, no retries."""
    config.setdefault("s3", {"addressing_style": "path"})
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


def error_code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a failed boto3 call."""
    response = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


class RSSPeak:
    """The largest RSS growth of process ``pid`` (this one by default) while the
    ``with`` block runs, sampled every 10 ms."""

    def __init__(self, pid: int | None = None) -> None:
        self._pid = os.getpid() if pid is None else pid
        self._stop = threading.Event()
        self.growth_bytes = 0

    def _rss(self) -> int:
        for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _sample(self, base: int) -> None:
        while not self._stop.wait(0.01):
            self.growth_bytes = max(self.growth_bytes, self._rss() - base)

    def __enter__(self) -> None:
        self._thread = threading.Thread(target=self._sample, args=(self._rss(),))
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
