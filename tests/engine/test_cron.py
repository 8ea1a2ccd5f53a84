"""Cron schedules (``tier0.engine._cron``): crontab(5) fields, names, steps, both day
fields, aliases, and dates that never come."""

from __future__ import annotations

import datetime as dt

import pytest

from tier0.engine._cron import Cron
from tier0.errors import InvalidArgument


def _t(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("line", "after", "expected"),
    [
        ("*/5 * * * *", _t(2026, 11, 30, 12, 3), _t(2026, 11, 30, 12, 5)),
        ("*/5 * * * *", _t(2026, 11, 30, 12, 5), _t(2026, 11, 30, 12, 10)),  # strictly after
        ("0 9 * * MON-FRI", _t(2026, 11, 28, 12), _t(2026, 11, 30, 9)),  # Saturday -> Monday
        ("30 23 31 12 *", _t(2026, 1, 1), _t(2026, 12, 31, 23, 30)),
        ("0 0 29 2 *", _t(2026, 3, 1), _t(2028, 2, 29)),  # the next leap day
        ("0 0 13 * 5", _t(2026, 11, 1), _t(2026, 11, 6)),  # the 13th or a Friday (Vixie cron)
        ("0 0 * * 7", _t(2026, 11, 30), _t(2026, 12, 6)),  # 7 is Sunday too
        ("15,45 */6 * jan,jul *", _t(2026, 7, 1, 6, 20), _t(2026, 7, 1, 6, 45)),
        ("@hourly", _t(2026, 11, 30, 12, 59, 59), _t(2026, 11, 30, 13)),
        ("@yearly", _t(2026, 11, 30), _t(2027, 1, 1)),
        ("0-10/5 1 * * *", _t(2026, 11, 30, 1, 6), _t(2026, 11, 30, 1, 10)),
    ],
)
def test_the_next_time(line: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert Cron.parse(line).after(after) == expected


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("* * * *", "five fields"), ("60 * * * *", "not a minute"), ("* 24 * * *", "not a hour"),
        ("* * 0 * *", "not a day of month"), ("* * * 13 *", "not a month"),
        ("* * * * 8", "not a day of week"), ("*/0 * * * *", "bad step"),
        ("9-3 * * * *", "runs backwards"), ("0 0 31 4 *", "never fires"), ("@often", "five"),
    ],
)  # fmt: skip
def test_bad_lines_are_refused_clearly(line: str, said: str) -> None:
    with pytest.raises(InvalidArgument, match=said):
        Cron.parse(line)
