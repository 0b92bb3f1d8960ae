"""Channel and destination maps: filters, transforms and lookup tables written as data.

A map is a folder beside the config (``maps/NAME/map.yaml`` and its CSV tables) that channels and
destinations name (``maps: [NAME]``). See docs/maps.md for the language and a cookbook.
"""

from bridge.core.maps.model import Map, Step, load_map, map_folders, map_version
from bridge.core.maps.runner import MapOutcome, hold_rules, run_maps

__all__ = ["Map", "MapOutcome", "Step", "hold_rules", "load_map", "map_folders", "map_version", "run_maps"]
