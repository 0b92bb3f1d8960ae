"""Routing: which destinations get which records of a message.

Routes are compiled once at start-up into plain predicates; per message the router only walks the
channel's short route list. ``when: {record: [Kinds], match: {dotted.path: value | [values]},
message_type: [BAR, DFT^P03]}`` selects records; a route without ``when`` takes every record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from bridge.core.config import Route
from bridge.core.model.records import Record


def value_at(obj: Any, dotted: str) -> list[Any]:
    """Every value found at ``dotted`` (lists are searched element by element)."""
    values = [obj]
    for part in dotted.split("."):
        found = []
        for value in values:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if dataclasses.is_dataclass(item):
                    nxt = getattr(item, part, None)
                elif isinstance(item, dict):
                    nxt = item.get(part)
                else:
                    nxt = None
                if nxt is not None:
                    found.extend(nxt if isinstance(nxt, list) else [nxt])
        values = found
    return values


def type_matches(wanted: Iterable[str], message_type: str | None) -> bool:
    """``BAR`` matches ``BAR^P01^BAR_P01``; ``DFT^P03`` matches DFT^P03 of any structure."""
    if not message_type:
        return False
    parts = message_type.upper().split("^")
    return any(parts[:len(w.split("^"))] == w.split("^") for w in wanted)


def route_matches(route: Route, record: Record, message_type: str | None = None) -> bool:
    if route.message_types and not type_matches(route.message_types, message_type):
        return False
    if route.records and record.kind not in route.records:
        return False
    for path, wanted in route.match.items():
        if not any(v in wanted or str(v) in {str(w) for w in wanted} for v in value_at(record, path)):
            return False
    return True


class Router:
    def __init__(self, routes: Iterable[Route]):
        self.routes = tuple(routes)
        self.needs_message_type = any(r.message_types for r in self.routes)
        """Whether the pipeline must read the inbound message type (only then: it costs a header read)."""

    def route(self, records: Sequence[Record], message_type: str | None = None) -> dict[str, list[Record]]:
        """Destination name → the records it receives, in message order, each record at most once.
        ``message_type`` is the inbound message's (MSH-9 for HL7v2), for routes that name types."""
        out: dict[str, list[Record]] = {}
        for route in self.routes:
            chosen = [r for r in records if route_matches(route, r, message_type)]
            if not chosen:
                continue
            for destination in route.to:
                bucket = out.setdefault(destination, [])
                bucket.extend(r for r in chosen if not any(r is b for b in bucket))
        for destination, bucket in out.items():
            bucket.sort(key=lambda r: next(i for i, x in enumerate(records) if x is r))
        return out
