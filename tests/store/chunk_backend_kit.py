"""The conformance kit for chunk backends.

A backend passes the whole ChunkBackend contract by inheriting the kit and
saying how to build one::

    class TestMyChunkBackend(ChunkBackendKit):
        def make_backend(self, tmp_path: Path) -> ChunkBackend:
            return MyChunkBackend(tmp_path, clock=self.clock)

The backend must take its time from ``self.clock`` (a FakeClock the kit
installs for each test): the kit moves time forward to make blobs idle.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from tier0.errors import ChunkMissing, InvalidArgument
from tier0.store._chunks import ChunkBackend


class FakeClock:
    """A wall clock that moves only when told to; callable like ``time.time``."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def blob_of(seed: int, size_bytes: int = 1000) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size_bytes)


def name_of(blob: bytes) -> str:
    """The content name of a blob, as the store computes it."""
    return blake3.blake3(blob).hexdigest()


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Start the targets together, wait for all, re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            barrier.wait()
            target()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


IDLE_S = 100.0


class ChunkBackendKit:
    """Tests every chunk backend must pass. Subclasses implement make_backend."""

    clock: FakeClock

    def make_backend(self, tmp_path: Path) -> ChunkBackend:
        """Build a fresh, empty backend that reads time from ``self.clock``."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _install_clock(self) -> None:
        self.clock = FakeClock()

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[ChunkBackend]:
        backend = self.make_backend(tmp_path)
        yield backend
        backend.close()

    # -- write and read -------------------------------------------------------

    def test_read_returns_blob_after_write(self, backend: ChunkBackend) -> None:
        blob = blob_of(1, 300_000)
        backend.write(name_of(blob), blob)
        assert backend.read(name_of(blob)) == blob

    def test_read_returns_empty_blob_after_write_of_empty_blob(self, backend: ChunkBackend) -> None:
        backend.write(name_of(b""), b"")
        assert backend.read(name_of(b"")) == b""
        assert list(backend.names()) == [name_of(b"")]

    def test_write_keeps_intact_blob_when_name_exists(self, backend: ChunkBackend) -> None:
        blob = blob_of(2)
        backend.write(name_of(blob), blob)
        backend.write(name_of(blob), blob)
        assert backend.read(name_of(blob)) == blob
        assert list(backend.names()) == [name_of(blob)]

    @pytest.mark.parametrize("head_bytes", [0, 1, 49, 300_000, 400_000])
    def test_read_split_returns_head_and_rest_of_blob(
        self, backend: ChunkBackend, head_bytes: int
    ) -> None:
        blob = blob_of(3, 300_000)
        backend.write(name_of(blob), blob)
        head, rest = backend.read_split(name_of(blob), head_bytes)
        assert (head, rest) == (blob[:head_bytes], blob[head_bytes:])

    def test_read_raises_chunk_missing_when_absent(self, backend: ChunkBackend) -> None:
        with pytest.raises(ChunkMissing, match=name_of(b"absent")):
            backend.read(name_of(b"absent"))
        with pytest.raises(ChunkMissing, match=name_of(b"absent")):
            backend.read_split(name_of(b"absent"), 49)

    @pytest.mark.parametrize(
        "name",
        ["../" + "0" * 61, "A" * 64, "0" * 63, "0" * 65, "", "0" * 62 + "/x"],
    )
    def test_every_method_raises_invalid_argument_when_name_malformed(
        self, backend: ChunkBackend, name: str
    ) -> None:
        calls: list[Callable[[], object]] = [
            lambda: backend.write(name, b"x"),
            lambda: backend.read(name),
            lambda: backend.touch(name),
            lambda: backend.flush([name]),
            lambda: backend.delete_if_idle(name, IDLE_S),
            lambda: backend.age_s(name),
        ]
        for call in calls:
            with pytest.raises(InvalidArgument):
                call()
        assert list(backend.names()) == []

    # -- touch, age and idleness ---------------------------------------------

    def test_touch_returns_true_when_present_and_false_when_absent(
        self, backend: ChunkBackend
    ) -> None:
        blob = blob_of(3)
        backend.write(name_of(blob), blob)
        assert backend.touch(name_of(blob)) == len(blob)
        assert backend.touch(name_of(b"absent")) is None
        backend.flush([name_of(blob)])
        assert backend.read(name_of(blob)) == blob

    def test_age_s_counts_from_last_write_or_touch(self, backend: ChunkBackend) -> None:
        blob = blob_of(4)
        backend.write(name_of(blob), blob)
        self.clock.advance(30)
        assert backend.age_s(name_of(blob)) == pytest.approx(30, abs=1e-3)
        backend.touch(name_of(blob))
        self.clock.advance(5)
        assert backend.age_s(name_of(blob)) == pytest.approx(5, abs=1e-3)
        assert backend.age_s(name_of(b"absent")) is None

    def test_delete_if_idle_keeps_blob_when_written_recently(self, backend: ChunkBackend) -> None:
        blob = blob_of(5)
        backend.write(name_of(blob), blob)
        self.clock.advance(IDLE_S - 1)
        assert backend.delete_if_idle(name_of(blob), IDLE_S) is False
        assert backend.read(name_of(blob)) == blob

    def test_delete_if_idle_deletes_blob_when_idle(self, backend: ChunkBackend) -> None:
        blob = blob_of(6)
        backend.write(name_of(blob), blob)
        self.clock.advance(IDLE_S + 1)
        assert backend.delete_if_idle(name_of(blob), IDLE_S) is True
        with pytest.raises(ChunkMissing):
            backend.read(name_of(blob))
        assert list(backend.names()) == []
        assert backend.age_s(name_of(blob)) is None
        assert backend.touch(name_of(blob)) is None
        assert backend.delete_if_idle(name_of(blob), IDLE_S) is False

    def test_delete_if_idle_keeps_blob_when_touched_recently(self, backend: ChunkBackend) -> None:
        blob = blob_of(7)
        backend.write(name_of(blob), blob)
        self.clock.advance(IDLE_S * 10)
        assert backend.touch(name_of(blob)) is not None
        self.clock.advance(IDLE_S - 1)
        assert backend.delete_if_idle(name_of(blob), IDLE_S) is False
        assert backend.read(name_of(blob)) == blob
        self.clock.advance(2)
        assert backend.delete_if_idle(name_of(blob), IDLE_S) is True

    def test_delete_if_idle_returns_false_when_absent(self, backend: ChunkBackend) -> None:
        assert backend.delete_if_idle(name_of(b"absent"), IDLE_S) is False

    def test_delete_if_idle_raises_invalid_argument_when_idle_time_negative(
        self, backend: ChunkBackend
    ) -> None:
        blob = blob_of(8)
        backend.write(name_of(blob), blob)
        with pytest.raises(InvalidArgument):
            backend.delete_if_idle(name_of(blob), -1.0)
        assert backend.read(name_of(blob)) == blob

    # -- listing, statistics, check -------------------------------------------

    def test_names_lists_each_stored_name_once(self, backend: ChunkBackend) -> None:
        blobs = [blob_of(seed, 100) for seed in range(40)]
        for blob in blobs + blobs[:5]:
            backend.write(name_of(blob), blob)
        listed = list(backend.names())
        assert sorted(listed) == sorted({name_of(blob) for blob in blobs})

    def test_names_lists_stable_names_when_writes_run_concurrently(
        self, backend: ChunkBackend
    ) -> None:
        stable = [blob_of(seed, 100) for seed in range(50)]
        for blob in stable:
            backend.write(name_of(blob), blob)
        listings: list[list[str]] = []

        def write_more() -> None:
            for seed in range(1000, 1100):
                blob = blob_of(seed, 100)
                backend.write(name_of(blob), blob)

        def list_names() -> None:
            for _ in range(5):
                listings.append(list(backend.names()))

        run_threads([write_more, list_names])
        for listing in listings:
            assert {name_of(blob) for blob in stable} <= set(listing)
            assert len(listing) == len(set(listing))

    def test_statistics_count_writes_hits_deletes_and_stored_bytes(
        self, backend: ChunkBackend
    ) -> None:
        blobs = [blob_of(seed, 1000 + seed) for seed in range(3)]
        for blob in [*blobs, blobs[0]]:
            backend.write(name_of(blob), blob)
        backend.touch(name_of(blobs[1]))
        backend.touch(name_of(b"absent"))
        self.clock.advance(IDLE_S + 1)
        backend.delete_if_idle(name_of(blobs[2]), IDLE_S)
        statistics = backend.statistics()
        assert statistics.chunk_count == 2
        assert statistics.stored_bytes >= len(blobs[0]) + len(blobs[1])
        assert statistics.writes == 4
        assert statistics.bytes_written == sum(map(len, blobs)) + len(blobs[0])
        assert statistics.dedup_hits == 1
        assert statistics.deletes == 1
        assert statistics.failed is False

    def test_check_reports_no_problems_after_normal_use(self, backend: ChunkBackend) -> None:
        blobs = [blob_of(seed) for seed in range(10)]
        for blob in blobs:
            backend.write(name_of(blob), blob)
        backend.touch(name_of(blobs[0]))
        self.clock.advance(IDLE_S + 1)
        backend.delete_if_idle(name_of(blobs[1]), IDLE_S)
        assert backend.check() == []

    # -- concurrency ----------------------------------------------------------

    def test_write_leaves_one_intact_blob_when_threads_write_same_name(
        self, backend: ChunkBackend
    ) -> None:
        blob = blob_of(9, 200_000)
        run_threads([lambda: backend.write(name_of(blob), blob)] * 8)
        assert backend.read(name_of(blob)) == blob
        assert list(backend.names()) == [name_of(blob)]
        assert backend.check() == []

    def test_write_stores_every_blob_when_threads_write_distinct_names(
        self, backend: ChunkBackend
    ) -> None:
        blobs = [blob_of(seed, 5000) for seed in range(64)]

        def writer(part: list[bytes]) -> Callable[[], None]:
            def write_part() -> None:
                for blob in part:
                    backend.write(name_of(blob), blob)

            return write_part

        run_threads([writer(blobs[start::4]) for start in range(4)])
        assert all(backend.read(name_of(blob)) == blob for blob in blobs)
        assert backend.statistics().chunk_count == len(blobs)

    def test_delete_if_idle_never_deletes_blob_when_touch_races_from_another_thread(
        self, backend: ChunkBackend
    ) -> None:
        # Of 300 idle blobs, the toucher walks down from 199 to 0 and the
        # deleter up from 100 to 299: they meet somewhere in 100..199 and race
        # there, while 0..99 can only be claimed and 200..299 only deleted.
        names = []
        for seed in range(300):
            blob = blob_of(seed, 64)
            backend.write(name_of(blob), blob)
            names.append(name_of(blob))
        self.clock.advance(IDLE_S * 10)
        claimed: set[str] = set()
        deleted: set[str] = set()

        def touch_down() -> None:
            claimed.update(
                name for name in reversed(names[:200]) if backend.touch(name) is not None
            )

        def delete_up() -> None:
            deleted.update(name for name in names[100:] if backend.delete_if_idle(name, IDLE_S))

        run_threads([touch_down, delete_up])
        assert set(names[:100]) <= claimed
        assert set(names[200:]) <= deleted
        assert claimed.isdisjoint(deleted)
        # A touch that lost the race answers False but may still have stamped
        # the blob, which then stays: present may hold more than was claimed.
        present = set(backend.names())
        assert claimed <= present
        assert present.isdisjoint(deleted)
        assert present | deleted == set(names)
