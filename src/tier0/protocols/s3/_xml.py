"""S3's XML: a hardened reader for request bodies and writers for responses.

Reading. `parse_xml` checks the size cap before the parser sees a byte, then
runs expat with every handler that could reach beyond the document refusing:
a DOCTYPE (and with it every entity declaration, so no billion laughs and no
external entities), a processing instruction, or an external entity
reference raises `MalformedXML`. Element lookup ignores namespaces, because
clients send S3 bodies both with and without
``xmlns="http://s3.amazonaws.com/doc/2006-03-01/"``. The ``parse_*``
functions turn one request body into a typed value or raise `MalformedXML`;
no other exception escapes them.

Writing. The ``render_*`` functions build response documents as text, with
every value escaped by `escape_text`, in the S3 namespace, timestamps as
``2024-01-02T03:04:05.000Z``, ETags in double quotes.

Example::

    parts = parse_complete_multipart_upload(body)      # [CompletedPart(1, '"…"'), …]
    xml = render_list_objects_v2(page, bucket="b", max_keys=1000)
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, NoReturn
from urllib.parse import quote
from xml.parsers import expat

from tier0.errors import InvalidArgument
from tier0.store import (
    BucketInfo,
    ListPage,
    ObjectInfo,
    Versioning,
    VersionPage,
)

__all__ = [
    "CHECKSUM_ELEMENTS",
    "COMPLETE_XML_BYTES_MAX",
    "DELETE_OBJECTS_MAX",
    "OBJECT_ATTRIBUTES",
    "PART_NUMBER_MAX",
    "S3_NAMESPACE",
    "XML_BYTES_MAX",
    "DeleteError",
    "DeleteRequest",
    "Deleted",
    "MalformedXML",
    "ObjectIdentifier",
    "VersioningConfiguration",
    "checksum_type",
    "escape_text",
    "format_timestamp",
    "parse_create_bucket_configuration",
    "parse_delete",
    "parse_tagging",
    "parse_versioning_configuration",
    "parse_xml",
    "render_copy_object_result",
    "render_delete_result",
    "render_get_object_attributes",
    "render_list_buckets",
    "render_list_objects_v1",
    "render_list_objects_v2",
    "render_list_versions",
    "render_location_constraint",
    "render_post_response",
    "render_tagging",
    "render_versioning_configuration",
]

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
#: Request bodies larger than this are refused unread.
XML_BYTES_MAX = 1024 * 1024
#: CompleteMultipartUpload is the one large body: 10,000 parts with ETags and
#: checksums come to about 1.5 MB, more when a client indents.
COMPLETE_XML_BYTES_MAX = 4 * 1024 * 1024
#: S3 deletes at most this many keys per DeleteObjects request.
DELETE_OBJECTS_MAX = 1000
#: Part numbers run from 1 to this.
PART_NUMBER_MAX = 10_000


class MalformedXML(InvalidArgument):
    """A request body is not the XML document its operation expects.

    ``s3_code`` and ``details`` follow the `S3AuthError` convention, so the
    gateway's error table answers ``400 MalformedXML`` with this message.
    """

    s3_code: ClassVar[str] = "MalformedXML"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.details: dict[str, str] = {}


# --- reading ------------------------------------------------------------------


def _refuse(what: str) -> NoReturn:
    raise MalformedXML(f"the XML body contains {what}, which S3 request bodies never carry")


def parse_xml(body: bytes, *, xml_bytes_max: int = XML_BYTES_MAX) -> ET.Element:
    """Parse ``body`` into an element tree whose tags have no namespace.

    Raises `MalformedXML` when the body is over ``xml_bytes_max`` (checked
    before parsing), is empty, is not well-formed, or holds a DOCTYPE, an
    entity declaration, a processing instruction or an external entity.
    """
    if len(body) > xml_bytes_max:
        raise MalformedXML(f"the XML body is {len(body)} bytes; the limit is {xml_bytes_max}")
    if not body.strip():
        raise MalformedXML("the XML body is empty")
    builder = ET.TreeBuilder()
    # namespace_separator makes expat report "uri local" names; the reader
    # keeps only the local part so both spellings of S3 bodies look alike.
    parser = expat.ParserCreate(namespace_separator=" ")

    def start(name: str, attributes: dict[str, str]) -> None:
        builder.start(name.rpartition(" ")[2], {})

    def end(name: str) -> None:
        builder.end(name.rpartition(" ")[2])

    def doctype(*_: object) -> None:
        _refuse("a DOCTYPE")

    def entity(*_: object) -> None:
        _refuse("an entity declaration")

    def instruction(*_: object) -> None:
        _refuse("a processing instruction")

    def external(*_: object) -> int:
        _refuse("an external entity reference")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ProcessingInstructionHandler = instruction
    parser.ExternalEntityRefHandler = external
    # Belt and braces: even if a handler above were bypassed, never fetch DTDs.
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
        return builder.close()
    except expat.ExpatError as error:
        raise MalformedXML(f"the XML body is not well-formed: {error}") from None
    except (ValueError, LookupError, AssertionError) as error:
        # An unknown declared encoding (LookupError), text that does not
        # decode (ValueError), or a TreeBuilder left unbalanced (AssertionError).
        raise MalformedXML(f"the XML body cannot be read: {error}") from None


def _root(body: bytes, name: str, xml_bytes_max: int) -> ET.Element:
    root = parse_xml(body, xml_bytes_max=xml_bytes_max)
    if root.tag != name:
        raise MalformedXML(f"expected a <{name}> document, got <{root.tag}>")
    return root


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if child.tag == name)


def _one(element: ET.Element, name: str, *, required: bool) -> ET.Element | None:
    found = list(_children(element, name))
    if len(found) > 1:
        raise MalformedXML(f"<{element.tag}> holds {len(found)} <{name}> elements; at most one")
    if not found and required:
        raise MalformedXML(f"<{element.tag}> lacks its <{name}> element")
    return found[0] if found else None


def _text_of(element: ET.Element, name: str) -> str:
    child = _one(element, name, required=True)
    assert child is not None
    if len(child):
        raise MalformedXML(f"<{name}> holds elements where text belongs")
    return child.text or ""


def _optional_text(element: ET.Element, name: str) -> str | None:
    child = _one(element, name, required=False)
    if child is None:
        return None
    if len(child):
        raise MalformedXML(f"<{name}> holds elements where text belongs")
    return child.text or ""


@dataclass(frozen=True, slots=True)
class ObjectIdentifier:
    """One ``<Object>`` of a DeleteObjects body."""

    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """A DeleteObjects body: the objects in the order sent, and the Quiet flag."""

    objects: list[ObjectIdentifier]
    quiet: bool


def _boolean(text: str | None, name: str) -> bool:
    if text is None:
        return False
    value = text.strip().lower()
    if value not in {"true", "false"}:
        raise MalformedXML(f"<{name}> is {text!r}; it must be true or false")
    return value == "true"


def parse_delete(body: bytes, *, xml_bytes_max: int = XML_BYTES_MAX) -> DeleteRequest:
    """The objects a DeleteObjects body names (1..`DELETE_OBJECTS_MAX`, as S3 allows).

    Keys are returned as sent; validating them is the store's job. Raises
    `MalformedXML` for no objects, too many, an object without ``<Key>``, or a
    ``<Quiet>`` other than true/false.
    """
    root = _root(body, "Delete", xml_bytes_max)
    objects: list[ObjectIdentifier] = []
    for item in _children(root, "Object"):
        if len(objects) == DELETE_OBJECTS_MAX:
            raise MalformedXML(f"DeleteObjects takes at most {DELETE_OBJECTS_MAX} keys")
        objects.append(ObjectIdentifier(_text_of(item, "Key"), _optional_text(item, "VersionId")))
    if not objects:
        raise MalformedXML("Delete names no objects")
    return DeleteRequest(objects, _boolean(_optional_text(root, "Quiet"), "Quiet"))


def parse_tagging(body: bytes, *, xml_bytes_max: int = XML_BYTES_MAX) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of a Tagging body, in the order sent.

    Duplicates and S3's tag limits are left to the caller, because S3 answers
    them with ``InvalidTag``, not ``MalformedXML``. Raises `MalformedXML` when
    ``<TagSet>`` is missing or a ``<Tag>`` lacks ``<Key>`` or ``<Value>``.
    """
    root = _root(body, "Tagging", xml_bytes_max)
    tag_set = _one(root, "TagSet", required=True)
    assert tag_set is not None
    return [(_text_of(tag, "Key"), _text_of(tag, "Value")) for tag in _children(tag_set, "Tag")]


@dataclass(frozen=True, slots=True)
class VersioningConfiguration:
    """A PutBucketVersioning body; ``status`` is None when the body leaves it out."""

    status: Literal["Enabled", "Suspended"] | None
    mfa_delete: Literal["Enabled", "Disabled"] | None = None


def parse_versioning_configuration(
    body: bytes, *, xml_bytes_max: int = XML_BYTES_MAX
) -> VersioningConfiguration:
    """Read a VersioningConfiguration body; raises `MalformedXML` for any
    ``Status`` other than Enabled/Suspended or ``MfaDelete`` other than
    Enabled/Disabled (S3 answers MalformedXML for both)."""
    root = _root(body, "VersioningConfiguration", xml_bytes_max)
    status = _optional_text(root, "Status")
    mfa = _optional_text(root, "MfaDelete")
    if status not in {None, "Enabled", "Suspended"}:
        raise MalformedXML(f"versioning status {status!r} is neither Enabled nor Suspended")
    if mfa not in {None, "Enabled", "Disabled"}:
        raise MalformedXML(f"MfaDelete {mfa!r} is neither Enabled nor Disabled")
    return VersioningConfiguration(
        "Enabled" if status == "Enabled" else "Suspended" if status == "Suspended" else None,
        "Enabled" if mfa == "Enabled" else "Disabled" if mfa == "Disabled" else None,
    )


def parse_create_bucket_configuration(body: bytes, *, xml_bytes_max: int = 64 * 1024) -> str | None:
    """The LocationConstraint of a CreateBucket body; None for an empty body or
    an empty/missing constraint (both mean us-east-1 to S3)."""
    if not body.strip():
        return None
    root = _root(body, "CreateBucketConfiguration", xml_bytes_max)
    constraint = _optional_text(root, "LocationConstraint")
    return constraint.strip() or None if constraint is not None else None


# --- writing ------------------------------------------------------------------

# Characters XML 1.0 cannot carry even as a character reference. S3 writes
# them as references anyway (so documents holding such keys only parse with
# encoding-type=url, which is why boto3 always asks for it); tier0 does the same.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#13;"}
_TO_ESCAPE = re.compile("[&<>\"'\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape_text(value: str) -> str:
    """``value`` as XML character data: markup characters as entities, and CR as
    ``&#13;`` so that XML's end-of-line normalization does not turn it into LF.

    >>> escape_text("a<b & 'c'\\r")
    'a&lt;b &amp; &apos;c&apos;&#13;'
    """
    return _TO_ESCAPE.sub(lambda m: _ESCAPES.get(m[0]) or f"&#x{ord(m[0]):X};", value)


def format_timestamp(when: dt.datetime) -> str:
    """S3's timestamp format, in UTC with milliseconds: ``2024-01-02T03:04:05.000Z``.

    A naive datetime is taken to be UTC already.
    """
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _quoted_etag(etag: str) -> str:
    # The store keeps ETags bare; S3 always shows them in double quotes.
    return etag if etag.startswith('"') else f'"{etag}"'


class _Document:
    """A response document under construction; every text goes through escape_text."""

    def __init__(self, root: str, *, namespace: bool = True) -> None:
        self._root = root
        xmlns = f' xmlns="{S3_NAMESPACE}"' if namespace else ""
        self._parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{xmlns}>']

    def open(self, name: str) -> None:
        self._parts.append(f"<{name}>")

    def close(self, name: str) -> None:
        self._parts.append(f"</{name}>")

    def leaf(self, name: str, text: str | int | bool | None) -> None:
        """Write ``<name>text</name>``; None writes nothing (the element is absent)."""
        if text is None:
            return
        if isinstance(text, bool):
            text = "true" if text else "false"
        self._parts.append(f"<{name}>{escape_text(str(text))}</{name}>")

    def text(self, text: str) -> None:
        self._parts.append(escape_text(text))

    def finish(self) -> bytes:
        self._parts.append(f"</{self._root}>")
        return "".join(self._parts).encode("utf-8")


class _Encoder:
    """Applies ``encoding-type=url`` to the fields S3 encodes with it."""

    def __init__(self, encoding_type: str | None) -> None:
        if encoding_type not in {None, "url"}:
            raise InvalidArgument(f"encoding-type {encoding_type!r} is invalid; only url is")
        self.encoding_type = encoding_type

    def __call__(self, value: str | None) -> str | None:
        if value is None or self.encoding_type is None:
            return value
        # '/' stays readable as S3 leaves it; everything else, '+' and space
        # included, is percent-encoded so both unquote and unquote_plus
        # (botocore's choice) restore the key.
        return quote(value, safe="/")


def _owner(doc: _Document, owner: str) -> None:
    doc.open("Owner")
    doc.leaf("ID", owner)
    doc.leaf("DisplayName", owner)
    doc.close("Owner")


def render_list_buckets(buckets: Sequence[BucketInfo], *, owner: str) -> bytes:
    """ListAllMyBucketsResult for ``buckets``, in the order given."""
    doc = _Document("ListAllMyBucketsResult")
    _owner(doc, owner)
    doc.open("Buckets")
    for bucket in buckets:
        doc.open("Bucket")
        doc.leaf("Name", bucket.name)
        doc.leaf("CreationDate", format_timestamp(bucket.created))
        doc.close("Bucket")
    doc.close("Buckets")
    return doc.finish()


def _contents(doc: _Document, item: ObjectInfo, encode: _Encoder, *, owner: bool) -> None:
    doc.open("Contents")
    doc.leaf("Key", encode(item.key))
    doc.leaf("LastModified", format_timestamp(item.modified))
    doc.leaf("ETag", _quoted_etag(item.etag))
    doc.leaf("Size", item.size)
    if owner:
        _owner(doc, item.owner)
    doc.leaf("StorageClass", "STANDARD")
    doc.close("Contents")


def _common_prefixes(doc: _Document, prefixes: Sequence[str], encode: _Encoder) -> None:
    for prefix in prefixes:
        doc.open("CommonPrefixes")
        doc.leaf("Prefix", encode(prefix))
        doc.close("CommonPrefixes")


def render_list_objects_v1(
    page: ListPage,
    *,
    bucket: str,
    max_keys: int,
    prefix: str = "",
    delimiter: str | None = None,
    marker: str = "",
    encoding_type: str | None = None,
) -> bytes:
    """ListBucketResult (ListObjects v1) for one page.

    ``NextMarker`` is written, as S3 writes it, only when the page is truncated
    and a delimiter was given: it is the page's ``next_start_after`` (the last
    key or common prefix). Without a delimiter clients resume after the last
    key listed. ``Owner`` is always shown (v1 has no fetch-owner).
    ``encoding_type`` is None or "url" (`InvalidArgument` otherwise); with
    "url", Prefix, Delimiter, Marker, NextMarker, keys and common prefixes are
    percent-encoded.
    """
    encode = _Encoder(encoding_type)
    doc = _Document("ListBucketResult")
    doc.leaf("Name", bucket)
    doc.leaf("Prefix", encode(prefix))
    doc.leaf("Marker", encode(marker))
    if page.truncated and delimiter:
        doc.leaf("NextMarker", encode(page.next_start_after))
    doc.leaf("MaxKeys", max_keys)
    doc.leaf("Delimiter", encode(delimiter))
    doc.leaf("EncodingType", encode.encoding_type)
    doc.leaf("IsTruncated", page.truncated)
    for item in page.objects:
        _contents(doc, item, encode, owner=True)
    _common_prefixes(doc, page.prefixes, encode)
    return doc.finish()


def render_list_objects_v2(
    page: ListPage,
    *,
    bucket: str,
    max_keys: int,
    prefix: str = "",
    delimiter: str | None = None,
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    fetch_owner: bool = False,
    encoding_type: str | None = None,
) -> bytes:
    """ListBucketResult (ListObjectsV2) for one page.

    Continuation tokens are opaque here: the gateway encodes
    ``page.next_start_after`` into ``next_continuation_token`` and passes it
    (written only when the page is truncated). ``KeyCount`` counts keys and
    common prefixes, as S3 does. With ``encoding_type="url"``, Prefix,
    Delimiter, StartAfter, keys and common prefixes are percent-encoded.
    """
    encode = _Encoder(encoding_type)
    doc = _Document("ListBucketResult")
    doc.leaf("Name", bucket)
    doc.leaf("Prefix", encode(prefix))
    doc.leaf("MaxKeys", max_keys)
    doc.leaf("KeyCount", len(page.objects) + len(page.prefixes))
    doc.leaf("Delimiter", encode(delimiter))
    doc.leaf("EncodingType", encode.encoding_type)
    doc.leaf("IsTruncated", page.truncated)
    doc.leaf("ContinuationToken", continuation_token)
    if page.truncated:
        doc.leaf("NextContinuationToken", next_continuation_token)
    doc.leaf("StartAfter", encode(start_after))
    for item in page.objects:
        _contents(doc, item, encode, owner=fetch_owner)
    _common_prefixes(doc, page.prefixes, encode)
    return doc.finish()


def render_list_versions(
    page: VersionPage,
    *,
    bucket: str,
    max_keys: int,
    prefix: str = "",
    delimiter: str | None = None,
    key_marker: str = "",
    version_id_marker: str = "",
    encoding_type: str | None = None,
) -> bytes:
    """ListVersionsResult for one page: ``<Version>`` and ``<DeleteMarker>``
    entries in the page's order (S3 interleaves them so), then common prefixes.

    A version without an id is shown as S3's ``null`` version. With
    ``encoding_type="url"``, Prefix, Delimiter, KeyMarker, NextKeyMarker, keys
    and common prefixes are percent-encoded.
    """
    encode = _Encoder(encoding_type)
    doc = _Document("ListVersionsResult")
    doc.leaf("Name", bucket)
    doc.leaf("Prefix", encode(prefix))
    doc.leaf("KeyMarker", encode(key_marker))
    doc.leaf("VersionIdMarker", version_id_marker)
    if page.truncated:
        doc.leaf("NextKeyMarker", encode(page.next_key_marker))
        doc.leaf("NextVersionIdMarker", page.next_version_marker)
    doc.leaf("MaxKeys", max_keys)
    doc.leaf("Delimiter", encode(delimiter))
    doc.leaf("EncodingType", encode.encoding_type)
    doc.leaf("IsTruncated", page.truncated)
    for item in page.versions:
        element = "DeleteMarker" if item.is_delete_marker else "Version"
        doc.open(element)
        doc.leaf("Key", encode(item.key))
        doc.leaf("VersionId", item.version_id or "null")
        doc.leaf("IsLatest", item.is_latest)
        doc.leaf("LastModified", format_timestamp(item.modified))
        if not item.is_delete_marker:
            doc.leaf("ETag", _quoted_etag(item.etag))
            doc.leaf("Size", item.size)
            doc.leaf("StorageClass", "STANDARD")
        _owner(doc, item.owner)
        doc.close(element)
    _common_prefixes(doc, page.prefixes, encode)
    return doc.finish()


def render_copy_object_result(
    *, etag: str, last_modified: dt.datetime, checksums: Mapping[str, str] | None = None
) -> bytes:
    """CopyObjectResult (also the body of UploadPartCopy, as CopyPartResult in S3;
    boto3 reads both the same way). ``checksums`` are the copy's digests by
    algorithm (base64), shown as S3 shows them (`CHECKSUM_ELEMENTS`)."""
    doc = _Document("CopyObjectResult")
    doc.leaf("LastModified", format_timestamp(last_modified))
    doc.leaf("ETag", _quoted_etag(etag))
    _checksums(doc, checksums or {}, with_type=True)
    return doc.finish()


#: The algorithms S3 shows as ``x-amz-checksum-<name>`` headers and
#: ``Checksum<Element>`` XML elements, in S3's order. Content-MD5 is not one:
#: the ETag of a single-part object is its MD5 already.
CHECKSUM_ELEMENTS: Mapping[str, str] = {
    "crc32": "CRC32",
    "crc32c": "CRC32C",
    "crc64nvme": "CRC64NVME",
    "sha1": "SHA1",
    "sha256": "SHA256",
}


def checksum_type(value: str) -> Literal["FULL_OBJECT", "COMPOSITE"]:
    """S3's type of a stored checksum: a composite one (a multipart object's
    checksum of its parts' checksums) ends in ``-<parts>``, which base64 never holds.

    >>> checksum_type("NhCmhg=="), checksum_type("NhCmhg==-3")
    ('FULL_OBJECT', 'COMPOSITE')
    """
    return "COMPOSITE" if "-" in value else "FULL_OBJECT"


def _checksums(doc: _Document, checksums: Mapping[str, str], *, with_type: bool) -> bool:
    """Write ``Checksum<ALG>`` elements for the S3 algorithms in ``checksums``
    (and ``ChecksumType``); returns whether any was written."""
    shown = [(name, checksums[alg]) for alg, name in CHECKSUM_ELEMENTS.items() if alg in checksums]
    for name, value in shown:
        doc.leaf(f"Checksum{name}", value)
    if shown and with_type:
        doc.leaf("ChecksumType", checksum_type(shown[0][1]))
    return bool(shown)


#: The attributes GetObjectAttributes may ask for (``x-amz-object-attributes``).
OBJECT_ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})


def render_get_object_attributes(
    info: ObjectInfo, *, attributes: Collection[str], max_parts: int, part_number_marker: int
) -> bytes:
    """GetObjectAttributesResponse with the ``attributes`` asked for (names from
    `OBJECT_ATTRIBUTES`), in S3's order.

    As in S3: the ETag is shown without quotes; ``Checksum`` holds the S3
    algorithms the version recorded; ``ObjectParts`` describes a version
    completed from a multipart upload (none otherwise), one page of up to
    ``max_parts`` parts after ``part_number_marker``, whose ``Part`` entries are
    listed only when the parts carry checksums (S3: "if an additional checksum
    isn't applied ... the response doesn't return Part").
    """
    doc = _Document("GetObjectAttributesResponse")
    if "ETag" in attributes:
        doc.leaf("ETag", info.etag.strip('"'))
    if "Checksum" in attributes and any(alg in info.checksums for alg in CHECKSUM_ELEMENTS):
        doc.open("Checksum")
        _checksums(doc, info.checksums, with_type=True)
        doc.close("Checksum")
    if "ObjectParts" in attributes and info.parts:
        following = [part for part in info.parts if part.number > part_number_marker]
        page = following[:max_parts]
        truncated = len(following) > len(page)
        doc.open("ObjectParts")
        doc.leaf("IsTruncated", truncated)
        doc.leaf("MaxParts", max_parts)
        if page:
            doc.leaf("NextPartNumberMarker", page[-1].number)
        doc.leaf("PartNumberMarker", part_number_marker)
        if any(alg in part.checksums for part in info.parts for alg in CHECKSUM_ELEMENTS):
            for part in page:
                doc.open("Part")
                _checksums(doc, part.checksums, with_type=False)
                doc.leaf("PartNumber", part.number)
                doc.leaf("Size", part.size)
                doc.close("Part")
        doc.leaf("PartsCount", len(info.parts))
        doc.close("ObjectParts")
    if "StorageClass" in attributes:
        doc.leaf("StorageClass", "STANDARD")
    if "ObjectSize" in attributes:
        doc.leaf("ObjectSize", info.size)
    return doc.finish()


def render_post_response(*, location: str, bucket: str, key: str, etag: str) -> bytes:
    """PostResponse, a browser-form POST's answer under ``success_action_status=201``.

    S3 writes it without a namespace.
    """
    doc = _Document("PostResponse", namespace=False)
    doc.leaf("Location", location)
    doc.leaf("Bucket", bucket)
    doc.leaf("Key", key)
    doc.leaf("ETag", _quoted_etag(etag))
    return doc.finish()


@dataclass(frozen=True, slots=True)
class Deleted:
    """One key DeleteObjects removed (or marked deleted)."""

    key: str
    version_id: str | None = None
    delete_marker: bool = False
    delete_marker_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteError:
    """One key DeleteObjects could not delete, with its S3 code and message."""

    key: str
    code: str
    message: str
    version_id: str | None = None


def render_delete_result(
    deleted: Sequence[Deleted], errors: Sequence[DeleteError], *, quiet: bool
) -> bytes:
    """DeleteResult; in quiet mode S3 lists only the errors."""
    doc = _Document("DeleteResult")
    if not quiet:
        for item in deleted:
            doc.open("Deleted")
            doc.leaf("Key", item.key)
            doc.leaf("VersionId", item.version_id)
            if item.delete_marker:
                doc.leaf("DeleteMarker", True)
                doc.leaf("DeleteMarkerVersionId", item.delete_marker_version_id)
            doc.close("Deleted")
    for error in errors:
        doc.open("Error")
        doc.leaf("Key", error.key)
        doc.leaf("VersionId", error.version_id)
        doc.leaf("Code", error.code)
        doc.leaf("Message", error.message)
        doc.close("Error")
    return doc.finish()


def render_tagging(tags: Mapping[str, str]) -> bytes:
    """Tagging with a TagSet, in the mapping's order."""
    doc = _Document("Tagging")
    doc.open("TagSet")
    for key, value in tags.items():
        doc.open("Tag")
        doc.leaf("Key", key)
        doc.leaf("Value", value)
        doc.close("Tag")
    doc.close("TagSet")
    return doc.finish()


def render_versioning_configuration(versioning: Versioning) -> bytes:
    """VersioningConfiguration; a bucket never versioned has no Status, as in S3."""
    doc = _Document("VersioningConfiguration")
    if versioning != "Unversioned":
        doc.leaf("Status", versioning)
    return doc.finish()


def render_location_constraint(region: str) -> bytes:
    """LocationConstraint; S3 answers us-east-1 with an empty element."""
    doc = _Document("LocationConstraint")
    if region != "us-east-1":
        doc.text(region)
    return doc.finish()
