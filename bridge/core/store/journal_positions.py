"""How far each intake journal has been moved into the store (SQLite; migration 13, ``journal_positions``).

The mover inserts a batch of journal entries into ``messages`` and records the journal position after
them in the same transaction (:meth:`move_journal`), so what the position covers is in the store and
what it does not is still in the journal: a crash never loses or doubles a message. See
:mod:`bridge.core.journal`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from bridge.errors import StoreError


class JournalPositions:
    """Mixin for :class:`~bridge.core.store.sqlite.SQLiteStore`."""

    supports_intake_journal = True

    def journal_position(self, journal_id: str) -> Any:
        from bridge.core.journal import Position

        rows = self._read("SELECT segment, offset, moved FROM journal_positions WHERE journal_id=?",  # type: ignore[attr-defined]
                          (journal_id,))
        return Position(int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else Position()

    def journal_positions(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._read(  # type: ignore[attr-defined]
            "SELECT journal_id, channel, segment, offset, moved, updated_at FROM journal_positions ORDER BY channel")]

    def move_journal(self, journal_id: str, channel: str, expected: Any, new: Any,
                     rows: Sequence[tuple[Any, ...]], extra: Sequence[tuple[Any, ...]] = ()) -> list[Any] | None:
        """Insert journal ``rows`` (``receive_many`` items plus ``received_at``) and then ``extra``
        items, and move the journal's position from ``expected`` to ``new``, in one transaction.
        None (nothing written) when the position is no longer ``expected`` (another mover moved
        them). Returns the results of ``rows`` then ``extra``, ``(id, duplicate)`` each.

        Without ``extra`` the commit does not wait for the disk (``synchronous=NORMAL``): a power cut
        that undoes it undoes the rows and the position together, and the entries are still in the
        journal (segments are deleted only after :meth:`journal_durable`), so they are moved again.
        A worker may process such a row before it is on the disk, but nothing leaves the engine
        before a later flush of the same WAL (a deliverer flushes before it sends). This keeps the
        mover's fsyncs from competing for the disk with the listener's journal flushes. ``extra``
        rows are answered with their ids at once, so that commit waits for the disk (``FULL``)."""
        with self._tx(replayable=not extra) as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT segment, offset FROM journal_positions WHERE journal_id=?",
                               (journal_id,)).fetchone()
            current = (row[0], row[1]) if row else (0, 0)
            if current != (expected.segment, expected.offset):
                return None
            results = [self._insert(conn, *item) for item in (*rows, *extra)]  # type: ignore[attr-defined]
            conn.execute("INSERT INTO journal_positions (journal_id, channel, segment, offset, moved, updated_at)"
                         " VALUES (?,?,?,?,?,?) ON CONFLICT(journal_id) DO UPDATE SET segment=excluded.segment,"
                         " offset=excluded.offset, moved=excluded.moved, updated_at=excluded.updated_at",
                         (journal_id, channel, new.segment, new.offset, new.moved, time.time()))
        return results

    def journal_durable(self) -> None:
        """Return once every commit of this thread is on the disk (before moved segments are deleted)."""
        self._flush_after_commit()  # type: ignore[attr-defined]

    def channel_dedupe_keys(self, channel: str) -> Iterable[str]:
        """Every dedupe key stored for ``channel`` (keys start with ``channel|``), read from the
        dedupe index alone (an intake journal's filter of possible resends, at start)."""
        prefix = channel + "|"
        rows = self._read("SELECT dedupe_key FROM messages INDEXED BY messages_dedupe WHERE dedupe_key IS NOT NULL"  # type: ignore[attr-defined]
                          " AND dedupe_key >= ? AND dedupe_key < ?", (prefix, channel + "}"))
        return [row[0] for row in rows]

    def known_dedupe_keys(self, keys: Iterable[str], *, before: float) -> set[str]:
        """Which of ``keys`` belong to messages received before ``before`` (a resend's ACK says so)."""
        keys = list(keys)
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                found.update(row[0] for row in self._read(  # type: ignore[attr-defined]
                    f"SELECT dedupe_key FROM messages WHERE dedupe_key IN ({marks}) AND received_at < ?",
                    (*chunk, before)))
            except StoreError:
                raise
        return found
