"""uvicorn serving an app on a thread of the test process, on a free port of 127.0.0.1.

For tests that need the server's objects at hand (its gateway's statistics,
this process's descriptors); the others run `tier0 serve` as a process
(tests/server/test_serve.py).
"""

from __future__ import annotations

import threading
import time

import uvicorn

from tier0.server import bind


class ThreadedServer:
    """``uvicorn.Server(config)`` running on a thread until `close`."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.sock = bind("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
