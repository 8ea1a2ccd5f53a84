"""Several tier0 processes on one store behave as one store.

SQLite: processes share a data directory. PostgreSQL: processes share the
database and the chunk directory, as gateways on several hosts would.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading

import pytest

import tier0
from tests.processes import ROOT, python_env


def _worker(data: pathlib.Path, meta: str, prefix: str, count: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.meta.sharing_worker",
            str(data),
            meta,
            "shared",
            prefix,
            str(count),
        ],
        cwd=ROOT,
        env=python_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _close(process: subprocess.Popen[str]) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


@pytest.mark.slow
def test_two_processes_write_and_read_each_other_at_once(
    tmp_path: pathlib.Path, meta_url: str
) -> None:
    data = tmp_path / "data"
    with tier0.open(data, meta=meta_url) as t0:
        t0.create_bucket("shared")
        others = [_worker(data, meta_url, f"p{i}-", 40) for i in range(2)]
        for process in others:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        # This process writes at the same time as the two others.
        mine = [t0.put("shared", f"me-{i}", b"mine" * 100) for i in range(40)]
        for process in others:
            assert process.stdout is not None
            for line in process.stdout:
                acked = json.loads(line)
                # A write acknowledged by another process is readable here at once.
                assert t0.head("shared", acked["key"]).etag == acked["etag"]
                assert t0.get_bytes("shared", acked["key"]) == acked["key"].encode() * 1000
            assert process.wait(timeout=60) == 0
            _close(process)
        assert len(list(t0.iter_objects("shared"))) == 120
        assert {info.key for info in mine} <= {
            o.key for o in t0.iter_objects("shared", prefix="me-")
        }
        events = t0.events.read(0, limit=1000)
        assert [e.seq for e in events] == list(range(1, 122))
        assert t0.check(deep=True).ok


@pytest.mark.slow
def test_event_wait_wakes_on_another_process_commit(tmp_path: pathlib.Path, meta_url: str) -> None:
    data = tmp_path / "data"
    with tier0.open(data, meta=meta_url) as t0:
        t0.create_bucket("shared")
        after = t0.events.latest_seq()
        process = _worker(data, meta_url, "w-", 1)
        woke: list[tier0.Event] = []
        # The wait would end by itself only after 60 s: ending sooner means the commit woke it.
        waiter = threading.Thread(target=lambda: woke.extend(t0.events.wait(after, timeout_s=60)))
        waiter.start()
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.wait(timeout=60) == 0
        _close(process)
        waiter.join(timeout=15)
        assert not waiter.is_alive(), "another process's commit did not wake the wait"
        assert [e.key for e in woke] == ["w-0"]
