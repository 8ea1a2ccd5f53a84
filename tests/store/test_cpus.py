"""Bulk-data threads leave a pinned worker's CPU (tier0.store._cpus)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest

from tier0.store import _cpus


@pytest.fixture(autouse=True)
def no_bulk_cpus() -> Iterator[None]:
    yield
    _cpus._bulk_cpus = None


def _in_thread(work: Callable[[], object]) -> set[int]:
    seen: list[set[int]] = []

    def run() -> None:
        work()
        seen.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0]


def test_spread_does_nothing_without_a_pin() -> None:
    everything = os.sched_getaffinity(0)
    assert _in_thread(_cpus.spread) == everything


def test_a_thread_started_by_a_pinned_one_spreads_to_the_bulk_cpus() -> None:
    everything = os.sched_getaffinity(0)
    cpu = min(everything)
    seen: dict[str, set[int]] = {}

    def pinned_request_thread() -> None:
        _cpus.set_bulk_cpus(everything)
        os.sched_setaffinity(0, {cpu})
        seen["inherited"] = _in_thread(lambda: None)
        seen["spread"] = _in_thread(_cpus.spread)

    _in_thread(pinned_request_thread)
    assert seen == {"inherited": {cpu}, "spread": everything}
