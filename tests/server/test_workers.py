"""``tier0 serve --workers N``: several processes, one port, one store.

Real processes throughout: the supervisor forks real workers, boto3 writes
through whichever worker the kernel hands each connection to, and the store
is checked afterwards from outside.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.protocols.s3.live import ACCESS, SECRET, make_client
from tests.server.test_serve import ServeProcess, clean_environment
from tier0.server._workers import RESTARTS_MAX, pin_to_cpu, worker_cpus

pytestmark = pytest.mark.slow

WORKERS = 3


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(line) for line in out.split()}


def _wait_for(condition: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture
def environment() -> dict[str, str]:
    return clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)


def test_workers_share_one_port_and_one_store(tmp_path: Path, environment: dict[str, str]) -> None:
    data = tmp_path / "store"
    with ServeProcess(data, environment, "--workers", str(WORKERS), "--cpu-affinity") as server:
        _wait_for(lambda: len(_children(server.process.pid)) == WORKERS)
        workers = _children(server.process.pid)
        s3 = make_client(server.url, max_pool_connections=16)
        s3.create_bucket(Bucket="shared")
        cpu_before = {pid: _cpu_ticks(pid) for pid in workers}

        def put(i: int) -> str:
            # A fresh client per call: new connections spread over the workers.
            client = make_client(server.url)
            client.put_object(Bucket="shared", Key=f"k/{i:04d}", Body=str(i).encode() * 100)
            return str(i)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert sorted(pool.map(put, range(200))) == sorted(str(i) for i in range(200))
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="shared")
            for o in page.get("Contents", [])
        ]
        assert keys == [f"k/{i:04d}" for i in range(200)]
        assert s3.get_object(Bucket="shared", Key="k/0123")["Body"].read() == b"123" * 100
        # Several workers answered: more than one of them spent CPU on the load
        # (an idle worker spends next to none).
        spent = {pid: _cpu_ticks(pid) - cpu_before[pid] for pid in workers}
        assert sum(1 for ticks in spent.values() if ticks >= 3) >= 2, spent
        # Each worker's request threads stay on a CPU of their own, round-robin.
        cpus = sorted(os.sched_getaffinity(0))
        pinned = sorted(_allowed_cpus(pid) for pid in workers)
        assert all(len(allowed) == 1 for allowed in pinned), pinned
        assert sorted(next(iter(a)) for a in pinned) == sorted(
            cpus[i % len(cpus)] for i in range(WORKERS)
        )
        assert server.stop() == 0
    assert not any(_alive(pid) for pid in workers)
    with tier0.open(data) as t0:
        assert t0.check().ok
        assert len(list(t0.iter_objects("shared"))) == 200


def test_workers_keep_every_cpu_by_default(tmp_path: Path, environment: dict[str, str]) -> None:
    with ServeProcess(tmp_path / "store", environment, "--workers", "2") as server:
        _wait_for(lambda: len(_children(server.process.pid)) == 2)
        s3 = make_client(server.url)
        s3.create_bucket(Bucket="free")  # the workers are serving
        everything = set(os.sched_getaffinity(0))
        assert [_allowed_cpus(pid) for pid in _children(server.process.pid)] == [everything] * 2
        assert server.stop() == 0


def _allowed_cpus(pid: int) -> set[int]:
    """The CPUs the process's main thread may run on (Cpus_allowed_list)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("Cpus_allowed_list:"))
    allowed: set[int] = set()
    for part in line.split(":", 1)[1].strip().split(","):
        low, _, high = part.partition("-")
        allowed.update(range(int(low), int(high or low) + 1))
    return allowed


def test_a_dead_worker_is_replaced(tmp_path: Path, environment: dict[str, str]) -> None:
    with ServeProcess(tmp_path / "store", environment, "--workers", "2") as server:
        _wait_for(lambda: len(_children(server.process.pid)) == 2)
        victim = min(_children(server.process.pid))
        os.kill(victim, signal.SIGKILL)
        _wait_for(
            lambda: (
                victim not in _children(server.process.pid)
                and len(_children(server.process.pid)) == 2
            )
        )
        s3 = make_client(server.url)
        s3.create_bucket(Bucket="after")
        s3.put_object(Bucket="after", Key="k", Body=b"still serving")
        assert s3.get_object(Bucket="after", Key="k")["Body"].read() == b"still serving"
        assert server.stop() == 0
    assert any("was killed by SIGKILL; starting another" in line for line in server.stderr)


def test_workers_stop_when_the_supervisor_is_killed(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    with ServeProcess(tmp_path / "store", environment, "--workers", "2") as server:
        _wait_for(lambda: len(_children(server.process.pid)) == 2)
        workers = _children(server.process.pid)
        server.stop(signal.SIGKILL)
    _wait_for(lambda: not any(_alive(pid) for pid in workers))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
    return int(fields[11]) + int(fields[12])


def test_workers_that_keep_dying_stop_the_supervisor() -> None:
    # In a fresh interpreter: run_workers forks, which needs a process with no
    # other threads (pytest's may have some).
    script = (
        "import sys\n"
        "from tier0.server import bind_reuseport, run_workers\n"
        "sockets = bind_reuseport('127.0.0.1', 0, 2, 16)\n"
        "def work(sock):\n"
        "    raise RuntimeError('this worker cannot start')\n"
        "sys.exit(run_workers(sockets, work))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    # Two first workers, RESTARTS_MAX replacements; the last may be stopped
    # before it fails on its own.
    assert result.stderr.count("this worker cannot start") >= RESTARTS_MAX + 1
    assert result.stderr.count("starting another") == RESTARTS_MAX
    assert "stopping (see the errors above)" in result.stderr


def test_a_pinned_thread_and_the_threads_it_starts_stay_on_its_cpu() -> None:
    cpu = max(os.sched_getaffinity(0))
    seen: dict[str, set[int]] = {}

    def pinned() -> None:
        pin_to_cpu(cpu)
        seen["pinned"] = os.sched_getaffinity(0)
        child = threading.Thread(target=lambda: seen.setdefault("child", os.sched_getaffinity(0)))
        child.start()
        child.join()

    everything = os.sched_getaffinity(0)
    thread = threading.Thread(target=pinned)
    thread.start()
    thread.join()
    assert seen == {"pinned": {cpu}, "child": {cpu}}
    assert os.sched_getaffinity(0) == everything  # only that thread was pinned
    assert worker_cpus(5) == [sorted(everything)[i % len(everything)] for i in range(5)]
