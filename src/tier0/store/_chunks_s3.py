"""The chunk backend that keeps chunks as objects in an S3-compatible store.

Several tier0 processes on several hosts can share one bucket (with one
PostgreSQL metadata database they form one store: ARCHITECTURE.md,
"Scale-out"). Layout under ``s3://BUCKET/PREFIX``::

    PREFIX chunks/ab/<name>                      the blob of a chunk whose name starts "ab"
    PREFIX leases/ab/<name>/<stamp>.<token>      an empty object per use (a write or a touch)
    PREFIX trash/ab/<name>.<stamp>.<token>       a deletion in progress

``<stamp>`` is the using process's clock in nanoseconds (20 digits, so that
keys sort by time) and ``<token>`` 8 random hex digits. The two-hex-digit
fan-out spreads keys over 256 prefixes, which object stores partition by.
Every request is idempotent (a PUT of content-named bytes, GET, HEAD, DELETE,
LIST), so each may be retried; the store must be strongly consistent
(read-after-write and list-after-write for PUT and DELETE), as AWS S3 is since
December 2020 and tier0's own gateway, MinIO and Ceph RGW are.

How each guarantee of `ChunkBackend` holds here:

*Durable, atomic writes.* A PUT is atomic: readers see the whole new object
or none of it, never a part, and an acknowledged PUT is durable. Each PUT
carries ``Content-MD5``, so the store refuses a body damaged on the way
(``BadDigest``) instead of keeping it; that answer is retried, like every
answer that leaves nothing changed. S3 has no counterpart of a failed fsync
(nothing acknowledged can have been dropped), so this backend is never
fail-stop: each failure is raised to its caller and the next call tries again.

*Dedup and GC without a lock.* Every use of a name, a ``write`` or a
``touch``, first PUTs a new lease object whose key holds the time, and only
then acts on the blob (PUTs it, or HEADs it for its size). Leases are never
overwritten, so concurrent uses cannot replace a newer stamp with an older
one: the last use of a name is its newest lease. ``delete_if_idle``

1. lists the name's leases and keeps the blob if the newest is recent;
2. GETs the blob and PUTs a copy into ``trash/``;
3. DELETEs the blob;
4. lists the leases again; if one is recent now, it PUTs the blob back;
5. DELETEs the trash copy.

A ``touch`` that returned a size found the blob with its HEAD, so before
step 3; its lease was PUT before that HEAD, so the listing of step 4 sees it
(list-after-write) and the blob goes back. A ``write`` whose PUT lands
before step 3 is put back the same way (its lease precedes its PUT); one
that lands after step 3 is simply there. Both restored copies hold the same
bytes, since a name is its content's hash. While the name is empty between
steps 3 and 4, ``read`` finds the blob in ``trash/``, as `LocalChunkBackend`'s
``read`` does.

*Crashes.* A deleter that dies between steps 2 and 5 leaves the blob in
``trash/``: ``read`` still finds it there, ``check`` reports an entry older
than ``stale_s_min``, and opening the backend puts such entries back. If the
deleter was alive after all, the worst outcome is a blob that it reported
deleted and that exists: an orphan, which the GC sweeps.

*Lease upkeep.* A lease is deleted only when a newer lease of the same name
is known to be stored (an instance drops its own previous lease of a name
once the next is stored), or when it is older than ``idle_s_min`` and
``delete_if_idle`` sees it (then never the newest while the blob exists).
So the newest stamp of a name never goes back. Stamps come from each
process's clock: processes sharing a store must agree on the time to within a
small fraction of the GC grace period (an hour by default).

*Reads* are one GET; a body cut short is resumed with a ``Range`` request
from the first missing byte (the blob is immutable, so the pieces belong
together) instead of starting over.

*Errors.* Connection failures, timeouts, cut bodies, ``500``/``502``/``503``/
``504``, throttling (``SlowDown`` and its kin) and ``BadDigest`` are retried
with full-jitter exponential backoff, ``attempts_max`` tries in all.
Everything else is raised at once: a missing blob is ChunkMissing (``None``
from ``touch`` and ``age_s``), a full store (``507``, MinIO's
``XMinioStorageFull``, a quota) StorageFull, and the rest StoreFailed.

Cost: a new chunk takes five requests (``touch``: lease PUT, HEAD; ``write``:
lease PUT, blob PUT, and the DELETE of the touch's lease), a dedup hit two or
three, a read one.

Example::

    backend = S3ChunkBackend("my-bucket", "tier0/", endpoint_url="http://127.0.0.1:9000")
    with tier0.open("/srv/t0", meta="postgresql://db/t0", chunks=backend) as t0: ...
"""

from __future__ import annotations

import base64
import collections
import contextlib
import errno
import functools
import hashlib
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from tier0.errors import (
    ChunkCorrupted,
    ChunkMissing,
    InvalidArgument,
    StorageFull,
    StoreError,
    StoreFailed,
)
from tier0.store._chunking import CHUNK_BYTES_MAX
from tier0.store._chunks import Blob, ChunkBackend, ChunkBackendStatistics
from tier0.store._chunks_local import LocalChunkBackend

__all__ = ["S3ChunkBackend", "S3ChunkBackendStatistics", "open_chunk_backend"]

T = TypeVar("T")

#: A blob is a chunk's codec header and payload: never near this size. A GET
#: announcing more is not one of ours, and is refused before it is read.
BLOB_BYTES_MAX: Final = CHUNK_BYTES_MAX + 4096
#: How much of a GET body is read at a time.
READ_BLOCK_BYTES: Final = 1024 * 1024
#: Names whose last lease this instance remembers, to drop it on the next use.
LEASES_REMEMBERED_MAX: Final = 65_536
#: Keys per LIST page (the S3 maximum).
LIST_PAGE_KEYS_MAX: Final = 1000

_NAME: Final = re.compile(r"[0-9a-f]{64}")
_CHUNK_KEY: Final = re.compile(r"chunks/([0-9a-f]{2})/([0-9a-f]{64})")
_LEASE_KEY: Final = re.compile(r"leases/([0-9a-f]{2})/([0-9a-f]{64})/([0-9]{20})\.[0-9a-f]{8}")
_TRASH_KEY: Final = re.compile(r"trash/([0-9a-f]{2})/([0-9a-f]{64})\.([0-9]{20})\.[0-9a-f]{8}")
_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
# read() looks under the name, then in trash/, this many times before it calls
# a chunk missing (a deleter may be between moving it away and putting it back).
_READ_ATTEMPTS_MAX: Final = 3

#: Answers that changed nothing and may succeed if repeated.
_RETRYABLE_CODES: Final = frozenset(
    {
        # The body was damaged on the way (Content-MD5 or a signed payload
        # hash caught it): the store kept nothing.
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",  # a clock step on our side; the next signature is fresh
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
    }
)
_RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: How stores say they are full: tier0 and MinIO answer 507 (MinIO with its
#: own code), others a quota code.
_STORAGE_FULL_CODES: Final = frozenset(
    {"InsufficientStorage", "XMinioStorageFull", "QuotaExceeded", "StorageFull"}
)
_NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class S3ChunkBackendStatistics(ChunkBackendStatistics):
    """`ChunkBackendStatistics`, plus this instance's requests (each try
    counts once), the retries among them, and the lease objects stored now."""

    requests: int
    retries: int
    leases: int


class _NotFound(Exception):
    """The key (not the bucket) is absent: a 404 the caller turns into its own answer."""


class S3ChunkBackend(ChunkBackend):
    """Chunks as objects under ``prefix`` in ``bucket`` of an S3-compatible store.

    The module docstring gives the layout and how the ChunkBackend contract
    holds. ``endpoint_url`` names a store other than AWS (tier0, MinIO, ...);
    path-style addressing is the default then, virtual-hosted style on AWS.
    Credentials not given come from boto3's usual chain:
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and
    ``AWS_SESSION_TOKEN``), ``AWS_PROFILE``, the shared config files, then
    instance roles; the region from ``AWS_REGION``/``AWS_DEFAULT_REGION``,
    else us-east-1.

    At most ``connections_max`` connections are open at once; each request
    gets ``attempts_max`` tries, ``timeout_s`` each for connecting and for
    every read. ``clock`` stamps leases and measures idleness, ``sleep`` and
    ``rng`` pace retries (inject them in tests).

    Opening checks that the bucket can be reached (StoreFailed if it does not
    exist or access is denied) and puts back blobs that deletions interrupted
    longer than ``stale_s_min`` ago left in ``trash/``.
    """

    stale_s_min: float = 300.0
    """A trash entry older than this is a crashed deletion's, not one in progress."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        connections_max: int = 16,
        attempts_max: int = 5,
        backoff_s: float = 0.05,
        backoff_s_max: float = 2.0,
        timeout_s: float = 30.0,
        verify_tls: bool | str = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise InvalidArgument(f"bad chunk bucket name {bucket!r}")
        if attempts_max < 1 or connections_max < 1:
            raise InvalidArgument("attempts_max and connections_max must be at least 1")
        prefix = prefix.strip("/")
        self._bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._where = f"s3://{bucket}/{self._prefix}" + (
            f" at {endpoint_url}" if endpoint_url else ""
        )
        self._attempts_max = attempts_max
        self._backoff_s = backoff_s
        self._backoff_s_max = backoff_s_max
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # urllib3 opens a connection beyond its pool when the pool is busy
        # (and drops it after): the pool alone bounds idle connections, this
        # bounds the requests in flight, hence the connections open.
        self._slots = threading.BoundedSemaphore(connections_max)
        self._last_stamp_ns = 0
        # name -> (stamp_ns, key) of the newest lease this instance stored.
        self._leases: collections.OrderedDict[str, tuple[int, str]] = collections.OrderedDict()
        self._writes = self._bytes_written = self._dedup_hits = self._deletes = 0
        self._requests = self._retries = 0
        self._client = _make_client(
            endpoint_url=endpoint_url,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
            addressing_style=addressing_style or ("path" if endpoint_url else "virtual"),
            connections_max=connections_max,
            timeout_s=timeout_s,
            verify_tls=verify_tls,
        )
        try:
            self._request(
                f"opening the chunk store {self._where}",
                lambda: self._client.head_bucket(Bucket=bucket),
            )
            self._recover()
        except _NotFound:
            self.close()
            raise StoreFailed(
                f"the chunk bucket {bucket!r} does not exist at {endpoint_url or 'AWS S3'}; "
                "create it first (e.g. `aws s3 mb s3://BUCKET`)",
                errno_code=errno.ENOENT,
            ) from None
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3ChunkBackend:
        """The backend for ``s3://BUCKET[/PREFIX]``; ``options`` as for the constructor.

        >>> S3ChunkBackend.from_url("s3://chunks/t0", endpoint_url="http://127.0.0.1:9000")  # doctest: +SKIP
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise InvalidArgument(f"{url!r} is not an s3://BUCKET[/PREFIX] URL")
        return cls(parts.netloc, parts.path, **options)

    # -- the seam ------------------------------------------------------------

    def write(self, name: str, blob: Blob, *, name_durable: bool = True) -> None:
        key = self._chunk_key(name)
        # One buffer: its MD5 goes in the header, and a retry resends it.
        data = bytes(blob) if isinstance(blob, bytes | memoryview) else b"".join(blob)
        self._stamp_lease(name)
        self._put(key, data, f"writing chunk {name}")
        with self._lock:
            self._writes += 1
            self._bytes_written += len(data)

    def touch(self, name: str) -> int | None:
        key = self._chunk_key(name)
        self._stamp_lease(name)
        size = self._head(key, f"touching chunk {name}")
        if size is None:
            return None
        with self._lock:
            self._dedup_hits += 1
        return size

    #: Anyone who can write the bucket can change a blob and its CRC with it.
    verify_hash_on_read = True

    def flush(self, names: Iterable[str]) -> None:
        # An acknowledged PUT is durable already: nothing is pending.
        for name in names:
            self._chunk_key(name)

    def read(self, name: str) -> bytes:
        key = self._chunk_key(name)
        doing = f"reading chunk {name}"
        for _ in range(_READ_ATTEMPTS_MAX):
            blob = self._get(key, doing)
            if blob is not None:
                return blob
            # Between a deleter's DELETE and its putting the blob back, the
            # blob is only in trash/ (and it may be gone from there a moment
            # after it is back under its name: hence the loop).
            for trashed, _ in self._list(self._trash_prefix(name), doing):
                blob = self._get(trashed, doing)
                if blob is not None:
                    return blob
        raise ChunkMissing(f"chunk {name} is not in the chunk store {self._where}")

    def delete_if_idle(self, name: str, idle_s_min: float) -> bool:
        key = self._chunk_key(name)
        if idle_s_min < 0:
            raise InvalidArgument(f"idle_s_min must not be negative, got {idle_s_min}")
        doing = f"deleting chunk {name}"
        leases = self._list_leases(name, doing)
        if self._is_recent(leases, idle_s_min):
            self._drop_stale(leases[:-1], idle_s_min, doing)
            return False
        blob = self._get(key, doing)
        if blob is None:
            return False
        trashed = f"{self._trash_prefix(name)}{self._next_stamp_ns():020d}.{secrets.token_hex(4)}"
        self._put(trashed, blob, doing)
        try:
            self._delete(key, doing)
            leases = self._list_leases(name, doing)
            keep = self._is_recent(leases, idle_s_min)
            if keep:
                self._put(key, blob, doing)
        except BaseException:
            # Put the blob back if we can; if not, trash/ holds it, read()
            # finds it there and the next open puts it back.
            with contextlib.suppress(StoreError):
                self._put(key, blob, doing)
            raise
        self._delete(trashed, doing)
        # Once the blob is gone, every lease seen is stale; if it stays, the newest is not.
        self._drop_stale(leases if not keep else leases[:-1], idle_s_min, doing)
        if not keep:
            with self._lock:
                self._deletes += 1
        return not keep

    def names(self) -> Iterator[str]:
        for key, _ in self._list(f"{self._prefix}chunks/", "listing chunks"):
            match = _CHUNK_KEY.fullmatch(key[len(self._prefix) :])
            if match is not None and match[2].startswith(match[1]):
                yield match[2]

    def age_s(self, name: str) -> float | None:
        key = self._chunk_key(name)
        doing = f"reading the age of chunk {name}"
        head = self._head_object(key, doing)
        if head is None:
            return None
        leases = self._list_leases(name, doing)
        # Without a lease (all were older than some deleter's idle_s_min),
        # the store's own time of the last write is the best there is.
        last_s = leases[-1][0] / 1e9 if leases else head["LastModified"].timestamp()
        # A clock that stepped back would make the age negative; clamp it.
        return max(0.0, self._clock() - last_s)

    def statistics(self) -> S3ChunkBackendStatistics:
        """Counters, plus what a LIST of the store finds: O(chunks + leases), for introspection."""
        chunk_count = stored_bytes = leases = 0
        for key, size in self._list(self._prefix, "listing the chunk store"):
            relative = key[len(self._prefix) :]
            if _CHUNK_KEY.fullmatch(relative):
                chunk_count += 1
                stored_bytes += size
            elif _LEASE_KEY.fullmatch(relative):
                leases += 1
        with self._lock:
            return S3ChunkBackendStatistics(
                chunk_count=chunk_count,
                stored_bytes=stored_bytes,
                writes=self._writes,
                dedup_hits=self._dedup_hits,
                bytes_written=self._bytes_written,
                deletes=self._deletes,
                failed=False,
                requests=self._requests,
                retries=self._retries,
                leases=leases,
            )

    def check(self) -> list[str]:
        problems: list[str] = []
        try:
            listing = list(self._list(self._prefix, "listing the chunk store"))
        except StoreError as error:
            return [f"cannot list {self._where}: {error}"]
        now_s = self._clock()
        for key, _ in listing:
            relative = key[len(self._prefix) :]
            chunk = _CHUNK_KEY.fullmatch(relative)
            lease = _LEASE_KEY.fullmatch(relative)
            trash = _TRASH_KEY.fullmatch(relative)
            match = chunk or lease or trash
            if match is None:
                problems.append(f"unexpected object {key}: not a chunk, lease or trash entry")
            elif not match[2].startswith(match[1]):
                problems.append(f"unexpected object {key}: in the wrong fan-out prefix")
            elif trash is not None:
                age_s = now_s - int(trash[3]) / 1e9
                if age_s > self.stale_s_min:
                    problems.append(
                        f"{key} is {age_s / 60:.0f} min old: an interrupted deletion;"
                        " reopening the store puts it back"
                    )
        return problems

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    # -- keys and leases -------------------------------------------------------

    def _chunk_key(self, name: str) -> str:
        # Names come from hashes, never from users; checking anyway keeps a
        # bug elsewhere from reaching a key outside the chunk namespace.
        if not _NAME.fullmatch(name):
            raise InvalidArgument(f"chunk names are 64 lowercase hex digits, got {name!r}")
        return f"{self._prefix}chunks/{name[:2]}/{name}"

    def _lease_prefix(self, name: str) -> str:
        return f"{self._prefix}leases/{name[:2]}/{name}/"

    def _trash_prefix(self, name: str) -> str:
        return f"{self._prefix}trash/{name[:2]}/{name}."

    def _next_stamp_ns(self) -> int:
        """The clock in ns, strictly increasing within this instance."""
        with self._lock:
            stamp = max(round(self._clock() * 1e9), self._last_stamp_ns + 1)
            self._last_stamp_ns = stamp
            return stamp

    def _stamp_lease(self, name: str) -> None:
        """Store a new lease for ``name``, then drop whichever of it and this
        instance's previous lease of ``name`` is the older (the newer is stored)."""
        stamp = self._next_stamp_ns()
        key = f"{self._lease_prefix(name)}{stamp:020d}.{secrets.token_hex(4)}"
        self._put(key, b"", f"stamping a lease on chunk {name}")
        with self._lock:
            previous = self._leases.get(name)
            if previous is None or previous[0] < stamp:
                self._leases[name] = (stamp, key)
                self._leases.move_to_end(name)
                victim = None if previous is None else previous[1]
            else:
                # A concurrent use in this instance stored a newer one already.
                victim = key
            while len(self._leases) > LEASES_REMEMBERED_MAX:
                self._leases.popitem(last=False)
        if victim is not None:
            # Upkeep, not correctness: a lease left behind only costs a key.
            with contextlib.suppress(StoreError):
                self._delete(victim, f"dropping a superseded lease on chunk {name}")

    def _list_leases(self, name: str, doing: str) -> list[tuple[int, str]]:
        """(stamp in ns, key) of ``name``'s leases, oldest first."""
        leases = []
        for key, _ in self._list(self._lease_prefix(name), doing):
            match = _LEASE_KEY.fullmatch(key[len(self._prefix) :])
            if match is not None and match[2] == name:
                leases.append((int(match[3]), key))
        return sorted(leases)

    def _drop_stale(self, leases: list[tuple[int, str]], idle_s_min: float, doing: str) -> None:
        """Delete the leases older than ``idle_s_min``: they protect nothing any more."""
        cutoff_ns = (self._clock() - idle_s_min) * 1e9
        for stamp, key in leases:
            if stamp < cutoff_ns:
                self._delete(key, doing)

    def _is_recent(self, leases: list[tuple[int, str]], idle_s_min: float) -> bool:
        return bool(leases) and self._clock() - leases[-1][0] / 1e9 < idle_s_min

    def _recover(self) -> None:
        """Put back blobs that deletions interrupted long ago left in trash/."""
        now_s = self._clock()
        doing = "putting back chunks of interrupted deletions"
        for key, _ in list(self._list(f"{self._prefix}trash/", doing)):
            match = _TRASH_KEY.fullmatch(key[len(self._prefix) :])
            if match is None or now_s - int(match[3]) / 1e9 <= self.stale_s_min:
                continue  # not ours (check() says so), or its deleter may be at work
            blob = self._get(key, doing)
            if blob is None:
                continue  # its deleter finished meanwhile
            self._put(self._chunk_key(match[2]), blob, doing)
            self._delete(key, doing)

    # -- requests --------------------------------------------------------------

    def _put(self, key: str, data: bytes, doing: str) -> None:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        self._request(
            doing,
            lambda: self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentLength=len(data), ContentMD5=md5
            ),
        )

    def _head(self, key: str, doing: str) -> int | None:
        """The object's size, or None if absent."""
        response = self._head_object(key, doing)
        return None if response is None else int(response["ContentLength"])

    def _head_object(self, key: str, doing: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self._request(
                doing, lambda: self._client.head_object(Bucket=self._bucket, Key=key)
            )
        except _NotFound:
            return None
        return response

    def _delete(self, key: str, doing: str) -> None:
        # S3 answers 204 whether or not the key existed.
        with contextlib.suppress(_NotFound):
            self._request(doing, lambda: self._client.delete_object(Bucket=self._bucket, Key=key))

    def _get(self, key: str, doing: str) -> bytes | None:
        """The object's bytes, or None if absent; a cut body resumes with a Range request."""
        pieces: list[bytes] = []
        received = total = 0

        def attempt() -> bytes:
            nonlocal received, total
            if not received:
                response = self._client.get_object(Bucket=self._bucket, Key=key)
                total = int(response["ContentLength"])
                if total > BLOB_BYTES_MAX:
                    response["Body"].close()
                    raise ChunkCorrupted(
                        f"{doing}: {key} holds {total} bytes, more than any chunk blob"
                    )
            else:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=key, Range=f"bytes={received}-"
                )
                span = _CONTENT_RANGE.fullmatch(str(response.get("ContentRange", "")))
                if span is None or (int(span[1]), int(span[3])) != (received, total):
                    response["Body"].close()
                    raise ChunkCorrupted(
                        f"{doing}: {key} changed while it was read (resumed at byte "
                        f"{received} of {total}, got {response.get('ContentRange')!r})"
                    )
            body = response["Body"]
            try:
                while block := body.read(READ_BLOCK_BYTES):
                    pieces.append(block)
                    received += len(block)
            finally:
                body.close()
            if received != total:
                raise ChunkCorrupted(f"{doing}: {key} gave {received} bytes of {total}")
            return b"".join(pieces)

        try:
            return self._request(doing, attempt)
        except _NotFound:
            return None

    def _list(self, prefix: str, doing: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, in key order, page by page."""
        token: str | None = None
        while True:
            arguments: dict[str, Any] = {
                "Bucket": self._bucket,
                "Prefix": prefix,
                "MaxKeys": LIST_PAGE_KEYS_MAX,
            }
            if token is not None:
                arguments["ContinuationToken"] = token
            try:
                page = self._request(
                    doing, functools.partial(self._client.list_objects_v2, **arguments)
                )
            except _NotFound:
                return
            for entry in page.get("Contents", ()):
                yield str(entry["Key"]), int(entry["Size"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _request(self, doing: str, call: Callable[[], T]) -> T:
        """Run ``call`` (one request), retrying what may succeed if repeated.

        Raises _NotFound for a missing key, StorageFull when the store is
        full, StoreFailed for anything else that failed (at once, or once
        ``attempts_max`` tries are spent).
        """
        for attempt in range(1, self._attempts_max + 1):
            with self._lock:
                self._requests += 1
            try:
                with self._slots:
                    return call()
            except Exception as error:
                verdict = _classify(error)
                if verdict == "not found":
                    raise _NotFound from None
                if verdict == "retry" and attempt < self._attempts_max:
                    with self._lock:
                        self._retries += 1
                    ceiling_s = min(self._backoff_s_max, self._backoff_s * 2 ** (attempt - 1))
                    self._sleep(self._rng.uniform(0, ceiling_s))
                    continue
                raise self._failure(error, verdict, doing, attempt) from error
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _failure(self, error: Exception, verdict: str, doing: str, attempts: int) -> Exception:
        if isinstance(error, StoreError):
            return error
        reason = _describe(error)
        if verdict == "full":
            return StorageFull(
                f"{doing}: the chunk store {self._where} is full ({reason}). "
                "Free space or raise its quota, then retry."
            )
        if verdict == "denied":
            return StoreFailed(
                f"{doing}: the chunk store {self._where} refused access ({reason}). Check the "
                "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and their permissions.",
                errno_code=errno.EACCES,
            )
        if verdict == "no bucket":
            return StoreFailed(
                f"{doing}: the chunk bucket {self._bucket!r} does not exist ({reason})",
                errno_code=errno.ENOENT,
            )
        if verdict == "retry":
            return StoreFailed(
                f"{doing}: the chunk store {self._where} kept failing ({reason}) through "
                f"{attempts} tries; nothing was left half-done. Retry later."
            )
        return StoreFailed(f"{doing}: the chunk store {self._where} answered {reason}")


def _classify(error: Exception) -> str:
    """What a failed request means: 'not found', 'no bucket', 'retry', 'full',
    'denied' or 'fatal'."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
        SSLError,
    )

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code == "NoSuchBucket":
            return "no bucket"
        if code in _NOT_FOUND_CODES or status == 404:
            return "not found"
        if code in _STORAGE_FULL_CODES or status == 507:
            return "full"
        if code in _RETRYABLE_CODES or status in _RETRYABLE_STATUSES:
            return "retry"
        if status == 403:
            return "denied"
        return "fatal"
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return "denied"
    if isinstance(error, SSLError):
        return "fatal"  # a certificate problem does not heal by itself
    if isinstance(error, HTTPClientError | ConnectionError | IncompleteReadError):
        return "retry"
    return "fatal"


def _describe(error: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{status} {details.get('Code', '')}: {details.get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"


def _make_client(
    *,
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    session_token: str | None,
    addressing_style: str,
    connections_max: int,
    timeout_s: float,
    verify_tls: bool | str,
) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise InvalidArgument(
            "chunks in S3 need boto3: install it with `pip install 'tier0[s3]'`"
        ) from None
    session = boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
    )
    config = Config(
        region_name=region or session.region_name or "us-east-1",
        max_pool_connections=connections_max,
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        # Retries are ours (_request): botocore's would hide them from the
        # counters and retry what we must not.
        retries={"total_max_attempts": 1},
        # Content-MD5 protects every PUT; a SHA-256 of the payload in the
        # signature (botocore's default over plain HTTP) or a second checksum
        # would only cost CPU.
        s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config, verify=verify_tls)


def open_chunk_backend(
    location: str | None, *, data_dir: Path, endpoint_url: str | None = None
) -> ChunkBackend:
    """The chunk backend ``location`` names.

    None (or "") keeps chunks in ``data_dir/chunks``; ``s3://BUCKET[/PREFIX]``
    in an S3-compatible store (at ``endpoint_url``, AWS by default); a
    directory path or ``file://`` URL in that directory (a shared filesystem,
    for several hosts). Raises InvalidArgument for anything else, or for an
    ``endpoint_url`` without an s3:// location.
    """
    if location and location.startswith("s3://"):
        return S3ChunkBackend.from_url(location, endpoint_url=endpoint_url)
    if endpoint_url:
        raise InvalidArgument(
            f"a chunk endpoint ({endpoint_url}) needs an s3://BUCKET[/PREFIX] chunk location"
        )
    if not location:
        return LocalChunkBackend(data_dir / "chunks")
    if location.startswith("file://"):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise InvalidArgument(f"{location!r} is not a file:///PATH URL")
        return LocalChunkBackend(Path(parts.path))
    if "://" in location or not os.path.isabs(location):
        raise InvalidArgument(
            f"chunk location {location!r}: give s3://BUCKET[/PREFIX], file:///PATH or an "
            "absolute directory path"
        )
    return LocalChunkBackend(Path(location))
