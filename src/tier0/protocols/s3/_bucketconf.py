"""Bucket configuration over S3: tagging, CORS (and browsers' preflights), policy, ACLs.

Get/Put/DeleteBucketTagging (``?tagging``), Get/Put/DeleteBucketCors
(``?cors``), Get/Put/DeleteBucketPolicy (``?policy``), GetBucketPolicyStatus
(``?policyStatus``), Get/PutBucketAcl and Get/PutObjectAcl (``?acl``), and
``OPTIONS`` on a bucket or object: the CORS preflight, answered from the
bucket's rules without authentication (as S3 does). `cors_headers` adds
``Access-Control-*`` headers to any other request that carries an
``Origin`` a rule admits.

ACLs are canned: ``x-amz-acl`` sets one; an ``AccessControlPolicy`` body is
accepted when its grants restate a canned ACL exactly (a client writing back
what GetBucketAcl answered does so), and anything else, ``x-amz-grant-*``
headers included, answers ``501 NotImplemented`` saying so. Small bodies are
read whole and checked against the ``Content-MD5`` or ``x-amz-checksum-*``
they state. The kernel decides everything else (who may, what is valid).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

from tier0.errors import (
    AccessDenied,
    InvalidArgument,
    MalformedPolicy,
    NoSuchCORSConfiguration,
    Tier0Error,
)
from tier0.identity import AclGrant
from tier0.protocols.s3._chunked import open_body
from tier0.protocols.s3._errors import NotImplementedOperation
from tier0.protocols.s3._http import Handler, Request, Response, read_body, xml_response
from tier0.protocols.s3._object_headers import (
    tags_of,
    verify_body_digests,
    version_header,
    version_param,
)
from tier0.protocols.s3._xml import parse_tagging, render_tagging
from tier0.protocols.s3._xml_config import (
    parse_access_control_policy,
    parse_cors_configuration,
    render_access_control_policy,
    render_cors_configuration,
    render_policy_status,
)
from tier0.store import CORS_METHODS, AccessControl, CORSRule

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["CONFIG_BODY_BYTES_MAX", "ROUTES", "BadRequest", "CORSResponse", "cors_headers"]

#: A configuration body larger than this is refused unread: S3's own limits
#: (64 KB of CORS rules, 20 KB of policy, 50 tags) all fit well within it.
CONFIG_BODY_BYTES_MAX: Final = 64 * 1024
_CORS_NOT_ALLOWED: Final = (
    "This CORS request is not allowed. This is usually because the evalution of Origin,"
    " request method / Access-Control-Request-Method or Access-Control-Request-Headers"
    " are not whitelisted by the resource's CORS spec."
)
_VARY: Final = b"Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


class CORSResponse(AccessDenied):
    """A preflight that no CORS rule of the bucket admits (403, as S3 answers)."""

    s3_code: ClassVar[str] = "CORSResponse"


class BadRequest(InvalidArgument):
    """A preflight without the headers it needs (S3's 400 BadRequest)."""

    s3_code: ClassVar[str] = "BadRequest"


async def _read_config(request: Request) -> bytes:
    """The body, whole, checked against the digests it states."""
    decoder = open_body(request.auth)
    body = await read_body(request, limit=CONFIG_BODY_BYTES_MAX, decoder=decoder)
    # read_body finished the decoder; finishing again returns the same trailers.
    verify_body_digests(request.headers, request.auth, body, decoder.finish(), required=False)
    return body


# -- tagging --------------------------------------------------------------------------------


async def get_bucket_tagging(gateway: S3Gateway, request: Request) -> Response:
    tags = await gateway.run_blocking(request.actor.get_bucket_tags, request.bucket)
    return xml_response(render_tagging(tags))


async def put_bucket_tagging(gateway: S3Gateway, request: Request) -> Response:
    tags = tags_of(parse_tagging(await _read_config(request)))
    await gateway.run_blocking(request.actor.set_bucket_tags, request.bucket, tags)
    return Response(204)


async def delete_bucket_tagging(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(request.actor.delete_bucket_tags, request.bucket)
    return Response(204)


# -- CORS -----------------------------------------------------------------------------------


async def get_bucket_cors(gateway: S3Gateway, request: Request) -> Response:
    rules = await gateway.run_blocking(request.actor.get_bucket_cors, request.bucket)
    return xml_response(render_cors_configuration(rules))


async def put_bucket_cors(gateway: S3Gateway, request: Request) -> Response:
    rules = parse_cors_configuration(await _read_config(request))
    await gateway.run_blocking(request.actor.set_bucket_cors, request.bucket, rules)
    return Response(200)


async def delete_bucket_cors(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(request.actor.delete_bucket_cors, request.bucket)
    return Response(204)


async def preflight(gateway: S3Gateway, request: Request) -> Response:
    """``OPTIONS``: may a browser at ``Origin`` send this method and these headers?"""
    headers = request.headers
    origin = headers.get("origin")
    if not origin:
        raise BadRequest("Insufficient information. Origin request header needed.")
    method = headers.get("access-control-request-method")
    if method not in CORS_METHODS:
        raise BadRequest(f"Invalid Access-Control-Request-Method: {method}")
    asked = [h.strip() for h in headers.get("access-control-request-headers", "").split(",")]
    asked = [h for h in asked if h]
    try:
        rule = await gateway.run_blocking(
            request.actor.match_cors,
            request.bucket,
            origin=origin,
            method=method,
            request_headers=asked,
        )
    except NoSuchCORSConfiguration:
        raise CORSResponse("CORS is not enabled for this bucket.") from None
    if rule is None:
        raise CORSResponse(_CORS_NOT_ALLOWED)
    answer = _allow_headers(rule, origin)
    if asked:
        answer.append((b"access-control-allow-headers", ", ".join(asked).lower().encode("latin-1")))
    return Response(200, headers=answer)


async def cors_headers(gateway: S3Gateway, request: Request) -> list[tuple[bytes, bytes]]:
    """The ``Access-Control-*`` headers for a request carrying ``Origin`` (none
    without one, or when no rule of the bucket admits its origin and method).

    Never fails the request: a bucket without rules, or a failure to read
    them, only means no CORS headers.
    """
    origin = request.headers.get("origin")
    if not origin or not request.bucket or request.method == "OPTIONS":
        return []
    try:
        rule = await gateway.run_blocking(
            request.actor.match_cors, request.bucket, origin=origin, method=request.method
        )
    except Tier0Error:
        return []
    return [] if rule is None else _allow_headers(rule, origin)


def _allow_headers(rule: CORSRule, origin: str) -> list[tuple[bytes, bytes]]:
    # A rule open to every origin answers "*" and allows no credentials, as S3 does.
    wildcard = "*" in rule.allowed_origins
    answer = [
        (b"access-control-allow-origin", b"*" if wildcard else origin.encode("latin-1")),
        (b"access-control-allow-methods", ", ".join(rule.allowed_methods).encode("latin-1")),
        (b"vary", _VARY),
    ]
    if not wildcard:
        answer.append((b"access-control-allow-credentials", b"true"))
    if rule.expose_headers:
        exposed = ", ".join(rule.expose_headers).encode("latin-1")
        answer.append((b"access-control-expose-headers", exposed))
    if rule.max_age_s is not None:
        answer.append((b"access-control-max-age", str(rule.max_age_s).encode()))
    return answer


# -- policy ---------------------------------------------------------------------------------


async def get_bucket_policy(gateway: S3Gateway, request: Request) -> Response:
    policy: str = await gateway.run_blocking(request.actor.get_bucket_policy, request.bucket)
    return Response(200, policy.encode("utf-8"), [(b"content-type", b"application/json")])


async def put_bucket_policy(gateway: S3Gateway, request: Request) -> Response:
    body = await _read_config(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPolicy("the policy is not valid UTF-8") from None
    await gateway.run_blocking(request.actor.set_bucket_policy, request.bucket, text)
    return Response(204)


async def delete_bucket_policy(gateway: S3Gateway, request: Request) -> Response:
    await gateway.run_blocking(request.actor.delete_bucket_policy, request.bucket)
    return Response(204)


async def get_bucket_policy_status(gateway: S3Gateway, request: Request) -> Response:
    public = await gateway.run_blocking(request.actor.bucket_policy_is_public, request.bucket)
    return xml_response(render_policy_status(public=public))


# -- ACLs -----------------------------------------------------------------------------------


async def get_bucket_acl(gateway: S3Gateway, request: Request) -> Response:
    control: AccessControl = await gateway.run_blocking(
        request.actor.get_bucket_acl, request.bucket
    )
    return xml_response(render_access_control_policy(control))


async def put_bucket_acl(gateway: S3Gateway, request: Request) -> Response:
    acl = await _requested_acl(request)
    await gateway.run_blocking(request.actor.set_bucket_acl, request.bucket, acl)
    return Response(200)


async def get_object_acl(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    control: AccessControl = await gateway.run_blocking(
        request.actor.get_object_acl, request.bucket, request.key, version_id=version_id
    )
    return xml_response(render_access_control_policy(control))


async def put_object_acl(gateway: S3Gateway, request: Request) -> Response:
    version_id = version_param(request.params)
    acl = await _requested_acl(request)
    version: str = await gateway.run_blocking(
        request.actor.set_object_acl, request.bucket, request.key, acl, version_id=version_id
    )
    return Response(200, headers=version_header(version, asked=version_id is not None))


async def _requested_acl(request: Request) -> str | list[AclGrant]:
    """What a PutBucketAcl/PutObjectAcl asks for: a canned ACL's name, or grants."""
    headers = request.headers
    body = await _read_config(request)
    canned = headers.get("x-amz-acl")
    granted = sorted(name for name in headers if name.startswith("x-amz-grant-"))
    if canned is not None and (granted or body.strip()):
        raise InvalidArgument("Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        return canned.strip()
    if granted:
        raise NotImplementedOperation(
            f"tier0 keeps canned ACLs only: {', '.join(granted)} cannot be kept;"
            " use x-amz-acl (private, public-read, ...) or a bucket policy."
        )
    if not body.strip():
        raise InvalidArgument("Give the ACL: an x-amz-acl header or an AccessControlPolicy body.")
    parsed = parse_access_control_policy(body)
    if parsed.unsupported is not None:
        raise NotImplementedOperation(
            f"tier0 keeps canned ACLs only: {parsed.unsupported} cannot be kept."
        )
    return list(parsed.grants)


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("bucket", "GET", "tagging"): get_bucket_tagging,
    ("bucket", "PUT", "tagging"): put_bucket_tagging,
    ("bucket", "DELETE", "tagging"): delete_bucket_tagging,
    ("bucket", "GET", "cors"): get_bucket_cors,
    ("bucket", "PUT", "cors"): put_bucket_cors,
    ("bucket", "DELETE", "cors"): delete_bucket_cors,
    ("bucket", "GET", "policy"): get_bucket_policy,
    ("bucket", "PUT", "policy"): put_bucket_policy,
    ("bucket", "DELETE", "policy"): delete_bucket_policy,
    ("bucket", "GET", "policyStatus"): get_bucket_policy_status,
    ("bucket", "GET", "acl"): get_bucket_acl,
    ("bucket", "PUT", "acl"): put_bucket_acl,
    ("object", "GET", "acl"): get_object_acl,
    ("object", "PUT", "acl"): put_object_acl,
    ("bucket", "OPTIONS", ""): preflight,
    ("object", "OPTIONS", ""): preflight,
}
