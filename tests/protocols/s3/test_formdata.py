"""The incremental multipart/form-data parser of browser-form POST uploads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tier0.protocols.s3._formdata import (
    PART_END,
    Event,
    FormParser,
    MalformedPOSTRequest,
    Part,
    form_boundary,
)

BOUNDARY = "----tier0FormBoundary7MA4YWxkTrZu0gW"


def encode(
    fields: list[tuple[str, bytes]],
    boundary: str = BOUNDARY,
    *,
    filename: str | None = None,
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    """A form as a browser writes it; the last field gets ``filename`` when given."""
    out = [preamble]
    for index, (name, value) in enumerate(fields):
        disposition = f'form-data; name="{name}"'
        if filename is not None and index == len(fields) - 1:
            disposition += f'; filename="{filename}"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        out.append(value + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode() + epilogue)
    return b"".join(out)


def parse(body: bytes, pieces: list[int] | None = None, boundary: str = BOUNDARY) -> list[Event]:
    """All events of ``body`` fed in pieces cut at ``pieces`` (offsets), then finished."""
    parser = FormParser(boundary)
    events: list[Event] = []
    start = 0
    for cut in sorted(pieces or []):
        events.extend(parser.feed(body[start:cut]))
        start = cut
    events.extend(parser.feed(body[start:]))
    parser.finish()
    return events


def fields_of(events: list[Event]) -> list[tuple[str, bytes]]:
    """The (name, value) pairs the events describe, data pieces joined."""
    out: list[tuple[str, bytes]] = []
    current: Part | None = None
    data = bytearray()
    for event in events:
        if isinstance(event, Part):
            assert current is None, "a part began inside another"
            current, data = event, bytearray()
        elif isinstance(event, bytes):
            assert current is not None
            data += event
        else:
            assert event is PART_END and current is not None
            out.append((current.name, bytes(data)))
            current = None
    assert current is None, "the last part never ended"
    return out


names = st.text(
    st.characters(min_codepoint=0x20, exclude_characters='"\\'), min_size=1, max_size=20
)
values = st.binary(max_size=300) | st.sampled_from(
    [b"\r\n", b"--", f"\r\n--{BOUNDARY[:-1]}".encode(), f"--{BOUNDARY}".encode(), b"\r"]
)


@given(
    fields=st.lists(st.tuples(names, values), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_feed_round_trips_any_form_cut_anywhere(
    fields: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    body = encode(fields, filename="a.bin")
    events = parse(body, [cut for cut in cuts if cut <= len(body)])
    assert fields_of(events) == fields
    parts = [event for event in events if isinstance(event, Part)]
    assert parts[-1].filename == "a.bin"
    assert all(part.filename is None for part in parts[:-1])


@given(st.binary(max_size=200))
def test_feed_any_bytes_parse_or_refuse(body: bytes) -> None:
    parser = FormParser("xyz")
    try:
        parser.feed(body)
        parser.finish()
    except MalformedPOSTRequest:
        pass


def test_feed_reads_part_heads() -> None:
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="r\\"s.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nhi\r\n"
        f"--{BOUNDARY}--"
    ).encode()
    (part, data, end) = parse(body)
    assert isinstance(part, Part)
    assert (part.name, part.filename, part.content_type) == ("file", 'r"s.txt', "text/plain")
    assert part.head_bytes == len(body.split(b"\r\n\r\n")[0]) - len(f"--{BOUNDARY}\r\n") + 4
    assert (data, end) == (b"hi", PART_END)


def test_feed_reads_rfc5987_file_names() -> None:
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file; "
        "filename*=UTF-8''%E2%82%AC.txt\r\n\r\nx\r\n"
        f"--{BOUNDARY}--"
    ).encode()
    part = parse(body)[0]
    assert isinstance(part, Part) and part.filename == "\u20ac.txt"


def test_feed_skips_preamble_and_epilogue() -> None:
    body = encode([("key", b"a")], preamble=b"ignore me\r\n", epilogue=b"and me too")
    assert fields_of(parse(body)) == [("key", b"a")]


def test_feed_streams_a_large_part_without_holding_it() -> None:
    parser = FormParser(BOUNDARY)
    parser.feed(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode())
    total = 0
    for _ in range(64):
        out = parser.feed(b"x" * 65536)
        total += sum(len(event) for event in out if isinstance(event, bytes))
    # All but the bytes that might still begin the delimiter came out at once.
    assert total == 64 * 65536 - (len(BOUNDARY) + 4 - 1)
    assert parser.feed(f"\r\n--{BOUNDARY}--".encode())[-1] is PART_END
    parser.finish()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(encode([("key", b"a")])[:-4], id="no closing delimiter"),
        pytest.param(b"", id="empty"),
        pytest.param(
            f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\na\r\n--{BOUNDARY}--".encode(),
            id="no Content-Disposition",
        ),
        pytest.param(
            f"--{BOUNDARY}\r\nContent-Disposition: attachment; name=a\r\n\r\na\r\n--{BOUNDARY}--".encode(),
            id="not form-data",
        ),
        pytest.param(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\na\r\n--{BOUNDARY}--".encode(),
            id="no name",
        ),
        pytest.param(
            f"--{BOUNDARY}junk\r\nContent-Disposition: form-data; name=a\r\n\r\na\r\n--{BOUNDARY}--".encode(),
            id="text after the delimiter",
        ),
        pytest.param(b"x" * 5000 + encode([("key", b"a")]), id="preamble too long"),
        pytest.param(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\nX: {'y' * 9000}\r\n\r\n".encode(),
            id="part head too long",
        ),
    ],
)
def test_feed_refuses_malformed_bodies(body: bytes) -> None:
    parser = FormParser(BOUNDARY)
    with pytest.raises(MalformedPOSTRequest):
        parser.feed(body)
        parser.finish()


def test_feed_ignores_bytes_after_the_end() -> None:
    parser = FormParser(BOUNDARY)
    events = parser.feed(encode([("a", b"1")]))
    assert parser.feed(b"--more junk") == []
    parser.finish()
    assert fields_of(events) == [("a", b"1")]


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", "abc"),
        ('multipart/form-data; charset=utf-8; boundary="a b:c"', "a b:c"),
        ("multipart/form-data", None),
        ("multipart/form-data; Boundary=XY", "XY"),
    ],
)
def test_form_boundary_reads_the_parameter(content_type: str, boundary: str | None) -> None:
    assert form_boundary(content_type) == boundary


@pytest.mark.parametrize("boundary", ["", "a" * 71, "ab\x01", "ends with space "])
def test_form_boundary_refuses_what_rfc_2046_forbids(boundary: str) -> None:
    with pytest.raises(MalformedPOSTRequest):
        form_boundary(f'multipart/form-data; boundary="{boundary}"')
