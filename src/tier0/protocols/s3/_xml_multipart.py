"""The XML of multipart uploads: the CompleteMultipartUpload body, and the
Initiate, Complete, CopyPart, ListParts and ListMultipartUploads results.

Built on `tier0.protocols.s3._xml`'s hardened parser and document writer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tier0.protocols.s3._xml import (
    CHECKSUM_ELEMENTS,
    COMPLETE_XML_BYTES_MAX,
    PART_NUMBER_MAX,
    MalformedXML,
    _checksums,
    _children,
    _common_prefixes,
    _Document,
    _Encoder,
    _optional_text,
    _quoted_etag,
    _root,
    _text_of,
    format_timestamp,
)

if TYPE_CHECKING:
    from tier0.store import PartPage, UploadPage

__all__ = [
    "CompletedPart",
    "parse_complete_multipart_upload",
    "render_complete_multipart_upload",
    "render_copy_part_result",
    "render_initiate_multipart_upload",
    "render_list_multipart_uploads",
    "render_list_parts",
]


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload body, ETag as sent (quotes kept)."""

    number: int
    etag: str
    #: The part's ``Checksum<ALG>`` elements, by lower-case algorithm (`CHECKSUM_ELEMENTS`).
    checksums: Mapping[str, str] = field(default_factory=dict)


_PART_NUMBER = re.compile(r"\s*\d{1,5}\s*")


def parse_complete_multipart_upload(
    body: bytes, *, xml_bytes_max: int = COMPLETE_XML_BYTES_MAX
) -> list[CompletedPart]:
    """The parts of a CompleteMultipartUpload body, in the order they were sent.

    Order is kept, not sorted: S3 answers ``InvalidPartOrder`` when it is not
    ascending, and that is the caller's check. Raises `MalformedXML` when there
    are no parts, more than `PART_NUMBER_MAX`, a part number outside
    1..`PART_NUMBER_MAX`, or a part without its ``PartNumber`` or ``ETag``.
    A part's ``Checksum<ALG>`` elements are kept as sent, for the caller to compare.
    """
    root = _root(body, "CompleteMultipartUpload", xml_bytes_max)
    parts: list[CompletedPart] = []
    for part in _children(root, "Part"):
        if len(parts) == PART_NUMBER_MAX:
            raise MalformedXML(f"a multipart upload has at most {PART_NUMBER_MAX} parts")
        number_text = _text_of(part, "PartNumber")
        number = int(number_text) if _PART_NUMBER.fullmatch(number_text) else 0
        if not 1 <= number <= PART_NUMBER_MAX:
            raise MalformedXML(
                f"part number {number_text!r} is not an integer from 1 to {PART_NUMBER_MAX}"
            )
        checksums = {
            algorithm: text.strip()
            for algorithm, name in CHECKSUM_ELEMENTS.items()
            if (text := _optional_text(part, f"Checksum{name}")) is not None
        }
        parts.append(CompletedPart(number, _text_of(part, "ETag").strip(), checksums))
    if not parts:
        raise MalformedXML("CompleteMultipartUpload names no parts")
    return parts


def render_initiate_multipart_upload(*, bucket: str, key: str, upload_id: str) -> bytes:
    """InitiateMultipartUploadResult naming the new upload."""
    doc = _Document("InitiateMultipartUploadResult")
    doc.leaf("Bucket", bucket)
    doc.leaf("Key", key)
    doc.leaf("UploadId", upload_id)
    return doc.finish()


def render_complete_multipart_upload(
    *,
    location: str,
    bucket: str,
    key: str,
    etag: str,
    checksums: Mapping[str, str] | None = None,
) -> bytes:
    """CompleteMultipartUploadResult; ``location`` is the object's URL, ``checksums``
    the object's (by algorithm, base64, composite ones ending in ``-N``), shown
    with their ``ChecksumType``."""
    doc = _Document("CompleteMultipartUploadResult")
    doc.leaf("Location", location)
    doc.leaf("Bucket", bucket)
    doc.leaf("Key", key)
    doc.leaf("ETag", _quoted_etag(etag))
    _checksums(doc, checksums or {}, with_type=True)
    return doc.finish()


def render_copy_part_result(
    *, etag: str, last_modified: dt.datetime, checksums: Mapping[str, str] | None = None
) -> bytes:
    """CopyPartResult, UploadPartCopy's answer: the new part's ETag and checksums."""
    doc = _Document("CopyPartResult")
    doc.leaf("ETag", _quoted_etag(etag))
    doc.leaf("LastModified", format_timestamp(last_modified))
    _checksums(doc, checksums or {}, with_type=False)
    return doc.finish()


def _initiator(doc: _Document, element: str, principal: str) -> None:
    doc.open(element)
    doc.leaf("ID", principal)
    doc.leaf("DisplayName", principal)
    doc.close(element)


def _upload_checksum(doc: _Document, algorithm: str | None, kind: str | None) -> None:
    if algorithm is not None and algorithm in CHECKSUM_ELEMENTS:
        doc.leaf("ChecksumAlgorithm", CHECKSUM_ELEMENTS[algorithm])
        doc.leaf("ChecksumType", kind)


def render_list_parts(
    page: PartPage, *, bucket: str, max_parts: int, part_number_marker: int
) -> bytes:
    """ListPartsResult for one page of an upload's parts, each with its checksums;
    the initiator is shown as both Initiator and Owner."""
    upload = page.upload
    doc = _Document("ListPartsResult")
    doc.leaf("Bucket", bucket)
    doc.leaf("Key", upload.key)
    doc.leaf("UploadId", upload.upload_id)
    doc.leaf("PartNumberMarker", part_number_marker)
    doc.leaf("NextPartNumberMarker", page.next_part_number_marker)
    doc.leaf("MaxParts", max_parts)
    doc.leaf("IsTruncated", page.truncated)
    for part in page.parts:
        doc.open("Part")
        _checksums(doc, part.checksums, with_type=False)
        doc.leaf("ETag", _quoted_etag(part.etag))
        doc.leaf("LastModified", format_timestamp(part.modified))
        doc.leaf("PartNumber", part.number)
        doc.leaf("Size", part.size)
        doc.close("Part")
    _initiator(doc, "Initiator", upload.initiator)
    _initiator(doc, "Owner", upload.initiator)
    doc.leaf("StorageClass", "STANDARD")
    _upload_checksum(doc, upload.checksum_algorithm, upload.checksum_type)
    return doc.finish()


def render_list_multipart_uploads(
    page: UploadPage,
    *,
    bucket: str,
    max_uploads: int,
    prefix: str = "",
    delimiter: str | None = None,
    key_marker: str = "",
    upload_id_marker: str = "",
    encoding_type: str | None = None,
) -> bytes:
    """ListMultipartUploadsResult for one page: uploads in key then initiation
    order, then common prefixes. ``NextKeyMarker``/``NextUploadIdMarker`` are
    written when the page is truncated. With ``encoding_type="url"``, Prefix,
    Delimiter, KeyMarker, NextKeyMarker, keys and common prefixes are
    percent-encoded."""
    encode = _Encoder(encoding_type)
    doc = _Document("ListMultipartUploadsResult")
    doc.leaf("Bucket", bucket)
    doc.leaf("KeyMarker", encode(key_marker))
    doc.leaf("UploadIdMarker", upload_id_marker)
    if page.truncated:
        doc.leaf("NextKeyMarker", encode(page.next_key_marker))
        doc.leaf("NextUploadIdMarker", page.next_upload_id_marker or "")
    doc.leaf("Prefix", encode(prefix))
    doc.leaf("Delimiter", encode(delimiter))
    doc.leaf("MaxUploads", max_uploads)
    doc.leaf("IsTruncated", page.truncated)
    for upload in page.uploads:
        doc.open("Upload")
        _upload_checksum(doc, upload.checksum_algorithm, upload.checksum_type)
        doc.leaf("Initiated", format_timestamp(upload.created))
        _initiator(doc, "Initiator", upload.initiator)
        doc.leaf("Key", encode(upload.key))
        _initiator(doc, "Owner", upload.initiator)
        doc.leaf("StorageClass", "STANDARD")
        doc.leaf("UploadId", upload.upload_id)
        doc.close("Upload")
    _common_prefixes(doc, page.prefixes, encode)
    doc.leaf("EncodingType", encode.encoding_type)
    return doc.finish()
