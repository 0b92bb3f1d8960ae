"""Read-only queries behind each destination's state (bridge.core.health), for both stores.

The SQL is written once with ``?`` placeholders, like :mod:`bridge.core.store.reads`; the one thing
the two engines spell differently, reading a field of an event's JSON ``detail``, is each backend's
``_detail_field_sql``. Two sources answer different questions:

- the **outbox** says what waits now (backlog, rows whose last attempt failed, the oldest waiting
  row) and when the destination last took a message (``delivered_at``, kept until pruning);
- the **events** of the last window say how many attempts were made and when the last one failed.
  Events carry no index on time; their ids grow with time, so the first id of the window is found
  by a binary search over the primary key (a few dozen point reads) instead of a scan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

ATTEMPT_EVENTS = ("delivered", "delivery_failed", "dead_letter")


@dataclass(frozen=True)
class OutboxActivity:
    """What one destination's outbox holds now."""

    backlog: int = 0  # rows waiting to be sent (status pending)
    failing_rows: int = 0  # waiting rows whose last attempt failed (attempts > 0)
    oldest_waiting_at: float | None = None  # created_at of the oldest waiting row
    oldest_failing_at: float | None = None  # created_at of the oldest waiting row that has failed
    last_success_at: float | None = None  # newest delivered_at
    dead: int = 0  # dead letters not resolved by a replay


@dataclass(frozen=True)
class AttemptActivity:
    """One destination's send attempts since the start of a window (from the events)."""

    attempts: int = 0
    failures: int = 0
    last_attempt_at: float | None = None
    last_failure_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None  # the newest failure's detail (may quote a message: analyst+ only)
    first_failure_after_success_at: float | None = None  # when the current run of failures began
    dead_since_success: int = 0  # sends that gave up for good after the last success


class DestinationReads:
    """Mixin for SQLiteStore and PostgresStore, placed after StoreReads (whose ``_select`` it uses)."""

    _detail_field_sql: ClassVar[str]  # the backend's SQL for the event detail's destination
    _select: Any  # StoreReads._select

    def destination_outbox_activity(self) -> dict[str, OutboxActivity]:
        """Per destination, what its outbox holds now (one grouped read of the outbox)."""
        rows = self._select(
            "SELECT destination, COUNT(*) FILTER (WHERE status='pending'),"
            " COUNT(*) FILTER (WHERE status='pending' AND attempts>0),"
            " MIN(created_at) FILTER (WHERE status='pending'),"
            " MIN(created_at) FILTER (WHERE status='pending' AND attempts>0),"
            " MAX(delivered_at), COUNT(*) FILTER (WHERE status='dead') FROM outbox GROUP BY destination")
        return {r[0]: OutboxActivity(int(r[1] or 0), int(r[2] or 0), r[3], r[4], r[5], int(r[6] or 0))
                for r in rows}

    def destination_attempts(self, since: float) -> dict[str, AttemptActivity]:
        """Per destination, its send attempts recorded at or after ``since``."""
        first = self._first_event_at_or_after(since)
        if first is None:
            return {}
        dest = self._detail_field_sql
        rows = self._select(
            f"SELECT d, COUNT(*), COUNT(*) FILTER (WHERE kind<>'delivered'), MAX(at),"
            f" MAX(at) FILTER (WHERE kind<>'delivered'), MAX(at) FILTER (WHERE kind='delivered')"
            f" FROM (SELECT {dest} AS d, kind, at FROM events WHERE id>=? AND at>=?"
            f" AND kind IN ('delivered', 'delivery_failed', 'dead_letter')) AS attempts GROUP BY d",
            (first, since))
        out = {}
        for name, attempts, failures, last_at, last_failure, last_success in rows:
            if name is None:
                continue
            extra: dict[str, Any] = {}
            if last_failure is not None:
                extra = self._failure_run(first, name, last_failure, last_success)
            out[name] = AttemptActivity(int(attempts), int(failures or 0), last_at, last_failure, last_success,
                                        **extra)
        return out

    def _failure_run(self, first_id: int, name: str, last_failure: float,
                     last_success: float | None) -> dict[str, Any]:
        """The newest failure's text, and the failures since the window's last success."""
        dest = self._detail_field_sql
        newest = self._select(
            f"SELECT detail FROM events WHERE id>=? AND kind IN ('delivery_failed', 'dead_letter') AND {dest}=?"
            " ORDER BY id DESC LIMIT 1", (first_id, name))
        detail = _detail_text(newest[0][0]) if newest else None
        after = last_success if last_success is not None else -1.0
        run = self._select(
            f"SELECT MIN(at), COUNT(*) FILTER (WHERE kind='dead_letter') FROM events WHERE id>=? AND at>?"
            f" AND kind IN ('delivery_failed', 'dead_letter') AND {dest}=?", (first_id, after, name))
        started, dead = run[0] if run else (None, 0)
        return {"last_error": detail, "first_failure_after_success_at": started if started is not None
                else last_failure, "dead_since_success": int(dead or 0)}

    def _first_event_at_or_after(self, since: float) -> int | None:
        """The smallest event id whose time is ``since`` or later (ids grow with time), or None."""
        bounds = self._select("SELECT MIN(id), MAX(id) FROM events")
        low, high = bounds[0] if bounds else (None, None)
        if high is None or self._event_at(high)[1] < since:
            return None
        while low < high:  # the smallest x whose next event is in the window: the window starts there
            middle = (low + high) // 2
            if self._event_at(middle)[1] >= since:
                high = middle
            else:
                low = middle + 1
        return self._event_at(low)[0]

    def _event_at(self, event_id: int) -> tuple[int, float]:
        """The first event at or after ``event_id`` (ids may have gaps): its id and time."""
        rows = self._select("SELECT id, at FROM events WHERE id>=? ORDER BY id LIMIT 1", (event_id,))
        return (int(rows[0][0]), float(rows[0][1])) if rows else (event_id, float("inf"))


def _detail_text(detail: Any) -> str | None:
    try:
        data = json.loads(detail) if isinstance(detail, str) else detail
    except ValueError:
        return None
    return str(data.get("detail")) if isinstance(data, Mapping) and data.get("detail") else None
