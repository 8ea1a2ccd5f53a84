"""Automatic embedding: a bucket's text elements made searchable by meaning as they arrive.

Each invocation runs ``t0.index(bucket)`` as the function's principal: it
reads the event log after the bucket's cursor and embeds the passages of the
elements written since (removing those of elements removed), so one
invocation catches up with every event before it and the next ones find
little to do. ``init`` loads the model once per worker. Deploy it with
`tier0.engine.builtins.embedding`.
"""

from __future__ import annotations

import os
from typing import Any


def init(ctx: Any) -> None:
    from tier0.db._semantic import embedder

    embedder()  # PyTorch and the model: seconds, once per worker


def handler(ctx: Any, event: dict[str, Any]) -> None:
    report = ctx.client.index(event["bucket"], prefix=os.environ.get("TIER0_EMBED_PREFIX", ""))
    ctx.log.info(
        "indexed %s: %d elements, %d passages", event["bucket"], report.elements_indexed,
        report.passages_written,
    )  # fmt: skip
