"""Crash safety: SIGKILL a busy writer at random moments, then verify the store.

After every kill: each acknowledged put reads back byte-identical (or was
superseded by an operation that began later), each acknowledged delete stays
deleted, nothing is torn, and ``check()`` is clean.
"""

from __future__ import annotations

import pathlib
import random
import signal
import subprocess
import sys
import time

import blake3
import pytest

import tier0
from tests.processes import ROOT, python_env

CYCLES = 8
BUCKET = "crash"


def _expected_states(log: str, before: dict[str, str | None]) -> dict[str, set[str | None]]:
    """Per key, the digests it may hold now (None = deleted), from the writer's log
    and what each key held ``before`` this writer started (earlier cycles' keys)."""
    begun: dict[tuple[str, str], tuple[str, str, str]] = {}
    states: dict[str, set[str | None]] = {}
    acked_state: dict[str, str | None] = dict(before)
    in_flight: dict[str, str | None] = {}
    for line in log.splitlines():
        parts = line.split()
        if parts[0] == "B":
            _, thread, op, kind, key, digest = parts
            begun[(thread, op)] = (kind, key, digest)
            in_flight[key] = None if kind == "delete" else digest
        elif parts[0] == "A":
            kind, key, digest = begun.pop((parts[1], parts[2]))
            acked_state[key] = None if kind == "delete" else digest
            in_flight.pop(key, None)
    for key in set(acked_state) | set(in_flight):
        allowed: set[str | None] = set()
        allowed.add(acked_state.get(key))
        if key in in_flight:
            allowed.add(in_flight[key])
        states[key] = allowed
    return states


@pytest.mark.slow
def test_sigkill_during_writes_loses_nothing_acknowledged(
    tmp_path: pathlib.Path, meta_url: str
) -> None:
    data = tmp_path / "data"
    with tier0.open(data, meta=meta_url) as t0:
        t0.create_bucket(BUCKET)
    rng = random.Random(1234)
    log_path = tmp_path / "ops.log"
    held: dict[str, str | None] = {}  # what each key held after the last cycle
    for cycle in range(CYCLES):
        log_path.write_bytes(b"")
        writer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.store.crash_writer",
                str(data),
                meta_url,
                BUCKET,
                str(cycle),
                str(log_path),
            ],
            cwd=ROOT,
            env=python_env(),
            stderr=subprocess.PIPE,
        )
        # Killed at a random moment after its first acknowledged write (however
        # slowly the machine lets it get there), so that each cycle checks one.
        deadline = time.monotonic() + 30
        while b"\nA " not in b"\n" + log_path.read_bytes():
            assert writer.poll() is None, writer.stderr.read().decode() if writer.stderr else ""
            assert time.monotonic() < deadline, "the writer acknowledged no write"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.3))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert writer.stderr is not None
        writer.stderr.close()
        states = _expected_states(log_path.read_text(), held)
        with tier0.open(data, meta=meta_url) as t0:
            for key, allowed in states.items():
                try:
                    actual: str | None = blake3.blake3(t0.get_bytes(BUCKET, key)).hexdigest()
                except tier0.NoSuchKey:
                    actual = None
                assert actual in allowed, (
                    f"cycle {cycle}: {key} holds {actual}, expected one of {allowed}"
                )
                held[key] = actual
            report = t0.check(deep=True)
            assert report.ok, report.problems
            if cycle % 3 == 2:
                # No writer runs now, so a zero grace period is safe: reclaim everything unreferenced.
                t0.gc(grace_s=0)
                assert t0.check(deep=True).ok
                assert t0.stats().unreferenced_chunks == 0
