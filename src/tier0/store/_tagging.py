"""Object tags in the kernel: read, put and removed as actions of their own (S3's
``s3:GetObjectTagging``, ``s3:PutObjectTagging``, ``s3:DeleteObjectTagging`` and
their ``Version`` forms), in place: tagging makes no new version."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from tier0.store import _ops
from tier0.store._names import validate_key, validate_tags
from tier0.store._types import ObjectTags

if TYPE_CHECKING:
    from tier0.identity import Decision
    from tier0.meta import WriteTx
    from tier0.store._manifest import Manifest
    from tier0.store._types import ObjectInfo

__all__ = ["TagMethods"]

T = TypeVar("T")


class TagMethods:
    """Object tags: part of `Store`."""

    if TYPE_CHECKING:

        def _authorize_write(
            self,
            action: str,
            bucket: str,
            resource: str,
            *,
            params: Mapping[str, str | None] | None = None,
        ) -> Decision: ...

        def _commit_write(
            self,
            action: str,
            bucket: str,
            resource: str,
            decision: Decision,
            build: Callable[[Decision], Callable[[WriteTx], T]],
            *,
            params: Mapping[str, str | None] | None = None,
        ) -> T: ...

        def _read_version(
            self, bucket: str, key: str, version_id: str | None, action: str
        ) -> tuple[ObjectInfo, bytes | None, Manifest | None]: ...

    def set_tags(
        self, bucket: str, key: str, tags: dict[str, str], *, version_id: str | None = None
    ) -> str:
        """Replace a version's tags (``s3:PutObjectTagging``, or
        ``s3:PutObjectVersionTagging`` for a named version); returns the version id."""
        validate_tags(tags)
        return self._change_tags(bucket, key, tags, version_id, "Put")

    def delete_tags(self, bucket: str, key: str, *, version_id: str | None = None) -> str:
        """Remove a version's tags (``s3:DeleteObjectTagging``, or
        ``s3:DeleteObjectVersionTagging`` for a named version); returns the version id."""
        return self._change_tags(bucket, key, {}, version_id, "Delete")

    def _change_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None, verb: str
    ) -> str:
        validate_key(key)
        action = f"s3:{verb}Object{'' if version_id is None else 'Version'}Tagging"
        params = {"s3:VersionId": version_id}
        decision = self._authorize_write(action, bucket, f"/{bucket}/{key}", params=params)
        return self._commit_write(
            action,
            bucket,
            f"/{bucket}/{key}",
            decision,
            lambda decided: (
                lambda tx: _ops.set_tags(
                    tx, bucket, key, version_id, tags, decided, event=f"ObjectTagging:{verb}"
                )
            ),
            params=params,
        )

    def get_tags(self, bucket: str, key: str, *, version_id: str | None = None) -> dict[str, str]:
        """A version's tags (see `object_tags`)."""
        return self.object_tags(bucket, key, version_id=version_id).tags

    def object_tags(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectTags:
        """A version's tags and its id: ``s3:GetObjectTagging``, or
        ``s3:GetObjectVersionTagging`` for a named version (the right to read the
        object is neither needed nor enough)."""
        action = "s3:GetObjectTagging" if version_id is None else "s3:GetObjectVersionTagging"
        info = self._read_version(bucket, key, version_id, action)[0]
        return ObjectTags(info.version_id, info.tags)
