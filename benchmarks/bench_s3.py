"""The S3 gateway over HTTP: large-object throughput, small-object mixed load, server memory.

Every server here is a separate process on 127.0.0.1 and every client is a
program written in C, the same one for tier0 and its baseline, so the figures
compare servers, not client libraries:

- 64 MiB GET and PUT, one client and 8 at once, with ``curl``: tier0 (through
  presigned URLs, so curl needs no signer) against nginx serving and accepting
  (WebDAV PUT) the same bytes from the same disk, with ``sendfile`` on and off;
  the faster nginx is the baseline. tier0's PUT computes the MD5 ETag S3
  clients expect, so the PUT rows also show the fraction of MD5's own speed
  (measured in this run) that tier0 reached. nginx neither hashes nor fsyncs;
  tier0 does both.
- 4 KiB objects, 16 connections, 70% GET / 30% PUT, with ``wrk`` replaying
  presigned requests: operations/s, p50/p99 latency and the server's CPU
  time per request (its processes' user + system time while wrk ran, which
  the client's share of the two cores does not blur), tier0 against
  ``moto_server`` (a Python S3 server) fed the same request mix; tier0 with
  two workers as started by default, with ``--cpu-affinity``, and with one.
  The same mix also runs against the Python floor (``s3_floor.py``: presigned
  SigV4, one SQLite row a request, PUTs committed per loop turn, nothing
  else), with as many workers: the most a Python server can reach here.
- Memory: the tier0 server's resident set before, during and after a large
  streamed upload, and after the mixed load.

nginx and wrk are system packages; when missing they are installed with
apt-get (the benchmark's setup), and a section that still cannot run says so.
On 2 cores the client shares the CPU with the server under test: the same
holds for the baselines.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Final

from _common import Context, MiB, Section, median, trials

LARGE_BYTES: Final = 64 * MiB
LARGE_CLIENTS: Final = 8
SMALL_BYTES: Final = 4 * 1024
SMALL_CONNECTIONS: Final = 16
SMALL_OBJECTS: Final = 1000
SMALL_GET_FRACTION: Final = 0.7
MEMORY_UPLOAD_BYTES: Final = 5 * 1024 * MiB

ACCESS: Final = "T0BENCHS3ACCESSKEY00"
SECRET: Final = "bench-s3-secret-0123456789abcdefghijklmn"
REGION: Final = "us-east-1"
BUCKET: Final = "bench"


def run(context: Context) -> Section:
    section = Section("s3", "S3 gateway over HTTP: tier0 serve vs nginx and moto_server")
    missing = [tool for tool in ("nginx", "wrk", "curl") if not _ensure_tool(tool)]
    if missing:
        section.notes.append(f"cannot run: {', '.join(missing)} missing and apt-get failed")
        return section
    large = 16 * MiB if context.quick else LARGE_BYTES
    workers = os.cpu_count() or 1
    with context.scratch("s3") as root, _Tier0Server(root / "tier0", workers) as tier0:
        s3 = tier0.client()
        s3.create_bucket(Bucket=BUCKET)
        with _Nginx(root / "nginx") as nginx:
            _large_objects(section, context, root, large, tier0, nginx)
        with _MotoServer() as moto:
            _small_mixed(section, context, root, tier0, moto)
        _memory(section, context, tier0)
    section.facts["tier0 serve"] = (
        f"--workers {workers} (uvicorn each), SQLite metadata, local chunks"
    )
    section.facts["clients"] = "curl (large objects), wrk -t2 (mixed small objects)"
    return section


# -- large objects ---------------------------------------------------------------------------


def _large_objects(
    section: Section, context: Context, root: Path, size: int, tier0: _Tier0Server, nginx: _Nginx
) -> None:
    source = root / "source.bin"
    with open(source, "wb") as file:
        for _ in range(size // MiB):
            file.write(os.urandom(MiB))
    s3 = tier0.client()
    keys = [f"large-{i}" for i in range(LARGE_CLIENTS)]
    n = trials(context.quick)
    label = f"{size // MiB} MiB"
    md5_rate = _md5_rate(source)
    section.facts["MD5 alone (the PUT ceiling), GB/s"] = round(md5_rate / 1e9, 3)

    for clients in (1, LARGE_CLIENTS):
        put_urls = [_presign(s3, "put_object", k) for k in keys[:clients]]
        tier0_put: list[float] = []
        nginx_put: dict[str, list[float]] = {"sendfile on": [], "sendfile off": []}
        for _ in range(n):
            tier0_put.append(_curl_put(put_urls, source, size))
            for mode, port in nginx.ports.items():
                urls = [f"http://127.0.0.1:{port}/{k}" for k in keys[:clients]]
                nginx_put[mode].append(_curl_put(urls, source, size))
        best = max(nginx_put, key=lambda mode: median(nginx_put[mode]))
        row = section.add_paired(
            f"PUT {label}, {clients} client{'s' if clients > 1 else ''}",
            [v / 1e9 for v in tier0_put],
            "GB/s",
            f"nginx WebDAV PUT ({best})",
            [v / 1e9 for v in nginx_put[best]],
        )
        row.note = (
            f"{median(tier0_put) / md5_rate:.0%} of MD5's speed; tier0 hashes (MD5, BLAKE3) "
            "and fsyncs, nginx does neither"
        )

        get_urls = [_presign(s3, "get_object", k) for k in keys[:clients]]
        # One untimed read of everything first: tier0 writes chunks with O_DIRECT
        # (not left in the page cache) while nginx's PUT left its files cached;
        # both then serve from memory, which is what is compared.
        _curl_get(get_urls, size)
        for port in nginx.ports.values():
            _curl_get([f"http://127.0.0.1:{port}/{k}" for k in keys[:clients]], size)
        tier0_get: list[float] = []
        nginx_get: dict[str, list[float]] = {"sendfile on": [], "sendfile off": []}
        for _ in range(n):
            tier0_get.append(_curl_get(get_urls, size))
            for mode, port in nginx.ports.items():
                urls = [f"http://127.0.0.1:{port}/{k}" for k in keys[:clients]]
                nginx_get[mode].append(_curl_get(urls, size))
        best = max(nginx_get, key=lambda mode: median(nginx_get[mode]))
        section.add_paired(
            f"GET {label}, {clients} client{'s' if clients > 1 else ''}",
            [v / 1e9 for v in tier0_get],
            "GB/s",
            f"nginx static file ({best})",
            [v / 1e9 for v in nginx_get[best]],
            target_ratio=0.9,
        )
        section.facts[f"nginx GET {clients} client(s), sendfile on / off, GB/s"] = (
            f"{median(nginx_get['sendfile on']) / 1e9:.2f} / "
            f"{median(nginx_get['sendfile off']) / 1e9:.2f}"
        )


def _md5_rate(path: Path) -> float:
    data = path.read_bytes()
    started = time.perf_counter()
    hashlib.md5(data).digest()
    return len(data) / (time.perf_counter() - started)


def _curl_put(urls: list[str], source: Path, size: int) -> float:
    """Bytes/s of uploading ``source`` to every URL at once, one curl each."""
    return _curl(
        [["-T", str(source), "-H", "Expect:", "-H", "Content-Type:", url] for url in urls],
        len(urls) * size,
    )


def _curl_get(urls: list[str], size: int) -> float:
    rate = _curl([["-o", "/dev/null", url] for url in urls], len(urls) * size)
    return rate


def _curl(argument_lists: list[list[str]], total_bytes: int) -> float:
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            ["curl", "-sS", "--fail-with-body", "-w", "%{http_code}", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    outputs = [process.communicate() for process in processes]
    elapsed = time.perf_counter() - started
    for process, (out, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0 or not out.strip().endswith(("200", "201", "204")):
            raise RuntimeError(f"curl failed ({process.returncode}): {out[-300:]} {err[-300:]}")
    return total_bytes / elapsed


# -- small objects, mixed --------------------------------------------------------------------


def _small_mixed(
    section: Section, context: Context, root: Path, tier0: _Tier0Server, moto: _MotoServer
) -> None:
    duration_s = 4 if context.quick else 10
    body = os.urandom(SMALL_BYTES)
    # moto answers some concurrent PUTs of one key with 500: counted, not fatal, for
    # the baseline; any failed answer from tier0 stops the benchmark.
    mo = _mixed_load(moto, root / "moto.lua", body, duration_s, strict=False)
    if mo["failed"]:
        section.notes.append(f"moto_server answered {mo['failed']:.0f} requests with 5xx")
    t0 = _mixed_load(tier0, root / "tier0.lua", body, duration_s)
    with _Tier0Server(root / "tier0-pinned", tier0.workers, "--cpu-affinity") as pinned_server:
        pinned = _mixed_load(pinned_server, root / "tier0-pinned.lua", body, duration_s)
    with _Tier0Server(root / "tier0-one-worker", workers=1) as single:
        one = _mixed_load(single, root / "tier0-1.lua", body, duration_s)
    with _FloorServer(root / "floor", tier0.workers) as floor_server:
        floor = _mixed_load(floor_server, root / "floor.lua", body, duration_s)
    label = (
        f"4 KiB mixed {SMALL_GET_FRACTION:.0%} GET / {1 - SMALL_GET_FRACTION:.0%} PUT, "
        f"{SMALL_CONNECTIONS} connections"
    )
    runs = ((t0, tier0.workers, ""), (pinned, tier0.workers, ", --cpu-affinity"), (one, 1, ""))
    for result, workers, how in runs:
        section.add(
            f"{label}, {workers} worker{'s' if workers > 1 else ''}{how}",
            result["rate"],
            "ops/s",
            "moto_server, same requests",
            mo["rate"],
            target="≥ 20x",
            met=result["rate"] / mo["rate"] >= 20 if mo["rate"] else None,
            note=(
                f"tier0 p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms,"
                f" server CPU {result['cpu_us']:.0f} us a request"
            ),
        )
    section.add(
        f"{label}, {tier0.workers} workers, against the Python floor",
        t0["rate"],
        "ops/s",
        f"s3_floor.py, {tier0.workers} workers, same requests",
        floor["rate"],
        note=(
            f"floor p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms,"
            f" server CPU {floor['cpu_us']:.0f} us a request"
            + (f"; {floor['rate'] / mo['rate']:.1f}x moto" if mo["rate"] else "")
        ),
    )
    section.add(
        f"4 KiB mixed, p99 latency, {tier0.workers} workers",
        t0["p99_ms"],
        "ms",
        "moto_server p99",
        mo["p99_ms"],
        higher_is_better=False,
        target="< 10 ms",
        met=t0["p99_ms"] < 10,
    )
    section.add(
        f"4 KiB mixed, p50 latency, {tier0.workers} workers",
        t0["p50_ms"],
        "ms",
        "moto_server p50",
        mo["p50_ms"],
        higher_is_better=False,
    )
    section.add(
        f"4 KiB mixed, server CPU per request, {tier0.workers} workers",
        t0["cpu_us"],
        "us",
        "moto_server, CPU per request",
        mo["cpu_us"],
        higher_is_better=False,
    )


def _mixed_load(
    server: _Tier0Server | _MotoServer | _FloorServer,
    script: Path,
    body: bytes,
    duration_s: int,
    *,
    strict: bool = True,
) -> dict[str, float]:
    """Load SMALL_OBJECTS objects, then replay presigned GETs and PUTs of them with wrk.

    The result's ``cpu_us`` is the server's CPU time per request while wrk
    ran: a measure of its own work that the client's share of the CPU does
    not blur.
    """
    client = server.client()
    bucket = "mixed"
    keys = [f"obj/{i:05d}" for i in range(SMALL_OBJECTS)]
    server.load(bucket, keys, body)
    gets = [_presign(client, "get_object", k, bucket=bucket) for k in keys]
    puts = [_presign(client, "put_object", k, bucket=bucket) for k in keys]
    _write_wrk_script(script, gets, puts, body)
    base = urllib.parse.urlsplit(gets[0])
    before = server.cpu_seconds()
    result = _wrk(f"{base.scheme}://{base.netloc}", script, duration_s, strict=strict)
    result["cpu_us"] = (server.cpu_seconds() - before) / result["requests"] * 1e6
    return result


def _write_wrk_script(path: Path, gets: list[str], puts: list[str], body: bytes) -> None:
    """A wrk script replaying presigned requests: GETs and PUTs drawn at random, 70/30."""

    def target(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.path}?{parts.query}"

    def lua_list(urls: list[str]) -> str:
        return "{\n" + ",\n".join(f"  [[{target(u)}]]" for u in urls) + "\n}"

    payload = body.hex()
    path.write_text(
        f"""
local gets = {lua_list(gets)}
local puts = {lua_list(puts)}
local hex = "{payload}"
local body = (hex:gsub("..", function(c) return string.char(tonumber(c, 16)) end))
local put_headers = {{["Content-Type"] = "application/octet-stream"}}
math.randomseed(os.time())
request = function()
  if math.random() < {SMALL_GET_FRACTION} then
    return wrk.format("GET", gets[math.random(#gets)])
  end
  return wrk.format("PUT", puts[math.random(#puts)], put_headers, body)
end
local failures = 0
response = function(status, headers, body)
  if status >= 300 and failures < 3 then
    failures = failures + 1
    io.write("T0 failed " .. status .. " " .. body .. "\\n")
  end
end
done = function(summary, latency, requests)
  io.write(string.format("T0 errors %d %d %d %d\\n", summary.errors.connect,
    summary.errors.read, summary.errors.status, summary.errors.timeout))
  io.write(string.format("T0 p50 %d p99 %d\\n", latency:percentile(50), latency:percentile(99)))
end
"""
    )


def _wrk(url: str, script: Path, duration_s: int, *, strict: bool) -> dict[str, float]:
    """Rate, p50/p99 latency and failed answers; a failure raises when ``strict``."""
    result = subprocess.run(
        ["wrk", "-t2", f"-c{SMALL_CONNECTIONS}", f"-d{duration_s}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=True,
    )
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = [int(v) for v in re.search(r"T0 errors (\d+) (\d+) (\d+) (\d+)", out).groups()]  # type: ignore[union-attr]
    if any(errors[:2] + errors[3:]) or (strict and errors[2]):
        raise RuntimeError(f"wrk saw errors (connect, read, status, timeout) {errors}:\n{out}")
    p50_us, p99_us = (int(v) for v in re.search(r"T0 p50 (\d+) p99 (\d+)", out).groups())  # type: ignore[union-attr]
    return {
        "rate": rate,
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "failed": errors[2],
        "requests": requests,
    }


# -- memory ----------------------------------------------------------------------------------


def _memory(section: Section, context: Context, tier0: _Tier0Server) -> None:
    size = 512 * MiB if context.quick else MEMORY_UPLOAD_BYTES
    idle = tier0.rss_bytes()
    url = urllib.parse.urlsplit(_presign(tier0.client(), "put_object", "memory/huge"))
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tier0.rss_bytes())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    block = os.urandom(8 * MiB)
    connection = http.client.HTTPConnection(url.netloc, timeout=600)
    try:
        connection.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
        connection.putheader("Content-Length", str(size))
        connection.endheaders()
        sent = 0
        while sent < size:
            # Vary every block, so deduplication cannot shortcut the write path.
            piece = block[: min(len(block), size - sent)]
            connection.send(sent.to_bytes(8, "big") + piece[8:])
            sent += len(piece)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"large upload failed: {response.status}")
    finally:
        connection.close()
        done.set()
        sampler.join()
    after = tier0.rss_bytes()
    section.add(
        f"server peak RSS during a {size // MiB} MiB upload",
        peak / MiB,
        "MiB",
        "server RSS at idle (after the mixed load)",
        idle / MiB,
        higher_is_better=False,
        note=f"RSS after the upload {after / MiB:.0f} MiB",
    )


# -- servers ---------------------------------------------------------------------------------


def _ensure_tool(name: str) -> bool:
    if shutil.which(name) or Path(f"/usr/sbin/{name}").exists():
        return True
    package = {"nginx": "nginx-light"}.get(name, name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", package],
            capture_output=True,
            timeout=600,
            check=False,
        )
    return bool(shutil.which(name) or Path(f"/usr/sbin/{name}").exists())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def _presign(client: Any, operation: str, key: str, *, bucket: str = BUCKET) -> str:
    url: str = client.generate_presigned_url(
        operation, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )
    return url


def _boto3_client(url: str, access: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _load(client: Any, bucket: str, keys: list[str], body: bytes) -> None:
    client.create_bucket(Bucket=bucket)
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=body)


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its children (a supervisor and its workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [pid, *map(int, children.stdout.split())]


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its children so far."""
    ticks = 0
    for member in _process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class _Tier0Server:
    """``tier0 serve`` on a free port, in its own process."""

    def __init__(self, data: Path, workers: int = 1, *options: str) -> None:
        self.data = data
        self.workers = workers
        self.options = options

    def __enter__(self) -> _Tier0Server:
        port = _free_port()
        environment = {
            **os.environ,
            "TIER0_ROOT_ACCESS_KEY": ACCESS,
            "TIER0_ROOT_SECRET_KEY": SECRET,
        }
        executable = Path(sys.executable).with_name("tier0")
        command = [str(executable) if executable.exists() else "tier0"]
        self.data.mkdir(parents=True, exist_ok=True)
        log_path = self.data.parent / f"{self.data.name}.log"
        log = open(log_path, "wb")  # the server writes it until it stops
        self.process = subprocess.Popen(
            [
                *command,
                *("--data", str(self.data), "serve", "--address", f"127.0.0.1:{port}"),
                *("--workers", str(self.workers), *self.options),
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            _wait_port(port, self.process, "tier0 serve")
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {log_path.read_text()[-2000:]}") from None
        self.url = f"http://127.0.0.1:{port}"
        return self

    def client(self) -> Any:
        return _boto3_client(self.url, ACCESS, SECRET)

    def load(self, bucket: str, keys: list[str], body: bytes) -> None:
        _load(self.client(), bucket, keys, body)

    def rss_bytes(self) -> int:
        """Resident bytes of the server: the supervisor and its workers together."""
        total = 0
        for pid in _process_tree(self.process.pid):
            with contextlib.suppress(FileNotFoundError):
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]
        return total

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)


class _FloorServer:
    """``s3_floor.py`` (see its docstring) on a free port; its objects are loaded into
    its database directly, and its clients only sign (it answers nothing else)."""

    def __init__(self, data: Path, workers: int) -> None:
        self.data = data
        self.workers = workers

    def __enter__(self) -> _FloorServer:
        import s3_floor

        self.data.mkdir(parents=True, exist_ok=True)
        self.database = self.data / "floor.db"
        s3_floor.load(self.database, [], b"")  # the schema, before the workers open it
        port = _free_port()
        options = ("--workers", str(self.workers))
        self.process = subprocess.Popen(
            [sys.executable, s3_floor.__file__, str(self.database), str(port), *options],
            env={**os.environ, "ACCESS": ACCESS, "SECRET": SECRET},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"s3_floor.py did not start (exit status {self.process.wait()})")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def client(self) -> Any:
        return _boto3_client(self.url, ACCESS, SECRET)

    def load(self, bucket: str, keys: list[str], body: bytes) -> None:
        import s3_floor

        s3_floor.load(self.database, [f"{bucket}/{key}" for key in keys], body)

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)


class _Nginx:
    """nginx with two servers over one directory: sendfile on, and off; PUT through WebDAV."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: dict[str, int] = {}

    def __enter__(self) -> _Nginx:
        www = self.root / "www"
        (self.root / "logs").mkdir(parents=True)
        (self.root / "body").mkdir()
        www.mkdir()
        self.ports = {"sendfile on": _free_port(), "sendfile off": _free_port()}
        servers = "\n".join(
            f"""
    server {{
        listen 127.0.0.1:{port};
        root {www};
        sendfile {"on" if mode == "sendfile on" else "off"};
        location / {{ dav_methods PUT; create_full_put_path on; }}
    }}"""
            for mode, port in self.ports.items()
        )
        config = self.root / "nginx.conf"
        config.write_text(
            f"""
daemon off;
worker_processes 2;
{"user root;" if os.geteuid() == 0 else ""}
pid {self.root / "nginx.pid"};
error_log {self.root / "logs" / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.root / "body"};
    client_max_body_size 0;
    tcp_nopush on;
    default_type application/octet-stream;
{servers}
}}
"""
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [nginx, "-c", str(config), "-p", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in self.ports.values():
            _wait_port(port, self.process, "nginx")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _MotoServer:
    """``moto_server`` (moto's standalone S3 server) on a free port."""

    def __enter__(self) -> _MotoServer:
        port = _free_port()
        executable = Path(sys.executable).with_name("moto_server")
        command = [str(executable)] if executable.exists() else ["moto_server"]
        self.process = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
        )
        _wait_port(port, self.process, "moto_server")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def client(self) -> Any:
        return _boto3_client(self.url, "moto-access", "moto-secret")

    def load(self, bucket: str, keys: list[str], body: bytes) -> None:
        _load(self.client(), bucket, keys, body)

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)
