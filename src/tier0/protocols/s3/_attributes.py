"""GetObjectAttributes (``GET ?attributes``): HeadObject and ListParts in one answer.

``x-amz-object-attributes`` names what to return, comma-separated: ETag,
Checksum, ObjectParts, StorageClass, ObjectSize (one is required, an unknown
name is ``InvalidArgument``, as in S3). ObjectParts pages through the parts
of a version completed from a multipart upload with ``x-amz-max-parts``
(at most 1000, the default) and ``x-amz-part-number-marker``. The response
headers carry Last-Modified and the version id; a delete marker is answered
as HeadObject answers it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tier0.errors import DeleteMarkerFound, InvalidArgument
from tier0.protocols.s3._http import Handler, Request, Response, http_date, xml_response
from tier0.protocols.s3._object_headers import (
    delete_marker_response,
    version_header,
    version_param,
)
from tier0.protocols.s3._xml import (
    OBJECT_ATTRIBUTES,
    PART_NUMBER_MAX,
    render_get_object_attributes,
)
from tier0.store import ObjectInfo

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES"]

#: Parts listed in one answer at most (S3's own maximum and default).
PARTS_MAX: Final = 1000


async def get_object_attributes(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    attributes = _attributes(request.headers.get("x-amz-object-attributes", ""))
    max_parts = _integer(request.headers, "x-amz-max-parts", PARTS_MAX, PARTS_MAX)
    marker = _integer(request.headers, "x-amz-part-number-marker", 0, PART_NUMBER_MAX)
    try:
        info: ObjectInfo = await gateway.run_blocking(
            request.actor.head, request.bucket, request.key, version_id=version_id
        )
    except DeleteMarkerFound as marker_found:
        return delete_marker_response(request, marker_found)
    response = xml_response(
        render_get_object_attributes(
            info, attributes=attributes, max_parts=max_parts, part_number_marker=marker
        )
    )
    response.headers.append((b"last-modified", http_date(info.modified)))
    response.headers.extend(version_header(info.version_id, asked=version_id is not None))
    return response


def _attributes(header: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in header.split(",") if name.strip())
    if not names:
        raise InvalidArgument(
            "x-amz-object-attributes must name at least one of "
            + ", ".join(sorted(OBJECT_ATTRIBUTES))
        )
    unknown = names - OBJECT_ATTRIBUTES
    if unknown:
        raise InvalidArgument(f"Invalid attribute name specified: {', '.join(sorted(unknown))}")
    return names


def _integer(headers: dict[str, str], name: str, default: int, high: int) -> int:
    """A count header: a non-negative integer, ``default`` when absent, at most ``high``
    (a larger one is taken as ``high``, as S3 takes max-parts)."""
    text = headers.get(name)
    if text is None:
        return default
    value = text.strip()
    if not value.isdigit() or len(value) > 12:
        raise InvalidArgument(f"{name} must be a non-negative integer, got {text!r}")
    return min(int(value), high)


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("object", "GET", "attributes"): get_object_attributes,
}
