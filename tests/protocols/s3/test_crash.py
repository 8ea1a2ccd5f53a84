"""Crash safety through S3: SIGKILL a busy ``tier0 serve`` at random moments, restart, verify.

Several boto3 writers (threads of this process, each owning its keys) PUT,
DELETE and complete multipart uploads as fast as the server answers, and
record every operation before they send it and again once it is
acknowledged. The server is killed with SIGKILL at a random moment; the
writers see their connection fail and stop. Then, with no server running,
the store's own ``check()`` must be clean; the server restarts on the same
data directory, and through S3 each key must hold what its last acknowledged
operation left, or what the one operation in flight at the kill would have
left (it may or may not have committed), and the listing must agree. After
the last round the server stops normally and ``tier0 fsck --deep`` is clean.

The kernel-level version of this test is tests/store/test_crash.py; this one
adds the gateway (streamed bodies, multipart completion, its thread pool) and
a server process between the writers and the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as LostConnection

import tier0
from tests.protocols.s3.live import ACCESS, SECRET, make_client
from tests.server.test_serve import ServeProcess, clean_environment, tier0_executable

pytestmark = pytest.mark.slow

ROUNDS = 4
WRITERS = 4
KEYS_PER_WRITER = 5
BUCKET = "crash"
MiB = 1024 * 1024
PART_BYTES = 5 * MiB  # S3's smallest part but the last
#: Acknowledged operations each round waits for before it may kill the server.
ACKS_BEFORE_KILL = 4
WAIT_S = 60.0

#: A key's content as the test tracks it: the SHA-256 of its bytes, or None for no object.
State = str | None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class Key:
    """What one key may hold: the state its last acknowledged operation left, and the
    state the operation in flight at the kill (if any) would leave."""

    acknowledged: State = None
    in_flight: list[State] = dataclasses.field(default_factory=list)

    def allowed(self) -> list[State]:
        return [self.acknowledged, *self.in_flight]


class Writer(threading.Thread):
    """One writer: random operations on its own keys until an operation fails."""

    def __init__(self, index: int, s3: Any, keys: dict[str, Key], seed: str) -> None:
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.s3 = s3
        self.keys = keys
        self.rng = random.Random(seed)
        self.acknowledged = 0
        self.completed_uploads = 0
        #: An answer that is not a lost connection (an S3 error): the test fails on it.
        self.unexpected: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                self._one_operation()
                self.acknowledged += 1
        except (HTTPClientError, LostConnection):
            pass  # the server died under us: the operation in flight stays in flight
        except BaseException as error:  # the test reports it
            self.unexpected = error

    def _one_operation(self) -> None:
        name = f"w{self.index}/k{self.rng.randrange(KEYS_PER_WRITER)}"
        key = self.keys.setdefault(name, Key())
        choice = self.rng.random()
        if choice < 0.2:
            self._acknowledge(key, None, lambda: self.s3.delete_object(Bucket=BUCKET, Key=name))
        elif choice < 0.3:
            self._multipart(name, key)
        else:
            body = self._body()
            self._acknowledge(
                key,
                _digest(body),
                lambda: self.s3.put_object(Bucket=BUCKET, Key=name, Body=body),
            )

    def _body(self) -> bytes:
        size = self.rng.choice([0, 1, 1000, 70_000, 300_000, self.rng.randrange(1, 2 * MiB)])
        return self.rng.randbytes(size)

    def _multipart(self, name: str, key: Key) -> None:
        parts = [self.rng.randbytes(PART_BYTES), self._body() or b"x"]
        upload = self.s3.create_multipart_upload(Bucket=BUCKET, Key=name)["UploadId"]
        etags = [
            self.s3.upload_part(
                Bucket=BUCKET, Key=name, UploadId=upload, PartNumber=number, Body=part
            )["ETag"]
            for number, part in enumerate(parts, start=1)
        ]
        completion = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]}
        # Only the completion changes what the key holds.
        self._acknowledge(
            key,
            _digest(b"".join(parts)),
            lambda: self.s3.complete_multipart_upload(
                Bucket=BUCKET, Key=name, UploadId=upload, MultipartUpload=completion
            ),
        )
        self.completed_uploads += 1

    @staticmethod
    def _acknowledge(key: Key, state: State, operation: Any) -> None:
        key.in_flight.append(state)
        operation()
        # Acknowledged: it is what the key holds now.
        key.acknowledged = state
        key.in_flight.clear()


def _start(data: Path, meta_url: str) -> ServeProcess:
    environment = clean_environment(
        TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET, TIER0_META=meta_url
    )
    return ServeProcess(data, environment)


def _kill(server: ServeProcess) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=WAIT_S)
    server.close()
    assert server.process.returncode == -signal.SIGKILL


def _verify(server: ServeProcess, keys: dict[str, Key], context: str) -> None:
    """Each key holds an allowed state; the listing agrees. Then what it holds is what it
    holds: the in-flight operation is resolved one way or the other."""
    s3 = make_client(server.url)
    for name, key in sorted(keys.items()):
        try:
            actual: State = _digest(s3.get_object(Bucket=BUCKET, Key=name)["Body"].read())
        except ClientError as error:
            log = "".join(server.stderr)[-4000:]
            assert error.response["Error"]["Code"] == "NoSuchKey", f"{context}: {error}\n{log}"
            actual = None
        assert actual in key.allowed(), (
            f"{context}: {name} holds {actual}, expected one of {key.allowed()}"
        )
        key.acknowledged = actual
        key.in_flight.clear()
    listed = {
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for entry in page.get("Contents", [])
    }
    assert listed == {name for name, key in keys.items() if key.acknowledged is not None}, context


def _assert_writing(server: ServeProcess, writers: list[Writer]) -> None:
    """Every writer is still writing: none stopped on an error while the server ran."""
    for writer in writers:
        log = "".join(server.stderr)[-4000:]
        assert writer.unexpected is None, f"{writer.name}: {writer.unexpected!r}\n{log}"
        assert writer.is_alive(), f"{writer.name} stopped with the server still up"


def _wait_for_progress(
    server: ServeProcess, writers: list[Writer], *, acknowledged: int, completed_uploads: int
) -> None:
    """Until the writers together have that many operations and multipart completions
    acknowledged."""
    deadline = time.monotonic() + WAIT_S
    while (
        sum(writer.acknowledged for writer in writers) < acknowledged
        or sum(writer.completed_uploads for writer in writers) < completed_uploads
    ):
        _assert_writing(server, writers)
        assert time.monotonic() < deadline, "the writers made no progress"
        time.sleep(0.01)


def test_sigkill_under_concurrent_s3_writers_loses_nothing_acknowledged(
    tmp_path: Path, meta_url: str
) -> None:
    data = tmp_path / "data"
    rng = random.Random(20240611)
    keys: dict[str, Key] = {}
    with _start(data, meta_url) as server:
        make_client(server.url).create_bucket(Bucket=BUCKET)
        _kill(server)

    for round_number in range(ROUNDS):
        with _start(data, meta_url) as server:
            _verify(server, keys, f"round {round_number}, before writing")
            # boto3 clients are made here: creating them is not thread-safe, using them is.
            clients = [make_client(server.url) for _ in range(WRITERS)]
            writers = [
                Writer(index, client, keys, f"{round_number}:{index}")
                for index, client in enumerate(clients)
            ]
            # Each writer owns its keys, so no two threads touch one Key.
            for writer in writers:
                writer.start()
            # The first round also waits for a multipart completion, so that every kind
            # of operation is known to have been acknowledged before some kill.
            _wait_for_progress(
                server,
                writers,
                acknowledged=ACKS_BEFORE_KILL,
                completed_uploads=int(round_number == 0),
            )
            time.sleep(rng.uniform(0.1, 1.5))
            _assert_writing(server, writers)  # so the kill lands mid-writing
            _kill(server)
            for writer in writers:
                writer.join(timeout=WAIT_S)
                assert not writer.is_alive(), f"{writer.name} hangs after the kill"
                assert writer.unexpected is None, f"{writer.name}: {writer.unexpected!r}"
        output = "".join(server.stdout + server.stderr)
        assert "Traceback" not in output, output[-4000:]

        # With no server running: the store's own check, on every chunk's bytes.
        with tier0.open(data, meta=meta_url) as store:
            report = store.check(deep=True)
            assert report.ok, f"round {round_number}: {report.problems}"

    # A last restart: everything holds, then a clean stop and the command-line fsck.
    with _start(data, meta_url) as server:
        _verify(server, keys, "after the last kill")
        assert server.stop(signal.SIGTERM) == 0
    fsck = subprocess.run(
        [tier0_executable(), "--data", str(data), "fsck", "--deep"],
        env=clean_environment(TIER0_META=meta_url),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck.stdout.startswith("fsck: ok"), fsck.stdout
