"""The body of ``bridge map test`` (the parser lives in bridge.cli, the comparing in .testing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from bridge.core.maps.model import Map
from bridge.core.maps.testing import Case, cases, run_case
from bridge.core.model.times import localize_records


def _channel_for(config: Any, map_: Map, fmt: str) -> Any:
    """The channel whose decoding a sample of ``fmt`` gets: the first of that format naming the map,
    else the first of that format feeding a destination that names it; None when there is none."""
    feeds = {name for name, dest in config.destinations.items() if map_.name in dest.maps}
    channels = [c for c in config.channels.values() if c.format == fmt]
    return (next((c for c in channels if map_.name in c.maps), None)
            or next((c for c in channels if any(set(r.to) & feeds for r in c.routes)), None))


def _decoder(config: Any, plugins: Any, map_: Map):
    """Decode a sample as the channel it would come through does (its options and time zone)."""
    def decode(fmt: str, raw: bytes) -> tuple[list[Any], str]:
        channel = _channel_for(config, map_, fmt)
        options = dict(channel.options) if channel is not None else {}
        records = plugins.format(fmt).decode(raw, options)
        if channel is not None and channel.timezone:
            localize_records(records, channel.timezone)
        return records, fmt
    return decode


def map_test(config: Any, plugins: Any, only: Sequence[str], out: TextIO) -> int:
    """Run the samples; 0 when every one gives what is expected, 1 otherwise, 2 for an unknown map."""
    unknown = [name for name in only if name not in config.maps]
    if unknown:
        print(f"bridge: no map {', '.join(map(repr, unknown))} (maps: {', '.join(sorted(config.maps)) or 'none'})",
              file=out)
        return 2
    chosen = {name: m for name, m in config.maps.items() if not only or name in only}
    failed = passed = 0
    for case in cases(chosen):
        result = run_case(case, _decoder(config, plugins, case.map))
        label = _label(case)
        if result.ok:
            passed += 1
            print(f"ok    {label}", file=out)
            continue
        failed += 1
        print(f"FAIL  {label}", file=out)
        print(result.diff or result.problem, file=out, end="" if result.diff else "\n")
    if passed + failed == 0:
        print("no map tests found (maps/NAME/tests/CASE.in.hl7 or .in.json with CASE.expected.json)", file=out)
    else:
        print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def _label(case: Case) -> str:
    return f"maps/{case.map.name}/tests/{case.input.name}"
