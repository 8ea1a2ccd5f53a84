"""The HTTP API of ``tier0 serve``: a bare ASGI app that owns the ``/_tier0/`` paths.

No web framework: the measurements (shared notes, "HTTP servers") put uvicorn
with a bare ASGI app at ~20 µs per request against ~27 µs with Starlette, and
the S3 gateway that will own every other path is a per-request hot loop.
S3 bucket names cannot start with ``_``, so ``/_tier0/`` never collides with it.

Routes::

    GET  /_tier0/health                                  no auth; {"status": "ok", "version": ...}
    POST /_tier0/sql      {"sql": ..., "timeout_s"?: n}  {"columns", "rows", "truncated"};
                          with Accept: application/vnd.apache.arrow.stream, every row as Arrow IPC
    GET  /_tier0/events?after=N&limit=L&wait_s=S         {"events": [...], "next_after": N'}
    /_tier0/functions, /_tier0/triggers, /_tier0/invocations, /_tier0/secrets:
                          the DataEngine (`tier0.server._engine_api`)

Every request but ``health`` authenticates with HTTP Basic (access key as
user name, secret key as password) and then acts as that principal: the SQL
sees only what it may see, and every decision is audited by the kernel.
Errors are JSON, ``{"error": {"type": ..., "message": ...}}``, with the status
from the one table below (``_STATUS_BY_ERROR``). Every response carries an
``x-request-id`` (the client's, when it sent a sane one).

The kernel is synchronous, so every call into it runs on a thread pool owned
by the app, never on the event loop. Long polls wait on their own, bounded
pool, so that waiting clients can never starve SQL of threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import decimal
import functools
import json
import logging
import math
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, unquote

import tier0
from tier0._client import Tier0
from tier0.engine import Event, EventLog
from tier0.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketNotEmpty,
    InvalidArgument,
    InvalidCredentials,
    MetaUnavailable,
    NoSuchBucket,
    NoSuchFunction,
    NoSuchInvocation,
    NoSuchKey,
    NoSuchPipeline,
    NoSuchPrincipal,
    NoSuchStream,
    NoSuchTable,
    NoSuchTrigger,
    PreconditionFailed,
    PrincipalExists,
    QueryTimeout,
    SQLNotAllowed,
    SQLSyntaxError,
    StorageFull,
    StoreFailed,
    TableAlreadyExists,
    TableConflict,
    TableSchemaError,
    Tier0Error,
)
from tier0.identity import Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

T = TypeVar("T")

PREFIX: Final = "/_tier0/"
REALM_HEADER: Final = (b"www-authenticate", b'Basic realm="tier0"')
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

_log = logging.getLogger("tier0.server")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may cost the server. Each is enforced, not advisory."""

    #: A ``POST /_tier0/sql`` body larger than this is refused with 413.
    sql_body_bytes_max: int = 1024 * 1024
    #: ``timeout_s`` of a query when the request names none, and the most it may ask for.
    sql_timeout_s_default: float = 30.0
    sql_timeout_s_max: float = 300.0
    #: Rows in one SQL response (the rest are cut and ``truncated`` is set): a
    #: response is built whole in memory, so this bounds its size.
    sql_rows_max: int = 10_000
    #: The longest a long poll waits (``wait_s``), and how many may wait at once (then 503).
    event_wait_s_max: float = 60.0
    event_waiters_max: int = 64
    #: A long poll waits in slices this long, so a shutdown or a client that
    #: hung up releases its thread within one slice.
    event_wait_slice_s: float = 0.5
    #: Threads for short kernel calls (authentication, SQL, event reads).
    blocking_threads_max: int = 32


# The one table from kernel errors to HTTP statuses. An error takes the status
# of the nearest class in its MRO that is listed here.
_STATUS_BY_ERROR: Final[dict[type, int]] = {
    InvalidArgument: 400,
    SQLSyntaxError: 400,
    TableSchemaError: 400,
    InvalidCredentials: 401,
    AccessDenied: 403,
    SQLNotAllowed: 403,
    NoSuchBucket: 404,
    NoSuchKey: 404,
    NoSuchPrincipal: 404,
    NoSuchTable: 404,
    NoSuchFunction: 404,
    NoSuchTrigger: 404,
    NoSuchInvocation: 404,
    NoSuchStream: 404,
    NoSuchPipeline: 404,
    BucketAlreadyExists: 409,
    TableAlreadyExists: 409,
    TableConflict: 409,
    BucketNotEmpty: 409,
    PrincipalExists: 409,
    PreconditionFailed: 412,
    MetaUnavailable: 503,
    StoreFailed: 503,
    # The query ran out of time inside the server: a gateway-style timeout,
    # not 408 (which says the *client* was too slow to send its request).
    QueryTimeout: 504,
    StorageFull: 507,
    Tier0Error: 500,
}


def status_for(error: Tier0Error) -> int:
    """The HTTP status for a kernel error (500 for anything the table does not name)."""
    for cls in type(error).__mro__:
        status = _STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


class HTTPError(Exception):
    """A refusal decided at the HTTP edge (bad request shape, auth, limits)."""

    def __init__(
        self, status: int, kind: str, message: str, *, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


class _ClientGone(Exception):
    """The client disconnected before its request was read."""


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What a handler needs of an HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    receive: Receive
    request_id: str
    #: What a pattern route captured from the path (``/_tier0/functions/{name}``).
    params: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_response(status: int, document: Any, **kwargs: Any) -> Response:
    body = json.dumps(document, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return Response(status, body.encode(), **kwargs)


def _json_default(value: Any) -> Any:
    """JSON for the non-JSON values SQL rows may hold."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def event_document(event: Event) -> dict[str, Any]:
    """An event as the HTTP API shows it (``time`` in ISO 8601, UTC)."""
    return {
        "seq": event.seq,
        "type": event.type,
        "bucket": event.bucket,
        "key": event.key,
        "version_id": event.version_id,
        "size": event.size,
        "etag": event.etag,
        "principal": event.principal,
        "time": event.time.isoformat(),
        "detail": event.detail,
    }


Handler = Callable[["App", Request], Awaitable[Response]]


class App:
    """The ASGI application for one opened store. Build it with ``create_app``.

    ``fallback`` receives every request outside ``/_tier0/`` (the S3 gateway
    does), and those inside it that ``claims(scope)`` says are its own (a
    virtual-hosted S3 request, whose key may start with ``_tier0/``); without
    a fallback they get a JSON 404. ``begin_shutdown()`` makes long
    polls return at once; ``close()`` also waits for the worker threads, after
    which the store may be closed.
    """

    def __init__(
        self,
        t0: Tier0,
        *,
        limits: Limits | None = None,
        fallback: ASGIApp | None = None,
        claims: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.t0 = t0
        self.limits = limits or Limits()
        self._fallback = fallback
        self._claims = claims
        self._executor = ThreadPoolExecutor(
            self.limits.blocking_threads_max, thread_name_prefix="tier0-http"
        )
        self._waiter_executor = ThreadPoolExecutor(
            self.limits.event_waiters_max, thread_name_prefix="tier0-http-wait"
        )
        self._waiters = 0
        self._draining = False
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop waiting: long polls return what they have within one wait slice."""
        self._draining = True

    def close(self) -> None:
        """Drain and join the worker threads (blocking; idempotent). The store stays open."""
        self.begin_shutdown()
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._waiter_executor.shutdown(wait=True)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        if self._fallback is not None and (
            not path.startswith(PREFIX) or (self._claims is not None and self._claims(scope))
        ):
            # The fallback names its own requests (S3: x-amz-request-id).
            await self._fallback(scope, receive, send)
            return
        if kind != "http":
            # No websockets here: closing before accepting answers the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        request_id = _request_id(scope)
        response = await self._respond(scope, receive, request_id)
        typed = any(name == b"content-type" for name, _ in response.headers)
        headers = [
            *([] if typed else [(b"content-type", b"application/json")]),
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"cache-control", b"no-store"),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        # HEAD gets GET's headers (content-length included) and no body.
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def _respond(self, scope: Scope, receive: Receive, request_id: str) -> Response:
        method = scope["method"]
        path = scope["path"]
        try:
            handler, params = _route(method, path)
            request = Request(
                method=method,
                path=path,
                query=_query(scope),
                headers={
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
                },
                receive=receive,
                request_id=request_id,
                params=params,
            )
            response = await handler(self, request)
        except HTTPError as error:
            response = _error_response(error.status, error.kind, error.message, error.headers)
        except _ClientGone:
            # Nobody will read this; answering keeps the ASGI exchange well-formed.
            response = _error_response(400, "ClientDisconnected", "the client went away")
        except Tier0Error as error:
            status = status_for(error)
            if status >= 500:
                _log.warning("request %s: %s: %s", request_id, type(error).__name__, error)
            extra = (REALM_HEADER,) if status == 401 else ()
            response = _error_response(status, type(error).__name__, str(error), extra)
        except Exception:
            # A bug, not an operating error: log it whole, tell the client only where to look.
            _log.exception("request %s: %s %s failed", request_id, method, path)
            response = _error_response(
                500, "InternalError", f"internal error; the server log has request {request_id}"
            )
        return response

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- helpers for handlers ---------------------------------------------------------------

    async def run_blocking(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the app's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def authenticate(self, request: Request) -> Tier0:
        """The store as the principal whose HTTP Basic credentials came with ``request``."""
        access_key, secret_key = _basic_credentials(request.headers.get("authorization"))
        principal: Principal = await self.run_blocking(
            self.t0.principals.authenticate, access_key, secret_key
        )
        return self.t0.as_principal(principal)

    async def read_body(self, request: Request, *, limit: int) -> bytes:
        """The whole request body; 413 as soon as it is known to exceed ``limit`` bytes."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def wait_events(
        self, log: EventLog, request: Request, *, after: int, limit: int, wait_s: float
    ) -> list[Event]:
        """Events after ``after``, waiting up to ``wait_s`` for some; [] when none came.

        Returns early when the client hangs up or the server shuts down.
        """
        return await self.long_poll(
            request, lambda slice_s: log.wait(after, timeout_s=slice_s, limit=limit), wait_s
        )

    async def long_poll(
        self, request: Request, wait: Callable[[float], list[T]], wait_s: float
    ) -> list[T]:
        """``wait(slice_s)`` (blocking up to ``slice_s`` for a non-empty answer) in slices
        on the long-poll pool, until it answers, ``wait_s`` passed, the client hung up or
        the server is shutting down; [] when nothing came."""
        if self._waiters >= self.limits.event_waiters_max:
            raise HTTPError(
                503, "TooManyWaiters",
                f"{self._waiters} long polls are waiting already; retry, or poll with wait_s=0",
                headers=((b"retry-after", b"1"),),
            )  # fmt: skip
        self._waiters += 1
        hung_up = asyncio.ensure_future(_wait_disconnect(request.receive))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        try:
            while True:
                slice_s = max(0.0, min(self.limits.event_wait_slice_s, deadline - loop.time()))
                found = await loop.run_in_executor(self._waiter_executor, wait, slice_s)
                if found or loop.time() >= deadline or self._draining or hung_up.done():
                    return found
        finally:
            self._waiters -= 1
            hung_up.cancel()


# -- handlers --------------------------------------------------------------------------------


async def _health(app: App, request: Request) -> Response:
    return json_response(200, {"status": "ok", "version": tier0.__version__})


_SQL_FIELDS: Final = frozenset({"sql", "timeout_s"})


async def _sql(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    body = await app.read_body(request, limit=app.limits.sql_body_bytes_max)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPError(400, "InvalidJSON", f"the body is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("sql"), str):
        raise HTTPError(400, "InvalidArgument", 'send a JSON object such as {"sql": "SELECT 1"}')
    unknown = set(document) - _SQL_FIELDS
    if unknown:
        raise HTTPError(
            400, "InvalidArgument",
            f"unknown field(s) {', '.join(sorted(unknown))}; the fields are {', '.join(sorted(_SQL_FIELDS))}",
        )  # fmt: skip
    limits = app.limits
    timeout_s = document.get("timeout_s", limits.sql_timeout_s_default)
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 0 < timeout_s <= limits.sql_timeout_s_max
        or math.isnan(timeout_s)
    ):
        raise HTTPError(
            400, "InvalidArgument",
            f"timeout_s must be a number in (0, {limits.sql_timeout_s_max:g}], got {timeout_s!r}",
        )  # fmt: skip
    if ARROW_STREAM in request.headers.get("accept", ""):
        table = await app.run_blocking(actor.sql_arrow, document["sql"], timeout_s=float(timeout_s))
        return Response(200, _arrow_stream(table), ((b"content-type", ARROW_STREAM.encode()),))
    result = await app.run_blocking(
        actor.sql, document["sql"], timeout_s=float(timeout_s), rows_max=limits.sql_rows_max
    )
    return json_response(
        200,
        {
            "columns": list(result.columns),
            "rows": [list(row) for row in result.rows],
            "truncated": result.truncated,
        },
    )


#: The media type of an Arrow IPC stream: ask for it (Accept) to get every row as Arrow.
ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"


def _arrow_stream(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


_EVENT_PARAMETERS: Final = frozenset({"after", "limit", "wait_s"})


async def _events(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    unknown = set(request.query) - _EVENT_PARAMETERS
    if unknown:
        raise HTTPError(
            400, "InvalidArgument",
            f"unknown parameter(s) {', '.join(sorted(unknown))}; the parameters are after, limit, wait_s",
        )  # fmt: skip
    after = _int_parameter(request, "after", default=0, low=0)
    limit = _int_parameter(request, "limit", default=1000, low=1)
    wait_s = _float_parameter(request, "wait_s", default=0.0, high=app.limits.event_wait_s_max)
    # Reading `events` is the authorization check (root, or a tier0:ReadEvents grant); it
    # audits the decision, which takes the committer's lock, so it belongs off the loop.
    log: EventLog = await app.run_blocking(lambda: actor.events)
    if wait_s > 0:
        events = await app.wait_events(log, request, after=after, limit=limit, wait_s=wait_s)
    else:
        events = await app.run_blocking(log.read, after, limit=limit)
    return json_response(
        200,
        {
            "events": [event_document(event) for event in events],
            "next_after": events[-1].seq if events else after,
        },
    )


_ROUTES: Final[dict[str, tuple[str, Handler]]] = {
    PREFIX + "health": ("GET", _health),
    PREFIX + "sql": ("POST", _sql),
    PREFIX + "events": ("GET", _events),
}
#: Routes with names in their paths: (method, pattern, handler), added by
#: `tier0.server._engine_api` for the DataEngine.
PATTERN_ROUTES: Final[list[tuple[str, re.Pattern[str], Handler]]] = []


def _route(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    """The handler of ``method path`` and what its pattern captured; 404 or 405."""
    allowed: list[str] = []
    route = _ROUTES.get(path)
    if route is not None:
        if method == route[0] or (method == "HEAD" and route[0] == "GET"):
            return route[1], {}
        allowed.append(route[0])
    for route_method, pattern, handler in PATTERN_ROUTES:
        found = pattern.fullmatch(path)
        if found is None:
            continue
        if method == route_method or (method == "HEAD" and route_method == "GET"):
            return handler, {k: unquote(v) for k, v in found.groupdict().items()}
        allowed.append(route_method)
    if not allowed:
        raise HTTPError(
            404, "NotFound", f"no route {path}; see the routes in tier0's HTTP API (README)"
        )
    raise HTTPError(
        405, "MethodNotAllowed", f"{path} takes {', '.join(allowed)}, not {method}",
        headers=((b"allow", ", ".join(allowed).encode()),),
    )  # fmt: skip


# -- parsing ---------------------------------------------------------------------------------


def _basic_credentials(header: str | None) -> tuple[str, str]:
    """(access key, secret key) from an ``Authorization: Basic`` header; 401 otherwise."""
    if header is None:
        raise _unauthorized("send HTTP Basic credentials: your access key and secret key")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(f"use HTTP Basic authentication, not {scheme!r}")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("the Basic credentials are not base64 of UTF-8 text") from None
    access_key, colon, secret_key = decoded.partition(":")
    if not colon or not access_key:
        raise _unauthorized("Basic credentials must read access-key:secret-key")
    return access_key, secret_key


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, max_num_fields=32)
    except ValueError as error:
        raise HTTPError(400, "InvalidArgument", f"bad query string: {error}") from None
    return dict(pairs)


def _int_parameter(request: Request, name: str, *, default: int, low: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPError(
            400, "InvalidArgument", f"{name} must be an integer, got {text!r}"
        ) from None
    if value < low:
        raise HTTPError(400, "InvalidArgument", f"{name} must be at least {low}, got {value}")
    return value


def _float_parameter(request: Request, name: str, *, default: float, high: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise HTTPError(400, "InvalidArgument", f"{name} must be a number, got {text!r}") from None
    if not 0 <= value <= high:
        raise HTTPError(400, "InvalidArgument", f"{name} must be in [0, {high:g}], got {text}")
    return value


def _request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is short and plain, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return secrets.token_hex(8)


async def _wait_disconnect(receive: Receive) -> None:
    """Return once the client hangs up (the request body, if any, was read already)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:
        # A server that cannot tell us any more is as good as a hang-up; and an
        # exception left in this background task would only be logged as unretrieved.
        return


def _error_response(
    status: int, kind: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> Response:
    return json_response(status, {"error": {"type": kind, "message": message}}, headers=headers)


def _unauthorized(message: str) -> HTTPError:
    return HTTPError(401, "Unauthorized", message, headers=(REALM_HEADER,))


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, "RequestTooLarge", f"the request body is over the limit of {limit} bytes")


def create_app(
    t0: Tier0,
    *,
    limits: Limits | None = None,
    fallback: ASGIApp | None = None,
    claims: Callable[[Scope], bool] | None = None,
) -> App:
    """The ASGI app serving ``t0`` over HTTP (see the module docstring for routes).

    The app does not own ``t0``: close the app (``app.close()``, or the ASGI
    lifespan shutdown does it), then the store.

    >>> app = create_app(tier0.open("/tmp/t0"))            # doctest: +SKIP
    >>> uvicorn.run(app, port=9000)                         # doctest: +SKIP
    """
    import tier0.server._engine_api  # noqa: F401  (adds the DataEngine's routes)

    return App(t0, limits=limits, fallback=fallback, claims=claims)
