"""A real ``tier0 serve`` process: sockets, signals, TLS, and a CLI writing beside it."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
import pytest

from tests import tcp

pytestmark = pytest.mark.slow

ROOT_ACCESS = "T0SERVETESTROOTKEY01"
ROOT_SECRET = "serve-test-secret-0123456789abcdefghijkl"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def tier0_executable() -> str:
    executable = shutil.which("tier0")
    assert executable is not None, "run `pip install -e .` to install the tier0 command"
    return executable


def clean_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TIER0_")}
    environment.update(extra)
    return environment


class ServeProcess:
    """``tier0 --data DATA serve --address 127.0.0.1:0 ...``, with its output collected."""

    def __init__(self, data: Path, environment: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [tier0_executable(), "--data", str(data), "serve", "--address", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self.stdout, True)),
            threading.Thread(target=self._drain, args=(self.process.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.start()
        self.url = self._wait_listening()

    def _drain(self, stream: IO[str], into: list[str], announce: bool) -> None:
        with stream:
            for line in stream:
                into.append(line)
                if announce:
                    self._lines.put(line)

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            found = re.search(r"listening on (\S+)", line)
            if found:
                return found.group(1)
        self.close()
        raise AssertionError(f"tier0 serve did not start: {''.join(self.stdout + self.stderr)}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code (within STOP_TIMEOUT_S)."""
        self.process.send_signal(sig)
        code = self.process.wait(timeout=STOP_TIMEOUT_S)
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT_S)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def wait_healthy(client: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            response = client.get(f"{url}/_tier0/health")
            if response.status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, verify=False) as http:
        yield http


def sql(client: httpx.Client, url: str, query: str, auth: tuple[str, str]) -> list[list[object]]:
    response = client.post(f"{url}/_tier0/sql", json={"sql": query}, auth=auth)
    assert response.status_code == 200, response.text
    rows: list[list[object]] = response.json()["rows"]
    return rows


def test_serve_sees_cli_writes_at_once_and_stops_cleanly_on_sigterm(
    tmp_path: Path, client: httpx.Client
) -> None:
    data = tmp_path / "data"
    environment = clean_environment(
        TIER0_ROOT_ACCESS_KEY=ROOT_ACCESS, TIER0_ROOT_SECRET_KEY=ROOT_SECRET
    )
    auth = (ROOT_ACCESS, ROOT_SECRET)
    with ServeProcess(data, environment) as server:
        wait_healthy(client, server.url)
        assert sql(client, server.url, "SELECT count(*) AS n FROM objects", auth) == [[0]]
        assert client.post(f"{server.url}/_tier0/sql", json={"sql": "SELECT 1"}).status_code == 401

        # A second process writes to the same data directory while the server runs.
        (tmp_path / "hello.txt").write_bytes(b"hello from the CLI")
        for args in (("mb", "tier0://docs"), ("put", str(tmp_path / "hello.txt"), "tier0://docs/")):
            subprocess.run(
                [tier0_executable(), "--data", str(data), *args],
                env=environment, check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        rows = sql(client, server.url, "SELECT bucket, key, size FROM objects", auth)
        assert rows == [["docs", "hello.txt", 18]]

        # A long poll in flight when SIGTERM arrives gets its answer, then the process exits 0.
        latest = client.get(f"{server.url}/_tier0/events", auth=auth).json()["next_after"]
        port = httpx.URL(server.url).port
        assert port is not None
        poll = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            token = base64.b64encode(f"{ROOT_ACCESS}:{ROOT_SECRET}".encode()).decode()
            poll.request(
                "GET",
                f"/_tier0/events?after={latest}&wait_s=30",
                headers={"Authorization": f"Basic {token}"},
            )
            # Signalled only once the server has read the poll: a request still in its
            # socket is not in flight, and the server would rightly close on it.
            mine = poll.sock.getsockname()[1]
            tcp.wait_until(
                lambda sockets: (
                    any(s.local_port == mine and s.unacknowledged_bytes == 0 for s in sockets)
                    and any(
                        s.local_port == port and s.remote_port == mine and s.unread_bytes == 0
                        for s in sockets
                    )
                ),
                "the server reading the long poll",
            )
            started = time.monotonic()
            assert server.stop(signal.SIGTERM) == 0
            assert time.monotonic() - started < 5
            response = poll.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["events"] == []
        finally:
            poll.close()
    output = "".join(server.stdout + server.stderr)
    assert "Traceback" not in output
    assert "secret key" not in output  # keys from the environment are never printed


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, by `cryptography` when installed, else openssl."""
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl is installed")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(keyfile), "-out", str(certfile), "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return certfile, keyfile
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def test_serve_over_tls_prints_generated_keys_once(tmp_path: Path, client: httpx.Client) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    data = tmp_path / "data"
    tls = ("--certfile", str(certfile), "--keyfile", str(keyfile))
    with ServeProcess(data, clean_environment(), *tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        wait_healthy(client, server.url)
        health = client.get(f"{server.url}/_tier0/health")
        assert health.json()["status"] == "ok"
        printed = "".join(server.stdout)
        access = re.search(r"access key: (\S+)", printed)
        secret = re.search(r"secret key: (\S+)", printed)
        assert access and secret, printed
        saved = data / "root-credentials"
        assert str(saved) in printed
        assert saved.stat().st_mode & 0o777 == 0o600
        auth = (access.group(1), secret.group(1))
        assert sql(client, server.url, "SELECT count(*) AS n FROM buckets", auth) == [[0]]
        assert server.stop(signal.SIGTERM) == 0

    # The second start finds the keys made already: nothing secret is printed, and SIGINT
    # (Ctrl-C) stops it as cleanly as SIGTERM.
    with ServeProcess(data, clean_environment(), *tls) as again:
        wait_healthy(client, again.url)
        assert sql(client, again.url, "SELECT count(*) AS n FROM buckets", auth) == [[0]]
        assert again.stop(signal.SIGINT) == 0
    assert "secret key" not in "".join(again.stdout + again.stderr)
    assert "Traceback" not in "".join(again.stdout + again.stderr)


def test_serve_on_a_busy_port_is_one_error_line(tmp_path: Path, client: httpx.Client) -> None:
    environment = clean_environment(
        TIER0_ROOT_ACCESS_KEY=ROOT_ACCESS, TIER0_ROOT_SECRET_KEY=ROOT_SECRET
    )
    with ServeProcess(tmp_path / "data", environment) as server:
        port = server.url.rsplit(":", 1)[1]
        busy = subprocess.run(
            [tier0_executable(), "--data", str(tmp_path / "data"), "serve", "--address", f"127.0.0.1:{port}"],
            env=environment, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert server.stop() == 0
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
