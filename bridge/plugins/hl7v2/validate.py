"""Structure validation with hl7apy: strict mode for inbound channels, and checks of our output.

hl7apy is slow (about 10 ms a message), so it is used only when a channel asks for
``options: {strict: true}`` and in tests. hl7apy 1.3.5 puts the TQ1 that follows RXE in RDE^O11
into the ORDER's TIMING group instead of TIMING_ENCODED, and its ``validate()`` then rejects
correct messages. For RDE^O11 we therefore assemble the groups ourselves, by the rules of the
v2.5 structure (below), and let hl7apy validate the assembled tree: cardinalities, required
fields and data types are still hl7apy's judgement; only the group finder is replaced.
"""

from __future__ import annotations

from typing import Any

from bridge import DecodeError

from .reader import Message, read_messages

_PATIENT = ("PID", "PD1")
_VISIT = ("PV1", "PV2")
_INSURANCE = ("IN1", "IN2", "IN3")


def _hl7apy() -> Any:
    from hl7apy import consts, core, parser

    return consts, core, parser


def problems(raw: bytes | str) -> list[str]:
    """Every structure problem hl7apy finds, one line per message that fails (empty when valid)."""
    out = []
    messages = read_messages(raw)
    for index, message in enumerate(messages, start=1):
        problem = _check(message)
        if problem:
            prefix = f"message {index}: " if len(messages) > 1 else ""
            out.append(prefix + problem)
    return out


def validate_strict(raw: bytes | str) -> None:
    """Strict mode: refuse a message hl7apy finds non-conforming, saying which rule it broke."""
    found = problems(raw)
    if found:
        raise DecodeError(f"strict validation failed: {'; '.join(found)}")


def _check(message: Message) -> str | None:
    consts, _, parser = _hl7apy()
    seps = message.separators
    msh = message.msh
    version = msh.get(12).split(seps.component)[0] or "2.5"
    structure = _structure(message)
    text = "\r".join(seps.field.join(_wire_fields(s)) for s in message.segments)
    try:
        if structure == "RDE_O11":
            tree = _assemble_rde(message, version)
        else:
            tree = parser.parse_message(text, validation_level=consts.VALIDATION_LEVEL.STRICT, find_groups=True)
        tree.validate()
    except Exception as exc:  # hl7apy raises many unrelated classes; all mean "does not conform"
        return f"{structure or 'message'} does not conform ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def _wire_fields(segment: Any) -> list[str]:
    if segment.name == "MSH":
        return ["MSH", *segment.fields[2:]]
    return segment.fields


def _structure(message: Message) -> str:
    parts = message.msh.get(9).split(message.separators.component)
    if len(parts) > 2 and parts[2]:
        return parts[2]
    return "_".join(parts[:2])


def _assemble_rde(message: Message, version: str) -> Any:
    """Build RDE_O11's group tree by the v2.5 rules (hl7apy's own finder mis-places TQ1)."""
    consts, core, parser = _hl7apy()
    level = consts.VALIDATION_LEVEL.STRICT
    seps = message.separators

    def seg(s: Any) -> Any:
        return parser.parse_segment(seps.field.join(_wire_fields(s)), version=version, validation_level=level,
                                    encoding_chars=_encoding(seps))

    def group(name: str) -> Any:
        return core.Group(f"RDE_O11_{name}", version=version, validation_level=level)

    root = core.Message("RDE_O11", version=version, validation_level=level)
    root.msh = seg(message.msh)
    patient = visit = insurance = order = current = None
    seen_rxe = False
    for s in message.segments[1:]:
        name = s.name
        if name == "ORC":
            order, seen_rxe, current = group("ORDER"), False, None
            root.add(order)
            order.add(seg(s))
        elif order is None:
            if name in _PATIENT or (patient is not None and name in ("NTE", "GT1", "AL1") and name != "PID"):
                if patient is None:
                    patient = group("PATIENT")
                    root.add(patient)
                patient.add(seg(s))
            elif name in _VISIT:
                if visit is None:
                    visit = group("PATIENT_VISIT")
                    patient.add(visit)
                visit.add(seg(s))
            elif name in _INSURANCE:
                if name == "IN1":
                    insurance = group("INSURANCE")
                    patient.add(insurance)
                insurance.add(seg(s))
            else:
                (visit or patient or root).add(seg(s))
        else:
            current, seen_rxe = _place_order_segment(s, seg(s), order, current, seen_rxe, group)
    return root


def _place_order_segment(s: Any, element: Any, order: Any, current: Any, seen_rxe: bool, group: Any) -> tuple[Any, bool]:
    """Put one ORDER segment where v2.5 RDE_O11 says it goes; returns the open sub-group."""
    name = s.name
    if name == "RXE":
        order.add(element)
        return None, True
    if name in ("TQ1", "TQ2"):
        if name == "TQ1":
            current = group("TIMING_ENCODED" if seen_rxe else "TIMING")
            order.add(current)
        current.add(element)
        return current, seen_rxe
    if not seen_rxe and name == "RXO":
        current = group("ORDER_DETAIL")
        order.add(current)
        current.add(element)
        return current, seen_rxe
    if seen_rxe and name == "OBX":
        current = group("OBSERVATION")
        order.add(current)
        current.add(element)
        return current, seen_rxe
    if current is not None and (name == "NTE" or name.startswith("Z") or (not seen_rxe and name == "RXR")):
        current.add(element)
        return current, seen_rxe
    order.add(element)
    return None, seen_rxe


def _encoding(seps: Any) -> dict[str, str]:
    return {"FIELD": seps.field, "COMPONENT": seps.component, "REPETITION": seps.repetition,
            "ESCAPE": seps.escape, "SUBCOMPONENT": seps.subcomponent, "GROUP": "\r", "SEGMENT": "\r"}
