"""The S3 gateway: a bare ASGI app that answers S3 requests from the store.

`create_s3_app` returns the app ``tier0 serve`` mounts behind its own
``/_tier0/`` routes. Every request is authenticated (`Authenticator`: SigV4
header and presigned, SigV2 header and presigned), then runs as the
authenticated principal, so the kernel authorizes and audits it; an
unsigned request runs as the anonymous principal, which only a bucket
policy or an ACL admits. The kernel also gets the request's context (client
address, TLS, User-Agent, Referer) for policy conditions.
Path-style addressing (``/bucket/key``) always works; given base ``domains``
(``tier0 serve --s3-domain``), a request whose Host is ``<bucket>.<domain>``
addresses that bucket (virtual-hosted style, ``/key``), and one whose Host is
a domain itself, or anything else, is path-style.

A request is routed by its target (the service, a bucket, an object), its
method and its subresource (``?tagging``, ``?uploads``, ``?list-type=2``...)
to one handler; each family of operations lives in its own module and
declares its routes in a ``ROUTES`` table (`_buckets`, `_listing`,
`_objects`, `_multipart`). A subresource S3 has and tier0 does not answers ``501
NotImplemented``; other query parameters are the operation's arguments, and
like S3 the gateway ignores the ones it does not know. Every failure is
answered through `s3_error` and `render_error`, the one table at the S3 edge;
every response carries ``x-amz-request-id``.

The kernel is synchronous: its calls run on the gateway's thread pool
(`S3Gateway.run_blocking`), and bodies stream through bounded queues
(`_streaming`). A PutObject body is limited to ``GatewayLimits.put_bytes_max``
(S3's 5 GiB).

Overload and slow clients are bounded (`GatewayLimits`): at most
``requests_max`` requests in flight and ``calls_queued_max`` kernel calls
waiting for a thread, beyond which a request is answered ``503 SlowDown`` with
``Retry-After`` (`_admission`); a client that stops sending its body, or
reading its answer, is cut after ``io_timeout_s`` (``400 RequestTimeout``,
`_watchdog`). The request head's limits (size, count, time) are enforced
below the app, by the HTTP connection ``tier0 serve`` runs
(`tier0.server.connection_protocol`); a request with both Content-Length and
Transfer-Encoding is refused there, and again here (``400 BadRequest``) for a
server that lets one through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import quote, unquote

from tier0._client import Tier0
from tier0.errors import InvalidArgument, Tier0Error
from tier0.identity import ANONYMOUS, RequestContext
from tier0.protocols.s3 import _bucketconf, _buckets, _listing, _multipart, _objects, _post
from tier0.protocols.s3._admission import Admission, AdmissionStatistics, SlowDown
from tier0.protocols.s3._auth import AuthResult, InvalidURI, SignedRequest
from tier0.protocols.s3._authenticator import Authenticator
from tier0.protocols.s3._batching import LoopCommits
from tier0.protocols.s3._errors import (
    BadRequest,
    NotImplementedOperation,
    render_error,
    s3_error,
)
from tier0.protocols.s3._http import (
    XML,
    ZERO_COPY_SEND,
    Handler,
    Message,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    send_whole,
)
from tier0.protocols.s3._watchdog import Watchdogs

__all__ = [
    "ASGIApp",
    "GatewayLimits",
    "MethodNotAllowed",
    "NotImplementedOperation",
    "S3Gateway",
    "bucket_of_host",
    "create_s3_app",
    "normal_domain",
]

ASGIApp = Callable[[Scope, Receive, Send], Any]

T = TypeVar("T")

_log = logging.getLogger("tier0.s3")

#: Every operation tier0 answers, by (target, method, subresource).
ROUTES: Final[dict[tuple[str, str, str], Handler]] = {
    **_buckets.ROUTES,
    **_listing.ROUTES,
    **_objects.ROUTES,
    **_multipart.ROUTES,
    **_bucketconf.ROUTES,
    **_post.ROUTES,
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
    "policyStatus",
    "delete",
    "list-type",
    # Last: beside uploadId it names UploadPart's part; alone, the part a GET reads.
    "partNumber",
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
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


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
    #: Keys in one page of ListObjects, ListObjectsV2 or ListObjectVersions (S3's own maximum).
    list_keys_max: int = 1000
    #: A PutBucketVersioning body larger than this is refused (a real one is ~150 bytes).
    versioning_body_bytes_max: int = 4 * 1024
    #: The largest PutObject body (decoded), and the largest CopyObject source:
    #: S3's 5 GiB. Larger objects are uploaded in parts.
    put_bytes_max: int = 5 * 1024**3

    # -- overload (`_admission`) --
    #: Requests in flight, from the request head to the answer's last byte; one
    #: more is answered 503 SlowDown before anything else is done for it.
    requests_max: int = 1024
    #: Kernel calls and streamed writes waiting for one of the ``threads_max``
    #: threads; one more fails its request with 503 SlowDown.
    calls_queued_max: int = 256
    #: The Retry-After of a 503 SlowDown.
    retry_after_s: int = 1

    # -- slow clients (`_watchdog`) --
    #: The longest the gateway waits for the next body bytes, or for the client
    #: to take more of the answer: then 400 RequestTimeout (or a cut answer).
    io_timeout_s: float = 20.0
    #: After ``io_timeout_s`` of grace, the least average rate a body must come
    #: at (counting only the time the gateway waited for it); 0 for no minimum.
    body_rate_bytes_per_s_min: float = 1024.0

    # -- the request head, enforced by the HTTP connection (`tier0.server`) --
    #: The header fields of one request, ``name: value\r\n`` each: S3's 8 KiB
    #: (400 RequestHeaderSectionTooLarge beyond, as S3 answers).
    header_bytes_max: int = 8 * 1024
    #: Header fields in one request (each costs memory whatever its size).
    header_count_max: int = 256
    #: The request target (path and query). A 1,024-byte key percent-encoded is
    #: 3 KiB; a presigned URL with a session token adds a few more.
    target_bytes_max: int = 16 * 1024
    #: From a connection's first byte (or its opening) to the end of the
    #: request head: a client dribbling its headers is cut after this.
    head_timeout_s: float = 30.0
    #: How long an idle keep-alive connection stays open between requests.
    keep_alive_timeout_s: int = 5

    # -- browser-form POST uploads (`_post`) --
    #: The form fields before the file, together (S3: 20 KB; beyond it
    #: 400 MaxPostPreDataLengthExceededError).
    post_fields_bytes_max: int = 20 * 1024
    #: Form fields in one POST, the file included.
    post_field_count_max: int = 64


class S3Gateway:
    """The ASGI app; see the module docstring. Build it with `create_s3_app`.

    The gateway does not own ``t0``. ``close()`` joins its threads; call it
    after the server stopped, before closing the store.
    """

    def __init__(
        self,
        t0: Tier0,
        *,
        region: str = "us-east-1",
        limits: GatewayLimits | None = None,
        domains: Sequence[str] = (),
    ) -> None:
        self.t0 = t0
        #: Whether lookups run on the event loop (`tier0.Store.local_reads`).
        self.local_reads = t0.local_reads
        #: Objects this small are put without a thread (`_batching`).
        self.inline_bytes_max = t0.inline_bytes_max
        #: Commits small writes on the loop, those of one turn together.
        self.loop_commits = LoopCommits()
        self.region = region
        if isinstance(domains, str):  # a str is a Sequence[str] of its letters
            raise TypeError(f"domains is a sequence of domain names, not the str {domains!r}")
        #: Base domains of virtual-hosted-style requests, longest first so that
        #: the most specific one wins (``s3.example.com`` before ``example.com``).
        self.domains = tuple(sorted({normal_domain(d) for d in domains}, key=len, reverse=True))
        self.limits = limits or GatewayLimits()
        self.authenticator = Authenticator(t0.principals.secret_for, region=region)
        # Request ids as S3 shows them (16 hex digits): a random prefix per
        # gateway (so per worker process) and a counter, which costs nothing,
        # where a fresh random id per request costs a system call.
        prefix = secrets.token_hex(3).upper()
        counter = itertools.count()
        self._request_id: Callable[[], str] = lambda: f"{prefix}{next(counter) % 16**10:010X}"
        #: Bounds requests in flight and the calls waiting for a thread.
        self.admission = Admission(
            requests_max=self.limits.requests_max,
            threads_max=self.limits.threads_max,
            calls_queued_max=self.limits.calls_queued_max,
            retry_after_s=self.limits.retry_after_s,
        )
        #: Times every request's waits on its client (`_watchdog`).
        self.watchdogs = Watchdogs(
            io_timeout_s=self.limits.io_timeout_s,
            body_rate_bytes_per_s_min=self.limits.body_rate_bytes_per_s_min,
        )
        #: Runs kernel calls (`run_blocking`) and streamed writes; `SlowDown`
        #: from ``submit`` when ``calls_queued_max`` calls wait already.
        self.executor: concurrent.futures.Executor = self.admission.executor

    def close(self) -> None:
        self.admission.close()

    def statistics(self) -> AdmissionStatistics:
        """Requests in flight, calls queued and running, their peaks and refusals."""
        return self.admission.statistics()

    def check(self) -> None:
        """Assert the gateway's counts are consistent and within its limits."""
        self.admission.check()

    def claims(self, scope: Scope) -> bool:
        """Whether a request is S3's whatever its path: virtual-hosted style
        (``Host: BUCKET.<domain>``), where the whole path is the key."""
        if not self.domains or scope.get("type") != "http":
            return False
        host = next((v for k, v in scope["headers"] if k.lower() == b"host"), None)
        return host is not None and bucket_of_host(host.decode("latin-1"), self.domains) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # the server app owns lifespan; S3 has no websockets
        request_id = self._request_id()
        method: str = scope["method"]
        resource = scope.get("path", "/")
        started = False
        body_unread = _declares_body(scope)
        #: CORS headers for a request with an Origin the bucket's rules admit.
        cors: list[tuple[bytes, bytes]] = []
        watchdog = self.watchdogs.watch()

        async def receiving() -> Message:
            nonlocal body_unread
            message = await watchdog.receive(receive)
            if not message.get("more_body", False):
                body_unread = False
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # From now on a failure cuts the answer short; none is refused.
                self.admission.answering()
                headers = [
                    *message.get("headers", ()),
                    *cors,
                    (b"x-amz-request-id", request_id.encode()),
                ]
                if body_unread:
                    # Answered before the body was read (a failed condition, a
                    # refused size): the client may still send it, or may have
                    # waited for a 100 Continue that never came, so the
                    # connection's next bytes cannot be trusted to start a request.
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await watchdog.send(send, message)

        admitted = False
        try:
            try:
                # First, before any work is done for the request: under
                # overload, refusing is the cheapest answer there is.
                self.admission.admit()
                admitted = True
                _check_framing(scope)
                request = await self._request(scope, receiving, sending, request_id)
                resource = request.path
                if "origin" in request.headers:
                    cors.extend(await _bucketconf.cors_headers(self, request))
                response = await self._dispatch(request)
            except Exception as error:
                if started:
                    # Headers went out already (a GET failing mid-stream): the only
                    # honest signal left is to cut the connection short of its
                    # Content-Length, which raising here makes the server do.
                    _log.warning("request %s: failed while streaming: %r", request_id, error)
                    raise
                answer = s3_error(error)
                if answer.status >= 500 and answer.code not in ("NotImplemented", "SlowDown"):
                    _log.error(
                        "request %s: %s %s failed", request_id, method, resource, exc_info=error
                    )
                headers = [(b"content-type", XML)]
                if isinstance(error, SlowDown):
                    headers.append((b"retry-after", str(error.retry_after_s).encode()))
                response = Response(
                    answer.status,
                    render_error(answer, resource=resource, request_id=request_id),
                    headers,
                )
            if response is not None:
                await send_whole(sending, response, head=method == "HEAD")
        finally:
            watchdog.close()
            if admitted:
                self.admission.release()

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
        host = next((value for name, value in headers if name.lower() == "host"), None)
        host_bucket = bucket_of_host(host, self.domains)
        signed = SignedRequest.from_target(
            scope["method"], target, headers, host_bucket=host_bucket
        )
        try:
            path = unquote(signed.path, errors="strict")
        except UnicodeDecodeError:
            raise InvalidURI("The path is not valid UTF-8.") from None
        params = dict(signed.query_params())
        named = dict(signed.headers)
        client = scope.get("client")
        # What bucket policy conditions may ask of the request (aws:SourceIp, ...).
        context = RequestContext(
            source_ip=client[0] if client else None,
            secure_transport=scope.get("scheme") == "https",
            user_agent=named.get("user-agent"),
            referer=named.get("referer"),
        )
        # On the event loop: with the secret cached (`Principals.secret_for`)
        # this is a few HMACs, cheaper than a hand-off to the thread pool and
        # back; a cache miss costs one metadata read here every few seconds.
        auth, actor = self._authenticate(signed, context)
        if host_bucket is None:
            bucket, _, key = path[1:].partition("/")
        else:
            # The whole path is the key; errors name the resource path-style.
            bucket, key = host_bucket, path[1:]
            path = f"/{bucket}/{key}" if key else f"/{bucket}"
        return Request(
            method=signed.method,
            path=path,
            params=params,
            headers=named,
            bucket=bucket,
            key=key,
            auth=auth,
            actor=actor,
            receive=receive,
            send=send,
            request_id=request_id,
            zero_copy=ZERO_COPY_SEND in scope.get("extensions", {}),
        )

    def _authenticate(
        self, signed: SignedRequest, context: RequestContext
    ) -> tuple[AuthResult, Tier0]:
        auth = self.authenticator.authenticate(signed)
        # An unsigned request runs as the anonymous principal: the kernel
        # admits it only where a bucket policy or an ACL does.
        principal = ANONYMOUS if auth.principal is None else auth.principal
        return auth, self.t0.as_principal(principal, context=context)

    async def run_blocking(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the gateway's thread pool."""
        # What loop.run_in_executor does, less its check that ``function`` is
        # not a coroutine function (inspect's, ~10 us a call).
        return await asyncio.wrap_future(self.executor.submit(function, *args, **kwargs))

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
    t0: Tier0,
    *,
    region: str = "us-east-1",
    limits: GatewayLimits | None = None,
    domains: Sequence[str] = (),
) -> S3Gateway:
    """The S3 gateway over ``t0`` as an ASGI app (see the module docstring).

    ``region`` is the one region signatures must be scoped to and the one
    HeadBucket and GetBucketLocation report. ``domains`` are the base domains
    of virtual-hosted-style requests (``Host: bucket.s3.example.com`` with
    ``"s3.example.com"``); `InvalidArgument` if one is not a host name.

    >>> app = create_app(t0, fallback=create_s3_app(t0, domains=["s3.localhost"]))   # doctest: +SKIP
    """
    return S3Gateway(t0, region=region, limits=limits, domains=domains)


def normal_domain(domain: str) -> str:
    """``domain`` as `bucket_of_host` compares it: lower case, no trailing dot.

    Raises `InvalidArgument` for anything but a DNS name (no scheme, port or path).

    >>> normal_domain("S3.Example.COM.")
    's3.example.com'
    """
    name = domain.strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidArgument(
            f"{domain!r} is not a domain name for virtual-hosted buckets; give one like s3.example.com"
        )
    return name


def bucket_of_host(host: str | None, domains: Sequence[str]) -> str | None:
    """The bucket a Host header names under one of ``domains`` (normalized, longest
    first), or None for a path-style request.

    >>> bucket_of_host("photos.s3.localhost:9000", ("s3.localhost",))
    'photos'
    >>> bucket_of_host("s3.localhost:9000", ("s3.localhost",)) is None
    True
    """
    if not host or not domains or host.startswith("["):  # no Host, or an IPv6 literal
        return None
    name = host.strip().lower().partition(":")[0].rstrip(".")
    for domain in domains:
        if name == domain:
            return None  # a domain itself, even one under a shorter domain
        if name.endswith(domain) and name[-len(domain) - 1 : -len(domain)] == ".":
            return name[: -len(domain) - 1]
    return None


def _declares_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunked)."""
    for name, value in scope["headers"]:
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _check_framing(scope: Scope) -> None:
    """Refuse a request whose body has two framings (Content-Length and
    Transfer-Encoding): the server and a proxy before it could each take a
    different one, and read the rest of the body as a smuggled request."""
    content_length = transfer_encoding = False
    for name, _ in scope["headers"]:
        name = name.lower()
        content_length = content_length or name == b"content-length"
        transfer_encoding = transfer_encoding or name == b"transfer-encoding"
    if content_length and transfer_encoding:
        raise BadRequest("A request may not carry both Content-Length and Transfer-Encoding.")


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
