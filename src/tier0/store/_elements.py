"""The store's seam for the kernel's other subsystems (`tier0.db`): elements that are
not objects (a table, say) decided and committed like objects, and object versions
read by byte range from a reader that seeks (DuckDB's Parquet reader).

A mixin of `Store`, kept apart so that `_store.py` holds the object API alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from tier0.identity import Decision, ObjectFacts
from tier0.meta import WriteTx
from tier0.store import _ops
from tier0.store._reader import iter_range
from tier0.store._types import ObjectInfo

if TYPE_CHECKING:
    from tier0.store._manifest import Manifest
    from tier0.store._store import Kernel

T = TypeVar("T")


class ElementMethods:
    """`Store` methods for other kernel subsystems; see the module docstring."""

    if TYPE_CHECKING:
        _kernel: Kernel

        def _authorize_write(self, action: str, bucket: str, resource: str) -> Decision: ...
        def _authorize(
            self,
            action: str,
            resource: str,
            *,
            owner: str | None,
            deferred: bool = False,
            params: Mapping[str, str | None] | None = None,
            facts: ObjectFacts | None = None,
        ) -> Decision: ...
        def _owner(self, bucket: str) -> str: ...
        def _commit_write(
            self, action: str, bucket: str, resource: str, decision: Decision,
            build: Callable[[Decision], Callable[[WriteTx], T]],
        ) -> T: ...  # fmt: skip
        def _read_version(
            self, bucket: str, key: str, version_id: str | None, action: str
        ) -> tuple[ObjectInfo, bytes | None, Manifest | None]: ...

    def authorize_element_write(self, action: str, bucket: str, name: str) -> Decision:
        """Decide this principal's ``action`` on element ``/<bucket>/<name>`` (not an
        object: a table, say) as a write: bucket owner, grants and bucket policy
        apply as for objects. The decision goes into the write's transaction
        (`commit_element_write`); a denial raises `AccessDenied` and is audited."""
        return self._authorize_write(action, bucket, f"/{bucket}/{name}")

    def authorize_element_read(self, action: str, bucket: str, name: str) -> Decision:
        """`authorize_element_write` for a read: the decision is audited now."""
        owner = self._kernel.owners.get(bucket) or self._owner(bucket)
        return self._authorize(
            action, f"/{bucket}/{name}", owner=owner, facts=ObjectFacts(lambda: None)
        )

    def commit_element_write(
        self,
        action: str,
        bucket: str,
        name: str,
        decision: Decision,
        build: Callable[[Decision], Callable[[WriteTx], T]],
    ) -> T:
        """Run ``build(decision)`` in a group-committed transaction and return its
        result once durable. The operation must call `owned_bucket_row` (it raises
        if the bucket changed owner since the decision; the write is then decided
        again with the fresh owner and rebuilt) and record ``decision`` with
        ``Authorizer.record_in``."""
        return self._commit_write(action, bucket, f"/{bucket}/{name}", decision, build)

    def open_version(
        self, bucket: str, key: str, *, version_id: str | None = None
    ) -> tuple[ObjectInfo, Callable[[int, int], bytes]]:
        """A version (the current one by default) and a function reading ``(offset,
        length)`` of its bytes, authorized once as ``s3:GetObject`` (``s3:GetObjectVersion``
        for a version named).

        The reads stay on that version's bytes even if the key is overwritten
        meanwhile (they are immutable); for random access by readers that seek,
        such as a Parquet reader. Only the chunks a range overlaps are read.
        """
        info, inline, manifest = self._read_version(
            bucket, key, version_id, _ops.read_action(version_id)
        )
        kernel = self._kernel

        def read(offset: int, length: int) -> bytes:
            offset = min(max(offset, 0), info.size)
            length = min(max(length, 0), info.size - offset)
            if inline is not None:
                return inline[offset : offset + length]
            assert manifest is not None or info.size == 0
            if manifest is None or not length:
                return b""
            return b"".join(iter_range(kernel.chunks, kernel.executor, manifest, offset, length))

        return info, read
