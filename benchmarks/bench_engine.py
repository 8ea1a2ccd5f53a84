"""The DataEngine: how soon a function starts after the write that triggers it, and how
many events a trivial function keeps up with.

Latency: a PUT, then the function's first line logs the time (``time.time_ns``
in the worker); the figure is that time minus the moment the PUT returned,
over sequential PUTs spaced out so that each sees an idle engine (warm
workers, as a steady trigger has). The floor is a plain
``ProcessPoolExecutor.submit`` of the same kind of function to warm workers:
the submit-to-start time of Python's own process pool, with no event, no
database and no lease in between. The Ray runtime is measured the same way
on a local Ray instance (tasks: the module has no ``init``).

Throughput: ``noop`` (the built-in that does nothing) triggered by every PUT
of a small object. Backlog: events written with the engine stopped, then
the engine started; events/s from the first invocation done (the workers
are up) to the last. Live:
writers PUT while the engine runs; events/s the engine finished, and the
outbox-to-invocation lag (an invocation's ``created`` minus its event's
time). Baseline: the same count of trivial tasks, each its own
``ProcessPoolExecutor.submit``, on as many workers: a floor with nothing
durable (no event, no invocation row, no lease, no record of the end).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _common import Context, Section, open_store

FUNCTIONS = Path(__file__).resolve().parent / "functions"
WORKERS = 4
GRANTS = (("s3:*", "/bench/*"),)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _wait_done(t0: Any, count: int, timeout_s: float, function: str = "%") -> None:
    """Until ``count`` invocations (of functions LIKE ``function``) have ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        with t0._kernel.meta.reader() as db:
            done = db.query_one(
                "SELECT count(*) FROM t0_invocations WHERE status IN ('done', 'dead')"
                " AND function_name LIKE ?",
                (function,),
            )[0]
        if done >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {done} of {count} invocations finished")
        time.sleep(0.01)


def _done(t0: Any) -> int:
    with t0._kernel.meta.reader() as db:
        return int(db.query_one("SELECT count(*) FROM t0_invocations WHERE status = 'done'")[0])


def _latencies(t0: Any, count: int, runtime: str) -> list[float]:
    """Event-to-function-start latencies (ms) of ``count`` spaced PUTs."""
    function, prefix = f"stamp-{runtime}", f"{runtime}/"
    acknowledged: dict[str, int] = {}
    with t0.engine.start(workers=WORKERS, runtime=runtime):
        for warm in range(WORKERS):  # start the workers before measuring
            t0.put("bench", f"{prefix}warm/{warm}", b"x")
        _wait_done(t0, WORKERS, 120, function)
        time.sleep(0.5)
        for i in range(count):
            key = f"{prefix}{i}"
            t0.put("bench", key, b"x")
            acknowledged[key] = time.time_ns()
            time.sleep(0.03)
        _wait_done(t0, count + WORKERS, 60, function)
    keys = {
        r.id: r.event.get("key") for r in t0.engine.invocations(function=function, limit=10_000)
    }
    found = [
        (int(line.message) - acknowledged[keys[line.invocation]]) / 1e6
        for line in t0.engine.logs(function=function, limit=10_000)
        if keys.get(line.invocation) in acknowledged
    ]
    assert len(found) == count, f"{len(found)} of {count} starts were logged"
    return found


def _floor_latencies(count: int) -> list[float]:
    sys.path.insert(0, str(FUNCTIONS))
    from t0bench_fns import started_ns

    found = []
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(started_ns, range(WORKERS)))  # warm
        for _ in range(count):
            submitted = time.time_ns()
            found.append((pool.submit(started_ns).result() - submitted) / 1e6)
            time.sleep(0.03)
    return found


def _trivial(_: int) -> None:
    return None


def run(context: Context) -> Section:
    from tier0.engine import FunctionSpec, TriggerSpec
    from tier0.engine.builtins import NOOP

    samples = 40 if context.quick else 200
    events = 1_000 if context.quick else 5_000
    section = Section("engine", "DataEngine: event to function start, and events per second")
    floor = _floor_latencies(samples)
    runtimes = ["process"]
    try:
        import ray

        runtimes.append("ray")
    except ImportError:
        section.notes.append("Ray is not installed: its rows are missing (pip install tier0[ray])")
    latencies: dict[str, list[float]] = {}
    with context.scratch("engine") as directory, open_store(directory) as t0:
        t0.create_bucket("bench")
        for runtime in runtimes:
            name = f"stamp-{runtime}"
            t0.engine.deploy(FunctionSpec(name, "t0bench_fns:stamp", grants=GRANTS),
                             package=FUNCTIONS)  # fmt: skip
            t0.engine.add_trigger(TriggerSpec(name, name, bucket="bench", prefix=f"{runtime}/"))
            if runtime == "ray":
                import ray

                ray.init(
                    address="local", num_cpus=WORKERS, include_dashboard=False,
                    log_to_driver=False,
                )  # fmt: skip
            try:
                latencies[runtime] = _latencies(t0, samples, runtime)
            finally:
                if runtime == "ray":
                    ray.shutdown()
            t0.engine.remove_trigger(name)

    floor_p50, floor_p99 = statistics.median(floor), _percentile(floor, 0.99)
    for runtime, values in latencies.items():
        label = "worker processes" if runtime == "process" else "Ray tasks"
        p50, p99 = statistics.median(values), _percentile(values, 0.99)
        section.add(
            f"PUT to function start, p50 ({label})", p50, "ms",
            "ProcessPoolExecutor.submit to start, p50", floor_p50, higher_is_better=False,
            target="< 20 ms" if runtime == "process" else "", met=p50 < 20 if runtime == "process"
            else None,
        )  # fmt: skip
        section.add(
            f"PUT to function start, p99 ({label})", p99, "ms",
            "ProcessPoolExecutor.submit to start, p99", floor_p99, higher_is_better=False,
            target="< 100 ms" if runtime == "process" else "", met=p99 < 100 if runtime ==
            "process" else None,
        )  # fmt: skip

    # Throughput: a backlog, then live.
    with context.scratch("engine-throughput") as directory, open_store(directory) as t0:
        t0.create_bucket("bench")
        t0.engine.deploy(FunctionSpec("noop", NOOP, concurrency=WORKERS))
        t0.engine.add_trigger(TriggerSpec("noop", "noop", bucket="bench"))
        _put_many(t0, "backlog/", events)
        with t0.engine.start(workers=WORKERS):
            _wait_done(t0, 1, 120)  # the workers started: from here on, the drain
            started = time.perf_counter()
            first = _done(t0)
            _wait_done(t0, events, 600)
            drained = events - first
            drained_s = time.perf_counter() - started
            live_started = time.perf_counter()
            put_s = _put_many(t0, "live/", events)
            _wait_done(t0, 2 * events, 600)
            live_s = time.perf_counter() - live_started
        with t0._kernel.meta.reader() as db:
            lags = [
                (row[0] - row[1]) / 1000
                for row in db.query_all(
                    "SELECT i.created_us, e.time_us FROM t0_invocations i"
                    " JOIN t0_events e ON e.seq = i.seq WHERE e.key LIKE 'live/%'"
                )
            ]
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(_trivial, range(WORKERS)))
        pool_started = time.perf_counter()
        for future in [pool.submit(_trivial, i) for i in range(events)]:
            future.result()
        pool_s = time.perf_counter() - pool_started
    pool_rate = events / pool_s
    section.add(
        "trivial function, backlog drained", drained / drained_s, "events/s",
        "ProcessPoolExecutor.submit per task", pool_rate, target=">= 1,000/s",
        met=drained / drained_s >= 1000,
    )  # fmt: skip
    section.add(
        "trivial function, live (PUTs and engine at once)", events / live_s, "events/s",
        "ProcessPoolExecutor.submit per task", pool_rate, target=">= 1,000/s",
        met=events / live_s >= 1000,
    )  # fmt: skip
    section.facts["live: PUTs/s offered (4 writer threads)"] = round(events / put_s)
    section.facts["live: outbox-to-invocation lag p50 / p99 (ms)"] = (
        f"{statistics.median(lags):.1f} / {_percentile(lags, 0.99):.1f}"
    )
    section.facts["worker processes"] = WORKERS
    section.notes.append(
        "latency: from the PUT's return to the function's first line, over spaced PUTs on"
        " warm workers; the floor is a warm ProcessPoolExecutor's submit-to-start"
    )
    return section


def _put_many(t0: Any, prefix: str, count: int) -> float:
    """PUT ``count`` small objects from four threads; the seconds it took."""
    started = time.perf_counter()

    def writer(offset: int) -> None:
        for i in range(offset, count, 4):
            t0.put("bench", f"{prefix}{i}", b"x" * 64)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
