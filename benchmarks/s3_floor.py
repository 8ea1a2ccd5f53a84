"""The Python floor for bench_s3's small-object mix: the least any S3 server written in
Python on asyncio must do for it, and nothing more.

Each worker process (``--workers``, each its own ``SO_REUSEPORT`` socket) parses
HTTP/1.1 with httptools on uvloop, verifies a presigned SigV4 request with tier0's own
SigV4 functions, and then:

- GET: reads the object's row (ETag, time, bytes) from SQLite and sends them;
- PUT: takes its MD5 and writes its row; the PUTs of one turn of the event loop are
  committed together (SQLite WAL, ``synchronous=FULL``: fsynced before the answer),
  writers of different processes taking turns on an ``flock``, as tier0 does.

No bucket or key checks, no authorization, catalog, events, audit, versioning,
conditions, checksums, limits or error documents: what tier0 does for a request beyond
this is what its extra CPU buys. A baseline, not a server: its own answer to a failure
is a 403 or a dropped connection.

    python benchmarks/s3_floor.py DATABASE PORT --workers 2   # ACCESS and SECRET from the environment

It prints ``ready`` when every worker listens.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import fcntl
import hashlib
import hmac
import multiprocessing
import os
import secrets
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httptools
import uvloop

from tier0.protocols.s3 import _sigv4

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, etag TEXT, modified REAL, body BLOB)"
)


def connect(database: Path) -> sqlite3.Connection:
    db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "wal_autocheckpoint = 8192"):
        db.execute(f"PRAGMA {pragma}")
    return db


def load(database: Path, keys: list[str], body: bytes) -> None:
    """Store ``body`` under each of ``keys`` before the load starts."""
    db = connect(database)
    db.execute(SCHEMA)
    etag = hashlib.md5(body).hexdigest()
    db.execute("BEGIN")
    db.executemany(
        "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
        [(key, etag, time.time(), body) for key in keys],
    )
    db.execute("COMMIT")
    db.close()


class _Verifier:
    def __init__(self, access: str, secret: str) -> None:
        self.access, self.secret = access, secret
        self.keys = _sigv4.SigningKeyCache()

    def verify(self, method: str, path: str, query: str, host: str) -> bool:
        params = dict(piece.partition("=")[::2] for piece in query.split("&"))
        access, date, region, *_ = unquote(params["X-Amz-Credential"]).split("/")
        request = _sigv4.canonical_request(
            method=method, raw_path=path, raw_query=query, headers={"host": host},
            signed_headers=unquote(params["X-Amz-SignedHeaders"]).split(";"),
            payload_hash=_sigv4.UNSIGNED_PAYLOAD, exclude_query="X-Amz-Signature",
        )  # fmt: skip
        text = _sigv4.string_to_sign(params["X-Amz-Date"], _sigv4.scope(date, region), request)
        signature = _sigv4.sign(self.keys.get(self.secret, date, region), text)
        return access == self.access and hmac.compare_digest(signature, params["X-Amz-Signature"])


class _Store:
    """One worker's SQLite connection and the PUTs waiting for this loop turn's commit."""

    def __init__(self, database: Path) -> None:
        self.db = connect(database)
        self.lock = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.pending: list[tuple[str, str, float, bytes, Callable[[str], None]]] = []

    def put(self, key: str, body: bytes, done: Callable[[str], None]) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.commit)
        self.pending.append((key, hashlib.md5(body).hexdigest(), time.time(), body, done))

    def commit(self) -> None:
        batch, self.pending = self.pending, []
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                [(key, etag, modified, body) for key, etag, modified, body, _ in batch],
            )
            self.db.execute("COMMIT")
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
        for _, etag, _, _, done in batch:
            done(etag)


class _Connection(asyncio.Protocol):
    def __init__(self, store: _Store, verifier: _Verifier) -> None:
        self.store, self.verifier = store, verifier
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.url = ""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, []

    def on_url(self, url: bytes) -> None:
        self.url = url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        path, _, query = self.url.partition("?")
        request_id = secrets.token_hex(8).upper().encode()
        transport = self.transport
        if not self.verifier.verify(method, path, query, self.headers.get("host", "")):
            transport.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            return
        key = unquote(path[1:])  # bucket/key: one bucket's worth of rows
        if method == "PUT":

            def done(etag: str) -> None:
                transport.write(
                    b'HTTP/1.1 200 OK\r\ncontent-length: 0\r\netag: "%s"\r\nx-amz-request-id: %s'
                    b"\r\n\r\n" % (etag.encode(), request_id)
                )

            self.store.put(key, b"".join(self.body), done)
            return
        etag, modified, body = self.store.db.execute(
            "SELECT etag, modified, body FROM objects WHERE key = ?", (key,)
        ).fetchone()
        head = (
            f'HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\netag: "{etag}"\r\n'
            f"last-modified: {email.utils.formatdate(modified, usegmt=True)}\r\n"
            "content-type: binary/octet-stream\r\naccept-ranges: bytes\r\n"
        ).encode()
        transport.write(head + b"x-amz-request-id: " + request_id + b"\r\n\r\n" + body)


async def _serve(database: Path, port: int, ready: Any) -> None:
    store = _Store(database)
    verifier = _Verifier(os.environ["ACCESS"], os.environ["SECRET"])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(store, verifier), sock=listener
    )
    ready.wait()
    await server.serve_forever()


def _worker(database: Path, port: int, ready: Any) -> None:
    uvloop.run(_serve(database, port, ready))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    options = parser.parse_args()
    # "ready" once every worker listens: a connection made earlier would only go to
    # the workers up by then (SO_REUSEPORT spreads over the sockets bound).
    ready = multiprocessing.Barrier(options.workers + 1)
    workers = [
        multiprocessing.Process(
            target=_worker, args=(options.database, options.port, ready), daemon=True
        )
        for _ in range(options.workers)
    ]
    # SIGTERM exits through multiprocessing's exit hook, which stops daemonic workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for worker in workers:
        worker.start()
    ready.wait()
    print("ready", flush=True)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
