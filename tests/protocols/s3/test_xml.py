"""S3 XML: request bodies as botocore serializes them, hostile bodies, and response
documents read back by botocore's own parser."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any

import botocore.session
import pytest
from botocore.handlers import (
    decode_list_object,
    decode_list_object_v2,
    decode_list_object_versions,
    parse_get_bucket_location,
)
from botocore.parsers import RestXMLParser
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from tier0.errors import InvalidArgument
from tier0.protocols.s3 import (
    DELETE_OBJECTS_MAX,
    S3_NAMESPACE,
    CompletedPart,
    Deleted,
    DeleteError,
    MalformedXML,
    ObjectIdentifier,
    escape_text,
    format_timestamp,
    parse_complete_multipart_upload,
    parse_create_bucket_configuration,
    parse_delete,
    parse_tagging,
    parse_versioning_configuration,
    parse_xml,
    render_complete_multipart_upload,
    render_copy_object_result,
    render_delete_result,
    render_initiate_multipart_upload,
    render_list_buckets,
    render_list_objects_v1,
    render_list_objects_v2,
    render_list_versions,
    render_location_constraint,
    render_tagging,
    render_versioning_configuration,
)
from tier0.store import BucketInfo, ListPage, ObjectInfo, VersionPage

_S3 = botocore.session.get_session().get_service_model("s3")
_T = dt.datetime(2024, 1, 2, 3, 4, 5, 678_901, tzinfo=dt.UTC)

# Keys an S3 key may hold and XML 1.0 can carry: no surrogates, no NUL, none of
# the control characters XML forbids (those need encoding-type=url).
_XML_KEYS = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=["Cs"],
        exclude_characters="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11"
        "\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\ufffe\uffff",
    ),
    min_size=1,
    max_size=40,
)
_ANY_KEYS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=40,
)


def _serialize(operation: str, params: dict[str, Any]) -> bytes:
    request = create_serializer("rest-xml").serialize_to_request(
        params, _S3.operation_model(operation)
    )
    body = request["body"]
    assert isinstance(body, bytes) and body
    return body


def _parse(operation: str, body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = RestXMLParser().parse(
        {"body": body, "headers": {}, "status_code": 200},
        _S3.operation_model(operation).output_shape,
    )
    return parsed


def _object(
    key: str, *, size: int = 3, etag: str = "acbd18db4cc2f85cedef654a", **kw: Any
) -> ObjectInfo:
    return ObjectInfo(
        bucket="b",
        key=key,
        version_id=kw.pop("version_id", "v1"),
        size=size,
        etag=etag,
        content_type="text/plain",
        created=_T,
        modified=_T,
        owner="alice",
        checksum="blake3:00",
        **kw,
    )


# --- reading bodies botocore sends ----------------------------------------------


def test_parse_delete_reads_botocore_delete_objects() -> None:
    body = _serialize(
        "DeleteObjects",
        {
            "Bucket": "b",
            "Delete": {
                "Objects": [{"Key": "a&<b>"}, {"Key": "ü/x", "VersionId": "v9"}],
                "Quiet": True,
            },
        },
    )
    assert S3_NAMESPACE.encode() in body
    request = parse_delete(body)
    assert request.objects == [ObjectIdentifier("a&<b>"), ObjectIdentifier("ü/x", "v9")]
    assert request.quiet is True


def test_parse_complete_multipart_upload_keeps_order_and_quotes() -> None:
    body = _serialize(
        "CompleteMultipartUpload",
        {
            "Bucket": "b",
            "Key": "k",
            "UploadId": "u",
            "MultipartUpload": {
                "Parts": [{"PartNumber": 2, "ETag": '"bb"'}, {"PartNumber": 1, "ETag": '"aa"'}]
            },
        },
    )
    assert parse_complete_multipart_upload(body) == [
        CompletedPart(2, '"bb"'),
        CompletedPart(1, '"aa"'),
    ]


def test_parse_tagging_reads_botocore_put_bucket_tagging() -> None:
    body = _serialize(
        "PutBucketTagging",
        {
            "Bucket": "b",
            "Tagging": {"TagSet": [{"Key": "k1", "Value": "v&1"}, {"Key": "k2", "Value": ""}]},
        },
    )
    assert parse_tagging(body) == [("k1", "v&1"), ("k2", "")]


def test_parse_versioning_configuration_reads_botocore() -> None:
    body = _serialize(
        "PutBucketVersioning",
        {"Bucket": "b", "VersioningConfiguration": {"Status": "Suspended"}},
    )
    assert parse_versioning_configuration(body).status == "Suspended"


def test_parse_create_bucket_configuration_reads_botocore() -> None:
    body = _serialize(
        "CreateBucket",
        {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
    )
    assert parse_create_bucket_configuration(body) == "eu-west-1"
    assert parse_create_bucket_configuration(b"") is None
    assert (
        parse_create_bucket_configuration(
            b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"
        )
        is None
    )


def test_parse_xml_ignores_namespaces() -> None:
    plain = parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>")
    spaced = parse_delete(
        f'<Delete xmlns="{S3_NAMESPACE}"><Object><Key>k</Key></Object></Delete>'.encode()
    )
    prefixed = parse_delete(
        f'<s3:Delete xmlns:s3="{S3_NAMESPACE}"><s3:Object><s3:Key>k</s3:Key></s3:Object></s3:Delete>'.encode()
    )
    assert plain == spaced == prefixed
    assert plain.objects == [ObjectIdentifier("k")]
    assert plain.quiet is False


def test_parse_xml_keeps_carriage_return_sent_as_reference() -> None:
    request = parse_delete(b"<Delete><Object><Key>a&#13;b</Key></Object></Delete>")
    assert request.objects[0].key == "a\rb"


# --- bad and hostile bodies --------------------------------------------------------

_BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Delete><Object><Key>&lol3;</Key></Object></Delete>"""
_EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""
_EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Delete SYSTEM "http://example.invalid/evil.dtd">
<Delete><Object><Key>k</Key></Object></Delete>"""
_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY % p SYSTEM "http://example.invalid/p"> %p;]>
<Delete><Object><Key>k</Key></Object></Delete>"""


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_BILLION_LAUGHS, "DOCTYPE"),
        (_EXTERNAL, "DOCTYPE"),
        (_EXTERNAL_DTD, "DOCTYPE"),
        (_PARAMETER, "DOCTYPE"),
        (b"<?xml-stylesheet href='x'?><Delete/>", "processing instruction"),
        (b"<Delete><Object><Key>&undefined;</Key></Object></Delete>", "not well-formed"),
        (b"<Delete><Object><Key>k</Key></Object>", "not well-formed"),
        (b"<Delete></Delete><Delete></Delete>", "not well-formed"),
        (b"\xff\xfe\x00garbage", "not well-formed"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"<Tagging><Object/></Tagging>", "expected a <Delete>"),
        (b"<Delete/>", "no objects"),
        (b"<Delete><Object><VersionId>v</VersionId></Object></Delete>", "<Key>"),
        (b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>", "at most one"),
        (b"<Delete><Object><Key><i>a</i></Key></Object></Delete>", "text belongs"),
        (b"<Delete><Quiet>yes</Quiet><Object><Key>a</Key></Object></Delete>", "true or false"),
    ],
)
def test_parse_delete_refuses_bad_bodies(body: bytes, words: str) -> None:
    with pytest.raises(MalformedXML, match=words):
        parse_delete(body)


def test_parse_xml_refuses_oversize_before_parsing() -> None:
    # Not even well-formed: the size check must come first to say "limit".
    with pytest.raises(MalformedXML, match="the limit is 100"):
        parse_xml(b"<" * 101, xml_bytes_max=100)
    assert parse_xml(b"<a>" + b"x" * 93 + b"</a>", xml_bytes_max=100).text == "x" * 93


def test_parse_delete_refuses_more_than_s3_allows() -> None:
    objects = b"<Object><Key>k</Key></Object>" * (DELETE_OBJECTS_MAX + 1)
    with pytest.raises(MalformedXML, match="at most 1000"):
        parse_delete(b"<Delete>" + objects + b"</Delete>")


@pytest.mark.parametrize("number", ["0", "10001", "-1", "1.5", "x", "", "99999999999"])
def test_parse_complete_multipart_upload_refuses_bad_part_numbers(number: str) -> None:
    body = f"<CompleteMultipartUpload><Part><PartNumber>{number}</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>"
    with pytest.raises(MalformedXML, match="part number"):
        parse_complete_multipart_upload(body.encode())


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload/>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
    ],
)
def test_parse_complete_multipart_upload_refuses_missing_parts(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_complete_multipart_upload(body)


@pytest.mark.parametrize(
    "body",
    [
        b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
        b"<VersioningConfiguration><MfaDelete>x</MfaDelete></VersioningConfiguration>",
    ],
)
def test_parse_versioning_configuration_refuses_unknown_values(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_versioning_configuration(body)


def test_parse_tagging_requires_tag_set() -> None:
    with pytest.raises(MalformedXML, match="TagSet"):
        parse_tagging(b"<Tagging/>")


_PARSERS = [
    parse_delete,
    parse_complete_multipart_upload,
    parse_tagging,
    parse_versioning_configuration,
    parse_create_bucket_configuration,
]

_NAMES = st.sampled_from(
    ["Delete", "Object", "Key", "VersionId", "Quiet", "CompleteMultipartUpload", "Part",
     "PartNumber", "ETag", "Tagging", "TagSet", "Tag", "Value", "VersioningConfiguration",
     "Status", "MfaDelete", "CreateBucketConfiguration", "LocationConstraint"]
)  # fmt: skip


@st.composite
def _documents(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(_NAMES)
    if depth >= 3 or draw(st.booleans()):
        inner = draw(st.sampled_from(["", "1", "true", "Enabled", "x&amp;y", "10001", "&#13;"]))
    else:
        inner = "".join(draw(st.lists(_documents(depth + 1), max_size=3)))
    return f"<{name}>{inner}</{name}>"


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), _documents().map(str.encode)), st.sampled_from(_PARSERS))
def test_parsers_return_typed_value_or_malformed_xml(body: bytes, parse: Any) -> None:
    try:
        result = parse(body)
    except MalformedXML as error:
        assert str(error)
        return
    assert result is None or isinstance(result, (list, str)) or hasattr(result, "__slots__")


@given(
    st.lists(
        st.tuples(_XML_KEYS, st.none() | st.text(min_size=1, max_size=5, alphabet="abc09")),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_parse_delete_round_trips_botocore_serialization(
    objects: list[tuple[str, str | None]], quiet: bool
) -> None:
    if any("\r" in key for key, _ in objects):
        # botocore writes CR raw, so XML parsing turns it into LF, as it
        # would for S3: this is the client's limitation, not ours.
        return
    params = [{"Key": key} | ({"VersionId": v} if v else {}) for key, v in objects]
    body = _serialize(
        "DeleteObjects", {"Bucket": "b", "Delete": {"Objects": params, "Quiet": quiet}}
    )
    request = parse_delete(body)
    assert request.objects == [ObjectIdentifier(key, v) for key, v in objects]
    assert request.quiet is quiet


# --- writing responses, read back by botocore ----------------------------------------


def test_format_timestamp_is_s3s_format() -> None:
    assert format_timestamp(_T) == "2024-01-02T03:04:05.678Z"
    later = dt.datetime(2024, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_timestamp(later) == "2024-01-02T03:04:05.000Z"


def test_escape_text_escapes_markup_and_keeps_cr() -> None:
    assert (
        escape_text("<a href='x'>&\"\r\n\x01")
        == "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&#13;\n&#x1;"
    )


def test_render_list_objects_v2_reads_back_through_botocore() -> None:
    page = ListPage(
        objects=[_object("a.txt", size=3), _object("b&<c>.txt", size=0, etag="d41d8cd9-2")],
        prefixes=["dir/"],
        truncated=True,
        next_start_after="dir/",
    )
    body = render_list_objects_v2(
        page,
        bucket="b",
        max_keys=3,
        delimiter="/",
        next_continuation_token="tok+/=",
        fetch_owner=True,
    )
    parsed = _parse("ListObjectsV2", body)
    assert [c["Key"] for c in parsed["Contents"]] == ["a.txt", "b&<c>.txt"]
    assert [c["Size"] for c in parsed["Contents"]] == [3, 0]
    assert [c["ETag"] for c in parsed["Contents"]] == ['"acbd18db4cc2f85cedef654a"', '"d41d8cd9-2"']
    assert parsed["Contents"][0]["LastModified"] == _T.replace(microsecond=678_000)
    assert parsed["Contents"][0]["Owner"] == {"ID": "alice", "DisplayName": "alice"}
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/"}]
    assert parsed["IsTruncated"] is True
    assert parsed["NextContinuationToken"] == "tok+/="
    assert parsed["KeyCount"] == 3
    assert parsed["MaxKeys"] == 3
    assert parsed["Delimiter"] == "/"
    assert parsed["Name"] == "b"


def test_render_list_objects_v2_last_page_has_no_token_or_owner() -> None:
    page = ListPage(objects=[_object("a")], prefixes=[], truncated=False, next_start_after=None)
    parsed = _parse(
        "ListObjectsV2",
        render_list_objects_v2(page, bucket="b", max_keys=1000, next_continuation_token="ignored"),
    )
    assert parsed["IsTruncated"] is False
    assert "NextContinuationToken" not in parsed
    assert "Owner" not in parsed["Contents"][0]


def test_render_list_objects_v1_reads_back_through_botocore() -> None:
    page = ListPage(objects=[_object("a")], prefixes=["p/"], truncated=True, next_start_after="p/")
    parsed = _parse(
        "ListObjects",
        render_list_objects_v1(page, bucket="b", max_keys=2, delimiter="/", marker="0"),
    )
    assert [c["Key"] for c in parsed["Contents"]] == ["a"]
    assert parsed["NextMarker"] == "p/"
    assert parsed["Marker"] == "0"
    assert parsed["IsTruncated"] is True
    assert parsed["CommonPrefixes"] == [{"Prefix": "p/"}]


def test_render_list_versions_reads_back_through_botocore() -> None:
    page = VersionPage(
        versions=[
            _object("k", version_id="v3", is_delete_marker=True),
            _object("k", version_id="v2", is_latest=False, size=7),
            _object("z", version_id="", size=1),
        ],
        prefixes=["d/"],
        truncated=True,
        next_key_marker="z",
        next_version_marker="null",
    )
    parsed = _parse("ListObjectVersions", render_list_versions(page, bucket="b", max_keys=3))
    assert parsed["DeleteMarkers"] == [
        {
            "Key": "k",
            "VersionId": "v3",
            "IsLatest": True,
            "LastModified": _T.replace(microsecond=678_000),
            "Owner": {"ID": "alice", "DisplayName": "alice"},
        }
    ]
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in parsed["Versions"]] == [
        ("k", "v2", False, 7),
        ("z", "null", True, 1),
    ]
    assert parsed["Versions"][0]["ETag"] == '"acbd18db4cc2f85cedef654a"'
    assert parsed["NextKeyMarker"] == "z"
    assert parsed["NextVersionIdMarker"] == "null"
    assert parsed["CommonPrefixes"] == [{"Prefix": "d/"}]


def test_render_list_refuses_unknown_encoding_type() -> None:
    page = ListPage(objects=[], prefixes=[], truncated=False, next_start_after=None)
    with pytest.raises(InvalidArgument, match="encoding-type"):
        render_list_objects_v2(page, bucket="b", max_keys=1, encoding_type="base64")


def _decoded(operation: str, body: bytes, decode: Any) -> dict[str, Any]:
    parsed = _parse(operation, body)
    # What botocore does after every list call it sent with its automatic
    # EncodingType=url.
    decode(parsed, {"encoding_type_auto_set": True})
    return parsed


@settings(max_examples=150)
@given(st.lists(_XML_KEYS, min_size=1, max_size=5, unique=True), _XML_KEYS)
def test_list_keys_round_trip_without_encoding(keys: list[str], prefix: str) -> None:
    page = ListPage([_object(k) for k in keys], [prefix], truncated=False, next_start_after=None)
    parsed = _parse(
        "ListObjectsV2", render_list_objects_v2(page, bucket="b", max_keys=9, prefix=prefix)
    )
    assert [c["Key"] for c in parsed["Contents"]] == keys
    assert parsed["CommonPrefixes"] == [{"Prefix": prefix}]
    assert parsed["Prefix"] == prefix


@settings(max_examples=150)
@given(st.lists(_ANY_KEYS, min_size=1, max_size=5, unique=True), _ANY_KEYS, _ANY_KEYS)
def test_list_keys_round_trip_with_url_encoding(keys: list[str], prefix: str, marker: str) -> None:
    page = ListPage([_object(k) for k in keys], [prefix], truncated=True, next_start_after=marker)
    v2 = _decoded(
        "ListObjectsV2",
        render_list_objects_v2(
            page, bucket="b", max_keys=9, prefix=prefix, delimiter=marker, start_after=marker,
            next_continuation_token="t", encoding_type="url",
        ),
        decode_list_object_v2,
    )  # fmt: skip
    assert v2["EncodingType"] == "url"
    assert [c["Key"] for c in v2["Contents"]] == keys
    assert v2["CommonPrefixes"] == [{"Prefix": prefix}]
    assert (v2["Prefix"], v2["Delimiter"], v2["StartAfter"]) == (prefix, marker, marker)

    v1 = _decoded(
        "ListObjects",
        render_list_objects_v1(
            page, bucket="b", max_keys=9, delimiter=prefix, marker=marker, encoding_type="url"
        ),
        decode_list_object,
    )
    assert [c["Key"] for c in v1["Contents"]] == keys
    assert (v1["Marker"], v1["NextMarker"]) == (marker, marker)

    versions = VersionPage([_object(k) for k in keys], [prefix], True, marker, "v1")
    parsed = _decoded(
        "ListObjectVersions",
        render_list_versions(
            versions, bucket="b", max_keys=9, key_marker=marker, encoding_type="url"
        ),
        decode_list_object_versions,
    )
    assert [v["Key"] for v in parsed["Versions"]] == keys
    assert (parsed["KeyMarker"], parsed["NextKeyMarker"]) == (marker, marker)


def test_render_list_buckets_reads_back_through_botocore() -> None:
    buckets = [BucketInfo("a", "alice", "Enabled", _T), BucketInfo("b", "alice", "Unversioned", _T)]
    parsed = _parse("ListBuckets", render_list_buckets(buckets, owner="alice"))
    assert [(b["Name"], b["CreationDate"]) for b in parsed["Buckets"]] == [
        ("a", _T.replace(microsecond=678_000)),
        ("b", _T.replace(microsecond=678_000)),
    ]
    assert parsed["Owner"] == {"ID": "alice", "DisplayName": "alice"}


def test_render_small_results_read_back_through_botocore() -> None:
    copy = _parse("CopyObject", render_copy_object_result(etag="e1", last_modified=_T))
    assert copy["CopyObjectResult"]["ETag"] == '"e1"'
    initiate = _parse(
        "CreateMultipartUpload",
        render_initiate_multipart_upload(bucket="b", key="k&", upload_id="u1"),
    )
    assert (initiate["Bucket"], initiate["Key"], initiate["UploadId"]) == ("b", "k&", "u1")
    complete = _parse(
        "CompleteMultipartUpload",
        render_complete_multipart_upload(
            location="http://h/b/k", bucket="b", key="k", etag='"e-2"'
        ),
    )
    assert (complete["Location"], complete["ETag"]) == ("http://h/b/k", '"e-2"')


def test_render_delete_result_reads_back_and_quiet_omits_deleted() -> None:
    deleted = [Deleted("a"), Deleted("b", delete_marker=True, delete_marker_version_id="m1")]
    errors = [DeleteError("c", "AccessDenied", "Access Denied", version_id="v")]
    parsed = _parse("DeleteObjects", render_delete_result(deleted, errors, quiet=False))
    assert parsed["Deleted"] == [
        {"Key": "a"},
        {"Key": "b", "DeleteMarker": True, "DeleteMarkerVersionId": "m1"},
    ]
    assert parsed["Errors"] == [
        {"Key": "c", "VersionId": "v", "Code": "AccessDenied", "Message": "Access Denied"}
    ]
    quiet = _parse("DeleteObjects", render_delete_result(deleted, errors, quiet=True))
    assert "Deleted" not in quiet
    assert len(quiet["Errors"]) == 1


@given(
    st.dictionaries(_XML_KEYS, _XML_KEYS.filter(lambda v: "\r" not in v) | st.just(""), max_size=5)
)
def test_tagging_round_trips_both_ways(tags: dict[str, str]) -> None:
    body = render_tagging(tags)
    parsed = _parse("GetObjectTagging", body)
    assert {t["Key"]: t.get("Value", "") for t in parsed["TagSet"]} == tags
    # And our own reader takes our writer's document back unchanged, CR included.
    assert parse_tagging(body) == list(tags.items())


def test_render_versioning_configuration_reads_back() -> None:
    assert (
        _parse("GetBucketVersioning", render_versioning_configuration("Enabled"))["Status"]
        == "Enabled"
    )
    assert "Status" not in _parse(
        "GetBucketVersioning", render_versioning_configuration("Unversioned")
    )
    assert (
        parse_versioning_configuration(render_versioning_configuration("Suspended")).status
        == "Suspended"
    )


class _Response:
    raw = object()

    def __init__(self, content: bytes) -> None:
        self.content = content


@pytest.mark.parametrize(("region", "expected"), [("eu-west-1", "eu-west-1"), ("us-east-1", None)])
def test_render_location_constraint_reads_back(region: str, expected: str | None) -> None:
    # botocore reads GetBucketLocation with a handler of its own, not the model.
    parsed: dict[str, Any] = {}
    parse_get_bucket_location(parsed, _Response(render_location_constraint(region)))
    assert parsed["LocationConstraint"] == expected
    assert (
        ET.fromstring(render_location_constraint(region)).tag
        == f"{{{S3_NAMESPACE}}}LocationConstraint"
    )
