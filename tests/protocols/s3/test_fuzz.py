"""Hypothesis-generated requests against a live ``tier0 serve``: never a 500, never a hang.

Each example is one HTTP request: a method, a bucket and key of any shape
(odd bytes percent-encoded, invalid UTF-8, dot segments), query parameters
(S3's subresources and arguments, authentication parameters, junk), headers
(the real S3 and HTTP headers with plausible and junk values), and a body
(random bytes, or S3's XML documents cut and filled with junk, including
entity tricks). Most requests are signed correctly by botocore's signers, so
that they get past authentication and reach the operations; the rest are
presigned, SigV2, anonymous or carry a junk Authorization header.

Whatever the request, the answer is a success, or S3's XML error (Code,
Message, RequestId matching ``x-amz-request-id``) with a 3xx or 4xx status,
or 501 NotImplemented; ``x-amz-request-id`` is on every answer; a HEAD has no
body. A socket timeout fails the example (a hang). Afterwards the server is
healthy, still serves boto3, and logged no traceback.

The run is derandomized (a fixed sequence of examples) and modest in size, so
that it is repeatable and takes seconds.
"""

from __future__ import annotations

import http.client
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from botocore.auth import HmacV1Auth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocols.s3.live import ACCESS, REGION, SECRET, make_client
from tests.protocols.s3.raw import Raw
from tests.server.test_serve import ServeProcess

pytestmark = pytest.mark.slow

ROOT = Credentials(ACCESS, SECRET)
#: A bucket that exists (with a few objects), so that requests reach object operations.
BUCKET = "fuzz"
KEYS = ("a", "dir/b", "ünï code")
#: Seconds a single answer may take; more is a hang.
ANSWER_TIMEOUT_S = 15
EXAMPLES = 500

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seeded(server: ServeProcess, s3: Any) -> Iterator[ServeProcess]:
    """The server, with the fuzz bucket and a few objects in it."""
    s3.create_bucket(Bucket=BUCKET)
    for key in KEYS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=f"object {key}".encode())
    yield server


# -- strategies ------------------------------------------------------------------------------------

_ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)
#: Printable ASCII: what header values may hold without the HTTP layer refusing the request.
_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_NUMBERS = st.integers(min_value=-(2**63), max_value=2**64).map(str)

_BUCKETS = st.one_of(
    # one_of picks its branches evenly: most requests name the bucket that exists.
    *[st.just(BUCKET)] * 5,
    st.sampled_from(["missing-bucket", "", "Invalid_Bucket", "a", "x" * 70]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True),
    _ODD_TEXT,
).filter(lambda bucket: not bucket.startswith("_"))  # /_tier0/ is the server's own API

_KEYS = st.one_of(
    st.sampled_from([*KEYS, "new"]),
    st.sampled_from([*KEYS, "new"]),
    st.sampled_from(["", "a/../b", "./x", "//double", "dir/", "%", "+ +", "?", "k" * 1100]),
    _ODD_TEXT,
    st.text(alphabet="ab/.", max_size=12),
)

#: Raw escapes that no encoder would produce: invalid UTF-8, NUL, encoded slashes.
_RAW_ESCAPES = st.sampled_from(["%FF", "%00", "%2F", "%C3%28", "%ED%A0%80", "%e2%82%ac", "%7e"])

SUBRESOURCES = [
    "acl", "attributes", "cors", "delete", "location", "policy", "policyStatus", "tagging",
    "uploads", "uploadId", "versioning", "versions", "list-type", "partNumber",
    # S3 has these; tier0 answers 501 for them.
    "lifecycle", "website", "notification", "object-lock", "select", "restore", "torrent",
]  # fmt: skip
ARGUMENTS = [
    "prefix", "delimiter", "max-keys", "marker", "continuation-token", "start-after",
    "encoding-type", "fetch-owner", "versionId", "key-marker", "version-id-marker",
    "upload-id-marker", "max-uploads", "max-parts", "part-number-marker", "x-id",
    "response-content-type", "response-content-disposition", "response-expires",
    "response-cache-control",
]  # fmt: skip
AUTH_PARAMETERS = [
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature", "AWSAccessKeyId", "Signature", "Expires",
]  # fmt: skip
_QUERY_VALUES = st.one_of(
    st.sampled_from(["", "2", "0", "1", "1000", "-1", "url", "true", "null", "AWS4-HMAC-SHA256"]),
    _NUMBERS,
    _ODD_TEXT,
)
_QUERY = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(SUBRESOURCES),
            st.sampled_from(SUBRESOURCES),
            st.sampled_from(ARGUMENTS),
            st.sampled_from(ARGUMENTS),
            st.sampled_from(AUTH_PARAMETERS),
            _ODD_TEXT.filter(bool),
        ),
        _QUERY_VALUES,
    ),
    max_size=3,
)

_HTTP_DATES = st.sampled_from(
    [
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "not a date",
    ]
)
#: Real S3 and HTTP request headers, each with values it may plausibly carry.
_HEADER_VALUES: dict[str, st.SearchStrategy[str]] = {
    "range": st.one_of(
        st.sampled_from(
            [
                "bytes=0-0",
                "bytes=0-",
                "bytes=-1",
                "bytes=5-2",
                "bytes=0-1,3-4",
                "bytes=99999999999-",
                "bytes=-0",
                "bytes=",
                "items=0-1",
            ]
        ),
        st.builds(lambda a, b: f"bytes={a}-{b}", _NUMBERS, _NUMBERS),
    ),
    "if-match": st.sampled_from(['"abc"', "*", '""', 'W/"x"', '"a", "b"']),
    "if-none-match": st.sampled_from(['"abc"', "*", '""']),
    "if-modified-since": _HTTP_DATES,
    "if-unmodified-since": _HTTP_DATES,
    "content-type": st.sampled_from(
        ["text/plain", "application/xml", "", "multipart/form-data; boundary=x"]
    ),
    "content-md5": st.sampled_from(["", "1B2M2Y8AsgTpgAmY7PhCfg==", "not base64", "AAAA"]),
    "content-encoding": st.sampled_from(["gzip", "aws-chunked", "aws-chunked,gzip", "identity"]),
    "content-disposition": _HEADER_TEXT,
    "cache-control": _HEADER_TEXT,
    "expires": _HTTP_DATES,
    "x-amz-meta-fuzz": _HEADER_TEXT,
    "x-amz-acl": st.sampled_from(
        [
            "private",
            "public-read",
            "public-read-write",
            "authenticated-read",
            "bucket-owner-full-control",
            "bogus",
        ]
    ),
    "x-amz-copy-source": st.one_of(
        st.sampled_from(
            [
                f"/{BUCKET}/a",
                f"{BUCKET}/dir/b",
                f"/{BUCKET}/a?versionId=null",
                "/missing-bucket/x",
                "/",
                "%FF",
            ]
        ),
        _HEADER_TEXT,
    ),
    "x-amz-copy-source-range": st.sampled_from(["bytes=0-0", "bytes=0-", "bytes=2-1", "junk"]),
    "x-amz-copy-source-if-match": st.sampled_from(['"abc"', "*"]),
    "x-amz-metadata-directive": st.sampled_from(["COPY", "REPLACE", "bogus"]),
    "x-amz-tagging": st.sampled_from(["a=b", "a=b&a=c", "=", "&&", "%FF=1"]),
    "x-amz-tagging-directive": st.sampled_from(["COPY", "REPLACE", "x"]),
    "x-amz-checksum-crc32": st.sampled_from(["AAAAAA==", "", "not base64", "AAAAAAAA"]),
    "x-amz-checksum-sha256": st.sampled_from(["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "x"]),
    "x-amz-checksum-algorithm": st.sampled_from(
        ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "MD4"]
    ),
    "x-amz-sdk-checksum-algorithm": st.sampled_from(["CRC32", "SHA256", "bogus"]),
    "x-amz-checksum-mode": st.sampled_from(["ENABLED", "DISABLED", "x"]),
    "x-amz-checksum-type": st.sampled_from(["COMPOSITE", "FULL_OBJECT", "x"]),
    "x-amz-trailer": st.sampled_from(["x-amz-checksum-crc32", "x-amz-meta-x", ""]),
    "x-amz-decoded-content-length": st.one_of(_NUMBERS, _HEADER_TEXT),
    "x-amz-storage-class": st.sampled_from(["STANDARD", "GLACIER", "bogus"]),
    "x-amz-server-side-encryption": st.sampled_from(["AES256", "aws:kms", "x"]),
    "x-amz-object-attributes": st.sampled_from(
        ["ETag", "ETag,Checksum,ObjectParts,StorageClass,ObjectSize", "Bogus", ""]
    ),
    "x-amz-max-parts": _NUMBERS,
    "x-amz-part-number-marker": _NUMBERS,
    "x-amz-expected-bucket-owner": _HEADER_TEXT,
    "x-amz-bucket-object-lock-enabled": st.sampled_from(["true", "false"]),
    "x-amz-website-redirect-location": _HEADER_TEXT,
    "x-amz-write-offset-bytes": _NUMBERS,
    "x-amz-grant-read": _HEADER_TEXT,
    "origin": st.sampled_from(["http://example.com", "null", ""]),
    "access-control-request-method": st.sampled_from(["GET", "PUT", "BREW"]),
    "access-control-request-headers": _HEADER_TEXT,
}
_HEADERS = st.lists(st.sampled_from(sorted(_HEADER_VALUES)), unique=True, max_size=3).flatmap(
    lambda chosen: st.fixed_dictionaries(
        {
            name: st.one_of(_HEADER_VALUES[name], _HEADER_VALUES[name], _HEADER_TEXT)
            for name in chosen
        }
    )
)

_XML_DOCUMENTS = [
    "<Delete><Quiet>{0}</Quiet><Object><Key>{1}</Key><VersionId>{2}</VersionId></Object></Delete>",
    "<CompleteMultipartUpload><Part><PartNumber>{0}</PartNumber><ETag>{1}</ETag></Part>"
    "<Part><PartNumber>{2}</PartNumber></Part></CompleteMultipartUpload>",
    "<VersioningConfiguration><Status>{0}</Status><MfaDelete>{1}</MfaDelete></VersioningConfiguration>",
    "<Tagging><TagSet><Tag><Key>{0}</Key><Value>{1}</Value></Tag><Tag><Key>{0}</Key><Value>{2}</Value></Tag></TagSet></Tagging>",
    "<CreateBucketConfiguration><LocationConstraint>{0}</LocationConstraint></CreateBucketConfiguration>",
    "<CORSConfiguration><CORSRule><AllowedMethod>{0}</AllowedMethod><AllowedOrigin>{1}</AllowedOrigin>"
    "<MaxAgeSeconds>{2}</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    "<AccessControlPolicy><Owner><ID>{0}</ID></Owner><AccessControlList><Grant><Grantee>{1}</Grantee>"
    "<Permission>{2}</Permission></Grant></AccessControlList></AccessControlPolicy>",
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "{0}{0}{0}{0}"><!ENTITY b "&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>',
    '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><Tagging><TagSet><Tag><Key>&e;</Key><Value>{1}</Value></Tag></TagSet></Tagging>',
    '{{"Version": "2012-10-17", "Statement": [{{"Effect": "{0}", "Principal": "*", "Action": "{1}", "Resource": "{2}"}}]}}',
]  # fmt: skip
_XML_FILLING = st.one_of(
    st.sampled_from(
        ["true", "false", "1", "10001", "-1", "Enabled", "Suspended", "GET", "*", '"e"']
    ),
    _ODD_TEXT.map(lambda text: text.replace("&", "&amp;").replace("<", "&lt;")),
    _ODD_TEXT,
)
_XML_BODIES = st.builds(
    lambda template, filling, cut: template.format(*filling).encode()[: cut or None],
    st.sampled_from(_XML_DOCUMENTS),
    st.tuples(_XML_FILLING, _XML_FILLING, _XML_FILLING),
    st.one_of(st.none(), st.integers(min_value=0, max_value=200)),
)
_BODIES = st.one_of(st.just(b""), st.binary(max_size=2048), _XML_BODIES)

#: PATCH is no S3 method (405 MethodNotAllowed); GET and PUT come twice as often as the rest.
METHODS = ["GET", "GET", "HEAD", "PUT", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]
#: How a request is authenticated; "sigv4" (correct, in the header) most of the time.
SIGNINGS = ["sigv4"] * 6 + ["sigv4-unsigned-payload", "presigned", "sigv2", "anonymous", "junk"]


@st.composite
def _targets(draw: st.DrawFn) -> str:
    """A request target: an encoded path, maybe with raw escapes, and a query string."""
    bucket = quote(draw(_BUCKETS), safe="")
    key = quote(draw(_KEYS), safe="/")
    if draw(st.booleans()) and draw(st.integers(0, 4)) == 0:
        key += draw(_RAW_ESCAPES)
    path = f"/{bucket}/{key}" if key or draw(st.booleans()) else f"/{bucket}"
    if path.startswith("/_tier0"):
        path = "/x" + path
    pairs = draw(_QUERY)
    query = "&".join(
        quote(name, safe="-_.~")
        + ("" if value == "" and draw(st.booleans()) else f"={quote(value, safe='-_.~')}")
        for name, value in pairs
    )
    return f"{path}?{query}" if query else path


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes, str]:
    method = draw(st.sampled_from(METHODS))
    target = draw(_targets())
    headers = draw(_HEADERS)
    body = draw(_BODIES) if method in ("PUT", "POST") or draw(st.integers(0, 5)) == 0 else b""
    signing = draw(st.sampled_from(SIGNINGS))
    if signing == "junk":
        headers["authorization"] = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=0",
                        "AWS4-HMAC-SHA256 ",
                        f"AWS {ACCESS}:",
                        "AWS :",
                        "Bearer token",
                    ]
                ),
                _HEADER_TEXT,
            )
        )
    return method, target, headers, body, signing


# -- sending --------------------------------------------------------------------------------------


def _sign(
    url: str, method: str, target: str, headers: dict[str, str], body: bytes, signing: str
) -> tuple[str, dict[str, str]]:
    """(target, headers) as botocore signs the request for ``signing``."""
    if signing in ("anonymous", "junk"):
        return target, headers
    # A presigned URL is signed without its body (botocore would read a body as form fields).
    data = b"" if signing == "presigned" else body
    request = AWSRequest(method=method, url=url + target, headers=dict(headers), data=data)
    if signing == "sigv4":
        S3SigV4Auth(ROOT, "s3", REGION).add_auth(request)
    elif signing == "sigv4-unsigned-payload":
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        S3SigV4Auth(ROOT, "s3", REGION).add_auth(request)
    elif signing == "presigned":
        S3SigV4QueryAuth(ROOT, "s3", REGION, expires=300).add_auth(request)
    else:
        HmacV1Auth(ROOT).add_auth(request)
    parts = urlsplit(request.url)
    signed_target = parts.path + (f"?{parts.query}" if parts.query else "")
    signed = {
        name: value.decode("latin-1") if isinstance(value, bytes) else value
        for name, value in request.headers.items()
    }
    return signed_target, signed


def _send(url: str, method: str, target: str, headers: dict[str, str], body: bytes) -> Raw:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=ANSWER_TIMEOUT_S
    )
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body or method in ("PUT", "POST"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


#: A character reference to a C0 control character other than TAB, LF and CR. XML 1.0 has no
#: way to carry those, and S3 writes them as references all the same (its documented
#: "XML related object key constraints"; clients ask for ``encoding-type=url`` to avoid
#: them), so the gateway does too; the checks here accept them and nothing else.
_CONTROL_REFERENCE = re.compile(
    rb"&#(?:x0*(?:[0-8BCEF]|1[0-9A-F])|0*(?:[0-8]|1[124-9]|2[0-9]|3[01]));", re.I
)


def _parse(body: bytes) -> ET.Element:
    """``body`` parsed as XML, with control-character references read as ``?``."""
    return ET.fromstring(_CONTROL_REFERENCE.sub(b"?", body))


def _check_answer(method: str, answer: Raw) -> None:
    """A success, or S3's XML error; never a 500."""
    request_id = answer.headers.get("x-amz-request-id")
    assert request_id, answer.headers
    if method == "HEAD":
        assert answer.body == b""
        assert answer.status < 500 or answer.status == 501, answer.status
        return
    if answer.status < 300 or answer.status == 304:
        if "xml" in answer.headers.get("content-type", "") and answer.body:
            _parse(answer.body)  # a success's XML is well-formed, too
        return
    assert answer.headers.get("content-type") == "application/xml", answer.headers
    root = _parse(answer.body)
    assert root.tag == "Error", answer.body[:300]
    code = root.findtext("Code")
    assert code and root.findtext("Message"), answer.body[:300]
    assert root.findtext("RequestId") == request_id
    assert answer.status < 500 or (answer.status, code) == (501, "NotImplemented"), (
        answer.status,
        answer.body[:600],
    )


def test_any_request_gets_a_success_or_a_well_formed_s3_error(seeded: ServeProcess) -> None:
    @FUZZ
    @given(request=_requests())
    def exchange(request: tuple[str, str, dict[str, str], bytes, str]) -> None:
        method, target, headers, body, signing = request
        signed_target, signed = _sign(seeded.url, method, target, headers, body, signing)
        _check_answer(method, _send(seeded.url, method, signed_target, signed, body))

    exchange()

    # Afterwards the server is healthy, serves boto3, and logged no traceback.
    health = httpx.get(f"{seeded.url}/_tier0/health", timeout=ANSWER_TIMEOUT_S)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    s3 = make_client(seeded.url)
    s3.put_object(Bucket=BUCKET, Key="after", Body=b"still serving")
    assert s3.get_object(Bucket=BUCKET, Key="after")["Body"].read() == b"still serving"
    output = "".join(seeded.stdout + seeded.stderr)
    assert "Traceback" not in output, output[-4000:]
    assert "Exception in ASGI application" not in output, output[-4000:]
