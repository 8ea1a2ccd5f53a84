"""Three pipeline steps chained through the data they write (``tests/engine/pipeline.yaml``):
raw text -> cleaned text -> a row with a vector in table ``docs/vectors`` -> the raw element
tagged as indexed."""

from __future__ import annotations

import hashlib
from typing import Any

DIMENSION = 8


def extract(ctx: Any, event: dict[str, Any]) -> None:
    """``raw/NAME.txt`` becomes ``text/NAME.txt``: stripped, one line, lower case."""
    raw = ctx.client.get(event["bucket"], event["key"]).read().decode()
    name = event["key"].removeprefix("raw/")
    ctx.client.put(event["bucket"], f"text/{name}", " ".join(raw.split()).lower().encode(),
                   metadata={"source": event["key"]})  # fmt: skip


def embed(ctx: Any, event: dict[str, Any]) -> None:
    """``text/NAME`` becomes a row (source, text, vector) of table ``docs/vectors``."""
    import pyarrow as pa

    client = ctx.client
    head = client.head(event["bucket"], event["key"])
    text = client.get(event["bucket"], event["key"]).read().decode()
    digest = hashlib.sha256(text.encode()).digest()
    vector = [b / 255 for b in digest[:DIMENSION]]
    table = client.create_table(
        f"{event['bucket']}/vectors",
        {"source": "VARCHAR", "text": "VARCHAR", "vector": f"FLOAT[{DIMENSION}]"},
        exist_ok=True,
    )
    table.insert(pa.table({
        "source": [head.metadata["source"]], "text": [text],
        "vector": pa.array([vector], pa.list_(pa.float32(), DIMENSION)),
    }))  # fmt: skip


def tag(ctx: Any, event: dict[str, Any]) -> None:
    """On rows inserted into ``vectors``: tag each row's source ``indexed=true``."""
    rows = ctx.client.sql(f"SELECT DISTINCT source FROM {event['bucket']}.vectors").rows
    for (source,) in rows:
        tags = ctx.client.get_tags(event["bucket"], source)
        if tags.get("indexed") != "true":
            ctx.client.set_tags(event["bucket"], source, {**tags, "indexed": "true"})
            ctx.log.info("tagged %s", source)
