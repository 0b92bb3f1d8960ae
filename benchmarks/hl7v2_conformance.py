"""Field-by-field agreement of our HL7v2 decode with Microsoft's FHIR converter.

For each sample message ``input/X.hl7`` of Microsoft's FHIR-Converter (ADT A01/A04/A08, RDE O11),
our *records* (not a FHIR rendering of them) are compared with the FHIR resources their converter
is tested to produce (``expected/<TEMPLATE>/X-expected.json``). Ids are ignored; date-times are
compared as instants. Each disagreement category is explained in docs/hl7v2.md.

Run:  .venv/bin/python benchmarks/hl7v2_conformance.py
(tests/hl7v2/test_conformance.py asserts the same table, >= 90 % per field)

With Microsoft's whole sample set at hand (``../shared/corpus/fhir-converter``, or a folder given as
the first argument, with ``input/`` and ``expected/<TEMPLATE>/``), it also reports over all of it:
the share of samples that translate (HL7v2 decode and FHIR encode both succeed), our resource types'
coverage of theirs by count (per sample, each of their resources with one of ours of the same type),
and the per-field agreement of Patient, Encounter and MedicationRequest fields wherever both sides
produce the resource; and, on our FHIR rendering, Observation value/unit/interpretation (paired by
code and value type), AllergyIntolerance, Condition and Immunization codes, Immunization lot, Coverage
payor and subscriber id (in segment order) and ServiceRequest code/status/intent (paired by order
number, else code). The numbers are in docs/hl7v2.md ("Measured over all of Microsoft's samples").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge import DecodeError, EncodeError, Encounter, Prescription, localize_envelope, localize_records  # noqa: E402
from bridge.core.model.times import load_zone  # noqa: E402
from bridge.plugins.fhir.codec import FORMAT as FHIR  # noqa: E402
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2  # noqa: E402
from bridge.plugins.hl7v2.codec import decode  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus"
TEMPLATES = ("ADT_A01", "ADT_A04", "ADT_A08", "RDE_O11")


# --- reading the expected bundles ---------------------------------------------------------------


def load_bundle(path: Path) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any] | None], dict[str, Any] | None]]:
    """Resources of a Bundle, and a resolver of ``{"reference": ...}`` to the referenced resource."""
    bundle = json.loads(path.read_text(encoding="utf-8-sig"))
    resources, index = [], {}
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if not resource:
            continue
        resources.append(resource)
        rid = resource.get("id")
        index[f"{resource['resourceType']}/{rid}"] = resource
        if entry.get("fullUrl"):
            index[entry["fullUrl"]] = resource

    def resolve(ref: dict[str, Any] | None) -> dict[str, Any] | None:
        return index.get((ref or {}).get("reference", "")) if ref else None

    return resources, resolve


def instant(value: str | None) -> datetime | str | None:
    """An ISO 8601 date-time as a UTC instant (a date alone stays a string)."""
    if not value or "T" not in value:
        return value
    text = value.replace("Z", "+00:00")
    date, _, rest = text.partition("T")
    for sign in "+-":
        if sign in rest:
            time, _, offset = rest.rpartition(sign)
            offset = sign + offset
            break
    else:
        time, offset = rest, "+00:00"
    time = time if time.count(":") == 2 else time + ":00"
    if ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    return datetime.fromisoformat(f"{date}T{time}{offset}").astimezone(timezone.utc)


def type_code(identifier: dict[str, Any]) -> str | None:
    codings = (identifier.get("type") or {}).get("coding") or [{}]
    return codings[0].get("code")


# --- field comparisons ---------------------------------------------------------------------------


def patient_fields(patient: Any, expected: dict[str, Any]) -> dict[str, bool]:
    # Every identifier of ours must be among theirs (they add GT1/IN1/IN2/DB1 ids to the Patient):
    # same value, and the same type or the same system (PID-19: our type SS, theirs SB, both us-ssn).
    exp_ids = [(i.get("value"), type_code(i), i.get("system")) for i in expected.get("identifier", [])]
    ours = [(i.value, i.type, i.system) for i in patient.identifiers]
    ids_ok = bool(ours) and all(
        any(v == ev and (t is None or et is None or t == et or (s is not None and s == es)) for ev, et, es in exp_ids)
        for v, t, s in ours)
    exp_name = (expected.get("name") or [{}])[0]
    name = patient.name
    name_ok = name is not None and name.family == exp_name.get("family") and \
        name.given == exp_name.get("given", [])[: len(name.given)]
    exp_addr = (expected.get("address") or [None])[0]
    ours_addr = patient.addresses[0] if patient.addresses else None
    if exp_addr is None or ours_addr is None:
        addr_ok = exp_addr is None and ours_addr is None
    else:
        addr_ok = (ours_addr.city, ours_addr.state, ours_addr.postal_code, ours_addr.country) == (
            exp_addr.get("city"), exp_addr.get("state"), exp_addr.get("postalCode"), exp_addr.get("country"))
    return {
        "patient.identifiers": ids_ok,
        "patient.name": name_ok,
        "patient.birth_date": (patient.birth_date or "")[:10] == (expected.get("birthDate") or ""),
        "patient.gender": patient.gender == expected.get("gender"),
        "patient.address": addr_ok,
    }


def encounter_fields(encounter: Encounter, expected: dict[str, Any]) -> dict[str, bool]:
    period = encounter.period
    exp_period = expected.get("period") or {}
    visit = [i.value for i in encounter.identifiers if i.type == "VN"]
    exp_visit = [i.get("value") for i in expected.get("identifier", []) if type_code(i) == "VN"]
    return {
        "encounter.class": encounter.encounter_class == (expected.get("class") or {}).get("code"),
        "encounter.status": encounter.status == expected.get("status"),
        "encounter.period": (instant(period.start) if period else None, instant(period.end) if period else None)
        == (instant(exp_period.get("start")), instant(exp_period.get("end"))),
        "encounter.visit_number": visit == exp_visit[:1],
    }


def prescription_fields(rx: Prescription, expected: dict[str, Any], resolve: Callable) -> dict[str, bool]:
    medication = resolve(expected.get("medicationReference")) or {}
    exp_coding = ((medication.get("code") or {}).get("coding") or [{}])[0]
    ours_coding = rx.medication.codings[0] if rx.medication and rx.medication.codings else None
    exp_qty = (expected.get("dispenseRequest") or {}).get("quantity") or {}
    qty = rx.quantity
    return {
        "prescription.status": rx.status == expected.get("status"),
        "prescription.intent": rx.intent == expected.get("intent"),
        "prescription.medication": ours_coding is not None
        and (ours_coding.code, ours_coding.system) == (exp_coding.get("code"), exp_coding.get("system")),
        "prescription.quantity": qty is not None and (qty.value, qty.unit) == (exp_qty.get("value"), exp_qty.get("unit")),
        "prescription.refills": rx.refills == (expected.get("dispenseRequest") or {}).get("numberOfRepeatsAllowed"),
        "prescription.authored": instant(rx.written_date) == instant(expected.get("authoredOn")),
    }


# --- the newer records, compared on our FHIR rendering ---------------------------------------------
#
# Observation, AllergyIntolerance, Condition, Coverage, Immunization and ServiceRequest have no
# counterpart among the records the fields above were first written for; their FHIR resources are
# compared with Microsoft's directly. Codes are compared without their system (for a local coding
# system Microsoft invents an http://example.com URL, we write our own namespace: docs/fhir.md).


def first_code(concept: dict[str, Any] | None) -> str | None:
    codings = (concept or {}).get("coding") or [{}]
    return codings[0].get("code")


def observation_value(resource: dict[str, Any]) -> Any:
    """The value[x] of an Observation, normalised: a number, the codes of a concept, else the raw."""
    quantity = resource.get("valueQuantity")
    if quantity is not None:
        return ("quantity", float(quantity["value"]) if "value" in quantity else None, quantity.get("comparator"))
    concept = resource.get("valueCodeableConcept")
    if concept is not None:
        return ("coded", [c.get("code") for c in concept.get("coding", [])][:1] or concept.get("text"))
    when = resource.get("valueDateTime")
    if when is not None:
        return ("datetime", instant(when))
    return {k: v for k, v in resource.items() if k.startswith("value")}


def observation_unit(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    quantity = resource.get("valueQuantity") or {}
    return quantity.get("code"), quantity.get("unit")


def interpretation(resource: dict[str, Any]) -> list[str | None]:
    return [c.get("code") for i in resource.get("interpretation", []) for c in i.get("coding", [])]


def payor(resource: dict[str, Any], resolve: Callable) -> set[str]:
    """What names a Coverage's payer: the Organization's name and identifier values, or the
    display and identifier of a logical reference."""
    out: set[str] = set()
    for ref in resource.get("payor", []):
        org = resolve(ref) or {}
        for value in (ref.get("display"), (ref.get("identifier") or {}).get("value"), org.get("name"),
                      *(i.get("value") for i in org.get("identifier", []))):
            if value:
                out.add(value.strip())
    return out


def pair_in_order(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """The i-th of ours with the i-th of theirs (both follow the segments' order: AL1, DG1, IN1, RXA)."""
    return list(zip(ours, theirs))


def pair_by(ours: list[dict[str, Any]], theirs: list[dict[str, Any]],
            key: Callable[[dict[str, Any]], set[str]],
            kind: Callable[[dict[str, Any]], Any] = lambda resource: None) -> list[tuple[dict, dict]]:
    """Each of ours with the first unused of theirs sharing a key (a code, an order number), one of
    the same ``kind`` first (an OBX's value type: several OBX of an order may share one code)."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for same_kind in (True, False):
        for n, mine in enumerate(ours):
            if any(n == m for m, _ in pairs):
                continue
            index = next((i for i, other in enumerate(theirs) if i not in used and key(mine) & key(other)
                          and (not same_kind or kind(other) == kind(mine))), None)
            if index is not None:
                pairs.append((n, index))
                used.add(index)
    return [(ours[m], theirs[t]) for m, t in sorted(pairs)]


def value_kind(resource: dict[str, Any]) -> tuple[str, ...]:
    """Which value[x] an Observation has (none for an OBX whose value neither side maps)."""
    return tuple(sorted(k for k in resource if k.startswith("value")))


def order_numbers(resource: dict[str, Any]) -> set[str]:
    return {i["value"] for i in resource.get("identifier", []) if i.get("value")}


def pair_orders(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """ServiceRequests by a shared order number; the rest (orders with only an ORC-4 group number,
    which Microsoft makes an identifier and we do not) by their code, in order."""
    pairs = pair_by(ours, theirs, order_numbers)
    left_mine = [r for r in ours if not any(r is a for a, _ in pairs)]
    left_theirs = [r for r in theirs if not any(r is b for _, b in pairs)]
    return pairs + pair_by(left_mine, left_theirs, observation_codes)


def observation_codes(resource: dict[str, Any]) -> set[str]:
    """The OBX-3 identifier (the first coding): an alternate code is shared by unrelated OBX."""
    code = first_code(resource.get("code"))
    return {code} if code else set()


def resource_fields(rtype: str, mine: dict[str, Any], other: dict[str, Any], resolve_mine: Callable,
                    resolve_other: Callable) -> dict[str, bool]:
    """Field agreement of one pair of resources of the newer record types."""
    if rtype == "Observation":
        return {"observation.value": observation_value(mine) == observation_value(other),
                "observation.unit": observation_unit(mine) == observation_unit(other),
                "observation.interpretation": interpretation(mine) == interpretation(other)}
    if rtype == "AllergyIntolerance":
        return {"allergy.code": first_code(mine.get("code")) == first_code(other.get("code"))}
    if rtype == "Condition":
        return {"condition.code": first_code(mine.get("code")) == first_code(other.get("code"))}
    if rtype == "Coverage":
        return {"coverage.payor": bool(payor(mine, resolve_mine) & payor(other, resolve_other))
                or payor(mine, resolve_mine) == payor(other, resolve_other),
                "coverage.subscriber_id": (mine.get("subscriberId") or "").strip()
                == (other.get("subscriberId") or "").strip()}
    if rtype == "Immunization":
        return {"immunization.vaccine": first_code(mine.get("vaccineCode")) == first_code(other.get("vaccineCode")),
                "immunization.lot": mine.get("lotNumber") == other.get("lotNumber")}
    return {"service_request.code": first_code(mine.get("code")) == first_code(other.get("code")),
            "service_request.status": mine.get("status") == other.get("status"),
            "service_request.intent": mine.get("intent") == other.get("intent")}


NEWER = ("Observation", "AllergyIntolerance", "Condition", "Coverage", "Immunization", "ServiceRequest")


def named_only(entry: dict[str, Any]) -> bool:
    """A parent order we write because a child names it (ORC-8/OBR-29), by its numbers alone: created
    only if absent, with no code and status ``unknown``. It states no field of its own to compare
    (Microsoft gives such a parent the status ``active``)."""
    resource = entry["resource"]
    return (resource["resourceType"] == "ServiceRequest" and "code" not in resource
            and resource.get("status") == "unknown" and "ifNoneExist" in entry.get("request", {}))


def newer_rows(name: str, bundle: dict[str, Any], theirs: list[dict[str, Any]],
               resolve_other: Callable) -> list[tuple[str, str, bool]]:
    """(sample, field, agrees) for the newer record types: Observations paired by code, ServiceRequests
    by an order number they share (not the parents named by number alone), the others in segment order."""
    mine_all = [e["resource"] for e in bundle.get("entry", []) if not named_only(e)]
    index = {e.get("fullUrl"): e["resource"] for e in bundle.get("entry", []) if e.get("fullUrl")}
    index.update({f"{r['resourceType']}/{r.get('id')}": r for r in mine_all})

    def resolve_mine(ref: dict[str, Any] | None) -> dict[str, Any] | None:
        return index.get((ref or {}).get("reference", "")) if ref else None

    rows: list[tuple[str, str, bool]] = []
    for rtype in NEWER:
        mine = [r for r in mine_all if r["resourceType"] == rtype]
        other = [r for r in theirs if r["resourceType"] == rtype]
        if rtype == "Observation":
            pairs = pair_by(mine, other, observation_codes, value_kind)
        elif rtype == "ServiceRequest":
            pairs = pair_orders(mine, other)
        else:  # a Condition of theirs with no code (made of DG1-20's identifier alone) has none to compare
            pairs = pair_in_order(mine, [r for r in other if rtype != "Condition" or r.get("code")])
        for a, b in pairs:
            rows += [(name, f, ok) for f, ok in resource_fields(rtype, a, b, resolve_mine, resolve_other).items()]
    return rows


# --- the table -----------------------------------------------------------------------------------


def compare_sample(template: str, expected_path: Path, corpus: Path = CORPUS) -> list[tuple[str, str, bool]]:
    """(sample, field, agrees) rows for one sample message."""
    name = expected_path.name.replace("-expected.json", "")
    records = decode((corpus / "fhir-converter-input" / f"{name}.hl7").read_bytes(), {})
    resources, resolve = load_bundle(expected_path)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    rows: list[tuple[str, str, bool]] = []
    patient = records[0].patient
    for field, ok in patient_fields(patient, by_type["Patient"][0]).items():
        rows.append((name, field, ok))
    if template.startswith("ADT"):
        for field, ok in encounter_fields(records[0], by_type["Encounter"][0]).items():
            rows.append((name, field, ok))
        return rows
    fillers = [r for r in by_type.get("MedicationRequest", []) if r.get("intent") == "filler-order"]
    for rx in (r for r in records if isinstance(r, Prescription)):  # not the companions after them
        placer = next((i.value for i in rx.identifiers if i.type == "PLAC"), None)
        match = next((r for r in fillers if any(i.get("value") == placer for i in r.get("identifier", []))), None)
        if match is None:
            rows.append((name, "prescription.matched", False))
            continue
        for field, ok in prescription_fields(rx, match, resolve).items():
            rows.append((f"{name}/{placer}", field, ok))
    return rows


def all_rows(corpus: Path = CORPUS) -> list[tuple[str, str, bool]]:
    rows = []
    for template in TEMPLATES:
        for path in sorted((corpus / "fhir-converter-expected" / template).glob("*-expected.json")):
            rows += compare_sample(template, path, corpus)
    return rows


def table(rows: list[tuple[str, str, bool]]) -> dict[str, tuple[int, int]]:
    """field → (agreeing samples, samples)."""
    out: dict[str, tuple[int, int]] = {}
    for _, field, ok in rows:
        agree, total = out.get(field, (0, 0))
        out[field] = (agree + ok, total + 1)
    return out


# --- all of Microsoft's samples ------------------------------------------------------------------

SHARED = ROOT.parent / "shared" / "corpus" / "fhir-converter"
ZONE = "America/Chicago"
"""The channel zone the samples are read in (they carry no offsets; the engine localizes by channel)."""


def translate(raw: bytes) -> tuple[list[Any] | None, dict[str, Any] | None, str | None]:
    """(records, our Bundle, why not): HL7v2 decode, localize in the channel zone, FHIR encode with
    the message's envelope (MessageHeader, Provenance…), as the engine does for a FHIR destination."""
    try:
        records = decode(raw, {})
    except DecodeError as exc:
        return None, None, f"decode: {exc}"
    localize_records(records, ZONE)
    envelope = HL7V2.envelope(raw) if HL7V2.envelope else None
    options = {"source_envelope": localize_envelope(envelope, load_zone(ZONE))} if envelope else {}
    try:
        return records, json.loads(FHIR.encode(records, options)), None
    except EncodeError as exc:
        return records, None, f"encode: {exc}"


def first_of(records: list[Any], kind: type) -> Any:
    """The first record of ``kind`` among the records or their patient/encounter references."""
    for record in records:
        for candidate in (record, getattr(record, "encounter", None), getattr(record, "patient", None)):
            if isinstance(candidate, kind):
                return candidate
    return None


def place_names(resource: dict[str, Any] | None, resolve: Callable[[dict[str, Any] | None], Any]) -> set[str]:
    """Names of a Location and of every Location it is ``partOf``."""
    names: set[str] = set()
    for _ in range(32):
        if resource is None:
            break
        names.add(str(resource.get("name")))
        resource = resolve(resource.get("partOf"))
    return names


def encounter_places(theirs: dict[str, Any], resolve: Callable[[dict[str, Any] | None], Any],
                     bundle: dict[str, Any] | None) -> tuple[int, int]:
    """(their first Encounter's places whose chain of names is all in our first Encounter's places, their
    places): Microsoft points at the point of care and we at the bed, so chains are compared as names."""
    urls = {e["fullUrl"]: e["resource"] for e in (bundle or {}).get("entry", [])}
    ours = next((r for r in urls.values() if r["resourceType"] == "Encounter"), None)
    if ours is None:
        return 0, 0
    def ours_of(ref: dict[str, Any] | None) -> dict[str, Any] | None:
        return urls.get((ref or {}).get("reference", ""))

    our_names: set[str] = set()
    for part in ours.get("location", []):
        our_names |= place_names(ours_of(part["location"]), ours_of)
    chains = [place_names(resolve(part.get("location")), resolve) for part in theirs.get("location", [])]
    return sum(1 for chain in chains if chain and chain <= our_names), len(chains)


def wide_sample(name: str, expected_path: Path, inputs: Path) -> dict[str, Any]:
    """One sample over the whole set: translated?, their/our type counts, field rows."""
    from bridge import Patient

    records, bundle, why = translate((inputs / f"{name}.hl7").read_bytes())
    theirs, resolve = load_bundle(expected_path)
    their_types: dict[str, int] = {}
    for resource in theirs:
        their_types[resource["resourceType"]] = their_types.get(resource["resourceType"], 0) + 1
    our_types: dict[str, int] = {}
    for entry in (bundle or {}).get("entry", []):
        rtype = entry["resource"]["resourceType"]
        our_types[rtype] = our_types.get(rtype, 0) + 1
    rows: list[tuple[str, str, bool]] = []
    by_type = {t: [r for r in theirs if r["resourceType"] == t] for t in their_types}
    if bundle is not None:
        patient = first_of(records or [], Patient)
        if patient is not None and by_type.get("Patient"):
            rows += [(name, f, ok) for f, ok in patient_fields(patient, by_type["Patient"][0]).items()]
        encounter = first_of(records or [], Encounter)
        if encounter is not None and by_type.get("Encounter"):
            rows += [(name, f, ok) for f, ok in encounter_fields(encounter, by_type["Encounter"][0]).items()]
        fillers = [r for r in by_type.get("MedicationRequest", []) if r.get("intent") == "filler-order"]
        for rx in (r for r in records or [] if isinstance(r, Prescription)):
            placer = next((i.value for i in rx.identifiers if i.type == "PLAC"), None)
            match = next((r for r in fillers if any(i.get("value") == placer for i in r.get("identifier", []))),
                         None)
            if match is not None:  # each of theirs pairs once, in order (RDS-O13-02 repeats a number)
                fillers.remove(match)
                rows += [(f"{name}/{placer}", f, ok) for f, ok in prescription_fields(rx, match, resolve).items()]
        rows += newer_rows(name, bundle, theirs, resolve)
    places = encounter_places(by_type["Encounter"][0], resolve, bundle) if by_type.get("Encounter") else (0, 0)
    return {"name": name, "translated": bundle is not None, "why": why, "theirs": their_types,
            "ours": our_types, "rows": rows, "places": places}


def wide(inputs: Path = SHARED / "input", expected: Path = SHARED / "expected") -> list[dict[str, Any]]:
    """Every sample with an expected bundle (``expected/<TEMPLATE>/X-expected.json`` ↔ ``input/X.hl7``)."""
    return [wide_sample(path.name.replace("-expected.json", ""), path, inputs)
            for path in sorted(expected.glob("*/*-expected.json"))]


def shortfall_by_message(samples: list[dict[str, Any]], rtype: str) -> str:
    """Where their resources of ``rtype`` without one of ours are, by the sample name's prefix (its
    message type, ADT, ORU…, except LAB, LRI, IZ and MDHHS samples)."""
    out: dict[str, int] = {}
    for sample in samples:
        missing = sample["theirs"].get(rtype, 0) - sample["ours"].get(rtype, 0)
        if missing > 0:
            kind = sample["name"].replace("_", "-").split("-")[0][:3].upper()
            out[kind] = out.get(kind, 0) + missing
    return ", ".join(f"{kind} {n}" for kind, n in sorted(out.items(), key=lambda item: -item[1]))


def wide_report(samples: list[dict[str, Any]]) -> None:
    translated = sum(s["translated"] for s in samples)
    print(f"\nMicrosoft's samples: {translated} of {len(samples)} translate "
          f"({100 * translated / len(samples):.1f} %)")
    reasons: dict[str, int] = {}
    for sample in samples:
        if sample["why"]:
            key = sample["why"].split(";")[0][:90]
            reasons[key] = reasons.get(key, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"  {count:>3}  {reason}")
    total = matched = 0
    per_type: dict[str, list[int]] = {}
    for sample in samples:
        for rtype, count in sample["theirs"].items():
            ours = min(count, sample["ours"].get(rtype, 0))
            total += count
            matched += ours
            per_type.setdefault(rtype, [0, 0])
            per_type[rtype][0] += ours
            per_type[rtype][1] += count
    ours_types = {t for s in samples for t in s["ours"]}
    print(f"their resources with one of ours of the same type: {matched} of {total} "
          f"({100 * matched / total:.3f} %); their types {len(per_type)}, "
          f"of which we emit {len(set(per_type) & ours_types)}")
    for rtype, (have, count) in sorted(per_type.items(), key=lambda item: -item[1][1]):
        print(f"  {rtype:28} {have:>5} / {count:>5}")
    print("their resources without one of ours, by type and message type (see docs/hl7v2.md for why):")
    for rtype, (have, count) in sorted(per_type.items(), key=lambda item: item[1][0] - item[1][1]):
        if have < count:
            print(f"  {rtype:28} {count - have:>5}  {shortfall_by_message(samples, rtype)}")
    found, places = sum(s["places"][0] for s in samples), sum(s["places"][1] for s in samples)
    if places:
        print(f"their Encounter.location places (names up the partOf chain) among ours: {found} of {places} "
              f"({100 * found / places:.1f} %)")
    rows = [row for sample in samples for row in sample["rows"]]
    print(f"\n{'field (all samples)':28} {'agree':>5} / {'of':>3}   {'%':>6}")
    for field, (agree, count) in table(rows).items():
        print(f"{field:28} {agree:>5} / {count:>3}   {100 * agree / count:6.1f}")
    misses = [(sample, field) for sample, field, ok in rows if not ok]
    for sample, field in misses:
        print(f"  {sample}: {field}")


def main() -> None:
    rows = all_rows()
    print(f"{'field':28} {'agree':>5} / {'of':>3}   {'%':>6}")
    for field, (agree, total) in table(rows).items():
        print(f"{field:28} {agree:>5} / {total:>3}   {100 * agree / total:6.1f}")
    misses = [(sample, field) for sample, field, ok in rows if not ok]
    if misses:
        print("\ndisagreements:")
        for sample, field in misses:
            print(f"  {sample}: {field}")
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED
    if (corpus / "expected").is_dir():
        wide_report(wide(corpus / "input", corpus / "expected"))
    else:
        print(f"\n(no {corpus}/expected: Microsoft's whole sample set was not measured)")


if __name__ == "__main__":
    main()
