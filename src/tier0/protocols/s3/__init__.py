"""The S3 gateway: `create_s3_app` (path-style and virtual-hosted) and its request authentication.

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

Failures become S3 answers in one place, `s3_error` (code and status) and
`render_error` (the XML body). Request bodies are read by the hardened
``parse_*`` functions, which raise only `MalformedXML`; responses are written
by the ``render_*`` functions.
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
from tier0.protocols.s3._errors import (
    CLASS_CODES,
    CODE_STATUS,
    BucketAlreadyOwnedByYou,
    S3Error,
    render_error,
    s3_error,
)
from tier0.protocols.s3._gateway import (
    GatewayLimits,
    MethodNotAllowed,
    NotImplementedOperation,
    S3Gateway,
    bucket_of_host,
    create_s3_app,
    normal_domain,
)
from tier0.protocols.s3._http import ZERO_COPY_SEND
from tier0.protocols.s3._sigv4 import ChunkSigning
from tier0.protocols.s3._xml import (
    COMPLETE_XML_BYTES_MAX,
    DELETE_OBJECTS_MAX,
    PART_NUMBER_MAX,
    S3_NAMESPACE,
    XML_BYTES_MAX,
    Deleted,
    DeleteError,
    DeleteRequest,
    MalformedXML,
    ObjectIdentifier,
    VersioningConfiguration,
    escape_text,
    format_timestamp,
    parse_create_bucket_configuration,
    parse_delete,
    parse_tagging,
    parse_versioning_configuration,
    parse_xml,
    render_copy_object_result,
    render_delete_result,
    render_get_object_attributes,
    render_list_buckets,
    render_list_objects_v1,
    render_list_objects_v2,
    render_list_versions,
    render_location_constraint,
    render_tagging,
    render_versioning_configuration,
)
from tier0.protocols.s3._xml_multipart import (
    CompletedPart,
    parse_complete_multipart_upload,
    render_complete_multipart_upload,
    render_initiate_multipart_upload,
)

__all__ = [
    "CHUNK_BYTES_MAX",
    "CLASS_CODES",
    "CODE_STATUS",
    "COMPLETE_XML_BYTES_MAX",
    "DELETE_OBJECTS_MAX",
    "LINE_BYTES_MAX",
    "PART_NUMBER_MAX",
    "PRESIGN_S_MAX",
    "S3_NAMESPACE",
    "SKEW_S_MAX",
    "TRAILER_BYTES_MAX",
    "XML_BYTES_MAX",
    "ZERO_COPY_SEND",
    "AuthResult",
    "AuthScheme",
    "Authenticator",
    "AuthenticatorStatistics",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "BodyDecoder",
    "BucketAlreadyOwnedByYou",
    "ChunkSignatureDoesNotMatch",
    "ChunkSigning",
    "ChunkedDecoder",
    "ChunkedStatistics",
    "CompletedPart",
    "DeleteError",
    "DeleteRequest",
    "Deleted",
    "GatewayLimits",
    "HeadersNotSigned",
    "IncompleteBody",
    "InvalidAccessKeyId",
    "InvalidAuthArgument",
    "InvalidChunkSizeError",
    "InvalidURI",
    "MalformedChunkedBody",
    "MalformedTrailerError",
    "MalformedXML",
    "MethodNotAllowed",
    "MissingDate",
    "MissingSecurityHeader",
    "NotImplementedOperation",
    "ObjectIdentifier",
    "PayloadMode",
    "PlainBody",
    "RequestExpired",
    "RequestNotYetValid",
    "RequestTimeTooSkewed",
    "S3AuthError",
    "S3Error",
    "S3Gateway",
    "SignatureDoesNotMatch",
    "SignedRequest",
    "VersioningConfiguration",
    "XAmzContentSHA256Mismatch",
    "bucket_of_host",
    "create_s3_app",
    "escape_text",
    "format_timestamp",
    "normal_domain",
    "open_body",
    "parse_complete_multipart_upload",
    "parse_create_bucket_configuration",
    "parse_delete",
    "parse_tagging",
    "parse_versioning_configuration",
    "parse_xml",
    "render_complete_multipart_upload",
    "render_copy_object_result",
    "render_delete_result",
    "render_error",
    "render_get_object_attributes",
    "render_initiate_multipart_upload",
    "render_list_buckets",
    "render_list_objects_v1",
    "render_list_objects_v2",
    "render_list_versions",
    "render_location_constraint",
    "render_tagging",
    "render_versioning_configuration",
    "s3_error",
]
