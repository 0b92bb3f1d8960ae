"""The PostgreSQL store's queue: lanes, batched claims and settlements, leases with fencing tokens,
and the LISTEN/NOTIFY wake-up hint. All of the backend's queue SQL is here.

How it works (see also :mod:`.base` for the contract and docs/architecture.md for operators):

- ``message_lanes`` / ``outbox_lanes`` hold one row per lane that has unfinished work: its head and
  ``due_at``, when the head may next be claimed (0 or the row's ``next_attempt_at``; while claimed,
  the lease's expiry). A claim reads ``due_at <= now`` rows through an index, ``FOR UPDATE SKIP
  LOCKED``, so its cost depends on the batch size and the work in flight, never on the backlog, and
  two nodes never wait for each other's claims.
- Entering a lane (receive, a released hold, a new outbox row) inserts the lane row or, when it
  exists, locks it without writing (``ON CONFLICT ... DO UPDATE ... WHERE false``). Leaving a lane's
  head (finish) locks the lane row *before* looking for the next head. So a message received while
  its lane's head finishes is either seen as the next head or finds the lane row gone and becomes the
  head itself: no message is ever stranded behind a lane row that was deleted.
- Locks on several lane rows are always taken in sorted order, and a transaction that still loses a
  deadlock is retried, so batches on several nodes cannot block each other for good.
- Every claim adds one to the row's ``lease_token``; a finish with an older token is refused for that
  item alone (``LeaseLost`` in its place) and the rest of the batch commits.
- ``pg_notify`` is sent at most once per committed batch that made work claimable; it is a hint to
  stop sleeping, never a carrier of work (workers also poll).
- Statements that update a batch's rows by id also name the ids (``id = ANY(…)``): a queue table grows
  from empty faster than autovacuum analyses it, and with no statistics the planner joined a batch to a
  whole-table scan.
- Claims and delivery outcomes commit without waiting for the WAL flush (``synchronous_commit =
  off`` for that transaction): if the server crashes, a lost claim is redone (its worker's result is
  then refused as stale and the message processed again) and a lost delivery outcome means one more
  send of a row whose outbound identity is stable. Received messages and processing results, which
  nothing could redo, keep the server's durable commit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from bridge.errors import LeaseLost, StoreError

from .base import DeliveryOutcome, MessageClaim, OutboxClaim, OutboxRow, ProcessingResult

NOTIFY_CHANNEL = "bridge_work"
MESSAGES, DELIVERIES = "messages", "deliveries"  # the NOTIFY payloads: which kind of work is claimable
_OUTBOX_COLUMNS = (
    "id, message_id, destination, status, attempts, next_attempt_at, created_at, media_type, "
    "file_extension, order_key, order_mode, last_error, delivered_at, control_id, message_type, "
    "original_message_id, original_outbox_id, resolved_by, resolved_by_message"
)
_OUTBOX_WIDTH = 19
_RETRIES = 5
# What PostgreSQL rolls back for another transaction's sake: the transaction can simply run again.
ROLLED_BACK = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
# A claim is one statement: lock up to ``limit`` due lane rows and their heads (SKIP LOCKED: a lane
# another node is claiming, or a head whose late owner is writing its result right now, is passed
# over, never waited for — a claim never waits for a lock, so it can never be part of a deadlock),
# lease the heads (a new fencing token each), and make those lanes due again only when the leases end.
# Every locked lane row comes back; a head that could not be leased comes back with NULLs in the
# claimed columns.
_CLAIM_MESSAGES = """
    WITH heads AS (
        SELECT l.channel, l.lane_key, l.head_id FROM message_lanes l JOIN messages h ON h.id = l.head_id
        WHERE l.due_at <= %(now)s
          AND NOT EXISTS (SELECT 1 FROM channel_state cs WHERE cs.channel = l.channel AND cs.paused = 1)
        ORDER BY l.head_id LIMIT %(limit)s
        FOR UPDATE OF l, h SKIP LOCKED),
    claimed AS (
        UPDATE messages m SET status = 'processing', lease_owner = %(owner)s, lease_expires = %(until)s,
               lease_token = m.lease_token + 1, updated_at = %(now)s
        FROM heads WHERE m.id = heads.head_id AND m.id = ANY(ARRAY(SELECT head_id FROM heads))
          AND (m.status = 'received' OR (m.status = 'processing' AND m.lease_expires < %(now)s))
        RETURNING m.id, m.channel, m.format, m.raw, m.lease_token, m.trace_id, m.control_id, m.policy_override,
                  m.replay_root, m.replay_destinations, m.order_key),
    leased AS (
        UPDATE message_lanes l SET due_at = %(until)s FROM heads JOIN claimed ON claimed.id = heads.head_id
        WHERE l.channel = heads.channel AND l.lane_key = heads.lane_key)
    SELECT heads.channel, heads.lane_key, heads.head_id, claimed.*
    FROM heads LEFT JOIN claimed ON claimed.id = heads.head_id ORDER BY heads.head_id
"""
_CLAIM_DELIVERIES = f"""
    WITH heads AS (
        SELECT l.destination, l.lane_key, l.head_id, l.due_at FROM outbox_lanes l JOIN outbox h ON h.id = l.head_id
        WHERE l.due_at <= %(now)s
        ORDER BY l.due_at, l.head_id LIMIT %(limit)s
        FOR UPDATE OF l, h SKIP LOCKED),
    claimed AS (
        UPDATE outbox o SET lease_owner = %(owner)s, lease_expires = %(until)s, lease_token = o.lease_token + 1,
               attempts = o.attempts + 1
        FROM heads WHERE o.id = heads.head_id AND o.id = ANY(ARRAY(SELECT head_id FROM heads)) AND o.status = 'pending'
        RETURNING {", ".join("o." + c.strip() for c in _OUTBOX_COLUMNS.split(","))}, o.payload, o.lease_token,
                  (SELECT trace_id FROM messages WHERE messages.id = o.message_id) AS trace_id),
    leased AS (
        UPDATE outbox_lanes l SET due_at = %(until)s FROM heads JOIN claimed ON claimed.id = heads.head_id
        WHERE l.destination = heads.destination AND l.lane_key = heads.lane_key)
    SELECT heads.destination, heads.lane_key, heads.head_id, claimed.*
    FROM heads LEFT JOIN claimed ON claimed.id = heads.head_id ORDER BY heads.due_at, heads.head_id
"""
T = TypeVar("T")
# When a message lane's new head is due: now, or never while its channel is paused (pausing sets its
# lanes' due_at to infinity and resuming back to 0, so claims never pass over a paused backlog).
_PAUSED = "EXISTS (SELECT 1 FROM channel_state cs WHERE cs.channel = {channel} AND cs.paused = 1)"
_DUE = "CASE WHEN " + _PAUSED + " THEN 'Infinity'::float8 ELSE 0 END"


def lane_key(order_key: str | None, item_id: int) -> str:
    """The lane an item is in: its order key, or a lane of its own."""
    return order_key if order_key is not None else f"#{item_id}"


class PgQueue:
    """Mixin for PostgresStore (needs ``_tx``, ``_event``, ``_write_result``, ``_insert``,
    ``_insert_outbox``, ``_apply_outbound``, ``_resolve_dead_letters``, ``_settle_messages``, ``_events`` and
    ``_conninfo``)."""

    # --- retries and the wake-up hint -------------------------------------------------------------

    def _retrying(self, work: Callable[[], T]) -> T:
        """Run a transaction again when PostgreSQL rolled it back as a deadlock victim (or for a
        serialization failure); after a few tries it is a StoreError like any other store trouble."""
        for attempt in range(_RETRIES):
            try:
                return work()
            except ROLLED_BACK as exc:
                if attempt == _RETRIES - 1:
                    raise StoreError(f"store transaction rolled back {_RETRIES} times: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _redoable(conn: Any) -> None:
        """This transaction may be lost in a server crash without harm (see the module docstring)."""
        conn.execute("SET LOCAL synchronous_commit TO OFF")

    @staticmethod
    def _notify(conn: Any, kind: str = MESSAGES) -> None:
        """Queued by PostgreSQL until commit; several of one kind in one transaction are delivered as
        one. The payload says which kind of work became claimable (``messages`` or ``deliveries``):
        every idle thread of every node listens, and a deliverer woken by each intake commit ran an
        empty claim for it (sampled: three of every five transactions were such claims)."""
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, kind))

    def wait_for_work(self, timeout: float) -> bool:
        """Wait for a NOTIFY from any node (or this one), at most ``timeout`` seconds."""
        listener = self._listener()
        return listener.wait(timeout) if listener else super().wait_for_work(timeout)

    def wait_for(self, kind: str, timeout: float) -> bool:
        """Wait for a NOTIFY of this kind of work (see ``_notify``), at most ``timeout`` seconds."""
        listener = self._listener()
        return listener.wait(timeout, kind) if listener else super().wait_for(kind, timeout)

    def _listener(self) -> _Listener | None:
        with self._listener_lock:
            if self._wake is None and not self._closed:
                self._wake = _Listener(self._conninfo)
                self._wake.start()
            return self._wake

    # --- entering lanes ---------------------------------------------------------------------------

    @staticmethod
    def _enter_message_lane(conn: Any, channel: str, order_key: str | None, message_id: int) -> None:
        """Make the message its lane's head, or leave it waiting (locking the lane row, see above)."""
        conn.execute(
            "INSERT INTO message_lanes (channel, lane_key, head_id, due_at) VALUES (%s, %s, %s, "
            + _DUE.format(channel="%s") + ")"
            " ON CONFLICT (channel, lane_key) DO UPDATE SET head_id = message_lanes.head_id WHERE false",
            (channel, lane_key(order_key, message_id), message_id, channel))

    @staticmethod
    def _enter_outbox_lane(conn: Any, destination: str, order_key: str | None, outbox_id: int,
                           due_at: float) -> None:
        conn.execute(
            "INSERT INTO outbox_lanes (destination, lane_key, head_id, due_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (destination, lane_key) DO UPDATE SET head_id = outbox_lanes.head_id WHERE false",
            (destination, lane_key(order_key, outbox_id), outbox_id, due_at))

    @staticmethod
    def _park_channel(conn: Any, channel: str, paused: bool) -> None:
        """Pausing makes the channel's lanes due never (in flight ones too: their next head stays
        parked); resuming makes them due now (a head still leased is found and put back to its
        lease's end by the next claim's repair)."""
        if paused:
            conn.execute("UPDATE message_lanes SET due_at = 'Infinity' WHERE channel = %s", (channel,))
        else:
            conn.execute("UPDATE message_lanes SET due_at = 0 WHERE channel = %s AND due_at = 'Infinity'",
                         (channel,))

    # --- processing -------------------------------------------------------------------------------

    def claim_messages(self, owner: str, lease_seconds: float, limit: int) -> list[MessageClaim]:
        now = time.time()
        rows = self._claim(_CLAIM_MESSAGES, {"now": now, "until": now + lease_seconds, "owner": owner,
                                             "limit": limit},
                           "messages", "message_lanes", "channel", "('received', 'processing')")
        rows.sort(key=lambda r: r[0])
        return [MessageClaim(id=r[0], channel=r[1], format=r[2], raw=bytes(r[3]), token=r[4], trace_id=r[5],
                             control_id=r[6], policy_override=bool(r[7]), replay_root=r[8],
                             replay_destinations=tuple(json.loads(r[9])) if r[9] else None, order_key=r[10])
                for r in rows]

    def _claim(self, sql: str, params: dict[str, Any], table: str, lanes: str, column: str,
               unfinished: str) -> list[tuple]:
        """Run one claim statement (lock due lane rows, lease their heads, push the lanes' ``due_at`` to
        the lease's end) in one round trip with the transaction's start; returns the claimed rows, in
        the lanes' order. Heads that could not be claimed are repaired (see ``_repair_heads``)."""
        def claim() -> list[tuple]:
            with self._tx() as conn:
                with conn.pipeline():
                    self._redoable(conn)
                    # A claim reads lanes and heads by index only; without statistics (a queue table
                    # grows faster than autovacuum analyses it) the planner joined them to a whole-table
                    # scan of the outbox on every claim.
                    conn.execute("SET LOCAL enable_seqscan TO off")
                    cur = conn.execute(sql, params)
                got = cur.fetchall()
                self._repair_heads(conn, table, lanes, column, unfinished, [g[:3] for g in got if g[3] is None])
            return [g[3:] for g in got if g[3] is not None]

        return self._retrying(claim)  # (only a repair can wait for a lock)

    def _repair_heads(self, conn: Any, table: str, lanes: str, column: str, unfinished: str,
                      heads: list[tuple[str, str, int]]) -> None:
        """Due heads that could not be claimed: one still unfinished (its lease not yet expired) is
        due when the lease expires; a finished one (which a correct lane never has) lets its lane move."""
        for name, key, head in heads:
            row = conn.execute(f"SELECT status IN {unfinished}, lease_expires FROM {table} WHERE id=%s",
                               (head,)).fetchone()
            if row and row[0]:
                conn.execute(f"UPDATE {lanes} SET due_at=%s WHERE {column}=%s AND lane_key=%s",
                             (row[1] or 0, name, key))
            elif table == "messages":
                self._advance_message_lane(conn, name, key)
            else:
                self._advance_outbox_lane(conn, name, key)

    def _advance_message_lane(self, conn: Any, channel: str, key: str) -> bool:
        """The lane's next waiting message becomes its head; an empty lane's row is deleted. The lane
        row is locked first (see the module docstring). True when a new head is claimable."""
        if conn.execute("SELECT 1 FROM message_lanes WHERE channel=%s AND lane_key=%s FOR UPDATE",
                        (channel, key)).fetchone() is None:
            return False
        nxt = None
        if not key.startswith("#"):
            nxt = conn.execute("SELECT id FROM messages WHERE channel=%s AND order_key=%s AND status='received'"
                               " ORDER BY id LIMIT 1", (channel, key)).fetchone()
        if nxt is None:
            conn.execute("DELETE FROM message_lanes WHERE channel=%s AND lane_key=%s", (channel, key))
            return False
        conn.execute("UPDATE message_lanes SET head_id=%s, due_at=" + _DUE.format(channel="%s")
                     + " WHERE channel=%s AND lane_key=%s", (nxt[0], channel, channel, key))
        return True

    def finish_processing_many(self, results: Sequence[tuple[MessageClaim, ProcessingResult]]
                               ) -> list[LeaseLost | None]:
        return self._retrying(lambda: self._finish_processing_batch(results))

    def _finish_processing_batch(self, results: Sequence[tuple[MessageClaim, ProcessingResult]]
                                 ) -> list[LeaseLost | None]:
        now = time.time()
        outcome: list[LeaseLost | None] = []
        events: list[tuple] = []
        outbox: list[tuple] = []
        with self._tx() as conn, conn.pipeline():
            written = self._write_statuses(conn, results, now)
            finished = []
            for (claim, result), ok in zip(results, written):
                if not ok:
                    outcome.append(LeaseLost(f"message {claim.id}: lease lost before its result was written"))
                    continue
                outcome.append(None)
                finished.append((claim.channel, lane_key(claim.order_key, claim.id)))
                self._write_result(conn, claim.id, claim.replay_root or claim.id, result, now, events, outbox)
            self._insert_outbox(conn, outbox, now, events)
            refused = [claim.id for (claim, result), ok in zip(results, written)
                       if ok and any(item.error is not None for item in result.outbox)]
            if refused:  # an encode dead letter may settle its message (all rows dead: 'dead')
                self._settle_messages(conn, refused, now)
            self._events(conn, events)
            if self._advance_message_lanes(conn, sorted(set(finished))):
                self._notify(conn, MESSAGES)
            if outbox:
                self._notify(conn, DELIVERIES)
        return outcome

    @staticmethod
    def _write_statuses(conn: Any, results: Sequence[tuple[MessageClaim, ProcessingResult]],
                        now: float) -> list[bool]:
        """Each message's new status and keys, fenced by its claim's token (one statement); per item,
        whether it was written."""
        if not results:
            return []
        rows = []
        for claim, result in results:
            records = json.dumps(result.records, sort_keys=True, separators=(",", ":"), default=str) \
                if result.records is not None else None
            rows.append((result.status, records, result.error, result.trace_id, result.keys.get("patient_id"),
                         result.keys.get("encounter_id"), result.keys.get("prescription_number"),
                         result.keys.get("ncpdp_message_id"), claim.id, claim.token))
        written = {r[0] for r in conn.execute(
            "UPDATE messages m SET status = f.status, records = f.records, error = f.error,"
            " trace_id = COALESCE(f.trace_id, m.trace_id), patient_id = f.patient_id, encounter_id = f.encounter_id,"
            " prescription_number = f.prescription_number, ncpdp_message_id = f.ncpdp_message_id,"
            " lease_owner = NULL, lease_expires = NULL, updated_at = %s"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::bigint[], %b::bigint[]) AS f(status, records, error, trace_id, patient_id,"
            " encounter_id, prescription_number, ncpdp_message_id, id, token)"
            " WHERE m.id = f.id AND m.id = ANY(%s) AND m.lease_token = f.token AND m.status = 'processing'"
            " RETURNING m.id",
            [now, *(list(column) for column in zip(*rows)), [claim.id for claim, _ in results]],
            binary=True).fetchall()}  # (binary arrays: see PostgresStore._events)
        return [claim.id in written for claim, _ in results]

    def _advance_message_lanes(self, conn: Any, lanes: list[tuple[str, str]]) -> bool:
        """Finished heads let their lanes move on, all lanes of a batch in a few statements: lock the
        lane rows (sorted), find each lane's next waiting message, move or delete. True when any lane
        has a new head."""
        if not lanes:
            return False
        channels, keys = [c for c, _ in lanes], [k for _, k in lanes]
        conn.execute("SELECT 1 FROM message_lanes l JOIN unnest(%b::text[], %b::text[]) AS f(channel, lane_key)"
                     " USING (channel, lane_key) ORDER BY l.channel, l.lane_key FOR UPDATE OF l", (channels, keys))
        nxt = conn.execute(
            "SELECT f.channel, f.lane_key, n.id FROM unnest(%b::text[], %b::text[]) AS f(channel, lane_key)"
            " LEFT JOIN LATERAL (SELECT id FROM messages m WHERE m.channel = f.channel AND m.order_key = f.lane_key"
            "   AND m.status = 'received' ORDER BY id LIMIT 1) n ON true", (channels, keys)).fetchall()
        moved = [r for r in nxt if r[2] is not None]
        empty = [r for r in nxt if r[2] is None]
        if moved:
            conn.execute("UPDATE message_lanes l SET head_id = f.head_id, due_at = " + _DUE.format(channel="l.channel")
                         + " FROM unnest(%b::text[],"
                         " %b::text[], %b::bigint[]) AS f(channel, lane_key, head_id)"
                         " WHERE l.channel = f.channel AND l.lane_key = f.lane_key",
                         ([r[0] for r in moved], [r[1] for r in moved], [r[2] for r in moved]))
        if empty:
            conn.execute("DELETE FROM message_lanes l USING unnest(%b::text[], %b::text[]) AS f(channel, lane_key)"
                         " WHERE l.channel = f.channel AND l.lane_key = f.lane_key",
                         ([r[0] for r in empty], [r[1] for r in empty]))
        return bool(moved)

    # --- delivery ---------------------------------------------------------------------------------

    def claim_deliveries(self, owner: str, lease_seconds: float, limit: int,
                         now: float | None = None) -> list[OutboxClaim]:
        now = time.time() if now is None else now
        rows = self._claim(_CLAIM_DELIVERIES, {"now": now, "until": now + lease_seconds, "owner": owner,
                                               "limit": limit},
                           "outbox", "outbox_lanes", "destination", "('pending')")
        return [OutboxClaim(row=OutboxRow(*r[:_OUTBOX_WIDTH]), payload=bytes(r[_OUTBOX_WIDTH]),
                            token=r[_OUTBOX_WIDTH + 1], trace_id=r[_OUTBOX_WIDTH + 2]) for r in rows]

    def _advance_outbox_lane(self, conn: Any, destination: str, key: str) -> bool:
        """The lane's next pending row becomes its head (due when that row is); an empty lane's row
        is deleted. True when the new head is due now."""
        if conn.execute("SELECT 1 FROM outbox_lanes WHERE destination=%s AND lane_key=%s FOR UPDATE",
                        (destination, key)).fetchone() is None:
            return False
        nxt = None
        if not key.startswith("#"):
            nxt = conn.execute("SELECT id, next_attempt_at FROM outbox WHERE destination=%s AND order_key=%s"
                               " AND status='pending' AND unordered=0 ORDER BY id LIMIT 1",
                               (destination, key)).fetchone()
        if nxt is None:
            conn.execute("DELETE FROM outbox_lanes WHERE destination=%s AND lane_key=%s", (destination, key))
            return False
        conn.execute("UPDATE outbox_lanes SET head_id=%s, due_at=%s WHERE destination=%s AND lane_key=%s",
                     (nxt[0], nxt[1], destination, key))
        return nxt[1] <= time.time()

    def renew_deliveries(self, claims: Sequence[OutboxClaim], lease_seconds: float) -> list[bool]:
        """Rows first, then their lanes (the order a finish takes, so the two never deadlock): a lane is
        due again only when its head's renewed lease ends, as a claim left it."""
        if not claims:
            return []

        def renew() -> set[tuple[int, int]]:
            until = time.time() + lease_seconds
            with self._tx() as conn:
                renewed = {(r[0], r[1]) for r in conn.execute(
                    "UPDATE outbox o SET lease_expires = %s FROM unnest(%b::bigint[], %b::bigint[]) AS f(id, token)"
                    " WHERE o.id = f.id AND o.lease_token = f.token AND o.status = 'pending'"
                    " AND o.lease_expires IS NOT NULL RETURNING o.id, o.lease_token",
                    (until, [c.row.id for c in claims], [c.token for c in claims])).fetchall()}
                if renewed:
                    conn.execute("UPDATE outbox_lanes SET due_at = GREATEST(due_at, %s) WHERE head_id = ANY(%s)",
                                 (until, sorted({row_id for row_id, _ in renewed})))
                return renewed

        renewed = self._retrying(renew)
        return [(c.row.id, c.token) in renewed for c in claims]

    def finish_deliveries(self, outcomes: Sequence[DeliveryOutcome]) -> list[int | None | LeaseLost]:
        for item in outcomes:
            if item.outcome not in ("delivered", "retry", "dead"):
                raise ValueError(f"unknown delivery outcome {item.outcome!r}")
        return self._retrying(lambda: self._finish_delivery_batch(outcomes))

    def _finish_delivery_batch(self, outcomes: Sequence[DeliveryOutcome]) -> list[int | None | LeaseLost]:
        now = time.time()
        results: list[int | None | LeaseLost] = []
        with self._tx() as conn, conn.pipeline():
            self._redoable(conn)
            written = self._write_outcomes(conn, outcomes, now)
            events: list[tuple] = []
            settled = []
            for item in outcomes:
                if item.claim.row.id not in written:
                    results.append(LeaseLost(f"outbox row {item.claim.row.id}: lease lost before the outcome"
                                             " was written"))
                    continue
                results.append(self._settle_delivery(conn, item, now, events))
                settled.append(item)
            self._events(conn, events)
            if settled:
                self._settle_messages(conn, sorted({i.claim.row.message_id for i in settled}), now)
            if self._move_outbox_lanes(conn, settled):
                self._notify(conn, DELIVERIES)
            if any(item.reply is not None for item in settled):  # a stored reply entered a message lane
                self._notify(conn, MESSAGES)
            # Last, just before the commit: the destination's minute is one row that every deliverer
            # on every node updates, so its lock is held from here to the commit; written first, it
            # made all the other deliverers wait for the whole batch's settling (sampled: most of the
            # deliverers' server time was that wait).
            self._record_attempts(conn, settled, now)  # destination_reads: the destination's minute
        return results

    @staticmethod
    def _write_outcomes(conn: Any, outcomes: Sequence[DeliveryOutcome], now: float) -> set[int]:
        """Every row's new status in one statement, fenced by each claim's token; the ids written."""
        if not outcomes:
            return set()
        statuses = {"delivered": "delivered", "retry": "pending", "dead": "dead"}
        rows = conn.execute(
            "UPDATE outbox o SET status = f.status, last_error = f.error,"
            " next_attempt_at = COALESCE(f.next_at, o.next_attempt_at), delivered_at = f.delivered_at,"
            " lease_owner = NULL, lease_expires = NULL"
            " FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::float8[], %b::float8[])"
            "   AS f(id, token, status, error, next_at, delivered_at)"
            " WHERE o.id = f.id AND o.id = ANY(%s) AND o.lease_token = f.token RETURNING o.id",
            ([i.claim.row.id for i in outcomes], [i.claim.token for i in outcomes],
             [statuses[i.outcome] for i in outcomes],
             [None if i.outcome == "delivered" else i.detail for i in outcomes],
             [i.next_attempt_at for i in outcomes],
             [now if i.outcome == "delivered" else None for i in outcomes],
             [i.claim.row.id for i in outcomes])).fetchall()
        return {r[0] for r in rows}

    def _settle_delivery(self, conn: Any, item: DeliveryOutcome, now: float, events: list[tuple]) -> int | None:
        """Timeline event, stored reply, prescription lifecycle and dead letters of one send (the
        messages' statuses are settled for the whole batch afterwards)."""
        row = item.claim.row
        event = {"delivered": "delivered", "retry": "delivery_failed", "dead": "dead_letter"}[item.outcome]
        info: dict[str, Any] = {"destination": row.destination, "outbox_id": row.id, "attempt": row.attempts,
                                "detail": item.detail}
        if item.outcome == "retry":
            info["next_attempt_at"] = item.next_attempt_at
        reply_id = None
        if item.reply is not None:
            channel, fmt, raw = item.reply
            origin = {"reply_to_message": row.message_id, "outbox_id": row.id, "destination": row.destination}
            reply_id, _ = self._insert(conn, channel, fmt, raw, None, {}, origin, None)
            info["reply_message"] = reply_id
        events.append((row.message_id, now, event, json.dumps(info, sort_keys=True, separators=(",", ":"),
                                                               default=str)))
        if item.outcome == "delivered":
            self._apply_outbound(conn, row, now)
            self._resolve_dead_letters(conn, row, now)
        return reply_id

    def _move_outbox_lanes(self, conn: Any, settled: list[DeliveryOutcome]) -> bool:
        """After a batch of sends: settled heads let their lanes move on; a strict retry keeps its lane
        waiting for the head's next attempt; a rotate retry steps aside into a lane of its own.
        Returns whether a new head is due now."""
        if not settled:
            return False
        lanes = {r[2]: (r[0], r[1]) for r in conn.execute(
            "SELECT destination, lane_key, head_id FROM outbox_lanes WHERE head_id = ANY(%s)"
            " ORDER BY destination, lane_key FOR UPDATE", ([i.claim.row.id for i in settled],))}
        advance: list[tuple[str, str]] = []
        for item in settled:
            row = item.claim.row
            if row.id not in lanes:
                continue
            destination, key = lanes[row.id]
            if item.outcome != "retry":
                advance.append((destination, key))
                continue
            retry_at = item.next_attempt_at if item.next_attempt_at is not None else row.next_attempt_at
            if row.order_mode == "rotate" and not key.startswith("#"):
                conn.execute("UPDATE outbox SET unordered=1 WHERE id=%s", (row.id,))
                self._enter_outbox_lane(conn, destination, None, row.id, retry_at)
                advance.append((destination, key))
            else:
                conn.execute("UPDATE outbox_lanes SET due_at=%s WHERE destination=%s AND lane_key=%s",
                             (retry_at, destination, key))
        return self._advance_outbox_lanes(conn, advance)

    @staticmethod
    def _advance_outbox_lanes(conn: Any, lanes: list[tuple[str, str]]) -> bool:
        """Each lane's next pending row becomes its head (due when that row is); empty lanes' rows are
        deleted. The lane rows are already locked by the caller. True when a new head is due now."""
        if not lanes:
            return False
        destinations, keys = [d for d, _ in lanes], [k for _, k in lanes]
        nxt = conn.execute(
            "SELECT f.destination, f.lane_key, n.id, n.next_attempt_at"
            " FROM unnest(%b::text[], %b::text[]) AS f(destination, lane_key)"
            " LEFT JOIN LATERAL (SELECT id, next_attempt_at FROM outbox o WHERE o.destination = f.destination"
            "   AND o.order_key = f.lane_key AND o.status = 'pending' AND o.unordered = 0 ORDER BY id LIMIT 1) n"
            " ON true", (destinations, keys)).fetchall()
        moved = [r for r in nxt if r[2] is not None]
        empty = [r for r in nxt if r[2] is None]
        if moved:
            conn.execute("UPDATE outbox_lanes l SET head_id = f.head_id, due_at = f.due_at FROM unnest(%b::text[],"
                         " %b::text[], %b::bigint[], %b::float8[]) AS f(destination, lane_key, head_id, due_at)"
                         " WHERE l.destination = f.destination AND l.lane_key = f.lane_key",
                         ([r[0] for r in moved], [r[1] for r in moved], [r[2] for r in moved],
                          [r[3] for r in moved]))
        if empty:
            conn.execute("DELETE FROM outbox_lanes l USING unnest(%b::text[], %b::text[])"
                         " AS f(destination, lane_key) WHERE l.destination = f.destination"
                         " AND l.lane_key = f.lane_key", ([r[0] for r in empty], [r[1] for r in empty]))
        return any(r[3] <= time.time() for r in moved)

    # --- rebuilding lanes (after ``bridge store copy``) ---------------------------------------------

    def rebuild_lanes(self) -> None:
        """Recreate the lane rows from the messages and outbox rows (a copied store has none)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM message_lanes")
            conn.execute("DELETE FROM outbox_lanes")
            conn.execute(
                "INSERT INTO message_lanes (channel, lane_key, head_id, due_at)"
                " SELECT DISTINCT ON (channel, COALESCE(order_key, '#' || id)) channel,"
                " COALESCE(order_key, '#' || id), id, " + _DUE.format(channel="messages.channel")
                + " FROM messages WHERE status IN ('received', 'processing')"
                " ORDER BY channel, COALESCE(order_key, '#' || id), status = 'received', id")
            conn.execute(
                "INSERT INTO outbox_lanes (destination, lane_key, head_id, due_at)"
                " SELECT DISTINCT ON (destination, lane) destination, lane, id, next_attempt_at FROM"
                " (SELECT *, CASE WHEN order_key IS NULL OR unordered = 1 THEN '#' || id ELSE order_key END AS lane"
                "  FROM outbox WHERE status = 'pending') o ORDER BY destination, lane, id")


class _Listener(threading.Thread):
    """LISTENs on its own connection (not from the pool) and wakes waiting workers on a NOTIFY."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(name="bridge-store-listen", daemon=True)
        self._conninfo = conninfo
        self._cond = threading.Condition()
        self._seen = {MESSAGES: 0, DELIVERIES: 0}
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake(notify.payload)
            except (psycopg.Error, StoreError):
                self._stop.wait(1.0)  # the server is away: workers poll meanwhile; listen again later

    def _wake(self, kind: str) -> None:
        """Count the hint for its kind (an unknown or empty payload, from an older node, for both)."""
        with self._cond:
            for known in (kind,) if kind in self._seen else tuple(self._seen):
                self._seen[known] += 1
            self._cond.notify_all()

    def wait(self, timeout: float, kind: str | None = None) -> bool:
        """Until a hint of ``kind`` (None: of any kind) comes, at most ``timeout`` seconds."""
        kinds = (kind,) if kind else (MESSAGES, DELIVERIES)
        with self._cond:
            seen = sum(self._seen[k] for k in kinds)
            return self._cond.wait_for(lambda: sum(self._seen[k] for k in kinds) != seen, timeout)

    def stop(self) -> None:
        self._stop.set()
