"""DeleteObjects (``POST /bucket?delete``): up to 1,000 keys in one request.

The body is read whole (up to `XML_BYTES_MAX`) and must come with a digest,
as S3 demands for this operation: ``Content-MD5`` or an ``x-amz-checksum-*``
header or trailer (botocore sends one), checked against the body
(``BadDigest``); stating none is ``400 InvalidRequest``. More than
`DELETE_OBJECTS_MAX` keys is ``MalformedXML``, as the parser decides.

Each key is deleted on its own, like DeleteObject, as the requester: a key
that fails (access denied, a bad key) becomes an ``<Error>`` entry with its
S3 code, and the others go ahead. A bucket that does not exist fails the
request as a whole. Deletes run a few at a time (`DELETES_IN_FLIGHT_MAX`), so
that the kernel's group commit packs them into few transactions without the
request taking every gateway thread. Quiet mode lists only the errors.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from tier0.errors import NoSuchBucket, Tier0Error
from tier0.protocols.s3._chunked import open_body
from tier0.protocols.s3._errors import s3_error
from tier0.protocols.s3._http import Handler, Request, Response, read_body, xml_response
from tier0.protocols.s3._object_headers import verify_body_digests
from tier0.protocols.s3._xml import (
    XML_BYTES_MAX,
    Deleted,
    DeleteError,
    ObjectIdentifier,
    parse_delete,
    render_delete_result,
)
from tier0.store import DeleteResult

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["DELETES_IN_FLIGHT_MAX", "ROUTES"]

#: Keys of one DeleteObjects request being deleted at once.
DELETES_IN_FLIGHT_MAX: Final = 16


async def delete_objects(gateway: S3Gateway, request: Request) -> Response:
    decoder = open_body(request.auth)
    body = await read_body(request, limit=XML_BYTES_MAX, decoder=decoder)
    # read_body finished the decoder; finishing again returns the same trailers.
    verify_body_digests(request.headers, request.auth, body, decoder.finish(), required=True)
    asked = parse_delete(body)
    slots = asyncio.Semaphore(DELETES_IN_FLIGHT_MAX)

    async def delete(item: ObjectIdentifier) -> Deleted | DeleteError:
        async with slots:
            try:
                result: DeleteResult = await gateway.run_blocking(
                    request.actor.delete, request.bucket, item.key, version_id=item.version_id
                )
            except NoSuchBucket:
                raise
            except Tier0Error as error:
                answer = s3_error(error)
                return DeleteError(item.key, answer.code, answer.message, item.version_id)
        return _deleted(item, result)

    outcomes = await asyncio.gather(*(delete(item) for item in asked.objects))
    deleted = [outcome for outcome in outcomes if isinstance(outcome, Deleted)]
    errors = [outcome for outcome in outcomes if isinstance(outcome, DeleteError)]
    return xml_response(render_delete_result(deleted, errors, quiet=asked.quiet))


def _deleted(item: ObjectIdentifier, result: DeleteResult) -> Deleted:
    """The ``<Deleted>`` entry S3 writes for one key.

    A version named is echoed, with DeleteMarker when that version was a
    marker; a delete that made a marker names the marker's version id; a key
    in an unversioned bucket is named alone (also when it did not exist).
    """
    if item.version_id is not None:
        marker_id = item.version_id if result.delete_marker else None
        return Deleted(item.key, item.version_id, result.delete_marker, marker_id)
    if result.delete_marker:
        return Deleted(item.key, None, True, result.version_id)
    return Deleted(item.key)


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("bucket", "POST", "delete"): delete_objects,
}
