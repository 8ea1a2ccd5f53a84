"""S3ChunkBackend against a real S3 store: a second ``tier0 serve`` on 127.0.0.1.

The conformance kit runs against it. A fault-injecting HTTP proxy between a
backend and the store plays what networks and busy stores do (throttling,
bodies damaged on the way or cut short, refusals, a full store) and pins the
interleavings of the GC race. The store's key tests then run with their
chunks in S3, on both metadata backends.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import http.client
import itertools
import json
import pathlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

import tier0
from tests.protocols.s3.live import make_client
from tests.server.test_serve import ServeProcess, clean_environment
from tests.store.chunk_backend_kit import IDLE_S, ChunkBackendKit, FakeClock, blob_of, name_of
from tests.store.test_store import (  # noqa: F401 -- collected here again, with chunks in S3
    _random,
    test_concurrent_writers_to_one_key_last_commit_wins,
    test_dedup_shares_chunks_and_copy_is_metadata_only,
    test_empty_object_round_trips,
    test_put_get_round_trip_inline_and_chunked,
    test_put_streams_from_iterator_and_file,
    test_range_reads_return_exact_slices,
    test_unversioned_overwrite_drops_old_chunks,
    test_versioning_keeps_versions_and_delete_markers,
)
from tier0.errors import ChunkCorrupted, ChunkMissing, InvalidArgument, StorageFull, StoreFailed
from tier0.store import (
    ChunkBackend,
    LocalChunkBackend,
    S3ChunkBackend,
    StoreConfig,
    iter_chunks,
    open_chunk_backend,
)
from tier0.store._chunking import HEADER_BYTES, decode_chunk, encode_chunk

pytestmark = pytest.mark.slow

ACCESS = "T0CHUNKSTORETESTKEY1"
SECRET = "chunk-store-test-secret-0123456789abcdef"
BUCKET = "blobs"

_prefix_numbers = itertools.count(1)


# -- the S3 store: a tier0 serve of its own -------------------------------------------------


@dataclass
class ChunkStore:
    """A running S3 store with the bucket ``blobs``, and a boto3 client on it."""

    url: str
    client: Any

    def backend(
        self, prefix: str | None = None, *, endpoint_url: str | None = None, **options: Any
    ) -> S3ChunkBackend:
        """A backend on a fresh prefix (or ``prefix``), reaching the store at ``endpoint_url``."""
        return S3ChunkBackend(
            BUCKET,
            prefix or f"t{next(_prefix_numbers)}",
            endpoint_url=endpoint_url or self.url,
            access_key=ACCESS,
            secret_key=SECRET,
            **options,
        )

    def keys(self, prefix: str) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def environment(self) -> dict[str, str]:
        """What a tier0 process needs in its environment to reach this store."""
        return {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}


@contextlib.contextmanager
def running_chunk_store(data: pathlib.Path) -> Iterator[ChunkStore]:
    """A ``tier0 serve`` in ``data`` acting as the S3 store for chunks."""
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    with ServeProcess(data, environment) as process:
        client = make_client(process.url, access=ACCESS, secret=SECRET)
        client.create_bucket(Bucket=BUCKET)
        try:
            yield ChunkStore(process.url, client)
        finally:
            client.close()


@pytest.fixture(scope="module")
def chunk_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChunkStore]:
    with running_chunk_store(tmp_path_factory.mktemp("chunk-store") / "data") as store:
        yield store


# -- a proxy that injects faults ------------------------------------------------------------


@dataclass
class Fault:
    """What the proxy does to the next ``times`` requests of ``method`` whose
    key contains ``key_part``: answer ``status``/``code`` itself, flip a body
    byte (``corrupt``), cut the response body after ``cut_bytes``, or run
    ``before``/``after`` around forwarding it."""

    method: str
    key_part: str
    times: int = 1
    status: int = 0
    code: str = ""
    corrupt: bool = False
    cut_bytes: int = 0
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None


@dataclass(frozen=True)
class Seen:
    method: str
    key: str
    headers: dict[str, str] = field(hash=False)


class FaultProxy:
    """An HTTP proxy between a backend and its store that plays planned faults.

    Requests pass unchanged (their signatures stay valid: the Host header is
    forwarded as sent) unless a planned `Fault` matches; every request is
    recorded in ``seen``.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.connections = 0
        self.connections_peak = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy.connections += 1
                    proxy.connections_peak = max(proxy.connections_peak, proxy.connections)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with proxy._lock:
                        proxy.connections -= 1

            def do_GET(self) -> None:
                proxy._serve(self)

            do_PUT = do_HEAD = do_DELETE = do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def plan(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def requests(self, method: str, key_part: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and key_part in s.key]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _take(self, method: str, key: str) -> Fault | None:
        with self._lock:
            self.seen.append(Seen(method, key, {}))
            for fault in self._faults:
                if fault.times > 0 and fault.method == method and fault.key_part in key:
                    fault.times -= 1
                    return fault
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        key = unquote(urlsplit(handler.path).path)
        fault = self._take(method, key)
        with self._lock:
            self.seen[-1] = Seen(method, key, dict(handler.headers.items()))
        if fault is not None and fault.before is not None:
            fault.before()
        if fault is not None and fault.status:
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
                "<Message>a planned fault</Message></Error>"
            ).encode()
            handler.send_response(fault.status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if method != "HEAD":
                handler.wfile.write(payload)
            return
        if fault is not None and fault.corrupt and body:
            body = bytes([body[0] ^ 0x01]) + body[1:]
        upstream = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            upstream.request(method, handler.path, body=body, headers=dict(handler.headers.items()))
            response = upstream.getresponse()
            data = response.read()
            headers = response.getheaders()
        finally:
            upstream.close()
        if fault is not None and fault.after is not None:
            fault.after()
        handler.send_response(response.status)
        length = str(len(data))
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                if method == "HEAD":
                    length = value  # a HEAD answer names the size of what a GET would send
            elif lowered not in {"connection", "keep-alive", "transfer-encoding", "date", "server"}:
                handler.send_header(name, value)
        handler.send_header("Content-Length", length)
        handler.end_headers()
        if method == "HEAD":
            return
        if fault is not None and fault.cut_bytes:
            handler.wfile.write(data[: fault.cut_bytes])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.write(data)


@pytest.fixture
def proxy(chunk_store: ChunkStore) -> Iterator[FaultProxy]:
    proxy = FaultProxy(chunk_store.url)
    yield proxy
    proxy.close()


class Sleeps:
    """Records the backoff a backend asked for instead of sleeping."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


# -- the conformance kit ----------------------------------------------------------------------


class TestS3ChunkBackend(ChunkBackendKit):
    @pytest.fixture(autouse=True)
    def _use_store(self, chunk_store: ChunkStore) -> None:
        self.store = chunk_store

    def make_backend(self, tmp_path: pathlib.Path) -> ChunkBackend:
        return self.store.backend(clock=self.clock)


# -- layout and integrity -------------------------------------------------------------------

BLOB = blob_of(0, 300_000)
NAME = name_of(BLOB)


def test_write_puts_a_lease_then_the_blob_under_its_fan_out_key_with_content_md5(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    with chunk_store.backend("layout", endpoint_url=proxy.url) as backend:
        backend.write(NAME, BLOB)
    chunk_key = f"layout/chunks/{NAME[:2]}/{NAME}"
    keys = chunk_store.keys("layout/")
    leases = [key for key in keys if key.startswith(f"layout/leases/{NAME[:2]}/{NAME}/")]
    assert sorted(keys) == sorted([chunk_key, *leases]) and len(leases) == 1
    stored = chunk_store.client.get_object(Bucket=BUCKET, Key=chunk_key)["Body"].read()
    assert stored == BLOB
    puts = proxy.requests("PUT", "/layout/")
    assert [seen.key for seen in puts] == [f"/{BUCKET}/{leases[0]}", f"/{BUCKET}/{chunk_key}"]
    headers = {name.lower(): value for name, value in puts[1].headers.items()}
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(BLOB).digest()).decode()


def test_write_retries_a_body_damaged_on_the_way_and_stores_it_intact(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    proxy.plan(Fault("PUT", "/chunks/", corrupt=True))
    with chunk_store.backend(endpoint_url=proxy.url, sleep=Sleeps()) as backend:
        backend.write(NAME, BLOB)
        assert backend.read(NAME) == BLOB
        # The store refused the damaged body (BadDigest); the second PUT went through.
        assert len(proxy.requests("PUT", "/chunks/")) == 2
        assert backend.statistics().retries == 1


def test_write_retries_with_backoff_while_the_store_is_busy(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    proxy.plan(Fault("PUT", "/chunks/", times=2, status=503, code="SlowDown"))
    sleeps = Sleeps()
    with chunk_store.backend(endpoint_url=proxy.url, sleep=sleeps, backoff_s=0.1) as backend:
        backend.write(NAME, BLOB)
        assert backend.read(NAME) == BLOB
        assert backend.statistics().retries == 2
    assert len(proxy.requests("PUT", "/chunks/")) == 3
    # Full jitter under an exponential ceiling: 0.1 s, then 0.2 s.
    assert len(sleeps.seconds) == 2
    assert 0 <= sleeps.seconds[0] <= 0.1 and 0 <= sleeps.seconds[1] <= 0.2


def test_write_raises_store_failed_after_its_last_try_and_stores_nothing(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    proxy.plan(Fault("PUT", "/chunks/", times=100, status=500, code="InternalError"))
    with chunk_store.backend(endpoint_url=proxy.url, sleep=Sleeps(), attempts_max=3) as backend:
        with pytest.raises(StoreFailed, match="3 tries") as caught:
            backend.write(NAME, BLOB)
        assert caught.value.errno == errno.EIO
        assert len(proxy.requests("PUT", "/chunks/")) == 3
        assert list(backend.names()) == []
        with pytest.raises(ChunkMissing):
            backend.read(NAME)


def test_write_raises_store_failed_at_once_when_access_is_denied(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    proxy.plan(Fault("PUT", "/chunks/", status=403, code="AccessDenied"))
    with chunk_store.backend(endpoint_url=proxy.url, sleep=Sleeps()) as backend:
        with pytest.raises(StoreFailed, match="AWS_ACCESS_KEY_ID") as caught:
            backend.write(NAME, BLOB)
        assert caught.value.errno == errno.EACCES
        assert len(proxy.requests("PUT", "/chunks/")) == 1
        assert list(backend.names()) == []
        backend.write(NAME, BLOB)  # never fail-stop: the next call tries again
        assert backend.read(NAME) == BLOB


def test_write_raises_storage_full_when_the_store_says_so_and_stays_usable(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    proxy.plan(Fault("PUT", "/chunks/", status=507, code="InsufficientStorage"))
    with chunk_store.backend(endpoint_url=proxy.url, sleep=Sleeps()) as backend:
        with pytest.raises(StorageFull, match="full") as caught:
            backend.write(NAME, BLOB)
        assert caught.value.errno == errno.ENOSPC
        assert len(proxy.requests("PUT", "/chunks/")) == 1  # retrying cannot free space
        assert backend.statistics().failed is False
        backend.write(NAME, BLOB)
        assert backend.read(NAME) == BLOB
        assert backend.check() == []


def test_read_resumes_with_a_range_request_when_the_body_is_cut_short(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    blob = blob_of(1, 3_500_000)
    with chunk_store.backend(endpoint_url=proxy.url, sleep=Sleeps()) as backend:
        backend.write(name_of(blob), blob)
        proxy.plan(Fault("GET", "/chunks/", cut_bytes=2_500_000))
        assert backend.read(name_of(blob)) == blob
    gets = proxy.requests("GET", "/chunks/")
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    first = int(gets[1].headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < first <= 2_500_000  # from a byte it had, not from the start


def test_requests_in_flight_never_open_more_connections_than_the_pool_holds(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    blobs = [blob_of(seed, 50_000) for seed in range(8)]
    with chunk_store.backend(endpoint_url=proxy.url, connections_max=2) as backend:
        for blob in blobs:
            backend.write(name_of(blob), blob)
        # Slow answers, so that eight readers pile up behind two connections.
        proxy.plan(Fault("GET", "/chunks/", times=8, before=lambda: time.sleep(0.2)))
        read: list[bytes] = []
        threads = [
            threading.Thread(target=lambda b=blob: read.append(backend.read(name_of(b))))
            for blob in blobs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(read) == sorted(blobs)
    assert proxy.connections_peak == 2


def test_open_raises_store_failed_when_the_bucket_is_missing_or_access_denied(
    chunk_store: ChunkStore,
) -> None:
    with pytest.raises(StoreFailed, match="does not exist") as missing:
        S3ChunkBackend(
            "no-such-bucket", endpoint_url=chunk_store.url, access_key=ACCESS, secret_key=SECRET
        )
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(StoreFailed, match="refused access") as denied:
        S3ChunkBackend(BUCKET, endpoint_url=chunk_store.url, access_key=ACCESS, secret_key="wrong")
    assert denied.value.errno == errno.EACCES


# -- deletions, trash and leases ------------------------------------------------------------


def _trash_copy(store: ChunkStore, prefix: str, name: str, stamp_s: float, blob: bytes) -> str:
    """Move a blob into trash/ the way an interrupted delete_if_idle leaves it."""
    key = f"{prefix}/trash/{name[:2]}/{name}.{round(stamp_s * 1e9):020d}.0123abcd"
    store.client.put_object(Bucket=BUCKET, Key=key, Body=blob)
    store.client.delete_object(Bucket=BUCKET, Key=f"{prefix}/chunks/{name[:2]}/{name}")
    return key


def test_read_finds_a_blob_in_trash_while_a_deletion_holds_it(chunk_store: ChunkStore) -> None:
    clock = FakeClock()
    with chunk_store.backend("held", clock=clock) as backend:
        backend.write(NAME, BLOB)
        _trash_copy(chunk_store, "held", NAME, clock(), BLOB)
        assert backend.read(NAME) == BLOB
        assert list(backend.names()) == []
        with pytest.raises(ChunkMissing):
            backend.read(name_of(b"absent"))
        assert backend.check() == []  # a deletion in progress is no problem


def test_open_puts_back_blobs_of_deletions_interrupted_long_ago(chunk_store: ChunkStore) -> None:
    clock = FakeClock()
    other = blob_of(2)
    with chunk_store.backend("crashed", clock=clock) as backend:
        for blob in (BLOB, other):
            backend.write(name_of(blob), blob)
        old = _trash_copy(chunk_store, "crashed", NAME, clock(), BLOB)
        clock.advance(S3ChunkBackend.stale_s_min + 1)
        fresh = _trash_copy(chunk_store, "crashed", name_of(other), clock(), other)
        problems = backend.check()
        assert len(problems) == 1 and old in problems[0] and "interrupted deletion" in problems[0]
    with chunk_store.backend("crashed", clock=clock) as reopened:
        assert sorted(reopened.names()) == [NAME]  # the fresh one's deleter may be at work
        assert chunk_store.keys("crashed/trash/") == [fresh]
        assert reopened.read(NAME) == BLOB
        assert reopened.check() == []


def test_check_reports_objects_that_do_not_belong(chunk_store: ChunkStore) -> None:
    with chunk_store.backend("stray") as backend:
        backend.write(NAME, BLOB)
        strays = [
            "stray/notes.txt",
            f"stray/chunks/{NAME[:2]}/{NAME}.part",
            f"stray/chunks/zz/{'f' * 64}",
            "stray/leases/ab/not-a-lease",
        ]
        for key in strays:
            chunk_store.client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        problems = backend.check()
        assert len(problems) == len(strays)
        for key in strays:
            assert any(key in problem for problem in problems), key
        assert list(backend.names()) == [NAME]


def test_touching_a_name_again_replaces_the_instances_own_lease(chunk_store: ChunkStore) -> None:
    clock = FakeClock()
    with (
        chunk_store.backend("leases", clock=clock) as first,
        chunk_store.backend("leases", clock=clock) as second,
    ):
        first.write(NAME, BLOB)
        for _ in range(5):
            clock.advance(1)
            assert first.touch(NAME) == len(BLOB)
        assert first.statistics().leases == 1
        second.touch(NAME)
        assert first.statistics().leases == 2  # one per instance
        clock.advance(IDLE_S + 1)
        assert second.delete_if_idle(NAME, IDLE_S) is True
        assert first.statistics().leases == 0  # a deletion takes the stale leases with it


def _racing_pair(store: ChunkStore, proxy: FaultProxy, prefix: str) -> tuple[Any, Any, FakeClock]:
    clock = FakeClock()
    deleter = store.backend(prefix, endpoint_url=proxy.url, clock=clock)
    user = store.backend(prefix, clock=clock)
    user.write(NAME, BLOB)
    clock.advance(IDLE_S * 10)
    return deleter, user, clock


def test_delete_if_idle_puts_the_blob_back_when_touched_just_before_its_delete(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    deleter, user, _ = _racing_pair(chunk_store, proxy, "race-before")
    with deleter, user:
        touched: list[int | None] = []
        proxy.plan(Fault("DELETE", "/chunks/", before=lambda: touched.append(user.touch(NAME))))
        assert deleter.delete_if_idle(NAME, IDLE_S) is False
        assert touched == [len(BLOB)]  # the touch found it, so it must stay
        assert user.read(NAME) == BLOB
        assert chunk_store.keys("race-before/trash/") == []
        assert deleter.check() == []


def test_delete_if_idle_puts_the_blob_back_when_touched_just_after_its_delete(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    deleter, user, _ = _racing_pair(chunk_store, proxy, "race-after")
    with deleter, user:
        touched: list[int | None] = []
        proxy.plan(Fault("DELETE", "/chunks/", after=lambda: touched.append(user.touch(NAME))))
        assert deleter.delete_if_idle(NAME, IDLE_S) is False
        # The touch found the name empty (the writer would write it); its
        # lease still made the deleter put the blob back.
        assert touched == [None]
        assert user.read(NAME) == BLOB
        assert chunk_store.keys("race-after/trash/") == []


def test_delete_if_idle_puts_the_blob_back_when_written_between_its_copy_and_its_delete(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    deleter, user, _ = _racing_pair(chunk_store, proxy, "race-write")
    with deleter, user:
        proxy.plan(Fault("DELETE", "/chunks/", before=lambda: user.write(NAME, BLOB)))
        assert deleter.delete_if_idle(NAME, IDLE_S) is False
        assert user.read(NAME) == BLOB
        assert list(user.names()) == [NAME]


def test_delete_if_idle_deletes_when_no_use_races(
    chunk_store: ChunkStore, proxy: FaultProxy
) -> None:
    deleter, user, _ = _racing_pair(chunk_store, proxy, "race-none")
    with deleter, user:
        assert deleter.delete_if_idle(NAME, IDLE_S) is True
        assert len(proxy.requests("DELETE", "/chunks/")) == 1
        with pytest.raises(ChunkMissing):
            user.read(NAME)
        assert chunk_store.keys("race-none/") == []


# -- choosing the backend: tier0.open, tier0.json --------------------------------------------


def test_open_chunk_backend_chooses_the_backend_by_location(
    tmp_path: pathlib.Path, chunk_store: ChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in chunk_store.environment().items():
        monkeypatch.setenv(name, value)
    shared = tmp_path / "shared"
    with open_chunk_backend(None, data_dir=tmp_path) as default:
        assert isinstance(default, LocalChunkBackend)
        default.write(NAME, BLOB)
        assert (tmp_path / "chunks" / NAME[:2] / NAME).exists()
    for location in (str(shared), f"file://{shared}"):
        with open_chunk_backend(location, data_dir=tmp_path) as local:
            assert isinstance(local, LocalChunkBackend)
            local.write(NAME, BLOB)
            assert (shared / NAME[:2] / NAME).exists()
    with open_chunk_backend(
        f"s3://{BUCKET}/chosen", data_dir=tmp_path, endpoint_url=chunk_store.url
    ) as remote:
        assert isinstance(remote, S3ChunkBackend)
        remote.write(NAME, BLOB)
    assert f"chosen/chunks/{NAME[:2]}/{NAME}" in chunk_store.keys("chosen/")
    for bad in ("relative/dir", "ftp://host/x", "s3://", "file://host/x"):
        with pytest.raises(InvalidArgument):
            open_chunk_backend(bad, data_dir=tmp_path)
    with pytest.raises(InvalidArgument, match="s3://"):
        open_chunk_backend(None, data_dir=tmp_path, endpoint_url=chunk_store.url)


def test_tier0_open_remembers_where_chunks_live(
    tmp_path: pathlib.Path, chunk_store: ChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in chunk_store.environment().items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "data"
    body = _random(2 * 1024 * 1024, seed=7)
    with tier0.open(
        data, chunks_url=f"s3://{BUCKET}/remembered", chunks_endpoint=chunk_store.url
    ) as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "k", body)
    saved = json.loads((data / "tier0.json").read_text())
    assert (saved["chunks"], saved["chunks_endpoint"]) == (
        f"s3://{BUCKET}/remembered",
        chunk_store.url,
    )
    assert any("/chunks/" in key for key in chunk_store.keys("remembered/"))
    assert not (data / "chunks").exists()
    with tier0.open(data) as t0:  # no location given: the remembered one
        assert t0.get_bytes("bkt", "k") == body
        assert t0.check(deep=True).ok
    # A location that cannot be opened is not remembered.
    with pytest.raises(InvalidArgument):
        tier0.open(tmp_path / "other", chunks_url="relative/dir")
    assert not (tmp_path / "other" / "tier0.json").exists()


def test_a_read_checks_the_hash_of_what_the_remote_store_returns(
    tmp_path: pathlib.Path, chunk_store: ChunkStore
) -> None:
    # Whoever can write the bucket can replace a blob with other content, a
    # CRC to match and the old name in its header; the local backend's CRC
    # check would pass it, a remote backend's reads hash the content.
    body = _random(300_000, seed=11)
    with tier0.open(tmp_path / "data", chunks=chunk_store.backend("forged")) as t0:
        t0.create_bucket("bkt")
        t0.put("bkt", "k", body)
        (key,) = chunk_store.keys("forged/chunks/")
        name = key.rsplit("/", 1)[1]
        digest = bytes.fromhex(name)
        original = chunk_store.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        forged = encode_chunk(_random(300_000, seed=12))
        blob = original[:13] + forged.header[13:17] + original[17:HEADER_BYTES] + forged.payload
        chunk_store.client.put_object(Bucket=BUCKET, Key=key, Body=blob)
        assert decode_chunk(digest, blob) == bytes(forged.payload)  # what a CRC alone allows
        with pytest.raises(ChunkCorrupted, match=f"chunk {name}: content hashes to"):
            t0.get_bytes("bkt", "k")


# -- the store's key tests and the GC, with chunks in S3 --------------------------------------


@pytest.fixture
def t0(tmp_path: pathlib.Path, meta_url: str, chunk_store: ChunkStore) -> Iterator[tier0.Tier0]:
    """The store of tests/store/test_store.py, with its chunks in S3 (overrides conftest's)."""
    store = tier0.open(tmp_path / "data", meta=meta_url, chunks=chunk_store.backend())
    try:
        yield store
    finally:
        store.close()


def test_gc_spares_the_chunks_a_write_in_another_process_has_touched(
    tmp_path: pathlib.Path, meta_url: str, chunk_store: ChunkStore
) -> None:
    # Two handles stand for two gateways: each has its own S3ChunkBackend, and
    # they share the metadata and the chunk prefix. A writer in one dedups
    # against chunks whose object was deleted long enough ago for the GC to
    # condemn them; the GC runs in the other while the write has touched them
    # but not committed. The GC must keep them, and the write must read back.
    grace_s = 5.0
    config = StoreConfig(gc_grace_s=grace_s)
    prefix = f"gc{next(_prefix_numbers)}"
    data = tmp_path / "data"
    old = _random(12 * 1024 * 1024, seed=11)
    tail = _random(1024 * 1024, seed=12)
    blocks = [old[i : i + 1024 * 1024] for i in range(0, len(old), 1024 * 1024)]
    # The chunker holds the last few MiB back until more data (or the end)
    # comes: these are the chunks of ``old`` the write touches while it waits.
    touched = _chunks_cut_before_the_stream_pauses(blocks)
    chunk_count = len(list(iter_chunks([old])))
    assert 0 < touched < chunk_count
    writer_chunks = chunk_store.backend(prefix)
    with (
        tier0.open(data, meta=meta_url, chunks=chunk_store.backend(prefix), config=config) as gc,
        tier0.open(data, meta=meta_url, chunks=writer_chunks, config=config) as writer,
    ):
        gc.create_bucket("gcb")
        gc.put("gcb", "old", old)
        gc.delete("gcb", "old")
        time.sleep(grace_s + 0.5)  # unreferenced for longer than the grace: condemnable
        release = threading.Event()
        errors: list[BaseException] = []

        def source() -> Iterator[bytes]:
            yield from blocks
            release.wait(60)
            yield tail

        def write() -> None:
            try:
                writer.put("gcb", "new", source())
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=write)
        thread.start()
        deadline = time.monotonic() + 30
        while writer_chunks.statistics().dedup_hits < touched and time.monotonic() < deadline:
            time.sleep(0.05)
        report = gc.gc(grace_s=grace_s)
        release.set()
        thread.join(60)
        assert errors == []
        assert writer_chunks.statistics().dedup_hits >= touched
        assert report.chunks_kept_busy == touched
        assert report.chunks_deleted == chunk_count - touched  # nothing touched those
        assert gc.get_bytes("gcb", "new") == old + tail
        assert writer.check(deep=True).problems == []


def _chunks_cut_before_the_stream_pauses(blocks: list[bytes]) -> int:
    """How many chunks the chunker yields from ``blocks`` before it waits for more."""

    class Paused(Exception):
        pass

    def paused() -> Iterator[bytes]:
        yield from blocks
        raise Paused

    count = 0
    with contextlib.suppress(Paused):
        for _ in iter_chunks(paused()):
            count += 1
    return count
