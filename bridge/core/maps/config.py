"""The config's side of maps: ``maps: [NAME, ...]`` on channels and destinations, checked at start.

Every map folder beside the config is loaded and checked (not only the ones named), so
``bridge check`` finds a broken map before someone attaches it; a name with no folder, a ``route``
step in a destination's map (the destination's records are already routed) and a route to a
destination the config does not have are config problems with the key path that names them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from bridge.core.maps.actions import CHANNEL_ONLY, RouteAction
from bridge.core.maps.model import MAPS_FOLDER, Map, load_map, map_folders


def map_names(value: Any, path: str, add: Any) -> tuple[str, ...]:
    """``maps: [NAME, ...]`` of a channel or destination (absent: none)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        add(path, f"expected a list of map names (folders under {MAPS_FOLDER}/), got {value!r}")
        return ()
    return tuple(value)


def load_config_maps(config_dir: str, channels: Mapping[str, Any], destinations: Mapping[str, Any],
                     add: Any) -> dict[str, Map]:
    """Every map beside the config, checked against where it is used; problems go to ``add(path, msg)``."""
    maps: dict[str, Map] = {}
    for name, folder in map_folders(config_dir).items():
        loaded, problems = load_map(folder)
        for where, message in problems:
            add(where, message)
        if loaded is not None:
            maps[name] = loaded
    known = sorted(map_folders(config_dir))
    for owner, items in (("channels", channels), ("destinations", destinations)):
        for item_name, item in items.items():
            for i, map_name in enumerate(getattr(item, "maps", ())):
                path = f"{owner}.{item_name}.maps[{i}]"
                if map_name not in known:
                    hint = difflib.get_close_matches(map_name, known, n=1)
                    add(path, f"no map {map_name!r} (a folder {MAPS_FOLDER}/{map_name}/ with map.yaml beside the "
                              "config)" + (f"; did you mean {hint[0]!r}?" if hint else ""))
                elif map_name in maps:
                    _check_use(maps[map_name], owner, path, set(destinations), add)
                    _check_fields(maps[map_name], owner, item_name, item, path, add)
                    if owner == "destinations":
                        _check_senders(maps[map_name], item_name, channels, maps, path, add)
    return maps


def _check_senders(map_: Map, destination: str, channels: Mapping[str, Any], maps: Mapping[str, Map],
                   path: str, add: Any) -> None:
    """A destination's record step whose condition reads field positions reads the sender's message:
    when every channel sending to the destination receives another format, it can never hold."""
    readers = [step for step in map_.steps if step.reads_fields and not step.edits_fields]
    senders = [c for c in channels.values() if _sends_to(c, destination, maps)]
    if not readers or not senders or any(c.format == "hl7v2" for c in senders):
        return
    formats = ", ".join(sorted({str(c.format) for c in senders}))
    for step in readers:
        add(f"{path} ({MAPS_FOLDER}/{map_.name}/map.yaml steps[{step.index}] (id: {step.id}))",
            f"the condition reads the sender's HL7v2 fields, but every channel sending to {destination} receives "
            f"{formats}; only a field-editing step's condition reads the outbound message")


def _sends_to(channel: Any, destination: str, maps: Mapping[str, Map]) -> bool:
    """The channel's routes, or a route step of its maps, name the destination."""
    if any(destination in route.to for route in getattr(channel, "routes", ())):
        return True
    return any(isinstance(step.action, RouteAction) and destination in step.action.to
               for name in getattr(channel, "maps", ()) if name in maps for step in maps[name].steps)


PASSTHROUGH_ACTIONS = ("drop", "hold")
"""Record actions that still mean something on a pass-through destination: not sending, holding."""


def _check_fields(map_: Map, owner: str, item_name: str, item: Any, path: str, add: Any) -> None:
    """Field positions need an HL7v2 message: the sender's (channel conditions) or the outbound one
    (a destination's field-position steps); a pass-through sends no records, so record edits are refused."""
    for step in map_.steps:
        where = f"{path} ({MAPS_FOLDER}/{map_.name}/map.yaml steps[{step.index}] (id: {step.id}))"
        if owner == "channels":
            if step.edits_fields:
                add(where, "a channel's map cannot edit HL7v2 fields (the message is decoded already); attach "
                           "this map to an hl7v2 destination, where it edits the outbound message")
            elif step.reads_fields and item.format != "hl7v2":
                add(where, f"the condition reads HL7v2 field positions, but channel {item_name} receives "
                           f"{item.format}, not HL7v2")
        elif step.edits_fields and item.format != "hl7v2":
            add(where, f"edits HL7v2 fields, but destination {item_name} sends {item.format}, not HL7v2")
        elif getattr(item, "passthrough", False) and not step.edits_fields \
                and step.action.kind is not None and step.action.name not in PASSTHROUGH_ACTIONS:
            add(where, f"destination {item_name} passes the sender's message through, so a change to the records "
                       "changes nothing it sends; edit the message with field positions (PV1-3) instead")


def _check_use(map_: Map, owner: str, path: str, destination_names: set[str], add: Any) -> None:
    for step in map_.steps:
        where = f"{path} ({MAPS_FOLDER}/{map_.name}/map.yaml steps[{step.index}] (id: {step.id}))"
        if owner == "destinations" and step.action.name in CHANNEL_ONLY:
            add(where, f"a destination's map cannot {step.action.name}: its records are already routed "
                       "(attach this map to the channel)")
        if isinstance(step.action, RouteAction):
            for dest in step.action.to:
                if dest not in destination_names:
                    hint = difflib.get_close_matches(dest, sorted(destination_names), n=1)
                    add(where, f"route to unknown destination {dest!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
