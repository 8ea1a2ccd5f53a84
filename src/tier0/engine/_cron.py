"""Cron schedules: the five-field syntax of crontab(5), in UTC.

``minute hour day-of-month month day-of-week``, each ``*``, a number, a
range ``a-b``, a step ``*/n`` or ``a-b/n``, or a list of those; months and
weekdays also by name (``JAN``, ``MON``); Sunday is 0 or 7. As in Vixie cron,
when both day fields are restricted a day matches either. ``@yearly``,
``@monthly``, ``@weekly``, ``@daily``, ``@hourly`` stand for the usual lines.

`Cron.after(t)` is the first scheduled minute strictly after ``t``, found by
jumping field by field (a month, a day, an hour at a time), not minute by
minute, so a yearly schedule costs as little as an hourly one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from tier0.errors import InvalidArgument

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip
_MONTHS: Final = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}  # fmt: skip
_DAYS: Final = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
#: (name, low, high, names) per field.
_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS),
)  # fmt: skip
#: How far `after` looks before deciding a schedule never fires (Feb 30 never comes).
_HORIZON_YEARS: Final = 8


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        if not isinstance(text, str):
            raise InvalidArgument(f"a schedule is a cron line, not {text!r}")
        line = _ALIASES.get(text.strip().lower(), text.strip())
        parts = line.split()
        if len(parts) != 5:
            raise InvalidArgument(
                f"a schedule has five fields (minute hour day-of-month month day-of-week),"
                f" e.g. '*/5 * * * *', or @hourly/@daily/...; {text!r} has {len(parts)}"
            )
        sets = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(0 if d == 7 else d for d in sets[4])
        cron = cls(
            text, frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]),
            weekdays, parts[2] != "*", parts[4] != "*",
        )  # fmt: skip
        if cron.after(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) is None:
            raise InvalidArgument(f"schedule {text!r} never fires (no such date)")
        return cron

    def after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first scheduled minute strictly after ``moment`` (None if there is none
        within a few years: a date that does not exist)."""
        t = moment.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        horizon = t.year + _HORIZON_YEARS
        while t.year <= horizon:
            if t.month not in self.months:
                t = _next_month(t)
            elif not self._day_matches(t):
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + dt.timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
            else:
                return t
        return None

    def _day_matches(self, t: dt.datetime) -> bool:
        in_month = t.day in self.days
        in_week = (t.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week


def _next_month(t: dt.datetime) -> dt.datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise InvalidArgument(f"bad step {step_text!r} in the {name} field {text!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, name, low, high, names), _value(last, name, low, high, names)
        else:
            start = _value(body, name, low, high, names)
            end = high if step_text else start
        if start > end:
            raise InvalidArgument(f"the range {body!r} in the {name} field runs backwards")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidArgument(f"{text!r} is not a {name} ({low}-{high})")
    return int(text)
