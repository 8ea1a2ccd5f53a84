"""The ``tier0 serve`` process: the HTTP app and the server that runs it.

``create_app(t0)`` is a bare ASGI app owning the ``/_tier0/`` paths (health,
SQL, events); ``serve(t0, host, port)`` runs it under uvicorn until SIGTERM or
SIGINT and returns after a graceful shutdown.
"""

from __future__ import annotations

from tier0.server._app import App, ASGIApp, HTTPError, Limits, create_app, status_for
from tier0.server._serve import DEFAULT_PORT, bind, format_url, parse_address, serve

__all__ = [
    "DEFAULT_PORT",
    "ASGIApp",
    "App",
    "HTTPError",
    "Limits",
    "bind",
    "create_app",
    "format_url",
    "parse_address",
    "serve",
    "status_for",
]
