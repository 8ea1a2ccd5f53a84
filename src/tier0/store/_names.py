"""What a bucket name and an object key may be.

Keys are opaque: ``../x`` or ``a\\b`` are ordinary names, compared by their
UTF-8 bytes, and never become filesystem paths (chunks live under hash names).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from typing import Final

from tier0.errors import (
    InvalidBucketName,
    InvalidKey,
    InvalidMetadata,
    InvalidTag,
    KeyTooLong,
    MetadataTooLarge,
    TooManyTags,
)

KEY_BYTES_MAX: Final = 1024
METADATA_BYTES_MAX: Final = 2048  # S3's limit on user metadata, keys and values together
TAG_COUNT_MAX: Final = 10
TAG_KEY_CHARS_MAX: Final = 128
TAG_VALUE_CHARS_MAX: Final = 256
NULL_VERSION: Final = "null"

_BUCKET_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_PREFIXES_RESERVED: Final = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES_RESERVED: Final = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def validate_bucket_name(name: str) -> None:
    """Raise InvalidBucketName unless ``name`` follows S3's bucket naming rules."""
    problem = None
    if not isinstance(name, str) or not _BUCKET_RE.match(name):
        problem = "use 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    elif ".." in name or ".-" in name or "-." in name:
        problem = "dots may not be adjacent to each other or to hyphens"
    elif name.startswith(_BUCKET_PREFIXES_RESERVED) or name.endswith(_BUCKET_SUFFIXES_RESERVED):
        problem = "the prefix or suffix is reserved"
    else:
        try:
            ipaddress.IPv4Address(name)
            problem = "it may not look like an IP address"
        except ValueError:
            pass
    if problem:
        raise InvalidBucketName(f"invalid bucket name {name!r}: {problem}")


def validate_key(key: str) -> None:
    """Raise InvalidKey unless ``key`` is 1..1024 bytes of UTF-8 without NUL."""
    if not isinstance(key, str):
        raise InvalidKey(f"an object key is a str, got {type(key).__name__}")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidKey(
            f"object key {key!r} is not valid UTF-8 (it holds a lone surrogate)"
        ) from error
    if not encoded:
        raise InvalidKey("an object key may not be empty")
    if len(encoded) > KEY_BYTES_MAX:
        raise KeyTooLong(
            f"object key is {len(encoded)} bytes of UTF-8; the limit is {KEY_BYTES_MAX}"
        )
    if "\x00" in key:
        raise InvalidKey(f"object key {key!r} contains NUL, which no protocol can carry")


def validate_prefix(prefix: str) -> None:
    """Like validate_key, but the empty prefix is allowed."""
    if prefix:
        validate_key(prefix)


def validate_metadata(metadata: dict[str, str]) -> None:
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidMetadata("user metadata maps str names to str values")
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise InvalidMetadata(
                f"user metadata name {name!r} may hold only letters, digits and - _ ."
            )
        total += len(name.encode()) + len(value.encode())
    if total > METADATA_BYTES_MAX:
        raise MetadataTooLarge(f"user metadata is {total} bytes; the limit is {METADATA_BYTES_MAX}")


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > TAG_COUNT_MAX:
        raise TooManyTags(f"Object tags cannot be greater than {TAG_COUNT_MAX} ({len(tags)} given)")
    for name, value in tags.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidTag("tags map str names to str values")
        if not 1 <= len(name) <= TAG_KEY_CHARS_MAX or len(value) > TAG_VALUE_CHARS_MAX:
            raise InvalidTag(
                f"tag {name!r}: names are 1..{TAG_KEY_CHARS_MAX} characters, values at most {TAG_VALUE_CHARS_MAX}"
            )


def new_version_id() -> str:
    """An opaque, unique version id (32 URL-safe characters, like S3's)."""
    return secrets.token_urlsafe(24)


def prefix_successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``.

    None when there is none (the empty prefix, or one made only of U+10FFFF).
    Code-point order equals UTF-8 byte order, which is the order keys sort in.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            following = last + 1
            if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters; skip them
                following = 0xE000
            return "".join(chars) + chr(following)
    return None
