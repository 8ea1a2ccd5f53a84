"""Functions the engine benchmark deploys as a code package."""

from __future__ import annotations

import time
from typing import Any


def stamp(ctx: Any, event: dict[str, Any]) -> None:
    """Log the moment the function started (ns since the epoch): the latency's end."""
    ctx.log.info("%d", time.time_ns())


def started_ns(*_: object) -> int:
    """The same moment for the ProcessPoolExecutor floor."""
    return time.time_ns()
