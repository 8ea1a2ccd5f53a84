"""The S3 gateway (being built), starting with its request authentication.

`Authenticator` checks AWS Signature Version 4 (Authorization header, presigned
query, streaming ``aws-chunked`` uploads) and Version 2 (header and presigned
query) against tier0's credentials; `open_body` returns the decoder that
verifies the body the way the signature requires. Both are pure: the gateway
hands in a `SignedRequest` as its HTTP server received it.

Example::

    auth = Authenticator(principals.secret_for, region="us-east-1")
    result = auth.authenticate(SignedRequest.from_target(method, target, headers))
    body = open_body(result)
    for data in received:
        for payload in body.feed(data):
            ...
    trailers = body.finish()    # only now is the body known to be intact
"""

from __future__ import annotations

from tier0.protocols.s3._auth import (
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    AuthResult,
    AuthScheme,
    HeadersNotSigned,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    InvalidURI,
    MissingDate,
    MissingSecurityHeader,
    PayloadMode,
    RequestExpired,
    RequestNotYetValid,
    RequestTimeTooSkewed,
    S3AuthError,
    SignatureDoesNotMatch,
    SignedRequest,
    XAmzContentSHA256Mismatch,
)
from tier0.protocols.s3._authenticator import (
    PRESIGN_S_MAX,
    SKEW_S_MAX,
    Authenticator,
    AuthenticatorStatistics,
)
from tier0.protocols.s3._chunked import (
    CHUNK_BYTES_MAX,
    LINE_BYTES_MAX,
    TRAILER_BYTES_MAX,
    BodyDecoder,
    ChunkedDecoder,
    ChunkedStatistics,
    ChunkSignatureDoesNotMatch,
    IncompleteBody,
    InvalidChunkSizeError,
    MalformedChunkedBody,
    MalformedTrailerError,
    PlainBody,
    open_body,
)
from tier0.protocols.s3._sigv4 import ChunkSigning

__all__ = [
    "CHUNK_BYTES_MAX",
    "LINE_BYTES_MAX",
    "PRESIGN_S_MAX",
    "SKEW_S_MAX",
    "TRAILER_BYTES_MAX",
    "AuthResult",
    "AuthScheme",
    "Authenticator",
    "AuthenticatorStatistics",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "BodyDecoder",
    "ChunkSignatureDoesNotMatch",
    "ChunkSigning",
    "ChunkedDecoder",
    "ChunkedStatistics",
    "HeadersNotSigned",
    "IncompleteBody",
    "InvalidAccessKeyId",
    "InvalidAuthArgument",
    "InvalidChunkSizeError",
    "InvalidURI",
    "MalformedChunkedBody",
    "MalformedTrailerError",
    "MissingDate",
    "MissingSecurityHeader",
    "PayloadMode",
    "PlainBody",
    "RequestExpired",
    "RequestNotYetValid",
    "RequestTimeTooSkewed",
    "S3AuthError",
    "SignatureDoesNotMatch",
    "SignedRequest",
    "XAmzContentSHA256Mismatch",
    "open_body",
]
