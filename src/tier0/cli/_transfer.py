"""Moving bytes between local files and tier0: streamed, with a progress bar, atomically.

Memory stays bounded whatever the size: files are read and written in
``BLOCK_BYTES`` blocks and handed to the store as an iterator. A download is
written to a temporary file beside its target and renamed into place only
once it is complete and synced, so a failed or interrupted ``get`` leaves
no partial file behind (and never a truncated old one).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Final

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tier0 import ObjectInfo, Tier0
from tier0.cli._base import ObjectUrl

BLOCK_BYTES: Final = 1024 * 1024
#: Transfers larger than this get a progress bar (when stderr is a terminal).
PROGRESS_BYTES_MIN: Final = 4 * 1024 * 1024

Advance = Callable[[int], None]

progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help=f"Show a progress bar (default: for transfers over {PROGRESS_BYTES_MIN // 2**20} MiB "
    "when stderr is a terminal).",
)


@contextlib.contextmanager
def progress_bar(label: str, total: int | None, wanted: bool | None) -> Iterator[Advance]:
    """A function to report transferred bytes to; it draws a bar on stderr when one is due.

    ``wanted`` is the ``--progress/--no-progress`` flag: None decides by size
    and by whether stderr is a terminal.
    """
    if wanted is None:
        wanted = total is not None and total > PROGRESS_BYTES_MIN and sys.stderr.isatty()
    if not wanted:
        yield _ignore
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda count: progress.advance(task, count)


def _ignore(count: int) -> None:
    pass


def _blocks(stream: IO[bytes], advance: Advance) -> Iterator[bytes]:
    while block := stream.read(BLOCK_BYTES):
        advance(len(block))
        yield block


def upload(
    t0: Tier0,
    source: str,
    target: ObjectUrl,
    *,
    progress: bool | None,
    content_type: str | None = None,
    metadata: dict[str, str] | None = None,
) -> ObjectInfo:
    """Stream the local file ``source`` (``-`` for stdin) to ``target``; the version written."""
    if source == "-":
        stream: IO[bytes] = click.open_file("-", "rb")
        size = None
        closing: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    else:
        stream = open(source, "rb")  # noqa: SIM115 - closed by `closing` below
        closing = stream
        size = os.fstat(stream.fileno()).st_size
    with closing, progress_bar(f"put {target.key}", size, progress) as advance:
        return t0.put(
            target.bucket,
            target.key,
            _blocks(stream, advance),
            content_type=content_type,
            metadata=metadata,
        )


def download(
    t0: Tier0,
    source: ObjectUrl,
    target: str,
    *,
    progress: bool | None,
    version_id: str | None = None,
) -> ObjectInfo:
    """Stream ``source`` into the local file ``target`` (``-`` for stdout); its version."""
    with t0.get(source.bucket, source.key, version_id=version_id) as reader:
        label = f"get {source.key}"
        with progress_bar(label, reader.length, progress) as advance:
            if target == "-":
                stdout = click.open_file("-", "wb")
                for block in reader:
                    stdout.write(block)
                    advance(len(block))
                stdout.flush()
            else:
                with atomic_file(target) as out:
                    for block in reader:
                        out.write(block)
                        advance(len(block))
        return reader.info


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[IO[bytes]]:
    """A file that appears at ``path``, complete and synced, only if the block succeeds.

    The temporary file lives in the target's directory, so the final rename
    stays on one filesystem and is atomic; it takes the mode a plain
    ``open()`` would have given it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    # The only portable way to read the umask is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
