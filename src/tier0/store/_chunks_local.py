"""The chunk backend that keeps chunks as files in a local directory."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tier0.errors import (
    ChunkCorrupted,
    ChunkMissing,
    InvalidArgument,
    StorageFull,
    StoreError,
    StoreFailed,
)
from tier0.store._chunking import HEADER_BYTES, crc32c, raw_payload
from tier0.store._chunks import Blob, ChunkBackend, ChunkBackendStatistics, RawFile

__all__ = ["LocalChunkBackend", "OsSeam"]

_NAME = re.compile(r"[0-9a-f]{64}")
_FAN_OUT = re.compile(r"[0-9a-f]{2}")
# tmp/ and trash/ entries are "<name>.<16 random hex digits>".
_SIDE_ENTRY = re.compile(r"([0-9a-f]{64})\.[0-9a-f]{16}")


#: O_DIRECT alignment: the page size covers every block device's logical block.
_DIRECT_ALIGN_BYTES = mmap.PAGESIZE
#: The per-thread aligned buffer fits a maximal encoded chunk (4 MiB + header).
_DIRECT_BUFFER_BYTES = 4 * 1024 * 1024 + 2 * mmap.PAGESIZE

#: The per-thread buffer a payload's CRC is computed through (`open_raw`).
_SCRATCH_BYTES = 1024 * 1024


class OsSeam:
    """The operating-system calls LocalChunkBackend makes, one method each.

    Tests subclass it to inject ENOSPC, EIO or fsync failures; the default
    delegates straight to ``os``.
    """

    def open(self, path: str, flags: int, mode: int) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def preadv(self, fd: int, buffer: memoryview, offset: int) -> int:
        return os.preadv(fd, [buffer], offset)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def set_mtime(self, fd: int, mtime_ns: int) -> None:
        os.utime(fd, ns=(mtime_ns, mtime_ns))

    def stat(self, path: str) -> os.stat_result:
        return os.stat(path)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def scandir(self, path: str) -> list[os.DirEntry[str]]:
        with os.scandir(path) as entries:
            return list(entries)


_STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# read() looks under the name, then in trash/, this many times before it calls
# a chunk missing: see read().
_READ_ATTEMPTS_MAX = 3


class LocalChunkBackend(ChunkBackend):
    """Chunks as files in a local directory, shared safely by threads and processes.

    Layout: ``root/ab/<name>`` for a name starting ``ab``; ``root/tmp/``
    holds writes in progress and ``root/trash/`` deletions in progress, both as
    ``<name>.<16 random hex digits>``. ``root`` and its parents are created
    if missing. Opening the store finishes what a crash interrupted: it
    moves trash entries back (their deletion had not committed) and removes
    temp files older than ``stale_s_min``.

    ``clock`` stamps modification times and measures idleness (inject it in
    tests); ``os_seam`` carries every OS call (inject faults in tests).

    With ``direct_io`` (the default) blobs are written with ``O_DIRECT`` from
    a per-thread aligned buffer: on the VMs we measured, the page-cache path
    cost ~2 s of kernel CPU per GB written as chunk files, O_DIRECT ~0.3 s
    of copying (benchmarks/, notes/measurements.md). Filesystems without
    O_DIRECT (tmpfs) fall back to buffered writes by themselves.

    Raises StorageFull or StoreFailed if the store cannot be opened.

    Example::

        backend = LocalChunkBackend(Path("/var/lib/tier0/chunks"))
        encoded = encode_chunk(data)
        if backend.touch(chunk_name(encoded.hash)) is None:
            backend.write(chunk_name(encoded.hash), encoded.parts)
    """

    stale_s_min: float = 3600.0
    """A temp or trash entry older than this is a crash's leftover, not work in progress."""

    verified_ttl_s: float = 10.0
    """How long `open_raw` trusts a file whose payload passed its CRC check
    without checking it again. Reading the payload through the CPU to check it
    cost as much as the rest of a zero-copy GET together; a file sent again and
    again (a hot object) is checked once per this interval instead, while its
    header (the chunk's name, its length) is checked on every open."""

    verified_entries_max: int = 65_536
    """At most this many files are remembered as checked (the oldest go first)."""

    def __init__(
        self,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
        os_seam: OsSeam | None = None,
        direct_io: bool = True,
    ) -> None:
        self._root = os.path.abspath(root)
        self._direct = direct_io and hasattr(os, "O_DIRECT")
        self._buffers = threading.local()
        #: Files whose payload passed its CRC: name -> (inode, device, checked until).
        self._verified: dict[str, tuple[int, int, float]] = {}
        self._tmp = os.path.join(self._root, "tmp")
        self._trash = os.path.join(self._root, "trash")
        self._clock = clock
        self._os = os_seam if os_seam is not None else OsSeam()
        self._lock = threading.Lock()
        self._failure: str | None = None
        # Directories whose entries (their own and their parents') this
        # instance has made durable. Another process may have created a
        # directory and not fsynced its parent yet, so "it exists" is not
        # enough: each instance fsyncs every parent once before relying on it.
        self._durable_directories: set[str] = set()
        self._writes = 0
        self._bytes_written = 0
        self._dedup_hits = 0
        self._deletes = 0
        with self._os_errors(f"opening the chunk store at {self._root}"):
            self._ensure_directory(self._tmp)
            self._ensure_directory(self._trash)
            self._ensure_fan_out()
            self._recover()

    # -- the seam ------------------------------------------------------------

    def write(self, name: str, blob: Blob, *, name_durable: bool = True) -> None:
        try:
            self._write(name, blob, name_durable)
        except OSError as error:
            if error.errno != errno.EINVAL or not self._direct:
                raise
            # Some filesystems accept O_DIRECT at open and refuse it at write.
            self._direct = False
            self._write(name, blob, name_durable)

    def _write(self, name: str, blob: Blob, name_durable: bool) -> None:
        directory, path = self._locate(name)
        parts = (
            [memoryview(blob).cast("B")]
            if isinstance(blob, bytes | memoryview)
            else [memoryview(part).cast("B") for part in blob]
        )
        self._check_writable()
        fd = -1
        temp: str | None = None
        with self._os_errors(f"writing chunk {name}"):
            try:
                self._ensure_directory(directory)
                # Random suffix: several processes may write the same name at once.
                temp = os.path.join(self._tmp, f"{name}.{secrets.token_hex(8)}")
                fd = self._open_for_write(temp)
                if self._direct:
                    self._write_direct(fd, parts)
                else:
                    for view in parts:
                        while view:
                            view = view[self._os.write(fd, view) :]
                self._os.set_mtime(fd, self._now_ns())
                self._fsync(fd, f"fsync of {temp}")
                fd, closing = -1, fd
                self._os.close(closing)
                self._os.replace(temp, path)
                temp = None
                if name_durable:
                    self._fsync_directory(directory)
            except BaseException:
                self._abandon(fd, temp)
                raise
        with self._lock:
            self._writes += 1
            self._bytes_written += sum(len(part) for part in parts)

    def touch(self, name: str) -> int | None:
        _, path = self._locate(name)
        self._check_writable()
        with self._os_errors(f"touching chunk {name}"):
            try:
                fd = self._os.open(path, os.O_RDONLY | os.O_CLOEXEC, 0)
            except FileNotFoundError:
                return None
            try:
                # Stamp the inode through a descriptor, then check that it is
                # still the one under the name. A path-based utime could stamp
                # an inode that delete_if_idle renames away and unlinks between
                # the lookup and the stamp, and still succeed. Here, if the
                # stamp lands before delete_if_idle renames the inode away,
                # delete_if_idle sees it and puts the blob back; if after, the
                # inode is no longer under the name when we look, and we answer
                # None. A different inode under the name (a concurrent
                # rewrite) also answers None: the caller then writes the
                # chunk, which is always safe.
                self._os.set_mtime(fd, self._now_ns())
                pinned = self._os.fstat(fd)
                try:
                    current = self._os.stat(path)
                except FileNotFoundError:
                    return None
            finally:
                self._os.close(fd)
        if (current.st_dev, current.st_ino) != (pinned.st_dev, pinned.st_ino):
            return None
        with self._lock:
            self._dedup_hits += 1
        return int(pinned.st_size)

    def flush(self, names: Iterable[str]) -> None:
        directories = {self._locate(name)[0] for name in names}
        self._check_writable()
        with self._os_errors("flushing chunk directories"):
            for directory in sorted(directories):
                self._ensure_directory(directory)
                self._fsync_directory(directory)

    def read(self, name: str) -> bytes:
        head, rest = self.read_split(name, 0)
        assert not head
        return rest

    def read_split(self, name: str, head_bytes: int) -> tuple[bytes, bytes]:
        # Two reads into two buffers: the payload is never copied out of a whole blob.
        with self._os_errors(f"reading chunk {name}"):
            fd = self._open_blob(name)
            try:
                size = self._os.fstat(fd).st_size
                head = self._read_exactly(fd, min(head_bytes, size))
                return head, self._read_exactly(fd, size - len(head))
            finally:
                self._os.close(fd)

    def open_raw(self, name: str, hash: bytes, *, checked_only: bool = False) -> RawFile | None:
        if checked_only:
            entry = self._verified.get(name)
            if entry is None or time.monotonic() >= entry[2]:
                return None
        with self._os_errors(f"reading chunk {name}"):
            fd = self._open_blob(name)
            try:
                raw = raw_payload(hash, self._read_exactly(fd, HEADER_BYTES))
                if raw is None:
                    self._os.close(fd)
                    return None
                status = self._os.fstat(fd)
                size = status.st_size
                if size - HEADER_BYTES != raw.length:
                    raise ChunkCorrupted(
                        f"chunk {name}: the file holds {size - HEADER_BYTES} bytes after its"
                        f" header, which declares {raw.length}"
                    )
                if not self._recently_verified(name, status):
                    if checked_only:  # another file under the name since its check
                        self._os.close(fd)
                        return None
                    if self._payload_crc(fd, size) != raw.crc:
                        raise ChunkCorrupted(f"chunk {name}: the payload fails its CRC-32C")
                    self._remember_verified(name, status)
            except BaseException:
                self._os.close(fd)
                raise
        return RawFile(fd, HEADER_BYTES, raw.length)

    def _recently_verified(self, name: str, status: os.stat_result) -> bool:
        entry = self._verified.get(name)
        return (
            entry is not None
            and entry[:2] == (status.st_ino, status.st_dev)
            and time.monotonic() < entry[2]
        )

    def _remember_verified(self, name: str, status: os.stat_result) -> None:
        with self._lock:
            self._verified.pop(name, None)
            self._verified[name] = (
                status.st_ino,
                status.st_dev,
                time.monotonic() + self.verified_ttl_s,
            )
            while len(self._verified) > self.verified_entries_max:
                del self._verified[next(iter(self._verified))]

    def _payload_crc(self, fd: int, size: int) -> int:
        """The CRC-32C of a blob's payload, read through this thread's scratch
        buffer: a piece at a time, so it stays in the CPU's cache, and never
        allocated anew (what a copy of the whole payload would cost)."""
        scratch: memoryview | None = getattr(self._buffers, "scratch", None)
        if scratch is None:
            scratch = self._buffers.scratch = memoryview(bytearray(_SCRATCH_BYTES))
        crc = 0
        offset = HEADER_BYTES
        while offset < size:
            read = self._os.preadv(fd, scratch[: size - offset], offset)
            if not read:
                break  # shorter than fstat said: the length check above failed first
            crc = crc32c(scratch[:read], crc)
            offset += read
        return crc

    def _open_blob(self, name: str) -> int:
        """An open descriptor of blob ``name`` (ChunkMissing if absent)."""
        _, path = self._locate(name)
        flags = os.O_RDONLY | os.O_CLOEXEC
        for _ in range(_READ_ATTEMPTS_MAX):
            try:
                return self._os.open(path, flags, 0)
            except FileNotFoundError:
                pass
            # The name is empty for an instant while delete_if_idle holds
            # a touched blob in trash/ before putting it back (and until
            # the next open if that process died there): look there too.
            for trashed in self._trash_entries(name):
                try:
                    return self._os.open(trashed, flags, 0)
                except FileNotFoundError:
                    continue
        raise ChunkMissing(f"chunk {name} is missing from the chunk store at {self._root}")

    def delete_if_idle(self, name: str, idle_s_min: float) -> bool:
        directory, path = self._locate(name)
        if not idle_s_min >= 0:
            raise InvalidArgument(f"idle_s_min must be >= 0, got {idle_s_min}")
        self._check_writable()
        with self._os_errors(f"deleting chunk {name}"):
            deleted = self._delete_if_idle(name, directory, path, idle_s_min)
        if deleted:
            with self._lock:
                self._deletes += 1
        return deleted

    def _delete_if_idle(self, name: str, directory: str, path: str, idle_s_min: float) -> bool:
        # Why this is race-free against touch() and write() in any process:
        # 1. The blob is renamed from its name into trash/ atomically, and only
        #    then is its mtime read. touch() stamps the inode through a
        #    descriptor and answers True only if that inode is still under the
        #    name afterwards. So either the stamp came before the rename and
        #    step 2 sees it, or touch() answers None and its caller writes
        #    the chunk anew.
        # 2. A recent mtime means a writer relies on the blob: rename it back.
        #    If a writer stored a fresh copy under the name meanwhile, this
        #    replaces it with identical content that is just as durable.
        # 3. Only an inode that nobody stamped for idle_s_min is unlinked. A
        #    write() after step 1 creates a new inode under the name, which
        #    this call never touches.
        # A crash between steps 1 and 3, or an error putting the blob back,
        # leaves it in trash/, where read() still finds it and the next open
        # puts it back: a deletion counts only once its unlink is durable.
        try:
            if self._is_recent(self._os.stat(path), idle_s_min):
                return False  # recent already before the rename: leave it be
            trashed = os.path.join(self._trash, f"{name}.{secrets.token_hex(8)}")
            self._os.replace(path, trashed)
        except FileNotFoundError:
            return False
        try:
            keep = self._is_recent(self._os.stat(trashed), idle_s_min)
            if keep:
                self._os.replace(trashed, path)
            else:
                self._os.unlink(trashed)
        except FileNotFoundError:
            return False  # another instance, opening the store, put it back
        self._fsync_directory(directory)
        self._fsync_directory(self._trash)
        return not keep

    def names(self) -> Iterator[str]:
        for _, entry in self._walk():
            if _NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                yield entry.name

    def age_s(self, name: str) -> float | None:
        _, path = self._locate(name)
        try:
            status = self._os.stat(path)
        except FileNotFoundError:
            return None
        # A clock that stepped back would make the age negative; clamp it.
        return max(0.0, self._clock() - status.st_mtime_ns / 1e9)

    def statistics(self) -> ChunkBackendStatistics:
        """Counters, plus ``chunk_count`` and ``stored_bytes`` from a walk of the store.

        The walk stats every blob, O(chunks): for introspection, not a hot path.
        """
        chunk_count = stored_bytes = 0
        for _, entry in self._walk():
            if not _NAME.fullmatch(entry.name):
                continue
            try:
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted during the walk
            chunk_count += 1
            stored_bytes += status.st_size
        with self._lock:
            return ChunkBackendStatistics(
                chunk_count=chunk_count,
                stored_bytes=stored_bytes,
                writes=self._writes,
                dedup_hits=self._dedup_hits,
                bytes_written=self._bytes_written,
                deletes=self._deletes,
                failed=self._failure is not None,
            )

    def check(self) -> list[str]:
        problems: list[str] = []
        if self._failure is not None:
            problems.append(f"the store is fail-stop since {self._failure}")
        problems += self._check_side_directory(self._tmp, "the temp file of an interrupted write")
        problems += self._check_side_directory(
            self._trash, "an interrupted deletion; reopening the store puts it back"
        )
        for prefix, entry in self._walk(problems):
            where = os.path.relpath(entry.path, self._root)
            if len(prefix) < 2:
                problems.append(f"unexpected entry {where}: not a fan-out directory")
            elif not (_NAME.fullmatch(entry.name) and entry.name.startswith(prefix)):
                problems.append(f"unexpected entry {where}: not a chunk name of this directory")
            elif not entry.is_file(follow_symlinks=False):
                problems.append(f"unexpected entry {where}: not a regular file")
        return problems

    # -- paths and directories ------------------------------------------------

    def _locate(self, name: str) -> tuple[str, str]:
        """(directory, path) of a chunk; raises InvalidArgument for a malformed name."""
        # Names come from hashes, never from users; checking anyway keeps a
        # bug elsewhere from reaching a path outside the store.
        if not _NAME.fullmatch(name):
            raise InvalidArgument(f"chunk names are 64 lowercase hex digits, got {name!r}")
        directory = os.path.join(self._root, name[:2])
        return directory, os.path.join(directory, name)

    def _ensure_fan_out(self) -> None:
        """Create the 256 fan-out directories up front, and make them durable once.

        Then no chunk write pays for a mkdir and a parent fsync: creating them
        lazily cost a new store one or two extra fsyncs per chunk, and a
        short-lived process (a CLI put) the same for every directory it had
        not yet seen. One level of 256 keeps directories at thousands of
        entries for hundreds of millions of chunks (ext4 indexes them).
        """
        existing = {entry.name for entry in self._os.scandir(self._root)}
        for index in range(256):
            name = f"{index:02x}"
            if name not in existing:
                with contextlib.suppress(FileExistsError):
                    self._os.mkdir(os.path.join(self._root, name))
        self._fsync_directory(self._root)
        with self._lock:
            self._durable_directories.update(
                os.path.join(self._root, f"{i:02x}") for i in range(256)
            )

    def _ensure_directory(self, directory: str) -> None:
        """Create ``directory`` and missing parents as needed; make their entries durable."""
        with self._lock:
            if directory in self._durable_directories:
                return
        parent = os.path.dirname(directory)
        # From root upwards, only missing directories need creating.
        below_root = directory.startswith(self._root + os.sep)
        if below_root or (parent != directory and not self._is_directory(parent)):
            self._ensure_directory(parent)
        with contextlib.suppress(FileExistsError):
            self._os.mkdir(directory)
        self._fsync_directory(parent)
        with self._lock:
            self._durable_directories.add(directory)

    def _is_directory(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(self._os.stat(path).st_mode)
        except FileNotFoundError:
            return False

    def _walk(self, problems: list[str] | None = None) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Yield (prefix, entry) for the fan-out tree: every entry of a fan-out
        directory (prefix "ab"), and root entries that are not fan-out
        directories (prefix ""); tmp/ and trash/ are skipped.

        Directories that vanish are skipped; those that cannot be listed too,
        reported in ``problems`` if given.
        """

        def listing(directory: str) -> list[os.DirEntry[str]]:
            try:
                return self._os.scandir(directory)
            except FileNotFoundError:
                return []
            except OSError as error:
                if problems is None:
                    raise
                problems.append(f"cannot list {directory}: {error.strerror}")
                return []

        def is_fan_out(entry: os.DirEntry[str]) -> bool:
            return bool(_FAN_OUT.fullmatch(entry.name)) and entry.is_dir(follow_symlinks=False)

        for first in listing(self._root):
            if first.path in (self._tmp, self._trash):
                continue
            if not is_fan_out(first):
                yield "", first
                continue
            for entry in listing(first.path):
                yield first.name, entry

    def _trash_entries(self, name: str) -> list[str]:
        return [
            entry.path
            for entry in self._os.scandir(self._trash)
            if entry.name.startswith(name) and _SIDE_ENTRY.fullmatch(entry.name)
        ]

    def _check_side_directory(self, directory: str, meaning: str) -> list[str]:
        try:
            entries = self._os.scandir(directory)
        except OSError as error:
            return [f"cannot list {directory}: {error.strerror}"]
        problems = []
        for entry in entries:
            where = os.path.relpath(entry.path, self._root)
            if not _SIDE_ENTRY.fullmatch(entry.name):
                problems.append(f"unexpected entry {where}")
                continue
            try:
                age_s = self._clock() - entry.stat(follow_symlinks=False).st_mtime_ns / 1e9
            except FileNotFoundError:
                continue  # finished meanwhile
            if age_s > self.stale_s_min:
                problems.append(f"{where} is {age_s / 3600:.1f} h old: {meaning}")
        return problems

    def _recover(self) -> None:
        """Finish what a crash interrupted: undo deletions, drop stale temp files."""
        for entry in self._os.scandir(self._trash):
            match = _SIDE_ENTRY.fullmatch(entry.name)
            if match is None:
                continue  # not ours: check() reports it
            directory, path = self._locate(match.group(1))
            self._ensure_directory(directory)
            try:
                # If a live deleter in another process owns this entry, it
                # notices (FileNotFoundError) and keeps the blob: harmless.
                self._os.replace(entry.path, path)
            except FileNotFoundError:
                continue  # its deleter finished meanwhile
            self._fsync_directory(directory)
            self._fsync_directory(self._trash)
        for entry in self._os.scandir(self._tmp):
            if not _SIDE_ENTRY.fullmatch(entry.name):
                continue
            try:
                mtime_s = entry.stat(follow_symlinks=False).st_mtime_ns / 1e9
                if self._clock() - mtime_s > self.stale_s_min:
                    self._os.unlink(entry.path)
            except FileNotFoundError:
                continue

    # -- I/O and failures -----------------------------------------------------

    def _read_exactly(self, fd: int, size: int) -> bytes:
        """``size`` bytes from ``fd`` (fewer only if the file is shorter than it was)."""
        if not size:
            return b""
        parts = []
        while size > 0:
            part = self._os.read(fd, size)
            if not part:
                break  # impossible for an immutable blob; decoding would notice
            parts.append(part)
            size -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _open_for_write(self, temp: str) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        if self._direct:
            try:
                return self._os.open(temp, flags | os.O_DIRECT, 0o644)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                # This filesystem has no O_DIRECT (tmpfs): buffered from now on.
                self._direct = False
        return self._os.open(temp, flags, 0o644)

    def _write_direct(self, fd: int, parts: list[memoryview]) -> None:
        """Write ``parts`` through an aligned buffer, padded to whole blocks, then cut to size.

        O_DIRECT needs the buffer, length and offset aligned to the device's
        block; the padding never survives the ``truncate`` (made durable by the
        fsync that follows in ``write``).
        """
        length = sum(len(part) for part in parts)
        padded = -(-length // _DIRECT_ALIGN_BYTES) * _DIRECT_ALIGN_BYTES
        buffer: mmap.mmap | None = getattr(self._buffers, "buffer", None)
        if buffer is None or len(buffer) < padded:
            # Anonymous mappings are page-aligned; one per thread, reused, so
            # its pages are faulted in once rather than on every write.
            buffer = mmap.mmap(-1, max(padded, _DIRECT_BUFFER_BYTES))
            self._buffers.buffer = buffer
        view = memoryview(buffer)
        try:
            offset = 0
            for part in parts:
                view[offset : offset + len(part)] = part
                offset += len(part)
            view[length:padded] = bytes(padded - length)
            written = 0
            while written < padded:
                written += self._os.write(fd, view[written:padded])
        finally:
            view.release()
        if padded != length:
            self._os.truncate(fd, length)

    def _fsync(self, fd: int, what: str) -> None:
        try:
            self._os.fsync(fd)
        except OSError as error:
            # After a failed fsync the kernel may have dropped the dirty pages
            # and cleared the error, so a retry could succeed with the data
            # not on disk. Stop instead.
            raise self._fail(error, what) from error

    def _fsync_directory(self, directory: str) -> None:
        fd = self._os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0)
        try:
            self._fsync(fd, f"fsync of directory {directory}")
        finally:
            self._os.close(fd)

    def _abandon(self, fd: int, temp: str | None) -> None:
        """Best-effort cleanup after a failed write; the write's own error is what counts."""
        if fd >= 0:
            with contextlib.suppress(OSError):
                self._os.close(fd)
        if temp is not None:
            with contextlib.suppress(OSError):
                self._os.unlink(temp)

    @contextlib.contextmanager
    def _os_errors(self, doing: str) -> Iterator[None]:
        """Raise ENOSPC as StorageFull and EIO as StoreFailed (fail-stop); others as they are."""
        try:
            yield
        except StoreError:
            raise
        except OSError as error:
            if error.errno in _STORAGE_FULL_ERRNOS:
                raise StorageFull(
                    f"{doing}: no space left in the chunk store at {self._root} "
                    f"({error.strerror}). Free space on that filesystem, then retry."
                ) from error
            if error.errno == errno.EIO:
                raise self._fail(error, doing) from error
            raise

    def _fail(self, error: OSError, what: str) -> StoreFailed:
        """Make the backend fail-stop, and return the error to raise now."""
        reason = error.strerror or str(error)
        with self._lock:
            if self._failure is None:
                self._failure = f"{what} failed ({reason})"
        return StoreFailed(
            f"{what} failed ({reason}); the chunk store at {self._root} accepts no more "
            "writes. Check the disk, then reopen the store.",
            errno_code=error.errno or errno.EIO,
        )

    def _check_writable(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise StoreFailed(
                f"the chunk store at {self._root} is fail-stop since {failure}. "
                "Check the disk, then reopen the store."
            )

    def _now_ns(self) -> int:
        return round(self._clock() * 1e9)

    def _is_recent(self, status: os.stat_result, idle_s_min: float) -> bool:
        return self._clock() - status.st_mtime_ns / 1e9 < idle_s_min
