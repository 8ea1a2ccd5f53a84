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
``tier0.engine.builtins.extract:handler`` puts what an element is into its catalog
                                         metadata: the content type sniffed from its
                                         bytes, an image's width and height, a Parquet
                                         file's rows, columns and schema
=======================================  ================================================

`embedding(bucket)` and `extraction(bucket)` give the function and trigger
that do these for a bucket, with the grants its principal needs::

    function, trigger = embedding("docs")
    t0.engine.deploy(function)
    t0.engine.add_trigger(trigger)
"""

from __future__ import annotations

from tier0.engine._functions import FunctionSpec
from tier0.engine._triggers import TriggerSpec

NOOP = "tier0.engine.builtins.basic:noop"
EMBED = "tier0.engine.builtins.embed:handler"
EXTRACT = "tier0.engine.builtins.extract:handler"


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


def extraction(
    bucket: str, *, prefix: str = "", name: str | None = None
) -> tuple[FunctionSpec, TriggerSpec]:
    """The function and trigger that annotate ``bucket``'s new elements (under ``prefix``)
    with their sniffed type, image dimensions and Parquet shape."""
    name = name or f"extract-{bucket}"
    function = FunctionSpec(
        name, EXTRACT, timeout_s=60.0, concurrency=2, memory_mb=1024,
        grants=(("s3:GetObject*", f"/{bucket}/*"), ("tier0:AnnotateObject", f"/{bucket}/*")),
    )  # fmt: skip
    return function, TriggerSpec(name, name, bucket=bucket, prefix=prefix, events=("created",))


__all__ = ["EMBED", "EXTRACT", "NOOP", "embedding", "extraction"]
