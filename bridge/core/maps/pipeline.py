"""Where maps meet the worker: small functions the pipeline calls, so its own changes stay few.

Channel maps run on the decoded (zone-resolved) records before the policy gate and the routes.
Destination maps run on each destination's own deep copy of the records routed to it (another
destination must not see one destination's edits), before encoding. A destination whose map fails
fails alone (its outbox row carries the error and becomes a dead letter, like an encoder's refusal);
a hold from any map holds the whole message for review, through the same hold as a policy's REVIEW.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core.maps.model import Map
from bridge.core.maps.runner import MapOutcome, hold_rules, run_maps
from bridge.core.model.records import Record


def run_channel_maps(maps: Sequence[Map], records: list[Record]) -> MapOutcome | None:
    """The channel's maps applied to ``records`` (in place); None when the channel has none."""
    if not maps:
        return None
    return run_maps(maps, records, "channel")


def channel_map_events(mapped: MapOutcome | None) -> list[tuple[str, Mapping[str, Any]]]:
    """One ``mapped`` timeline event per map that ran (names, versions, step ids, paths, counts)."""
    return [("mapped", event) for event in mapped.events] if mapped is not None else []


def merge_map_routes(routed: dict[str, list[Record]], extra: Mapping[str, tuple[str, ...] | None],
                     records: Sequence[Record]) -> dict[str, list[Record]]:
    """The routes' choice plus the destinations ``route`` steps named, records kept in message order."""
    out = {name: list(chosen) for name, chosen in routed.items()}
    for name, kinds in extra.items():
        bucket = out.setdefault(name, [])
        bucket.extend(r for r in records if (kinds is None or r.kind in kinds) and not any(r is b for b in bucket))
        bucket.sort(key=lambda r: next(i for i, x in enumerate(records) if x is r))
    return out


def apply_destination_maps(maps: Mapping[str, Sequence[Map]], routed: Mapping[str, list[Record]],
                           events: list[tuple[str, Mapping[str, Any]]]
                           ) -> tuple[dict[str, list[Record]], dict[str, str], list[dict[str, Any]]]:
    """Each destination's records after its maps; the destinations whose maps failed (with the
    error); and the hold rules any map asked for. Destinations left with no record are dropped."""
    out: dict[str, list[Record]] = {}
    failures: dict[str, str] = {}
    holds: list[dict[str, Any]] = []
    for name, chosen in routed.items():
        own = maps.get(name) or ()
        if not own:
            out[name] = chosen
            continue
        mapped = run_maps(own, copy.deepcopy(chosen), f"destination:{name}")
        events.extend(("mapped", event) for event in mapped.events)
        holds.extend(hold_rules(mapped.holds))
        if mapped.failure:
            failures[name] = mapped.failure
        elif mapped.records:
            out[name] = mapped.records
        else:
            events.append(("filtered", {"destination": name, "reason": "the destination's maps dropped every record"}))
    return out, failures, holds
