"""What a trigger matches (``tier0.engine._triggers``), and what it refuses at creation."""

from __future__ import annotations

from typing import Any

import pytest

import tier0
from tier0.engine import EVENT_TYPES, TriggerSpec
from tier0.errors import InvalidArgument


def _event(**facts: Any) -> dict[str, Any]:
    base = {"type": "ObjectCreated:Put", "bucket": "docs", "key": "raw/a.pdf", "size": 10}
    return {**base, **facts}


def test_bucket_prefix_suffix_types_and_filter_all_must_match() -> None:
    trigger = TriggerSpec(
        "pdfs", "extract", bucket="docs", prefix="raw/", suffix=".pdf",
        events=("created",), filter="size < 1000",
    )  # fmt: skip
    assert trigger.matches(_event())
    assert trigger.matches(_event(type="ObjectCreated:CompleteMultipartUpload"))
    for miss in (
        _event(bucket="logs"), _event(key="text/a.pdf"), _event(key="raw/a.txt"),
        _event(type="ObjectRemoved:Delete"), _event(size=5000), _event(size=None),
    ):  # fmt: skip
        assert not trigger.matches(miss), miss


def test_patterns_expand_to_the_types_they_name() -> None:
    assert TriggerSpec("t", "f", events=("*",)).matches(_event(type="TableRowsDeleted"))
    removed = TriggerSpec("t", "f", events=("ObjectRemoved:*",))
    assert removed.matches(_event(type="ObjectRemoved:DeleteMarkerCreated"))
    assert not removed.matches(_event(type="ObjectCreated:Put"))
    rows = TriggerSpec("t", "f", events="rows-inserted")  # one pattern as a string
    assert rows.events == ("rows-inserted",)
    assert rows.matches(_event(type="TableRowsInserted", key="docs"))
    assert not rows.matches(_event(type="TableRowsUpdated", key="docs"))


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"name": "bad name"}, "trigger name"),
        ({"name": ""}, "trigger name"),
        ({"function": "../evil"}, "function name"),
        ({"events": ("ObjectCreated:Putt",)}, "no event type matches 'ObjectCreated:Putt'"),
        ({"events": ()}, "1..32 event patterns"),
        ({"filter": "size >> 3"}, "filter"),
        ({"filter": "owner = 'me'"}, "cannot use 'owner'"),
        ({"prefix": "x" * 2000}, "prefix"),
        ({"bucket": ""}, "bucket"),
    ],
)
def test_a_trigger_that_cannot_work_is_refused_at_creation(
    arguments: dict[str, Any], complaint: str
) -> None:
    spec = {"name": "t", "function": "f", **arguments}
    with pytest.raises(InvalidArgument, match=complaint):
        TriggerSpec(**spec)


def test_every_object_and_table_event_the_kernel_emits_is_a_known_type(
    t0: tier0.Tier0,
) -> None:
    # Drive every kind of change, then check the log: a type missing from
    # EVENT_TYPES could never be matched by a trigger.
    t0.create_bucket("docs")
    t0.set_versioning("docs", "Enabled")
    t0.put("docs", "a", b"1")
    t0.copy("docs", "a", "docs", "b")
    t0.set_tags("docs", "a", {"k": "v"})
    t0.delete_tags("docs", "a")
    t0.annotate("docs", "a", {"tier0-type": "text/plain"})
    t0.delete("docs", "b")  # a delete marker
    t0.delete("docs", "a", version_id=t0.head("docs", "a").version_id)  # a version
    upload = t0.create_multipart_upload("docs", "big").upload_id
    part = t0.upload_part("docs", "big", upload, 1, b"x")
    t0.complete_multipart_upload("docs", "big", upload, [(1, part.etag)])
    table = t0.create_table("docs/t", {"id": "BIGINT", "v": "FLOAT[2]"})
    table.insert({"id": [1, 2], "v": [[0.0, 1.0], [1.0, 0.0]]})
    table.update({"id": 3}, where="id = 2")
    table.delete("id = 1")
    t0.sql("BEGIN; INSERT INTO docs.t VALUES (4, [1, 1]); DELETE FROM docs.t WHERE id = 3; COMMIT")
    table.add_columns({"note": "VARCHAR"})
    table.create_index()
    t0.db.drop_table("docs/t")
    seen = {e.type for e in t0.events.read(0, limit=1000) if e.type.startswith(("Object", "Table"))}
    # ACLs and browser-form POSTs are the S3 gateway's (its tests see those events).
    gateway = {"ObjectAcl:Put", "ObjectCreated:Post"}
    assert seen - gateway == set(EVENT_TYPES) - gateway
