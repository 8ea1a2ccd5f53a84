"""The catalog tests' data set, built once in Python and written to each backend.

Expected answers are computed from it, never read back from the engine under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tier0.catalog import QueryResult
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json

BASE_US = 1_700_000_000_000_000  # 2023-11-14 22:13:20 UTC
STEP_US = 3_600_000_000 + 1_000  # an hour and a millisecond: times stay on whole ms


@dataclass(frozen=True)
class Version:
    bucket: str
    key: str
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    is_latest: int = 1
    is_delete_marker: int = 0


def _versions() -> list[Version]:
    rows = [
        Version("logs", f"logs/2024/01/app-{i:02d}.log", i * 100 + 7,
                {"owner": "alice" if i % 2 else "bob", "n": i}, {"k": f"v{i % 3}"})
        for i in range(20)
    ]  # fmt: skip
    rows += [
        Version("logs", "logs/rotating.log", 10 + i, {"owner": "alice"}, is_latest=int(i == 2))
        for i in range(3)
    ]
    rows += [
        Version("logs", "Logs/UPPER.txt", 5, {"owner": "bob"}),
        Version("logs", "logs/under_score.txt", 6, {"owner": "erin"}),
        Version("logs", "logs/underXscore.txt", 6, {"owner": "erin"}),
    ]
    rows += [
        Version("photos", f"photos/cat-{i:02d}.jpg", 1000 * i + 1,
                {"owner": "carol", "flag": i % 2 == 0, "dims": {"w": i, "h": [1, 2]}}, {"k": "cat"})
        for i in range(15)
    ]  # fmt: skip
    rows += [
        Version("photos", "photos/deleted.jpg", 50, {"owner": "carol"}, is_latest=0),
        Version("photos", "photos/deleted.jpg", 0, is_delete_marker=1),
    ]
    rows += [
        Version(
            "private",
            f"secret/plan-{i}.txt",
            333 + i,
            {"owner": "dave", "level": "top"},
            {"k": "hidden"},
        )
        for i in range(10)
    ]
    return rows


VERSIONS = _versions()
BUCKETS = ("logs", "photos", "private")
# seq is the 1-based position: the committer's sequence starts at 1.
OBJECT_SEQS = [i + 1 for i, v in enumerate(VERSIONS) if v.is_latest and not v.is_delete_marker]
OBJECTS = [VERSIONS[seq - 1] for seq in OBJECT_SEQS]


def created_text(seq: int, shift: timedelta = timedelta()) -> str:
    """The catalog's text for the creation time of version ``seq``, moved by ``shift``."""
    moment = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=BASE_US + (seq - 1) * STEP_US)
    moment += shift
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def populate(backend: MetaBackend) -> None:
    def write(tx: WriteTx) -> None:
        for i, name in enumerate(BUCKETS):
            tx.execute(
                "INSERT INTO t0_buckets (name, owner, versioning, created_us) VALUES (?, ?, ?, ?)",
                (name, f"owner-{name}", "Enabled", BASE_US + i * 1000),
            )
        for v in VERSIONS:
            seq = tx.next_seq()
            at_us = BASE_US + (seq - 1) * STEP_US
            tx.execute(
                "INSERT INTO t0_versions (seq, bucket, key, version_id, is_latest, is_delete_marker,"
                " size, stored_bytes, etag, content_type, created_us, modified_us, owner, metadata,"
                " tags, headers, checksum, checksums) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (seq, v.bucket, v.key, f"v{seq}", v.is_latest, v.is_delete_marker, v.size, v.size,
                 f"e{seq}", "text/plain", at_us, at_us, "root", dump_json(v.metadata),
                 dump_json(v.tags), "{}", "", "{}"),
            )  # fmt: skip
            tx.execute(
                "INSERT INTO t0_events (seq, type, bucket, key, version_id, size, etag, principal,"
                " time_us, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (seq, "delete" if v.is_delete_marker else "put", v.bucket, v.key, f"v{seq}",
                 v.size, f"e{seq}", "root", at_us, dump_json({"seq": seq})),
            )  # fmt: skip
        tx.execute(
            "INSERT INTO t0_principals (id, name, kind, created_us, created_by) VALUES (?,?,?,?,?)",
            ("p1", "alice", "person", BASE_US, "root"),
        )
        tx.execute(
            "INSERT INTO t0_audit (time_us, principal, action, resource, allowed, reason)"
            " VALUES (?,?,?,?,?,?)",
            (BASE_US, "p1", "get", "logs/x", 1, "granted"),
        )

    committer = Committer(backend)
    try:
        committer.run(write)
    finally:
        committer.close()


def fingerprint(backend: MetaBackend) -> tuple[Any, ...]:
    """Everything a write could change, read past the catalog."""
    with backend.reader() as connection:
        return tuple(
            tuple(connection.query_one(f"SELECT count(*), coalesce(sum(length(key)), 0) FROM {t}"))
            for t in ("t0_versions", "t0_events")
        ) + tuple(connection.query_one("SELECT count(*) FROM t0_buckets"))


def first_column(result: QueryResult) -> list[Any]:
    return [row[0] for row in result.rows]
