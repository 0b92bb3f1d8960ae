"""Routing: which destinations get which records of a message.

Routes are compiled once at start-up into plain predicates; per message the router only walks the
channel's short route list. ``when: {record: [Kinds], match: {dotted.path: value | [values]}}``
selects records; a route without ``when`` takes every record.
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


def route_matches(route: Route, record: Record) -> bool:
    if route.records and record.kind not in route.records:
        return False
    for path, wanted in route.match.items():
        if not any(v in wanted or str(v) in {str(w) for w in wanted} for v in value_at(record, path)):
            return False
    return True


class Router:
    def __init__(self, routes: Iterable[Route]):
        self.routes = tuple(routes)

    def route(self, records: Sequence[Record]) -> dict[str, list[Record]]:
        """Destination name → the records it receives, in message order, each record at most once."""
        out: dict[str, list[Record]] = {}
        for route in self.routes:
            chosen = [r for r in records if route_matches(route, r)]
            if not chosen:
                continue
            for destination in route.to:
                bucket = out.setdefault(destination, [])
                bucket.extend(r for r in chosen if not any(r is b for b in bucket))
        for destination, bucket in out.items():
            bucket.sort(key=lambda r: next(i for i, x in enumerate(records) if x is r))
        return out
