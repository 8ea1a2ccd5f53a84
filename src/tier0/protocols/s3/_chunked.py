"""Request bodies: as sent (`PlainBody`) or ``aws-chunked`` (`ChunkedDecoder`).

Both are incremental decoders for an async server: ``feed(data)`` takes the
bytes as they arrive and returns the payload bytes decoded so far; ``finish()``
says the body is complete and intact, and returns its trailers. Nothing may be
committed before ``finish()`` returns: until then the body may still turn out
truncated, too long, or not the one that was signed.

An ``aws-chunked`` body is a sequence of chunks (S3 API reference, "Signature
Calculations for the Authorization Header: Transferring Payload in Multiple
Chunks" and "...Including Trailing Headers")::

    <hex size>[;chunk-signature=<64 hex>]\\r\\n<data>\\r\\n      repeated
    0[;chunk-signature=<64 hex>]\\r\\n                          last chunk
    <name>:<value>\\r\\n ... [x-amz-trailer-signature:<64 hex>\\r\\n]
    \\r\\n

Each chunk signature covers the SHA-256 of its data and the signature before
it, starting from the request's own (the seed), so chunks can be neither
altered, dropped nor reordered. A signed chunk's bytes are handed out only
once its signature has been verified, so memory is bounded by the largest
chunk (``chunk_bytes_max``); unsigned chunks stream straight through.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final, Protocol

from tier0.errors import InvalidArgument
from tier0.protocols.s3 import _sigv4
from tier0.protocols.s3._auth import (
    AuthResult,
    PayloadMode,
    S3AuthError,
    SignatureDoesNotMatch,
    check_payload_sha256,
)

#: The largest chunk accepted, in bytes. SDKs send 64 KiB to 1 MiB; MinIO caps at 16 MiB too.
CHUNK_BYTES_MAX: Final = 16 * 1024 * 1024
#: The longest chunk-size or trailer line, in bytes, without its CRLF.
LINE_BYTES_MAX: Final = 1024
#: The most trailer bytes after the last chunk (a checksum line is under 100).
TRAILER_BYTES_MAX: Final = 16 * 1024

_SIGNED_SIZE = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})")
_UNSIGNED_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})")
_TRAILER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"


class IncompleteBody(InvalidArgument, S3AuthError):
    """The body ended before its last chunk, or short of its declared length."""

    s3_code = "IncompleteBody"


class InvalidChunkSizeError(InvalidArgument, S3AuthError):
    """A chunk is larger than ``chunk_bytes_max``."""

    s3_code = "InvalidChunkSizeError"


class MalformedChunkedBody(InvalidArgument, S3AuthError):
    """The body breaks the ``aws-chunked`` framing (a bad size line, a missing CRLF,
    bytes after the end, more data than ``x-amz-decoded-content-length``)."""

    s3_code = "InvalidRequest"


class MalformedTrailerError(InvalidArgument, S3AuthError):
    """The trailers are malformed, unannounced, repeated, missing or too large."""

    s3_code = "MalformedTrailerError"


class ChunkSignatureDoesNotMatch(SignatureDoesNotMatch):
    """Chunk number ``chunk_index`` (from 0; the last, empty chunk counts) is not
    the one that was signed."""

    def __init__(self, message: str, *, chunk_index: int, **details: str) -> None:
        super().__init__(message, **details)
        self.chunk_index = chunk_index


class BodyDecoder(Protocol):
    """What `open_body` returns: ``feed`` bytes in, payload bytes out, then ``finish``."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def finish(self) -> dict[str, str]: ...


def open_body(
    result: AuthResult,
    *,
    chunk_bytes_max: int = CHUNK_BYTES_MAX,
    line_bytes_max: int = LINE_BYTES_MAX,
    trailer_bytes_max: int = TRAILER_BYTES_MAX,
) -> PlainBody | ChunkedDecoder:
    """The decoder for the body of an authenticated request.

    >>> decoder = open_body(auth.authenticate(request))   # doctest: +SKIP
    >>> for data in body_pieces:                          # doctest: +SKIP
    ...     for payload in decoder.feed(data):
    ...         stage(payload)
    >>> trailers = decoder.finish()                       # doctest: +SKIP
    """
    if not result.payload.chunked:
        return PlainBody(expected=result)
    return ChunkedDecoder(
        signing=result.chunk_signing,
        trailers=result.payload.trailers,
        trailer_names=result.trailer_names,
        decoded_length=result.decoded_length,
        chunk_bytes_max=chunk_bytes_max,
        line_bytes_max=line_bytes_max,
        trailer_bytes_max=trailer_bytes_max,
    )


class PlainBody:
    """A body sent as it is: bytes pass through, ``finish`` checks the signed SHA-256.

    ``expected`` is the `AuthResult`; only a `PayloadMode.SHA256` result has a
    hash to check.
    """

    def __init__(self, *, expected: AuthResult) -> None:
        assert not expected.payload.chunked, expected.payload
        self._expected = expected
        self._hash = hashlib.sha256() if expected.payload is PayloadMode.SHA256 else None

    def feed(self, data: bytes) -> list[bytes]:
        if self._hash is not None:
            self._hash.update(data)
        return [data] if data else []

    def finish(self) -> dict[str, str]:
        """Raises `XAmzContentSHA256Mismatch` when the body is not the signed one."""
        if self._hash is not None:
            check_payload_sha256(self._expected, self._hash.hexdigest())
        return {}


class _State(enum.Enum):
    SIZE = "size"  # reading a chunk-size line
    DATA = "data"  # reading a chunk's data
    DATA_END = "data-end"  # expecting the CRLF after a chunk's data
    TRAILER = "trailer"  # reading trailer lines after the last chunk
    DONE = "done"  # the final empty line has been read


@dataclass(frozen=True, slots=True)
class ChunkedStatistics:
    chunks: int  # chunks whose framing (and signature, if signed) checked out
    decoded_bytes: int  # payload bytes announced by the chunks read so far
    buffered_bytes_peak: int  # most bytes held at once (a partial line, an unverified chunk)


class ChunkedDecoder:
    """Incremental decoder of an ``aws-chunked`` body, verifying signatures as it goes.

    ``signing`` (from `AuthResult.chunk_signing`) makes every chunk signed and
    verified; None reads unsigned chunks. ``trailers`` says a trailer section
    follows the last chunk, holding exactly the ``trailer_names`` announced in
    ``x-amz-trailer`` (plus, when signed, ``x-amz-trailer-signature``).
    ``decoded_length`` is ``x-amz-decoded-content-length`` when sent.

    The first bad chunk raises `ChunkSignatureDoesNotMatch` with its index, and
    no byte of it (or of any later chunk) is returned. After any error the
    decoder raises that error again on every call.

    >>> decoder = ChunkedDecoder()
    >>> decoder.feed(b"5\\r\\nhello\\r\\n0\\r")
    [b'hello']
    >>> decoder.feed(b"\\n\\r\\n"), decoder.finish()
    ([], {})
    """

    def __init__(
        self,
        *,
        signing: _sigv4.ChunkSigning | None = None,
        trailers: bool = False,
        trailer_names: frozenset[str] = frozenset(),
        decoded_length: int | None = None,
        chunk_bytes_max: int = CHUNK_BYTES_MAX,
        line_bytes_max: int = LINE_BYTES_MAX,
        trailer_bytes_max: int = TRAILER_BYTES_MAX,
    ) -> None:
        self._signing = signing
        self._trailers_expected = trailers
        self._trailer_names = trailer_names
        self._decoded_length = decoded_length
        self._chunk_bytes_max = chunk_bytes_max
        self._line_bytes_max = line_bytes_max
        self._trailer_bytes_max = trailer_bytes_max

        self._state = _State.SIZE
        self._pending = b""  # an unfinished line or CRLF: at most line_bytes_max + 1 bytes
        self._remaining = 0  # data bytes of the current chunk still to come
        self._parts: list[bytes] = []  # the current signed chunk, held until verified
        self._held = 0  # bytes in _parts
        self._hash = hashlib.sha256()
        self._claimed = ""  # the current chunk's signature, as sent
        self._previous = signing.seed if signing is not None else ""
        self._chunks = 0
        self._decoded = 0
        self._received: dict[str, str] = {}
        self._trailer_signature: str | None = None
        self._trailer_bytes = 0
        self._separator_skipped = False
        self._buffered_peak = 0
        self._error: S3AuthError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Decode the next bytes of the body; returns the payload bytes now complete
        (verified, when signed). Raises an `S3AuthError` at the first fault; the
        payload this call had decoded before it is dropped with the request."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except S3AuthError as error:
            self._error = error
            raise

    def finish(self) -> dict[str, str]:
        """Declare the end of the body; returns the trailers (lower-case names,
        without the trailer signature). Raises `IncompleteBody` when the body
        stopped early or fell short of ``decoded_length``."""
        if self._error is not None:
            raise self._error
        if self._state is not _State.DONE:
            self._error = IncompleteBody(
                "The request body terminated unexpectedly: the last chunk or the"
                " trailers never came."
            )
            raise self._error
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            self._error = IncompleteBody(
                f"The body decoded to {self._decoded} bytes, but"
                f" x-amz-decoded-content-length is {self._decoded_length}."
            )
            raise self._error
        return dict(self._received)

    def statistics(self) -> ChunkedStatistics:
        return ChunkedStatistics(self._chunks, self._decoded, self._buffered_peak)

    # --- the state machine ------------------------------------------------------

    def _feed(self, data: bytes) -> list[bytes]:
        # Only a partial line or CRLF is ever carried over, so this join is small
        # or absent; chunk data never waits in _pending.
        buffer = self._pending + data if self._pending else data
        position = 0
        out: list[bytes] = []
        while True:
            state = self._state
            if state is _State.DATA:
                take = min(self._remaining, len(buffer) - position)
                if take == 0:
                    break
                self._take(buffer[position : position + take], out)
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _State.DATA_END
            elif state is _State.DATA_END:
                if len(buffer) - position < 2:
                    break
                if buffer[position : position + 2] != b"\r\n":
                    raise MalformedChunkedBody(
                        f"Chunk {self._chunks}'s data is not followed by CRLF."
                    )
                position += 2
                self._end_chunk(out)
                self._state = _State.SIZE
            elif state is _State.DONE:
                if position < len(buffer):
                    raise MalformedChunkedBody(
                        "The body goes on after its last chunk and trailers."
                    )
                break
            else:
                end = self._find_line_end(buffer, position)
                if end < 0:
                    break
                line = buffer[position:end]
                position = end + 2
                if state is _State.SIZE:
                    self._size_line(line, out)
                else:
                    self._trailer_line(line)
        self._pending = buffer[position:]
        self._buffered_peak = max(self._buffered_peak, len(self._pending) + self._held)
        return out

    def _find_line_end(self, buffer: bytes, position: int) -> int:
        """Where the CRLF ending the line at ``position`` starts, or -1 if it is yet to come."""
        limit = position + self._line_bytes_max + 2
        end = buffer.find(b"\r\n", position, limit)
        if end < 0 and len(buffer) >= limit:
            if self._state is _State.TRAILER:
                raise MalformedTrailerError(
                    f"A trailer line is longer than {self._line_bytes_max} bytes."
                )
            raise MalformedChunkedBody(
                f"A chunk-size line is longer than {self._line_bytes_max} bytes."
            )
        return end

    def _size_line(self, line: bytes, out: list[bytes]) -> None:
        match = (_SIGNED_SIZE if self._signing is not None else _UNSIGNED_SIZE).fullmatch(line)
        if match is None:
            expected = "<hex size>;chunk-signature=<64 hex>" if self._signing else "<hex size>"
            raise MalformedChunkedBody(f"Chunk {self._chunks}'s size line is not {expected}.")
        size = int(match[1], 16)
        if size > self._chunk_bytes_max:
            raise InvalidChunkSizeError(
                f"Chunk {self._chunks} has {size} bytes; at most {self._chunk_bytes_max} are accepted."
            )
        if self._decoded_length is not None and self._decoded + size > self._decoded_length:
            raise MalformedChunkedBody(
                f"The chunks hold more than x-amz-decoded-content-length ({self._decoded_length}) bytes."
            )
        self._decoded += size
        if self._signing is not None:
            self._claimed = match[2].decode()
        if size == 0:
            self._end_chunk(out)  # the last chunk: signed too, and nothing follows in-line
            self._state = _State.TRAILER
        else:
            self._remaining = size
            self._state = _State.DATA

    def _take(self, data: bytes, out: list[bytes]) -> None:
        if self._signing is None:
            out.append(data)
            return
        self._hash.update(data)
        self._parts.append(data)
        self._held += len(data)
        self._buffered_peak = max(self._buffered_peak, self._held + len(self._pending))

    def _end_chunk(self, out: list[bytes]) -> None:
        if self._signing is not None:
            expected = self._signing.chunk_signature(self._previous, self._hash.hexdigest())
            if not hmac.compare_digest(expected.encode(), self._claimed.encode()):
                raise ChunkSignatureDoesNotMatch(
                    f"The signature of chunk {self._chunks} does not match its data.",
                    chunk_index=self._chunks,
                    SignatureProvided=self._claimed,
                )
            self._previous = expected
            self._hash = hashlib.sha256()
            if self._parts:
                out.append(b"".join(self._parts))
            self._parts = []
            self._held = 0
        self._chunks += 1

    def _trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self._trailer_bytes_max:
            raise MalformedTrailerError(f"The trailers exceed {self._trailer_bytes_max} bytes.")
        if not line:
            if (
                self._trailer_names
                and not self._received
                and self._trailer_signature is None
                and not self._separator_skipped
            ):
                # The AWS guide's example sends an empty line between the last
                # chunk and the trailers; RFC 9112 (and botocore) do not.
                self._separator_skipped = True
                return
            self._end_trailers()
            self._state = _State.DONE
            return
        if not self._trailers_expected:
            raise MalformedTrailerError("This body was announced without trailers.")
        if self._trailer_signature is not None:
            raise MalformedTrailerError("A trailer follows x-amz-trailer-signature; nothing may.")
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedTrailerError("A trailer line is not ASCII.") from None
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not _TRAILER_NAME.fullmatch(name):
            raise MalformedTrailerError(f"The trailer line {text!r} is not name:value.")
        if name == _TRAILER_SIGNATURE and self._signing is not None:
            self._trailer_signature = value.strip()
            return
        if name not in self._trailer_names:
            raise MalformedTrailerError(f"The trailer {name!r} was not announced in x-amz-trailer.")
        if name in self._received:
            raise MalformedTrailerError(f"The trailer {name!r} is sent twice.")
        self._received[name] = value.strip()

    def _end_trailers(self) -> None:
        missing = sorted(self._trailer_names - self._received.keys())
        if missing:
            raise MalformedTrailerError(f"The announced trailers {', '.join(missing)} never came.")
        if self._signing is None or not self._trailers_expected:
            return
        if self._trailer_signature is None:
            raise MalformedTrailerError("The trailers come without x-amz-trailer-signature.")
        digest = hashlib.sha256(_sigv4.canonical_trailer(self._received)).hexdigest()
        expected = self._signing.trailer_signature(self._previous, digest)
        if not hmac.compare_digest(
            expected.encode(), self._trailer_signature.encode("utf-8", "surrogatepass")
        ):
            raise SignatureDoesNotMatch(
                "The trailer signature does not match the trailers.",
                SignatureProvided=self._trailer_signature,
            )
