"""The HTTP/1.1 connection under ``tier0 serve``: uvicorn's httptools protocol with
limits on the request head, a deadline for it, and S3's answers when they fail.

What uvicorn (0.54, httptools 0.9 on llhttp) does on its own, measured:

- no limit on the request head: httptools buffers a header line of any length
  (a 10 MB ``X-Big`` header parses) and any number of header fields;
- no deadline for the head: a client may connect and say nothing, or send
  its head a byte at a time, and hold the connection for ever;
  ``timeout_keep_alive`` runs only between the requests of a connection;
- a request with both Content-Length and Transfer-Encoding (or a
  Transfer-Encoding other than chunked, or two Content-Lengths) is refused by
  llhttp, and uvicorn answers ``400`` in ``text/plain`` ("Invalid HTTP request
  received."), which no S3 client reads as an error document.

`connection_protocol` returns uvicorn's protocol with those gaps closed, using
the limits of the S3 gateway it serves (`GatewayLimits`):

- ``header_bytes_max`` (S3's 8 KiB) and ``header_count_max``: beyond either,
  ``400 RequestHeaderSectionTooLarge`` with ``MaxSizeAllowed``, as S3 answers;
  ``target_bytes_max``: ``400 InvalidURI``. The bytes of a head still in
  progress are counted as they arrive, so a single endless header line is cut
  within one read of the limit, not when it ends;
- ``head_timeout_s`` from the connection's opening, or from the first byte of
  a later request, to the end of its head: an idle connection is closed, a
  head begun and not finished is answered ``400 RequestTimeout``;
- a head llhttp refuses: ``400 BadRequest`` in S3's XML, naming the reason.

Each such answer closes the connection: what follows on it cannot be trusted
to start a request. Once the head is in, the gateway's own watchdog times the
body (`tier0.protocols.s3`).

On a plain (not TLS) connection the app may also send a response's bytes
straight from a file, with ASGI's zero-copy send extension
(``http.response.zerocopysend``: ``file``, ``offset``, ``count``), which
uvicorn lacks: `_Sender` writes them with ``os.sendfile`` once the
transport has written everything before them, so they never enter the
process (a 64 MiB GET from the page cache took 60 % of the CPU that reading
and writing it took).

A response's head and a short body (a small GET, every error and every
write's answer) go out in one write, where uvicorn makes one for each: one
system call and one TCP segment fewer per request, on both ends (a 4 KiB
GET/PUT mix: ~5-10 % more requests/s in alternating runs).
"""

from __future__ import annotations

import asyncio
import errno
import http
import os
import secrets
from typing import Any, ClassVar, Final

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from tier0.protocols.s3 import ZERO_COPY_SEND, GatewayLimits, S3Error, render_error

__all__ = ["connection_protocol"]

#: How often a zero-copy send looks whether the transport has written what it held,
#: should its flow control not say so.
_DRAIN_POLL_S: Final = 0.001
#: A body up to this long goes out in one write with its response's head.
_COALESCE_BYTES_MAX: Final = 64 * 1024

#: Bytes of a head in progress that may arrive past the limits before the raw
#: count catches them: the precise checks run as each header line completes.
_READ_SLACK_BYTES: Final = 4 * 1024
_TIMEOUT_MESSAGE: Final = (
    "Your socket connection to the server was not read from or written to within the"
    " timeout period. Idle connections will be closed."
)


def connection_protocol(limits: GatewayLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol enforcing ``limits`` on every request head.

    Pass it as ``uvicorn.Config(http=...)``:

    >>> config = uvicorn.Config(app, http=connection_protocol(GatewayLimits()))  # doctest: +SKIP
    """
    return type("S3Connection", (_Connection,), {"limits": limits})


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; carries the answer to send."""

    def __init__(self, answer: S3Error) -> None:
        super().__init__(answer.message)
        self.answer = answer


class _Connection(HttpToolsProtocol):
    """One connection; `connection_protocol` makes the class with its ``limits``."""

    limits: ClassVar[GatewayLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: asyncio.TimerHandle | None = None
        #: Whether the parser is inside a request head (from the connection's
        #: opening until the first head is complete, then from each message's start).
        self._in_head = True
        self._messages_begun = 0
        self._raw_head_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        limits = self.limits
        self._raw_head_bytes_max = (
            limits.target_bytes_max + limits.header_bytes_max + 4 * limits.header_count_max
        ) + _READ_SLACK_BYTES
        #: The zero-copy senders holding a descriptor, until their response ends.
        self._senders: set[_Sender] = set()

    # -- connection events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        for sender in list(self._senders):
            sender.close()  # a response cut short
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, with S3's answers where it would write text/plain.
        self._unset_keepalive_if_required()
        began = self._messages_begun
        in_head = self._in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            cause = error.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.answer)
            else:
                self._refuse(_bad_request(str(error)))
            return
        # A read that began and ended inside one head is all head; a read in
        # which a message began may hold the previous message's end, and is
        # left to the precise checks in the callbacks.
        if in_head and self._in_head and self._messages_begun == began:
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self._raw_head_bytes_max:
                self._refuse(self._too_large())
                return
        if self._in_head and self._head_timer is None and not self.transport.is_closing():
            # A head begun in this read and not finished: its deadline runs
            # from now. A head that came whole (the usual case) never arms
            # one, which saved a timer armed and cancelled per request.
            self._arm_head_timer()

    # -- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages_begun += 1
        self._in_head = True
        self._raw_head_bytes = self._header_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.target_bytes_max:
            raise _Refused(
                S3Error(
                    "InvalidURI",
                    400,
                    f"The request URI is longer than {self.limits.target_bytes_max} bytes.",
                )
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # "name: value\r\n"
        if (
            self._header_bytes > self.limits.header_bytes_max
            or self._header_count > self.limits.header_count_max
        ):
            raise _Refused(self._too_large())

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            # The cycle's task has been made but not started: it reads
            # ``cycle.send`` when it starts, and finds this one.
            plain = self._plain()
            if plain:
                cycle.scope.setdefault("extensions", {})[ZERO_COPY_SEND] = {}
            cycle.send = _Sender(cycle, cycle.send, self._senders, zero_copy=plain)  # type: ignore[method-assign]

    def _plain(self) -> bool:
        """Whether the connection's bytes go to the socket as they are (no TLS)."""
        return self.transport.get_extra_info("sslcontext") is None

    # -- answers ----------------------------------------------------------------------------

    def _too_large(self) -> S3Error:
        limits = self.limits
        return S3Error(
            "RequestHeaderSectionTooLarge",
            400,
            "Your request header section exceeds the maximum allowed size"
            f" ({limits.header_bytes_max} bytes in at most {limits.header_count_max} fields).",
            {"MaxSizeAllowed": str(limits.header_bytes_max)},
        )

    def _refuse(self, answer: S3Error) -> None:
        """Answer ``answer`` and close, unless an earlier request's answer is still
        being written (then only close: two answers cannot share the connection)."""
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        request_id = secrets.token_hex(8).upper()
        body = render_error(answer, resource=self._resource(), request_id=request_id)
        head = [
            f"HTTP/1.1 {answer.status} {http.HTTPStatus(answer.status).phrase}\r\n".encode(),
            b"content-type: application/xml\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-amz-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _resource(self) -> str:
        """The path of the request being refused, as far as it arrived (for ``<Resource>``)."""
        url = getattr(self, "url", b"") or b""
        if not url.startswith(b"/") or len(url) > self.limits.target_bytes_max:
            return "/"
        return url.partition(b"?")[0].decode("latin-1")

    # -- the head's deadline ----------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self._messages_begun == 0:
            # Nothing was said on this connection: close it quietly, as an
            # idle keep-alive connection is closed.
            self.transport.close()
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind an answer still being written: the
            # connection is busy, not idle (uvicorn may even have paused
            # reading it). The head's time starts again.
            self._arm_head_timer()
            return
        self._refuse(S3Error("RequestTimeout", 400, _TIMEOUT_MESSAGE))


class _Sender:
    """A cycle's ``send``: a response's head and short body in one write, and
    ``http.response.zerocopysend`` messages (offered on plain connections only)."""

    def __init__(
        self, cycle: RequestResponseCycle, send: Any, holding: set[_Sender], *, zero_copy: bool
    ) -> None:
        self._cycle = cycle
        self._zero_copy_offered = zero_copy
        self._send = send
        #: The connection's set of senders holding a descriptor (closed if it is lost).
        self._holding = holding
        #: The connection's socket, and a duplicate of it the loop may watch
        #: (it refuses to watch the transport's own): taken at the first
        #: zero-copy send, the duplicate closed with the response (`close`).
        self._socket = -1
        self._watched = -1
        #: The wait for the socket to take more, while one is under way.
        self._waiting: asyncio.Future[None] | None = None
        self._closing = False
        #: A response's start, held until its first body message.
        self._start: Any = None
        #: Set when the app failed with its start held: nothing more is sent.
        self._cut = False

    async def __call__(self, message: Any) -> None:
        kind = message["type"]
        if self._cut:
            return
        if kind == "http.response.start":
            if self._start is not None:
                # Only uvicorn's own 500 follows a start held here: the app
                # failed after it began its answer (a GET whose next chunk
                # proved damaged). Its head counts as sent, so the answer is
                # cut short, as uvicorn does once a head went out; a 500
                # now would take back what the app had begun to say.
                self._start, self._cut = None, True
                self._cycle.transport.close()
                return
            # Held for the body that usually follows at once (see `_send_whole`).
            self._start = message
            return
        start, self._start = self._start, None
        short = (
            kind == "http.response.body" and len(message.get("body", b"")) <= _COALESCE_BYTES_MAX
        )
        if start is not None and short:
            await self._send_whole(start, message)
        else:
            if start is not None:
                await self._send(start)
            if kind == ZERO_COPY_SEND and self._zero_copy_offered:
                await self._zero_copy(message)
            else:
                await self._send(message)
        if self._cycle.response_complete:
            self.close()

    async def _send_whole(self, start: Any, body: Any) -> None:
        """The head and a short body in one write: one system call and one
        segment where uvicorn makes two of each."""
        cycle = self._cycle
        transport = cycle.transport
        collected = _Collector(transport)
        cycle.transport = collected  # type: ignore[assignment]
        try:
            await self._send(start)
            await self._send(body)
        finally:
            cycle.transport = transport
            collected.flush()

    def close(self) -> None:
        """Release what the response held; its connection's end calls it too.

        A wait under way for the watched descriptor is ended first, and the
        descriptor closed once it is unwatched: closed while watched, its
        number could be reused and then unwatched in another's name.
        """
        if self._waiting is not None:
            self._closing = True
            if not self._waiting.done():
                self._waiting.set_result(None)
            return
        if self._watched >= 0:
            watched, self._watched = self._watched, -1
            self._holding.discard(self)
            os.close(watched)

    async def _zero_copy(self, message: Any) -> None:
        cycle = self._cycle
        if not cycle.response_started or cycle.response_complete:
            raise RuntimeError(f"'{ZERO_COPY_SEND}' outside a response's body")
        count = int(message["count"])
        more_body = bool(message.get("more_body", False))
        if cycle.chunked_encoding or count > cycle.expected_content_length:
            raise RuntimeError("a zero-copy send needs a Content-Length that covers it")
        if count and not cycle.disconnected:
            file = message["file"]
            fd = file if isinstance(file, int) else file.fileno()
            await self._sendfile(fd, int(message.get("offset", 0)), count)
        cycle.expected_content_length -= count
        if not more_body:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _sendfile(self, fd: int, offset: int, count: int) -> None:
        cycle = self._cycle
        transport = cycle.transport
        # What the transport holds goes first: wait until it has written all of it.
        if transport.get_write_buffer_size():
            # With both marks at 0 the transport pauses its writer (uvicorn's
            # flow control) while it holds anything, and resumes it when empty.
            transport.set_write_buffer_limits(high=0, low=0)
            try:
                while transport.get_write_buffer_size() and not cycle.disconnected:
                    if cycle.flow.write_paused:
                        await cycle.flow.drain()
                    else:
                        await asyncio.sleep(_DRAIN_POLL_S)
            finally:
                transport.set_write_buffer_limits()
        if self._socket < 0:
            self._socket = transport.get_extra_info("socket").fileno()
        while count and not cycle.disconnected:
            try:
                sent = os.sendfile(self._socket, fd, offset, count)
            except BlockingIOError:
                if self._watched < 0:
                    self._watched = os.dup(self._socket)
                    self._holding.add(self)
                await self._writable()
                continue
            except OSError as error:
                if error.errno in (errno.EPIPE, errno.ECONNRESET):
                    # Gone: as uvicorn treats a lost client, the rest is dropped.
                    cycle.disconnected = True
                    transport.close()
                    return
                raise
            if not sent:
                raise RuntimeError(f"the file ended {count} bytes short of a zero-copy send")
            offset += sent
            count -= sent

    async def _writable(self) -> None:
        """Until the socket takes more (or `close` ends the wait)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():  # the loop may call it again before we run
                ready.set_result(None)

        self._waiting = ready
        loop.add_writer(self._watched, wake)
        try:
            await ready
        finally:
            loop.remove_writer(self._watched)
            self._waiting = None
            if self._closing:
                self.close()


class _Collector:
    """A transport's stand-in that gathers writes (and a close) until `flush`."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._parts: list[bytes] = []
        self._close = False

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def close(self) -> None:
        self._close = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def flush(self) -> None:
        if self._parts:
            self._transport.write(b"".join(self._parts))
        if self._close:
            self._transport.close()


def _bad_request(reason: str) -> S3Error:
    if "Content-Length" in reason and "Transfer-Encoding" in reason:
        message = "A request may not carry both Content-Length and Transfer-Encoding."
    else:
        message = f"The request is not valid HTTP/1.1: {reason}."
    return S3Error("BadRequest", 400, message)
