"""Object tagging: PutObjectTagging, GetObjectTagging, DeleteObjectTagging (``?tagging``).

Tags belong to one version (``?versionId=``, the current one by default);
changing them makes no new version. The kernel checks S3's limits (10 tags,
keys of 128 and values of 256 characters) and answers ``InvalidTag``; a key
given twice is refused here, as S3 refuses it. A Tagging body is read whole,
up to `XML_BYTES_MAX`, and checked against the Content-MD5 or
``x-amz-checksum-*`` the request states.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tier0.errors import DeleteMarkerFound
from tier0.protocols.s3._chunked import open_body
from tier0.protocols.s3._http import Handler, Request, Response, read_body, xml_response
from tier0.protocols.s3._object_headers import (
    delete_marker_response,
    tags_of,
    verify_body_digests,
    version_header,
    version_param,
)
from tier0.protocols.s3._xml import XML_BYTES_MAX, parse_tagging, render_tagging
from tier0.store import ObjectTags

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES"]


async def put_object_tagging(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    decoder = open_body(request.auth)
    body = await read_body(request, limit=XML_BYTES_MAX, decoder=decoder)
    # read_body finished the decoder; finishing again returns the same trailers.
    verify_body_digests(request.headers, request.auth, body, decoder.finish(), required=False)
    tags = tags_of(parse_tagging(body))
    tagged: str = await gateway.run_blocking(
        request.actor.set_tags, request.bucket, request.key, tags, version_id=version_id
    )
    return Response(200, headers=version_header(tagged, asked=version_id is not None))


async def get_object_tagging(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    try:
        found: ObjectTags = await gateway.run_blocking(
            request.actor.object_tags, request.bucket, request.key, version_id=version_id
        )
    except DeleteMarkerFound as marker:
        return delete_marker_response(request, marker)
    response = xml_response(render_tagging(found.tags))
    response.headers.extend(version_header(found.version_id, asked=version_id is not None))
    return response


async def delete_object_tagging(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    tagged: str = await gateway.run_blocking(
        request.actor.delete_tags, request.bucket, request.key, version_id=version_id
    )
    return Response(204, headers=version_header(tagged, asked=version_id is not None))


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("object", "PUT", "tagging"): put_object_tagging,
    ("object", "GET", "tagging"): get_object_tagging,
    ("object", "DELETE", "tagging"): delete_object_tagging,
}
