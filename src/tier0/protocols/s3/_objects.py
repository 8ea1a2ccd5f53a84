"""Object operations: PutObject, GetObject, HeadObject, DeleteObject.

A PutObject body streams into ``Tier0.put`` (`write_streamed`); the checksums
it states (``Content-MD5``, ``x-amz-checksum-*`` headers and trailers) go to
the kernel, which verifies them before the write commits: a mismatch is
``400 BadDigest`` and nothing is written. CRC64NVME is not checked yet.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import TYPE_CHECKING, Final

from tier0._client import Tier0
from tier0.errors import InvalidArgument, InvalidRange, NoSuchKey
from tier0.protocols.s3._auth import AuthResult
from tier0.protocols.s3._chunked import open_body
from tier0.protocols.s3._errors import InvalidDigest
from tier0.protocols.s3._http import Handler, Request, Response, http_date, quoted_etag
from tier0.protocols.s3._streaming import stream_object, write_streamed
from tier0.store import CHECKSUM_ALGORITHMS, Expected, ObjectInfo, ObjectReader, decode_digest

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES"]

META_PREFIX: Final = "x-amz-meta-"
_CHECKSUM_PREFIX: Final = "x-amz-checksum-"
_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)")


async def put_object(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    metadata = {
        name[len(META_PREFIX) :]: value
        for name, value in headers.items()
        if name.startswith(META_PREFIX)
    }
    trailers: dict[str, str] = {}
    write = functools.partial(
        request.actor.put,
        request.bucket,
        request.key,
        content_type=headers.get("content-type") or None,
        metadata=metadata,
        md5=True,
        checksums=request_checksums(headers, request.auth, trailers),
    )
    info: ObjectInfo = await write_streamed(
        gateway, request, open_body(request.auth), write, trailers=trailers
    )
    return Response(200, headers=[(b"etag", quoted_etag(info.etag).encode())])


async def get_object(gateway: S3Gateway, request: Request) -> Response | None:
    actor, bucket, key = request.actor, request.bucket, request.key
    if request.method == "HEAD":
        info: ObjectInfo = await gateway.run_blocking(actor.head, bucket, key)
        return Response(200, headers=object_headers(info, info.size))
    range_header = request.headers.get("range")
    extra: list[tuple[bytes, bytes]] = []
    status = 200
    if range_header is None:
        reader = await gateway.run_blocking(actor.get, bucket, key)
    else:
        reader, span = await gateway.run_blocking(_open_range, actor, bucket, key, range_header)
        if span is not None:
            first, last = span
            status = 206
            extra.append((b"content-range", f"bytes {first}-{last}/{reader.info.size}".encode()))
    await stream_object(
        gateway,
        request,
        reader,
        status=status,
        headers=[*object_headers(reader.info, reader.length), *extra],
    )
    return None


async def delete_object(gateway: S3Gateway, request: Request) -> Response:
    # S3 answers 204 whether or not the key existed.
    with contextlib.suppress(NoSuchKey):
        await gateway.run_blocking(request.actor.delete, request.bucket, request.key)
    return Response(204)


def request_checksums(
    headers: dict[str, str], auth: AuthResult, trailers: dict[str, str]
) -> dict[str, Expected]:
    """What a request states about its body, for ``put(checksums=...)``.

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
    span = parse_range(header, info.size)
    if span is None:
        return actor.get(bucket, key, version_id=info.version_id), None
    first, last = span
    reader = actor.get(
        bucket, key, version_id=info.version_id, offset=first, length=last - first + 1
    )
    return reader, span


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


def object_headers(info: ObjectInfo, length: int) -> list[tuple[bytes, bytes]]:
    """The headers GetObject and HeadObject answer with for ``info`` (``length`` bytes sent)."""
    headers = [
        (b"content-length", str(length).encode()),
        (b"content-type", info.content_type.encode("latin-1", "replace")),
        (b"etag", quoted_etag(info.etag).encode()),
        (b"last-modified", http_date(info.modified)),
        (b"accept-ranges", b"bytes"),
    ]
    for name, value in info.metadata.items():
        # Headers arrived as latin-1 text; encoding back gives the client its bytes.
        headers.append(((META_PREFIX + name).encode("latin-1"), value.encode("latin-1", "replace")))
    return headers


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("object", "PUT", ""): put_object,
    ("object", "GET", ""): get_object,
    ("object", "HEAD", ""): get_object,
    ("object", "DELETE", ""): delete_object,
}
