"""``Tier0FileSystem``: the element store as an fsspec filesystem, protocol ``tier0``.

Paths are ``tier0://bucket/key`` (or ``bucket/key``). Buckets are the
top-level directories. Below them, directories are S3's: a directory ``d``
exists while some key starts with ``d/``; nothing else records it. So
``mkdir`` below a bucket creates nothing, a directory vanishes with its last
key, and a key ending in ``/`` (a "folder marker" some S3 tools write) is
shown as the directory it names, never as a file.

Where S3 and POSIX disagree
    Object ``a`` may sit beside object ``a/b``: then ``a`` is a file and a
    directory at once. ``isfile("b/a")`` and ``isdir("b/a")`` are both true.
    ``info("b/a")`` describes the file, ``info("b/a/")`` (trailing slash) the
    directory. ``ls("b")`` holds two entries named ``b/a``, one of each type
    (as s3fs does); ``ls("b/a")`` lists the directory's children, and lists
    the file alone only when the directory is empty. ``open("b/a")`` reads
    the file. Keys with empty path segments (a leading ``/``, or ``//``) are
    valid in the store but have no fsspec path; use the ``Tier0`` API.

Reading
    A file opened ``"rb"`` reads the version that was current when it was
    opened; range reads fetch only the chunks they overlap. If that version
    is overwritten in place (an unversioned bucket) the next read raises
    ``OSError(ESTALE)`` instead of mixing two versions' bytes.

Writing
    ``"wb"`` and ``"xb"`` (fail if the object exists) stream: after the
    first block the bytes flow through a bounded queue to a ``put`` running
    on its own thread, so memory stays at a few blocks whatever the size
    (``_file`` holds that machinery). The object appears only when the file
    is closed successfully (or the enclosing ``fs.transaction`` commits). A
    ``with fs.open(...)`` block that raises, and a file dropped unclosed,
    discard the write: nothing is committed. (``fsspec.open()``'s
    ``OpenFile`` closes, and so commits, its file even when its block
    raises; use ``fs.transaction`` for that.) Within a transaction,
    ``open``, ``pipe_file`` and a truncating ``touch`` wait for its end;
    copies and removals act at once. There is no append: objects are
    written whole.

Listings
    ``ls`` pages through the store's delimited listing; ``find`` without
    ``maxdepth`` scans the prefix once, flat. Listings are never cached: the
    catalog is live and another process may write at any moment, and a
    listing is one indexed query, so a cache would only add staleness.

The store
    Every filesystem instance with the same ``data`` directory and ``meta``
    shares one opened ``Tier0`` per process (fsspec keeps one instance per
    thread and option set, and opening a store starts threads and
    connections). The store closes when the last such instance is garbage
    collected, else at interpreter exit; a forked child opens its own. With
    ``t0=`` the caller's store is used and never closed here.

Errors become builtins at this edge (the one table is in ``_paths``): a
missing bucket or key is ``FileNotFoundError``, an existing one
``FileExistsError``, a non-empty bucket ``OSError(ENOTEMPTY)``, a denial
``PermissionError``, an unreadable chunk ``OSError(EIO)``; the tier0 error
is chained as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import fsspec
from fsspec.utils import stringify_path

import tier0
from tier0.errors import BucketAlreadyExists, InvalidArgument, InvalidRange, NoSuchBucket, NoSuchKey
from tier0.protocols.fsspec._file import Tier0File
from tier0.protocols.fsspec._paths import (
    PROTOCOL,
    split_object_path,
    split_path,
    strip_protocol,
    translate_errors,
)
from tier0.store import BucketInfo, ListPage, ObjectInfo

#: An fsspec info dict: "name", "size" and "type" ("file" or "directory"), then ours.
Entry = dict[str, Any]


def _file_entry(info: ObjectInfo) -> Entry:
    return {
        "name": f"{info.bucket}/{info.key}",
        "size": info.size,
        "type": "file",
        "etag": info.etag,
        "modified": info.modified,
        "created": info.created,
        # pyarrow's FSSpecHandler reads a file's time from "mtime".
        "mtime": info.modified,
        "content_type": info.content_type,
        "version_id": info.version_id,
    }


def _directory_entry(name: str) -> Entry:
    return {"name": name, "size": 0, "type": "directory"}


def _bucket_entry(info: BucketInfo) -> Entry:
    return _directory_entry(info.name) | {"created": info.created}


def _entry_time(entry: Entry, field: str, path: str) -> dt.datetime:
    """``entry[field]``; IsADirectoryError when absent (a directory below a bucket has no time)."""
    if field not in entry:
        raise IsADirectoryError(errno.EISDIR, "a directory below a bucket has no time", path)
    time: dt.datetime = entry[field]
    return time


class _SharedStores:
    """The ``Tier0`` each (data directory, metadata URL) opened in this process, counted by user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[Path, str | None], tuple[tier0.Tier0, int]] = {}

    def acquire(self, data: Path, meta: str | None) -> tier0.Tier0:
        """The store of ``data``, opened on first use; pair each call with one ``release``."""
        with self._lock:
            entry = self._open.get((data, meta))
            # Opened under the lock: two threads asking at once get one store.
            store, users = entry if entry is not None else (tier0.open(data, meta=meta), 0)
            self._open[data, meta] = (store, users + 1)
            return store

    def release(self, data: Path, meta: str | None, store: tier0.Tier0) -> None:
        """Drop one user of ``store``; the last one closes it."""
        with self._lock:
            entry = self._open.get((data, meta))
            if entry is None or entry[0] is not store:
                return  # opened before a fork: not ours to close
            users = entry[1] - 1
            if users:
                self._open[data, meta] = (store, users)
                return
            del self._open[data, meta]
        store.close()

    def forget(self) -> None:
        """After ``fork``, in the child: the parent's stores are unusable here (their threads
        did not survive) and closing them would wait on those threads, so drop them."""
        self._lock = threading.Lock()
        self._open = {}


_stores = _SharedStores()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_stores.forget)


class Tier0FileSystem(fsspec.AbstractFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """tier0 as an fsspec filesystem (see the module docstring for the semantics).

    Storage options: ``data``, the data directory (default
    ``tier0.default_data_dir()``), and ``meta``, its metadata backend on first
    open; or ``t0``, an opened ``Tier0`` to use (and leave open). Other
    options are fsspec's own.

    >>> fs = fsspec.filesystem("tier0", data="/tmp/t0")             # doctest: +SKIP
    >>> fs.mkdir("docs")
    >>> fs.pipe_file("docs/a.txt", b"hello")
    >>> fs.cat_file("tier0://docs/a.txt", start=1, end=3)
    b'el'
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(
        self,
        data: str | os.PathLike[str] | None = None,
        *,
        meta: str | None = None,
        t0: tier0.Tier0 | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        self._pid = os.getpid()
        self._meta = meta
        if t0 is not None:
            if data is not None or meta is not None:
                raise ValueError("pass either t0= or data=/meta=, not both")
            self._data: Path | None = None
            self._t0 = t0
            return
        chosen = Path(data) if data is not None else tier0.default_data_dir()
        self._data = chosen.expanduser().resolve()
        self._t0 = self._lease()

    def _lease(self) -> tier0.Tier0:
        assert self._data is not None
        store = _stores.acquire(self._data, self._meta)
        # Released when this instance is collected, or at exit (finalizers run then).
        weakref.finalize(self, _stores.release, self._data, self._meta, store)
        return store

    @property
    def t0(self) -> tier0.Tier0:
        """The ``Tier0`` this filesystem reads and writes (for SQL, events, versions...)."""
        if self._data is not None and self._pid != os.getpid():
            # Forked: the parent's store did not survive; this process opens its own.
            self._pid = os.getpid()
            self._t0 = self._lease()
        return self._t0

    @property
    def fsid(self) -> str:
        """The same for every filesystem over one data directory."""
        return f"tier0:{self._data or self._t0.data_dir}"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """fsspec's hook: ``strip_protocol`` of a path, or of each path in a list."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(path)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Nothing is cached (listings come live from the catalog); kept for fsspec's callers."""
        super().invalidate_cache(path)

    # -- describing ------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Entry] | list[str]:
        """The entries of a directory (the root lists buckets), or ``[file]`` for a file.

        Raises FileNotFoundError when ``path`` is neither.
        """
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if not bucket:
            entries = [_bucket_entry(each) for each in self.t0.list_buckets()]
        else:
            entries = self._list_directory(path, bucket, key)
        return entries if detail else [entry["name"] for entry in entries]

    def _list_directory(self, path: str, bucket: str, key: str) -> list[Entry]:
        prefix = f"{key}/" if key else ""
        entries: list[Entry] = []
        marked = False  # a "key/" folder marker: the directory exists though empty
        with translate_errors(path):
            for page in self._pages(bucket, prefix=prefix, delimiter="/"):
                for info in page.objects:
                    if info.key == prefix:
                        marked = True
                    elif not info.key.endswith("/"):
                        entries.append(_file_entry(info))
                entries.extend(
                    _directory_entry(f"{bucket}/{common.rstrip('/')}")
                    for common in page.prefixes
                    if common.rstrip("/") != key  # an empty segment ("key//") names no child
                )
            if entries or marked or not key:
                return sorted(entries, key=lambda entry: entry["name"])
            # Not a directory: perhaps a file, which ls lists alone (as fsspec does).
            return [_file_entry(self.t0.head(bucket, key))]

    def _pages(self, bucket: str, *, prefix: str, delimiter: str | None) -> Iterator[ListPage]:
        """Every page of one listing, in key order; raises the store's errors untranslated."""
        start_after: str | None = None
        while True:
            page = self.t0.list(bucket, prefix=prefix, delimiter=delimiter, start_after=start_after)
            yield page
            if not page.truncated:
                return
            following = page.next_start_after
            assert following is not None and (start_after is None or following > start_after)
            start_after = following

    def info(self, path: str, **kwargs: Any) -> Entry:
        """One entry: the file at ``path``, else the directory (a trailing ``/`` asks for it).

        Raises FileNotFoundError when there is neither.
        """
        wants_directory = stringify_path(path).endswith("/")
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if not bucket:
            return _directory_entry("")
        if not key:
            with translate_errors(path):
                return _bucket_entry(self.t0.head_bucket(bucket))
        if not wants_directory:
            with contextlib.suppress(FileNotFoundError), translate_errors(path):
                return _file_entry(self.t0.head(bucket, key))
        if self._has_children(path):
            return _directory_entry(path)
        raise FileNotFoundError(errno.ENOENT, "no such object or directory", path)

    def _has_children(self, path: str) -> bool:
        """Whether some key lies below ``path`` (a stripped path with a key)."""
        bucket, key = split_path(path)
        with translate_errors(path):
            page = self.t0.list(bucket, prefix=f"{key}/", limit=1)
        return bool(page.objects or page.prefixes)

    def exists(self, path: str, **kwargs: Any) -> bool:
        # Unlike fsspec's default, only "not there" means False: a store that
        # fails (I/O, permissions) must not look empty.
        try:
            self.info(path)
        except (FileNotFoundError, InvalidArgument):
            return False
        return True

    def isfile(self, path: str) -> bool:
        """Whether an object is at ``path`` (a directory may share its name).

        False only when there is none; a store that fails raises, as in ``exists``.
        """
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if not key:
            return False
        try:
            with translate_errors(path):
                self.t0.head(bucket, key)
        except (FileNotFoundError, InvalidArgument):
            return False
        return True

    def isdir(self, path: str) -> bool:
        """Whether ``path`` is the root, a bucket, or a prefix of some key (see ``isfile``)."""
        path = self._strip_protocol(path)
        if not split_path(path)[1]:
            return self.exists(path)
        try:
            return self._has_children(path)
        except (FileNotFoundError, InvalidArgument):
            return False

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> list[str] | dict[str, Entry]:
        """Every file below ``path`` (and directory, ``withdirs``), sorted by name.

        Without ``maxdepth`` this is one flat scan of the key range under
        ``path``; with it, fsspec walks level by level (a delimited listing each).
        """
        if maxdepth is not None:
            walked: list[str] | dict[str, Entry] = super().find(
                path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs
            )
            return walked
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        found: dict[str, Entry] = {}
        try:
            if not bucket:
                for each in self.t0.list_buckets():
                    if withdirs:
                        found[each.name] = _bucket_entry(each)
                    self._find_below(each.name, "", withdirs=withdirs, found=found)
            else:
                if withdirs and self.isdir(path):
                    found[path] = _directory_entry(path)
                self._find_below(bucket, key, withdirs=withdirs, found=found)
        except FileNotFoundError:
            return {} if detail else []
        if not found and self.isfile(path):
            found[path] = self.info(path)
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    def _find_below(
        self, bucket: str, key: str, *, withdirs: bool, found: dict[str, Entry]
    ) -> None:
        """Add the files below ``key`` in ``bucket`` to ``found``, keyed by path.

        With ``withdirs``, the directories between ``key`` and each file too.
        """
        prefix = f"{key}/" if key else ""
        with translate_errors(f"{bucket}/{key}"):
            for page in self._pages(bucket, prefix=prefix, delimiter=None):
                for info in page.objects:
                    if withdirs:
                        # The directories between ``prefix`` and the key, each once.
                        parts = info.key[len(prefix) :].split("/")[:-1]
                        for depth in range(1, len(parts) + 1):
                            name = f"{bucket}/{prefix}{'/'.join(parts[:depth])}"
                            found.setdefault(name, _directory_entry(name))
                    if not info.key.endswith("/"):
                        found[f"{bucket}/{info.key}"] = _file_entry(info)

    def modified(self, path: str) -> dt.datetime:
        """A file's last modification time, or a bucket's creation time (UTC datetimes).

        Raises IsADirectoryError for a directory below a bucket: nothing records one.
        """
        entry = self.info(path)
        return _entry_time(entry, "modified" if entry["type"] == "file" else "created", path)

    def created(self, path: str) -> dt.datetime:
        """A file's or bucket's creation time (a UTC datetime); raises as ``modified`` does."""
        return _entry_time(self.info(path), "created", path)

    def checksum(self, path: str) -> int:
        """Changes exactly when the file's content may have: derived from its etag."""
        entry = self.info(path)
        if entry["type"] != "file":
            return int(super().checksum(path))
        return int.from_bytes(
            hashlib.blake2b(entry["etag"].encode(), digest_size=16).digest(), "big"
        )

    # -- reading and writing ---------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Tier0File:
        """A ``Tier0File``; writing takes ``content_type=`` and ``metadata=`` too."""
        return Tier0File(
            self, self._strip_protocol(path), mode, block_size, autocommit,
            cache_options=cache_options, **kwargs,
        )  # fmt: skip

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """Bytes ``[start, end)`` of a file, in one range read; out-of-range bounds clip as in a
        slice. Raises IsADirectoryError for a directory, FileNotFoundError if absent.
        """
        path = self._strip_protocol(path)
        bucket, key = split_object_path(path)
        if (start or 0) < 0 or (end or 0) < 0:
            # Negative bounds count from the end, which only the size tells.
            size = self.size(path)
            if start is not None and start < 0:
                start = max(0, size + start)
            if end is not None and end < 0:
                end = max(0, size + end)
        offset = start or 0
        length = None if end is None else max(0, end - offset)
        try:
            with (
                translate_errors(path),
                self.t0.get(bucket, key, offset=offset, length=length) as reader,
            ):
                return reader.read()
        except InvalidRange:
            return b""  # starts past the end, as a slice would
        except FileNotFoundError:
            self._raise_missing(path)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Store ``value`` at ``path``; ``mode="create"`` raises FileExistsError if it exists."""
        if mode not in ("overwrite", "create"):
            raise ValueError(f"mode must be 'overwrite' or 'create', got {mode!r}")
        path = self._strip_protocol(path)
        bucket, key = split_object_path(path)
        if self._intrans:
            # Deferred like the transaction's other writes: through a file it commits.
            with self.open(path, "xb" if mode == "create" else "wb", **kwargs) as handle:
                handle.write(value)
            return
        with translate_errors(path):
            self.t0.put(
                bucket, key, value, content_type=kwargs.get("content_type"),
                metadata=kwargs.get("metadata"), if_none_match="*" if mode == "create" else None,
            )  # fmt: skip

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        """Make ``path`` an empty file; with ``truncate=False`` an existing file keeps its
        bytes and gets a new version (and modification time) instead."""
        path = self._strip_protocol(path)
        bucket, key = split_object_path(path)
        if not truncate:
            try:
                with translate_errors(path):
                    self.t0.copy(bucket, key, bucket, key)  # metadata only: the bytes are shared
                return
            except FileNotFoundError:
                pass
        self.pipe_file(path, b"", **kwargs)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy a file in metadata alone (the copy shares its chunks); a directory as
        source makes the target directory (a recursive ``copy`` passes those)."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        source_bucket, source_key = split_path(path1)
        if source_key:
            bucket, key = split_object_path(path2)
            try:
                with translate_errors(path1):
                    self.t0.copy(source_bucket, source_key, bucket, key)
                return
            except FileNotFoundError:
                if not self.isdir(path1):
                    raise
        elif not self.isdir(path1):
            raise FileNotFoundError(errno.ENOENT, "no such bucket", path1)
        self.makedirs(path2, exist_ok=True)

    # -- removing --------------------------------------------------------------------------

    def rm_file(self, path: str) -> None:
        """Delete one file; IsADirectoryError for a directory, FileNotFoundError if absent."""
        path = self._strip_protocol(path)
        bucket, key = split_object_path(path)
        if not self._delete_present(bucket, key):
            self._raise_missing(path)

    def rm(
        self, path: str | list[str], recursive: bool = False, maxdepth: int | None = None
    ) -> None:
        """Delete files; with ``recursive``, directories too (a bucket path removes the bucket).

        A bucket that keeps versions cannot be removed this way: its objects
        get delete markers, then OSError(ENOTEMPTY) is raised.
        """
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for each in reversed(paths):  # a directory sorts before its contents: remove them first
            bucket, key = split_path(each)
            if not key:
                if not recursive:
                    raise IsADirectoryError(errno.EISDIR, "a bucket is a directory", each)
                self.rmdir(each)
            elif not recursive:
                self.rm_file(each)
            elif not self._delete_present(bucket, key):
                # A directory, gone with its contents unless a folder marker holds it.
                self._delete_present(bucket, f"{key}/")

    def _delete_present(self, bucket: str, key: str) -> bool:
        """Delete ``key`` if it exists; whether it did. (Asking first matters: in a versioned
        bucket, deleting an absent key would add a delete marker.)"""
        with translate_errors(f"{bucket}/{key}"):
            try:
                self.t0.head(bucket, key)
            except NoSuchKey:
                return False
            self.t0.delete(bucket, key)
            return True

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """At the top level, create a bucket (FileExistsError if it exists). Below, nothing is
        created: a directory exists once a key is written under it. The bucket must exist,
        unless ``create_parents``."""
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if not bucket:
            raise FileExistsError(errno.EEXIST, "the root exists", path)
        with translate_errors(path):
            if not key:
                self.t0.create_bucket(bucket)
                return
            try:
                self.t0.head_bucket(bucket)
            except NoSuchBucket:
                if not create_parents:
                    raise
                with contextlib.suppress(BucketAlreadyExists):  # another writer was first
                    self.t0.create_bucket(bucket)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """``mkdir`` with parents; FileExistsError if the directory exists, unless ``exist_ok``."""
        path = self._strip_protocol(path)
        if self.isdir(path):
            if not exist_ok:
                raise FileExistsError(errno.EEXIST, "the directory exists", path)
            return
        self.mkdir(path, create_parents=True)

    def rmdir(self, path: str) -> None:
        """Remove an empty bucket, or the folder marker of an otherwise empty directory.

        Raises OSError(ENOTEMPTY) when something is in it, NotADirectoryError for a file.
        """
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if not bucket:
            raise PermissionError(errno.EPERM, "the root cannot be removed", path)
        with translate_errors(path):
            if not key:
                self.t0.delete_bucket(bucket)
                return
            page = self.t0.list(bucket, prefix=f"{key}/", limit=2)
        inside = [info.key for info in page.objects] + page.prefixes
        if inside == [f"{key}/"]:
            self._delete_present(bucket, f"{key}/")
        elif inside:
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)
        elif self.isfile(path):
            raise NotADirectoryError(errno.ENOTDIR, "is a file", path)
        else:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)

    # -- internals -------------------------------------------------------------------------

    def _raise_missing(self, path: str) -> NoReturn:
        """Raise for a path that names no object.

        IsADirectoryError if it names a directory, else FileNotFoundError.
        """
        if self.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        raise FileNotFoundError(errno.ENOENT, "no such object", path)
