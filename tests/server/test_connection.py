"""The HTTP connection under ``tier0 serve``: ASGI's zero-copy send extension,
and a short response written whole.

A small ASGI app served by uvicorn with `connection_protocol`, as ``serve``
runs it, on a thread of the test; real sockets, real clients (http.client).
The request head's limits are tested through the S3 gateway
(tests/protocols/s3/test_limits.py).
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.server.test_serve import _self_signed
from tests.server.threaded import ThreadedServer
from tier0.protocols.s3 import ZERO_COPY_SEND, GatewayLimits
from tier0.server import connection_protocol

MiB = 1024 * 1024


class _Served:
    """``app`` under uvicorn with tier0's connection, on a thread; TLS when given a pair."""

    def __init__(
        self, app: Any, tls: tuple[Path, Path] | None = None, *, protocol: Any = None
    ) -> None:
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http=protocol or connection_protocol(GatewayLimits()),
            lifespan="off",
            log_config=None,
            log_level="critical",
            access_log=False,
            ssl_certfile=None if tls is None else str(tls[0]),
            ssl_keyfile=None if tls is None else str(tls[1]),
        )
        self.served = ThreadedServer(config)
        self.port = self.served.port

    def close(self) -> None:
        self.served.close()


def _served_open_fds() -> int:
    """Open descriptors of this process, which runs the server too."""
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(12 * MiB + 7)
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path, data


def _app(path: Path, plan: list[tuple[str, int, int]], seen: dict[str, Any]) -> Any:
    """An app answering with the pieces of ``path`` in ``plan``: ("file" | "bytes", offset, count)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        seen["extensions"] = dict(scope.get("extensions") or {})
        total = sum(count for _, _, count in plan)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(total).encode())],
            }
        )
        with open(path, "rb") as file:
            for number, (kind, offset, count) in enumerate(plan):
                more = number < len(plan) - 1
                if kind == "file":
                    message = {"type": ZERO_COPY_SEND, "file": file, "offset": offset}
                    await send({**message, "count": count, "more_body": more})
                else:
                    body = os.pread(file.fileno(), count, offset)
                    await send({"type": "http.response.body", "body": body, "more_body": more})

    return app


def _get(port: int, *, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "plan",
    [
        [("file", 0, 12 * MiB + 7)],
        # Bytes the transport may still hold go out before the file's.
        [("bytes", 0, 3 * MiB), ("file", 3 * MiB, 5 * MiB), ("bytes", 8 * MiB, 1)],
        [("file", 5, 1000), ("file", 9 * MiB, 0), ("bytes", 2000, 2 * MiB), ("file", 7, 9)],
    ],
)
def test_zero_copy_sends_the_file_bytes_in_order_with_the_rest(
    source: tuple[Path, bytes], plan: list[tuple[str, int, int]]
) -> None:
    path, data = source
    seen: dict[str, Any] = {}
    served = _Served(_app(path, plan, seen))
    try:
        status, body = _get(served.port)
    finally:
        served.close()
    assert ZERO_COPY_SEND in seen["extensions"]
    assert status == 200
    assert body == b"".join(data[offset : offset + count] for _, offset, count in plan)


def test_zero_copy_keeps_the_connection_for_the_next_request(source: tuple[Path, bytes]) -> None:
    path, data = source
    served = _Served(_app(path, [("file", 0, 4 * MiB), ("file", 4 * MiB, 1)], {}))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", served.port)
        for _ in range(3):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.read() == data[: 4 * MiB + 1]
        connection.close()
    finally:
        served.close()


def test_zero_copy_waits_for_a_slow_reader(source: tuple[Path, bytes]) -> None:
    # 12 MiB does not fit in the socket's buffers: the send waits for the
    # reader to make room, many times, and loses nothing.
    path, data = source
    served = _Served(_app(path, [("file", 0, len(data))], {}))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", served.port)
        connection.request("GET", "/")
        response = connection.getresponse()
        pieces = []
        while piece := response.read(256 * 1024):
            pieces.append(piece)
            time.sleep(0.002)
        connection.close()
    finally:
        served.close()
    assert b"".join(pieces) == data


def test_zero_copy_past_the_content_length_cuts_the_response(source: tuple[Path, bytes]) -> None:
    path, _ = source

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with open(path, "rb") as file:
            message = {"type": ZERO_COPY_SEND, "file": file, "offset": 0, "count": 11}
            await send(message)

    served = _Served(app)
    try:
        with pytest.raises(http.client.IncompleteRead):
            _get(served.port)
    finally:
        served.close()


def test_zero_copy_is_not_offered_over_tls(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    # sendfile would write past TLS: the bytes must go through the transport.
    path, data = source
    seen: dict[str, Any] = {}
    served = _Served(_app(path, [("bytes", 0, MiB)], seen), tls=_self_signed(tmp_path))
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        status, body = _get(served.port, context=context)
    finally:
        served.close()
    assert (status, body) == (200, data[:MiB])
    assert ZERO_COPY_SEND not in seen["extensions"]


def test_zero_copy_stops_quietly_when_the_client_goes_away(source: tuple[Path, bytes]) -> None:
    path, data = source
    finished = threading.Event()
    inner = _app(path, [("file", 0, len(data))], {})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await inner(scope, receive, send)
        finished.set()

    served = _Served(app)
    try:
        assert _get(served.port)[0] == 200
        before = _served_open_fds()
        for _ in range(3):
            finished.clear()
            connection = http.client.HTTPConnection("127.0.0.1", served.port)
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read(1024)  # the server is waiting for room in the socket now
            connection.sock.close()
            connection.close()
            assert finished.wait(10), "the app never returned"
        # The server still answers others, and holds nothing for the lost ones.
        assert _get(served.port)[0] == 200
        deadline = time.monotonic() + 5
        while (after := _served_open_fds()) > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert after <= before
    finally:
        served.close()


def test_zero_copy_leaves_no_descriptor_open(source: tuple[Path, bytes]) -> None:
    path, data = source
    served = _Served(_app(path, [("file", 0, MiB), ("file", MiB, MiB)], {}))
    try:
        _get(served.port)
        before = _served_open_fds()
        for _ in range(20):
            assert _get(served.port)[1] == data[: 2 * MiB]
        # The server closes its end of the last connection a moment after the client.
        deadline = time.monotonic() + 5
        while (after := _served_open_fds()) > before and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        served.close()
    assert after <= before


class _Writes:
    """A transport that records each write it passes on (the server's view of the wire)."""

    def __init__(self, transport: Any, log: list[bytes]) -> None:
        self._transport = transport
        self._log = log

    def write(self, data: bytes) -> None:
        self._log.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _recording_protocol(log: list[bytes]) -> Any:
    base = connection_protocol(GatewayLimits())

    class Recording(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.transport = _Writes(transport, log)

    return Recording


def _body_app(size: int, *, close: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", str(size).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x" * size})

    return app


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_short_response_goes_out_in_one_write(method: str) -> None:
    log: list[bytes] = []
    served = _Served(_body_app(4096), protocol=_recording_protocol(log))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", served.port)
        for _ in range(3):
            connection.request(method, "/")
            response = connection.getresponse()
            assert response.status == 200
            assert response.read() == (b"x" * 4096 if method == "GET" else b"")
        connection.close()
    finally:
        served.close()
    assert len(log) == 3
    for write in log:
        head, _, body = write.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body == (b"x" * 4096 if method == "GET" else b"")


def test_an_app_failing_after_its_start_is_cut_short_not_answered_500() -> None:
    # The start is held for the body that usually follows; when the app fails
    # instead, what it began must not turn into uvicorn's 500.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("the next block proved damaged")

    log: list[bytes] = []
    served = _Served(app, protocol=_recording_protocol(log))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        connection.request("GET", "/")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            connection.getresponse().read()
        connection.close()
    finally:
        served.close()
    assert b"".join(log) == b""


def _get_recorded(app: Any, tls: tuple[Path, Path] | None = None) -> tuple[int, bytes, list[bytes]]:
    """One GET of ``app``: its status, its body, and the server's writes."""
    log: list[bytes] = []
    served = _Served(app, tls=tls, protocol=_recording_protocol(log))
    context = None
    if tls is not None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        status, body = _get(served.port, context=context)
    finally:
        served.close()
    return status, body, log


def test_a_short_response_goes_out_in_one_write_over_tls(tmp_path: Path) -> None:
    status, body, log = _get_recorded(_body_app(4096), _self_signed(tmp_path))
    assert (status, body) == (200, b"x" * 4096)
    assert len(log) == 1 and log[0].endswith(b"\r\n\r\n" + b"x" * 4096)


def test_a_short_response_that_closes_its_connection_is_written_before_the_close() -> None:
    status, body, log = _get_recorded(_body_app(10, close=True))
    assert (status, body) == (200, b"x" * 10)
    assert len(log) == 1 and log[0].endswith(b"\r\n\r\n" + b"x" * 10)


def test_a_long_body_is_not_copied_to_join_its_head() -> None:
    status, body, log = _get_recorded(_body_app(4 * MiB))
    assert (status, body) == (200, b"x" * 4 * MiB)
    assert len(log) == 2 and log[0].endswith(b"\r\n\r\n") and len(log[1]) == 4 * MiB
