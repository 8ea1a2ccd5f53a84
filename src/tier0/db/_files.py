"""The files a query may read, as an fsspec filesystem DuckDB reads through.

DuckDB reads Parquet, CSV and JSON itself (projection, row-group pruning,
only the byte ranges it needs) from any fsspec filesystem registered with
it. This one serves ``t0blob://<grant>/<name>`` paths and nothing else:
before a query runs, the engine *grants* it the table data files and object
versions it was authorized to read, each under an unguessable grant
prefix, and revokes them when the query ends. A path that was not granted
does not exist, so SQL that names one itself reads nothing; with DuckDB's
external access switched off, these grants are all a query can read.

Each granted file is immutable (a table data file, or a pinned object
version), so reads need no locking and a query sees one snapshot even while
writers commit.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

PROTOCOL: Final = "t0blob"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_BLOCK_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GrantedFile:
    """One readable file: its size, and how to read a byte range of it."""

    size: int
    read: Callable[[int, int], bytes]  # (offset, length) -> bytes


class BlobFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Granted files by path; everything else is missing."""

    protocol = PROTOCOL
    cachable = False  # one instance per engine, never shared through fsspec's cache

    def __init__(self) -> None:
        super().__init__()
        self._files: dict[str, GrantedFile] = {}
        self._lock = threading.Lock()

    def grant(self, files: Iterable[tuple[str, GrantedFile]]) -> Grant:
        """Make ``files`` (name → file) readable until the grant is revoked."""
        prefix = secrets.token_hex(12)
        paths = {f"{prefix}/{name}": file for name, file in files}
        with self._lock:
            self._files.update(paths)
        return Grant(self, prefix, list(paths))

    def revoke(self, paths: Iterable[str]) -> None:
        with self._lock:
            for path in paths:
                self._files.pop(path, None)

    @property
    def granted(self) -> int:
        return len(self._files)

    def _lookup(self, path: str) -> GrantedFile:
        name = self._strip_protocol(path)
        with self._lock:
            file = self._files.get(name)
        if file is None:
            raise FileNotFoundError(path)
        return file

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        return {"name": name, "size": self._lookup(name).size, "type": "file"}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entry = self.info(path)
        return [entry] if detail else [entry["name"]]

    def modified(self, path: str) -> dt.datetime:
        self._lookup(path)
        return _EPOCH  # immutable: the time carries no information

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> AbstractBufferedFile:
        if mode != "rb":
            raise PermissionError(f"{path} is read-only")
        name = self._strip_protocol(path)
        file = self._lookup(name)
        return _GrantedReader(self, name, file)


class _GrantedReader(AbstractBufferedFile):  # type: ignore[misc]
    def __init__(self, fs: BlobFileSystem, path: str, file: GrantedFile) -> None:
        # Blocks of one chunk (1 MiB): a read decodes whole chunks anyway, and fsspec's
        # default 5 MiB would fetch four more than a point lookup needs.
        super().__init__(
            fs, path, mode="rb", size=file.size, cache_type="readahead", block_size=_BLOCK_BYTES
        )
        self._file = file

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self._file.read(start, end - start)


@dataclass
class Grant:
    """Paths granted to one query; `revoke` (or leaving ``with``) takes them back."""

    fs: BlobFileSystem
    prefix: str
    paths: list[str]

    def url(self, name: str) -> str:
        return f"{PROTOCOL}://{self.prefix}/{name}"

    def revoke(self) -> None:
        self.fs.revoke(self.paths)

    def __enter__(self) -> Grant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()
