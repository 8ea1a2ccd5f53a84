"""The SQLite backend's own parts (the shared behaviour is in the conformance kit)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tier0.meta._sqlite import _DirectoryWatcher


def test_a_watcher_hears_a_write_in_its_directory(tmp_path: Path) -> None:
    heard = threading.Event()
    watcher = _DirectoryWatcher(tmp_path, heard.set)
    try:
        (tmp_path / "wal").write_bytes(b"x")
        assert heard.wait(timeout=10)
    finally:
        watcher.close()
    watcher.close()  # a second close does nothing (closing a reused number would harm)
    assert not watcher._thread.is_alive()


def test_a_slow_watcher_keeps_its_descriptors_until_its_thread_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A descriptor closed under the running thread could be reused by the next pipe the
    # process opens, and the thread would read (drain) that pipe: seen once in CI as a
    # `tier0 get ... -` whose output a test thread's watcher swallowed.
    monkeypatch.setattr(_DirectoryWatcher, "JOIN_TIMEOUT_S", 0.05)
    entered, release = threading.Event(), threading.Event()

    def on_change() -> None:
        entered.set()
        release.wait(timeout=30)

    watcher = _DirectoryWatcher(tmp_path, on_change)
    inotify = watcher._fd
    assert inotify >= 0, "inotify is available on Linux"
    (tmp_path / "wal").write_bytes(b"x")
    assert entered.wait(timeout=10)
    watcher.close()  # gives up waiting: the thread is still in on_change
    os.fstat(inotify)  # still open: the thread has not finished with it
    release.set()
    watcher._thread.join(timeout=10)
    assert not watcher._thread.is_alive()
    with pytest.raises(OSError):
        os.fstat(inotify)
