"""`PreparedWrite`: a write authorized and built, whose transaction the caller commits,
alone or with others (`tier0.meta.Committer.run_many`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tier0.identity import Decision
from tier0.meta import Outcome, WriteTx
from tier0.store import _ops

if TYPE_CHECKING:
    from tier0.store._store import Store

__all__ = ["PreparedWrite"]

T = TypeVar("T")


class PreparedWrite(Generic[T]):
    """A write authorized and built but not committed; ``op`` is its transaction.

    `commit` runs it alone, as the store's own methods do. A caller that
    commits many writes together runs their ``op`` at once
    (`tier0.meta.Committer.run_many`) and passes each outcome to `settle`.
    Either way a write decided on a bucket owner that changed meanwhile
    (``op`` raises `StaleOwner`) is decided again and committed alone.
    """

    __slots__ = (
        "_action",
        "_bucket",
        "_build",
        "_params",
        "_resource",
        "_store",
        "_translate",
        "op",
    )

    def __init__(
        self,
        store: Store,
        action: str,
        bucket: str,
        resource: str,
        decision: Decision,
        build: Callable[[Decision], Callable[[WriteTx], T]],
        *,
        params: Mapping[str, str | None] | None = None,
        translate: Callable[[BaseException], BaseException] | None = None,
    ) -> None:
        self._store = store
        self._action = action
        self._bucket = bucket
        self._resource = resource
        self._build = build
        self._params = params
        #: Maps an error of the transaction onto the one the caller sees.
        self._translate = translate
        self.op: Callable[[WriteTx], T] = build(decision)

    @staticmethod
    def commit_many(writes: Sequence[PreparedWrite[Any]]) -> list[Outcome]:
        """Commit ``writes`` (of one store) together, in as few transactions as
        `Committer.run_many` takes; pass each outcome to its write's `settle`."""
        if not writes:
            return []
        kernel = writes[0]._store._kernel
        assert all(write._store._kernel is kernel for write in writes), "writes of one store"
        return kernel.committer.run_many([write.op for write in writes])

    def commit(self) -> T:
        """Commit the write alone; its result, once durable."""
        try:
            return self._store._kernel.committer.run(self.op)
        except Exception as error:
            return self._recover(error)

    def settle(self, outcome: Outcome) -> T:
        """The result of ``op`` committed by `Committer.run_many`, or its error raised."""
        if outcome.error is None:
            return outcome.result  # type: ignore[no-any-return]
        return self._recover(outcome.error)

    def _recover(self, error: BaseException) -> T:
        if not isinstance(error, _ops.StaleOwner):
            raise self._translated(error)
        store = self._store
        store._kernel.owners.pop(self._bucket, None)
        fresh = store._authorize(
            self._action,
            self._resource,
            owner=store._owner(self._bucket),
            deferred=True,
            params=self._params,
        )
        try:
            return store._kernel.committer.run(self._build(fresh))
        except Exception as again:
            raise self._translated(again) from None

    def _translated(self, error: BaseException) -> BaseException:
        return error if self._translate is None else self._translate(error)
