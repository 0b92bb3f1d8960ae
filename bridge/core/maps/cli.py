"""The body of ``bridge map test`` (the parser lives in bridge.cli, the comparing in .testing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from bridge.core.maps.hl7v2_fields import parse_field_path, parse_messages, write_field
from bridge.core.maps.model import Map
from bridge.core.maps.pipeline import edit_outbound
from bridge.core.maps.testing import Case, cases, run_case
from bridge.core.model.times import localize_records

MSH_7 = parse_field_path("MSH-7")


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


SAMPLE_CONTROL_ID = "TEST"
SAMPLE_DATETIME = "2026-01-01T00:00:00+00:00"
"""MSH-10 and MSH-7 of an encoded test message when the sample is not HL7v2 (bridge JSON)."""


def _outbound(config: Any, plugins: Any) -> Any:
    """``bridge map test``'s outbound message of a map's sample: see :func:`sample_outbound`, then
    the map's field-position steps."""
    def make(map_: Map, records: list[Any], raw: bytes) -> tuple[bytes, Any]:
        dest = next((d for d in config.destinations.values() if map_.name in d.maps and d.format == "hl7v2"), None)
        if dest is None:
            raise ValueError("the map edits HL7v2 fields, but no hl7v2 destination names it")
        return edit_outbound([map_], sample_outbound(config, plugins, dest, records, raw), records, "test", [])
    return make


def sample_outbound(config: Any, plugins: Any, dest: Any, records: list[Any], raw: bytes) -> bytes:
    """The message ``dest`` would send for a sample, before its field-position steps: the records
    encoded with its options (or the sample itself for a pass-through). MSH-10 and MSH-7 are the
    sample's own, so an expectation does not change with the clock or the engine's ids."""
    header = _sample_header(raw)
    control = header[0] if header else SAMPLE_CONTROL_ID
    if dest.passthrough:
        if header is None:
            raise ValueError(f"destination {dest.name} passes HL7v2 through; the sample must be HL7v2")
        return raw
    options = {**dest.options, "message_control_id": control, "message_datetime": SAMPLE_DATETIME,
               "config_dir": config.config_dir}
    payload = plugins.format("hl7v2").encode(records, options)
    return _with_msh7(payload, header[1]) if header is not None else payload


def _sample_header(raw: bytes) -> tuple[str, str] | None:
    """(MSH-10, MSH-7) as the sample wrote them; None when it is not HL7v2."""
    try:
        message = parse_messages(raw).messages[0]
    except Exception:  # noqa: BLE001 - a JSON sample
        return None
    msh = message.msh
    return msh.get(10), msh.get(7)


def _with_msh7(payload: bytes, written: str) -> bytes:
    outbound = parse_messages(payload)
    for message in outbound.messages:
        write_field(message, MSH_7, written)
    return outbound.render()


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
        result = run_case(case, _decoder(config, plugins, case.map), _outbound(config, plugins))
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
