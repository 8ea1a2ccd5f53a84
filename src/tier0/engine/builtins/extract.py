"""Metadata extraction: what an element is, learnt from its bytes, put in the catalog.

For each new element the function reads its first bytes (and, for Parquet,
its footer; never the whole element) and merges what it found into the
version's user metadata (`Store.annotate`: in place, no new version, an
``ObjectMetadata:Put`` event), where SQL finds it::

    SELECT key, metadata->>'tier0-width' AS w FROM objects
    WHERE metadata->>'tier0-type' = 'image/png'

===================  ========================================================
``tier0-type``       the content type sniffed from the bytes (PNG, JPEG, GIF,
                     WebP, PDF, Parquet, ZIP, gzip, zstd, JSON, text, else
                     ``application/octet-stream``)
``tier0-width``,     an image's dimensions in pixels (PNG, JPEG, GIF, WebP)
``tier0-height``
``tier0-rows``,      a Parquet file's row count, its column count, and its
``tier0-columns``,   schema as ``name:type`` pairs (cut to fit S3's 2 KiB of
``tier0-schema``     user metadata)
===================  ========================================================

Deploy it with `tier0.engine.builtins.extraction`.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

HEAD_BYTES: Final = 64 * 1024
SCHEMA_CHARS_MAX: Final = 1024
#: A Parquet footer larger than this is not read (its schema is left out).
FOOTER_BYTES_MAX: Final = 16 * 1024 * 1024


def handler(ctx: Any, event: dict[str, Any]) -> None:
    client, bucket, key = ctx.client, event["bucket"], event["key"]
    version = event.get("version_id")
    size = int(event.get("size") or 0)
    head = client.get(bucket, key, version_id=version, length=min(size, HEAD_BYTES)).read()
    facts = describe(head)
    if facts["tier0-type"] == "application/vnd.apache.parquet" and size >= 12:
        facts.update(_parquet(client, bucket, key, version, size))
    client.annotate(bucket, key, facts, version_id=version)
    ctx.log.info("%s/%s: %s", bucket, key, facts)


def describe(head: bytes) -> dict[str, str]:
    """What the first bytes of an element say: its type, and an image's dimensions."""
    kind = sniff(head)
    facts = {"tier0-type": kind}
    size = image_size(head)
    if size is not None:
        facts["tier0-width"], facts["tier0-height"] = str(size[0]), str(size[1])
    return facts


def sniff(head: bytes) -> str:
    """The content type the bytes show (their magic numbers, else whether they are text)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end
            return "application/octet-stream"
        text = head[: error.start].decode("utf-8")
    if "\x00" in text:
        return "application/octet-stream"
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            json.loads(stripped)
            return "application/json"
        except ValueError:
            if len(head) >= HEAD_BYTES:  # cut: it may well be JSON
                return "application/json"
    return "text/plain"


_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"),
    (b"PAR1", "application/vnd.apache.parquet"), (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"), (b"\x28\xb5\x2f\xfd", "application/zstd"),
)  # fmt: skip


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, JPEG or WebP from its first bytes, if they say."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        # Start of frame: 0xC0-0xCF, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _parquet(client: Any, bucket: str, key: str, version: str | None, size: int) -> dict[str, str]:
    """Row count and schema from a Parquet file's footer (two range reads)."""
    import io

    import pyarrow.parquet as pq

    tail = client.get(bucket, key, version_id=version, offset=size - 8, length=8).read()
    if tail[4:] != b"PAR1":
        return {}
    footer_length = struct.unpack("<I", tail[:4])[0]
    if footer_length + 8 > min(size, FOOTER_BYTES_MAX):
        return {}
    footer = client.get(
        bucket, key, version_id=version, offset=size - 8 - footer_length, length=footer_length + 8
    ).read()
    metadata = pq.read_metadata(io.BytesIO(b"PAR1" + footer))
    schema = metadata.schema.to_arrow_schema()
    text = ",".join(f"{field.name}:{field.type}" for field in schema)
    if len(text) > SCHEMA_CHARS_MAX:
        text = text[: SCHEMA_CHARS_MAX - 3] + "..."
    return {
        "tier0-rows": str(metadata.num_rows), "tier0-columns": str(len(schema)),
        "tier0-schema": text,
    }  # fmt: skip
