"""What Linux says of this machine's IPv4 TCP sockets (/proc/net/tcp), for tests that must
know where a request's bytes are: still on their way, waiting in a server's socket, or read."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ESTABLISHED = "01"


@dataclass(frozen=True, slots=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str  # two hex digits, as the kernel writes it (`ESTABLISHED`)
    #: Bytes sent but not yet acknowledged by the peer's kernel.
    unacknowledged_bytes: int
    #: Bytes received and not yet read by the socket's owner.
    unread_bytes: int


def tcp_sockets() -> list[TcpSocket]:
    sockets = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        sent, received = fields[4].split(":")
        sockets.append(
            TcpSocket(
                local_port=int(fields[1].rsplit(":", 1)[1], 16),
                remote_port=int(fields[2].rsplit(":", 1)[1], 16),
                state=fields[3],
                unacknowledged_bytes=int(sent, 16),
                unread_bytes=int(received, 16),
            )
        )
    return sockets


def wait_until(
    condition: Callable[[list[TcpSocket]], bool], what: str, timeout_s: float = 10
) -> None:
    """Until ``condition(tcp_sockets())`` holds; fails saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while not condition(tcp_sockets()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(0.01)
