"""AWS Signature Version 2 for S3 (``AWS key:signature`` and ``?AWSAccessKeyId=...``).

Pure functions over strings, following "Signing and Authenticating REST
Requests" in the S3 developer guide. SigV2 is deprecated but alive: boto3's
``generate_presigned_url`` still produces it unless told ``s3v4``, and users'
scripts depend on those URLs.

SigV2 signs far less than SigV4: the method, Content-MD5, Content-Type, the
date, the ``x-amz-*`` headers and the path with a fixed list of sub-resources.
Other query parameters (``prefix``, ``max-keys``) and the body are unsigned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

#: Query parameters that are part of the signed resource. This is botocore's
#: list, a superset of the one in the AWS guide; a parameter on one side only
#: would make every signature that carries it fail.
SUBRESOURCES: Final = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)


def canonical_resources(raw_path: str, raw_query: str, *, host_bucket: str | None) -> list[str]:
    """The signed resource, ``[/bucket]<raw path>[?sub-resources]``, in the forms
    clients sign it: one, or two for a path-style request to a bucket.

    ``host_bucket`` is the bucket named by the Host header in virtual-hosted
    addressing: SigV2 signs the path as if the request were path-style. The
    path stays as sent; sub-resource values are decoded, sorted by name, and a
    parameter sent without ``=`` (``?uploads``) is signed without one.

    AWS's definition signs ``GET /bucket`` as ``/bucket``; botocore signs it as
    ``/bucket/``, as for virtual-hosted requests. Both name the same bucket, so
    both are accepted.

    >>> canonical_resources("/photos/", "versionId=3%2F1&prefix=a&acl", host_bucket="b")
    ['/b/photos/?acl&versionId=3/1']
    >>> canonical_resources("/b", "location", host_bucket=None)
    ['/b?location', '/b/?location']
    """
    path = f"/{host_bucket}{raw_path}" if host_bucket else raw_path
    paths = [path]
    if host_bucket is None and len(path) > 1 and path.count("/") == 1:
        paths.append(path + "/")
    found: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        name, equals, value = piece.partition("=")
        name = unquote(name)
        if name in SUBRESOURCES:
            found.append((name, f"{name}={unquote(value)}" if equals else name))
    if not found:
        return paths
    found.sort(key=lambda item: item[0])  # stable: repeated names keep their order
    subresources = "?" + "&".join(text for _, text in found)
    return [path + subresources for path in paths]


def canonical_amz_headers(headers: Mapping[str, str]) -> str:
    """The ``x-amz-*`` headers as ``name:value\\n`` lines, sorted by name.

    ``headers`` has lower-case names, repeated headers already joined with ``,``.
    """
    amz = sorted(
        (name, value.strip()) for name, value in headers.items() if name.startswith("x-amz-")
    )
    return "".join(f"{name}:{value}\n" for name, value in amz)


def string_to_sign(
    *,
    method: str,
    content_md5: str,
    content_type: str,
    date: str,
    amz_headers: str,
    resource: str,
) -> str:
    """The SigV2 string to sign. ``date`` is the Date header, the empty string
    when ``x-amz-date`` is sent (that one is signed among ``amz_headers``), or
    ``Expires`` for a presigned URL."""
    return f"{method.upper()}\n{content_md5.strip()}\n{content_type.strip()}\n{date}\n{amz_headers}{resource}"


def sign(secret: str, text: str) -> str:
    """The base64 HMAC-SHA1 of ``text``."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
