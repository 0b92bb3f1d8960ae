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
        them). Returns ``extra``'s results, ``(id, duplicate)`` each."""
        with self._tx() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT segment, offset FROM journal_positions WHERE journal_id=?",
                               (journal_id,)).fetchone()
            current = (row[0], row[1]) if row else (0, 0)
            if current != (expected.segment, expected.offset):
                return None
            for item in rows:
                self._insert(conn, *item)  # type: ignore[attr-defined]
            results = [self._insert(conn, *item) for item in extra]  # type: ignore[attr-defined]
            conn.execute("INSERT INTO journal_positions (journal_id, channel, segment, offset, moved, updated_at)"
                         " VALUES (?,?,?,?,?,?) ON CONFLICT(journal_id) DO UPDATE SET segment=excluded.segment,"
                         " offset=excluded.offset, moved=excluded.moved, updated_at=excluded.updated_at",
                         (journal_id, channel, new.segment, new.offset, new.moved, time.time()))
        return results

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
