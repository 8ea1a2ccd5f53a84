"""The ``tier0 serve`` process: the HTTP app and the server that runs it.

``create_app(t0)`` is a bare ASGI app owning the ``/_tier0/`` paths (health,
SQL, events); ``serve(t0, host, port)`` runs it under uvicorn until SIGTERM or
SIGINT and returns after a graceful shutdown; ``run_workers`` runs several
such processes on one port (``tier0 serve --workers N``).
"""

from __future__ import annotations

from tier0.server._app import App, ASGIApp, HTTPError, Limits, create_app, status_for
from tier0.server._connection import connection_protocol
from tier0.server._serve import (
    DEFAULT_PORT,
    LISTEN_BACKLOG,
    bind,
    check_tls,
    format_url,
    parse_address,
    serve,
)
from tier0.server._workers import (
    WORKERS_MAX,
    bind_reuseport,
    pin_to_cpu,
    run_workers,
    worker_cpus,
)

__all__ = [
    "DEFAULT_PORT",
    "LISTEN_BACKLOG",
    "WORKERS_MAX",
    "ASGIApp",
    "App",
    "HTTPError",
    "Limits",
    "bind",
    "bind_reuseport",
    "check_tls",
    "connection_protocol",
    "create_app",
    "format_url",
    "parse_address",
    "pin_to_cpu",
    "run_workers",
    "serve",
    "status_for",
    "worker_cpus",
]
