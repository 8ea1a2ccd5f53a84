"""Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads,
and GetObject/HeadObject of one part (``?partNumber=N``).

The kernel (`tier0.store._multipart`) decides everything about uploads; this
module translates:

- CreateMultipartUpload takes the object's description (Content-Type,
  ``x-amz-meta-*``, the stored standard headers, ``x-amz-tagging``) and the
  checksum the parts are checked with (``x-amz-checksum-algorithm``,
  ``x-amz-checksum-type``; a combination S3 does not allow is ``400
  InvalidRequest``). Both are echoed in the answer's headers.
- UploadPart streams like PutObject (`write_streamed`): bounded memory,
  ``Content-MD5``, ``x-amz-checksum-*`` headers and aws-chunked trailers
  verified before the part commits. The answer carries the part's ETag and
  its ``x-amz-checksum-<alg>`` digests, which clients send back on completion.
- UploadPartCopy (UploadPart with ``x-amz-copy-source``) takes
  ``x-amz-copy-source-range: bytes=first-last`` (both ends given, inside the
  source) and the ``x-amz-copy-source-if-*`` conditions, decided on the
  version that is then copied. The answer is CopyPartResult.
- CompleteMultipartUpload parses its body with the hardened parser and lets
  the kernel check the parts (InvalidPart, InvalidPartOrder, EntityTooSmall),
  the ``Checksum<ALG>`` each part names, the object checksum stated in an
  ``x-amz-checksum-<alg>`` header, ``x-amz-mp-object-size``, and the
  conditions ``If-None-Match: *`` and ``If-Match: <etag>``. Completion copies
  no data, so the answer is sent whole (S3's 200-then-error for slow
  completions is not needed). Its root is ``CompleteMultipartUploadResult``.
- GET/HEAD with ``partNumber`` answer ``206`` with that part's bytes,
  ``Content-Range`` and ``x-amz-mp-parts-count``; an object not uploaded in
  parts is its own part 1. ``partNumber`` with a ``Range`` is ``400
  InvalidRequest``; a part the object does not have, ``416 InvalidPartNumber``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from tier0._client import Tier0
from tier0.errors import DeleteMarkerFound, EntityTooLarge, InvalidArgument
from tier0.protocols.s3 import _objects
from tier0.protocols.s3._chunked import open_body
from tier0.protocols.s3._conditions import Preconditions
from tier0.protocols.s3._copy import copy_source_errors, parse_copy_source
from tier0.protocols.s3._errors import InvalidRequest, NotImplementedOperation
from tier0.protocols.s3._http import (
    Handler,
    Request,
    Response,
    http_date,
    quoted_etag,
    read_body,
    xml_response,
)
from tier0.protocols.s3._listing import max_keys_of
from tier0.protocols.s3._object_headers import (
    CHECKSUM_PREFIX,
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
from tier0.protocols.s3._streaming import stream_object, write_streamed
from tier0.protocols.s3._xml import (
    CHECKSUM_ELEMENTS,
    COMPLETE_XML_BYTES_MAX,
    PART_NUMBER_MAX,
)
from tier0.protocols.s3._xml_multipart import (
    parse_complete_multipart_upload,
    render_complete_multipart_upload,
    render_copy_part_result,
    render_initiate_multipart_upload,
    render_list_multipart_uploads,
    render_list_parts,
)
from tier0.store import (
    PART_BYTES_MAX,
    Expected,
    ObjectInfo,
    ObjectReader,
    PartRef,
    UploadedPart,
    UploadPage,
    checksum_settings,
)

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES", "part_number_of"]

#: Uploads in one ListMultipartUploads page, parts in one ListParts page (S3's maxima).
LIST_UPLOADS_MAX: Final = 1000
LIST_PARTS_MAX: Final = 1000

_PART_NUMBER: Final = re.compile(r"\d{1,5}")
_COPY_RANGE: Final = re.compile(r"bytes=(\d+)-(\d+)")


# -- create, upload ---------------------------------------------------------------------------


async def create_multipart_upload(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    algorithm = headers.get("x-amz-checksum-algorithm")
    kind = headers.get("x-amz-checksum-type")
    try:
        algorithm, kind = checksum_settings(algorithm, kind)
    except InvalidArgument as error:
        raise InvalidRequest(str(error)) from None
    upload = await gateway.run_blocking(
        request.actor.create_multipart_upload,
        request.bucket,
        request.key,
        content_type=headers.get("content-type") or None,
        metadata=user_metadata(headers),
        tags=parse_tagging_header(headers.get("x-amz-tagging")),
        headers=stored_headers(headers),
        acl=canned_acl(headers),
        checksum_algorithm=algorithm,
        checksum_type=kind,
    )
    response = xml_response(
        render_initiate_multipart_upload(
            bucket=request.bucket, key=request.key, upload_id=upload.upload_id
        )
    )
    if upload.checksum_algorithm is not None and upload.checksum_type is not None:
        response.headers += [
            (b"x-amz-checksum-algorithm", CHECKSUM_ELEMENTS[upload.checksum_algorithm].encode()),
            (b"x-amz-checksum-type", upload.checksum_type.encode()),
        ]
    return response


async def upload_part(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    if "x-amz-copy-source" in headers:
        return await upload_part_copy(gateway, request)
    number = part_number_of(request.params)
    _check_declared_size(request)
    await _objects.before_continue(
        gateway, request, functools.partial(request.actor.check_put, request.bucket, request.key)
    )
    trailers: dict[str, str] = {}
    checksums: dict[str, Expected | None] = {**request_checksums(headers, request.auth, trailers)}
    algorithm = requested_algorithm(headers)
    if algorithm is not None and algorithm not in checksums:
        checksums[algorithm] = None  # computed and kept, with nothing to compare
    write = functools.partial(
        request.actor.upload_part,
        request.bucket,
        request.key,
        request.params["uploadId"],
        number,
        checksums=checksums,
    )
    part: UploadedPart = await write_streamed(
        gateway, request, open_body(request.auth), write, trailers=trailers
    )
    return Response(
        200, headers=[(b"etag", quoted_etag(part.etag).encode()), *_part_checksums(part)]
    )


async def upload_part_copy(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    number = part_number_of(request.params)
    source = parse_copy_source(headers["x-amz-copy-source"])
    with copy_source_errors():
        found, part = await gateway.run_blocking(
            _copy_part,
            request.actor,
            (request.bucket, request.key, request.params["uploadId"], number),
            source,
            conditions=Preconditions.from_headers(headers, prefix="x-amz-copy-source-"),
            range_header=headers.get("x-amz-copy-source-range"),
        )
    response = xml_response(
        render_copy_part_result(
            etag=part.etag, last_modified=part.modified, checksums=part.checksums
        )
    )
    if source[2] is not None or found.version_id != "null":
        response.headers.append(
            (b"x-amz-copy-source-version-id", found.version_id.encode("latin-1", "replace"))
        )
    response.headers += _part_checksums(part)
    return response


def _copy_part(
    actor: Tier0,
    target: tuple[str, str, str, int],
    source: tuple[str, str, str | None],
    *,
    conditions: Preconditions,
    range_header: str | None,
) -> tuple[ObjectInfo, UploadedPart]:
    """Decide the source's conditions and range on one version, then copy exactly that."""
    source_bucket, source_key, version_id = source
    found = actor.head(source_bucket, source_key, version_id=version_id)
    conditions.check_copy_source(found)
    offset, length = 0, found.size
    if range_header is not None:
        offset, length = _copy_range(range_header, found.size)
    if length > PART_BYTES_MAX:
        raise InvalidRequest(
            "The specified copy source is larger than the maximum allowable size for a copy"
            f" source: {PART_BYTES_MAX}"
        )
    part = actor.upload_part_copy(
        *target,
        source_bucket,
        source_key,
        version_id=found.version_id,
        offset=offset,
        length=length,
    )
    return found, part


def _copy_range(header: str, size: int) -> tuple[int, int]:
    """(offset, length) of ``x-amz-copy-source-range: bytes=first-last``, inside ``size`` bytes.

    >>> _copy_range("bytes=0-9", 100)
    (0, 10)
    """
    match = _COPY_RANGE.fullmatch(header.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where"
            " first and last are the zero-based offsets of the first and last bytes to copy"
        )
    first, last = int(match[1]), int(match[2])
    if last >= size:
        raise InvalidArgument(f"Range specified is not valid for source object of size: {size}")
    return first, last - first + 1


def _check_declared_size(request: Request) -> None:
    """Refuse a part whose declared (decoded) length is over `PART_BYTES_MAX`, unread.

    The kernel counts the bytes as they stream too, for bodies that declare none.
    """
    if request.auth.payload.chunked:
        declared = request.auth.decoded_length
    else:
        text = request.headers.get("content-length", "")
        declared = int(text) if text.isdigit() else None
    if declared is not None and declared > PART_BYTES_MAX:
        error = EntityTooLarge(
            f"Your proposed upload exceeds the maximum allowed size ({PART_BYTES_MAX} bytes)."
        )
        error.details = {  # type: ignore[attr-defined]
            "ProposedSize": str(declared),
            "MaxSizeAllowed": str(PART_BYTES_MAX),
        }
        raise error


def _part_checksums(part: UploadedPart) -> list[tuple[bytes, bytes]]:
    """``x-amz-checksum-<alg>`` for each S3 digest of a part (its type is the upload's)."""
    return [
        ((CHECKSUM_PREFIX + algorithm).encode(), part.checksums[algorithm].encode("ascii"))
        for algorithm in CHECKSUM_ELEMENTS
        if algorithm in part.checksums
    ]


def part_number_of(params: dict[str, str]) -> int:
    """The ``partNumber`` parameter: an integer from 1 to 10,000, else `InvalidArgument`.

    >>> part_number_of({"partNumber": "7"})
    7
    """
    text = params.get("partNumber", "")
    number = int(text) if _PART_NUMBER.fullmatch(text) else 0
    if not 1 <= number <= PART_NUMBER_MAX:
        error = InvalidArgument(
            f"Part number must be an integer between 1 and {PART_NUMBER_MAX}, inclusive"
        )
        error.details = {"ArgumentName": "partNumber", "ArgumentValue": text}  # type: ignore[attr-defined]
        raise error
    return number


# -- complete, abort --------------------------------------------------------------------------


async def complete_multipart_upload(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        # S3 writes only on the absence of the key; an ETag here means nothing to it.
        raise NotImplementedOperation(
            "If-None-Match on a write takes only '*' (write unless the key exists)."
        )
    body = await read_body(request, limit=COMPLETE_XML_BYTES_MAX)
    parts = parse_complete_multipart_upload(body)
    stated = {
        algorithm: headers[CHECKSUM_PREFIX + algorithm]
        for algorithm in CHECKSUM_ELEMENTS
        if CHECKSUM_PREFIX + algorithm in headers
    }
    size_text = headers.get("x-amz-mp-object-size")
    if size_text is not None and not size_text.strip().isdigit():
        raise InvalidArgument(f"x-amz-mp-object-size must be a byte count, got {size_text!r}")
    info: ObjectInfo = await gateway.run_blocking(
        request.actor.complete_multipart_upload,
        request.bucket,
        request.key,
        request.params["uploadId"],
        [PartRef(part.number, part.etag, part.checksums) for part in parts],
        if_match=write_etag(headers.get("if-match")),
        if_none_match=if_none_match,
        checksums=stated,
        object_size=None if size_text is None else int(size_text),
    )
    response = xml_response(
        render_complete_multipart_upload(
            location=f"/{request.bucket}/{quote(request.key)}",
            bucket=request.bucket,
            key=request.key,
            etag=info.etag,
            checksums=info.checksums,
        )
    )
    response.headers += version_header(info.version_id)
    return response


async def abort_multipart_upload(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(
        request.actor.abort_multipart_upload,
        request.bucket,
        request.key,
        request.params["uploadId"],
    )
    return Response(204)


# -- listing ----------------------------------------------------------------------------------


async def list_parts(gateway: S3Gateway, request: Request) -> Response:
    params = request.params
    max_parts = max_keys_of(params.get("max-parts"), LIST_PARTS_MAX)
    marker_text = params.get("part-number-marker") or "0"
    if not marker_text.isdigit():
        raise InvalidArgument(f"part-number-marker must be an integer, got {marker_text!r}")
    marker = int(marker_text)
    page = await gateway.run_blocking(
        request.actor.list_parts,
        request.bucket,
        request.key,
        params["uploadId"],
        part_number_marker=marker,
        limit=max(max_parts, 1),
    )
    if max_parts == 0:
        # The kernel pages at least one part; S3 answers max-parts=0 with none.
        page = dataclasses.replace(
            page, parts=[], truncated=bool(page.parts), next_part_number_marker=marker
        )
    return xml_response(
        render_list_parts(
            page, bucket=request.bucket, max_parts=max_parts, part_number_marker=marker
        )
    )


async def list_multipart_uploads(gateway: S3Gateway, request: Request) -> Response:
    params = request.params
    max_uploads = max_keys_of(params.get("max-uploads"), LIST_UPLOADS_MAX)
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter") or None
    key_marker = params.get("key-marker") or None
    upload_id_marker = params.get("upload-id-marker") or None
    if max_uploads == 0:
        await gateway.run_blocking(request.actor.head_bucket, request.bucket)
        page = UploadPage([], [], False, None, None)
    else:
        page = await gateway.run_blocking(
            request.actor.list_multipart_uploads,
            request.bucket,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            # S3 ignores the upload id marker without a key marker.
            upload_id_marker=upload_id_marker if key_marker is not None else None,
            limit=max_uploads,
        )
    return xml_response(
        render_list_multipart_uploads(
            page,
            bucket=request.bucket,
            max_uploads=max_uploads,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker or "",
            upload_id_marker=upload_id_marker or "",
            encoding_type=params.get("encoding-type"),
        )
    )


# -- reading one part -------------------------------------------------------------------------


async def get_part(gateway: S3Gateway, request: Request) -> Response | None:
    number = part_number_of(request.params)
    if "range" in request.headers:
        raise InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    version_id = version_param(request.params)
    conditions = Preconditions.from_headers(request.headers)
    try:
        reader = await gateway.run_blocking(
            request.actor.get_part, request.bucket, request.key, number, version_id=version_id
        )
    except DeleteMarkerFound as marker:
        return delete_marker_response(request, marker)
    try:
        info = reader.info
        if conditions.evaluate(info):
            reader.close()
            return Response(
                304,
                headers=[
                    (b"etag", quoted_etag(info.etag).encode()),
                    (b"last-modified", http_date(info.modified)),
                    *version_header(info.version_id, asked=version_id is not None),
                ],
            )
        headers = override_headers(
            [
                *object_headers(info, reader.length, version_asked=version_id is not None),
                *_part_headers(request, reader, number),
            ],
            request.params,
            request.auth,
        )
    except BaseException:
        reader.close()
        raise
    status = 206 if reader.length else 200
    if request.method == "HEAD":
        reader.close()
        return Response(status, headers=headers)
    await stream_object(request, reader, status=status, headers=headers)
    return None


def _part_headers(request: Request, reader: ObjectReader, number: int) -> list[tuple[bytes, bytes]]:
    """Content-Range and parts count of a part read, and its checksums when asked for."""
    info = reader.info
    headers = []
    if reader.length:
        last = reader.offset + reader.length - 1
        headers.append((b"content-range", f"bytes {reader.offset}-{last}/{info.size}".encode()))
    if info.parts:
        headers.append((b"x-amz-mp-parts-count", str(len(info.parts)).encode()))
    if request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        if info.parts:
            part = next(p for p in info.parts if p.number == number)
            headers += [
                ((CHECKSUM_PREFIX + algorithm).encode(), part.checksums[algorithm].encode())
                for algorithm in CHECKSUM_ELEMENTS
                if algorithm in part.checksums
            ]
        else:
            headers += checksum_headers(info.checksums)  # part 1 is the whole object
    return headers


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("object", "POST", "uploads"): create_multipart_upload,
    ("object", "PUT", "uploadId"): upload_part,
    ("object", "POST", "uploadId"): complete_multipart_upload,
    ("object", "DELETE", "uploadId"): abort_multipart_upload,
    ("object", "GET", "uploadId"): list_parts,
    ("bucket", "GET", "uploads"): list_multipart_uploads,
    ("object", "GET", "partNumber"): get_part,
    ("object", "HEAD", "partNumber"): get_part,
    # partNumber selects nothing for a write: S3 ignores it there.
    ("object", "PUT", "partNumber"): _objects.ROUTES[("object", "PUT", "")],
    ("object", "DELETE", "partNumber"): _objects.ROUTES[("object", "DELETE", "")],
}
