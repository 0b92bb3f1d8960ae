"""What happened to a message at each of its destinations, for ``bridge show``, the API and the dashboard.

Destinations are independent: one message can be delivered to one destination and dead-lettered at
another. The message's status summarises them (``dead`` when any is dead and none pending); these
helpers say which destination failed, at which step, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.core.store.base import OutboxRow


def failed_at(row: OutboxRow) -> str | None:
    """``encode`` when a dead (or since resolved) row's encoder refused the message — such a row is
    dead on arrival and never claimed, so it has no attempts — ``send`` when its sends failed, else None."""
    if row.status not in ("dead", "resolved"):
        return None
    return "encode" if row.attempts == 0 else "send"


def destination_outcomes(rows: Sequence[OutboxRow], *, with_errors: bool = True) -> dict[str, dict[str, Any]]:
    """Destination name → its outcome for one message: status, outbox id, attempts, and for a failed
    row where it failed, the error (only ``with_errors``: an error can quote the message) and the
    message whose replay resolved it."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry: dict[str, Any] = {"status": row.status, "outbox_id": row.id, "attempts": row.attempts}
        stage = failed_at(row)
        if stage is not None:
            entry["failed_at"] = stage
            if with_errors:
                entry["error"] = row.last_error
        if row.resolved_by_message is not None:
            entry["resolved_by_message"] = row.resolved_by_message
        out[row.destination] = entry
    return out


def outcome_line(rows: Sequence[OutboxRow]) -> str:
    """One line naming each destination's outcome, failures first: ``ehr-fhir dead (encode), files delivered``."""
    def text(name: str, entry: dict[str, Any]) -> str:
        stage = f" ({entry['failed_at']})" if "failed_at" in entry else ""
        return f"{name} {entry['status']}{stage}"

    outcomes = destination_outcomes(rows, with_errors=False)
    ordered = sorted(outcomes.items(), key=lambda item: ("failed_at" not in item[1], item[0]))
    return ", ".join(text(name, entry) for name, entry in ordered)
