"""The vocabulary of S3 authentication: requests, results and errors.

A `SignedRequest` is what the HTTP server received; an `AuthResult` says who
sent it and how its body must be verified (`PayloadMode`). Every failure is an
`S3AuthError` that carries the S3 error code (``s3_code``) and the extra
elements S3 puts in its XML error body (``details``); each also derives from
the tier0 error whose meaning it shares, so a caller's ``except AccessDenied``
or ``except InvalidArgument`` keeps working.

`tier0.protocols.s3._authenticator` produces the results; `_chunked` decodes
the bodies they describe.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import unquote

from tier0.errors import AccessDenied, InvalidArgument, InvalidCredentials, Tier0Error
from tier0.identity import Principal
from tier0.protocols.s3 import _sigv4

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DECIMAL = re.compile(r"\d{1,19}")
#: A request target as HTTP allows it: printable ASCII, no space.
_PRINTABLE_ASCII = re.compile(r"[!-~]*")

# --- errors -------------------------------------------------------------------


class S3AuthError(Tier0Error):
    """Root of authentication failures; each concrete class also derives from the
    tier0 error whose meaning it shares (`InvalidCredentials`, `AccessDenied`,
    `InvalidArgument`).

    ``s3_code`` is the ``<Code>`` of S3's error body; ``details`` holds the extra
    elements S3 adds to it (``Region``, ``ServerTime``, ``StringToSign``, ...).
    """

    s3_code: ClassVar[str]

    def __init__(self, message: str, **details: str) -> None:
        super().__init__(message)
        self.details: dict[str, str] = details


class SignatureDoesNotMatch(InvalidCredentials, S3AuthError):
    """The signature is not the one the secret produces for this request."""

    s3_code = "SignatureDoesNotMatch"


class InvalidAccessKeyId(InvalidCredentials, S3AuthError):
    """No credential has this access key."""

    s3_code = "InvalidAccessKeyId"


class RequestTimeTooSkewed(AccessDenied, S3AuthError):
    """The request's date is more than 15 minutes from the server's clock."""

    s3_code = "RequestTimeTooSkewed"


class RequestExpired(AccessDenied, S3AuthError):
    """A presigned URL used after its expiry ("Request has expired")."""

    s3_code = "AccessDenied"


class RequestNotYetValid(AccessDenied, S3AuthError):
    """A presigned URL dated further in the future than the clock skew allows."""

    s3_code = "AccessDenied"


class HeadersNotSigned(AccessDenied, S3AuthError):
    """The request carries ``x-amz-*`` headers that its signature does not cover."""

    s3_code = "AccessDenied"


class MissingDate(AccessDenied, S3AuthError):
    """Neither a valid ``x-amz-date`` nor a valid ``Date`` header."""

    s3_code = "AccessDenied"


class AuthorizationHeaderMalformed(InvalidArgument, S3AuthError):
    """The Authorization header does not parse, or its scope is wrong."""

    s3_code = "AuthorizationHeaderMalformed"


class AuthorizationQueryParametersError(InvalidArgument, S3AuthError):
    """A presigned URL's parameters are missing, repeated or out of range."""

    s3_code = "AuthorizationQueryParametersError"


class MissingSecurityHeader(InvalidArgument, S3AuthError):
    """A SigV4 request without ``x-amz-content-sha256``."""

    s3_code = "MissingSecurityHeader"


class XAmzContentSHA256Mismatch(InvalidArgument, S3AuthError):
    """The body does not hash to the ``x-amz-content-sha256`` it was signed with."""

    s3_code = "XAmzContentSHA256Mismatch"


class InvalidAuthArgument(InvalidArgument, S3AuthError):
    """An unsupported scheme, two schemes at once, or a bad payload header."""

    s3_code = "InvalidArgument"


class InvalidURI(InvalidArgument, S3AuthError):
    """The request target is not an origin-form URI of printable ASCII and UTF-8."""

    s3_code = "InvalidURI"


# --- requests and results -----------------------------------------------------


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class SignedRequest:
    """A request as the HTTP server received it, before anything is decoded.

    ``path`` is the raw, still percent-encoded path (``/bucket/a%20b``) and
    ``query`` the raw query without ``?``; the signature covers them as sent.
    ``headers`` has lower-case names, with repeated headers joined by ``,``.
    ``host_bucket`` names the bucket when the Host header carries it
    (virtual-hosted addressing); only SigV2 needs it.
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    host_bucket: str | None = None
    #: `query_params`, once decoded (the gateway and the authenticator both ask).
    _params: tuple[tuple[str, str], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        assert all(name == name.lower() for name in self.headers), "header names must be lower-case"

    @classmethod
    def from_target(
        cls,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        *,
        host_bucket: str | None = None,
    ) -> SignedRequest:
        """Split an origin-form request target (``/path?query``) and fold the headers.

        Raises `InvalidURI` when the target does not start with ``/`` or holds
        anything but printable ASCII (HTTP allows nothing else there).

        >>> SignedRequest.from_target("GET", "/b/k?uploads", [("Host", "x"), ("X-A", "1"), ("x-a", "2")])
        SignedRequest(method='GET', path='/b/k', query='uploads', headers={'host': 'x', 'x-a': '1,2'}, host_bucket=None)
        """
        if not target.startswith("/") or not _PRINTABLE_ASCII.fullmatch(target):
            raise InvalidURI("Couldn't parse the specified URI.")
        path, _, query = target.partition("?")
        folded: dict[str, str] = {}
        for name, value in headers:
            name = name.lower()
            folded[name] = f"{folded[name]},{value}" if name in folded else value
        return cls(method, path, query, folded, host_bucket)

    def query_params(self) -> tuple[tuple[str, str], ...]:
        """The query's ``(name, value)`` pairs, decoded as UTF-8, in order.

        ``+`` stays a plus (S3's clients send spaces as ``%20``), a name sent
        without ``=`` has the value ``""``; raises `InvalidURI` on bad UTF-8.
        """
        if self._params is None:
            object.__setattr__(self, "_params", self._decode_query())
        assert self._params is not None
        return self._params

    def _decode_query(self) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = []
        try:
            for piece in self.query.split("&"):
                if not piece:
                    continue
                name, _, value = piece.partition("=")
                if "%" in piece:
                    name, value = unquote(name, errors="strict"), unquote(value, errors="strict")
                params.append((name, value))
        except UnicodeDecodeError:
            raise InvalidURI("The query string is not valid UTF-8.") from None
        return tuple(params)


class AuthScheme(enum.Enum):
    """How the request proved who sent it."""

    ANONYMOUS = "anonymous"
    SIGV4_HEADER = "sigv4-header"
    SIGV4_QUERY = "sigv4-query"
    SIGV2_HEADER = "sigv2-header"
    SIGV2_QUERY = "sigv2-query"


class PayloadMode(enum.Enum):
    """How the body must be read and verified (from ``x-amz-content-sha256``)."""

    #: The body as sent; nothing to verify (also SigV2 and presigned URLs).
    UNSIGNED = "UNSIGNED-PAYLOAD"
    #: The body as sent; it must hash to `AuthResult.payload_sha256`.
    SHA256 = "sha256"
    #: ``aws-chunked``; every chunk signed, chained from the request signature.
    STREAMING_SIGNED = _sigv4.STREAMING_SIGNED
    #: ``aws-chunked``; signed chunks, then trailers with their own signature.
    STREAMING_SIGNED_TRAILER = _sigv4.STREAMING_SIGNED_TRAILER
    #: ``aws-chunked``; unsigned chunks, then trailers (checksums) unsigned.
    STREAMING_UNSIGNED_TRAILER = _sigv4.STREAMING_UNSIGNED_TRAILER

    @property
    def chunked(self) -> bool:
        return self.value.startswith("STREAMING-")

    @property
    def trailers(self) -> bool:
        return self.value.endswith("-TRAILER")


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class AuthResult:
    """Who sent the request and how its body is to be verified.

    ``principal`` and ``access_key`` are None for an anonymous request (the
    caller decides whether a policy or an ACL lets it through).
    ``payload_sha256`` is the lower-case hex the body must hash to when
    ``payload`` is `PayloadMode.SHA256`. For ``aws-chunked`` bodies,
    ``decoded_length`` is ``x-amz-decoded-content-length`` and ``trailer_names``
    the names ``x-amz-trailer`` announced; ``chunk_signing`` starts the chain of
    chunk signatures. Pass the whole result to `open_body`.
    """

    principal: Principal | None
    access_key: str | None
    scheme: AuthScheme
    payload: PayloadMode
    payload_sha256: str | None = None
    decoded_length: int | None = None
    trailer_names: frozenset[str] = frozenset()
    chunk_signing: _sigv4.ChunkSigning | None = field(default=None, repr=False)


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class PayloadHeaders:
    """What ``x-amz-content-sha256`` and its companion headers say about the body."""

    mode: PayloadMode
    sha256: str | None = None
    decoded_length: int | None = None
    trailer_names: frozenset[str] = frozenset()

    @classmethod
    def read(cls, request: SignedRequest, declared: str | None, *, sigv4: bool) -> PayloadHeaders:
        """The payload described by ``declared`` (the ``x-amz-content-sha256`` that
        counts for this scheme), ``x-amz-decoded-content-length`` and ``x-amz-trailer``.

        Read before any signature is computed, so that a bad value costs no HMAC.
        SigV2 and anonymous requests (``sigv4=False``) sign no payload, but a
        hash they declare is still checked, and their ``aws-chunked`` bodies can
        only be unsigned. Raises `InvalidAuthArgument`.
        """
        if declared is None or declared == _sigv4.UNSIGNED_PAYLOAD:
            return cls(PayloadMode.UNSIGNED)
        if _HEX_SHA256.fullmatch(declared):
            return cls(PayloadMode.SHA256, sha256=declared.lower())
        try:
            mode = PayloadMode(declared)
        except ValueError:
            mode = None
        if (
            mode is None
            or mode is PayloadMode.SHA256
            or (not sigv4 and mode is not PayloadMode.STREAMING_UNSIGNED_TRAILER)
        ):
            raise InvalidAuthArgument(
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER,"
                " STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] with a SigV4 signature,"
                f" or a SHA-256 in hex; got {declared!r}"
            )
        decoded_length = request.headers.get("x-amz-decoded-content-length")
        if decoded_length is not None and not _DECIMAL.fullmatch(decoded_length):
            raise InvalidAuthArgument(
                f"x-amz-decoded-content-length must be a number of bytes, got {decoded_length!r}"
            )
        trailer_names: frozenset[str] = frozenset()
        if mode.trailers:
            announced = request.headers.get("x-amz-trailer", "")
            trailer_names = frozenset(
                name.strip().lower() for name in announced.split(",") if name.strip()
            )
            if any(not name.startswith("x-amz-checksum-") for name in trailer_names):
                raise InvalidAuthArgument(
                    f"x-amz-trailer may name only x-amz-checksum-* trailers, got {announced!r}"
                )
        return cls(
            mode,
            decoded_length=None if decoded_length is None else int(decoded_length),
            trailer_names=trailer_names,
        )

    def result(
        self,
        principal: Principal | None,
        access_key: str | None,
        scheme: AuthScheme,
        signing: _sigv4.ChunkSigning | None = None,
    ) -> AuthResult:
        """The `AuthResult` for a request with this payload; ``signing`` is kept
        only where the body's chunks are signed."""
        signed_chunks = self.mode in (
            PayloadMode.STREAMING_SIGNED,
            PayloadMode.STREAMING_SIGNED_TRAILER,
        )
        return AuthResult(
            principal,
            access_key,
            scheme,
            self.mode,
            payload_sha256=self.sha256,
            decoded_length=self.decoded_length,
            trailer_names=self.trailer_names,
            chunk_signing=signing if signed_chunks else None,
        )


# --- shared checks --------------------------------------------------------------


def check_payload_sha256(result: AuthResult, payload_sha256: str) -> None:
    """Raise `XAmzContentSHA256Mismatch` unless the body's SHA-256 (hex) is the signed one."""
    if result.payload is PayloadMode.SHA256 and not equal_constant_time(
        result.payload_sha256 or "", payload_sha256.lower()
    ):
        raise XAmzContentSHA256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ClientComputedContentSHA256=result.payload_sha256 or "",
            S3ComputedContentSHA256=payload_sha256,
        )


def equal_constant_time(expected: str, provided: str) -> bool:
    """Constant-time equality; ``provided`` is attacker-chosen text of any kind."""
    return hmac.compare_digest(expected.encode(), provided.encode("utf-8", "surrogatepass"))
