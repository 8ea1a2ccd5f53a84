"""The engine's fsck: its rows checked against each other.

What it finds, each a line of the report:

- an invocation ``running`` without a lease, or ``queued``/``running`` for a
  function version that is not deployed (it could only fail);
- a trigger pinned to a function version that is not deployed, a stream
  trigger without its consumer group, a schedule trigger without its cursor;
- a stream whose counters disagree with its messages (offsets not gap-free
  from ``first_offset`` to ``next_offset``, retained bytes), a consumer group
  past the end of its stream or of a stream that does not exist.

Each check is one aggregate query per table: the cost grows with the number of
streams and triggers, not with messages or invocations beyond one scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tier0.engine._dispatch import _group, _schedule_cursor, _spec
from tier0.engine._streams import DEAD_LETTER, EVENTS
from tier0.meta import MetaBackend, load_json

PROBLEMS_MAX = 1000


@dataclass
class EngineCheckReport:
    problems: list[str] = field(default_factory=list)
    invocations_checked: int = 0
    triggers_checked: int = 0
    streams_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < PROBLEMS_MAX:
            self.problems.append(problem)


def check_engine(meta: MetaBackend) -> EngineCheckReport:
    """Check the engine's tables (see the module docstring); read-only."""
    report = EngineCheckReport()
    with meta.reader() as db:
        deployed = {
            (r[0], int(r[1])) for r in db.query_all("SELECT name, version FROM t0_functions")
        }
        names = {name for name, _ in deployed}
        report.invocations_checked = int(db.query_one("SELECT count(*) FROM t0_invocations")[0])
        for (count,) in db.query_all(
            "SELECT count(*) FROM t0_invocations WHERE status = 'running'"
            " AND (lease_owner IS NULL OR lease_until_us IS NULL)"
        ):
            if count:
                report.add(f"{count} invocation(s) running without a lease")
        for name, version, count in db.query_all(
            "SELECT function_name, function_version, count(*) FROM t0_invocations"
            " WHERE status IN ('queued', 'running') GROUP BY function_name, function_version"
        ):
            missing = name not in names if version is None else (name, int(version)) not in deployed
            if missing:
                which = name if version is None else f"{name} version {version}"
                report.add(f"{count} invocation(s) wait for {which}, which is not deployed")
        groups = {(r[0], r[1]): int(r[2]) for r in db.query_all(
            "SELECT stream, group_name, committed FROM t0_stream_groups")}  # fmt: skip
        cursors = {r[0] for r in db.query_all("SELECT name FROM t0_cursors")}
        for (spec_json,) in db.query_all("SELECT spec FROM t0_triggers"):
            spec = _spec(load_json(spec_json))
            report.triggers_checked += 1
            if (spec.function, spec.function_version) not in deployed:
                report.add(
                    f"trigger {spec.name} runs {spec.function} version {spec.function_version},"
                    " which is not deployed"
                )
            if spec.stream is not None and (spec.stream, _group(spec.name)) not in groups:
                report.add(f"stream trigger {spec.name} has no consumer group on {spec.stream}")
            if spec.schedule is not None and _schedule_cursor(spec.name) not in cursors:
                report.add(f"schedule trigger {spec.name} has no cursor")
        streams = {}
        for name, first, next_, size in db.query_all(
            "SELECT name, first_offset, next_offset, bytes FROM t0_streams"
        ):
            streams[name] = int(next_)
            report.streams_checked += 1
            low, high, count, stored = db.query_one(
                "SELECT min(msg_offset), max(msg_offset), count(*),"
                " coalesce(sum(length(value)), 0) FROM t0_stream_messages WHERE stream = ?",
                (name,),
            )
            expected = int(next_) - int(first)
            if int(count) != expected or (count and (int(low), int(high)) != (first, next_ - 1)):
                report.add(
                    f"stream {name} holds offsets {low}..{high} ({count} messages), its counters"
                    f" say {first}..{int(next_) - 1} ({expected})"
                )
            if int(stored) != int(size):
                report.add(f"stream {name} holds {stored} bytes, its counter says {size}")
        for (stream, group), committed in groups.items():
            if stream not in streams:
                # The events stream has no row; the dead letter has one from its first message.
                exists = stream == EVENTS or (stream == DEAD_LETTER and committed == 0)
                if not exists:
                    report.add(f"group {group} reads stream {stream}, which does not exist")
            elif committed > streams[stream]:
                report.add(
                    f"group {group} of {stream} committed offset {committed}, past its end"
                    f" ({streams[stream]})"
                )
    return report
