"""Each destination's activity, for its state (bridge.core.health), in both stores.

The SQL is written once with ``?`` placeholders, like :mod:`bridge.core.store.reads`. Two sources
answer different questions:

- the **outbox** says what waits now (backlog, rows whose last attempt failed, the oldest waiting
  row) and when the destination last took a message (``delivered_at``, kept until pruning);
- ``destination_minutes`` says how its sends went lately: one row per destination and minute,
  updated in the transaction that writes each delivery outcome (attempts, failures, dead letters,
  the first and last failure, the last success and the last error of that minute), kept a day. A
  state read is then ~60 rows per destination, however busy the destination; counting the hour's
  ``events`` instead took 2.2 s at 500,000 attempts an hour (json per row, no index on time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any



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
    """Mixin for SQLiteStore and PostgresStore, placed after StoreReads (whose ``_select`` and ``_x``
    it uses); the write is called by each backend's delivery-outcome transaction."""

    _select: Any  # StoreReads._select
    _x: Any  # StoreReads._x

    def destination_outbox_activity(self, names: Iterable[str] = ()) -> dict[str, OutboxActivity]:
        """Per destination (those named, and any with rows waiting or dead), what its outbox holds
        now. Reads only waiting and dead rows (by the status index), and the last success from the
        minutes (a day); only a destination without a success that day has its delivered rows read."""
        waiting = {r[0]: r[1:] for r in self._select(
            "SELECT destination, COUNT(*), COUNT(*) FILTER (WHERE attempts>0), MIN(created_at),"
            " MIN(created_at) FILTER (WHERE attempts>0) FROM outbox WHERE status='pending' GROUP BY destination")}
        dead = {r[0]: int(r[1]) for r in self._select(
            "SELECT destination, COUNT(*) FROM outbox WHERE status='dead' GROUP BY destination")}
        success = {r[0]: r[1] for r in self._select(
            "SELECT destination, MAX(last_success_at) FROM destination_minutes GROUP BY destination")}
        out = {}
        for name in sorted(set(names) | set(waiting) | set(dead)):
            last = success.get(name)
            if last is None:
                last = self.last_delivered_at(name)
            backlog, failing, oldest, oldest_failing = waiting.get(name, (0, 0, None, None))
            out[name] = OutboxActivity(int(backlog or 0), int(failing or 0), oldest, oldest_failing, last,
                                       dead.get(name, 0))
        return out

    def last_success_at(self, name: str) -> float | None:
        """When ``name`` last took a message: from the minutes (a day), else its delivered rows. The one
        answer the dashboard's state and the ``destination_failing`` alert both use."""
        row = self._select("SELECT MAX(last_success_at) FROM destination_minutes WHERE destination=?", (name,))
        return row[0][0] if row and row[0][0] is not None else self.last_delivered_at(name)

    def last_delivered_at(self, name: str) -> float | None:
        """The newest delivered row's time (reads that destination's delivered rows: used only when the
        minutes, kept a day, hold no success)."""
        return self._select("SELECT MAX(delivered_at) FROM outbox WHERE destination=? AND status='delivered'",
                            (name,))[0][0]

    def destination_attempts(self, since: float) -> dict[str, AttemptActivity]:
        """Per destination, its send attempts from the minute of ``since`` on."""
        rows = self._select(
            "SELECT destination, SUM(attempts), SUM(failures), MAX(last_failure_at), MAX(last_success_at)"
            " FROM destination_minutes WHERE minute>=? GROUP BY destination", (_minute(since),))
        out = {}
        for name, attempts, failures, last_failure, last_success in rows:
            extra: dict[str, Any] = {}
            if last_failure is not None:
                extra = self._failure_run(name, since, last_failure, last_success)
            last_at = max((t for t in (last_failure, last_success) if t is not None), default=None)
            out[name] = AttemptActivity(int(attempts or 0), int(failures or 0), last_at, last_failure, last_success,
                                        **extra)
        return out

    def _failure_run(self, name: str, since: float, last_failure: float,
                     last_success: float | None) -> dict[str, Any]:
        """The newest failure's text, when the failures after the last success began (to the
        minute: a minute with both keeps its first failure, or its last when that came after), and
        whether a send gave up for good since."""
        after = last_success if last_success is not None else -1.0
        newest = self._select("SELECT last_error FROM destination_minutes WHERE destination=? AND minute>=?"
                              " AND last_failure_at IS NOT NULL ORDER BY minute DESC LIMIT 1",
                              (name, _minute(since)))
        run = self._select(
            "SELECT MIN(CASE WHEN first_failure_at>? THEN first_failure_at ELSE last_failure_at END),"
            " COUNT(*) FILTER (WHERE last_dead_at>?) FROM destination_minutes"
            " WHERE destination=? AND minute>=? AND last_failure_at>?", (after, after, name, _minute(since), after))
        started, dead = run[0] if run else (None, 0)
        return {"last_error": newest[0][0] if newest else None,
                "first_failure_after_success_at": started if started is not None else last_failure,
                "dead_since_success": int(dead or 0)}

    def _record_attempts(self, conn: Any, outcomes: Sequence[Any], now: float) -> None:
        """In the transaction writing these delivery outcomes: add them to their destinations'
        minute (one upsert per destination), and drop minutes older than ``MINUTES_KEPT``."""
        minute = _minute(now)
        tallies: dict[str, dict[str, Any]] = {}
        for item in outcomes:
            tally = tallies.setdefault(item.claim.row.destination, {"attempts": 0, "failures": 0, "dead": 0,
                                                                    "failed_at": None, "error": None,
                                                                    "success_at": None, "dead_at": None})
            tally["attempts"] += 1
            if item.outcome == "delivered":
                tally["success_at"] = now
                continue
            tally["failures"] += 1
            tally["failed_at"], tally["error"] = now, (item.detail or "")[:ERROR_CHARS]
            if item.outcome == "dead":
                tally["dead"] += 1
                tally["dead_at"] = now
        for destination, t in sorted(tallies.items()):
            self._x(conn, UPSERT_MINUTE, (destination, minute, t["attempts"], t["failures"], t["dead"], t["failed_at"],
                                          t["failed_at"], t["success_at"], t["dead_at"], t["error"]))
        self._x(conn, "DELETE FROM destination_minutes WHERE minute<?", (minute - MINUTES_KEPT,))


ERROR_CHARS = 500  # the last error kept per minute: enough to say what went wrong
MINUTES_KEPT = 24 * 60
UPSERT_MINUTE = (
    "INSERT INTO destination_minutes (destination, minute, attempts, failures, dead, first_failure_at,"
    " last_failure_at, last_success_at, last_dead_at, last_error) VALUES (?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (destination, minute) DO UPDATE SET"
    " attempts = destination_minutes.attempts + excluded.attempts,"
    " failures = destination_minutes.failures + excluded.failures,"
    " dead = destination_minutes.dead + excluded.dead,"
    " first_failure_at = COALESCE(destination_minutes.first_failure_at, excluded.first_failure_at),"
    " last_failure_at = COALESCE(excluded.last_failure_at, destination_minutes.last_failure_at),"
    " last_success_at = COALESCE(excluded.last_success_at, destination_minutes.last_success_at),"
    " last_dead_at = COALESCE(excluded.last_dead_at, destination_minutes.last_dead_at),"
    " last_error = COALESCE(excluded.last_error, destination_minutes.last_error)")


def _minute(at: float) -> int:
    return int(at // 60)
