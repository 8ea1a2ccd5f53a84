"""The DataEngine inside a real ``tier0 serve``: a PUT through S3 runs a function on the
server's worker processes; kill -9 the server mid-invocation, start it again, and every
event is processed at least once, with effects made exactly once by the idempotency key.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import tier0
from tests.server.test_serve import ROOT_ACCESS, ROOT_SECRET, ServeProcess, clean_environment
from tier0.engine import FunctionSpec, TriggerSpec

pytestmark = pytest.mark.slow
PACKAGE = Path(__file__).parent / "functions"
EVENTS = 24


def _s3(url: str) -> object:
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=ROOT_ACCESS, aws_secret_access_key=ROOT_SECRET,
        region_name="us-east-1", config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip


def test_kill_9_mid_invocation_then_restart_processes_every_event_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    environment = clean_environment(
        TIER0_ROOT_ACCESS_KEY=ROOT_ACCESS, TIER0_ROOT_SECRET_KEY=ROOT_SECRET
    )
    with tier0.open(data) as t0:
        t0.create_bucket("docs")
        t0.engine.deploy(
            FunctionSpec("once", "t0test_fns:once", concurrency=2, grants=(("s3:*", "/docs/*"),)),
            package=PACKAGE,
        )
        t0.engine.add_trigger(TriggerSpec("once", "once", bucket="docs", prefix="in/"))
    with ServeProcess(data, environment, "--function-workers", "2") as server:
        s3 = _s3(server.url)
        for i in range(EVENTS):
            s3.put_object(Bucket="docs", Key=f"in/{i}", Body=b"x")  # type: ignore[attr-defined]
        with tier0.open(data) as t0:
            deadline = time.monotonic() + 30
            while not t0.engine.invocations(status="done"):
                assert time.monotonic() < deadline, "no function ran in the server"
                time.sleep(0.05)
            # Some are done, some are running: the server dies now, workers with it.
            assert t0.engine.invocations(status="running")
        server.stop(signal.SIGKILL)
    with tier0.open(data) as t0:
        cut = [i for i in t0.engine.invocations(limit=100) if i.status == "running"]
        assert cut, "the kill found nothing running"
    with ServeProcess(data, environment, "--function-workers", "2"), tier0.open(data) as t0:
        deadline = time.monotonic() + 60
        while len(t0.engine.invocations(status="done", limit=100)) < EVENTS:
            assert time.monotonic() < deadline, "the restarted server did not finish the work"
            time.sleep(0.1)
        records = t0.engine.invocations(limit=100)
        effects = t0.list("docs", prefix="effects/").objects
    assert len(records) == EVENTS and all(r.status == "done" for r in records)
    assert sorted(o.key for o in effects) == sorted(f"effects/{r.idempotency_key}" for r in records)
    retried = {r.id for r in records if r.attempts > 1}
    assert {r.id for r in cut} <= retried  # what was cut ran again
