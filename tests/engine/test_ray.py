"""The Ray runtime (``tier0.engine._ray``) on a real local Ray instance: the engine loop
unchanged, functions without ``init`` as Ray tasks, functions with ``init`` on Ray actors
(``init`` once per actor), timeouts and failures recorded and retried like on worker
processes, and ``tier0 serve --runtime ray``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.engine import wait_for
from tier0.engine import FunctionSpec, TriggerSpec

ray = pytest.importorskip("ray", reason="the Ray runtime's tests need `pip install 'tier0[ray]'`")
pytestmark = pytest.mark.slow
PACKAGE = Path(__file__).parent / "functions"
GRANTS = (("s3:*", "/docs/*"),)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (starting one takes seconds)."""
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _wait(condition: Callable[[], Any], timeout_s: float = 180.0) -> Any:
    return wait_for(condition, timeout_s)


def test_functions_run_as_ray_tasks_and_actors(local_ray: None, tmp_path: Path) -> None:
    with tier0.open(tmp_path / "data") as t0:
        t0.create_bucket("docs")
        engine = t0.engine
        engine.deploy(FunctionSpec("task", "t0test_fns.stateless:upper", grants=GRANTS),
                      package=PACKAGE)  # fmt: skip
        engine.deploy(FunctionSpec("actor", "t0test_fns:upper", concurrency=1, grants=GRANTS),
                      package=PACKAGE)  # fmt: skip
        engine.deploy(FunctionSpec("hang", "t0test_fns:behave", timeout_s=2, attempts=2,
                                   grants=GRANTS), package=PACKAGE)  # fmt: skip
        engine.add_trigger(TriggerSpec("task", "task", bucket="docs", prefix="t/"))
        engine.add_trigger(TriggerSpec("actor", "actor", bucket="docs", prefix="a/"))
        engine.add_trigger(TriggerSpec("hang", "hang", bucket="docs", prefix="h/"))
        with engine.start(runtime="ray", idle_s=0.2) as loop:
            for i in range(3):
                t0.put("docs", f"t/{i}", f"task {i}".encode())
                t0.put("docs", f"a/{i}", f"actor {i}".encode())
            t0.put("docs", "h/0", b"hang")
            _wait(lambda: len(engine.invocations(status="done")) == 6)
            _wait(lambda: engine.invocations(status="dead"))
            statistics = loop.runtime.statistics()  # type: ignore[attr-defined]
        assert [t0.get("docs", f"tasks/{i}").read() for i in range(3)] == [
            b"TASK 0", b"TASK 1", b"TASK 2",
        ]  # fmt: skip
        assert [t0.get("docs", f"out/{i}").read() for i in range(3)] == [
            b"ACTOR 0", b"ACTOR 1", b"ACTOR 2",
        ]  # fmt: skip
        heads = [t0.head("docs", f"out/{i}").metadata for i in range(3)]
        # One actor (concurrency 1) ran all three, its init once.
        assert [h["inits"] for h in heads] == ["1", "1", "1"]
        assert len({h["pid"] for h in heads}) == 1
        assert all(h["principal"] == "fn.actor" for h in heads)
        [dead] = engine.invocations(status="dead")
        assert dead.function == "hang" and dead.attempts == 2
        assert dead.error is not None and "timed out after 2 s" in dead.error
        assert statistics["killed"] == 2
        lines = [line.message for line in engine.logs(function="task")]
        assert sorted(lines) == [f"task ran for t/{i}" for i in range(3)]


def test_idle_actors_make_room_for_other_functions(local_ray: None, tmp_path: Path) -> None:
    with tier0.open(tmp_path / "data") as t0:
        t0.create_bucket("docs")
        for name in ("a", "b", "c"):
            t0.engine.deploy(FunctionSpec(name, "t0test_fns:upper", concurrency=1,
                                          grants=GRANTS), package=PACKAGE)  # fmt: skip
            t0.engine.add_trigger(TriggerSpec(name, name, bucket="docs", prefix=f"{name}/"))
        with t0.engine.start(runtime="ray", workers=2, idle_s=0.2) as loop:
            for count, name in enumerate(("a", "b", "c"), 1):
                t0.put("docs", f"{name}/x", name.encode())
                _wait(lambda n=count: len(t0.engine.invocations(status="done")) == n)
                actors = loop.runtime.statistics()["actors"]  # type: ignore[attr-defined]
                assert actors <= 2, actors
        assert [t0.get("docs", "out/x").read()] == [b"C"]


def test_serve_runs_functions_on_the_ray_cluster_it_is_given(
    local_ray: None, tmp_path: Path
) -> None:
    from tests.server.test_serve import ServeProcess, clean_environment

    data = tmp_path / "data"
    with tier0.open(data) as t0:
        t0.create_bucket("docs")
        t0.engine.deploy(FunctionSpec("task", "t0test_fns.stateless:upper", grants=GRANTS),
                         package=PACKAGE)  # fmt: skip
        t0.engine.add_trigger(TriggerSpec("task", "task", bucket="docs", prefix="t/"))
    address = ray.get_runtime_context().gcs_address
    with ServeProcess(data, clean_environment(), "--runtime", "ray", "--ray-address", address), \
            tier0.open(data) as t0:  # fmt: skip
        t0.put("docs", "t/x", b"through ray")
        _wait(lambda: t0.engine.invocations(status="done"))
        assert t0.get("docs", "tasks/x").read() == b"THROUGH RAY"
        # It ran in a Ray worker: a process of the cluster, not of the server.
        pid = int(t0.head("docs", "tasks/x").metadata["pid"])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert "ray::" in command or "default_worker" in command
