"""What S3 says about an object in headers, both ways, for every object operation.

Requests: user metadata (``x-amz-meta-*``), the standard headers S3 stores
(`STANDARD_HEADERS`), tags in ``x-amz-tagging``, the ``versionId`` parameter,
and the digests a request states about its body (`request_checksums`,
`verify_body_digests`).

Responses: the headers of GetObject and HeadObject (`object_headers`), the
``response-*`` overrides of a GET, ``x-amz-version-id``, ``x-amz-checksum-*``,
and the answer for a delete marker (`delete_marker_response`).

Versions: S3 sends ``x-amz-version-id`` where the bucket has versioning. The
kernel's version of an object says only its id, and an unversioned bucket's
objects and a suspended bucket's newest writes share the id ``null``; so the
header is sent for every other id, for ``null`` when the request named it
(``?versionId=null``, which rclone sends after a PUT), and with every delete
marker (there are none without versioning).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from tier0.errors import BadDigest, DeleteMarkerFound, InvalidArgument, InvalidTag
from tier0.protocols.s3._auth import AuthResult
from tier0.protocols.s3._errors import (
    CODE_STATUS,
    InvalidDigest,
    InvalidRequest,
    NotImplementedOperation,
    S3Error,
    render_error,
    s3_error,
)
from tier0.protocols.s3._http import XML, Request, Response, http_date, quoted_etag
from tier0.protocols.s3._xml import CHECKSUM_ELEMENTS, checksum_type
from tier0.store import (
    CHECKSUM_ALGORITHMS,
    STANDARD_HEADERS,
    Expected,
    ObjectInfo,
    decode_digest,
)

__all__ = [
    "CHECKSUM_PREFIX",
    "META_PREFIX",
    "checksum_headers",
    "delete_marker_response",
    "object_headers",
    "override_headers",
    "parse_tagging_header",
    "request_checksums",
    "requested_algorithm",
    "stored_headers",
    "tags_of",
    "user_metadata",
    "verify_body_digests",
    "version_header",
    "version_param",
    "write_etag",
]

META_PREFIX: Final = "x-amz-meta-"
CHECKSUM_PREFIX: Final = "x-amz-checksum-"
#: GetObject's query parameters that override a response header, S3's six.
_OVERRIDES: Final = {
    "response-cache-control": b"cache-control",
    "response-content-disposition": b"content-disposition",
    "response-content-encoding": b"content-encoding",
    "response-content-language": b"content-language",
    "response-content-type": b"content-type",
    "response-expires": b"expires",
}
#: Control characters (tab aside) end or corrupt a header line.
_NOT_HEADER_TEXT: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
#: What a version id may look like: printable ASCII (tier0's are URL-safe base64).
_VERSION_ID: Final = re.compile("[\x21-\x7e]{1,1024}")
#: The content coding of a streamed upload's framing, never the object's own.
_AWS_CHUNKED: Final = "aws-chunked"


# -- requests -------------------------------------------------------------------------------


def canned_acl(headers: Mapping[str, str]) -> str | None:
    """The canned ACL a write names (``x-amz-acl``), or None.

    ``x-amz-grant-*`` headers are refused rather than dropped (tier0 keeps canned
    ACLs only): a write that quietly left out the grants it was asked for would
    leave the grantees without the access they were promised.
    """
    granted = sorted(name for name in headers if name.startswith("x-amz-grant-"))
    canned = headers.get("x-amz-acl")
    if granted and canned is not None:
        raise InvalidArgument("Specifying both Canned ACLs and Header Grants is not allowed")
    if granted:
        raise NotImplementedOperation(
            f"tier0 keeps canned ACLs only: {', '.join(granted)} cannot be kept;"
            " use x-amz-acl (private, public-read, ...) or a bucket policy."
        )
    return canned


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``x-amz-meta-*`` headers, without the prefix."""
    return {
        name[len(META_PREFIX) :]: value
        for name, value in headers.items()
        if name.startswith(META_PREFIX)
    }


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The standard headers S3 keeps with an object (Cache-Control, Content-Disposition,
    Content-Encoding, Content-Language, Expires), as sent.

    ``aws-chunked`` is dropped from Content-Encoding, as S3 drops it: it names
    how this request's body was framed, not how the object is encoded.
    """
    stored = {name: headers[name] for name in sorted(STANDARD_HEADERS) if name in headers}
    encoding = stored.pop("content-encoding", None)
    if encoding is not None:
        codings = [c.strip() for c in encoding.split(",") if c.strip().lower() != _AWS_CHUNKED]
        if any(codings):
            stored["content-encoding"] = ", ".join(c for c in codings if c)
    return stored


def parse_tagging_header(value: str | None) -> dict[str, str]:
    """The tags of an ``x-amz-tagging`` header (URL query form: ``a=1&b=2``).

    >>> parse_tagging_header("project=blue&note=a%20b&empty=")
    {'project': 'blue', 'note': 'a b', 'empty': ''}
    """
    if not value:
        return {}
    return tags_of(parse_qsl(value, keep_blank_values=True))


def tags_of(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """A tag set from (key, value) pairs; `InvalidTag` for a key given twice, as S3 says.

    The kernel checks the limits (count, lengths) when the tags are stored.
    """
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise InvalidTag(f"Cannot provide multiple Tags with the same key: {key!r}.")
        tags[key] = value
    return tags


def write_etag(value: str | None) -> str | None:
    """An ``If-Match`` ETag of a write as the kernel compares it: bare, without
    the quotes (or weak ``W/``) HTTP wraps it in.

    >>> write_etag('"9a0364b9e99bb480dd25e1f0284c8555"'), write_etag("*")
    ('9a0364b9e99bb480dd25e1f0284c8555', '*')
    """
    if value is None:
        return None
    return value.strip().removeprefix("W/").strip('"')


def version_param(params: Mapping[str, str]) -> str | None:
    """The ``versionId`` query parameter; `InvalidArgument` when it is empty, as in S3."""
    version_id = params.get("versionId")
    if version_id == "":
        raise InvalidArgument("Version id cannot be the empty string")
    if version_id is not None and not _VERSION_ID.fullmatch(version_id):
        # Never an id tier0 made; refused before it can be echoed in a header.
        raise InvalidArgument("Invalid version id specified")
    return version_id


def request_checksums(
    headers: Mapping[str, str], auth: AuthResult, trailers: Mapping[str, str]
) -> dict[str, Expected]:
    """What a request states about its body, for ``put(checksums=...)``.

    ``Content-MD5`` is checked here, since S3 answers ``InvalidDigest`` for a
    malformed one (`InvalidDigest`); ``x-amz-checksum-<alg>`` headers go to the
    kernel as they are (it rejects an unknown algorithm or a malformed value).
    A checksum announced in ``x-amz-trailer`` is deferred: its value is read
    from ``trailers`` once the body has been received whole.
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
        algorithm = name.removeprefix(CHECKSUM_PREFIX)
        # x-amz-checksum-type (and -mode, -algorithm) name no digest.
        if name.startswith(CHECKSUM_PREFIX) and algorithm in CHECKSUM_ALGORITHMS:
            checksums[algorithm] = value.strip()
    for name in auth.trailer_names:
        algorithm = name.removeprefix(CHECKSUM_PREFIX)
        if algorithm in CHECKSUM_ALGORITHMS and algorithm not in checksums:
            checksums[algorithm] = functools.partial(_trailer_value, trailers, name)
    return checksums


def requested_algorithm(headers: Mapping[str, str]) -> str | None:
    """The algorithm ``x-amz-checksum-algorithm`` (or botocore's
    ``x-amz-sdk-checksum-algorithm``) names, lower case, or None.

    S3 computes and keeps that checksum even when the request states no value
    for it. `InvalidRequest` for a name S3 does not know.
    """
    value = headers.get("x-amz-checksum-algorithm") or headers.get("x-amz-sdk-checksum-algorithm")
    if value is None:
        return None
    algorithm = value.strip().lower()
    if algorithm not in CHECKSUM_ELEMENTS:
        raise InvalidRequest(
            f"Checksum algorithm {value!r} is not supported; use one of"
            f" {', '.join(name for name in CHECKSUM_ELEMENTS.values())}."
        )
    return algorithm


def _trailer_value(trailers: Mapping[str, str], name: str) -> str:
    value = trailers.get(name)
    if value is None:
        # The decoder refuses a body without its announced trailers; this is a backstop.
        raise InvalidArgument(f"The trailer {name} was announced but never sent.")
    return value.strip()


def verify_body_digests(
    headers: Mapping[str, str],
    auth: AuthResult,
    body: bytes,
    trailers: Mapping[str, str],
    *,
    required: bool,
) -> None:
    """Check a small request body (a DeleteObjects or Tagging document) against the
    digests the request states: ``Content-MD5``, ``x-amz-checksum-*`` headers or
    trailers. A mismatch is `BadDigest`; with ``required``, stating none is
    `InvalidRequest`, as S3 answers for operations that demand one.
    """
    expected = request_checksums(headers, auth, trailers)
    if not expected and required:
        raise InvalidRequest("Missing required header for this request: Content-MD5")
    for algorithm, value in expected.items():
        text = value if isinstance(value, str) else value()
        hasher = CHECKSUM_ALGORITHMS[algorithm]()
        hasher.update(body)
        computed = hasher.digest()
        if decode_digest(algorithm, text) != computed:
            raise BadDigest(
                f"The {algorithm.upper()} you specified did not match the calculated checksum.",
                algorithm=algorithm,
                expected=text,
                computed=base64.b64encode(computed).decode("ascii"),
            )


# -- responses ------------------------------------------------------------------------------


def version_header(version_id: str, *, asked: bool = False) -> list[tuple[bytes, bytes]]:
    """``x-amz-version-id`` for ``version_id``, where S3 would send it (see the module docstring)."""
    if version_id == "null" and not asked:
        return []
    return [(b"x-amz-version-id", version_id.encode("latin-1", "replace"))]


def checksum_headers(checksums: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """``x-amz-checksum-<alg>`` for each S3 checksum recorded, and ``x-amz-checksum-type``."""
    headers = [
        ((CHECKSUM_PREFIX + algorithm).encode(), checksums[algorithm].encode("ascii"))
        for algorithm in CHECKSUM_ELEMENTS
        if algorithm in checksums
    ]
    if headers:
        headers.append((b"x-amz-checksum-type", checksum_type(headers[0][1].decode()).encode()))
    return headers


def object_headers(
    info: ObjectInfo, length: int, *, version_asked: bool = False
) -> list[tuple[bytes, bytes]]:
    """The headers GetObject and HeadObject answer with for ``info`` (``length`` bytes sent):
    content, ETag, Last-Modified, the stored standard headers, user metadata,
    the tag count and the version id."""
    headers = [
        (b"content-length", str(length).encode()),
        (b"content-type", info.content_type.encode("latin-1", "replace")),
        (b"etag", quoted_etag(info.etag).encode()),
        (b"last-modified", http_date(info.modified)),
        (b"accept-ranges", b"bytes"),
    ]
    for name, value in info.headers.items():
        headers.append((name.encode("latin-1"), value.encode("latin-1", "replace")))
    for name, value in info.metadata.items():
        # Headers arrived as latin-1 text; encoding back gives the client its bytes.
        headers.append(((META_PREFIX + name).encode("latin-1"), value.encode("latin-1", "replace")))
    if info.tags:
        headers.append((b"x-amz-tagging-count", str(len(info.tags)).encode()))
    headers.extend(version_header(info.version_id, asked=version_asked))
    return headers


def override_headers(
    headers: list[tuple[bytes, bytes]], params: Mapping[str, str], auth: AuthResult
) -> list[tuple[bytes, bytes]]:
    """``headers`` with the ``response-*`` query parameters applied (GetObject's
    ResponseContentType and its siblings).

    S3 honours them on signed requests only: an anonymous one is `InvalidRequest`.
    """
    overrides = {
        header: _header_value(name, params[name])
        for name, header in _OVERRIDES.items()
        if name in params
    }
    if not overrides:
        return headers
    if auth.principal is None:
        raise InvalidRequest(
            "Request specific response headers cannot be used for anonymous GET requests."
        )
    kept = [(name, value) for name, value in headers if name not in overrides]
    return [*kept, *overrides.items()]


def _header_value(name: str, value: str) -> bytes:
    """A ``response-*`` value as a header: refused if HTTP cannot carry it."""
    if _NOT_HEADER_TEXT.search(value):
        raise InvalidArgument(f"{name} holds a character a response header cannot carry")
    return value.encode("latin-1", "replace")


def delete_marker_response(request: Request, marker: DeleteMarkerFound) -> Response:
    """S3's answer when a read lands on a delete marker.

    The current version being a marker is ``404 NoSuchKey``; a marker asked
    for by version id is ``405 MethodNotAllowed`` (a marker has no content to
    read). Both carry ``x-amz-delete-marker: true`` and the marker's version id
    and Last-Modified, so that clients can tell a deleted key from one that
    never was.
    """
    answer = s3_error(marker)
    headers = [
        (b"content-type", XML),
        (b"x-amz-delete-marker", b"true"),
        (b"x-amz-version-id", marker.version_id.encode("latin-1", "replace")),
        (b"last-modified", http_date(marker.modified)),
    ]
    if marker.by_version:
        answer = S3Error(
            "MethodNotAllowed",
            CODE_STATUS["MethodNotAllowed"],
            "The specified method is not allowed against this resource.",
            {"Method": request.method, "ResourceType": "DeleteMarker"},
        )
        headers.append((b"allow", b"DELETE"))
    body = render_error(answer, resource=request.path, request_id=request.request_id)
    return Response(answer.status, body, headers)
