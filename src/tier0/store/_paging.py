"""Listings: keyset pagination over the catalog's key order, and `Store`'s listing methods.

A listing walks rows in key order (UTF-8 byte order, as S3 lists), rolls keys
that hold a delimiter into common prefixes, and resumes from a cursor, never
an offset: each page is one indexed range scan however deep the listing is,
and a page stays consistent with the last while writers go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from tier0.errors import InvalidArgument, NoSuchVersion
from tier0.identity import Decision
from tier0.meta import Connection
from tier0.store import _ops
from tier0.store._names import prefix_successor, validate_prefix
from tier0.store._ops import VERSION_COLUMNS
from tier0.store._types import ListPage, ObjectInfo, VersionPage

if TYPE_CHECKING:
    from tier0.store._store import Kernel

__all__ = ["LIST_LIMIT_MAX", "Cursor", "ListingMethods", "fetch_keyset", "resume_point", "walk"]

#: Keys (and common prefixes) in one page: S3's maximum.
LIST_LIMIT_MAX: Final = 1000


#: Where a listing resumes: (key, inclusive, within). With ``inclusive`` it
#: starts at ``key``; else just after ``key``, or, when ``within`` is set, after
#: that row of the key (a version's seq, an upload's id).
Cursor = tuple[str, bool, Any]


def fetch_keyset(
    db: Connection,
    where: str,
    params: list[Any],
    cursor: Cursor,
    upper: str | None,
    order: str,
    want: int,
    *,
    select: str = f"SELECT {VERSION_COLUMNS} FROM t0_versions",
    after_within_key: str = "seq < ?",
) -> list[Any]:
    """Up to ``want`` rows of ``select`` matching ``where`` from ``cursor`` on, below ``upper``.

    Keyset pagination: the cursor's third element, when set, resumes within
    its key (``after_within_key``: a version's seq by default, newest first).
    """
    key, inclusive, within = cursor
    sql = f"{select} WHERE {where}"
    params = [*params]
    if inclusive:
        sql += " AND key >= ?"
        params.append(key)
    elif within is not None:
        sql += f" AND (key > ? OR (key = ? AND {after_within_key}))"
        params += [key, key, within]
    else:
        sql += " AND key > ?"
        params.append(key)
    if upper is not None:
        sql += " AND key < ?"
        params.append(upper)
    return db.query_all(f"{sql} ORDER BY {order} LIMIT ?", (*params, want))


def walk(
    fetch: Callable[[Cursor, int], list[Any]],
    cursor: Cursor,
    prefix: str,
    delimiter: str | None,
    limit: int,
) -> tuple[list[Any], list[str], bool]:
    """Rows and common prefixes in key order, ``limit`` of them together, and whether more follow.

    Keys holding ``delimiter`` after ``prefix`` roll up into one common prefix
    each. The rows under a prefix just listed are skipped within a fetched
    page; when a page runs out, the next fetch seeks past the prefix, so a
    prefix over millions of keys costs one seek, not a scan.
    """
    rows_out: list[Any] = []
    prefixes: list[str] = []
    while True:
        want = limit - len(rows_out) - len(prefixes) + 1
        rows = fetch(cursor, want)
        if not rows:
            return rows_out, prefixes, False
        rolled_into: str | None = None
        for row in rows:
            key = row[2]
            if rolled_into is not None and key.startswith(rolled_into):
                continue  # under the common prefix just listed: counted once
            if len(rows_out) + len(prefixes) == limit:
                return rows_out, prefixes, True
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                rolled_into = key[: cut + len(delimiter or "")]
                prefixes.append(rolled_into)
                following = prefix_successor(rolled_into)
                if following is None:
                    return rows_out, prefixes, False
                cursor = (following, True, None)
                continue
            rows_out.append(row)
            cursor = (key, False, row[0])
        if len(rows) < want:
            return rows_out, prefixes, False


def resume_point(prefix: str, delimiter: str | None, marker: str | None) -> tuple[str, bool]:
    """Where a listing starts: (key, inclusive).

    A marker that is itself a common prefix (as ``next_start_after`` is when a
    page ended on one) resumes after every key under it, as S3 does; any
    other marker resumes just after itself.
    """
    if marker is None or marker < prefix:
        return prefix, True
    if (
        delimiter
        and marker.endswith(delimiter)
        and marker.find(delimiter, len(prefix)) == len(marker) - len(delimiter)
    ):
        following = prefix_successor(marker)
        if following is not None:
            return following, True
    return marker, False


class ListingMethods:
    """Listing current objects and versions: part of `Store`."""

    if TYPE_CHECKING:
        _kernel: Kernel

        def _authorize(
            self,
            action: str,
            resource: str,
            *,
            owner: str | None,
            deferred: bool = False,
            params: Mapping[str, str | None] | None = None,
        ) -> Decision: ...

        def _owner(self, bucket: str) -> str: ...

    def list(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        start_after: str | None = None,
        limit: int = LIST_LIMIT_MAX,
    ) -> ListPage:
        """One page of current objects in key order (UTF-8 byte order, like S3).

        With a ``delimiter``, keys that hold it after ``prefix`` are rolled up
        into ``prefixes`` (S3's CommonPrefixes). Each object or prefix counts
        toward ``limit`` (1..1000).
        """
        validate_prefix(prefix)
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be 1..{LIST_LIMIT_MAX}, got {limit}")
        self._authorize(
            "s3:ListBucket",
            f"/{bucket}",
            owner=self._owner(bucket),
            params={"s3:prefix": prefix, "s3:delimiter": delimiter, "s3:max-keys": str(limit)},
        )
        key, inclusive = resume_point(prefix, delimiter, start_after)
        upper = prefix_successor(prefix)
        where = "bucket = ? AND is_latest = 1 AND is_delete_marker = 0"
        with self._kernel.meta.reader() as db:

            def fetch(cursor: Cursor, want: int) -> list[Any]:
                # One current row per key: resuming after a key needs no seq.
                return fetch_keyset(db, where, [bucket], (*cursor[:2], None), upper, "key", want)

            rows, prefixes, truncated = walk(
                fetch, (key, inclusive, None), prefix, delimiter, limit
            )
        objects = [_ops.row_to_info(row) for row in rows]
        if not truncated:
            return ListPage(objects, prefixes, False, None)
        return ListPage(objects, prefixes, True, _last(objects, prefixes))

    def iter_objects(self, bucket: str, *, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every current object under ``prefix``, page by page."""
        start_after = None
        while True:
            page = self.list(bucket, prefix=prefix, start_after=start_after)
            yield from page.objects
            if not page.truncated:
                return
            start_after = page.next_start_after

    def list_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        key_marker: str | None = None,
        version_marker: str | None = None,
        limit: int = LIST_LIMIT_MAX,
    ) -> VersionPage:
        """One page of versions and delete markers: key ascending, newest first."""
        validate_prefix(prefix)
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be 1..{LIST_LIMIT_MAX}, got {limit}")
        self._authorize(
            "s3:ListBucketVersions",
            f"/{bucket}",
            owner=self._owner(bucket),
            params={"s3:prefix": prefix, "s3:delimiter": delimiter, "s3:max-keys": str(limit)},
        )
        upper = prefix_successor(prefix)
        with self._kernel.meta.reader() as db:
            after_seq = None
            if key_marker is not None and version_marker is not None:
                row = db.query_one(
                    "SELECT seq FROM t0_versions WHERE bucket = ? AND key = ? AND version_id = ?",
                    (bucket, key_marker, version_marker),
                )
                if row is None:
                    raise NoSuchVersion(
                        f"version marker {version_marker!r} is not a version of {key_marker!r}"
                    )
                after_seq = row[0]
            key, inclusive = resume_point(prefix, delimiter, key_marker)

            def fetch(cursor: Cursor, want: int) -> list[Any]:
                return fetch_keyset(
                    db, "bucket = ?", [bucket], cursor, upper, "key, seq DESC", want
                )

            start: Cursor = (key, inclusive, None if inclusive else after_seq)
            rows, prefixes, truncated = walk(fetch, start, prefix, delimiter, limit)
        versions = [_ops.row_to_info(row) for row in rows]
        if not truncated:
            return VersionPage(versions, prefixes, False, None, None)
        return _truncated_versions(versions, prefixes)


def _truncated_versions(versions: list[ObjectInfo], prefixes: list[str]) -> VersionPage:
    """A full page; its markers name the last entry (a version, or a common prefix)."""
    if versions and (not prefixes or versions[-1].key > prefixes[-1]):
        return VersionPage(versions, prefixes, True, versions[-1].key, versions[-1].version_id)
    return VersionPage(versions, prefixes, True, prefixes[-1], None)


def _last(objects: list[ObjectInfo], prefixes: list[str]) -> str:
    candidates = [o.key for o in objects[-1:]] + prefixes[-1:]
    return max(candidates)
