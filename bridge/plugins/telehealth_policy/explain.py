"""``bridge policy explain``: how the gate judges one prescription, and why.

For compliance staff and analysts answering "why was this held?" or "what happens to this after the
window closes?" (``--at 2027-01-01``). Input is a prescription with its context in the ``bridge``
JSON format (one record, or an envelope with ``records``), from a file or standard input. FHIR input
is translated first: ``bridge translate --from fhir --to bridge rx.json | bridge policy explain -``
(the command reads records with the public ``bridge.record_from_dict`` and imports no core module,
so it cannot look formats up itself). Exit 0 whatever the outcome; 2 for bad input or rule data.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from typing import Any

from bridge import ConfigError, DecodeError, Prescription, Record, record_from_dict

from .evaluate import Trail, decide, evaluate_prescription
from .ruleset import PATHWAYS, RuleSet
from .settings import ruleset_for

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    explain = sub.add_parser("explain", help="judge a prescription and show every rule evaluated",
                             description="Judge a prescription (bridge JSON) and show every rule evaluated.")
    explain.add_argument("--at", metavar="DATE", help="judge as if written on DATE (YYYY-MM-DD)")
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")
    explain.add_argument("--rules", metavar="DIR", help="rule folder (default: the shipped config/policy)")
    explain.add_argument("--pathway", action="append", default=[], choices=PATHWAYS,
                         help="switch a pathway on for this run (repeatable)")
    explain.add_argument("--schedule-overrides", metavar="FILE", help="site schedule override file")
    explain.add_argument("file", nargs="?", default="-", help="input file, or - for standard input")


def run(args: argparse.Namespace) -> int:
    try:
        at = _parse_at(args.at)
        ruleset = ruleset_for({"rules_dir": args.rules, "schedule_overrides": args.schedule_overrides,
                               "pathways": {name: True for name in args.pathway}})
        prescriptions = read_prescriptions(_read_input(args.file))
    except (DecodeError, ConfigError, OSError) as exc:
        print(f"bridge policy explain: {_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    trails = [evaluate_prescription(rx, ruleset, at) for rx in prescriptions]
    decision = decide(prescriptions, ruleset, at)
    if args.json:
        print(json.dumps(_as_json(decision, trails, at), indent=2))
    else:
        print(render_table(decision, trails, ruleset, at))
    return EXIT_OK


def _message(exc: Exception) -> str:
    if isinstance(exc, ConfigError):
        return "rule data: " + "; ".join(f"{p}: {m}" if p else m for p, m in exc.problems)
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename}: {exc.strerror or exc}"
    return str(exc)


def _parse_at(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise DecodeError(f"--at expects a date like 2027-01-01, got {text!r}") from None


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as fh:
        return fh.read()


def read_prescriptions(raw: bytes) -> list[Prescription]:
    """The Prescriptions of a ``bridge`` JSON document; DecodeError saying what and where otherwise."""
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"input is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    records = _records(doc)
    return [r for r in records if isinstance(r, Prescription)]


def _records(doc: Any) -> list[Record]:
    if not isinstance(doc, dict):
        raise DecodeError("expected a JSON object: a bridge envelope or a single record")
    if doc.get("resourceType"):
        raise DecodeError(f"this is FHIR ({doc['resourceType']}); translate it first: "
                          "bridge translate --from fhir --to bridge FILE | bridge policy explain -")
    schema = doc.get("schema")
    if schema is not None and schema != "telemed-bridge/1":
        raise DecodeError(f"unsupported schema {schema!r} (expected 'telemed-bridge/1')", "schema")
    if "records" in doc:
        items = doc["records"]
        if not isinstance(items, list) or not items:
            raise DecodeError("expected a non-empty list of records", "records")
        return [record_from_dict(item, f"records[{i}]") for i, item in enumerate(items)]
    if "kind" in doc:
        return [record_from_dict({k: v for k, v in doc.items() if k not in ("schema", "message_id", "trace_id")},
                                 "record")]
    raise DecodeError("expected 'records' (a list) or a single record with 'kind'")


def _as_json(decision, trails: list[Trail], at: date | None) -> dict[str, Any]:
    return {
        "outcome": decision.outcome,
        "rules": [{"id": r.id, "outcome": r.outcome, "reason": r.reason, "basis": r.basis} for r in decision.rules],
        "ruleset": decision.ruleset,
        "judged_on": [str(t.judged_on) if t.judged_on else None for t in trails],
        "at_override": str(at) if at else None,
        "evaluated": [[{"id": c.id, "status": c.status, "outcome": c.outcome, "reason": c.reason, "basis": c.basis}
                       for c in t.checks] for t in trails],
    }


def render_table(decision, trails: list[Trail], ruleset: RuleSet, at: date | None) -> str:
    lines = [f"Decision:  {decision.outcome}", f"Rule-set:  {ruleset.label}", f"Rules from: {ruleset.source_dir}"]
    on = [p.name for p in ruleset.pathways.values() if p.enabled]
    lines.append(f"Pathways on: {', '.join(on) or 'none'}")
    if not trails:
        lines.append("No Prescription in the input: ALLOW with no rules.")
    for n, trail in enumerate(trails, 1):
        how = "--at override" if at else "written date"
        lines += ["", f"Prescription {n} of {len(trails)} — judged on {trail.judged_on or 'unknown'} ({how})",
                  f"{'RULE':<5} {'STATUS':<13} {'OUTCOME':<8} REASON"]
        for c in trail.checks:
            lines.append(f"{c.id:<5} {c.status:<13} {c.outcome or '-':<8} {c.reason}")
            if c.basis and c.status == "fired":
                lines.append(f"{'':<28} basis: {c.basis}")
    return "\n".join(lines)
