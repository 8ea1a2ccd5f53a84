"""What a ``tier0://`` path names, and the one table from tier0 errors to POSIX errors.

A path ``tier0://bucket/some/key`` is stripped to ``bucket/some/key`` (no
protocol, no outer slashes) and split at its first ``/`` into a bucket and a
key; ``""`` is the root and ``"bucket"`` a bucket. A store failure leaves
this package as the builtin ``OSError`` subclass that fsspec's callers
catch, with the tier0 error chained as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import Final

from fsspec.utils import stringify_path

from tier0.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketNotEmpty,
    ChunkError,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
    Tier0Error,
)

PROTOCOL: Final = "tier0"

# The one table from tier0 errors to POSIX errno; OSError(code, ...) picks the
# builtin subclass (ENOENT -> FileNotFoundError, EEXIST -> FileExistsError, ...).
# PreconditionFailed is EEXIST because the only condition asked here is "create".
_ERRNO: Final[dict[type[Tier0Error], int]] = {
    NoSuchBucket: errno.ENOENT,
    NoSuchKey: errno.ENOENT,
    BucketAlreadyExists: errno.EEXIST,
    PreconditionFailed: errno.EEXIST,
    BucketNotEmpty: errno.ENOTEMPTY,
    AccessDenied: errno.EACCES,
    ChunkError: errno.EIO,
}


def strip_protocol(path: object) -> str:
    """A path as this package works on it: ``"tier0://bkt/a/"`` -> ``"bkt/a"``.

    Takes a string or ``os.PathLike``; ``tier0::`` (fsspec chaining) is removed too.
    """
    text: str = stringify_path(path)
    for marker in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
        text = text.removeprefix(marker)
    return text.strip("/")


def split_path(path: str) -> tuple[str, str]:
    """``"bucket/some/key"`` -> ``("bucket", "some/key")``; a bucket's key is ``""``.

    Takes a stripped path (``strip_protocol``).
    """
    bucket, _, key = path.partition("/")
    return bucket, key


def split_object_path(path: str) -> tuple[str, str]:
    """``split_path`` for a path that must name an object.

    Raises IsADirectoryError for a bucket or the root, which hold no bytes.
    """
    bucket, key = split_path(path)
    if not key:
        raise IsADirectoryError(errno.EISDIR, "a bucket is a directory; name bucket/key", path)
    return bucket, key


@contextlib.contextmanager
def translate_errors(path: str) -> Iterator[None]:
    """Re-raise a tier0 error that has a POSIX meaning as that builtin ``OSError``.

    Others (``InvalidArgument``, a ``ValueError``; ``MetaUnavailable``...)
    pass through unchanged.

    >>> with translate_errors("bkt/a"):                             # doctest: +SKIP
    ...     t0.head("bkt", "a")
    Traceback (most recent call last):
    FileNotFoundError: [Errno 2] ...: 'bkt/a'
    """
    try:
        yield
    except Tier0Error as error:
        code = next((_ERRNO[kind] for kind in type(error).__mro__ if kind in _ERRNO), None)
        if code is None:
            raise
        raise OSError(code, str(error), path) from error
