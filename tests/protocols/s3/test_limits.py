"""The gateway's limits: the request head (size, count, deadline), two body framings,
body sizes, slow clients, and overload answered 503 SlowDown.

The head's limits are checked against a real ``tier0 serve`` with its defaults.
Timeouts and overload need small limits: those tests run the same app and
HTTP connection (`connection_protocol`) under uvicorn in a thread of the test,
with a `GatewayLimits` of their own, so they can read the gateway's statistics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import http.client
import os
import select
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import uvicorn
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import ACCESS, SECRET, RSSPeak, bucket_numbers, error_code, make_client
from tests.protocols.s3.raw import signed_headers
from tests.server.test_serve import ServeProcess
from tests.server.threaded import ThreadedServer
from tier0.protocols.s3 import GatewayLimits, S3Gateway, create_s3_app
from tier0.protocols.s3._admission import Admission, SlowDown
from tier0.protocols.s3._watchdog import RequestTimeout, Watchdogs
from tier0.server import connection_protocol, create_app

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


# -- a server of our own, with small limits --------------------------------------------------


class LimitedServer:
    """The S3 app and `connection_protocol` under uvicorn, as ``serve`` runs them,
    on a thread of the test and with ``limits``."""

    def __init__(self, data: Path, limits: GatewayLimits) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TIER0_ROOT_ACCESS_KEY", ACCESS)
            patch.setenv("TIER0_ROOT_SECRET_KEY", SECRET)
            self.t0 = tier0.open(data)
        self.gateway: S3Gateway = create_s3_app(self.t0, limits=limits)
        self.app = create_app(self.t0, fallback=self.gateway)
        config = uvicorn.Config(
            self.app,
            loop="uvloop",
            http=connection_protocol(limits),
            timeout_keep_alive=limits.keep_alive_timeout_s,
            ws="none",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
        )
        self.served = ThreadedServer(config)
        self.url = f"http://127.0.0.1:{self.served.port}"
        self.s3 = make_client(self.url)

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until no request is in flight (the gateway's own count)."""
        deadline = time.monotonic() + timeout_s
        while self.gateway.statistics().requests_in_flight:
            assert time.monotonic() < deadline, self.gateway.statistics()
            time.sleep(0.02)

    def close(self) -> None:
        self.served.close()
        self.app.close()
        self.gateway.close()
        self.t0.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedServer]:
    """Short timeouts, and 16 MiB bodies."""
    limits = GatewayLimits(
        threads_max=4,
        io_timeout_s=1.0,
        body_rate_bytes_per_s_min=4096,
        head_timeout_s=1.0,
        keep_alive_timeout_s=1,
        put_bytes_max=16 * MiB,
    )
    server = LimitedServer(tmp_path_factory.mktemp("limited") / "store", limits)
    yield server
    server.close()
    server.gateway.check()


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedServer]:
    """Room for 5 requests, 2 threads and 2 waiting calls; patient with slow clients."""
    limits = GatewayLimits(
        requests_max=5,
        threads_max=2,
        calls_queued_max=2,
        retry_after_s=3,
        io_timeout_s=10.0,
        body_rate_bytes_per_s_min=0,
    )
    server = LimitedServer(tmp_path_factory.mktemp("crowded") / "store", limits)
    yield server
    server.close()
    server.gateway.check()


def new_bucket(s3: Any) -> str:
    name = f"limits-{next(bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


# -- raw connections ------------------------------------------------------------------------


class Wire:
    """One raw TCP connection to a server, for what no HTTP client will send."""

    def __init__(self, url: str, *, receive_buffer_bytes: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer_bytes is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        self.sock.connect((parts.hostname or "", parts.port or 80))
        self.host = parts.netloc

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readable(self, timeout_s: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout_s)[0])

    def answer(self, timeout_s: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        self.sock.settimeout(timeout_s)
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def closed_within(self, timeout_s: float) -> bool:
        """Whether the server closes the connection (EOF or reset) within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def head_of(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def signed_put_head(url: str, path: str, **headers: str) -> bytes:
    """A PUT's head signed by botocore (UNSIGNED-PAYLOAD), with ``headers`` added."""
    signed = signed_headers(url, "PUT", path, payload="unsigned")
    return head_of("PUT", path, {"Host": urlsplit(url).netloc, **signed, **headers})


def absent(s3: Any, bucket: str, key: str) -> bool:
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key=key)
    return error_code(error) == ("404", 404)


# -- the request head, against tier0 serve's defaults --------------------------------------


def test_headers_over_8_kib_are_request_header_section_too_large(
    server: ServeProcess, s3: Any
) -> None:
    bucket = new_bucket(s3)
    metadata = {f"m{n}": "v" * 100 for n in range(90)}  # ~9.5 KiB of x-amz-meta-*
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata=metadata)
    assert error_code(error) == ("RequestHeaderSectionTooLarge", 400)
    assert error.value.response["Error"]["MaxSizeAllowed"] == "8192"
    assert absent(s3, bucket, "k")


def test_headers_under_8_kib_pass_to_the_metadata_limit(s3: Any) -> None:
    """Under the head's limit, S3's 2 KiB for user metadata is the next one."""
    bucket = new_bucket(s3)
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"m": "v" * 5000})
    assert error_code(error) == ("MetadataTooLarge", 400)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"m": "v" * 2000})
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"m": "v" * 2000}


def test_too_many_header_fields_are_refused(server: ServeProcess) -> None:
    headers = {"Host": "localhost", **{f"x-n{n}": "1" for n in range(300)}}
    with Wire(server.url) as wire:
        wire.send(head_of("GET", "/", headers))
        status, answered, body = wire.answer()
        assert (status, code(body)) == (400, "RequestHeaderSectionTooLarge")
        assert answered["connection"] == "close" and answered["x-amz-request-id"]
        assert wire.closed_within(5)


def test_an_endless_header_line_is_cut_early(server: ServeProcess) -> None:
    """One header line that never ends: answered once it passes the limit, not
    buffered until the client stops."""
    with Wire(server.url) as wire:
        wire.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 64 * MiB and not wire.readable(0):
                wire.send(b"a" * 65536)
                sent += 65536
        # A server that buffered the line would read on to the client's 64 MiB;
        # this one answers after ~8 KiB. What the client pushes before it sees
        # the answer depends on scheduling and socket buffers (several MiB on
        # loopback when the machine is busy), hence the wide margin.
        assert sent < 16 * MiB
        status, _, body = wire.answer()
        assert (status, code(body)) == (400, "RequestHeaderSectionTooLarge")


def test_a_uri_over_the_limit_is_invalid(server: ServeProcess) -> None:
    with Wire(server.url) as wire:
        wire.send(head_of("GET", "/bucket/" + "k" * 20000, {"Host": "x"}))
        status, _, body = wire.answer()
        assert (status, code(body)) == (400, "InvalidURI")


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param({"Content-Length": "5", "Transfer-Encoding": "chunked"}, id="CL then TE"),
        pytest.param({"Transfer-Encoding": "chunked", "Content-Length": "5"}, id="TE then CL"),
        pytest.param(
            {"Content-Length": "5", "Transfer-Encoding": "identity"}, id="CL, TE identity"
        ),
    ],
)
def test_content_length_with_transfer_encoding_is_refused(
    server: ServeProcess, s3: Any, framing: dict[str, str]
) -> None:
    bucket = new_bucket(s3)
    path = f"/{bucket}/smuggled"
    with Wire(server.url) as wire:
        wire.send(signed_put_head(server.url, path, **framing) + b"5\r\nhello\r\n0\r\n\r\n")
        status, answered, body = wire.answer()
        assert (status, code(body)) == (400, "BadRequest")
        assert answered["content-type"] == "application/xml"
        assert wire.closed_within(5)
    assert absent(s3, bucket, "smuggled")


def test_the_gateway_refuses_both_framings_behind_any_server(limited: LimitedServer) -> None:
    """A server that let both through (another HTTP server, a proxy) still gets a 400."""
    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/bucket/key",
        "raw_path": b"/bucket/key",
        "query_string": b"",
        "headers": [
            (b"host", b"localhost"),
            (b"content-length", b"5"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 9),
        "scheme": "http",
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"hello", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(limited.gateway(scope, receive, send))
    assert sent[0]["status"] == 400
    assert code(sent[1]["body"]) == "BadRequest"


# -- body sizes -----------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_unread(limited: LimitedServer) -> None:
    bucket = new_bucket(limited.s3)
    path = f"/{bucket}/declared"
    with Wire(limited.url) as wire:
        wire.send(signed_put_head(limited.url, path, **{"Content-Length": str(17 * MiB)}))
        status, answered, body = wire.answer()  # before a byte of the body
    assert (status, code(body)) == (400, "EntityTooLarge")
    assert answered["connection"] == "close"
    assert absent(limited.s3, bucket, "declared")


def test_a_decoded_length_over_the_limit_is_refused_unread(limited: LimitedServer) -> None:
    bucket = new_bucket(limited.s3)
    path = f"/{bucket}/chunked"
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(17 * MiB),
        "Content-Length": str(17 * MiB + 100),
    }
    signed = signed_headers(limited.url, "PUT", path, headers=headers, payload="trailer")
    with Wire(limited.url) as wire:
        wire.send(head_of("PUT", path, {"Host": wire.host, **signed}))
        status, _, body = wire.answer()
    assert (status, code(body)) == (400, "EntityTooLarge")
    assert absent(limited.s3, bucket, "chunked")


def test_a_body_of_unknown_length_is_cut_at_the_limit(limited: LimitedServer) -> None:
    bucket = new_bucket(limited.s3)
    path = f"/{bucket}/unknown"
    chunk = b"u" * MiB
    with Wire(limited.url) as wire:
        wire.send(signed_put_head(limited.url, path, **{"Transfer-Encoding": "chunked"}))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(17):
                wire.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                if wire.readable(0):
                    break
            wire.send(b"0\r\n\r\n")
        status, _, body = wire.answer()
    assert (status, code(body)) == (400, "EntityTooLarge")
    assert absent(limited.s3, bucket, "unknown")


def test_a_post_upload_over_the_limit_is_too_large(limited: LimitedServer) -> None:
    bucket = new_bucket(limited.s3)
    limited.s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    response = requests.post(
        f"{limited.url}/{bucket}",
        data={"key": "posted"},
        files={"file": ("f", b"p" * (16 * MiB + 1))},
        timeout=60,
    )
    assert (code(response.content), response.status_code) == ("EntityTooLarge", 400)
    assert absent(limited.s3, bucket, "posted")


# -- slow clients ---------------------------------------------------------------------------


def test_a_connection_that_says_nothing_is_closed(limited: LimitedServer) -> None:
    with Wire(limited.url) as wire:
        started = time.monotonic()
        assert wire.closed_within(5)
        assert 0.8 <= time.monotonic() - started < 4


def test_a_dribbled_head_is_answered_request_timeout(limited: LimitedServer) -> None:
    """A byte every 0.1 s keeps any idle timer happy; the head's deadline is not."""
    with Wire(limited.url) as wire:
        started = time.monotonic()
        wire.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while not wire.readable(0.1) and time.monotonic() - started < 10:
                wire.send(b"a")
        status, answered, body = wire.answer()
        assert (status, code(body)) == (400, "RequestTimeout")
        assert answered["connection"] == "close"
        assert time.monotonic() - started < 4


def test_an_idle_keep_alive_connection_is_closed(limited: LimitedServer) -> None:
    with Wire(limited.url) as wire:
        # Before the request: the server's idle timer starts after its answer, so
        # however late this thread runs, the time measured is at least the timeout.
        started = time.monotonic()
        wire.send(head_of("GET", "/_tier0/health", {"Host": wire.host}))
        assert wire.answer()[0] == 200
        assert wire.closed_within(5)
        assert 0.8 <= time.monotonic() - started < 4


def test_a_stalled_body_is_answered_request_timeout(limited: LimitedServer) -> None:
    bucket = new_bucket(limited.s3)
    path = f"/{bucket}/stalled"
    with Wire(limited.url) as wire:
        wire.send(signed_put_head(limited.url, path, **{"Content-Length": "1000"}) + b"x" * 10)
        started = time.monotonic()
        status, answered, body = wire.answer()
        assert (status, code(body)) == (400, "RequestTimeout")
        assert 0.8 <= time.monotonic() - started < 4
        assert answered["connection"] == "close"
    assert absent(limited.s3, bucket, "stalled")
    limited.wait_idle()


def test_a_trickled_body_is_answered_request_timeout(limited: LimitedServer) -> None:
    """64 bytes every 0.25 s: never idle for the 1 s timeout, but at 256 B/s far
    below the 4 KiB/s minimum."""
    bucket = new_bucket(limited.s3)
    path = f"/{bucket}/trickled"
    with Wire(limited.url) as wire:
        wire.send(signed_put_head(limited.url, path, **{"Content-Length": str(MiB)}))
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while not wire.readable(0.25) and time.monotonic() - started < 20:
                wire.send(b"t" * 64)
        status, _, body = wire.answer()
        assert (status, code(body)) == (400, "RequestTimeout")
        assert time.monotonic() - started < 5
    assert absent(limited.s3, bucket, "trickled")


def test_a_slow_but_steady_body_is_not_cut(limited: LimitedServer) -> None:
    """3 s of 32 KiB/s, three times the idle timeout: fast enough, so written."""
    bucket = new_bucket(limited.s3)
    path = f"/{bucket}/steady"
    size = 12 * 8192
    with Wire(limited.url) as wire:
        wire.send(signed_put_head(limited.url, path, **{"Content-Length": str(size)}))
        for _ in range(12):
            time.sleep(0.25)
            wire.send(b"s" * 8192)
        status, _, body = wire.answer()
        assert status == 200, body
    assert limited.s3.head_object(Bucket=bucket, Key="steady")["ContentLength"] == size


def test_a_client_that_stops_reading_is_cut(limited: LimitedServer) -> None:
    bucket = new_bucket(limited.s3)
    size = 12 * MiB
    limited.s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(size))
    path = f"/{bucket}/big"
    signed = signed_headers(limited.url, "GET", path)
    with Wire(limited.url, receive_buffer_bytes=4096) as wire:
        wire.send(head_of("GET", path, {"Host": wire.host, **signed}))
        time.sleep(3)  # read nothing, for three io timeouts
        received = 0
        wire.sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while data := wire.sock.recv(MiB):
                received += len(data)
    assert 0 < received < size  # cut short, and the connection closed
    limited.wait_idle()


# -- overload -------------------------------------------------------------------------------


class SlowUpload:
    """A chunked PUT that sends a chunk every 50 ms until `finish`."""

    def __init__(self, server: LimitedServer, bucket: str, key: str) -> None:
        self.path = f"/{bucket}/{key}"
        self.wire = Wire(server.url)
        self.wire.send(signed_put_head(server.url, self.path, **{"Transfer-Encoding": "chunked"}))
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.wire.send(b"400\r\n" + b"c" * 1024 + b"\r\n")
            self.sent += 1024

    def finish(self) -> int:
        self._stop.set()
        self._thread.join()
        self.wire.send(b"0\r\n\r\n")
        status, _, _ = self.wire.answer()
        self.wire.close()
        return status


class SlowForm:
    """An anonymous form POST whose fields never finish arriving (no thread held)."""

    def __init__(self, server: LimitedServer, bucket: str) -> None:
        self.wire = Wire(server.url)
        self.wire.send(
            head_of(
                "POST",
                f"/{bucket}",
                {
                    "Host": self.wire.host,
                    "Content-Type": "multipart/form-data; boundary=b",
                    "Content-Length": "100000",
                },
            )
            + b'--b\r\nContent-Disposition: form-data; name="key"\r\n\r\nk'
        )


def signed_get(server: LimitedServer, path: str) -> tuple[int, dict[str, str], bytes]:
    """One signed GET, sent once (boto3 would retry a 503)."""
    with Wire(server.url) as wire:
        signed = signed_headers(server.url, "GET", path)
        wire.send(head_of("GET", path, {"Host": wire.host, **signed}))
        return wire.answer()


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_requests_over_the_limit_are_slow_down(crowded: LimitedServer) -> None:
    bucket = new_bucket(crowded.s3)
    before = crowded.gateway.statistics()
    forms = [SlowForm(crowded, bucket) for _ in range(5)]
    try:
        wait_for(lambda: crowded.gateway.statistics().requests_in_flight == 5)
        status, headers, body = signed_get(crowded, f"/{bucket}")
        assert (status, code(body), headers["retry-after"]) == (503, "SlowDown", "3")
        after = crowded.gateway.statistics()
        assert after.requests_refused == before.requests_refused + 1
        assert after.calls_refused == before.calls_refused
        assert after.requests_in_flight_peak == 5
        # boto3 reads it as the throttling it backs off from.
        with pytest.raises(ClientError) as error:
            crowded.s3.list_objects_v2(Bucket=bucket)
        assert error_code(error) == ("SlowDown", 503)
    finally:
        for form in forms:
            form.wire.close()
    crowded.wait_idle()
    assert crowded.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_calls_over_the_queue_limit_are_slow_down(crowded: LimitedServer) -> None:
    """Four uploads: two writing on the two threads, two waiting for one. A fifth
    request finds no room in the queue."""
    bucket = new_bucket(crowded.s3)
    before = crowded.gateway.statistics()
    uploads = [SlowUpload(crowded, bucket, f"u{n}") for n in range(4)]
    try:

        def saturated() -> bool:
            stats = crowded.gateway.statistics()
            return stats.calls_running == 2 and stats.calls_queued == 2

        wait_for(saturated)
        status, headers, body = signed_get(crowded, f"/{bucket}")
        assert (status, code(body), headers["retry-after"]) == (503, "SlowDown", "3")
        after = crowded.gateway.statistics()
        assert after.calls_refused == before.calls_refused + 1
        assert after.requests_refused == before.requests_refused
        assert after.calls_queued_peak == 2
    finally:
        statuses = [upload.finish() for upload in uploads]
    assert statuses == [200] * 4
    for n, upload in enumerate(uploads):
        size = crowded.s3.head_object(Bucket=bucket, Key=f"u{n}")["ContentLength"]
        assert size == upload.sent
    crowded.wait_idle()


def test_a_flood_of_uploads_stays_within_the_limits(crowded: LimitedServer) -> None:
    """40 clients at once, each sending 4 MiB: every one is written or told to
    slow down, the gateway never holds more than its limits, and memory follows."""
    bucket = new_bucket(crowded.s3)
    body = os.urandom(MiB) * 4
    rss = RSSPeak()

    def upload(n: int) -> int:
        path = f"/{bucket}/flood{n}"
        try:
            with Wire(crowded.url) as wire:
                wire.send(signed_put_head(crowded.url, path, **{"Content-Length": str(len(body))}))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for start in range(0, len(body), 256 * 1024):
                        if wire.readable(0):
                            break  # answered early: refused
                        wire.send(body[start : start + 256 * 1024])
                status, _, answered = wire.answer(timeout_s=60)
        except ConnectionResetError:
            return -1
        assert status == 200 or (status, code(answered)) == (503, "SlowDown"), answered
        return status

    with rss, concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(upload, range(40)))
    assert -1 not in statuses
    written = [n for n, status in enumerate(statuses) if status == 200]
    assert written and len(written) < 40
    stats = crowded.gateway.statistics()
    assert stats.requests_in_flight_peak <= 5 and stats.calls_queued_peak <= 2
    assert stats.requests_refused + stats.calls_refused >= 40 - len(written)
    crowded.gateway.check()
    for n in written:
        assert crowded.s3.head_object(Bucket=bucket, Key=f"flood{n}")["ContentLength"] == len(body)
    # 40 bodies held at once would be 160 MiB; the gateway holds at most five requests.
    assert rss.growth_bytes < 96 * MiB, rss.growth_bytes
    crowded.wait_idle()


# -- the parts, alone -----------------------------------------------------------------------


def test_admission_refuses_requests_over_the_limit_and_counts_them() -> None:
    admission = Admission(requests_max=2, threads_max=1, calls_queued_max=1, retry_after_s=7)
    admission.admit()
    admission.admit()
    with pytest.raises(SlowDown) as refused:
        admission.admit()
    assert refused.value.retry_after_s == 7
    admission.release()
    admission.admit()
    stats = admission.statistics()
    assert (stats.requests_in_flight, stats.requests_in_flight_peak, stats.requests_refused) == (
        2,
        2,
        1,
    )
    admission.release()
    admission.release()
    admission.check()
    admission.close()


def test_bounded_executor_queues_at_most_its_limit() -> None:
    admission = Admission(requests_max=8, threads_max=2, calls_queued_max=1, retry_after_s=1)
    executor = admission.executor
    gate = threading.Event()
    running = [executor.submit(gate.wait) for _ in range(2)]
    wait_for(lambda: admission.statistics().calls_running == 2)
    queued = executor.submit(lambda: "ran")
    assert admission.statistics().calls_queued == 1
    with pytest.raises(SlowDown):
        executor.submit(lambda: "never")

    def answering() -> concurrent.futures.Future[str]:
        # A request whose answer has begun: its next block is queued, not refused.
        admission.answering()
        return executor.submit(lambda: "streamed")

    streamed = contextvars.copy_context().run(answering)
    assert admission.statistics().calls_queued == 2
    with pytest.raises(SlowDown):
        executor.submit(lambda: "never")  # this context's answer has not begun
    gate.set()
    assert streamed.result(timeout=5) == "streamed"
    assert queued.result(timeout=5) == "ran"
    assert all(future.result(timeout=5) for future in running)
    wait_for(lambda: admission.statistics().calls_running == 0)
    stats = admission.statistics()
    assert (stats.calls_queued, stats.calls_queued_peak, stats.calls_refused) == (0, 2, 2)
    admission.check()
    admission.close()


def test_watchdog_cuts_a_receive_that_never_returns() -> None:
    async def run() -> float:
        watchdog = Watchdogs(io_timeout_s=0.2, body_rate_bytes_per_s_min=0).watch()
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await never.wait()
            return {}

        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            await watchdog.receive(receive)
        watchdog.close()
        # The task goes on after the watchdog's cancellation: it can still answer.
        await asyncio.sleep(0)
        return time.monotonic() - started

    elapsed = asyncio.run(run())
    assert 0.2 <= elapsed < 3.0  # cut at its timeout, give or take a tick (and a slow machine)


def test_watchdog_cuts_a_trickle_and_spares_a_steady_body() -> None:
    async def run(piece: bytes) -> int:
        watchdog = Watchdogs(io_timeout_s=0.5, body_rate_bytes_per_s_min=1000).watch()

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return {"type": "http.request", "body": piece, "more_body": True}

        received = 0
        try:
            while received < 2000:
                received += len((await watchdog.receive(receive))["body"])
        except RequestTimeout:
            return -received
        finally:
            watchdog.close()
        return received

    assert asyncio.run(run(b"x" * 10)) < 0  # 200 B/s: cut after 0.625 s
    assert asyncio.run(run(b"x" * 500)) == 2000  # 10,000 B/s


def test_watchdog_leaves_other_cancellations_alone() -> None:
    async def run() -> None:
        async def waiting() -> None:
            watchdog = Watchdogs(io_timeout_s=5, body_rate_bytes_per_s_min=0).watch()

            async def receive() -> dict[str, Any]:
                await asyncio.Event().wait()
                return {}

            try:
                await watchdog.receive(receive)
            finally:
                watchdog.close()

        task = asyncio.ensure_future(waiting())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_one_timer_watches_every_request_and_stops_when_none_is_left() -> None:
    async def run() -> None:
        # 10x the slowest answered request's wait, so that a stalled loop (the
        # tick and the sleep due in one turn) cannot cut it.
        watchdogs = Watchdogs(io_timeout_s=1.0, body_rate_bytes_per_s_min=0)
        slow_forever = asyncio.Event()
        outcomes: dict[str, str] = {}

        async def request(name: str, delay_s: float) -> None:
            watchdog = watchdogs.watch()

            async def receive() -> dict[str, Any]:
                if delay_s < 0:
                    await slow_forever.wait()
                await asyncio.sleep(delay_s)
                return {"type": "http.request", "body": b"x"}

            try:
                await watchdog.receive(receive)
                outcomes[name] = "answered"
            except RequestTimeout:
                outcomes[name] = "cut"
            finally:
                watchdog.close()

        tasks = [
            asyncio.ensure_future(request(name, delay))
            for name, delay in (("stuck", -1), ("quick", 0.01), ("steady", 0.1))
        ]
        await asyncio.sleep(0)
        assert len(watchdogs) == 3  # all waiting, all watched by the one timer
        await asyncio.gather(*tasks)
        assert outcomes == {"stuck": "cut", "quick": "answered", "steady": "answered"}
        assert len(watchdogs) == 0
        # The next tick (due within a quarter of the timeout, and run before a
        # later deadline) finds nobody and does not re-arm.
        await asyncio.sleep(0.3)
        assert watchdogs._timer is None

    asyncio.run(run())
