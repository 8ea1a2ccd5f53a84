"""``aws-chunked`` bodies: the AWS published examples, every chunk tampered with,
framing faults, limits, and decoding that does not depend on how bytes arrive."""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Sequence

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.s3.signing import ReferenceChunkSigner, encode_chunked
from tests.protocols.s3.test_sigv4 import (
    EXAMPLE_PRINCIPAL,
    EXAMPLE_SECRET,
    example_authenticator,
    example_authorization,
)
from tier0.errors import InvalidArgument, InvalidCredentials
from tier0.protocols.s3 import (
    LINE_BYTES_MAX,
    AuthResult,
    ChunkedDecoder,
    ChunkSignatureDoesNotMatch,
    PayloadMode,
    S3AuthError,
    SignedRequest,
    open_body,
)

# --- the AWS examples ("Transferring Payload in Multiple Chunks", "Including
# Trailing Headers"): 66560 bytes of "a" in chunks of 64 KiB and 1 KiB ---------

EXAMPLE_DATA = b"a" * 66560
EXAMPLE_CHUNKS = [EXAMPLE_DATA[:65536], EXAMPLE_DATA[65536:]]
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
EXAMPLE_BODY = (
    f"10000;chunk-signature={CHUNK_SIGNATURES[0]}\r\n".encode()
    + EXAMPLE_CHUNKS[0]
    + f"\r\n400;chunk-signature={CHUNK_SIGNATURES[1]}\r\n".encode()
    + EXAMPLE_CHUNKS[1]
    + f"\r\n0;chunk-signature={CHUNK_SIGNATURES[2]}\r\n\r\n".encode()
)
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNK_SIGNATURES = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",  # the trailer's
]
TRAILERS = {"x-amz-checksum-crc32c": "sOO8/Q=="}


def _example_request(*, trailer: bool) -> SignedRequest:
    headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
    ]
    if trailer:
        headers += [
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            (
                "Authorization",
                example_authorization(
                    "content-encoding;host;x-amz-content-sha256;x-amz-date;"
                    "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                    TRAILER_SEED,
                ),
            ),
        ]
    else:
        headers += [
            ("Content-Length", "66824"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            (
                "Authorization",
                example_authorization(
                    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                    "x-amz-decoded-content-length;x-amz-storage-class",
                    SEED,
                ),
            ),
        ]
    return SignedRequest.from_target("PUT", "/examplebucket/chunkObject.txt", headers)


def _example(*, trailer: bool = False) -> AuthResult:
    return example_authenticator().authenticate(_example_request(trailer=trailer))


def _reference(seed: str = SEED) -> ReferenceChunkSigner:
    return ReferenceChunkSigner(EXAMPLE_SECRET, "20130524T000000Z", seed)


def test_aws_example_seed_signature_authenticates() -> None:
    result = _example()
    assert result.principal == EXAMPLE_PRINCIPAL
    assert result.payload is PayloadMode.STREAMING_SIGNED
    assert result.decoded_length == 66560
    assert result.chunk_signing is not None
    assert result.chunk_signing.seed == SEED
    assert len(EXAMPLE_BODY) == 66824  # the example's Content-Length


def test_reference_encoder_reproduces_the_aws_example_byte_for_byte() -> None:
    body, signatures = encode_chunked(EXAMPLE_CHUNKS, signer=_reference())
    assert signatures == CHUNK_SIGNATURES
    assert body == EXAMPLE_BODY


def test_aws_example_decodes_chunk_by_chunk() -> None:
    decoder = open_body(_example())
    assert decoder.feed(EXAMPLE_BODY) == EXAMPLE_CHUNKS
    assert decoder.finish() == {}
    assert isinstance(decoder, ChunkedDecoder)
    assert decoder.statistics().chunks == 3


def test_aws_trailer_example_reproduces_and_decodes() -> None:
    result = _example(trailer=True)
    assert result.payload is PayloadMode.STREAMING_SIGNED_TRAILER
    assert result.trailer_names == {"x-amz-checksum-crc32c"}
    body, signatures = encode_chunked(
        EXAMPLE_CHUNKS, signer=_reference(TRAILER_SEED), trailers=TRAILERS
    )
    assert signatures == TRAILER_CHUNK_SIGNATURES
    decoder = open_body(result)
    assert b"".join(decoder.feed(body)) == EXAMPLE_DATA
    assert decoder.finish() == TRAILERS


def test_aws_trailer_example_as_the_guide_prints_it_with_an_empty_line_decodes() -> None:
    body, _ = encode_chunked(
        EXAMPLE_CHUNKS, signer=_reference(TRAILER_SEED), trailers=TRAILERS, separator=True
    )
    assert b"\r\n\r\nx-amz-checksum-crc32c:sOO8/Q==\r\n" in body
    decoder = open_body(_example(trailer=True))
    assert b"".join(decoder.feed(body)) == EXAMPLE_DATA
    assert decoder.finish() == TRAILERS


def test_result_repr_keeps_the_signing_key_out() -> None:
    result = _example()
    assert result.chunk_signing is not None
    assert result.chunk_signing.signing_key.hex() not in repr(result)
    assert repr(result.chunk_signing.signing_key) not in repr(result)


# --- tampering: every chunk, every signature -------------------------------------

CHUNKS = [bytes([65 + i]) * size for i, size in enumerate([9000, 8192, 1, 70000, 300])]


def _signed_decoder() -> ChunkedDecoder:
    signing = _example().chunk_signing
    assert signing is not None
    return ChunkedDecoder(signing=signing)


def _decode_until_error(
    decoder: ChunkedDecoder, body: bytes, *, framed: bool = True
) -> tuple[list[bytes], S3AuthError | None]:
    """Feed ``body`` one chunk at a time (whole, if not ``framed``): the payload
    handed out before the first error, and that error."""
    out: list[bytes] = []
    try:
        for piece in _framed_chunks(body) if framed else [body]:
            out += decoder.feed(piece)
        decoder.finish()
    except S3AuthError as error:
        return out, error
    return out, None


def test_signed_body_of_many_chunks_decodes() -> None:
    body, _ = encode_chunked(CHUNKS, signer=_reference())
    out, error = _decode_until_error(_signed_decoder(), body)
    assert error is None
    assert out == CHUNKS  # each verified chunk handed out whole


def _framed_chunks(body: bytes) -> list[bytes]:
    """A signed body cut into its chunks, each from its size line through its CRLF
    (the last one runs to the end of the body)."""
    pieces: list[bytes] = []
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";")[0], 16)
        if size == 0:
            return [*pieces, body[position:]]
        end = line_end + 2 + size + 2
        pieces.append(body[position:end])
        position = end


def _chunk_offsets(body: bytes) -> list[int]:
    """Where each chunk's data starts in a signed body."""
    offsets: list[int] = []
    position = 0
    for piece in _framed_chunks(body):
        offsets.append(position + piece.index(b"\r\n") + 2)
        position += len(piece)
    return offsets


@pytest.mark.parametrize("index", range(len(CHUNKS)))
@pytest.mark.parametrize("where", ["first", "last"])
def test_tampered_chunk_byte_fails_at_that_chunk(index: int, where: str) -> None:
    body, _ = encode_chunked(CHUNKS, signer=_reference())
    position = _chunk_offsets(body)[index] + (0 if where == "first" else len(CHUNKS[index]) - 1)
    tampered = body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1 :]
    out, error = _decode_until_error(_signed_decoder(), tampered)
    assert isinstance(error, ChunkSignatureDoesNotMatch)
    assert error.chunk_index == index
    assert error.s3_code == "SignatureDoesNotMatch"
    assert isinstance(error, InvalidCredentials)
    assert out == CHUNKS[:index]  # nothing of the bad chunk, nothing after it


@pytest.mark.parametrize("index", range(len(CHUNKS) + 1))  # the empty last chunk too
def test_tampered_chunk_signature_fails_at_that_chunk(index: int) -> None:
    body, signatures = encode_chunked(CHUNKS, signer=_reference())
    signature = signatures[index]
    forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    out, error = _decode_until_error(
        _signed_decoder(), body.replace(signature.encode(), forged.encode())
    )
    assert isinstance(error, ChunkSignatureDoesNotMatch)
    assert error.chunk_index == index
    assert out == CHUNKS[:index]


def test_reordered_chunks_fail_at_the_first_moved_one() -> None:
    body, _ = encode_chunked(CHUNKS, signer=_reference())
    pieces = _framed_chunks(body)
    reordered = b"".join([pieces[0], pieces[2], pieces[1], *pieces[3:]])
    assert reordered != body and len(reordered) == len(body)
    out, error = _decode_until_error(_signed_decoder(), reordered)
    assert isinstance(error, ChunkSignatureDoesNotMatch)
    assert error.chunk_index == 1
    assert out == CHUNKS[:1]


def test_dropped_chunk_fails_where_it_was() -> None:
    body, _ = encode_chunked(CHUNKS, signer=_reference())
    pieces = _framed_chunks(body)
    out, error = _decode_until_error(_signed_decoder(), b"".join([pieces[0], *pieces[2:]]))
    assert isinstance(error, ChunkSignatureDoesNotMatch)
    assert error.chunk_index == 1
    assert out == CHUNKS[:1]


def test_error_sticks_once_raised() -> None:
    body, signatures = encode_chunked(CHUNKS, signer=_reference())
    decoder = _signed_decoder()
    forged = body.replace(signatures[0].encode(), b"0" * 64)
    with pytest.raises(ChunkSignatureDoesNotMatch):
        decoder.feed(forged)
    with pytest.raises(ChunkSignatureDoesNotMatch):
        decoder.feed(b"")
    with pytest.raises(ChunkSignatureDoesNotMatch):
        decoder.finish()


# --- trailers -------------------------------------------------------------------


def _trailer_decoder() -> ChunkedDecoder:
    result = _example(trailer=True)
    return ChunkedDecoder(
        signing=result.chunk_signing, trailers=True, trailer_names=result.trailer_names
    )


def _trailer_body(**changes: str) -> bytes:
    body, _ = encode_chunked(CHUNKS[:2], signer=_reference(TRAILER_SEED), trailers=TRAILERS)
    for old, new in changes.items():
        assert old.encode() in body, old
        body = body.replace(old.encode(), new.encode())
    return body


def test_signed_trailer_decodes() -> None:
    out, error = _decode_until_error(_trailer_decoder(), _trailer_body())
    assert (out, error) == (CHUNKS[:2], None)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"sOO8/Q==": "sOO8/A=="}, "SignatureDoesNotMatch"),
        ({"x-amz-trailer-signature:": "x-amz-trailer-signature:0"}, "SignatureDoesNotMatch"),
        ({"x-amz-checksum-crc32c": "x-amz-checksum-sha256"}, "MalformedTrailerError"),
        (
            {"x-amz-trailer-signature:": "x-amz-checksum-crc32c:again\r\nx-amz-trailer-signature:"},
            "MalformedTrailerError",
        ),
        ({"x-amz-trailer-signature": "x-amz-trailer-signaturX"}, "MalformedTrailerError"),
        ({"x-amz-checksum-crc32c:sOO8/Q==\r\n": ""}, "MalformedTrailerError"),
        ({"\r\n\r\n": "\r\nx-amz-checksum-crc32c:late\r\n\r\n"}, "MalformedTrailerError"),
        (
            {"x-amz-checksum-crc32c:sOO8/Q==": "x-amz-checksum-crc32c sOO8/Q=="},
            "MalformedTrailerError",
        ),
    ],
    ids=[
        "value",
        "signature",
        "unannounced",
        "twice",
        "no-signature",
        "missing",
        "after-signature",
        "no-colon",
    ],
)
def test_bad_trailer_is_refused(change: dict[str, str], code: str) -> None:
    out, error = _decode_until_error(_trailer_decoder(), _trailer_body(**change))
    assert error is not None
    assert error.s3_code == code, error
    assert out == CHUNKS[:2]  # the chunks were sound; the trailers were not


def test_trailers_on_a_body_announced_without_them_are_refused() -> None:
    body, _ = encode_chunked(CHUNKS[:1], signer=_reference(), trailers=TRAILERS)
    _, error = _decode_until_error(_signed_decoder(), body)
    assert error is not None and error.s3_code == "MalformedTrailerError"


def test_botocore_unsigned_trailer_body_decodes_with_its_crc32() -> None:
    data = bytes(range(256)) * 700
    body = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=65536,
    ).read()
    decoder = ChunkedDecoder(
        trailers=True, trailer_names=frozenset({"x-amz-checksum-crc32"}), decoded_length=len(data)
    )
    out, error = _decode_until_error(decoder, body)
    assert error is None
    assert b"".join(out) == data
    expected = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert decoder.finish() == {"x-amz-checksum-crc32": expected}


# --- framing and limits ------------------------------------------------------------


def _unsigned(*chunks: bytes) -> bytes:
    return encode_chunked(list(chunks))[0]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_unsigned(b"hello")[:-2], "IncompleteBody"),  # no final CRLF
        (_unsigned(b"hello")[:6], "IncompleteBody"),  # stops inside a chunk
        (b"", "IncompleteBody"),
        (_unsigned(b"hello") + b"x", "InvalidRequest"),  # bytes after the end
        (b"5\r\nhelloXX0\r\n\r\n", "InvalidRequest"),  # no CRLF after the data
        (b"+5\r\nhello\r\n0\r\n\r\n", "InvalidRequest"),
        (b"5;chunk-signature=" + b"0" * 64 + b"\r\nhello\r\n0\r\n\r\n", "InvalidRequest"),
        (b"5 \r\nhello\r\n0\r\n\r\n", "InvalidRequest"),
        (b"10000000000000000\r\n", "InvalidRequest"),  # 17 hex digits
        (b"f" * (LINE_BYTES_MAX + 2), "InvalidRequest"),  # a size line without end
        (b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", "MalformedTrailerError"),  # none announced
    ],
    ids=[
        "no-final-crlf",
        "truncated",
        "empty",
        "trailing-bytes",
        "no-data-crlf",
        "sign",
        "extension",
        "space",
        "too-many-digits",
        "endless-line",
        "unannounced-trailer",
    ],
)
def test_malformed_unsigned_body_is_refused(body: bytes, code: str) -> None:
    _, error = _decode_until_error(ChunkedDecoder(), body, framed=False)
    assert error is not None
    assert error.s3_code == code, error
    assert isinstance(error, InvalidArgument)


def test_signed_decoder_refuses_an_unsigned_chunk() -> None:
    _, error = _decode_until_error(_signed_decoder(), _unsigned(b"hello"), framed=False)
    assert error is not None and error.s3_code == "InvalidRequest"


def test_chunk_larger_than_the_limit_is_refused_before_its_data() -> None:
    decoder = ChunkedDecoder(chunk_bytes_max=1024)
    assert decoder.feed(b"400\r\n" + b"x" * 1024 + b"\r\n") == [b"x" * 1024]
    with pytest.raises(S3AuthError) as caught:
        decoder.feed(b"401\r\n")
    assert caught.value.s3_code == "InvalidChunkSizeError"


def test_endless_trailer_line_is_refused() -> None:
    decoder = ChunkedDecoder(trailers=True, trailer_names=frozenset({"x-amz-checksum-crc32"}))
    with pytest.raises(S3AuthError) as caught:
        decoder.feed(b"0\r\nx-amz-checksum-crc32:" + b"A" * LINE_BYTES_MAX)
    assert caught.value.s3_code == "MalformedTrailerError"


@pytest.mark.parametrize(
    ("declared", "code"), [(9, "InvalidRequest"), (11, "IncompleteBody"), (10, None)]
)
def test_decoded_length_must_match(declared: int, code: str | None) -> None:
    _, error = _decode_until_error(
        ChunkedDecoder(decoded_length=declared), _unsigned(b"01234", b"56789")
    )
    assert (error.s3_code if error else None) == code


def _feed_in_pieces(decoder: ChunkedDecoder, body: bytes, piece_bytes: int) -> list[bytes]:
    out = [
        payload
        for start in range(0, len(body), piece_bytes)
        for payload in decoder.feed(body[start : start + piece_bytes])
    ]
    decoder.finish()
    return out


def test_memory_stays_bounded_by_the_largest_signed_chunk() -> None:
    chunks = [bytes([i]) * 262144 for i in range(8)]
    body, _ = encode_chunked(chunks, signer=_reference())
    decoder = _signed_decoder()
    # A signed chunk is held until its signature checks out, then handed out whole.
    assert _feed_in_pieces(decoder, body, 4096) == chunks
    assert 262144 <= decoder.statistics().buffered_bytes_peak <= 262144 + LINE_BYTES_MAX + 2


def test_unsigned_chunks_stream_through_without_buffering() -> None:
    data = bytes(range(256)) * 16384  # 4 MiB in 1 MiB chunks
    body = _unsigned(*[data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
    decoder = ChunkedDecoder()
    out = _feed_in_pieces(decoder, body, 65536)
    assert b"".join(out) == data
    assert len(out) > 4 * 15  # handed out as it arrived, not chunk by chunk
    assert decoder.statistics().buffered_bytes_peak <= 100  # a partial size line at most


# --- how the bytes arrive does not matter ----------------------------------------


def _split(body: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def _decode(decoder: ChunkedDecoder, pieces: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    out = [payload for piece in pieces for payload in decoder.feed(piece)]
    return b"".join(out), decoder.finish()


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_aws_example_decodes_the_same_however_it_is_split(cuts: list[int]) -> None:
    decoder = open_body(_example())
    assert isinstance(decoder, ChunkedDecoder)
    assert _decode(decoder, _split(EXAMPLE_BODY, cuts)) == (EXAMPLE_DATA, {})


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    mode=st.sampled_from(["signed", "signed-trailer", "unsigned-trailer"]),
)
def test_any_body_decodes_the_same_however_it_is_split(
    chunks: list[bytes], cuts: list[int], mode: str
) -> None:
    data = b"".join(chunks)
    checksum = {
        "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    }
    trailers = checksum if mode != "signed" else None
    seed = TRAILER_SEED if mode == "signed-trailer" else SEED
    signer = _reference(seed) if mode != "unsigned-trailer" else None
    body, _ = encode_chunked(chunks, signer=signer, trailers=trailers)
    signing = _example(trailer=mode == "signed-trailer").chunk_signing if signer else None
    decoder = ChunkedDecoder(
        signing=signing,
        trailers=trailers is not None,
        trailer_names=frozenset(trailers or ()),
        decoded_length=len(data),
    )
    assert _decode(decoder, _split(body, cuts)) == (data, trailers or {})


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0))
def test_any_truncated_body_is_refused(cut: int) -> None:
    body, _ = encode_chunked(CHUNKS[:3], signer=_reference())
    truncated = body[: cut % len(body)]
    with pytest.raises(S3AuthError):
        _decode(_signed_decoder(), [truncated])
