"""Reading multipart uploads: ListMultipartUploads, ListParts, and the parts of a
completed object (GET ``?partNumber``); the writes are in `tier0.store._multipart`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tier0.errors import InvalidArgument, InvalidPartNumber
from tier0.meta import load_json
from tier0.store import _ops
from tier0.store._multipart import (
    _PART_COLUMNS,
    _UPLOAD_COLUMNS,
    LIST_PARTS_MAX,
    LIST_UPLOADS_MAX,
    PartPage,
    UploadedPart,
    UploadPage,
    _check_part_number,
    _upload_facts,
    _upload_info,
    _upload_row,
)
from tier0.store._names import prefix_successor, validate_key, validate_prefix
from tier0.store._paging import Cursor, fetch_keyset, resume_point, walk
from tier0.store._reader import ObjectReader, open_reader
from tier0.store._types import ObjectInfo, from_us

if TYPE_CHECKING:
    from tier0.store._store import Store

__all__ = ["list_parts", "list_uploads", "read_part"]


def list_uploads(
    store: Store,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str | None = None,
    key_marker: str | None = None,
    upload_id_marker: str | None = None,
    limit: int = LIST_UPLOADS_MAX,
) -> UploadPage:
    """One page of the uploads in progress; see `Store.list_multipart_uploads`."""
    validate_prefix(prefix)
    if not 1 <= limit <= LIST_UPLOADS_MAX:
        raise InvalidArgument(f"limit must be 1..{LIST_UPLOADS_MAX}, got {limit}")
    store._authorize("s3:ListBucketMultipartUploads", f"/{bucket}", owner=store._owner(bucket))
    upper = prefix_successor(prefix)
    key, inclusive = resume_point(prefix, delimiter, key_marker)
    with store._kernel.meta.reader() as db:

        def fetch(cursor: Cursor, want: int) -> list[Any]:
            return fetch_keyset(
                db, "bucket = ?", [bucket], cursor, upper, "key, upload_id", want,
                select=f"SELECT {_UPLOAD_COLUMNS} FROM t0_uploads",
                after_within_key="upload_id > ?",
            )  # fmt: skip

        # The cursor resumes within a key after an upload id (row[0] of a row).
        start: Cursor = (key, inclusive, None if inclusive else upload_id_marker)
        rows, prefixes, truncated = walk(fetch, start, prefix, delimiter, limit)
    uploads = [_upload_info(row) for row in rows]
    if not truncated:
        return UploadPage(uploads, prefixes, False, None, None)
    if uploads and (not prefixes or uploads[-1].key > prefixes[-1]):
        return UploadPage(uploads, prefixes, True, uploads[-1].key, uploads[-1].upload_id)
    return UploadPage(uploads, prefixes, True, prefixes[-1], None)


def list_parts(
    store: Store,
    bucket: str,
    key: str,
    upload_id: str,
    *,
    part_number_marker: int = 0,
    limit: int = LIST_PARTS_MAX,
) -> PartPage:
    """One page of an upload's parts; see `Store.list_parts`."""
    validate_key(key)
    if not 1 <= limit <= LIST_PARTS_MAX:
        raise InvalidArgument(f"limit must be 1..{LIST_PARTS_MAX}, got {limit}")
    if part_number_marker < 0:
        raise InvalidArgument(f"part_number_marker must be >= 0, got {part_number_marker}")
    store._authorize(
        "s3:ListMultipartUploadParts",
        f"/{bucket}/{key}",
        owner=store._owner(bucket),
        facts=_upload_facts(store, bucket, upload_id),
    )
    with store._kernel.meta.reader() as db:
        upload = _upload_row(db, bucket, key, upload_id)
        rows = db.query_all(
            f"SELECT {_PART_COLUMNS} FROM t0_upload_parts WHERE upload_id = ? AND part_number > ?"
            " ORDER BY part_number LIMIT ?",
            (upload_id, part_number_marker, limit + 1),
        )
    parts = [
        UploadedPart(int(r[0]), int(r[1]), r[2], load_json(r[3]), from_us(r[4]))
        for r in rows[:limit]
    ]
    last = parts[-1].number if parts else part_number_marker
    return PartPage(upload, parts, len(rows) > limit, last)


def read_part(
    store: Store, bucket: str, key: str, number: int, *, version_id: str | None = None
) -> ObjectReader:
    """Stream one part of a version; see `Store.get_part`."""
    _check_part_number(number)
    info, inline, manifest = store._read_version(
        bucket, key, version_id, _ops.read_action(version_id)
    )
    offset, length = _part_span(info, number)
    kernel = store._kernel
    return open_reader(kernel.chunks, kernel.executor, info, inline, manifest, offset, length)


def _part_span(info: ObjectInfo, number: int) -> tuple[int, int]:
    """(offset, length) of part ``number``; an object not made of parts is its own part 1."""
    if not info.parts:
        if number == 1:
            return 0, info.size
    else:
        offset = 0
        for part in info.parts:
            if part.number == number:
                return offset, part.size
            offset += part.size
    raise InvalidPartNumber(
        f"{info.bucket}/{info.key} has no part {number}"
        f" (it has {len(info.parts) or 1} part{'s' if len(info.parts) > 1 else ''})"
    )


# -- helpers --------------------------------------------------------------------------------------
