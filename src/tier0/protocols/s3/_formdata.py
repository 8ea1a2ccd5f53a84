"""An incremental ``multipart/form-data`` parser (RFC 7578, RFC 2046 section 5.1), for
browser-form POST uploads.

`FormParser.feed` takes the body as it arrives and returns events: a `Part`
when a part's head has been read, the part's data as ``bytes`` pieces, and
`PART_END` when it ends. Nothing is held but the bytes that might still turn
out to be a boundary (fewer than the delimiter's length) and one part head
(at most ``part_head_bytes_max``), so a file part of any size streams
through; the caller decides what to keep. `finish` says whether the body
ended where a form may end.

The body is read as if it began with CRLF, so that every delimiter is
``CRLF--boundary`` and the first one needs no special case. A preamble
before the first delimiter and an epilogue after the last are skipped, as
RFC 2046 says.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar, Final
from urllib.parse import unquote

from tier0.errors import InvalidArgument

__all__ = [
    "BOUNDARY_CHARS_MAX",
    "PART_END",
    "FormParser",
    "MalformedPOSTRequest",
    "Part",
    "PartEnd",
    "form_boundary",
]

#: RFC 2046 limits a boundary to 70 characters.
BOUNDARY_CHARS_MAX: Final = 70
_PART_HEAD_BYTES_MAX: Final = 8 * 1024
_PREAMBLE_BYTES_MAX: Final = 1024
#: A delimiter line may end in blanks (RFC 2046's transport padding) before its CRLF.
_DELIMITER_LINE_BYTES_MAX: Final = 256
_BOUNDARY: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_MALFORMED: Final = "The body of your POST request is not well-formed multipart/form-data."


class MalformedPOSTRequest(InvalidArgument):
    """The body is not well-formed ``multipart/form-data`` (or a part head is over its limit)."""

    s3_code: ClassVar[str] = "MalformedPOSTRequest"


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """A part's head: its form field ``name``, the ``filename`` of a file part,
    its Content-Type, and how many bytes the head took (for the caller's budget)."""

    name: str
    filename: str | None
    content_type: str | None
    head_bytes: int


class PartEnd:
    """The current part ended (its last data piece came before)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PART_END"


PART_END: Final = PartEnd()

Event = Part | bytes | PartEnd


def form_boundary(content_type: str) -> str | None:
    """The boundary of a ``multipart/form-data`` Content-Type, or None if it names
    none; `MalformedPOSTRequest` for a boundary RFC 2046 does not allow.

    >>> form_boundary('multipart/form-data; boundary="----a b"')
    '----a b'
    """
    for name, value in _parameters(content_type.partition(";")[2]):
        if name == "boundary":
            if not _BOUNDARY.fullmatch(value):
                raise MalformedPOSTRequest(_MALFORMED)
            return value
    return None


class FormParser:
    """Parses one ``multipart/form-data`` body with ``boundary``; see the module docstring.

    >>> parser = FormParser("xyz")
    >>> parser.feed(b'--xyz\\r\\nContent-Disposition: form-data; name="key"\\r\\n\\r\\na.txt\\r\\n--xyz--')
    [Part(name='key', filename=None, content_type=None, head_bytes=41), b'a.txt', PART_END]
    >>> parser.finish()
    """

    _PREAMBLE, _DELIMITER, _HEAD, _DATA, _EPILOGUE = range(5)

    def __init__(self, boundary: str, *, part_head_bytes_max: int = _PART_HEAD_BYTES_MAX) -> None:
        assert 0 < len(boundary) <= BOUNDARY_CHARS_MAX, boundary
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._part_head_bytes_max = part_head_bytes_max
        self._buffer = bytearray(b"\r\n")  # see the module docstring
        self._state = self._PREAMBLE
        self._skipped = 0  # preamble bytes dropped so far

    def feed(self, data: bytes) -> list[Event]:
        """The events the bytes ``data`` complete; `MalformedPOSTRequest` on a broken body."""
        if self._state == self._EPILOGUE:
            return []
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> None:
        """Raise `MalformedPOSTRequest` unless the body ended after its closing delimiter."""
        if self._state != self._EPILOGUE:
            raise MalformedPOSTRequest(_MALFORMED)

    # -- states -----------------------------------------------------------------------------

    def _step(self, events: list[Event]) -> bool:
        """Advance by one state change if the buffer allows; False when it needs more bytes."""
        buffer = self._buffer
        if self._state == self._DATA:
            at = buffer.find(self._delimiter)
            if at < 0:
                # Everything but a possible start of the delimiter is data.
                keep = len(self._delimiter) - 1
                if len(buffer) > keep:
                    events.append(bytes(buffer[: len(buffer) - keep]))
                    del buffer[: len(buffer) - keep]
                return False
            if at:
                events.append(bytes(buffer[:at]))
            events.append(PART_END)
            del buffer[: at + len(self._delimiter)]
            self._state = self._DELIMITER
            return True
        if self._state == self._PREAMBLE:
            at = buffer.find(self._delimiter)
            if at < 0:
                drop = max(0, len(buffer) - len(self._delimiter) + 1)
                self._skip(drop)
                return False
            self._skip(at)
            del buffer[: len(self._delimiter)]
            self._state = self._DELIMITER
            return True
        if self._state == self._DELIMITER:
            return self._delimiter_line()
        if self._state == self._HEAD:
            return self._head(events)
        buffer.clear()  # the epilogue
        return False

    def _skip(self, count: int) -> None:
        self._skipped += count
        if self._skipped > _PREAMBLE_BYTES_MAX:
            raise MalformedPOSTRequest(_MALFORMED)
        del self._buffer[:count]

    def _delimiter_line(self) -> bool:
        """After ``--boundary``: ``--`` ends the form, blanks and CRLF start a part."""
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        if buffer[:2] == b"--":
            self._state = self._EPILOGUE
            buffer.clear()
            return False
        end = buffer.find(b"\r\n")
        if end < 0:
            # Only transport padding (and the CR of the CRLF) may come before the CRLF.
            if len(buffer) > _DELIMITER_LINE_BYTES_MAX or buffer.strip(b" \t\r"):
                raise MalformedPOSTRequest(_MALFORMED)
            return False
        if buffer[:end].strip(b" \t"):
            raise MalformedPOSTRequest(_MALFORMED)
        del buffer[: end + 2]
        self._state = self._HEAD
        return True

    def _head(self, events: list[Event]) -> bool:
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            end, size = 0, 2  # a part without header fields
        else:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._part_head_bytes_max:
                    raise MalformedPOSTRequest(
                        f"A part's head is over {self._part_head_bytes_max} bytes."
                    )
                return False
            size = end + 4
        if size > self._part_head_bytes_max:
            raise MalformedPOSTRequest(f"A part's head is over {self._part_head_bytes_max} bytes.")
        events.append(_part(bytes(buffer[:end]), size))
        del buffer[:size]
        self._state = self._DATA
        return True


def _part(head: bytes, size: int) -> Part:
    """The `Part` a head's header fields describe (Content-Disposition: form-data; name=...)."""
    disposition: str | None = None
    content_type: str | None = None
    # Browsers send non-ASCII names and file names as raw UTF-8 (RFC 7578 section 5.1.3).
    text = head.decode("utf-8", errors="replace")
    for line in text.split("\r\n") if text else ():
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MalformedPOSTRequest(_MALFORMED)
        field = name.strip().lower()
        if field == "content-disposition":
            disposition = value.strip()
        elif field == "content-type":
            content_type = value.strip()
    if disposition is None:
        raise MalformedPOSTRequest(_MALFORMED)
    kind, _, rest = disposition.partition(";")
    if kind.strip().lower() != "form-data":
        raise MalformedPOSTRequest(_MALFORMED)
    parameters = dict(_parameters(rest))
    field_name = parameters.get("name")
    if field_name is None:
        raise MalformedPOSTRequest(_MALFORMED)
    filename = parameters.get("filename")
    extended = parameters.get("filename*")
    if extended is not None:
        # RFC 5987: charset'language'percent-encoded; only UTF-8 is worth the trouble.
        charset, _, encoded = extended.partition("'")
        encoded = encoded.partition("'")[2]
        if charset.strip().lower() == "utf-8":
            filename = unquote(encoded, errors="replace")
    return Part(field_name, filename, content_type, size)


def _parameters(text: str) -> list[tuple[str, str]]:
    """``; name=value; name="quoted \\" value"`` as (lower-case name, value) pairs."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip().lower()
        if i >= n or text[i] == ";":
            if name:
                pairs.append((name, ""))
            continue
        i += 1  # '='
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            value: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            i += 1  # the closing quote
            pairs.append((name, "".join(value)))
        else:
            start = i
            while i < n and text[i] != ";":
                i += 1
            pairs.append((name, text[start:i].strip()))
    return pairs
