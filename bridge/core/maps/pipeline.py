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

from bridge.core.maps.hl7v2_fields import escaped, parse_field_path, parse_messages, write_field
from bridge.core.maps.model import Map
from bridge.core.maps.runner import MapOutcome, hold_rules, run_maps
from bridge.core.model.records import Record
from bridge.errors import DecodeError

MSH_10 = parse_field_path("MSH-10")


def inbound_messages(maps: Sequence[Map], raw: bytes | None) -> list[Any]:
    """The sender's HL7v2 message(s), parsed only when one of ``maps`` has a condition reading field
    positions (``raw`` None: the channel's format is not HL7v2, so those conditions read nothing)."""
    if raw is None or not any(m.reads_inbound for m in maps):
        return []
    try:
        return parse_messages(raw).messages
    except DecodeError:  # it decoded as HL7v2 a moment ago; an unreadable one leaves nothing to read
        return []


def run_channel_maps(maps: Sequence[Map], records: list[Record], raw: bytes | None = None) -> MapOutcome | None:
    """The channel's maps applied to ``records`` (in place); None when the channel has none.
    ``raw``: the message as received when the channel's format is HL7v2."""
    if not maps:
        return None
    return run_maps(maps, records, "channel", inbound_messages(maps, raw))


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
                           events: list[tuple[str, Mapping[str, Any]]], raw: bytes | None = None
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
        mapped = run_maps(own, copy.deepcopy(chosen), f"destination:{name}", inbound_messages(own, raw))
        events.extend(("mapped", event) for event in mapped.events)
        holds.extend(hold_rules(mapped.holds))
        if mapped.failure:
            failures[name] = mapped.failure
        elif mapped.records:
            out[name] = mapped.records
        else:
            events.append(("filtered", {"destination": name, "reason": "the destination's maps dropped every record"}))
    return out, failures, holds


def edit_outbound(maps: Sequence[Map], payload: bytes, records: Sequence[Record], stage: str,
                  events: list[tuple[str, Mapping[str, Any]]], control_id: str | None = None
                  ) -> tuple[bytes, MapOutcome]:
    """A destination's HL7v2 payload after its maps' field-position steps (and, for a pass-through,
    with ``control_id`` in MSH-10). Their timeline entries join the ``mapped`` events the record
    steps of the same maps wrote, in step order. Raises DecodeError when ``payload`` is not HL7v2."""
    outbound = parse_messages(payload)
    if control_id is not None:
        stamp_control_ids(outbound.messages, control_id)
    mapped = run_maps(maps, list(records), stage, outbound=outbound.messages)
    _join_events(maps, events, mapped.events, stage)
    return outbound.render(), mapped


def stamp_control_ids(messages: Sequence[Any], control_id: str) -> None:
    """MSH-10 as the encoder writes it (the engine's id of the message, the same on every
    redelivery and replay); a second message of one payload gets ``-2``, and so on."""
    for number, message in enumerate(messages, start=1):
        value = control_id if number == 1 else f"{control_id}-{number}"
        write_field(message, MSH_10, escaped(value, message))


def _join_events(maps: Sequence[Map], events: list[tuple[str, Mapping[str, Any]]],
                 new: Sequence[dict[str, Any]], stage: str) -> None:
    earlier = {e["map"]: e for kind, e in events if kind == "mapped" and e.get("stage") == stage}
    for event in new:
        known = earlier.get(event["map"])
        if known is None:
            events.append(("mapped", event))
            continue
        order = {s.id: s.index for m in maps if m.name == event["map"] for s in m.steps}
        known["steps"].extend(event["steps"])  # type: ignore[union-attr]
        known["steps"].sort(key=lambda s: order.get(s["id"], 0))  # type: ignore[union-attr]
