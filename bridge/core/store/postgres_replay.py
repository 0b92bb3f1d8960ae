"""Replays in the PostgreSQL store: the rules of :mod:`.sqlite_replay`, which both backends share.

A replay is a new message pointing at its chain's first message (``replay_root``); everything that
leaves the engine is named from that first message, so a receiver sees a resend, never a new order.
The rules and their messages are the same on both backends and their SQL differs only in the
parameter placeholder, so they are written once (the functions there pick ``%s`` for a psycopg
connection); this module keeps the PostgreSQL store's import of them.
"""

from __future__ import annotations

from .sqlite_replay import (
    ChainRow,
    chain_outbox,
    chain_prescription,
    chain_root,
    check_replay,
    dead_letters_resolved_by,
    destinations_json,
    next_waiting_hold,
    open_hold_for,
    original_row,
)

__all__ = ["ChainRow", "chain_root", "chain_outbox", "check_replay", "chain_prescription", "original_row",
           "dead_letters_resolved_by", "open_hold_for", "next_waiting_hold", "destinations_json"]
