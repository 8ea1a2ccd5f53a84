"""Listing: ListObjects (v1), ListObjectsV2 and ListObjectVersions.

Keys come in UTF-8 byte order, as S3 lists them (the kernel compares keys as
bytes on both metadata backends). Every page resumes strictly after the last
key, version or common prefix the previous page returned, and each page is
read in one snapshot, so a listing paginated while writers go on returns
every key present throughout exactly once: a key written or deleted in the
meantime may or may not appear, nothing else moves.

What each operation takes and answers follows S3's documentation:

- v1 resumes after ``marker``; ``NextMarker`` is sent only when a delimiter
  was given (clients otherwise resume after the last key listed).
- v2 resumes from ``continuation-token`` when one is given, else after
  ``start-after``; both are echoed. Tokens are opaque to clients; ours carry
  the key (or common prefix) to resume after.
- versions resume after ``key-marker`` (every version of it), or after the
  version ``version-id-marker`` of ``key-marker`` (after the whole key when
  that version was deleted since the previous page).

``encoding-type=url`` percent-encodes the key-like fields of each answer (see
`tier0.protocols.s3._xml`); ``max-keys`` above 1000 is capped, as S3 does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import TYPE_CHECKING, Final

from tier0.errors import InvalidArgument, NoSuchVersion
from tier0.protocols.s3._http import Handler, Request, Response, xml_response
from tier0.protocols.s3._xml import (
    render_list_objects_v1,
    render_list_objects_v2,
    render_list_versions,
)
from tier0.store import ListPage, VersionPage

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES", "decode_token", "encode_token", "max_keys_of"]

#: The largest ``max-keys`` S3 accepts as a number (a signed 32-bit integer);
#: anything from 1001 up to it is capped to the page limit, beyond it refused.
MAX_KEYS_ARGUMENT_MAX: Final = 2**31 - 1
#: Marks a continuation token as one of ours. Keys never hold NUL, so the tag
#: cannot be confused with the start of a key.
_TOKEN_TAG: Final = b"t0\x00"
#: What a version id looks like: the kernel's (32 URL-safe characters), or S3's ``null``.
_VERSION_ID: Final = re.compile(r"[A-Za-z0-9_-]{32}|null")


async def list_objects_v1(gateway: S3Gateway, request: Request) -> Response:
    params = request.params
    max_keys = max_keys_of(params.get("max-keys"), gateway.limits.list_keys_max)
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter") or None
    marker = params.get("marker", "")
    page = await _list(gateway, request, max_keys, prefix, delimiter, marker or None)
    body = render_list_objects_v1(
        page,
        bucket=request.bucket,
        max_keys=max_keys,
        prefix=prefix,
        delimiter=delimiter,
        marker=marker,
        encoding_type=params.get("encoding-type"),
    )
    return xml_response(body)


async def list_objects_v2(gateway: S3Gateway, request: Request) -> Response:
    params = request.params
    max_keys = max_keys_of(params.get("max-keys"), gateway.limits.list_keys_max)
    token = params.get("continuation-token")
    start_after = params.get("start-after")
    # A token wins over start-after; an empty token is no token (S3 lists
    # from the start and echoes it empty).
    resume = decode_token(token) if token else start_after or None
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter") or None
    page = await _list(gateway, request, max_keys, prefix, delimiter, resume)
    next_token = encode_token(page.next_start_after) if page.truncated else None
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
        encoding_type=params.get("encoding-type"),
    )
    return xml_response(body)


async def list_object_versions(gateway: S3Gateway, request: Request) -> Response:
    params = request.params
    max_keys = max_keys_of(params.get("max-keys"), gateway.limits.list_keys_max)
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter") or None
    key_marker = params.get("key-marker", "")
    version_marker = params.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise InvalidArgument("A version-id marker cannot be specified without a key marker.")
    if version_marker and not _VERSION_ID.fullmatch(version_marker):
        raise InvalidArgument("Invalid version id specified")
    if max_keys == 0:
        await gateway.run_blocking(request.actor.head_bucket, request.bucket)
        page = VersionPage([], [], False, None, None)
    else:
        list_versions = functools.partial(
            request.actor.list_versions,
            request.bucket,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker or None,
            limit=max_keys,
        )
        try:
            page = await gateway.run_blocking(list_versions, version_marker=version_marker or None)
        except NoSuchVersion:
            # The marker names a version deleted since the previous page was
            # read: its place among the key's versions is gone with it. Going
            # on after the whole key keeps the listing going (the alternative,
            # failing, breaks every paginator); only versions of that key
            # older than the deleted one can be missed.
            page = await gateway.run_blocking(list_versions, version_marker=None)
    body = render_list_versions(
        page,
        bucket=request.bucket,
        max_keys=max_keys,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        version_id_marker=version_marker,
        encoding_type=params.get("encoding-type"),
    )
    return xml_response(body)


async def _list(
    gateway: S3Gateway,
    request: Request,
    max_keys: int,
    prefix: str,
    delimiter: str | None,
    start_after: str | None,
) -> ListPage:
    if max_keys == 0:
        # The kernel pages at least one key; S3 answers max-keys=0 with an
        # empty, untruncated page (after checking that the bucket exists).
        await gateway.run_blocking(request.actor.head_bucket, request.bucket)
        return ListPage(objects=[], prefixes=[], truncated=False, next_start_after=None)
    return await gateway.run_blocking(
        request.actor.list,
        request.bucket,
        prefix=prefix,
        delimiter=delimiter,
        start_after=start_after,
        limit=max_keys,
    )


def max_keys_of(text: str | None, keys_max: int) -> int:
    """The page size a ``max-keys`` parameter asks for, capped at ``keys_max``.

    Raises `InvalidArgument` for anything but a decimal integer from 0 to
    `MAX_KEYS_ARGUMENT_MAX` (S3's rule); larger pages than ``keys_max`` are
    capped silently, as S3 caps them at 1000.

    >>> max_keys_of("5000", 1000), max_keys_of(None, 1000), max_keys_of("0", 1000)
    (1000, 1000, 0)
    """
    if text is None:
        return keys_max
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_KEYS_ARGUMENT_MAX:
        raise InvalidArgument(
            f"max-keys must be an integer from 0 to {MAX_KEYS_ARGUMENT_MAX}, got {text!r}"
        )
    return min(int(text), keys_max)


def encode_token(start_after: str | None) -> str | None:
    """The continuation token that resumes a listing after ``start_after``.

    >>> decode_token(encode_token("photos/ü"))
    'photos/ü'
    """
    if start_after is None:
        return None
    return base64.urlsafe_b64encode(_TOKEN_TAG + start_after.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    """The key a continuation token resumes after; `InvalidArgument` if it is not one of ours."""
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        if not raw.startswith(_TOKEN_TAG):
            raise ValueError("not a tier0 token")
        return raw[len(_TOKEN_TAG) :].decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument("The continuation token provided is incorrect") from None


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("bucket", "GET", ""): list_objects_v1,
    ("bucket", "GET", "list-type=2"): list_objects_v2,
    ("bucket", "GET", "versions"): list_object_versions,
}
