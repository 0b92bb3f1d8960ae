"""``bridge policy explain``: how the gate judges one prescription, and why.

For compliance staff and analysts answering "why was this held?" or "what happens to this after the
window closes?" (``--at 2027-01-01``). Input is a prescription with its context in the ``bridge``
JSON format (one record, or an envelope with ``records``) or a FHIR R4 Bundle / MedicationRequest,
from a file or standard input; ``--from FORMAT`` reads any registered format. FHIR and other formats
are decoded with the format the CLI hands to commands (``args.formats``): this module imports no
other plugin. ``-c FILE`` judges with that config's ``policy:`` section, as the engine would.
Exit 0 whatever the outcome; 2 for bad input, config or rule data.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import date
from typing import Any

import yaml

from bridge import ConfigError, DecodeError, FormatSpec, Prescription, Record, record_from_dict

from .evaluate import Trail, decide, evaluate_prescription
from .ruleset import PATHWAYS, RuleSet
from .settings import ruleset_for, validate_settings

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
    explain.add_argument("-c", "--config", metavar="FILE",
                         help="use the policy: section of this bridge config (the options above override it)")
    explain.add_argument("--facility-state", metavar="ST",
                         help="the channel's facility_state: where a patient seen in person is")
    explain.add_argument("--from", dest="from_format", metavar="FORMAT",
                         help="input format (default: bridge JSON, or FHIR when the JSON has a resourceType)")
    explain.add_argument("file", nargs="?", default="-", help="input file, or - for standard input")


def run(args: argparse.Namespace) -> int:
    try:
        at = _parse_at(args.at)
        facility = _facility_state(args.facility_state)
        ruleset = ruleset_for(_settings(args))
        prescriptions = read_prescriptions(_read_input(args.file), getattr(args, "formats", None) or {},
                                           args.from_format)
    except (DecodeError, ConfigError, OSError) as exc:
        print(f"bridge policy explain: {_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    trails = [evaluate_prescription(rx, ruleset, at, facility_state=facility) for rx in prescriptions]
    decision = decide(prescriptions, ruleset, at, facility_state=facility)
    if args.json:
        print(json.dumps(_as_json(decision, trails, at), indent=2))
    else:
        print(render_table(decision, trails, ruleset, at))
    return EXIT_OK


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``policy:`` section of ``-c FILE`` (relative paths against its folder), then the flags."""
    settings: dict[str, Any] = dict(_config_section(args.config)) if args.config else {}
    if args.rules:
        settings["rules_dir"] = os.path.abspath(args.rules)
    if args.schedule_overrides:
        settings["schedule_overrides"] = os.path.abspath(args.schedule_overrides)
    if args.pathway:
        settings["pathways"] = {**(settings.get("pathways") or {}), **{name: True for name in args.pathway}}
    return settings


def _config_section(path: str) -> Mapping[str, Any]:
    """The config file's ``policy:`` section, validated as ``bridge check`` does; {} when it has none."""
    with open(path, encoding="utf-8") as fh:
        try:
            doc = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError([(path, f"invalid YAML: {getattr(exc, 'problem', exc)}")]) from None
    section = doc.get("policy") if isinstance(doc, Mapping) else None
    if section is None:
        return {}
    if isinstance(section, Mapping):
        section = {**section, "config_dir": os.path.dirname(os.path.abspath(path))}
    problems = validate_settings(section)
    if problems:
        raise ConfigError([(f"{path}: policy.{key}" if key else f"{path}: policy", message)
                           for key, message in problems])
    return section


def _facility_state(text: str | None) -> str | None:
    if text is None:
        return None
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise DecodeError(f"--facility-state expects a two-letter state code such as IA, got {text!r}")
    return text


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


def read_prescriptions(raw: bytes, formats: Mapping[str, FormatSpec] | None = None,
                       from_format: str | None = None) -> list[Prescription]:
    """The Prescriptions of a ``bridge`` JSON document, a FHIR resource or Bundle, or a message in
    ``from_format``; DecodeError saying what and where otherwise."""
    formats = formats or {}
    if from_format:
        return _decoded(raw, formats, from_format)
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"input is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(doc, dict) and doc.get("resourceType"):
        return _decoded(raw, formats, "fhir")
    records = _records(doc)
    return [r for r in records if isinstance(r, Prescription)]


def _decoded(raw: bytes, formats: Mapping[str, FormatSpec], name: str) -> list[Prescription]:
    spec = formats.get(name)
    if spec is None:
        known = ", ".join(sorted(formats)) or "none registered"
        raise DecodeError(f"cannot read format {name!r} here (known: {known}); translate it first: "
                          f"bridge translate --from {name} --to bridge FILE | bridge policy explain -")
    return [r for r in spec.decode(raw, {}) if isinstance(r, Prescription)]


def _records(doc: Any) -> list[Record]:
    if not isinstance(doc, dict):
        raise DecodeError("expected a JSON object: a bridge envelope or a single record")
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
