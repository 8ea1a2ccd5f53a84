"""Built-in functions (``tier0.engine.builtins``) on real worker processes: automatic
embedding makes a document searchable by meaning (the real all-MiniLM-L6-v2) moments after
its PUT, and forgets a removed one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tier0
from tests.engine import wait_for
from tier0.engine.builtins import embedding

pytestmark = pytest.mark.slow


def _wait(condition: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    return wait_for(condition, timeout_s)


def _nearest(t0: tier0.Tier0, text: str) -> list[str]:
    hits = t0.search(text, bucket="docs", k=3, elements=True)
    return [str(key) for key in hits.column("key").to_pylist()]


def test_a_put_document_becomes_searchable_and_a_removed_one_goes(t0: tier0.Tier0) -> None:
    t0.create_bucket("docs")
    function, trigger = embedding("docs", prefix="kb/")
    t0.engine.deploy(function)
    t0.engine.add_trigger(trigger)
    with t0.engine.start(workers=2, idle_s=0.2):
        t0.put("docs", "kb/bread.txt", b"Knead the dough, let it rise overnight, then bake.")
        t0.put("docs", "kb/stars.txt", b"Telescopes gather light from distant galaxies.")
        t0.put("docs", "other/x.txt", b"Sourdough starters need flour and water daily.")
        _wait(lambda: len(t0.engine.invocations(status="done")) >= 1
              and _nearest(t0, "astronomy and the night sky")[:1] == ["kb/stars.txt"])  # fmt: skip
        assert _nearest(t0, "how to make bread at home")[0] == "kb/bread.txt"
        assert "other/x.txt" not in _nearest(t0, "sourdough starter")  # not under the prefix
        t0.delete("docs", "kb/stars.txt")
        _wait(lambda: "kb/stars.txt" not in _nearest(t0, "astronomy and the night sky"))
        _wait(lambda: all(r.status in ("done", "dead") for r in t0.engine.invocations()))
    records = t0.engine.invocations()
    assert len(records) == 3  # two PUTs and the DELETE under kb/
    assert all(r.status == "done" for r in records), [r.error for r in records]
    lines = [line.message for line in t0.engine.logs(function="embed-docs")]
    assert any(line.startswith("indexed docs: ") for line in lines)


def _png(width: int, height: int) -> bytes:
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))  # fmt: skip


def _jpeg(width: int, height: int) -> bytes:
    import struct

    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def test_extraction_puts_type_dimensions_and_parquet_shape_in_the_catalog(
    t0: tier0.Tier0,
) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tier0.engine.builtins import extraction

    t0.create_bucket("media")
    function, trigger = extraction("media")
    t0.engine.deploy(function)
    t0.engine.add_trigger(trigger)
    parquet = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(1000)), "name": ["x"] * 1000}), parquet)
    with t0.engine.start(workers=2, idle_s=0.2):
        t0.put("media", "a.png", _png(640, 480))
        t0.put("media", "b.jpg", _jpeg(1920, 1080))
        t0.put("media", "c.parquet", parquet.getvalue(), metadata={"owner": "ana"})
        t0.put("media", "d.json", b'{"a": [1, 2]}')
        t0.put("media", "e.bin", bytes(range(256)) * 4)
        _wait(lambda: len(t0.engine.invocations(status="done")) == 5, timeout_s=60)
    rows = t0.sql(
        "SELECT key, metadata->>'tier0-type', metadata->>'tier0-width',"
        " metadata->>'tier0-height', metadata->>'tier0-rows', metadata->>'tier0-columns'"
        " FROM objects WHERE bucket = 'media' ORDER BY key"
    ).rows
    assert rows == [
        ("a.png", "image/png", "640", "480", None, None),
        ("b.jpg", "image/jpeg", "1920", "1080", None, None),
        ("c.parquet", "application/vnd.apache.parquet", None, None, "1000", "2"),
        ("d.json", "application/json", None, None, None, None),
        ("e.bin", "application/octet-stream", None, None, None, None),
    ]
    head = t0.head("media", "c.parquet")
    assert head.metadata["owner"] == "ana"  # merged: the user's own metadata stays
    assert head.metadata["tier0-schema"] == "id:int64,name:string"
    versions = t0.sql("SELECT count(*) FROM versions WHERE bucket = 'media'").rows
    assert versions == [(5,)]  # annotated in place: no new versions
    kinds = t0.sql("SELECT count(*) FROM events WHERE type = 'ObjectMetadata:Put'").rows
    assert kinds == [(5,)]


def test_sniffing_and_image_sizes_from_the_first_bytes() -> None:
    import struct

    from tier0.engine.builtins.extract import describe

    gif = b"GIF89a" + struct.pack("<HH", 32, 16) + b"\x00" * 8
    webp_lossless = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + (
        ((99 & 0x3FFF) | ((49 & 0x3FFF) << 14)).to_bytes(4, "little")
    )
    webp_extended = (
        b"RIFF\x00\x00\x00\x00WEBPVP8X"
        + b"\x00" * 8
        + ((299).to_bytes(3, "little") + (199).to_bytes(3, "little"))
    )
    assert describe(_png(1, 2)) == {"tier0-type": "image/png", "tier0-width": "1",
                                    "tier0-height": "2"}  # fmt: skip
    assert describe(gif)["tier0-width"] == "32" and describe(gif)["tier0-height"] == "16"
    assert (describe(webp_lossless)["tier0-width"], describe(webp_lossless)["tier0-height"]) == (
        "100", "50",
    )  # fmt: skip
    assert describe(webp_extended)["tier0-width"] == "300"
    assert describe(b"%PDF-1.7\n...")["tier0-type"] == "application/pdf"
    assert describe("héllo wörld\n".encode())["tier0-type"] == "text/plain"
    assert describe("ab\u00e9".encode()[:-1])["tier0-type"] == "text/plain"  # a cut character
    assert describe(b"\xff\xfe\x00\x01garbage")["tier0-type"] == "application/octet-stream"
    assert describe(b"[1, 2")["tier0-type"] == "text/plain"  # not JSON, and not cut
    assert describe(b"")["tier0-type"] == "text/plain"
