"""Service and bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
Get/PutBucketVersioning and GetBucketLocation.

One tier0 is one region (the gateway's ``region``): a bucket is where the
gateway is, whatever LocationConstraint its CreateBucket named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tier0.errors import BucketAlreadyExists, Tier0Error
from tier0.protocols.s3._errors import BucketAlreadyOwnedByYou, NotImplementedOperation
from tier0.protocols.s3._http import Handler, Request, Response, read_body, xml_response
from tier0.protocols.s3._object_headers import canned_acl
from tier0.protocols.s3._xml import (
    parse_create_bucket_configuration,
    parse_versioning_configuration,
    render_list_buckets,
    render_location_constraint,
    render_versioning_configuration,
)

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["ROUTES"]


async def list_buckets(gateway: S3Gateway, request: Request) -> Response:
    buckets = await gateway.run_blocking(request.actor.list_buckets)
    assert request.auth.principal is not None
    return xml_response(render_list_buckets(buckets, owner=request.auth.principal.name))


async def create_bucket(gateway: S3Gateway, request: Request) -> Response:
    body = await read_body(request, limit=gateway.limits.create_bucket_body_bytes_max)
    if body.strip():
        # The location is accepted whatever it says: one tier0 is one region.
        parse_create_bucket_configuration(body)
    try:
        await gateway.run_blocking(
            request.actor.create_bucket, request.bucket, acl=canned_acl(request.headers)
        )
    except BucketAlreadyExists as error:
        if await _own_bucket(gateway, request):
            raise BucketAlreadyOwnedByYou(
                f"Your previous request to create the named bucket {request.bucket!r} succeeded"
                " and you already own it."
            ) from error
        raise
    return Response(200, headers=[(b"location", f"/{request.bucket}".encode())])


async def head_bucket(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(request.actor.head_bucket, request.bucket)
    return Response(200, headers=[(b"x-amz-bucket-region", gateway.region.encode())])


async def delete_bucket(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(request.actor.delete_bucket, request.bucket)
    return Response(204)


async def get_bucket_versioning(gateway: S3Gateway, request: Request) -> Response:
    versioning = await gateway.run_blocking(request.actor.get_versioning, request.bucket)
    return xml_response(render_versioning_configuration(versioning))


async def put_bucket_versioning(gateway: S3Gateway, request: Request) -> Response:
    body = await read_body(request, limit=gateway.limits.versioning_body_bytes_max)
    configuration = parse_versioning_configuration(body)
    if configuration.mfa_delete == "Enabled":
        raise NotImplementedOperation(
            "MFA delete is not implemented by tier0's S3 gateway; leave MfaDelete out or Disabled."
        )
    if configuration.status is None:
        # S3 documents Status as optional: a configuration without one leaves
        # the bucket as it is (once the bucket is known to exist).
        await gateway.run_blocking(
            request.actor.head_bucket, request.bucket, action="s3:PutBucketVersioning"
        )
    else:
        await gateway.run_blocking(
            request.actor.set_versioning, request.bucket, configuration.status
        )
    return Response(200)


async def get_bucket_location(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(
        request.actor.head_bucket, request.bucket, action="s3:GetBucketLocation"
    )
    return xml_response(render_location_constraint(gateway.region))


async def _own_bucket(gateway: S3Gateway, request: Request) -> bool:
    """Whether the bucket exists and belongs to the requester (after a failed create)."""
    principal = request.auth.principal
    if principal is None:
        return False  # anonymous (a bucket policy let it try): it owns nothing
    try:
        info = await gateway.run_blocking(request.actor.head_bucket, request.bucket)
    except Tier0Error:
        return False
    return info.owner in (principal.id, principal.name)


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("service", "GET", ""): list_buckets,
    ("bucket", "PUT", ""): create_bucket,
    ("bucket", "HEAD", ""): head_bucket,
    ("bucket", "DELETE", ""): delete_bucket,
    ("bucket", "GET", "versioning"): get_bucket_versioning,
    ("bucket", "PUT", "versioning"): put_bucket_versioning,
    ("bucket", "GET", "location"): get_bucket_location,
}
