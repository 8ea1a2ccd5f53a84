"""Listing through a live ``tier0 serve``: ListObjects v1 and v2, ListObjectVersions,
bucket versioning and location, on both metadata backends.

boto3 (with its default ``encoding-type=url`` on every listing) and its
paginators drive most tests; raw requests signed by botocore show what boto3
hides (the encoded fields, the order of versions and delete markers in one
document, parameters boto3 refuses to send); the AWS CLI runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import tier0
from tests.protocols.s3.live import ACCESS, REGION, SECRET, error_code, make_client
from tests.server.test_serve import ServeProcess, clean_environment
from tier0.protocols.s3 import create_s3_app

pytestmark = pytest.mark.slow

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_databases = itertools.count(1)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """A ``tier0 serve`` per metadata backend: key order is the database's to get right."""
    data: Path = tmp_path_factory.mktemp("listing")
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    if request.param == "sqlite":
        with ServeProcess(data / "store", environment) as process:
            yield process
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = f"s3_listing_{next(_databases)}"
    environment["TIER0_META"] = cluster.create_database(name)
    try:
        with ServeProcess(data / "store", environment) as process:
            yield process
    finally:
        cluster.drop_database(name)


# -- helpers ---------------------------------------------------------------------------------


def _put(s3: Any, bucket: str, *keys: str) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def _keys(response: dict[str, Any]) -> list[str]:
    return [item["Key"] for item in response.get("Contents", [])]


def _prefixes(response: dict[str, Any]) -> list[str]:
    return [item["Prefix"] for item in response.get("CommonPrefixes", [])]


def _query(params: dict[str, str]) -> str:
    return "&".join(
        f"{quote(name, safe='')}={quote(value, safe='')}" if value else quote(name, safe="")
        for name, value in params.items()
    )


def _signed_get(
    server: ServeProcess, bucket: str, params: dict[str, str]
) -> urllib.request.Request:
    query = _query(params)
    url = f"{server.url}/{bucket}" + (f"?{query}" if query else "")
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    return urllib.request.Request(prepared.url, headers=dict(prepared.headers.items()))


def _raw_list(server: ServeProcess, bucket: str, **params: str) -> ET.Element:
    """The XML answer to a signed ``GET /bucket?params`` (names with '-' as in S3: pass a dict)."""
    with urllib.request.urlopen(_signed_get(server, bucket, params), timeout=10) as response:
        assert response.status == 200
        return ET.fromstring(response.read())


def _raw_error(server: ServeProcess, bucket: str, params: dict[str, str]) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(_signed_get(server, bucket, params), timeout=10)
    with error.value:
        return error.value.code, ET.fromstring(error.value.read()).findtext("Code") or ""


def _text(root: ET.Element, name: str) -> str | None:
    element = root.find(NS + name)
    return None if element is None else element.text or ""


def _all(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall("/".join(NS + part for part in path.split("/")))]


# -- order -----------------------------------------------------------------------------------

# Every pair here sorts differently under some order S3 does not use: case
# folding (a/A/B/Z), locale collation that ignores punctuation (a-b, a/b, a0,
# a.b, a b), code-point vs UTF-16 (U+FF21 before U+1F600 in UTF-8, after in
# UTF-16), Latin-1 vs UTF-8 (ÿ).
FULLWIDTH_A = "\uff21"
ORDER_KEYS = [
    "a",
    "A",
    "B",
    "Z",
    "a-b",
    "a/b",
    "a0",
    "a.b",
    "a b",
    "ab",
    "é",
    "ÿ",
    FULLWIDTH_A,
    "😀",
    "~",
]
UTF8_ORDER = sorted(ORDER_KEYS, key=lambda key: key.encode("utf-8"))


def test_order_keys_tell_utf8_order_from_the_others() -> None:
    # Guards the test data: each alternative order would fail the listing tests.
    assert sorted(ORDER_KEYS, key=lambda key: key.encode("utf-16-be")) != UTF8_ORDER
    assert sorted(ORDER_KEYS, key=str.casefold) != UTF8_ORDER
    assert sorted(ORDER_KEYS, key=lambda key: key.replace("-", "").replace("/", "")) != UTF8_ORDER
    assert UTF8_ORDER[:4] == ["A", "B", "Z", "a"]
    assert UTF8_ORDER[-2:] == [FULLWIDTH_A, "😀"]


def test_every_listing_is_in_utf8_byte_order(s3: Any, bucket: str) -> None:
    _put(s3, bucket, *reversed(ORDER_KEYS))
    for operation in ("list_objects", "list_objects_v2", "list_object_versions"):
        pages = s3.get_paginator(operation).paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 2}
        )
        listed = [
            item["Key"] for page in pages for item in page.get("Contents", page.get("Versions", []))
        ]
        assert listed == UTF8_ORDER, operation
    # Resuming after a non-ASCII key continues in the same order.
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="é")
    assert _keys(after) == UTF8_ORDER[UTF8_ORDER.index("é") + 1 :]


# -- ListObjects (v1) ------------------------------------------------------------------------


def test_v1_next_marker_only_with_a_delimiter(s3: Any, bucket: str) -> None:
    _put(s3, bucket, "asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla")
    plain = s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert (_keys(plain), plain["IsTruncated"], plain["Marker"]) == (["asdf", "boo/bar"], True, "")
    assert "NextMarker" not in plain  # S3 leaves clients to resume after the last key
    assert plain["Contents"][0]["Owner"] == {"DisplayName": "root", "ID": "root"}
    rest = s3.list_objects(Bucket=bucket, Marker="boo/bar", MaxKeys=2)
    assert rest["Marker"] == "boo/bar"
    assert _keys(rest) == ["boo/baz/xyzzy", "cquux/bla"]

    seen: list[tuple[list[str], list[str], str | None]] = []
    marker = ""
    while True:
        page = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=marker, MaxKeys=1)
        seen.append((_keys(page), _prefixes(page), page.get("NextMarker")))
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert seen == [(["asdf"], [], "asdf"), ([], ["boo/"], "boo/"), ([], ["cquux/"], None)]

    under = s3.list_objects(Bucket=bucket, Prefix="boo/", Delimiter="/")
    assert (_keys(under), _prefixes(under), under["Prefix"]) == (["boo/bar"], ["boo/baz/"], "boo/")


def test_v1_paginator_with_and_without_delimiter(s3: Any, bucket: str) -> None:
    keys = [f"d{i % 3}/{i:02d}" for i in range(18)] + [f"top{i}" for i in range(5)]
    _put(s3, bucket, *keys)
    pages = list(
        s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4})
    )
    assert len(pages) == 6
    assert [key for page in pages for key in _keys(page)] == sorted(keys)
    rolled = list(
        s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}
        )
    )
    assert [p for page in rolled for p in _prefixes(page)] == ["d0/", "d1/", "d2/"]
    assert [k for page in rolled for k in _keys(page)] == [f"top{i}" for i in range(5)]


# -- ListObjectsV2 ---------------------------------------------------------------------------


def test_v2_continuation_token_wins_over_start_after_and_both_are_echoed(
    s3: Any, bucket: str
) -> None:
    _put(s3, bucket, "bar", "baz", "foo", "quxx")
    first = s3.list_objects_v2(Bucket=bucket, StartAfter="bar", MaxKeys=1)
    assert (_keys(first), first["StartAfter"], first["IsTruncated"]) == (["baz"], "bar", True)
    token = first["NextContinuationToken"]
    # A start-after that points elsewhere does not move a continued listing.
    for start_after in ("bar", "foo", "zzz"):
        second = s3.list_objects_v2(Bucket=bucket, StartAfter=start_after, ContinuationToken=token)
        assert _keys(second) == ["foo", "quxx"]
        assert (second["ContinuationToken"], second["StartAfter"]) == (token, start_after)
        assert second["IsTruncated"] is False and "NextContinuationToken" not in second


def test_v2_empty_continuation_token_lists_from_the_start(s3: Any, bucket: str) -> None:
    _put(s3, bucket, "bar", "baz")
    listed = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert (_keys(listed), listed["ContinuationToken"]) == (["bar", "baz"], "")


def test_v2_key_count_counts_prefixes_and_fetch_owner_adds_owner(s3: Any, bucket: str) -> None:
    _put(s3, bucket, "a/1", "a/2", "b/1", "c", "d")
    listed = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=3)
    assert (_prefixes(listed), _keys(listed), listed["KeyCount"]) == (["a/", "b/"], ["c"], 3)
    assert "Owner" not in listed["Contents"][0]
    owned = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)
    assert owned["KeyCount"] == 5
    assert {item["Owner"]["ID"] for item in owned["Contents"]} == {"root"}
    assert "Delimiter" not in s3.list_objects_v2(Bucket=bucket, Delimiter="")


def test_v2_refuses_a_token_it_did_not_issue(s3: Any, bucket: str) -> None:
    # Valid base64 of valid UTF-8, but not a tier0 token; and not base64 at all.
    for token in (base64.urlsafe_b64encode(b"bar").decode(), "!!not base64!!"):
        with pytest.raises(ClientError) as error:
            s3.list_objects_v2(Bucket=bucket, ContinuationToken=token)
        assert error_code(error) == ("InvalidArgument", 400)


# -- parameters boto3 will not send ----------------------------------------------------------


@pytest.mark.parametrize("operation", [{}, {"list-type": "2"}, {"versions": ""}])
def test_max_keys_out_of_range_is_invalid_and_large_is_capped(
    server: ServeProcess, s3: Any, bucket: str, operation: dict[str, str]
) -> None:
    _put(s3, bucket, "k")
    for bad in ("blah", "-1", "1.5", "2147483648", "٣"):
        assert _raw_error(server, bucket, {**operation, "max-keys": bad}) == (
            400,
            "InvalidArgument",
        ), bad
    capped = _raw_list(server, bucket, **{**operation, "max-keys": "2147483647"})
    assert _text(capped, "MaxKeys") == "1000"
    empty = _raw_list(server, bucket, **{**operation, "max-keys": "0"})
    assert (_text(empty, "IsTruncated"), _text(empty, "MaxKeys")) == ("false", "0")
    assert empty.find(NS + "Contents") is None and empty.find(NS + "Version") is None
    assert _raw_error(server, "no-such-bucket-here", {**operation, "max-keys": "0"}) == (
        404,
        "NoSuchBucket",
    )
    assert _raw_error(server, bucket, {**operation, "encoding-type": "base64"}) == (
        400,
        "InvalidArgument",
    )


def test_encoding_type_url_encodes_the_key_fields_of_v2(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    _put(s3, bucket, "a b/1", "a b/2+x", "a b/3+y", "c%d/ü", "plain")
    params = {"list-type": "2", "prefix": "a b/", "delimiter": "+", "start-after": "a b/1"}
    encoded = _raw_list(server, bucket, **params, **{"encoding-type": "url", "max-keys": "1"})
    assert _text(encoded, "EncodingType") == "url"
    assert (_text(encoded, "Prefix"), _text(encoded, "Delimiter")) == ("a%20b/", "%2B")
    assert _text(encoded, "StartAfter") == "a%20b/1"
    assert _all(encoded, "CommonPrefixes/Prefix") == ["a%20b/2%2B"]
    # The token is opaque: passed back as it came, it resumes after the prefix.
    token = _text(encoded, "NextContinuationToken")
    assert token
    rest = _raw_list(
        server, bucket, **params, **{"encoding-type": "url", "continuation-token": token}
    )
    assert _text(rest, "ContinuationToken") == token
    assert _all(rest, "CommonPrefixes/Prefix") == ["a%20b/3%2B"]
    whole = _raw_list(server, bucket, **{"list-type": "2", "encoding-type": "url"})
    assert _all(whole, "Contents/Key") == [
        "a%20b/1",
        "a%20b/2%2Bx",
        "a%20b/3%2By",
        "c%25d/%C3%BC",
        "plain",
    ]

    raw = _raw_list(server, bucket, **params)
    assert raw.find(NS + "EncodingType") is None
    assert (_text(raw, "Prefix"), _text(raw, "Delimiter"), _text(raw, "StartAfter")) == (
        "a b/",
        "+",
        "a b/1",
    )
    assert _all(raw, "CommonPrefixes/Prefix") == ["a b/2+", "a b/3+"]


def test_encoding_type_url_encodes_markers_of_v1_and_versions(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    _put(s3, bucket, "a b/1", "a b/2+x", "c%d/ü", "plain")
    v1 = _raw_list(server, bucket, prefix="c%d/", marker="c%d/", **{"encoding-type": "url"})
    assert (_text(v1, "Prefix"), _text(v1, "Marker")) == ("c%25d/", "c%25d/")
    assert _all(v1, "Contents/Key") == ["c%25d/%C3%BC"]
    rolled = _raw_list(server, bucket, delimiter="/", **{"encoding-type": "url", "max-keys": "1"})
    assert _all(rolled, "CommonPrefixes/Prefix") == ["a%20b/"]
    assert (_text(rolled, "NextMarker"), _text(rolled, "Delimiter")) == ("a%20b/", "/")

    versions = _raw_list(
        server,
        bucket,
        versions="",
        **{"key-marker": "a b/1", "encoding-type": "url", "max-keys": "1"},
    )
    assert _text(versions, "KeyMarker") == "a%20b/1"
    assert _all(versions, "Version/Key") == ["a%20b/2%2Bx"]
    assert _text(versions, "NextKeyMarker") == "a%20b/2%2Bx"
    assert _text(versions, "NextVersionIdMarker") == "null"  # ids are never encoded


# -- ListObjectVersions ----------------------------------------------------------------------


def _entries(root: ET.Element) -> list[tuple[str, str, str, str]]:
    """(element, key, version id, IsLatest) of each version and delete marker, in document order."""
    return [
        (
            child.tag.removeprefix(NS),
            child.findtext(NS + "Key") or "",
            child.findtext(NS + "VersionId") or "",
            child.findtext(NS + "IsLatest") or "",
        )
        for child in root
        if child.tag in (NS + "Version", NS + "DeleteMarker")
    ]


def test_versions_and_delete_markers_interleave_newest_first(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    k1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    k2 = s3.put_object(Bucket=bucket, Key="k", Body=b"22")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    k3 = s3.put_object(Bucket=bucket, Key="k", Body=b"333")["VersionId"]
    j1 = s3.put_object(Bucket=bucket, Key="j", Body=b"j")["VersionId"]
    gone = s3.delete_object(Bucket=bucket, Key="m")["VersionId"]
    expected = [
        ("Version", "j", j1, "true"),
        ("Version", "k", k3, "true"),
        ("DeleteMarker", "k", marker, "false"),
        ("Version", "k", k2, "false"),
        ("Version", "k", k1, "false"),
        ("DeleteMarker", "m", gone, "true"),
    ]
    assert _entries(_raw_list(server, bucket, versions="")) == expected

    listed = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["Size"]) for v in listed["Versions"]] == [
        ("j", j1, 1),
        ("k", k3, 3),
        ("k", k2, 2),
        ("k", k1, 1),
    ]
    assert [(d["Key"], d["IsLatest"]) for d in listed["DeleteMarkers"]] == [
        ("k", False),
        ("m", True),
    ]
    # Each page picks up exactly where the previous one stopped, mid-key included.
    pages = list(
        s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 2}
        )
    )
    assert [(p.get("NextKeyMarker"), p.get("NextVersionIdMarker")) for p in pages] == [
        ("k", k3),
        ("k", k2),
        (None, None),
    ]
    paged = [
        (item["Key"], item["VersionId"])
        for page in pages
        for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]
    assert sorted(paged) == sorted((key, version) for _, key, version, _ in expected)
    assert len(paged) == len(expected)

    after_key = s3.list_object_versions(Bucket=bucket, KeyMarker="j")
    assert [v["VersionId"] for v in after_key["Versions"]] == [k3, k2, k1]
    mid_key = s3.list_object_versions(Bucket=bucket, KeyMarker="k", VersionIdMarker=marker)
    assert [v["VersionId"] for v in mid_key["Versions"]] == [k2, k1]
    assert mid_key["KeyMarker"] == "k" and mid_key["VersionIdMarker"] == marker


def test_versions_with_a_delimiter_roll_up_and_resume_after_the_prefix(
    s3: Any, bucket: str
) -> None:
    _put(s3, bucket, "d/1", "d/2", "e", "f/1")
    seen = []
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1}
    ):
        seen.append(
            (
                [v["Key"] for v in page.get("Versions", [])],
                _prefixes(page),
                page.get("NextKeyMarker"),
                page.get("NextVersionIdMarker"),
            )
        )
    assert seen == [
        ([], ["d/"], "d/", None),
        (["e"], [], "e", "null"),
        ([], ["f/"], None, None),
    ]


def test_version_markers_are_checked(s3: Any, bucket: str) -> None:
    _put(s3, bucket, "a", "b")
    with pytest.raises(ClientError) as error:
        s3.list_object_versions(Bucket=bucket, VersionIdMarker="null")
    assert error_code(error) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as error:
        s3.list_object_versions(Bucket=bucket, KeyMarker="a", VersionIdMarker="not an id")
    assert error_code(error) == ("InvalidArgument", 400)
    # A well-formed id that is no longer there (deleted between two pages):
    # the listing goes on after that key rather than failing.
    vanished = s3.list_object_versions(Bucket=bucket, KeyMarker="a", VersionIdMarker="x" * 32)
    assert [v["Key"] for v in vanished["Versions"]] == ["b"]
    with pytest.raises(ClientError) as error:
        s3.list_object_versions(Bucket="no-such-bucket-here")
    assert error_code(error) == ("NoSuchBucket", 404)


# -- versioning and location -----------------------------------------------------------------


def test_bucket_versioning_starts_empty_then_enabled_and_suspended(
    server: ServeProcess, s3: Any, bucket: str
) -> None:
    fresh = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in fresh and "MFADelete" not in fresh
    document = _raw_list(server, bucket, versioning="")
    assert document.tag == NS + "VersioningConfiguration" and len(document) == 0
    for status in ("Enabled", "Suspended", "Enabled"):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == status
    # The bucket behaves as it says: enabled keeps versions, suspended writes null.
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [("null", True), (kept, False)]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"MFADelete": "Disabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"  # no Status: no change


def test_bucket_versioning_refuses_mfa_delete_bad_status_and_missing_bucket(
    s3: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_bucket_versioning(
            Bucket=bucket,
            VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
            MFA="arn:aws:iam::123456789012:mfa/root 123456",
        )
    assert error_code(error) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as error:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "On"})
    assert error_code(error) == ("MalformedXML", 400)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)  # nothing changed
    calls: list[Callable[[], object]] = [
        lambda: s3.get_bucket_versioning(Bucket="no-such-bucket-here"),
        lambda: s3.put_bucket_versioning(
            Bucket="no-such-bucket-here", VersioningConfiguration={"Status": "Enabled"}
        ),
        lambda: s3.get_bucket_location(Bucket="no-such-bucket-here"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == ("NoSuchBucket", 404)


def test_bucket_location_is_empty_for_us_east_1(server: ServeProcess, s3: Any, bucket: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    document = _raw_list(server, bucket, location="")
    assert document.tag == NS + "LocationConstraint" and not document.text


def test_bucket_location_names_any_other_region(t0: tier0.Tier0) -> None:
    """In process (httpx's ASGITransport), for a gateway that is not in us-east-1."""
    principal, credential = t0.create_user("located")
    t0.grant(principal, "s3:*", "/*")
    t0.as_principal(principal).create_bucket("located-bucket")
    gateway = create_s3_app(t0, region="eu-west-1")

    async def get(path: str) -> httpx.Response:
        request = AWSRequest(method="GET", url=f"http://tier0{path}")
        keys = Credentials(credential.access_key, credential.secret_key)
        S3SigV4Auth(keys, "s3", "eu-west-1").add_auth(request)
        prepared = request.prepare()
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport) as http:
            return await http.get(prepared.url, headers=dict(prepared.headers.items()))

    try:
        located = asyncio.run(get("/located-bucket?location"))
        missing = asyncio.run(get("/no-such-bucket-here?location"))
    finally:
        gateway.close()
    assert located.status_code == 200
    document = ET.fromstring(located.content)
    assert (document.tag, document.text) == (NS + "LocationConstraint", "eu-west-1")
    assert missing.status_code == 404
    assert ET.fromstring(missing.content).findtext("Code") == "NoSuchBucket"


# -- concurrent writers ----------------------------------------------------------------------


def test_pages_stay_consistent_while_writers_go_on(server: ServeProcess, bucket: str) -> None:
    """Keys present from start to end are listed exactly once, in order, by every
    paginator, while another client adds, overwrites and deletes keys between them."""
    s3 = make_client(server.url)
    stable = [f"s/{i:03d}" for i in range(40)]
    _put(s3, bucket, *stable)
    stop = threading.Event()
    rounds_done = [0]  # rounds of writes finished; only the writer thread adds

    def write() -> None:
        writer = make_client(server.url)
        while not stop.is_set():
            n = rounds_done[0]
            i = n % len(stable)
            # Keys that sort between, before and after the stable ones...
            writer.put_object(Bucket=bucket, Key=f"s/{i:03d}-{n}", Body=b"new")
            writer.put_object(Bucket=bucket, Key=f"s/{i:03d}/{n}", Body=b"new")
            writer.put_object(Bucket=bucket, Key=stable[i], Body=b"rewritten")
            # ...and deletes of what it wrote a little earlier.
            if n >= 3:
                j = (n - 3) % len(stable)
                writer.delete_object(Bucket=bucket, Key=f"s/{j:03d}-{n - 3}")
                writer.delete_object(Bucket=bucket, Key=f"s/{j:03d}/{n - 3}")
            rounds_done[0] = n + 1

    thread = threading.Thread(target=write)
    thread.start()
    passes = 0
    try:
        # At least two passes, and as many more as it takes (on a busy
        # machine) for the writer to get through a good number of rounds.
        while passes < 2 or (rounds_done[0] < 20 and passes < 40):
            passes += 1
            for operation, extra in (
                ("list_objects", {}),
                ("list_objects_v2", {}),
                ("list_objects_v2", {"Delimiter": "/", "Prefix": "s/"}),
                ("list_object_versions", {}),
            ):
                pages = s3.get_paginator(operation).paginate(
                    Bucket=bucket, PaginationConfig={"PageSize": 3}, **extra
                )
                listed = [
                    item["Key"]
                    for page in pages
                    for item in page.get("Contents", page.get("Versions", []))
                ]
                assert listed == sorted(listed), operation
                assert len(listed) == len(set(listed)), operation
                assert set(stable) <= set(listed), operation
    finally:
        stop.set()
        thread.join()
    assert rounds_done[0] >= 20, "the writer hardly overlapped the listings"


# -- the AWS CLI -----------------------------------------------------------------------------


def _aws(server: ServeProcess, tmp_path: Path, *args: str) -> str:
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        # Nothing from the machine's own AWS configuration may leak in.
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "PYTHONIOENCODING": "utf-8",
    }
    environment.pop("AWS_PROFILE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", server.url, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_aws_cli_lists_objects_and_versions(
    server: ServeProcess, s3: Any, bucket: str, tmp_path: Path
) -> None:
    keys = ["dir/a b.txt", "dir/sub/c", "top+1", "ünï"]
    _put(s3, bucket, *keys)
    recursive = _aws(
        server, tmp_path, "s3", "ls", f"s3://{bucket}/", "--recursive", "--page-size", "2"
    )
    assert [line.split(maxsplit=3)[3] for line in recursive.splitlines()] == sorted(keys)
    top = _aws(server, tmp_path, "s3", "ls", f"s3://{bucket}/dir/").splitlines()
    assert len(top) == 2
    assert top[0].split() == ["PRE", "sub/"]
    assert top[1].split(maxsplit=3)[3] == "a b.txt"
    listed = json.loads(
        _aws(
            server,
            tmp_path,
            "s3api",
            "list-object-versions",
            "--bucket",
            bucket,
            "--page-size",
            "1",
        )
    )
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [
        (key, "null", True) for key in sorted(keys)
    ]
    v1 = json.loads(
        _aws(server, tmp_path, "s3api", "list-objects", "--bucket", bucket, "--page-size", "1")
    )
    assert [item["Key"] for item in v1["Contents"]] == sorted(keys)
