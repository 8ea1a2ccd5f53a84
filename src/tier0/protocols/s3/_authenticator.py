"""`Authenticator`: who sent an S3 request, by SigV4, SigV2 or nobody.

`Authenticator.authenticate` takes a `SignedRequest` (the method, raw path,
raw query and headers, exactly as the HTTP server received them) and returns
an `AuthResult`: the principal, or none for an anonymous request, and the
`PayloadMode` that says how the body is to be verified. It reads no body and
does no I/O besides ``secret_for``; `open_body` turns the result into a
decoder for the body.

Signatures are compared in constant time. The checks that need no secret
(format, scope, clock, which headers are signed) run before the secret is
looked up, so a malformed or stale request costs no HMAC.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from tier0.errors import InvalidCredentials
from tier0.identity import Principal
from tier0.protocols.s3 import _sigv2, _sigv4
from tier0.protocols.s3._auth import (
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    AuthResult,
    AuthScheme,
    HeadersNotSigned,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    MissingDate,
    MissingSecurityHeader,
    PayloadHeaders,
    PayloadMode,
    RequestExpired,
    RequestNotYetValid,
    RequestTimeTooSkewed,
    S3AuthError,
    SignatureDoesNotMatch,
    SignedRequest,
    check_payload_sha256,
    equal_constant_time,
)

#: The longest a presigned URL may live, in seconds (7 days): S3's limit for SigV4.
PRESIGN_S_MAX: Final = 7 * 24 * 3600
#: How far a signed request's clock may be from ours (S3: 15 minutes).
SKEW_S_MAX: Final = 15 * 60

_V4_QUERY_PARAMS: Final = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_V2_QUERY_PARAMS: Final = ("AWSAccessKeyId", "Signature")
_V4_POST_FIELDS: Final = ("x-amz-algorithm", "x-amz-credential", "x-amz-signature")
_V2_POST_FIELDS: Final = ("awsaccesskeyid", "signature")
_ISO_BASIC = re.compile(r"\d{8}T\d{6}Z")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_DECIMAL = re.compile(r"\d{1,19}")
_INTEGER = re.compile(r"-?\d{1,19}")
#: Parsed timestamps and SignedHeaders values remembered (each a few hundred bytes).
_PARSED_MAX: Final = 1024


class Authenticator:
    """Checks S3 request signatures against the secrets ``secret_for`` returns.

    ``secret_for(access_key)`` returns ``(principal, secret)`` or raises
    `InvalidCredentials` (`tier0.identity.Principals.secret_for` does both).
    ``region`` is the region signatures must be scoped to; None accepts any
    (the signature still covers the region the client chose). ``clock`` returns
    seconds since the epoch.

    Example::

        auth = Authenticator(principals.secret_for, region="us-east-1")
        result = auth.authenticate(SignedRequest.from_target("GET", target, headers))
    """

    def __init__(
        self,
        secret_for: Callable[[str], tuple[Principal, str]],
        *,
        clock: Callable[[], float] = time.time,
        region: str | None = "us-east-1",
        skew_s_max: float = SKEW_S_MAX,
        signing_keys_max: int = 1024,
    ) -> None:
        self._secret_for = secret_for
        self._clock = clock
        self._region = region
        self._skew_s_max = skew_s_max
        self._signing_keys = _sigv4.SigningKeyCache(entries_max=signing_keys_max)

    def authenticate(
        self, request: SignedRequest, *, payload_sha256: str | None = None
    ) -> AuthResult:
        """Authenticate one request.

        ``payload_sha256``, when the caller already knows the body's SHA-256 (a
        small body read in full), is checked against ``x-amz-content-sha256``
        here; otherwise `open_body` checks it while the body streams.

        Raises an `S3AuthError`: `InvalidAccessKeyId`, `SignatureDoesNotMatch`,
        `RequestTimeTooSkewed`, `RequestExpired`, `AuthorizationHeaderMalformed`,
        `AuthorizationQueryParametersError`, `XAmzContentSHA256Mismatch`, ...
        """
        params = request.query_params()
        names = {name for name, _ in params}
        authorization = request.headers.get("authorization")
        v4_query = any(name in names for name in _V4_QUERY_PARAMS)
        v2_query = any(name in names for name in _V2_QUERY_PARAMS)
        if (authorization is not None) + v4_query + v2_query > 1:
            raise InvalidAuthArgument(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter,"
                " Signature query string parameter or the Authorization header should be specified"
            )
        if authorization is not None:
            if authorization.startswith(_sigv4.ALGORITHM + " "):
                result = self._sigv4_header(request, authorization)
            elif authorization.startswith("AWS "):
                result = self._sigv2_header(request, authorization)
            else:
                raise InvalidAuthArgument("Unsupported Authorization Type")
        elif v4_query:
            result = self._sigv4_query(request, params)
        elif v2_query:
            result = self._sigv2_query(request, params)
        else:
            declared = request.headers.get("x-amz-content-sha256")
            payload = PayloadHeaders.read(request, declared, sigv4=False)
            result = payload.result(None, None, AuthScheme.ANONYMOUS)
        if payload_sha256 is not None and result.payload is PayloadMode.SHA256:
            check_payload_sha256(result, payload_sha256)
        return result

    def statistics(self) -> AuthenticatorStatistics:
        return AuthenticatorStatistics(signing_keys_cached=len(self._signing_keys))

    # --- SigV4 ----------------------------------------------------------------

    def _sigv4_header(self, request: SignedRequest, authorization: str) -> AuthResult:
        error = AuthorizationHeaderMalformed
        fields: dict[str, str] = {}
        for part in authorization[len(_sigv4.ALGORITHM) + 1 :].split(","):
            name, equals, value = part.strip().partition("=")
            if not equals or name in fields:
                raise error(
                    f"The authorization header is malformed; cannot parse {part.strip()!r}."
                )
            fields[name] = value.strip()
        if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
            raise error(
                "The authorization header is malformed; it needs exactly Credential,"
                " SignedHeaders and Signature."
            )
        timestamp, signed_at = self._sigv4_date(request)
        access_key, date, region = self._credential(fields["Credential"], timestamp, error)
        self._check_skew(signed_at, timestamp)
        signed_headers = _signed_headers(fields["SignedHeaders"], request, error)
        declared = request.headers.get("x-amz-content-sha256")
        if declared is None:
            raise MissingSecurityHeader(
                "Your request was missing a required header: x-amz-content-sha256.",
                MissingHeaderName="x-amz-content-sha256",
            )
        payload = PayloadHeaders.read(request, declared, sigv4=True)
        principal, signing = self._verify_sigv4(
            request,
            access_key=access_key,
            date=date,
            region=region,
            timestamp=timestamp,
            signed_headers=signed_headers,
            payload_hash=declared,
            signature=fields["Signature"],
            presigned=False,
        )
        return payload.result(principal, access_key, AuthScheme.SIGV4_HEADER, signing)

    def _sigv4_query(self, request: SignedRequest, params: Sequence[tuple[str, str]]) -> AuthResult:
        error = AuthorizationQueryParametersError
        values = _auth_params(
            params,
            (
                "X-Amz-Algorithm",
                "X-Amz-Credential",
                "X-Amz-Date",
                "X-Amz-Expires",
                "X-Amz-SignedHeaders",
                "X-Amz-Signature",
            ),
            error,
        )
        if values["X-Amz-Algorithm"] != _sigv4.ALGORITHM:
            raise error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
        timestamp = values["X-Amz-Date"]
        if not _ISO_BASIC.fullmatch(timestamp):
            raise error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        signed_at = _parse_iso_basic(timestamp, error)
        expires = values["X-Amz-Expires"]
        if not _INTEGER.fullmatch(expires):
            raise error("X-Amz-Expires should be a number")
        if int(expires) < 0:
            raise error("X-Amz-Expires must be non-negative")
        if int(expires) > PRESIGN_S_MAX:
            raise error(
                f"X-Amz-Expires must be less than a week (in seconds) that is {PRESIGN_S_MAX}"
            )
        access_key, date, region = self._credential(values["X-Amz-Credential"], timestamp, error)
        now = self._clock()
        # Valid from X-Amz-Date (give or take the allowed skew) for X-Amz-Expires
        # seconds: an expiry of 0 is a URL that is never valid.
        if now >= signed_at + int(expires):
            raise RequestExpired(
                "Request has expired",
                **{"X-Amz-Expires": expires},
                Expires=_iso(signed_at + int(expires)),
                ServerTime=_iso(now),
            )
        if signed_at - now > self._skew_s_max:
            raise RequestNotYetValid("Request is not valid yet", ServerTime=_iso(now))
        signed_headers = _signed_headers(values["X-Amz-SignedHeaders"], request, error)
        # A presigned URL cannot know its body; S3 signs UNSIGNED-PAYLOAD unless
        # the signer chose to sign x-amz-content-sha256 as a header.
        declared = (
            request.headers.get("x-amz-content-sha256")
            if "x-amz-content-sha256" in signed_headers
            else None
        )
        payload = PayloadHeaders.read(request, declared, sigv4=True)
        principal, signing = self._verify_sigv4(
            request,
            access_key=access_key,
            date=date,
            region=region,
            timestamp=timestamp,
            signed_headers=signed_headers,
            payload_hash=declared or _sigv4.UNSIGNED_PAYLOAD,
            signature=values["X-Amz-Signature"],
            presigned=True,
        )
        return payload.result(principal, access_key, AuthScheme.SIGV4_QUERY, signing)

    def _verify_sigv4(
        self,
        request: SignedRequest,
        *,
        access_key: str,
        date: str,
        region: str,
        timestamp: str,
        signed_headers: Sequence[str],
        payload_hash: str,
        signature: str,
        presigned: bool,
    ) -> tuple[Principal, _sigv4.ChunkSigning]:
        principal, secret = self._lookup(access_key)
        canonical = _sigv4.canonical_request(
            method=request.method,
            raw_path=request.path,
            raw_query=request.query,
            headers=request.headers,
            signed_headers=signed_headers,
            payload_hash=payload_hash,
            exclude_query="X-Amz-Signature" if presigned else None,
        )
        credential_scope = _sigv4.scope(date, region)
        text = _sigv4.string_to_sign(timestamp, credential_scope, canonical)
        key = self._signing_keys.get(secret, date, region)
        expected = _sigv4.sign(key, text)
        if not equal_constant_time(expected, signature):
            raise SignatureDoesNotMatch(
                "The request signature we calculated does not match the signature you provided."
                " Check your key and signing method.",
                AWSAccessKeyId=access_key,
                StringToSign=text,
                SignatureProvided=signature,
                CanonicalRequest=canonical,
            )
        return principal, _sigv4.ChunkSigning(key, timestamp, credential_scope, expected)

    def _sigv4_date(self, request: SignedRequest) -> tuple[str, float]:
        """The signing timestamp (``yyyymmddThhmmssZ``) and its epoch seconds."""
        amz_date = request.headers.get("x-amz-date")
        if amz_date is not None:
            if not _ISO_BASIC.fullmatch(amz_date):
                raise MissingDate("AWS authentication requires a valid Date or x-amz-date header")
            return amz_date, _parse_iso_basic(amz_date, MissingDate)
        # botocore signs with a Date header instead when the caller set one.
        signed_at = _parse_http_date(request.headers.get("date"))
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(signed_at)), signed_at

    def _credential(
        self, credential: str, timestamp: str, error: type[S3AuthError]
    ) -> tuple[str, str, str]:
        """``(access_key, date, region)`` from ``key/date/region/s3/aws4_request``."""
        parts = credential.split("/")
        if len(parts) != 5 or not all(parts):
            raise error(
                f'The credential {credential!r} is malformed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
            )
        access_key, date, region, service, terminator = parts
        if date != timestamp[:8]:
            raise error(
                f'Invalid credential date "{date}". This date is not the same as X-Amz-Date: "{timestamp[:8]}".'
            )
        if self._region is not None and region != self._region:
            raise error(
                f"The region '{region}' is wrong; expecting '{self._region}'", Region=self._region
            )
        if service != _sigv4.SERVICE:
            raise error(f"The service '{service}' is wrong; expecting '{_sigv4.SERVICE}'")
        if terminator != _sigv4.SCOPE_TERMINATOR:
            raise error(
                f"The credential terminator '{terminator}' is wrong; expecting 'aws4_request'"
            )
        return access_key, date, region

    # --- SigV2 ----------------------------------------------------------------

    def _sigv2_header(self, request: SignedRequest, authorization: str) -> AuthResult:
        access_key, colon, signature = authorization[len("AWS ") :].partition(":")
        if not (access_key and colon and signature):
            raise AuthorizationHeaderMalformed(
                "AWS authorization header is invalid. Expected AwsAccessKeyId:signature"
            )
        amz_date = request.headers.get("x-amz-date")
        if amz_date is not None:
            signed_at = _parse_any_date(amz_date)
        else:
            signed_at = _parse_http_date(request.headers.get("date"))
        self._check_skew(
            signed_at, request.headers.get("x-amz-date") or request.headers.get("date", "")
        )
        payload = PayloadHeaders.read(
            request, request.headers.get("x-amz-content-sha256"), sigv4=False
        )
        principal, secret = self._lookup(access_key)
        texts = [
            _sigv2.string_to_sign(
                method=request.method,
                content_md5=request.headers.get("content-md5", ""),
                content_type=request.headers.get("content-type", ""),
                # With x-amz-date present, S3 signs an empty Date line: the date
                # is signed among the x-amz-* headers instead.
                date="" if amz_date is not None else request.headers.get("date", ""),
                amz_headers=_sigv2.canonical_amz_headers(request.headers),
                resource=resource,
            )
            for resource in _sigv2.canonical_resources(
                request.path, request.query, host_bucket=request.host_bucket
            )
        ]
        _check_sigv2(secret, texts, signature, access_key)
        return payload.result(principal, access_key, AuthScheme.SIGV2_HEADER)

    def _sigv2_query(self, request: SignedRequest, params: Sequence[tuple[str, str]]) -> AuthResult:
        error = AuthorizationQueryParametersError
        values = _auth_params(params, ("AWSAccessKeyId", "Signature", "Expires"), error)
        expires = values["Expires"]
        if not _DECIMAL.fullmatch(expires):
            raise error("Expires must be a number of seconds since the epoch")
        now = self._clock()
        if now >= int(expires):
            raise RequestExpired(
                "Request has expired", Expires=_iso(int(expires)), ServerTime=_iso(now)
            )
        # S3 sets no limit on SigV2 expiry; tier0 holds it to SigV4's week.
        if int(expires) - now > PRESIGN_S_MAX:
            raise error(f"Expires must be less than a week ({PRESIGN_S_MAX} seconds) from now")
        access_key = values["AWSAccessKeyId"]
        payload = PayloadHeaders.read(
            request, request.headers.get("x-amz-content-sha256"), sigv4=False
        )
        principal, secret = self._lookup(access_key)
        # botocore moves the x-amz-* headers it signed into the query string of a
        # SigV2 presigned URL, so those count as headers here. A real header wins
        # over its query twin: the gateway applies headers, so they must be what
        # the signature covers.
        headers = dict(request.headers)
        for name, value in params:
            if name.lower().startswith("x-amz-") or name.lower() in ("content-type", "content-md5"):
                headers.setdefault(name.lower(), value)
        texts = [
            _sigv2.string_to_sign(
                method=request.method,
                content_md5=headers.get("content-md5", ""),
                content_type=headers.get("content-type", ""),
                date=expires,
                amz_headers=_sigv2.canonical_amz_headers(headers),
                resource=resource,
            )
            for resource in _sigv2.canonical_resources(
                request.path, request.query, host_bucket=request.host_bucket
            )
        ]
        _check_sigv2(secret, texts, values["Signature"], access_key)
        return payload.result(principal, access_key, AuthScheme.SIGV2_QUERY)

    # --- browser-form POST -----------------------------------------------------

    def authenticate_post(self, fields: Mapping[str, str]) -> Principal | None:
        """Who signed a browser-form POST's policy, from its form ``fields``
        (lower-case names), or None for a form that carries no signature.

        SigV4 (``x-amz-algorithm``, ``x-amz-credential``, ``x-amz-date``,
        ``x-amz-signature``) signs the base64 ``policy`` field as sent, with the
        signing key of the credential's scope; SigV2 (``awsaccesskeyid``,
        ``signature``) signs it with HMAC-SHA1 of the secret. The policy's own
        conditions and expiry are the caller's to check. Raises
        `InvalidAuthArgument` for a missing or malformed field,
        `InvalidAccessKeyId`, `SignatureDoesNotMatch`.
        """
        v4 = any(name in fields for name in _V4_POST_FIELDS)
        v2 = any(name in fields for name in _V2_POST_FIELDS)
        if v4 and v2:
            raise InvalidAuthArgument(
                "Only one auth mechanism allowed; give either the x-amz-* signature fields"
                " or AWSAccessKeyId and signature"
            )
        if not (v4 or v2):
            return None
        policy = _post_field(fields, "policy")
        if v2:
            access_key = _post_field(fields, "awsaccesskeyid")
            principal, secret = self._lookup(access_key)
            _check_sigv2(secret, [policy], _post_field(fields, "signature"), access_key)
            return principal
        error = InvalidAuthArgument
        if _post_field(fields, "x-amz-algorithm") != _sigv4.ALGORITHM:
            raise error('x-amz-algorithm only supports "AWS4-HMAC-SHA256"')
        timestamp = _post_field(fields, "x-amz-date")
        if not _ISO_BASIC.fullmatch(timestamp):
            raise error("x-amz-date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        access_key, date, region = self._credential(
            _post_field(fields, "x-amz-credential"), timestamp, error
        )
        principal, secret = self._lookup(access_key)
        expected = _sigv4.sign(self._signing_keys.get(secret, date, region), policy)
        provided = _post_field(fields, "x-amz-signature")
        if not equal_constant_time(expected, provided):
            raise SignatureDoesNotMatch(
                "The request signature we calculated does not match the signature you provided."
                " Check your key and signing method.",
                AWSAccessKeyId=access_key,
                StringToSign=policy,
                SignatureProvided=provided,
            )
        return principal

    # --- shared ---------------------------------------------------------------

    def _lookup(self, access_key: str) -> tuple[Principal, str]:
        try:
            return self._secret_for(access_key)
        except InvalidCredentials as error:
            raise InvalidAccessKeyId(
                "The AWS Access Key Id you provided does not exist in our records.",
                AWSAccessKeyId=access_key,
            ) from error

    def _check_skew(self, signed_at: float, request_time: str) -> None:
        now = self._clock()
        if abs(now - signed_at) > self._skew_s_max:
            raise RequestTimeTooSkewed(
                "The difference between the request time and the current time is too large.",
                RequestTime=request_time,
                ServerTime=_iso(now),
                MaxAllowedSkewMilliseconds=str(int(self._skew_s_max * 1000)),
            )


@dataclass(frozen=True, slots=True)
class AuthenticatorStatistics:
    signing_keys_cached: int


def _check_sigv2(secret: str, texts: list[str], provided: str, access_key: str) -> None:
    """Accept ``provided`` if it signs one of ``texts`` (the forms of one request)."""
    # Every form is computed and compared, so the time taken does not depend on
    # which one (if any) matched.
    matches = [equal_constant_time(_sigv2.sign(secret, text), provided) for text in texts]
    if not any(matches):
        raise SignatureDoesNotMatch(
            "The request signature we calculated does not match the signature you provided."
            " Check your key and signing method.",
            AWSAccessKeyId=access_key,
            StringToSign=texts[0],
            SignatureProvided=provided,
        )


def _auth_params(
    params: Sequence[tuple[str, str]], names: tuple[str, ...], error: type[S3AuthError]
) -> dict[str, str]:
    """The named query parameters, each present exactly once."""
    values: dict[str, str] = {}
    for name, value in params:
        if name in names:
            if name in values:
                raise error(f"Query-string authentication takes {name} once, not twice.")
            values[name] = value
    missing = [name for name in names if name not in values]
    if missing:
        raise error(
            f"Query-string authentication requires the {', '.join(names)} parameters; missing {', '.join(missing)}."
        )
    return values


def _post_field(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        shown = "AWSAccessKeyId" if name == "awsaccesskeyid" else name
        raise InvalidAuthArgument(
            f"Bucket POST must contain a field named '{shown}'."
            "  If it is specified, please check the order of the fields.",
            ArgumentName=shown,
            ArgumentValue="",
        )
    return value


def _signed_headers(
    value: str, request: SignedRequest, error: type[S3AuthError]
) -> tuple[str, ...]:
    """The signed header names, checked: ``host`` among them, every ``x-amz-*`` header covered."""
    names = _header_names(value)
    if names is None:
        raise error(
            f"SignedHeaders {value!r} is malformed: lower-case header names separated by ';'."
        )
    if "host" not in names:
        raise error("'Host' must be a signed header.")
    # Otherwise anyone holding the request could add x-amz-acl, x-amz-copy-source
    # or x-amz-meta-* to it without breaking its signature.
    unsigned = sorted(
        name for name in request.headers if name.startswith("x-amz-") and name not in names
    )
    if unsigned:
        raise HeadersNotSigned(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )
    return names


@functools.lru_cache(maxsize=_PARSED_MAX)
def _header_names(value: str) -> tuple[str, ...] | None:
    """The names of a SignedHeaders value, or None when it is malformed.

    Remembered: a client signs the same few header sets again and again.
    """
    names = tuple(value.split(";"))
    if not all(_HEADER_NAME.fullmatch(name) for name in names) or len(set(names)) != len(names):
        return None
    return names


def _parse_iso_basic(value: str, error: type[S3AuthError]) -> float:
    try:
        return _iso_basic_seconds(value)
    except ValueError:
        raise error(f"{value!r} is not a valid date and time (yyyyMMddTHHmmssZ)") from None


@functools.lru_cache(maxsize=_PARSED_MAX)
def _iso_basic_seconds(value: str) -> float:
    """Epoch seconds of ``yyyyMMddTHHmmssZ``; ValueError if it is not one.

    By hand (strptime cost ~30 us), and remembered: the requests of a second,
    and every use of a presigned URL, carry the same timestamp.
    """
    if not _ISO_BASIC.fullmatch(value):
        raise ValueError(value)
    parsed = datetime(
        int(value[0:4]), int(value[4:6]), int(value[6:8]),
        int(value[9:11]), int(value[11:13]), int(value[13:15]),
    )  # fmt: skip
    return float(calendar.timegm(parsed.timetuple()))


def _parse_http_date(value: str | None) -> float:
    """Epoch seconds of an HTTP date (``Tue, 27 Mar 2007 19:36:42 +0000``)."""
    if value is None:
        raise MissingDate("AWS authentication requires a valid Date or x-amz-date header")
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise MissingDate("AWS authentication requires a valid Date or x-amz-date header") from None
    if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322's convention
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _parse_any_date(value: str) -> float:
    """SigV2's ``x-amz-date`` may be an HTTP date or ISO 8601 basic."""
    if _ISO_BASIC.fullmatch(value):
        return _parse_iso_basic(value, MissingDate)
    return _parse_http_date(value)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
