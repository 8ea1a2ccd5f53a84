"""AWS Signature Version 4 as S3 computes it: canonical forms and the HMAC chain.

Pure functions over strings, with no I/O and no tier0 types: `_auth` parses and
judges requests, `_chunked` verifies chunk chains, and both call down to here.
The definitions follow the S3 API reference ("Signature Calculations for the
Authorization Header", "...Transferring Payload in Multiple Chunks" and
"...Including Trailing Headers").

S3 differs from the generic SigV4 in two places, both reproduced here: the path
is neither normalised (``a//b/../c`` stays as sent) nor encoded twice, and a
query parameter without ``=`` canonicalises as ``name=``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote_from_bytes, unquote_to_bytes

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SCOPE_TERMINATOR: Final = "aws4_request"
SERVICE: Final = "s3"
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER: Final = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

_CHUNK_ALGORITHM: Final = "AWS4-HMAC-SHA256-PAYLOAD"
_TRAILER_ALGORITHM: Final = "AWS4-HMAC-SHA256-TRAILER"


def uri_encode(raw: bytes) -> str:
    """AWS ``UriEncode``: unreserved bytes (``A-Za-z0-9-_.~``) as they are, all
    others as ``%XY`` with upper-case hex, ``/`` included.

    ``quote_from_bytes`` keeps exactly that unreserved set (``~`` since 3.7) and
    writes upper-case hex, which is why it can stand in for AWS's definition.
    """
    return quote_from_bytes(raw, safe="")


#: What `uri_encode` keeps as it is: a component made only of these is its own canonical form.
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]*")
#: A ``%`` that does not start an escape as `uri_encode` writes it: upper-case
#: hex, of a byte that is not unreserved (``%2F`` is canonical; ``%7E``, ``%2f``
#: and a lone ``%`` are not).
_NOT_CANONICAL_ESCAPE = re.compile(
    r"%(?!(?:[0-189A-F][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]))"
)
#: Characters of a raw path, and of a raw query, that may already be canonical.
#: Two matches (these, then `_NOT_CANONICAL_ESCAPE`) answer for the whole
#: path or query in the common case, where one per component cost ~3 us.
_PATH_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~/%]*")
_QUERY_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~=&%]*")
#: Canonical forms remembered, of components at most this long.
_RECODED_ENTRIES_MAX: Final = 1024
_RECODED_CHARS_MAX: Final = 256


@functools.lru_cache(maxsize=_RECODED_ENTRIES_MAX)
def _recoded(raw: str) -> str:
    return uri_encode(unquote_to_bytes(raw))


def canonical_component(raw: str) -> str:
    """A raw (percent-encoded) path segment, query name or value, decoded and
    encoded again with `uri_encode`: ``%7e`` and ``~`` both become ``~``.

    The common cases cost nothing: a component of unreserved characters only
    is its own canonical form, and the others recur (a client's credential
    scope, its signed headers), so their canonical forms are remembered.

    >>> canonical_component("a%20b"), canonical_component("%7euser"), canonical_component("x+y")
    ('a%20b', '~user', 'x%2By')
    """
    if _UNRESERVED.fullmatch(raw):
        return raw
    if len(raw) > _RECODED_CHARS_MAX:
        return uri_encode(unquote_to_bytes(raw))
    return _recoded(raw)


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a raw (still percent-encoded) request path.

    Each ``/``-separated segment is decoded and encoded again with `uri_encode`,
    so ``%7e``, ``%7E`` and ``~`` all sign as ``~``, while an encoded slash
    (``%2F``) stays inside its segment. Empty segments (``//``) and a trailing
    ``/`` are kept: S3 does not normalise paths, and neither do its clients.

    >>> canonical_uri("/bucket/a%20b/%7euser//x+y/")
    '/bucket/a%20b/~user//x%2By/'
    """
    if not raw_path:
        return "/"
    if _PATH_CHARACTERS.fullmatch(raw_path) and not _NOT_CANONICAL_ESCAPE.search(raw_path):
        return raw_path
    return "/".join(canonical_component(segment) for segment in raw_path.split("/"))


def canonical_query(raw_query: str, *, exclude: str | None = None) -> str:
    """The canonical query string of a raw query (without the ``?``).

    Names and values are decoded (``+`` stays a plus: S3's clients encode a space
    as ``%20``), encoded with `uri_encode`, and sorted by encoded name, then by
    encoded value. ``exclude`` names a parameter left out (a presigned URL's own
    ``X-Amz-Signature``). Empty pieces (``a=1&&b=2``) carry nothing and are skipped.

    >>> canonical_query("prefix=J&max-keys=2&uploads")
    'max-keys=2&prefix=J&uploads='
    """
    pairs: list[tuple[str, str]] = []
    # A query in canonical form already (a presigned URL's usually is) is only
    # split and sorted; a piece with a second "=" still takes the long way.
    as_sent = bool(_QUERY_CHARACTERS.fullmatch(raw_query)) and not _NOT_CANONICAL_ESCAPE.search(
        raw_query
    )
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if as_sent and "=" not in value:
            if name != exclude:
                pairs.append((name, value))
            continue
        canonical_name = canonical_component(name)
        if exclude is not None and canonical_name == exclude:
            continue
        pairs.append((canonical_name, canonical_component(value)))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_header_value(value: str) -> str:
    """``Trimall``: no leading or trailing blanks, inner runs of blanks as one space.

    Splitting on any whitespace is what botocore does, so the two agree on tabs.
    """
    return " ".join(value.split())


def canonical_request(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    payload_hash: str,
    exclude_query: str | None = None,
) -> str:
    """The canonical request, six lines joined by ``\\n``.

    ``headers`` has lower-case names; a signed header absent from it signs as an
    empty value (so removing it still changes the signature).
    """
    names = list(signed_headers)
    header_lines = "".join(
        f"{name}:{canonical_header_value(headers.get(name, ''))}\n" for name in names
    )
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query, exclude=exclude_query),
            header_lines,
            ";".join(names),
            payload_hash,
        )
    )


def scope(date: str, region: str, service: str = SERVICE) -> str:
    """``<yyyymmdd>/<region>/<service>/aws4_request``."""
    return f"{date}/{region}/{service}/{SCOPE_TERMINATOR}"


def string_to_sign(timestamp: str, credential_scope: str, request: str) -> str:
    """The string to sign for a canonical request (``timestamp`` as ``yyyymmddThhmmssZ``)."""
    digest = hashlib.sha256(request.encode()).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{credential_scope}\n{digest}"


def derive_signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """``HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")``."""
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, SCOPE_TERMINATOR)


def sign(signing_key: bytes, text: str) -> str:
    """The hex HMAC-SHA256 of ``text`` under a derived signing key."""
    return hmac.digest(signing_key, text.encode(), "sha256").hex()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SigningKeyCache:
    """A small, bounded, thread-safe LRU of derived signing keys.

    A signing key is four HMACs away from the secret and changes only with the
    date, the region and the secret itself, so one derivation serves a client's
    whole day. The secret is part of the cache key on purpose: a rotated secret
    never finds a key derived from the old one.
    """

    def __init__(self, *, entries_max: int = 1024) -> None:
        assert entries_max >= 1, entries_max
        self._entries_max = entries_max
        self._keys: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
        """The signing key for this secret, date, region and service."""
        cache_key = (secret, date, region, service)
        with self._lock:
            key = self._keys.get(cache_key)
            if key is not None:
                self._keys.move_to_end(cache_key)
                return key
        key = derive_signing_key(secret, date, region, service)
        with self._lock:
            self._keys[cache_key] = key
            self._keys.move_to_end(cache_key)
            while len(self._keys) > self._entries_max:
                self._keys.popitem(last=False)
        return key

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class ChunkSigning:
    """What it takes to verify an ``aws-chunked`` body's signature chain.

    ``seed`` is the request's own signature; the chain starts there. The signing
    key stays out of ``repr`` so that it cannot end up in a log line.
    """

    signing_key: bytes = field(repr=False)
    timestamp: str
    credential_scope: str
    seed: str

    def chunk_signature(self, previous: str, chunk_sha256: str) -> str:
        """The signature of one chunk, given the previous signature in the chain."""
        text = "\n".join(
            (
                _CHUNK_ALGORITHM,
                self.timestamp,
                self.credential_scope,
                previous,
                EMPTY_SHA256,
                chunk_sha256,
            )
        )
        return sign(self.signing_key, text)

    def trailer_signature(self, previous: str, trailer_sha256: str) -> str:
        """The signature of the trailer section, chained from the last chunk's."""
        text = "\n".join(
            (_TRAILER_ALGORITHM, self.timestamp, self.credential_scope, previous, trailer_sha256)
        )
        return sign(self.signing_key, text)


def canonical_trailer(trailers: Mapping[str, str]) -> bytes:
    """The bytes a trailer signature covers: ``name:value\\n`` per trailer.

    Names are lower-case and values trimmed like header values, in the order the
    trailers arrived: a client hashes the lines it writes, in the order it
    writes them.
    """
    return "".join(
        f"{name}:{canonical_header_value(value)}\n" for name, value in trailers.items()
    ).encode()
