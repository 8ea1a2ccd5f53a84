"""Running the HTTP app: uvicorn (uvloop, httptools) in one process, graceful shutdown.

Shutdown on SIGTERM or SIGINT goes in this order, so that a write that was
acknowledged is on disk and a write that was accepted is acknowledged:

1. stop accepting connections; long polls return what they have (one slice);
2. requests in flight run to completion (at most ``shutdown_timeout_s``);
3. the app's worker threads are joined;
4. ``serve`` returns, and the caller closes the store, which drains the
   group committer.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import uvicorn

from tier0._client import Tier0
from tier0.errors import InvalidArgument
from tier0.protocols.s3 import GatewayLimits, create_s3_app
from tier0.server._app import Limits, create_app
from tier0.server._connection import connection_protocol

DEFAULT_PORT: Final = 9000
LISTEN_BACKLOG: Final = 2048
SHUTDOWN_TIMEOUT_S: Final = 30
#: How often a shutdown looks for connections it may cut.
IDLE_CHECK_S: Final = 0.1


def parse_address(text: str, *, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``[IPv6]:PORT`` as (host, port).

    >>> parse_address("[::1]:9001")
    ('::1', 9001)
    >>> parse_address("0.0.0.0")
    ('0.0.0.0', 9000)
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidArgument(f"bad address {text!r}: write [IPv6]:PORT, e.g. [::1]:9000")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        raise InvalidArgument(
            f"bad address {text!r}: put an IPv6 host in brackets, e.g. [::1]:9000"
        )
    else:
        host, _, port_text = text.partition(":")
    host = host or "127.0.0.1"
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidArgument(
            f"bad port {port_text!r} in {text!r}: use 0..65535 (0 picks a free one)"
        )
    return host, int(port_text)


def format_url(host: str, port: int, *, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); OSError says why it cannot be had.

    Bound here rather than by uvicorn so that a busy port is an ordinary
    exception for the caller, and port 0 is resolved before anyone is told
    where to connect.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise OSError(f"cannot resolve host {host!r}: {error.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(False)
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app to stop its long polls before it drains."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_shutdown: Callable[[], None],
        stop_requested: threading.Event,
    ) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown
        self._stop_requested = stop_requested

    async def on_tick(self, counter: int) -> bool:
        # A signal that came before uvicorn installed its handlers was caught
        # by ours (`_signals_absorbed`); it still means stop.
        if self._stop_requested.is_set():
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        reaper = asyncio.ensure_future(self._abort_idle_connections())
        try:
            await super().shutdown(sockets)
        finally:
            reaper.cancel()

    async def _abort_idle_connections(self) -> None:
        """Cut connections that have nothing left to say, once no request is in flight.

        uvicorn asks every connection to close and waits until all are gone.
        A TLS connection closes with a close_notify exchange that an idle
        keep-alive client never answers, so asyncio would wait its
        ssl_shutdown_timeout (30 s) per connection. Aborting loses nothing once
        no request runs and the connection's write buffer is empty.
        """
        state = self.server_state
        await asyncio.sleep(IDLE_CHECK_S)  # uvicorn's own close requests go first
        while state.connections:
            if not state.tasks:
                for connection in list(state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is not None and transport.get_write_buffer_size() == 0:
                        transport.abort()
            await asyncio.sleep(IDLE_CHECK_S)


def serve(
    t0: Tier0,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    limits: Limits | None = None,
    on_listening: Callable[[str], None] | None = None,
    shutdown_timeout_s: int = SHUTDOWN_TIMEOUT_S,
    s3_domains: Sequence[str] = (),
    s3_limits: GatewayLimits | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``t0`` over HTTP(S) until SIGTERM or SIGINT, then shut down gracefully.

    ``on_listening(url)`` is called once the socket listens (with the real
    port when ``port`` is 0). TLS needs both ``certfile`` and ``keyfile``
    (PEM). ``s3_domains`` are the base domains of virtual-hosted-style S3
    requests (`create_s3_app`'s ``domains``), ``s3_limits`` its limits,
    the request head's included (`connection_protocol`). ``sock``, a listening socket,
    is served instead of binding ``host:port`` (a worker of `run_workers`).
    Returns after the shutdown described in the module docstring; ``t0``
    stays open, for the caller to close. Raises OSError when the address
    cannot be bound, InvalidArgument for a half-given TLS pair or a domain
    that is not a host name.
    """
    if (certfile is None) != (keyfile is None):
        raise InvalidArgument("TLS needs both a certificate file and a key file")
    tls = certfile is not None
    s3 = create_s3_app(t0, domains=s3_domains, limits=s3_limits)
    app = create_app(t0, limits=limits, fallback=s3, claims=s3.claims)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        # httptools, with limits and a deadline on the request head (which
        # uvicorn has not) and S3's answers to a head it refuses.
        http=connection_protocol(s3.limits),
        timeout_keep_alive=s3.limits.keep_alive_timeout_s,
        ws="none",
        lifespan="on",
        workers=1,
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        timeout_graceful_shutdown=shutdown_timeout_s,
    )
    # Load now, so that a bad certificate fails here, before anything listens.
    try:
        config.load()
    except ssl.SSLError as error:
        raise _bad_tls(certfile, keyfile, error) from None
    listener = sock if sock is not None else bind(host, port)
    try:
        if on_listening is not None:
            on_listening(format_url(host, listener.getsockname()[1], tls=tls))
        stop_requested = threading.Event()
        server = _Server(config, on_shutdown=app.begin_shutdown, stop_requested=stop_requested)
        with _signals_absorbed(stop_requested):
            server.run(sockets=[listener])
    finally:
        app.close()
        s3.close()  # after the server: requests in flight have finished
        listener.close()


def check_tls(certfile: str | None, keyfile: str | None) -> None:
    """Raise InvalidArgument unless the pair is absent or a usable PEM certificate and key."""
    if (certfile is None) != (keyfile is None):
        raise InvalidArgument("TLS needs both a certificate file and a key file")
    if certfile is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as error:
        raise _bad_tls(certfile, keyfile, error) from None


def _bad_tls(certfile: str | None, keyfile: str | None, error: ssl.SSLError) -> InvalidArgument:
    return InvalidArgument(
        f"cannot use {certfile} and {keyfile} for TLS ({error.reason or error}): "
        "give a PEM certificate and its PEM private key"
    )


@contextlib.contextmanager
def _signals_absorbed(stop_requested: threading.Event) -> Iterator[None]:
    """Make the signals that stopped the server end ``serve`` normally.

    uvicorn re-raises the signal that stopped it once it has shut down, with
    the handler that was installed before it ran; under Python's defaults that
    kills the process (SIGTERM) or raises KeyboardInterrupt (SIGINT) before
    the store is closed. Installing quiet handlers first lets ``serve`` return,
    so the caller closes the store and exits 0. A signal that arrives before
    uvicorn's own handlers are in place sets ``stop_requested``, which the
    server reads on its first tick: it stops as soon as it started.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only; nothing to absorb
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stop_requested.set()) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
