"""``Tier0File``, an object opened through fsspec, and the background ``put`` behind its writes.

What a caller sees is in ``_filesystem``'s docstring (Reading, Writing).
The machinery: a file opened for writing buffers ``WRITE_BLOCK_BYTES``. An
object that fits in one block is stored by one plain ``put`` when the file
commits. A larger one starts a ``_StreamingPut`` at its first full block: a
``put`` on its own thread that reads the blocks from a ``_Channel`` holding
at most ``WRITE_QUEUE_BLOCKS_MAX`` of them, so a writer that gets ahead
waits. The ``put`` commits only when the channel is closed (the file
commits); aborting the channel makes it raise, so nothing is committed.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from fsspec.spec import AbstractBufferedFile

from tier0.protocols.fsspec._paths import split_object_path, translate_errors
from tier0.store import ObjectInfo, validate_key

if TYPE_CHECKING:
    from tier0.protocols.fsspec._filesystem import Tier0FileSystem

#: Writes are handed to the background ``put`` in blocks of this size.
WRITE_BLOCK_BYTES: Final = 1024 * 1024
#: Blocks waiting for the background ``put``; a writer that gets this far ahead waits.
WRITE_QUEUE_BLOCKS_MAX: Final = 4


class _Aborted(Exception):
    """Raised into a background ``put`` to make it fail, so that it commits nothing."""


class _Channel:
    """A bounded single-producer, single-consumer queue of blocks that either side can end.

    ``queue.Queue`` cannot wake a producer blocked on a full queue when the
    consumer dies, and that producer would hang; here ``hang_up`` wakes it.
    """

    def __init__(self, blocks_max: int) -> None:
        self._blocks: collections.deque[bytes] = collections.deque()
        self._blocks_max = blocks_max
        self._changed = threading.Condition()
        self._closed = False  # the producer sent everything
        self._aborted = False  # the producer gave up: the consumer must fail
        self._hung_up = False  # the consumer stopped reading

    def send(self, block: bytes) -> bool:
        """Queue ``block``, waiting while the queue is full; False if the consumer is gone."""
        with self._changed:
            self._changed.wait_for(lambda: self._hung_up or len(self._blocks) < self._blocks_max)
            if self._hung_up:
                return False
            self._blocks.append(block)
            self._changed.notify_all()
            return True

    def receive(self) -> Iterator[bytes]:
        """The blocks in order, until ``close``; raises ``_Aborted`` after ``abort``."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._blocks or self._closed or self._aborted)
                if self._aborted:
                    raise _Aborted("the writer discarded this object")
                if not self._blocks:
                    return
                block = self._blocks.popleft()
                self._changed.notify_all()
            yield block

    def close(self) -> None:
        """The producer sent everything: ``receive`` ends once the queued blocks are read."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def abort(self) -> None:
        """The producer gives up: queued blocks are dropped and ``receive`` raises ``_Aborted``."""
        with self._changed:
            self._aborted = True
            self._blocks.clear()
            self._changed.notify_all()

    def hang_up(self) -> None:
        """The consumer stops reading: ``send``, blocked or not, returns False from now on."""
        with self._changed:
            self._hung_up = True
            self._blocks.clear()
            self._changed.notify_all()


class _StreamingPut:
    """A ``put`` on its own thread, fed block by block; it commits on ``finish`` only."""

    def __init__(self, put: Callable[[Iterator[bytes]], ObjectInfo], *, blocks_max: int) -> None:
        self._channel = _Channel(blocks_max)
        self._put = put
        self._result: ObjectInfo | None = None
        self._error: BaseException | None = None
        # A daemon: a write abandoned without close must not keep the interpreter alive.
        self._thread = threading.Thread(target=self._run, name="tier0-fsspec-put", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._put(self._channel.receive())
        except BaseException as error:
            self._error = error
        finally:
            self._channel.hang_up()

    def send(self, block: bytes) -> None:
        """Hand over ``block``; raises the ``put``'s error if it has failed."""
        if not self._channel.send(block):
            self._thread.join()
            assert self._error is not None, "a put ends early only by failing"
            raise self._error

    def finish(self) -> ObjectInfo:
        """End the stream and wait for the commit; raises what the ``put`` raised."""
        self._channel.close()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def abort(self, *, wait: bool) -> None:
        """Make the ``put`` fail (nothing is committed); ``wait`` for its thread to end."""
        self._channel.abort()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()


class Tier0File(AbstractBufferedFile):  # type: ignore[misc]  # fsspec is untyped
    """An object opened through ``fs.open``: ``"rb"``, ``"wb"`` or ``"xb"``.

    Writing takes ``content_type=`` and ``metadata=``; the object appears at
    ``commit`` (on ``close``, or when the transaction ends). Opening raises
    IsADirectoryError for a bucket or directory path, FileNotFoundError for a
    missing object (reading) or bucket (writing), FileExistsError for ``"xb"``
    on an existing object, ValueError for another mode and InvalidKey (a
    ValueError) for a key the store refuses.

    >>> with fs.open("bkt/a.md", "wb", content_type="text/markdown") as f:  # doctest: +SKIP
    ...     f.write(b"# hello")
    """

    fs: Tier0FileSystem

    def __init__(
        self,
        fs: Tier0FileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = None,
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._stream: _StreamingPut | None = None
        self._tail: bytes | None = None  # the whole object, when it fit in one block
        self._done = False  # committed or discarded
        self._bucket, self._key = split_object_path(path)
        if mode not in ("rb", "wb", "xb"):
            raise ValueError(
                f"mode {mode!r} is not supported: objects are written whole, with no append;"
                " open 'rb', 'wb' or 'xb'"
            )
        if mode == "rb":
            details = fs.info(path)
            if details["type"] != "file":
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            self._details = details
            super().__init__(
                fs, path, mode, block_size or "default", autocommit, cache_type, cache_options,
                size=details["size"], **kwargs,
            )  # fmt: skip
            return
        validate_key(self._key)  # a bad name fails here, not after the bytes are sent
        self._put_options: dict[str, Any] = {"content_type": content_type, "metadata": metadata}
        if mode == "xb":
            # Checked again, atomically, at commit: another writer may come first.
            self._put_options["if_none_match"] = "*"
        # Fail at open, not at close, where we can tell. A principal may be
        # allowed to write without being allowed to look: then the put decides.
        with contextlib.suppress(PermissionError):
            with translate_errors(path):
                fs.t0.head_bucket(self._bucket)
            if mode == "xb" and fs.isfile(path):
                raise FileExistsError(errno.EEXIST, "the object exists", path)
        super().__init__(
            fs, path, mode, block_size or WRITE_BLOCK_BYTES, autocommit, cache_type, cache_options,
            **kwargs,
        )  # fmt: skip

    # -- reading ---------------------------------------------------------------------------

    def _fetch_range(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the version opened; OSError(ESTALE) if it was overwritten."""
        # fsspec's caches ask past the end, where the store would raise InvalidRange.
        if start >= self.size or end <= start:
            return b""
        info = self.details
        with (
            translate_errors(self.path),
            self.fs.t0.get(
                self._bucket, self._key, version_id=info["version_id"],
                offset=start, length=end - start,
            ) as reader,
        ):  # fmt: skip
            if reader.info.etag != info["etag"]:
                raise OSError(errno.ESTALE, "the object changed while open; reopen it", self.path)
            return reader.read()

    # -- writing ---------------------------------------------------------------------------

    def _upload_chunk(self, final: bool = False) -> bool:
        """Take the buffered block; True: the buffer may be reused.

        fsspec calls this once the buffer holds a block or more, and at close
        with ``final``. Raises what the background ``put`` raised.
        """
        block = self.buffer.getvalue()
        with translate_errors(self.path):
            if self._stream is None and final:
                self._tail = block  # small enough for one plain put
            else:
                if self._stream is None:
                    # The thread gets the store, not this file: were it to hold the
                    # file, a file dropped unclosed would never be collected, and
                    # its thread would wait for blocks forever.
                    put = functools.partial(
                        self.fs.t0.put, self._bucket, self._key, **self._put_options
                    )
                    self._stream = _StreamingPut(put, blocks_max=WRITE_QUEUE_BLOCKS_MAX)
                if block:  # empty at close when the size is a whole number of blocks
                    self._stream.send(block)
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        """Make the written bytes the object's current version (once; after ``close``)."""
        if self._done:
            return
        self._done = True
        with translate_errors(self.path):
            if self._stream is not None:
                self._stream.finish()
            else:
                self.fs.t0.put(self._bucket, self._key, self._tail or b"", **self._put_options)
        self._tail = None

    def discard(self) -> None:
        """Drop what was written; the object stays as it was (once; a no-op after ``commit``)."""
        self._abandon(wait=True)

    def _abandon(self, *, wait: bool) -> None:
        """Discard, waiting for the background ``put`` to end only if ``wait``."""
        if self._done:
            return
        self._done = True
        self._tail = None
        if self._stream is not None:
            self._stream.abort(wait=wait)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self.writable():
            # The block failed, so what it wrote is incomplete: never commit it.
            self.discard()
            self.closed = True
            return
        self.close()

    def __del__(self) -> None:
        # ``mode`` is missing when __init__ raised early.
        if getattr(self, "mode", "rb") != "rb" and not self.closed:
            # Unclosed, so unfinished. (Python's own files flush here, but a
            # truncated object that looks whole is worse than none.) Do not
            # wait: the collector may run on any thread, the put's included.
            self._abandon(wait=False)
            self.closed = True
            return
        super().__del__()
