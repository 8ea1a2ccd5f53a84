"""Request bodies streamed into kernel writes, and objects streamed out as responses.

The kernel is synchronous, the server is not. An upload's body is verified as
it arrives (signature, payload hash, chunk signatures) and handed, block by
block through a bounded queue, to a kernel write running on one of the
gateway's threads, so one upload holds a few MiB whatever its size. The write
commits only after the body was received whole and verified: any failure
before that reaches the writer as an exception from its data, and nothing is
written.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from tier0.protocols.s3._chunked import BodyDecoder, IncompleteBody
from tier0.protocols.s3._http import ZERO_COPY_SEND, Request, receive_whole
from tier0.store import FileSpan, ObjectReader, PreparedWrite, release

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = ["SMALL_BODY_BYTES_MAX", "stream_object", "write_small", "write_streamed"]

T = TypeVar("T")

_END: Final = object()
#: Bodies up to this size travel whole: received on the event loop, then one
#: kernel call (a GET reads them whole on the kernel's thread). Streaming them
#: would cost more hand-offs between the loop and the thread pool than bytes.
SMALL_BODY_BYTES_MAX: Final = 256 * 1024


async def write_streamed(
    gateway: S3Gateway,
    request: Request,
    decoder: BodyDecoder,
    write: Callable[[Iterator[bytes]], T],
    *,
    trailers: dict[str, str] | None = None,
) -> T:
    """Run ``write(blocks)`` on a gateway thread, fed with the request's verified body.

    ``trailers`` is filled from the decoder before the writer reads the body's
    end, so a write that checks trailing checksums sees them (the queue orders
    the two). Returns what ``write`` returned; raises the first failure, the
    body's own before the writer's.
    """
    loop = asyncio.get_running_loop()
    feed = _Feed(loop, depth=gateway.limits.feed_depth_max)
    writer = loop.run_in_executor(gateway.executor, write, feed.blocks())
    failure: BaseException | None = None
    try:
        await _feed_body(request, decoder, feed, writer, trailers, gateway.limits.feed_block_bytes)
    except BaseException as error:
        # The writer sees the failure as an exception from its data and
        # abandons the write: nothing is committed. A cancelled request must
        # release the writer too, or its thread would wait forever.
        if not isinstance(error, Exception):
            feed.abort(IncompleteBody("The request was cancelled."))
            writer.add_done_callback(_retrieve)
            raise
        failure = error
        feed.abort(error)
    try:
        result: T = await writer
    except Exception:
        # The writer's own error explains a writer that stopped early; any
        # other failure of ours caused the writer's, so ours is the answer.
        if failure is None or isinstance(failure, _WriterStopped):
            raise
    if failure is not None:
        raise failure
    return result


async def write_small(
    gateway: S3Gateway,
    request: Request,
    decoder: BodyDecoder,
    prepare: Callable[[bytes], PreparedWrite[T]],
    *,
    trailers: dict[str, str] | None = None,
) -> T:
    """`write_streamed` for a body declared to be at most `SMALL_BODY_BYTES_MAX`:
    received and verified whole first, then ``prepare(body)`` committed.

    A body small enough to live in its metadata row, where metadata is local,
    is prepared and committed on the loop, with the other writes of the same
    turn (`LoopCommits`); any other in one kernel call on a thread. A body
    that turns out longer than declared is refused (by the HTTP server, the
    decoder, or the limit) before anything is written.
    """
    body, received = await receive_whole(request, decoder, limit=SMALL_BODY_BYTES_MAX)
    if trailers is not None:
        trailers.update(received)
    if gateway.local_reads and len(body) <= gateway.inline_bytes_max:
        return await gateway.loop_commits.commit(prepare(body))
    return await gateway.run_blocking(lambda: prepare(body).commit())


async def stream_object(
    request: Request,
    reader: ObjectReader,
    *,
    status: int,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Send ``reader``'s bytes as the response.

    The store's threads read and verify the chunks ahead of the send
    (`tier0.store.READ_AHEAD_BYTES`); the loop awaits each block's future
    directly, so a response holds no gateway thread while it streams and a
    block costs one hand-off between threads, not two. Where the server
    takes zero-copy sends, a chunk stored raw in a local file is sent from
    that file (checked, never copied into the process).
    """
    send = request.send
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for future in reader.futures(files=request.zero_copy):
            if not future.done():
                try:
                    await asyncio.wrap_future(future)
                except BaseException:
                    future.add_done_callback(release)  # it may yet open a file
                    raise
            block = future.result()
            if isinstance(block, FileSpan):
                try:
                    await send(
                        {
                            "type": ZERO_COPY_SEND,
                            "file": block.fd,
                            "offset": block.offset,
                            "count": block.count,
                            "more_body": True,
                        }
                    )
                finally:
                    block.close()
            else:
                await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        reader.close()


async def _feed_body(
    request: Request,
    decoder: BodyDecoder,
    feed: _Feed,
    writer: asyncio.Future[Any],
    trailers: dict[str, str] | None,
    block_bytes: int,
) -> None:
    pending: list[bytes] = []
    pending_bytes = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise IncompleteBody("The client went away before it sent the whole body.")
        for payload in decoder.feed(message.get("body", b"")):
            pending.append(payload)
            pending_bytes += len(payload)
        if pending_bytes >= block_bytes:
            await feed.put(b"".join(pending), writer)
            pending, pending_bytes = [], 0
        if not message.get("more_body", False):
            break
    # Raises unless the body is exactly the one that was signed.
    received = decoder.finish()
    if trailers is not None:
        trailers.update(received)
    if pending:
        await feed.put(b"".join(pending), writer)
    await feed.put(_END, writer)


class _Feed:
    """A bounded hand-off of body blocks from the event loop to one writer thread.

    The loop never blocks: when the queue is full it waits for the writer to
    take a block (or to stop, having failed).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, depth: int) -> None:
        self._loop = loop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._space = asyncio.Event()

    async def put(self, item: object, writer: asyncio.Future[Any]) -> None:
        """Queue ``item``; raises `_WriterStopped` if the writer ended before taking it."""
        while True:
            self._space.clear()
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
            space = asyncio.ensure_future(self._space.wait())
            try:
                await asyncio.wait({space, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                space.cancel()
            if writer.done():
                raise _WriterStopped

    def abort(self, error: BaseException) -> None:
        """Make the writer fail with ``error``: after what is queued, or at once if full."""
        try:
            self._queue.put_nowait(error)
        except queue.Full:
            # Drop what the writer has not taken: it is to be thrown away anyway.
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put_nowait(error)

    def blocks(self) -> Iterator[bytes]:
        """The blocks, for the writer thread; raises the error given to `abort`."""
        while True:
            item = self._queue.get()
            self._loop.call_soon_threadsafe(self._space.set)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Consume a future's outcome that nobody awaits, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()


class _WriterStopped(Exception):
    """The writer thread ended before taking all of the body (it failed; its error says why)."""
