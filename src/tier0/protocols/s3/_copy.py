"""CopyObject: a PUT naming its source in ``x-amz-copy-source``.

The kernel's copy shares the source's chunks, so a copy of any size costs one
metadata transaction. What S3 decides around it is decided here:

- the source, ``/bucket/key`` URL-encoded, with ``?versionId=`` for an older
  version (a delete marker named so is ``400 InvalidRequest``, the current
  version being one is ``404 NoSuchKey``);
- ``x-amz-metadata-directive``: COPY keeps the source's content type, stored
  headers and user metadata, REPLACE takes the request's; likewise
  ``x-amz-tagging-directive`` for tags (REPLACE takes ``x-amz-tagging``);
- copying an object onto itself changing nothing is ``400 InvalidRequest``;
- ``x-amz-copy-source-if-*`` conditions on the source: any that fails is
  ``412 PreconditionFailed`` (`Preconditions.check_copy_source`), and the
  version they were decided on is the version copied;
- ``If-Match``/``If-None-Match: *`` conditions on the destination, as for PutObject;
- a source over ``GatewayLimits.put_bytes_max`` (S3's 5 GiB) is ``400
  InvalidRequest``: S3 copies larger objects only in parts.

The answer is CopyObjectResult (ETag, LastModified and the checksums the copy
keeps), with ``x-amz-version-id`` and ``x-amz-copy-source-version-id``.
"""

from __future__ import annotations

import contextlib
import mimetypes
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote

from tier0._client import Tier0
from tier0.errors import DeleteMarkerFound, InvalidArgument
from tier0.protocols.s3._conditions import Preconditions
from tier0.protocols.s3._errors import InvalidRequest, NotImplementedOperation
from tier0.protocols.s3._http import Request, Response, xml_response
from tier0.protocols.s3._object_headers import (
    canned_acl,
    parse_tagging_header,
    stored_headers,
    user_metadata,
    version_header,
    write_etag,
)
from tier0.protocols.s3._xml import render_copy_object_result
from tier0.store import ObjectInfo

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["copy_object", "parse_copy_source"]

_DIRECTIVES: Final = ("COPY", "REPLACE")
#: Request headers that change an object's storage; with one, a copy onto
#: itself is a legitimate way to change it (tier0 accepts and ignores them).
_STORAGE_CHANGES: Final = (
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-server-side-encryption",
)
#: What the kernel gives an object stored without a type it can guess.
_DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


async def copy_object(gateway: S3Gateway, request: Request) -> Response:
    headers = request.headers
    source = parse_copy_source(headers["x-amz-copy-source"])
    metadata_directive = _directive(headers, "x-amz-metadata-directive")
    tagging_directive = _directive(headers, "x-amz-tagging-directive")
    if (
        source[:2] == (request.bucket, request.key)
        and source[2] is None
        and metadata_directive == tagging_directive == "COPY"
        and not any(name in headers for name in _STORAGE_CHANGES)
    ):
        raise InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself"
            " without changing the object's metadata, storage class, website redirect location"
            " or encryption attributes."
        )
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise NotImplementedOperation(
            "If-None-Match on a write takes only '*' (write unless the key exists)."
        )
    replace: dict[str, Any] = {}
    if metadata_directive == "REPLACE":
        replace["metadata"] = user_metadata(headers)
        replace["headers"] = stored_headers(headers)
        replace["content_type"] = (
            headers.get("content-type")
            or mimetypes.guess_type(request.key)[0]
            or _DEFAULT_CONTENT_TYPE
        )
    if tagging_directive == "REPLACE":
        replace["tags"] = parse_tagging_header(headers.get("x-amz-tagging"))
    acl = canned_acl(headers)
    if acl is not None:
        replace["acl"] = acl  # S3 never copies an ACL; a copy names its own
    with copy_source_errors():
        copied, info = await gateway.run_blocking(
            _copy,
            request.actor,
            source,
            (request.bucket, request.key),
            conditions=Preconditions.from_headers(headers, prefix="x-amz-copy-source-"),
            size_max=gateway.limits.put_bytes_max,
            replace=replace,
            if_match=write_etag(headers.get("if-match")),
            if_none_match=if_none_match,
        )
    response = xml_response(
        render_copy_object_result(
            etag=info.etag, last_modified=info.modified, checksums=info.checksums
        )
    )
    response.headers.extend(version_header(info.version_id))
    if source[2] is not None or copied.version_id != "null":
        response.headers.append(
            (b"x-amz-copy-source-version-id", copied.version_id.encode("latin-1", "replace"))
        )
    return response


@contextlib.contextmanager
def copy_source_errors() -> Iterator[None]:
    """S3's answer for a copy whose source is a delete marker: named by version id,
    the request is wrong (``InvalidRequest``); as the current version, the key is
    gone (``NoSuchKey``)."""
    try:
        yield
    except DeleteMarkerFound as marker:
        if marker.by_version:
            raise InvalidRequest(
                "The source of a copy request may not specifically refer to a delete marker"
                " by version id."
            ) from marker
        raise


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id or None) of an ``x-amz-copy-source`` header.

    The header is ``bucket/key`` or ``/bucket/key``, URL-encoded, optionally
    followed by ``?versionId=<id>``. Raises `InvalidArgument` when it names no
    bucket and key, or an empty version id.

    >>> parse_copy_source("/photos/2024/a%20b.jpg?versionId=3L4k")
    ('photos', '2024/a b.jpg', '3L4k')
    """
    path, _, query = value.strip().partition("?")
    version_id = None
    if query:
        version_id = dict(parse_qsl(query, keep_blank_values=True)).get("versionId")
        if version_id == "":
            raise InvalidArgument("Version id cannot be the empty string")
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("The copy source is not valid UTF-8 once decoded.") from None
    bucket, _, key = decoded.removeprefix("/").partition("/")
    if not bucket or not key:
        raise InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        )
    return bucket, key, version_id


def _directive(headers: dict[str, str], name: str) -> str:
    value = headers.get(name, "COPY").strip().upper()
    if value not in _DIRECTIVES:
        kind = "metadata" if "metadata" in name else "tagging"
        raise InvalidArgument(f"Unknown {kind} directive: {headers[name]!r}.")
    return value


def _copy(
    actor: Tier0,
    source: tuple[str, str, str | None],
    target: tuple[str, str],
    *,
    conditions: Preconditions,
    size_max: int,
    replace: dict[str, Any],
    if_match: str | None,
    if_none_match: str | None,
) -> tuple[ObjectInfo, ObjectInfo]:
    """Decide the source conditions on one version and copy exactly that version.

    Returns (the source version, the new version).
    """
    source_bucket, source_key, version_id = source
    found = actor.head(source_bucket, source_key, version_id=version_id)
    conditions.check_copy_source(found)
    if found.size > size_max:
        raise InvalidRequest(
            "The specified copy source is larger than the maximum allowable size for a copy"
            f" source: {size_max}"
        )
    info = actor.copy(
        source_bucket,
        source_key,
        *target,
        version_id=found.version_id,
        if_match=if_match,
        if_none_match=if_none_match,
        **replace,
    )
    return found, info
