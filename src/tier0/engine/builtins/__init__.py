"""Functions that ship with tier0, deployed by import path, and what deploys them.

=======================================  ================================================
handler                                  what it does
=======================================  ================================================
``tier0.engine.builtins.basic:noop``     nothing (for measuring the engine, and checking
                                         that a trigger fires)
``tier0.engine.builtins.embed:handler``  keeps a bucket searchable by meaning: embeds the
                                         passages of new and changed text elements
                                         (``t0.index``), so ``t0.search`` finds a document
                                         moments after its PUT
=======================================  ================================================

`embedding(bucket)` gives the function and trigger that do the second for a
bucket, with the grants its principal needs::

    function, trigger = embedding("docs")
    t0.engine.deploy(function)
    t0.engine.add_trigger(trigger)
"""

from __future__ import annotations

from tier0.engine._functions import FunctionSpec
from tier0.engine._triggers import TriggerSpec

NOOP = "tier0.engine.builtins.basic:noop"
EMBED = "tier0.engine.builtins.embed:handler"


def embedding(
    bucket: str, *, prefix: str = "", name: str | None = None, timeout_s: float = 600.0
) -> tuple[FunctionSpec, TriggerSpec]:
    """The function and trigger that embed ``bucket``'s text elements (under ``prefix``)
    as they are written, changed or removed. One invocation at a time: each brings the
    whole bucket up to date from the event log, so a burst of PUTs is one embedding pass."""
    name = name or f"embed-{bucket}"
    function = FunctionSpec(
        name, EMBED, timeout_s=timeout_s, concurrency=1, memory_mb=4096,
        environment={"TIER0_EMBED_PREFIX": prefix},
        grants=(
            ("s3:ListBucket", f"/{bucket}"), ("s3:GetObject*", f"/{bucket}/*"),
            ("tier0:*Table", f"/{bucket}/_passages"),
        ),
    )  # fmt: skip
    trigger = TriggerSpec(name, name, bucket=bucket, prefix=prefix, events=("created", "removed"))
    return function, trigger


__all__ = ["EMBED", "NOOP", "embedding"]
