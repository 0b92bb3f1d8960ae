"""Reading the ISO 8601 values records carry, at whatever precision they arrived with.

Records keep dates as sent (``"2027-09"``, ``"2026-11-27"``, ``"2026-11-27T09:23:41-06:00"``). The
rules need two readings: a calendar day (which rule version applies, whether a licence has lapsed)
and an instant (how old a PDMP check is). An expiry given to the month means the end of that month;
an instant without an offset is read as UTC, which the docs state, rather than guessed.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, timedelta, timezone

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_day(value: object, *, end: bool = False) -> date | None:
    """The calendar day of ``value``; a year or month means its first day (its last when ``end``)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    match = _DATE.match(text)
    if match:
        return _partial_day(match, end)
    instant = parse_instant(text)
    return instant.date() if instant else None


def _partial_day(match: re.Match[str], end: bool) -> date | None:
    year = int(match.group(1))
    month = int(match.group(2)) if match.group(2) else (12 if end else 1)
    if match.group(3):
        day = int(match.group(3))
    else:
        day = calendar.monthrange(year, month)[1] if end and 1 <= month <= 12 else 1
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_instant(value: object) -> datetime | None:
    """An aware datetime for a full timestamp, or None for a date-only or unreadable value."""
    if not isinstance(value, str) or "T" not in value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def end_of_day(day: date) -> datetime:
    """The last second of ``day`` in UTC: the reference instant when only a date is known."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc)


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months, clamped to the month's last day (Aug 31 + 6 months = Feb 28/29)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def hours_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier) / timedelta(hours=1)
