"""Time zones for record date-times: a sender's local times made exact, exact times shown in a zone.

HL7v2 senders (and some platforms) write wall-clock times with no offset: ``20260115103000``
means 10:30 on the sender's clock. Such a time names no instant until its zone is known, and a
fixed offset is wrong half the year. So each channel names the sender's IANA zone
(``timezone: America/Chicago``) and the core *localizes* every decoded record once, right after
decode, for every format at once: a time without an offset gets the offset its zone had at that
moment (January -06:00, July -05:00 in Chicago). Nothing else is touched:

- a value that already carries an offset (``Z``, ``-05:00``, ``+0530``) is the sender's statement
  and stays exactly as it arrived;
- a date without a time (``2026-01-15``, ``1980-04``, ``1980``) stays a date: it names a day, not
  an instant, and giving it a midnight would invent a time;
- the string as it arrived is kept in the enclosing record's ``extra["original_times"]``, keyed by
  the field's path inside that record (``{"period.start": "2026-01-15T10:30:00"}``).

Two wall-clock times need a rule, because daylight saving makes them ambiguous or impossible:

- **repeated hour** (clocks go back; 01:30 happens twice in Chicago on the first Sunday of
  November): the *first* occurrence is taken, i.e. the offset in force before the change
  (``01:30-05:00``, daylight time). This is Python's ``fold=0``.
- **skipped hour** (clocks go forward; 02:30 never happens on the second Sunday of March): the
  time is read with the offset in force before the change and written as the instant that gives,
  i.e. shifted forward by the gap (``02:30`` → ``03:30-05:00``). The original stays in
  ``original_times``, so the shift is visible.

:func:`convert_times` is the other direction, for encoders whose receivers want their own zone
(an HL7v2 destination's ``timezone`` option): exact times are rewritten as that zone's wall-clock
time with its offset; local times without an offset are left alone, because converting them would
mean guessing their zone.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .records import Record

ORIGINAL_TIMES = "original_times"
"""``extra`` key under which a record keeps each localized date-time as it arrived."""

_PARTS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_FIXED_OFFSET = re.compile(r"^(Z|[+-](\d{2}):?(\d{2}))$")


# --- zone names ----------------------------------------------------------------------------------


def zone_problem(name: Any) -> str | None:
    """Why ``name`` is not a usable IANA zone name, or None when it is (for config checks)."""
    if not isinstance(name, str) or not name.strip():
        return f"expected an IANA time zone name such as America/Chicago, got {name!r}"
    if _FIXED_OFFSET.match(name):
        return (f"{name!r} is a fixed offset, which is wrong for half the year where daylight saving "
                "applies; use an IANA time zone name such as America/Chicago")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (use an IANA name such as America/Chicago or UTC)"
    return None


def fixed_offset_problem(value: Any) -> str | None:
    """Why ``value`` is not a fixed UTC offset (``-05:00``, ``+0530``, ``Z``), or None when it is."""
    match = _FIXED_OFFSET.match(value) if isinstance(value, str) else None
    if match is None or (match.group(2) and (int(match.group(2)) > 14 or int(match.group(3)) > 59)):
        return f"expected a UTC offset such as -05:00, got {value!r}"
    return None


def load_zone(name: str) -> ZoneInfo:
    """The zone for an IANA name; raises ValueError with a readable message for a bad one."""
    problem = zone_problem(name)
    if problem:
        raise ValueError(problem)
    return ZoneInfo(name)


# --- one value -----------------------------------------------------------------------------------


def localize(value: str, zone: ZoneInfo) -> str:
    """``value`` with the offset ``zone`` had at that wall-clock time, or unchanged when it already
    has an offset, is a date only, or is not a date-time this engine reads (never guess)."""
    match = _PARTS.match(value)
    if match is None or match.group(8):
        return value
    wall = _wall_time(match)
    if wall is None:
        return value
    try:
        exact = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc).astimezone(zone)
    except OverflowError:  # a sentinel at the edge of the calendar (9999-12-31T23:59): no gap there
        exact = wall.replace(tzinfo=zone, fold=0)
    return _write(exact, match, value)


def in_zone(value: str, zone: ZoneInfo) -> str:
    """An exact ``value`` rewritten as ``zone``'s wall-clock time with its offset; a local time
    (no offset) or a date is returned unchanged."""
    match = _PARTS.match(value)
    if match is None or not match.group(8):
        return value
    wall = _wall_time(match)
    if wall is None:
        return value
    try:
        exact = wall.replace(tzinfo=_offset_of(match.group(8))).astimezone(zone)
    except OverflowError:  # the instant falls outside the calendar in that zone: keep it as it is
        return value
    return _write(exact, match, value)


def _wall_time(match: re.Match[str]) -> datetime | None:
    year, month, day, hour, minute, second, fraction, _ = match.groups()
    micro = int((fraction or ".0")[1:7].ljust(6, "0"))
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0), micro)
    except ValueError:  # a leap second or an impossible date: leave it as the sender wrote it
        return None


def _offset_of(text: str) -> timezone:
    if text == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _write(moment: datetime, match: re.Match[str], original: str) -> str:
    """``moment`` at the precision of the original (more only if a shift needs minutes)."""
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() % 60:
        return original  # a local-mean-time offset with seconds has no ISO 8601 form: keep as sent
    _, _, _, _, minute, second, fraction, _ = match.groups()
    text = f"{moment:%Y-%m-%dT%H}"
    if minute is not None or moment.minute:
        text += f":{moment:%M}"
    if second is not None:
        text += f":{moment:%S}{fraction or ''}"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# --- whole records -------------------------------------------------------------------------------


def localize_records(records: Sequence[Record], zone: str | ZoneInfo) -> int:
    """Give every offset-less date-time in ``records`` (nested records and value types included) the
    offset of ``zone`` (an IANA name, or a zone the caller loaded once at start-up), in place, keeping
    each original; returns how many values changed."""
    zone = zone if isinstance(zone, ZoneInfo) else load_zone(zone)
    changed = 0
    for record in records:
        for owner, name, holder, path in _datetime_slots(record, record, ""):
            value = getattr(owner, name)
            localized = localize(value, zone)
            if localized != value:
                setattr(owner, name, localized)
                _keep_original(holder, path, value)
                changed += 1
    return changed


def _keep_original(holder: Record, path: str, value: str) -> None:
    """Remember the first form a value arrived in (a re-localization must not overwrite it)."""
    extra = getattr(holder, "extra", None)
    if isinstance(extra, dict):
        extra.setdefault(ORIGINAL_TIMES, {}).setdefault(path, value)


def convert_times(records: Sequence[Record], zone_name: str) -> list[Record]:
    """Copies of ``records`` with every exact date-time shown in ``zone_name``'s local time and
    offset (for a receiver that wants its own zone); the given records are not changed."""
    zone = load_zone(zone_name)
    copies = [copy.deepcopy(record) for record in records]
    for record in copies:
        for owner, name, _, _ in _datetime_slots(record, record, ""):
            setattr(owner, name, in_zone(getattr(owner, name), zone))
    return copies


def _datetime_slots(obj: Any, holder: Record, path: str) -> Iterator[tuple[Any, str, Record, str]]:
    """(object, field name, enclosing record, path in that record) for every date-time string."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        here = f"{path}.{f.name}" if path else f.name
        if isinstance(value, str) and f.metadata.get("format") == "datetime":
            yield obj, f.name, holder, here
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from _nested(item, holder, f"{here}[{i}]")
        else:
            yield from _nested(value, holder, here)


def _nested(value: Any, holder: Record, path: str) -> Iterator[tuple[Any, str, Record, str]]:
    """A nested record keeps its own originals (paths restart there); a value type uses its holder's."""
    if isinstance(value, Record):
        yield from _datetime_slots(value, value, "")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield from _datetime_slots(value, holder, path)
