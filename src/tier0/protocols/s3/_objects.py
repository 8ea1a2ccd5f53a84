"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, and the routes
of the object families beside them (CopyObject in `_copy`, tagging in
`_tagging`, GetObjectAttributes in `_attributes`, DeleteObjects in `_deletes`).

A PutObject body streams into ``Tier0.put`` (`write_streamed`); the checksums
it states (``Content-MD5``, ``x-amz-checksum-*`` for MD5, SHA-1, SHA-256,
CRC32, CRC32C and CRC64NVME, as headers or aws-chunked trailers) go to the
kernel, which verifies them before the write commits: a mismatch is ``400
BadDigest`` and nothing is written. The kernel keeps the verified digests, and
computes the one ``x-amz-checksum-algorithm`` names when no value came with
it; GET and HEAD return them with ``x-amz-checksum-mode: ENABLED`` (never for
a range, whose bytes they do not describe).

Bodies are limited to ``GatewayLimits.put_bytes_max`` (S3's 5 GiB): a
declared length over it (Content-Length, or ``x-amz-decoded-content-length``
for aws-chunked) is refused before the body is read, and the decoded bytes are
counted as they stream, for bodies that declare none. Either way the answer is
``400 EntityTooLarge`` and nothing is written.

Conditional writes (``If-None-Match: *``, ``If-Match: <etag>``) are decided by
the kernel: ``412 PreconditionFailed`` before the body is read, ``409
ConditionalRequestConflict`` when another write to the key committed while the
body streamed. Conditional reads follow `_conditions`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, TypeVar

from tier0._client import Tier0
from tier0.errors import DeleteMarkerFound, EntityTooLarge, InvalidRange, NoSuchKey
from tier0.protocols.s3 import _attributes, _deletes, _tagging
from tier0.protocols.s3._chunked import open_body
from tier0.protocols.s3._conditions import Preconditions
from tier0.protocols.s3._copy import copy_object
from tier0.protocols.s3._errors import NotImplementedOperation
from tier0.protocols.s3._http import Handler, Request, Response, http_date, quoted_etag
from tier0.protocols.s3._object_headers import (
    canned_acl,
    checksum_headers,
    delete_marker_response,
    object_headers,
    override_headers,
    parse_tagging_header,
    request_checksums,
    requested_algorithm,
    stored_headers,
    user_metadata,
    version_header,
    version_param,
    write_etag,
)
from tier0.protocols.s3._streaming import (
    SMALL_BODY_BYTES_MAX,
    stream_object,
    write_small,
    write_streamed,
)
from tier0.store import Expected, ObjectInfo, ObjectReader

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES", "parse_range"]

T = TypeVar("T")

_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)")


# -- PutObject ------------------------------------------------------------------------------


async def put_object(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    if "x-amz-copy-source" in headers:
        return await copy_object(gateway, request)
    limit = gateway.limits.put_bytes_max
    declared = _declared_size(request, limit)
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        # S3 writes only on the absence of the key; an ETag here means nothing to it.
        raise NotImplementedOperation(
            "If-None-Match on a write takes only '*' (write unless the key exists)."
        )
    trailers: dict[str, str] = {}
    checksums: dict[str, Expected | None] = {**request_checksums(headers, request.auth, trailers)}
    algorithm = requested_algorithm(headers)
    if algorithm is not None and algorithm not in checksums:
        checksums[algorithm] = None  # computed and kept, with nothing to compare
    prepare = functools.partial(
        request.actor.prepare_put,
        request.bucket,
        request.key,
        content_type=headers.get("content-type") or None,
        metadata=user_metadata(headers),
        tags=parse_tagging_header(headers.get("x-amz-tagging")),
        headers=stored_headers(headers),
        md5=True,
        checksums=checksums,
        if_match=write_etag(headers.get("if-match")),
        if_none_match=if_none_match,
        acl=canned_acl(headers),
    )
    await before_continue(
        gateway,
        request,
        functools.partial(
            request.actor.check_put,
            request.bucket,
            request.key,
            tags=prepare.keywords["tags"],
            acl=prepare.keywords["acl"],
        ),
    )
    decoder = open_body(request.auth)
    info: ObjectInfo
    if declared is not None and declared <= min(limit, SMALL_BODY_BYTES_MAX):
        info = await write_small(gateway, request, decoder, prepare, trailers=trailers)
    else:
        write = _limited(lambda blocks: prepare(blocks).commit(), limit)
        info = await write_streamed(gateway, request, decoder, write, trailers=trailers)
    return Response(
        200,
        headers=[
            (b"etag", quoted_etag(info.etag).encode()),
            *version_header(info.version_id),
            *checksum_headers(info.checksums),
        ],
    )


async def before_continue(gateway: S3Gateway, request: Request, check: Callable[[], None]) -> None:
    """Run ``check`` first when the client waits for ``100 Continue`` before sending
    its body: as S3 does, a request refused for who sent it, or where to, is answered
    before the body is invited, and the body is never sent."""
    if request.headers.get("expect", "").lower() != "100-continue":
        return
    if gateway.local_reads:
        # A few local row reads, as `Store.prepare_put` makes on the loop: a
        # hand-off to a thread would cost more. boto3 sends this header with
        # every PutObject.
        check()
    else:
        await gateway.run_blocking(check)


def _declared_size(request: Request, limit: int) -> int | None:
    """The body's declared (decoded) length, if stated; refused unread when over ``limit``."""
    if request.auth.payload.chunked:
        declared = request.auth.decoded_length
    else:
        text = request.headers.get("content-length", "")
        declared = int(text) if text.isdigit() else None
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    return declared


def _limited(write: Callable[[Iterator[bytes]], T], limit: int) -> Callable[[Iterator[bytes]], T]:
    """``write``, fed with at most ``limit`` bytes: one more raises `EntityTooLarge`."""

    def counted(blocks: Iterator[bytes]) -> Iterator[bytes]:
        total = 0
        for block in blocks:
            total += len(block)
            if total > limit:
                raise _too_large(total, limit)
            yield block

    return lambda blocks: write(counted(blocks))


def _too_large(size: int, limit: int) -> EntityTooLarge:
    error = EntityTooLarge(
        f"Your proposed upload exceeds the maximum allowed size ({limit} bytes);"
        " upload larger objects in parts."
    )
    # S3 names both sizes in its error body.
    error.details = {"ProposedSize": str(size), "MaxSizeAllowed": str(limit)}  # type: ignore[attr-defined]
    return error


# -- GetObject, HeadObject -----------------------------------------------------------------


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclasses.dataclass(slots=True)
class _Read:
    """What a GET or HEAD found: the version, and for a GET its reader (None on 304)."""

    info: ObjectInfo
    reader: ObjectReader | None
    span: tuple[int, int] | None
    not_modified: bool
    #: The bytes to send, read already when they are few (then ``reader`` is None).
    body: bytes | None = None


async def get_object(gateway: S3Gateway, request: Request) -> Response | None:
    version_id = version_param(request.params)
    conditions = Preconditions.from_headers(request.headers)
    range_header = request.headers.get("range")
    head = request.method == "HEAD"
    try:
        if gateway.local_reads:
            # Metadata reads only (the bytes come through `stream_object`):
            # cheaper made here than handed to a thread and back, which cost
            # about half of a small GET's CPU (measured).
            read = _open(
                request.actor, request.bucket, request.key,
                version_id=version_id, range_header=range_header, conditions=conditions,
                head=head, whole_small=False,
            )  # fmt: skip
        else:
            read = await gateway.run_blocking(
                _open, request.actor, request.bucket, request.key,
                version_id=version_id, range_header=range_header, conditions=conditions,
                head=head, whole_small=True,
            )  # fmt: skip
    except DeleteMarkerFound as marker:
        return delete_marker_response(request, marker)
    info = read.info
    if read.not_modified:
        # 304 has no body; S3 repeats the validators (and no other headers).
        return Response(
            304,
            headers=[
                (b"etag", quoted_etag(info.etag).encode()),
                (b"last-modified", http_date(info.modified)),
                *version_header(info.version_id, asked=version_id is not None),
            ],
        )
    length = info.size
    status = 200
    extra: list[tuple[bytes, bytes]] = []
    if read.span is not None:
        first, last = read.span
        length, status = last - first + 1, 206
        extra.append((b"content-range", f"bytes {first}-{last}/{info.size}".encode()))
    elif request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        extra.extend(checksum_headers(info.checksums))
    headers = override_headers(
        [*object_headers(info, length, version_asked=version_id is not None), *extra],
        request.params,
        request.auth,
    )
    if head:
        return Response(status, headers=headers)
    if read.body is not None:
        return Response(status, read.body, headers)
    assert read.reader is not None
    await stream_object(request, read.reader, status=status, headers=headers)
    return None


def _open(
    actor: Tier0,
    bucket: str,
    key: str,
    *,
    version_id: str | None,
    range_header: str | None,
    conditions: Preconditions,
    head: bool,
    whole_small: bool,
) -> _Read:
    """Look the version up, decide the conditions, then open the bytes a GET sends.

    The conditions are decided before the range, as HTTP orders them, on the
    version the bytes then come from (the reader opened, then narrowed to the
    range): a concurrent overwrite cannot slip between the decision and the
    bytes, and the version is authorized once, as the request named it. With
    ``whole_small`` (on a thread) a short answer's bytes are read here too;
    without, nothing waits on a chunk read (on the event loop).
    """
    if head:
        info = actor.head(bucket, key, version_id=version_id)
        if conditions.evaluate(info):
            return _Read(info, None, None, True)
        span = None if range_header is None else parse_range(range_header, info.size)
        return _Read(info, None, span, False)
    reader = actor.get(bucket, key, version_id=version_id)  # nothing read yet
    try:
        info = reader.info
        if conditions.evaluate(info):
            reader.close()
            return _Read(info, None, None, True)
        span = None if range_header is None else parse_range(range_header, info.size)
        if span is not None:
            reader = reader.within(span[0], span[1] - span[0] + 1)
    except BaseException:
        reader.close()
        raise
    read = _Read(info, reader, span, False)
    return _small_read(read) if whole_small or reader.in_memory else read


def _small_read(read: _Read) -> _Read:
    """Read a short answer whole here (on the kernel's thread, or anywhere when
    its bytes are in memory): a response sent whole costs fewer hand-offs
    and sends than a stream, more than reading a small object itself."""
    reader = read.reader
    if reader is None or reader.length > SMALL_BODY_BYTES_MAX:
        return read
    with reader:
        body = reader.read()
    return _Read(read.info, None, read.span, read.not_modified, body)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of ``bytes=a-b``, ``a-`` or ``-n`` in an object of ``size``.

    None for a header S3 ignores; `InvalidRange` for one that cannot be met.

    >>> parse_range("bytes=-3", 10), parse_range("bytes=2-", 10), parse_range("bytes=5-2", 10)
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


# -- DeleteObject ---------------------------------------------------------------------------


async def delete_object(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    try:
        result = await gateway.run_blocking(
            request.actor.delete, request.bucket, request.key, version_id=version_id
        )
    except NoSuchKey:
        return Response(204)  # S3 answers 204 whether or not the key existed
    headers: list[tuple[bytes, bytes]] = []
    if result.delete_marker:
        # A marker made now, or the marker a versioned delete removed.
        headers.append((b"x-amz-delete-marker", b"true"))
    if version_id is not None:
        headers.extend(version_header(version_id, asked=True))
    elif result.delete_marker and result.version_id is not None:
        headers.extend(version_header(result.version_id, asked=True))
    return Response(204, headers=headers)


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("object", "PUT", ""): put_object,
    ("object", "GET", ""): get_object,
    ("object", "HEAD", ""): get_object,
    ("object", "DELETE", ""): delete_object,
    **_tagging.ROUTES,
    **_attributes.ROUTES,
    **_deletes.ROUTES,
}
