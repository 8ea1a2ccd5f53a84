"""A module without ``init``: the Ray runtime runs its functions as tasks."""

from __future__ import annotations

import os
from typing import Any


def upper(ctx: Any, event: dict[str, Any]) -> None:
    body = ctx.client.get(event["bucket"], event["key"]).read()
    name = event["key"].split("/", 1)[1]
    ctx.client.put(
        event["bucket"], f"tasks/{name}", body.upper(), metadata={"pid": str(os.getpid())}
    )
    ctx.log.info("task ran for %s", event["key"])
