"""Bulk replay of a search result from the dashboard: review, choose destinations, confirm the count.

A replay of many messages is the one dashboard action that can resend a day of a hospital's feed, so
it takes two steps. The review page runs the search (at most ``api.MAX_PAGE`` messages; a wider one
must be narrowed), shows how many messages it found and which destinations they went to, and asks
for a reason, the destinations and the count typed back. The post replays exactly the ids the review
showed — not the search again, which may find more by then — each with the store's replay rules
(stable outbound identities, held messages refused, ``force`` for a delivered prescription), limited
per message to the chosen destinations it was routed to before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from flask import g

from . import api
from .auth import Principal


def review(args: Mapping[str, str], who: Principal) -> dict[str, Any]:
    """What the confirmation page shows: ids, count, and per destination how many were routed to it."""
    rows, cursor = api.search_messages(args, who, limit=api.MAX_PAGE)
    if cursor is not None:
        raise api.ApiError(400, f"the search finds more than {api.MAX_PAGE} messages; narrow it (a shorter "
                                "date range, a status or a destination) and replay in parts")
    routed = routed_destinations([m.id for m in rows])
    per_destination = Counter(name for names in routed.values() for name in names)
    return {"ids": [m.id for m in rows], "count": len(rows), "destinations": dict(sorted(per_destination.items())),
            "never_routed": sum(1 for names in routed.values() if not names)}


def routed_destinations(ids: list[int]) -> dict[int, list[str]]:
    """Per message, the destinations it has outbox rows for (what a replay may be limited to)."""
    return {i: sorted({row.destination for row in api.store().outbox_rows(message_id=i)}) for i in ids}


def parse_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise api.ApiError(400, "ids: expected message ids separated by commas") from None
    if not ids or len(ids) > api.MAX_PAGE:
        raise api.ApiError(400, f"ids: between 1 and {api.MAX_PAGE} message ids")
    return ids


def run(form: Mapping[str, Any], chosen: list[str]) -> dict[str, Any]:
    """Replay the reviewed ids once the typed count matches; returns counts and the refusals."""
    ids = parse_ids(str(form.get("ids", "")))
    if str(form.get("confirm_count", "")).strip() != str(len(ids)):
        raise api.ApiError(400, f"type the number of messages ({len(ids)}) to confirm the replay")
    reason = api.reason_from(form)
    destinations, force = api.replay_scope({"destinations": chosen, "force": form.get("force", False)})
    include_unrouted = form.get("include_unrouted") == "on"
    if not destinations and not include_unrouted:
        raise api.ApiError(400, "choose at least one destination")
    replayed, refused, skipped = [], [], []
    for message_id, names in routed_destinations(ids).items():
        scope = [n for n in names if n in (destinations or ())] if names else None
        if (names and not scope) or (not names and not include_unrouted):
            skipped.append(message_id)
            continue
        (result,) = api.replay_ids([message_id], reason, g.principal, scope, force)
        (refused if "error" in result else replayed).append(result)
    api.audit("replay.bulk", "messages", {"reason": reason, "destinations": destinations or [], "force": force,
                                          "requested": len(ids), "replayed": len(replayed),
                                          "refused": [r["message_id"] for r in refused], "skipped": skipped})
    return {"replayed": replayed, "refused": refused, "skipped": skipped}
