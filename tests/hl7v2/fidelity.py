"""Round-trip fidelity of HL7v2 → bridge records → HL7v2, measured field by field.

A message is decoded, its records encoded again, and every non-MSH field of the original is compared
with the same field of the same occurrence of that segment in the output (the nth PID with the nth
PID). Fields are compared as structures of unescaped text (repetitions, components, subcomponents,
trailing empty parts dropped), so a change of encoding characters or of escaping is not a loss but
a changed value, a dropped component or a field moved elsewhere is. Only fields the original
values are counted; fields the output adds (a required set id, EVN-1) are tallied apart.
Run ``python -m tests.hl7v2.fidelity`` for the per-type table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bridge import DecodeError, EncodeError
from bridge.plugins.hl7v2.decode import decode
from bridge.plugins.hl7v2.encode import encode
from bridge.plugins.hl7v2.header import Separators
from bridge.plugins.hl7v2.reader import Message, Segment, read_messages, unescape

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus"
OPTS = {"sending_application": "TB", "message_datetime": "2026-01-01T00:00:00+00:00"}
LOSSLESS = ("ADT", "SIU", "MDM", "RDE^O11", "ORU^R01", "BAR", "DFT")
"""Message types documented as lossless in docs/hl7v2.md (a code alone means every event of it)."""


@dataclass
class Tally:
    """Fields compared and fields unchanged, with the changed ones named for a report."""

    compared: int = 0
    unchanged: int = 0
    messages: int = 0
    added: int = 0
    losses: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.unchanged / self.compared if self.compared else 1.0

    def add(self, other: Tally) -> None:
        self.compared += other.compared
        self.unchanged += other.unchanged
        self.messages += other.messages
        self.added += other.added
        for key, count in other.losses.items():
            self.losses[key] = self.losses.get(key, 0) + count


def structure(value: str, seps: Separators) -> tuple:
    """A field as nested tuples of unescaped leaves, trailing empty parts dropped at each level."""
    def trim(parts: list) -> tuple:
        while parts and parts[-1] in ("", ()):
            parts.pop()
        return tuple(parts)

    def leaf(sub: str) -> str:
        return unescape(sub, seps)

    reps = []
    for rep in value.split(seps.repetition):
        comps = [trim([leaf(s) for s in c.split(seps.subcomponent)]) for c in rep.split(seps.component)]
        comps = [c[0] if len(c) == 1 else c for c in comps]
        comps = [("" if c == () else c) for c in comps]
        reps.append(trim(comps))
    return trim([r for r in reps])


def _occurrences(message: Message) -> dict[tuple[str, int], Segment]:
    seen: dict[str, int] = {}
    out = {}
    for seg in message.segments:
        n = seen.get(seg.name, 0)
        seen[seg.name] = n + 1
        out[(seg.name, n)] = seg
    return out


def compare(original: Message, output: Message) -> Tally:
    """Every valued non-MSH field of ``original`` compared with the same field of ``output``."""
    tally = Tally(messages=1)
    before, after = _occurrences(original), _occurrences(output)
    for key in sorted(set(before) | set(after)):
        if key[0] == "MSH":
            continue
        a, b = before.get(key), after.get(key)
        width = max(len(a.fields) if a else 0, len(b.fields) if b else 0)
        for number in range(1, width):
            left = structure(a.get(number), original.separators) if a else ()
            right = structure(b.get(number), output.separators) if b else ()
            if left == ():
                tally.added += right != ()  # a field the output adds (PID-1 set id…) loses nothing
                continue
            tally.compared += 1
            if left == right:
                tally.unchanged += 1
            else:
                name = f"{key[0]}-{number}"
                tally.losses[name] = tally.losses.get(name, 0) + 1
    return tally


def message_type(message: Message) -> str:
    parts = message.msh.get(9).split(message.separators.component)
    return "^".join(p for p in parts[:2])


def is_lossless(kind: str) -> bool:
    return kind in LOSSLESS or kind.split("^")[0] in LOSSLESS


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".hl7", ".hl7v2"))


def measure(paths: Iterable[Path]) -> dict[str, Tally]:
    """Per message type, the fields of every decodable lossless-type message in ``paths``."""
    out: dict[str, Tally] = {}
    for path in paths:
        raw = path.read_bytes()
        try:
            messages = read_messages(raw)
        except DecodeError:
            continue
        for message in messages:
            kind = message_type(message)
            if not is_lossless(kind):
                continue
            tally = measure_one(message, raw if len(messages) == 1 else None)
            if tally is not None:
                out.setdefault(kind, Tally()).add(tally)
    return out


def measure_one(message: Message, raw: bytes | None) -> Tally | None:
    """Decode, encode and compare one message; None when it is refused (not a round-trip matter)."""
    from bridge.plugins.hl7v2.reader import reencode_segment
    text = raw if raw is not None else "\r".join(reencode_segment(s, message.separators)
                                                for s in message.segments).encode()
    try:
        records = decode(text, {})
    except DecodeError:
        return None
    try:
        out = encode(records, OPTS)
    except EncodeError:
        return Tally(compared=1, messages=1, losses={"(no encoder)": 1})
    produced = read_messages(out)
    if len(produced) != 1:
        return Tally(compared=1, messages=1, losses={"(message count)": 1})
    return compare(message, produced[0])


def first_pass(records: list, options: dict) -> tuple[list, list[str], list]:
    """A record built elsewhere (FHIR, by hand) has no recorded time: its first HL7v2 message stamps
    EVN-2 with the message time, and decoding that message keeps it like any sender's EVN-2. Returns
    the records of the first decode, the EVN-2 values it kept, and the records with those removed,
    which must equal ``records`` (the caller asserts it); from then on the round trip is exact."""
    import copy

    from bridge.plugins.hl7v2.codec import decode as fmt_decode, encode as fmt_encode
    decoded = fmt_decode(fmt_encode(records, options), options)
    stamps, bare = [], []
    for record in decoded:
        clean = copy.deepcopy(record)
        kept = clean.extra.get("hl7v2", {})
        if "EVN-2" in kept.get("fields", {}):
            stamps.append(kept["fields"].pop("EVN-2"))
            if not kept["fields"]:
                del kept["fields"]
            if not kept:
                del clean.extra["hl7v2"]
        bare.append(clean)
    return decoded, stamps, bare


def main() -> None:
    results = measure(corpus_files())
    total = Tally()
    for kind in sorted(results):
        tally = results[kind]
        total.add(tally)
        worst = sorted(tally.losses.items(), key=lambda kv: -kv[1])[:6]
        print(f"{kind:10} {tally.messages:4} msgs {tally.unchanged:6}/{tally.compared:<6} "
              f"{100 * tally.ratio:6.2f}% +{tally.added} {worst}")
    print(f"{'TOTAL':10} {total.messages:4} msgs {total.unchanged:6}/{total.compared:<6} {100 * total.ratio:6.2f}%")
    worst = sorted(total.losses.items(), key=lambda kv: -kv[1])[:40]
    print(worst)


if __name__ == "__main__":
    main()
