"""The one table that turns tier0 errors into S3 error answers.

Every failure the gateway answers with passes through `s3_error`, which picks
the S3 ``<Code>`` and HTTP status; `render_error` writes S3's XML error body.
Nothing else in the gateway chooses a status code for an error.

Resolution, most specific first:

1. an error that carries its own ``s3_code`` (the `S3AuthError` family,
   `MalformedXML`, `BucketAlreadyOwnedByYou`) answers with that code, and the
   status `CODE_STATUS` gives for it (or, for a code not listed there, the
   status of its nearest tier0 class);
2. otherwise the nearest class in the error's MRO that `CLASS_CODES` lists
   (``KeyTooLong`` → ``KeyTooLongError``, a plain ``InvalidKey`` →
   ``InvalidArgument``, and so on);
3. anything else is ``500 InternalError``.

5xx answers never echo the exception's message: it may name paths or backend
details the client has no business seeing; the log has them. ``501
NotImplemented`` is the exception: its message is written for the client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from tier0 import errors as kernel
from tier0.protocols.s3._xml import escape_text

__all__ = [
    "CLASS_CODES",
    "CODE_STATUS",
    "BadRequest",
    "BucketAlreadyOwnedByYou",
    "InvalidDigest",
    "InvalidRequest",
    "NotImplementedOperation",
    "S3Error",
    "render_error",
    "s3_error",
]


class BucketAlreadyOwnedByYou(kernel.BucketAlreadyExists):
    """CreateBucket for a bucket the requester owns already.

    The kernel cannot tell the two apart (it does not compare owners with the
    requester); the gateway raises this subclass when the owner matches, and
    existing ``except BucketAlreadyExists`` handlers keep working.
    """

    s3_code: ClassVar[str] = "BucketAlreadyOwnedByYou"


class InvalidDigest(kernel.InvalidArgument):
    """A ``Content-MD5`` header that is not the base64 of 16 bytes.

    The kernel sees only a malformed checksum (`InvalidArgument`); S3 names
    this case apart from a well-formed digest that does not match (``BadDigest``).
    """

    s3_code: ClassVar[str] = "InvalidDigest"


class NotImplementedOperation(kernel.Tier0Error):
    """A request for an S3 operation, or an option of one, the gateway does not implement (yet).

    It lives here rather than in the gateway module so that operation modules
    (which the gateway imports) can raise it too.
    """

    s3_code: ClassVar[str] = "NotImplemented"


class BadRequest(kernel.InvalidArgument):
    """A request that is not HTTP/1.1 as the gateway takes it: a body framed both
    by Content-Length and Transfer-Encoding, or a head the parser refuses."""

    s3_code: ClassVar[str] = "BadRequest"


class InvalidRequest(kernel.InvalidArgument):
    """A request S3 refuses as a whole with ``InvalidRequest``: a required header
    missing (DeleteObjects without a digest), an object copied onto itself
    unchanged, a delete marker named as a copy source, and the like."""

    s3_code: ClassVar[str] = "InvalidRequest"


@dataclass(frozen=True, slots=True)
class S3Error:
    """How S3 answers one failure: ``<Code>``, HTTP status, ``<Message>``, and
    the extra elements of the error body (``BucketName``, ``StringToSign``, ...)."""

    code: str
    status: int
    message: str
    details: Mapping[str, str] = field(default_factory=dict)


#: The HTTP status of every S3 code tier0 answers with. Codes an error carries
#: itself (``s3_code``) are looked up here first.
CODE_STATUS: Mapping[str, int] = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BadRequest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "CORSResponse": 403,
    "ConditionalRequestConflict": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "IncorrectNumberOfFilesInPostRequest": 400,
    "InsufficientStorage": 507,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidChunkSizeError": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartNumber": 416,
    "InvalidPartOrder": 400,
    "InvalidPolicyDocument": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidTag": 400,
    "InvalidURI": 400,
    "KeyTooLongError": 400,
    "MalformedPOSTRequest": 400,
    "MalformedPolicy": 400,
    "MalformedTrailerError": 400,
    "MalformedXML": 400,
    "MaxPostPreDataLengthExceededError": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "MissingSecurityHeader": 400,
    "NoSuchBucket": 404,
    "NoSuchBucketPolicy": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchKey": 404,
    "NoSuchTagSet": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestHeaderSectionTooLarge": 400,
    "RequestTimeout": 400,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "SlowDown": 503,
    "XAmzContentSHA256Mismatch": 400,
}

#: Kernel classes to S3 codes. The nearest class in an error's MRO wins, so a
#: subclass is listed only where it answers differently from its parent.
CLASS_CODES: Mapping[type[BaseException], str] = {
    kernel.NoSuchBucket: "NoSuchBucket",
    kernel.NoSuchKey: "NoSuchKey",
    kernel.NoSuchVersion: "NoSuchVersion",
    kernel.BucketAlreadyExists: "BucketAlreadyExists",
    kernel.BucketNotEmpty: "BucketNotEmpty",
    kernel.PreconditionFailed: "PreconditionFailed",
    kernel.ConditionalRequestConflict: "ConditionalRequestConflict",
    kernel.EntityTooLarge: "EntityTooLarge",
    kernel.InvalidArgument: "InvalidArgument",
    kernel.InvalidBucketName: "InvalidBucketName",
    kernel.InvalidKey: "InvalidArgument",
    kernel.KeyTooLong: "KeyTooLongError",
    kernel.MetadataTooLarge: "MetadataTooLarge",
    kernel.InvalidTag: "InvalidTag",
    kernel.TooManyTags: "BadRequest",
    kernel.InvalidRange: "InvalidRange",
    # Multipart uploads (tier0.store._multipart).
    kernel.NoSuchUpload: "NoSuchUpload",
    kernel.InvalidPart: "InvalidPart",
    kernel.InvalidPartOrder: "InvalidPartOrder",
    kernel.InvalidPartNumber: "InvalidPartNumber",
    kernel.EntityTooSmall: "EntityTooSmall",
    # Bucket configuration (tier0.store._bucketconf).
    kernel.MalformedPolicy: "MalformedPolicy",
    kernel.NoSuchBucketPolicy: "NoSuchBucketPolicy",
    kernel.NoSuchTagSet: "NoSuchTagSet",
    kernel.NoSuchCORSConfiguration: "NoSuchCORSConfiguration",
    # S3 answers "Found unsupported HTTP method in CORS config..." as InvalidRequest.
    kernel.InvalidCORSConfiguration: "InvalidRequest",
    # tier0 keeps canned ACLs only; grants beyond them are an S3 feature it lacks.
    kernel.UnsupportedACL: "NotImplemented",
    # A body that does not match its Content-MD5 or x-amz-checksum-*: S3 answers
    # BadDigest for both ("The CRC32 you specified did not match the calculated
    # checksum."), which is how the kernel's message begins too.
    kernel.BadDigest: "BadDigest",
    kernel.AccessDenied: "AccessDenied",
    # Credentials the kernel rejects without an S3 code of their own (the
    # authenticator's errors carry one) are an unknown key as far as S3 says.
    kernel.InvalidCredentials: "InvalidAccessKeyId",
    # AWS S3 never reports a full disk, so it has no code for it. MinIO answers
    # 507 with its own "XMinioStorageFull"; tier0 keeps MinIO's status and uses
    # the status's own name (RFC 4918) as the code. 507 is not in botocore's
    # retry set, which is right: retrying before space is freed cannot help.
    kernel.StorageFull: "InsufficientStorage",
    # Both are "try again later" from the client's side; 503 is the status
    # SDKs back off and retry on.
    kernel.StoreFailed: "ServiceUnavailable",
    kernel.MetaUnavailable: "ServiceUnavailable",
}

_SERVER_MESSAGES: Mapping[str, str] = {
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "The service is unavailable. Please try again later.",
    "InsufficientStorage": "The server is out of storage space. Free space, then retry.",
    "SlowDown": "Please reduce your request rate.",
}

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _code_by_class(error: BaseException) -> str | None:
    for cls in type(error).__mro__:
        if cls in CLASS_CODES:
            return CLASS_CODES[cls]
    return None


def s3_error(error: BaseException) -> S3Error:
    """Return the S3 answer for ``error``; never raises.

    >>> s3_error(kernel.NoSuchKey("no key 'a' in bucket 'b'"))
    S3Error(code='NoSuchKey', status=404, message="no key 'a' in bucket 'b'", details={})

    An error with an ``s3_code`` answers with it and keeps its ``details``; a
    5xx answer carries a fixed message, never the exception's own text.
    """
    own_code = getattr(error, "s3_code", None)
    class_code = _code_by_class(error)
    if isinstance(own_code, str):
        code = own_code
        status = CODE_STATUS.get(code) or CODE_STATUS.get(class_code or "", 400)
    elif class_code is not None:
        code, status = class_code, CODE_STATUS[class_code]
    else:
        code, status = "InternalError", 500
    # NotImplemented (501) is no server failure: its message says what tier0
    # lacks, written for the client, so it is shown like a 4xx message.
    if status >= 500 and code != "NotImplemented":
        return S3Error(code, status, _SERVER_MESSAGES.get(code, _SERVER_MESSAGES["InternalError"]))
    raw_details = getattr(error, "details", None)
    details = (
        {str(k): str(v) for k, v in raw_details.items()} if isinstance(raw_details, Mapping) else {}
    )
    return S3Error(code, status, str(error), details)


def render_error(
    error: BaseException | S3Error,
    *,
    resource: str,
    request_id: str,
    details: Mapping[str, str] | None = None,
) -> bytes:
    """S3's XML error document for ``error`` (an exception or a resolved `S3Error`).

    ``resource`` is the request path (``/bucket/key``); ``details`` adds
    elements such as ``BucketName`` or ``Key`` that the gateway knows and the
    error does not (the error's own details win on a clash, being more
    specific). Like S3, the document carries no namespace. Every name in the
    details must be an XML name (``ValueError`` otherwise: a programming error).

    >>> render_error(kernel.NoSuchBucket("no bucket 'b'"), resource="/b", request_id="r1")[:60]
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>NoSuchBu'
    """
    answer = error if isinstance(error, S3Error) else s3_error(error)
    extra = {**(details or {}), **answer.details}
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
        f"<Code>{escape_text(answer.code)}</Code>",
        f"<Message>{escape_text(answer.message)}</Message>",
    ]
    for name, value in extra.items():
        if not _XML_NAME.fullmatch(name) or name in {"Code", "Message", "Resource", "RequestId"}:
            raise ValueError(f"error detail name {name!r} is not a free XML element name")
        parts.append(f"<{name}>{escape_text(value)}</{name}>")
    # The path as the client sent it, control characters percent-encoded:
    # some (NUL) are not XML at all, even as character references.
    shown = _CONTROL.sub(lambda m: f"%{ord(m[0]):02X}", resource)
    parts.append(f"<Resource>{escape_text(shown)}</Resource>")
    parts.append(f"<RequestId>{escape_text(request_id)}</RequestId></Error>")
    return "".join(parts).encode("utf-8")
