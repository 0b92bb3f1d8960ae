"""Field-position steps' cost (docs/maps.md): an HL7v2 destination's outbound message edited by
position, beside encoding the same records, one run.

Three numbers per message, the median of alternating rounds: HL7v2 encoding of the decoded records
(what a destination without pass-through does anyway); a ``passthrough`` destination's work
(the sender's bytes parsed, MSH-10 stamped, the cookbook's PV1-3 lookup, the text rendered again)
instead of encoding; and the cookbook's two MSH-4 steps on an encoded message (parse, copy, set,
render), which a destination with field steps adds to its encoding. The maps are the shipped
examples (examples/maps/maps/bedboard-locations, lab-facility-msh4) on their own test samples.

Run:  .venv/bin/python benchmarks/hl7v2_fields.py [--rounds 9] [--per-round 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.core.maps import load_map  # noqa: E402
from bridge.core.maps.pipeline import edit_outbound  # noqa: E402
from bridge.testing import plugin_manager  # noqa: E402

MAPS = ROOT / "examples" / "maps" / "maps"


def per_message(work: Callable[[], object], count: int) -> float:
    """Microseconds per call over ``count`` calls."""
    started = time.perf_counter()
    for _ in range(count):
        work()
    return (time.perf_counter() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-round", type=int, default=1000)
    args = parser.parse_args()
    hl7 = plugin_manager().format("hl7v2")
    bedboard, _ = load_map(MAPS / "bedboard-locations")
    lab, _ = load_map(MAPS / "lab-facility-msh4")
    assert bedboard is not None and lab is not None
    raw = (MAPS / "bedboard-locations" / "tests" / "clinic2.in.hl7").read_bytes()
    records = hl7.decode(raw, {})
    encoded = hl7.encode(records, {"message_control_id": "TB1"})
    loops = {
        "encode the records (hl7v2)": lambda: hl7.encode(records, {"message_control_id": "TB1"}),
        "pass-through + PV1-3 lookup": lambda: edit_outbound([bedboard], raw, records, "d", [], "TB1"),
        "encoded message + 2 MSH-4 steps": lambda: edit_outbound([lab], encoded, records, "d", []),
    }
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, work in loops.items():  # alternating, so a change in the machine's speed hits all
            timings[name].append(per_message(work, args.per_round))
    print(f"hl7v2_fields benchmark: Python {sys.version.split()[0]}; {args.rounds} rounds of {args.per_round}")
    for name, values in timings.items():
        print(f"{name:34}: {statistics.median(values):7.1f} us/message (median; min {min(values):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
