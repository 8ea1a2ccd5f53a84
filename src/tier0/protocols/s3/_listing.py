"""Listing: ListObjectsV2.

Keys come in UTF-8 byte order, as S3 lists them; pages resume after the last
key or common prefix returned, so a listing stays consistent with itself
while writers go on.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from tier0.errors import InvalidArgument
from tier0.protocols.s3._http import Handler, Request, Response, xml_response
from tier0.protocols.s3._xml import render_list_objects_v2
from tier0.store import ListPage

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES"]


async def list_objects_v2(gateway: S3Gateway, request: Request) -> Response:
    params = request.params
    max_keys = max_keys_of(params.get("max-keys"), gateway.limits.list_keys_max)
    token = params.get("continuation-token")
    start_after = params.get("start-after") or None
    resume = _decode_token(token) if token is not None else start_after
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter") or None
    if max_keys == 0:
        # The kernel pages at least one key; S3 answers max-keys=0 with an
        # empty, untruncated page (after checking that the bucket exists).
        await gateway.run_blocking(request.actor.head_bucket, request.bucket)
        page = ListPage(objects=[], prefixes=[], truncated=False, next_start_after=None)
    else:
        page = await gateway.run_blocking(
            request.actor.list,
            request.bucket,
            prefix=prefix,
            delimiter=delimiter,
            start_after=resume,
            limit=max_keys,
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
        encoding_type=params.get("encoding-type"),
    )
    return xml_response(body)


def max_keys_of(text: str | None, keys_max: int) -> int:
    """The page size a ``max-keys`` parameter asks for, capped at ``keys_max``."""
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


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("bucket", "GET", "list-type=2"): list_objects_v2,
}
