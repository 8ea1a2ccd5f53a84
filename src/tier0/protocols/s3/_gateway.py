"""The S3 gateway: a bare ASGI app that answers S3 requests from the store.

`create_s3_app` returns the app ``tier0 serve`` mounts behind its own
``/_tier0/`` routes. Every request is authenticated (`Authenticator`: SigV4
header and presigned, SigV2 header and presigned), then runs as the
authenticated principal, so the kernel authorizes and audits it. Only
path-style addressing (``/bucket/key``) is understood so far.

A request is routed by its target (the service, a bucket, an object), its
method and its subresource (``?tagging``, ``?uploads``, ``?list-type=2``...)
to one handler; each family of operations lives in its own module and
declares its routes in a ``ROUTES`` table (`_buckets`, `_listing`,
`_objects`). A subresource S3 has and tier0 does not answers ``501
NotImplemented``; other query parameters are the operation's arguments, and
like S3 the gateway ignores the ones it does not know. Every failure is
answered through `s3_error` and `render_error`, the one table at the S3 edge;
every response carries ``x-amz-request-id``.

The kernel is synchronous: its calls run on the gateway's thread pool
(`S3Gateway.run_blocking`), and bodies stream through bounded queues
(`_streaming`). There is no size limit per PUT yet, nor a 503 SlowDown under
overload.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import secrets
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import quote, unquote

from tier0._client import Tier0
from tier0.errors import AccessDenied, Tier0Error
from tier0.protocols.s3 import _buckets, _listing, _objects
from tier0.protocols.s3._auth import AuthResult, InvalidURI, SignedRequest
from tier0.protocols.s3._authenticator import Authenticator
from tier0.protocols.s3._errors import render_error, s3_error
from tier0.protocols.s3._http import (
    XML,
    Handler,
    Message,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    send_whole,
)

__all__ = [
    "ASGIApp",
    "GatewayLimits",
    "MethodNotAllowed",
    "NotImplementedOperation",
    "S3Gateway",
    "create_s3_app",
]

ASGIApp = Callable[[Scope, Receive, Send], Any]

T = TypeVar("T")

_log = logging.getLogger("tier0.s3")

#: Every operation tier0 answers, by (target, method, subresource).
ROUTES: Final[dict[tuple[str, str, str], Handler]] = {
    **_buckets.ROUTES,
    **_listing.ROUTES,
    **_objects.ROUTES,
}

#: Query parameters that select an operation, most specific first: a request
#: naming two (``?uploadId=..&tagging``) is routed by the first listed here.
#: ``list-type`` selects only as ``list-type=2``.
_SUBRESOURCES: Final = (
    "uploadId",
    "uploads",
    "tagging",
    "acl",
    "attributes",
    "versioning",
    "versions",
    "location",
    "cors",
    "policy",
    "delete",
    "list-type",
)
#: S3 subresources tier0 does not implement: naming one answers 501, rather
#: than running the plain operation and ignoring what was asked.
_UNSUPPORTED: Final = frozenset(
    {
        "accelerate",
        "analytics",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metadataConfiguration",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "torrent",
        "website",
    }
)
_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})


class NotImplementedOperation(Tier0Error):
    """A request for an S3 operation the gateway does not implement (yet)."""

    s3_code: ClassVar[str] = "NotImplemented"


class MethodNotAllowed(Tier0Error):
    """An HTTP method S3 has no operation for."""

    s3_code: ClassVar[str] = "MethodNotAllowed"


@dataclasses.dataclass(frozen=True)
class GatewayLimits:
    """What one request may cost the gateway. Each is enforced, not advisory."""

    #: Threads running kernel calls (authentication, metadata, reads, streamed writes).
    threads_max: int = 64
    #: PutObject blocks waiting for the writer thread; with ``feed_block_bytes``
    #: this bounds the memory one upload holds (~4 MiB).
    feed_depth_max: int = 4
    #: Received body pieces are gathered into blocks of about this size before
    #: they cross to the writer thread, so a large upload costs few hand-offs.
    feed_block_bytes: int = 1024 * 1024
    #: A CreateBucket body (CreateBucketConfiguration) larger than this is refused.
    create_bucket_body_bytes_max: int = 64 * 1024
    #: Keys in one ListObjectsV2 page (S3's own maximum).
    list_keys_max: int = 1000


class S3Gateway:
    """The ASGI app; see the module docstring. Build it with `create_s3_app`.

    The gateway does not own ``t0``. ``close()`` joins its threads; call it
    after the server stopped, before closing the store.
    """

    def __init__(
        self, t0: Tier0, *, region: str = "us-east-1", limits: GatewayLimits | None = None
    ) -> None:
        self.t0 = t0
        self.region = region
        self.limits = limits or GatewayLimits()
        self.authenticator = Authenticator(t0.principals.secret_for, region=region)
        #: Runs kernel calls (`run_blocking`) and streamed writes.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.limits.threads_max, thread_name_prefix="tier0-s3"
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # the server app owns lifespan; S3 has no websockets
        request_id = secrets.token_hex(8).upper()
        method: str = scope["method"]
        resource = scope.get("path", "/")
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), (b"x-amz-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            request = await self._request(scope, receive, sending, request_id)
            resource = request.path
            response = await self._dispatch(request)
        except Exception as error:
            if started:
                # Headers went out already (a GET failing mid-stream): the only
                # honest signal left is to cut the connection short of its
                # Content-Length, which raising here makes the server do.
                _log.warning("request %s: failed while streaming: %r", request_id, error)
                raise
            answer = s3_error(error)
            if answer.status >= 500:
                _log.error("request %s: %s %s failed", request_id, method, resource, exc_info=error)
            response = Response(
                answer.status,
                render_error(answer, resource=resource, request_id=request_id),
                [(b"content-type", XML)],
            )
        if response is not None:
            await send_whole(sending, response, head=method == "HEAD")

    # -- request ----------------------------------------------------------------------------

    async def _request(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> Request:
        """Authenticate the request and split it into bucket and key."""
        raw_path = scope.get("raw_path")
        raw = raw_path.decode("latin-1") if raw_path else quote(scope.get("path", "/"))
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{raw}?{query}" if query else raw
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        signed = SignedRequest.from_target(scope["method"], target, headers)
        try:
            path = unquote(signed.path, errors="strict")
        except UnicodeDecodeError:
            raise InvalidURI("The path is not valid UTF-8.") from None
        params = dict(signed.query_params())
        auth, actor = await self.run_blocking(self._authenticate, signed)
        bucket, _, key = path[1:].partition("/")
        return Request(
            method=signed.method,
            path=path,
            params=params,
            headers=dict(signed.headers),
            bucket=bucket,
            key=key,
            auth=auth,
            actor=actor,
            receive=receive,
            send=send,
            request_id=request_id,
        )

    def _authenticate(self, signed: SignedRequest) -> tuple[AuthResult, Tier0]:
        auth = self.authenticator.authenticate(signed)
        if auth.principal is None:
            # Bucket policies and ACLs that could admit anonymous requests are
            # not wired in yet, so nothing may be done anonymously.
            raise AccessDenied("Anonymous access is not allowed; sign the request.")
        return auth, self.t0.as_principal(auth.principal)

    async def run_blocking(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the gateway's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, functools.partial(function, *args, **kwargs)
        )

    # -- routing ----------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response | None:
        """The response to send whole, or None when the handler streamed its own."""
        method = request.method
        if method not in _METHODS:
            raise MethodNotAllowed(f"The method {method} is not allowed against this resource.")
        target = "service" if not request.bucket else "object" if request.key else "bucket"
        subresource = _subresource(request.params)
        handler = ROUTES.get((target, method, subresource))
        if handler is None:
            detail = f" ?{subresource}" if subresource else ""
            where = {"service": "/", "bucket": "/<bucket>", "object": "/<bucket>/<key>"}[target]
            raise NotImplementedOperation(
                f"{method} {where}{detail} is not implemented by tier0's S3 gateway."
            )
        return await handler(self, request)


def create_s3_app(
    t0: Tier0, *, region: str = "us-east-1", limits: GatewayLimits | None = None
) -> S3Gateway:
    """The S3 gateway over ``t0`` as an ASGI app (see the module docstring).

    ``region`` is the one region signatures must be scoped to and the one
    HeadBucket reports.

    >>> app = create_app(t0, fallback=create_s3_app(t0))   # doctest: +SKIP
    """
    return S3Gateway(t0, region=region, limits=limits)


def _subresource(params: dict[str, str]) -> str:
    """The subresource that selects the operation ('' for the plain one)."""
    for name in _SUBRESOURCES:
        if name in params:
            if name == "list-type":
                return "list-type=2" if params[name] == "2" else ""
            return name
    unsupported = _UNSUPPORTED.intersection(params)
    if unsupported:
        return min(unsupported)  # routes nowhere: 501 naming it
    return ""
