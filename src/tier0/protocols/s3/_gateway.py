"""The S3 gateway: a bare ASGI app that answers S3 requests from the store.

`create_s3_app` returns the app ``tier0 serve`` mounts behind its own
``/_tier0/`` routes. Every request is authenticated (`Authenticator`: SigV4
header and presigned, SigV2 header and presigned), then runs as the
authenticated principal, so the kernel authorizes and audits it. Only
path-style addressing (``/bucket/key``) is understood so far.

Operations::

    GET    /                       ListBuckets
    PUT    /b                      CreateBucket (optional CreateBucketConfiguration)
    HEAD   /b                      HeadBucket
    DELETE /b                      DeleteBucket
    GET    /b?list-type=2          ListObjectsV2 (prefix, delimiter, max-keys,
                                   continuation-token, start-after, encoding-type, fetch-owner)
    PUT    /b/k                    PutObject (Content-Type, x-amz-meta-*)
    GET    /b/k                    GetObject (Range: bytes=a-b | a- | -n)
    HEAD   /b/k                    HeadObject
    DELETE /b/k                    DeleteObject (204, also for a missing key)

Anything else answers ``501 NotImplemented``. Every failure is answered through
`s3_error` and `render_error`, the one table at the S3 edge; every response
carries ``x-amz-request-id``.

The kernel is synchronous: its calls run on the gateway's thread pool. A
PutObject body streams into ``Tier0.put`` running on a worker thread, fed
through a bounded queue, so memory per upload stays bounded whatever its size,
and the body's signature is verified before the write commits, as are the
checksums it states (``Content-MD5``, ``x-amz-checksum-*`` headers and
trailers; CRC64NVME is not checked yet): a mismatch is ``400 BadDigest`` and
nothing is written. There is no size limit per PUT yet, nor a 503 SlowDown
under overload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import email.utils
import functools
import logging
import queue
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import quote, unquote

from tier0._client import Tier0
from tier0.errors import (
    AccessDenied,
    BucketAlreadyExists,
    InvalidArgument,
    InvalidRange,
    NoSuchKey,
    Tier0Error,
)
from tier0.protocols.s3._auth import AuthResult, InvalidURI, SignedRequest
from tier0.protocols.s3._authenticator import Authenticator
from tier0.protocols.s3._chunked import BodyDecoder, IncompleteBody, open_body
from tier0.protocols.s3._errors import (
    BucketAlreadyOwnedByYou,
    InvalidDigest,
    render_error,
    s3_error,
)
from tier0.protocols.s3._xml import (
    parse_create_bucket_configuration,
    render_list_buckets,
    render_list_objects_v2,
)
from tier0.store import (
    CHECKSUM_ALGORITHMS,
    Expected,
    ListPage,
    ObjectInfo,
    ObjectReader,
    decode_digest,
)

__all__ = ["ASGIApp", "GatewayLimits", "NotImplementedOperation", "S3Gateway", "create_s3_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

T = TypeVar("T")

_log = logging.getLogger("tier0.s3")

_XML: Final = b"application/xml"
_META_PREFIX: Final = "x-amz-meta-"
_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)")
#: Query parameters that carry a presigned request's authentication, not an operation.
_AUTH_PARAMS: Final = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        "x-id",  # botocore names the operation in the query; it selects nothing
    }
)
_LIST_V2_PARAMS: Final = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
    }
)
_END: Final = object()


class NotImplementedOperation(Tier0Error):
    """A request for an S3 operation the gateway does not implement (yet)."""

    s3_code: ClassVar[str] = "NotImplemented"


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str  # decoded, for routing and error Resource
    params: dict[str, str]
    headers: dict[str, str]
    bucket: str
    key: str
    auth: AuthResult
    actor: Tier0
    receive: Receive
    request_id: str


class _Response:
    """A response to send whole: status, headers, body (none for HEAD)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


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
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.limits.threads_max, thread_name_prefix="tier0-s3"
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)

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
            request = await self._request(scope, receive, request_id)
            resource = request.path
            response = await self._dispatch(request, sending)
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
            response = _Response(
                answer.status,
                render_error(answer, resource=resource, request_id=request_id),
                [(b"content-type", _XML)],
            )
        if response is not None:
            await _send_whole(sending, response, head=method == "HEAD")

    # -- request ----------------------------------------------------------------------------

    async def _request(self, scope: Scope, receive: Receive, request_id: str) -> _Request:
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
        return _Request(
            method=signed.method,
            path=path,
            params=params,
            headers=dict(signed.headers),
            bucket=bucket,
            key=key,
            auth=auth,
            actor=actor,
            receive=receive,
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
            self._executor, functools.partial(function, *args, **kwargs)
        )

    # -- routing ----------------------------------------------------------------------------

    async def _dispatch(self, request: _Request, send: Send) -> _Response | None:
        """The response to send whole, or None when the handler streamed its own."""
        method, bucket, key = request.method, request.bucket, request.key
        operation = {name for name in request.params if name not in _AUTH_PARAMS}
        if not bucket:
            if method == "GET" and not operation:
                return await self._list_buckets(request)
        elif not key:
            if method == "GET" and request.params.get("list-type") == "2":
                if operation <= _LIST_V2_PARAMS:
                    return await self._list_objects_v2(request)
            elif not operation:
                if method == "PUT":
                    return await self._create_bucket(request)
                if method == "HEAD":
                    await self.run_blocking(request.actor.head_bucket, bucket)
                    return _Response(200, headers=[(b"x-amz-bucket-region", self.region.encode())])
                if method == "DELETE":
                    await self.run_blocking(request.actor.delete_bucket, bucket)
                    return _Response(204)
        elif not operation:
            if method == "PUT":
                return await self._put_object(request)
            if method in ("GET", "HEAD"):
                return await self._get_object(request, send)
            if method == "DELETE":
                # S3 answers 204 whether or not the key existed.
                with contextlib.suppress(NoSuchKey):
                    await self.run_blocking(request.actor.delete, bucket, key)
                return _Response(204)
        detail = f" ?{', '.join(sorted(operation))}" if operation else ""
        raise NotImplementedOperation(
            f"{method} {'/' + bucket if bucket else '/'}{'/<key>' if key else ''}{detail}"
            " is not implemented by tier0's S3 gateway."
        )

    # -- buckets ----------------------------------------------------------------------------

    async def _list_buckets(self, request: _Request) -> _Response:
        buckets = await self.run_blocking(request.actor.list_buckets)
        assert request.auth.principal is not None
        body = render_list_buckets(buckets, owner=request.auth.principal.name)
        return _Response(200, body, [(b"content-type", _XML)])

    async def _create_bucket(self, request: _Request) -> _Response:
        body = await _read_body(
            request, open_body(request.auth), limit=self.limits.create_bucket_body_bytes_max
        )
        if body.strip():
            # The location is accepted whatever it says: one tier0 is one region.
            parse_create_bucket_configuration(body)
        try:
            await self.run_blocking(request.actor.create_bucket, request.bucket)
        except BucketAlreadyExists as error:
            if await self._own_bucket(request):
                raise BucketAlreadyOwnedByYou(
                    f"Your previous request to create the named bucket {request.bucket!r} succeeded"
                    " and you already own it."
                ) from error
            raise
        return _Response(200, headers=[(b"location", f"/{request.bucket}".encode())])

    async def _own_bucket(self, request: _Request) -> bool:
        """Whether the bucket exists and belongs to the requester (after a failed create)."""
        principal = request.auth.principal
        assert principal is not None
        try:
            info = await self.run_blocking(request.actor.head_bucket, request.bucket)
        except Tier0Error:
            return False
        return info.owner in (principal.id, principal.name)

    async def _list_objects_v2(self, request: _Request) -> _Response:
        params = request.params
        max_keys = _max_keys(params.get("max-keys"), self.limits.list_keys_max)
        token = params.get("continuation-token")
        start_after = params.get("start-after") or None
        resume = _decode_token(token) if token is not None else start_after
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter") or None
        encoding_type = params.get("encoding-type")
        if max_keys == 0:
            # The kernel pages at least one key; S3 answers max-keys=0 with an
            # empty, untruncated page (after checking that the bucket exists).
            await self.run_blocking(request.actor.head_bucket, request.bucket)
            page_objects: ListPage | None = None
        else:
            page_objects = await self.run_blocking(
                request.actor.list,
                request.bucket,
                prefix=prefix,
                delimiter=delimiter,
                start_after=resume,
                limit=max_keys,
            )
        page = page_objects or ListPage(
            objects=[], prefixes=[], truncated=False, next_start_after=None
        )
        next_token = _encode_token(page.next_start_after) if page.truncated else None
        body = render_list_objects_v2(
            page,
            bucket=request.bucket,
            max_keys=max_keys,
            prefix=prefix,
            delimiter=delimiter,
            continuation_token=token,
            next_continuation_token=next_token,
            start_after=start_after,
            fetch_owner=params.get("fetch-owner") == "true",
            encoding_type=encoding_type,
        )
        return _Response(200, body, [(b"content-type", _XML)])

    # -- objects ----------------------------------------------------------------------------

    async def _put_object(self, request: _Request) -> _Response:
        """Stream the body into ``put`` on a worker thread; it commits only after the
        body was received whole and verified (signature, payload hash, chunk
        signatures, trailer checksums)."""
        headers = request.headers
        metadata = {
            name[len(_META_PREFIX) :]: value
            for name, value in headers.items()
            if name.startswith(_META_PREFIX)
        }
        # Filled from decoder.finish() before the writer reads the body's end, so
        # the writer's deferred trailer checksums see them (the queue orders the two).
        trailers: dict[str, str] = {}
        checksums = _request_checksums(headers, request.auth, trailers)
        decoder = open_body(request.auth)
        loop = asyncio.get_running_loop()
        feed = _Feed(loop, depth=self.limits.feed_depth_max)
        writer = loop.run_in_executor(
            self._executor,
            functools.partial(
                request.actor.put,
                request.bucket,
                request.key,
                feed.blocks(),
                content_type=headers.get("content-type") or None,
                metadata=metadata,
                md5=True,
                checksums=checksums,
            ),
        )
        failure: BaseException | None = None
        try:
            await self._feed_body(request, decoder, feed, writer, trailers)
        except BaseException as error:
            # The writer sees the failure as an exception from its data and
            # abandons the write: nothing is committed. A cancelled request
            # must release the writer too, or its thread would wait forever.
            if not isinstance(error, Exception):
                feed.abort(IncompleteBody("The request was cancelled."))
                writer.add_done_callback(_retrieve)
                raise
            failure = error
            feed.abort(error)
        try:
            info: ObjectInfo = await writer
        except Exception:
            # The writer's own error explains a writer that stopped early; any
            # other failure of ours caused the writer's, so ours is the answer.
            if failure is None or isinstance(failure, _WriterStopped):
                raise
        if failure is not None:
            raise failure
        return _Response(200, headers=[(b"etag", _quoted_etag(info.etag).encode())])

    async def _feed_body(
        self,
        request: _Request,
        decoder: BodyDecoder,
        feed: _Feed,
        writer: asyncio.Future[Any],
        trailers: dict[str, str],
    ) -> None:
        pending: list[bytes] = []
        pending_bytes = 0
        block_bytes = self.limits.feed_block_bytes
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise IncompleteBody("The client went away before it sent the whole body.")
            for payload in decoder.feed(message.get("body", b"")):
                pending.append(payload)
                pending_bytes += len(payload)
            if pending_bytes >= block_bytes:
                await feed.put(b"".join(pending), writer)
                pending, pending_bytes = [], 0
            if not message.get("more_body", False):
                break
        # Raises unless the body is exactly the one that was signed.
        trailers.update(decoder.finish())
        if pending:
            await feed.put(b"".join(pending), writer)
        await feed.put(_END, writer)

    async def _get_object(self, request: _Request, send: Send) -> _Response | None:
        actor, bucket, key = request.actor, request.bucket, request.key
        range_header = request.headers.get("range")
        extra: list[tuple[bytes, bytes]] = []
        if request.method == "HEAD":
            info: ObjectInfo = await self.run_blocking(actor.head, bucket, key)
            return _Response(200, headers=_object_headers(info, info.size))
        if range_header is None:
            reader = await self.run_blocking(actor.get, bucket, key)
            status = 200
        else:
            reader, span = await self.run_blocking(_open_range, actor, bucket, key, range_header)
            if span is None:
                status = 200
            else:
                first, last = span
                status = 206
                content_range = f"bytes {first}-{last}/{reader.info.size}"
                extra.append((b"content-range", content_range.encode()))
        blocks = iter(reader)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*_object_headers(reader.info, reader.length), *extra],
                }
            )
            while True:
                block = await self.run_blocking(next, blocks, None)
                if block is None:
                    break
                await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            reader.close()
        return None


def create_s3_app(
    t0: Tier0, *, region: str = "us-east-1", limits: GatewayLimits | None = None
) -> S3Gateway:
    """The S3 gateway over ``t0`` as an ASGI app (see the module docstring).

    ``region`` is the one region signatures must be scoped to and the one
    HeadBucket reports.

    >>> app = create_app(t0, fallback=create_s3_app(t0))   # doctest: +SKIP
    """
    return S3Gateway(t0, region=region, limits=limits)


class _Feed:
    """A bounded hand-off of body blocks from the event loop to one writer thread.

    The loop never blocks: when the queue is full it waits for the writer to
    take a block (or to stop, having failed).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, depth: int) -> None:
        self._loop = loop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._space = asyncio.Event()

    async def put(self, item: object, writer: asyncio.Future[Any]) -> None:
        """Queue ``item``; raises `_WriterStopped` if the writer ended before taking it."""
        while True:
            self._space.clear()
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
            space = asyncio.ensure_future(self._space.wait())
            try:
                await asyncio.wait({space, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                space.cancel()
            if writer.done():
                raise _WriterStopped

    def abort(self, error: BaseException) -> None:
        """Make the writer fail with ``error``: after what is queued, or at once if full."""
        try:
            self._queue.put_nowait(error)
        except queue.Full:
            # Drop what the writer has not taken: it is to be thrown away anyway.
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put_nowait(error)

    def blocks(self) -> Iterator[bytes]:
        """The blocks, for the writer thread; raises the error given to `abort`."""
        while True:
            item = self._queue.get()
            self._loop.call_soon_threadsafe(self._space.set)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Consume a future's outcome that nobody awaits, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()


class _WriterStopped(Exception):
    """The writer thread ended before taking all of the body (it failed; its error says why)."""


# -- helpers ----------------------------------------------------------------------------------


async def _send_whole(send: Send, response: _Response, *, head: bool) -> None:
    headers = response.headers
    if not any(name == b"content-length" for name, _ in headers):
        # HeadObject states the object's length itself; everything else, its body's.
        headers = [*headers, (b"content-length", str(len(response.body)).encode())]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    # A HEAD answer (an error included) has no body, but says how long it would be.
    await send({"type": "http.response.body", "body": b"" if head else response.body})


_CHECKSUM_PREFIX: Final = "x-amz-checksum-"


def _request_checksums(
    headers: dict[str, str], auth: AuthResult, trailers: dict[str, str]
) -> dict[str, Expected]:
    """What a PutObject states about its body, for ``put(checksums=...)``.

    ``Content-MD5`` is checked here, since S3 answers ``InvalidDigest`` for a
    malformed one (`InvalidDigest`); ``x-amz-checksum-<alg>`` headers go to the
    kernel as they are (it rejects an unknown algorithm or a malformed value).
    A checksum announced in ``x-amz-trailer`` is deferred: its value is read
    from ``trailers`` once the body has been received whole. CRC64NVME is
    not verified (no fast implementation yet) and passes unchecked, as every
    checksum did before.
    """
    checksums: dict[str, Expected] = {}
    content_md5 = headers.get("content-md5")
    if content_md5 is not None:
        try:
            decode_digest("md5", content_md5.strip())
        except InvalidArgument:
            raise InvalidDigest(
                f"The Content-MD5 you specified is not valid: {content_md5!r}."
            ) from None
        checksums["md5"] = content_md5.strip()
    for name, value in headers.items():
        algorithm = name.removeprefix(_CHECKSUM_PREFIX)
        # x-amz-checksum-type (and -mode, -algorithm) name no digest.
        if name.startswith(_CHECKSUM_PREFIX) and algorithm in CHECKSUM_ALGORITHMS:
            checksums[algorithm] = value.strip()
    for name in auth.trailer_names:
        algorithm = name.removeprefix(_CHECKSUM_PREFIX)
        if algorithm in CHECKSUM_ALGORITHMS and algorithm not in checksums:
            checksums[algorithm] = functools.partial(_trailer_value, trailers, name)
    return checksums


def _trailer_value(trailers: dict[str, str], name: str) -> str:
    value = trailers.get(name)
    if value is None:
        # The decoder refuses a body without its announced trailers; this is a backstop.
        raise InvalidArgument(f"The trailer {name} was announced but never sent.")
    return value.strip()


async def _read_body(request: _Request, decoder: BodyDecoder, *, limit: int) -> bytes:
    """A small body, whole and verified; `InvalidArgument` once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise IncompleteBody("The client went away before it sent the whole body.")
        for payload in decoder.feed(message.get("body", b"")):
            size += len(payload)
            if size > limit:
                raise InvalidArgument(f"The request body is over the limit of {limit} bytes.")
            parts.append(payload)
        if not message.get("more_body", False):
            decoder.finish()
            return b"".join(parts)


def _open_range(
    actor: Tier0, bucket: str, key: str, header: str
) -> tuple[ObjectReader, tuple[int, int] | None]:
    """A reader for the ``Range`` header's bytes, and the (first, last) it covers.

    A header S3 would ignore (malformed, several ranges) gives the whole object
    and None. The version is pinned between looking up the size and reading,
    so a concurrent overwrite cannot shift the range. Raises `InvalidRange`
    when the range starts past the end.
    """
    info = actor.head(bucket, key)
    span = _parse_range(header, info.size)
    if span is None:
        return actor.get(bucket, key, version_id=info.version_id), None
    first, last = span
    reader = actor.get(
        bucket, key, version_id=info.version_id, offset=first, length=last - first + 1
    )
    return reader, span


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of ``bytes=a-b``, ``a-`` or ``-n`` in an object of ``size``.

    None for a header S3 ignores; `InvalidRange` for one that cannot be met.

    >>> _parse_range("bytes=-3", 10), _parse_range("bytes=2-", 10), _parse_range("bytes=5-2", 10)
    ((7, 9), (2, 9), None)
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise _invalid_range(header, size)
        return max(0, size - suffix), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if last < first:
        return None
    if first >= size:
        raise _invalid_range(header, size)
    return first, min(last, size - 1)


def _invalid_range(header: str, size: int) -> InvalidRange:
    error = InvalidRange("The requested range is not satisfiable")
    # S3 names the range asked for and the object's size in its error body.
    error.details = {"RangeRequested": header, "ActualObjectSize": str(size)}  # type: ignore[attr-defined]
    return error


def _object_headers(info: ObjectInfo, length: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-length", str(length).encode()),
        (b"content-type", info.content_type.encode("latin-1", "replace")),
        (b"etag", _quoted_etag(info.etag).encode()),
        (b"last-modified", email.utils.format_datetime(_utc(info.modified), usegmt=True).encode()),
        (b"accept-ranges", b"bytes"),
    ]
    for name, value in info.metadata.items():
        # Headers arrived as latin-1 text; encoding back gives the client its bytes.
        headers.append(
            ((_META_PREFIX + name).encode("latin-1"), value.encode("latin-1", "replace"))
        )
    return headers


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _quoted_etag(etag: str) -> str:
    # The store keeps ETags bare; S3 always shows them in double quotes.
    return etag if etag.startswith('"') else f'"{etag}"'


def _max_keys(text: str | None, keys_max: int) -> int:
    if text is None:
        return keys_max
    if not text.isdigit():
        raise InvalidArgument(f"max-keys must be a non-negative integer, got {text!r}")
    # S3 caps larger values silently rather than refusing them.
    return min(int(text), keys_max)


def _encode_token(start_after: str | None) -> str | None:
    if start_after is None:
        return None
    return base64.urlsafe_b64encode(start_after.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    """The key a continuation token resumes after; `InvalidArgument` if it is not one of ours."""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument("The continuation token provided is incorrect") from None
