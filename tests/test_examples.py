"""The published face of the ``bridge`` format: examples, docs/records.md and the JSON Schema.

Platforms copy the examples and read the docs before they send their first message, so these tests
hold all three to the code: every example decodes and comes back unchanged, every record and value
field is documented with its real type and choices, the JSON Schema matches the dataclasses, and
the error messages the docs promise are the ones the decoder gives.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import jsonschema
import pytest

from bridge import DecodeError, FormatSpec
from bridge.core.model import RECORD_TYPES, Record
from bridge.core.model import records as model
from bridge.core.model.codec import ISO_DATETIME
from bridge.testing import assert_format_round_trip, plugin_manager

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "messages"
DOCS = ROOT / "docs" / "records.md"
SCHEMA_FILE = ROOT / "docs" / "telemed-bridge-1.schema.json"
SCHEMA = "telemed-bridge/1"

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
VALUE_TYPES: tuple[type, ...] = (
    model.Identifier,
    model.Coding,
    model.HumanName,
    model.Address,
    model.ContactPoint,
    model.Period,
    model.Quantity,
    model.Range,
    model.Ratio,
    model.ReferenceRange,
    model.DEARegistration,
    model.StateLicense,
    model.PatientLocation,
    model.SignatureEvidence,
    model.PatientLink,
    model.EncounterLocation,
    model.Participant,
    model.ProcedurePerformer,
)
DOCUMENTED_TYPES: tuple[type, ...] = (*RECORD_TYPES.values(), *VALUE_TYPES)


@pytest.fixture(scope="module")
def spec() -> FormatSpec:
    return plugin_manager().format("bridge")


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _raw(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


def _decode_error(spec: FormatSpec, raw: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        spec.decode(raw, {})
    return caught.value


def _walk(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair in a JSON tree, lists' items under their list's key."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield child_key, child
            yield from _walk(child, child_key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _objects(child)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item)


# --- examples decode, round-trip and cover every kind ------------------------------------------


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= len(RECORD_TYPES)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_decodes_to_the_records_it_lists(spec: FormatSpec, path: Path) -> None:
    doc = _load(path)
    records = spec.decode(path.read_bytes(), {})
    assert [r.kind for r in records] == [item["kind"] for item in doc["records"]]
    assert all(isinstance(r, Record) for r in records)
    # A realistic example uses only documented fields: no key lands among the unknown ones.
    for record in records:
        for obj in _record_tree(record):
            assert "json" not in obj.extra, f"{path.name}: unknown field(s) {sorted(obj.extra['json'])}"


def _record_tree(record: Record) -> Iterator[Record]:
    yield record
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, Record):
            yield from _record_tree(value)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_round_trips_and_is_in_the_engines_own_form(spec: FormatSpec, path: Path) -> None:
    doc = _load(path)
    options = {"message_control_id": doc.get("message_id"), "trace_id": doc.get("trace_id")}
    records = spec.decode(path.read_bytes(), {})
    assert_format_round_trip(spec, records, options)
    # What the engine writes back is the file itself (20 and 20.0 compare equal): nothing dropped,
    # renamed or added, so the examples also show what a destination receives.
    assert json.loads(spec.encode(records, options)) == doc


def test_every_record_kind_has_an_example_named_after_it(spec: FormatSpec) -> None:
    by_kind: dict[str, str] = {}
    for path in EXAMPLE_FILES:
        kinds = [r.kind for r in spec.decode(path.read_bytes(), {})]
        assert len(kinds) == 1, f"{path.name}: one record per example file"
        by_kind[kinds[0]] = path.name
    assert set(by_kind) == set(RECORD_TYPES)
    for kind, name in by_kind.items():
        assert name == re.sub(r"(?<!^)(?=[A-Z])", "-", kind).lower() + ".json"


def test_example_message_ids_are_present_and_unique() -> None:
    ids = [_load(path).get("message_id") for path in EXAMPLE_FILES]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLE_FILES:
        assert f"]({path.name})" in readme, f"README.md does not link {path.name}"


# --- the data in the examples is fictional and well-formed --------------------------------------


def npi_is_valid(npi: str) -> bool:
    """Luhn over the 80840 card-issuer prefix plus the NPI, as CMS defines the check digit."""
    if not re.fullmatch(r"\d{10}", npi):
        return False
    total = 0
    for position, char in enumerate(reversed("80840" + npi)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def dea_is_valid(number: str) -> bool:
    """Two letters, six digits and a check digit: (d1+d3+d5) + 2*(d2+d4+d6), last digit."""
    match = re.fullmatch(r"[A-Z][A-Z9](\d{7})", number)
    if not match:
        return False
    d = [int(c) for c in match.group(1)]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


def test_check_digit_helpers_reject_a_wrong_digit() -> None:
    assert npi_is_valid("1234567893") and not npi_is_valid("1234567890")
    assert dea_is_valid("BE1234563") and not dea_is_valid("BE1234564")


def _identifier_values(doc: dict[str, Any], wanted: str) -> list[str]:
    return [obj["value"] for obj in _objects(doc) if obj.get("type") == wanted and "value" in obj]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_ids_have_valid_check_digits(path: Path) -> None:
    doc = _load(path)
    npis = [v for k, v in _walk(doc) if k == "npi"] + _identifier_values(doc, "NPI")
    deas = [obj["number"] for obj in _objects(doc) if "schedules" in obj] + _identifier_values(doc, "DEA")
    assert all(npi_is_valid(n) for n in npis), npis
    assert all(dea_is_valid(n) for n in deas), deas
    for practitioner in (o for o in _objects(doc) if "dea_registrations" in o):
        initial = practitioner["name"]["family"][0]
        assert all(r["number"][1] == initial for r in practitioner["dea_registrations"])


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_people_and_numbers_are_obviously_fictional(path: Path) -> None:
    doc = _load(path)
    for contact in (o for o in _objects(doc) if o.get("system") in ("phone", "fax")):
        assert re.fullmatch(r"\+1-555-01\d\d", contact["value"]), contact["value"]
    for contact in (o for o in _objects(doc) if o.get("system") == "email"):
        assert contact["value"].endswith("@example.org")
    families = [v["family"] for k, v in _walk(doc) if k == "name" and isinstance(v, dict)]
    assert all(f in ("Testpatient", "Example") for f in families), families


def test_prescription_example_is_a_complete_controlled_telehealth_prescription(spec: FormatSpec) -> None:
    (rx,) = spec.decode((EXAMPLES / "prescription.json").read_bytes(), {})
    assert isinstance(rx, model.Prescription)
    assert rx.medication.dea_schedule in ("CII", "CIII", "CIV", "CV")
    assert rx.medication.rxnorm and rx.medication.ndc
    assert rx.quantity and rx.days_supply and rx.refills is not None and rx.sig and rx.written_date
    assert rx.pharmacy.ncpdp_id and re.fullmatch(r"\d{7}", rx.pharmacy.ncpdp_id) and rx.pharmacy.epcs_capable
    assert rx.encounter.modality == "video" and rx.encounter.patient_location.state
    patient_state = rx.encounter.patient_location.state
    registration = [r for r in rx.prescriber.dea_registrations if r.state == patient_state]
    assert registration and rx.medication.dea_schedule in registration[0].schedules
    assert patient_state in [lic.state for lic in rx.prescriber.licenses]
    assert rx.signature and rx.signature.value and rx.signature.signed_at
    assert rx.pdmp_checks and patient_state in rx.pdmp_checks[0]["states"]


# --- docs/records.md names every field, with its type and choices -------------------------------


def _doc_tables() -> dict[str, list[tuple[str, str, str]]]:
    """Field rows ``| `name` | type | meaning |`` under each ``### Type`` heading."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    section: str | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = None
        elif line.startswith("### "):
            section = line[4:].strip()
            tables[section] = []
        elif section and (row := re.fullmatch(r"\| `(\w+)` \| (.+?) \| (.+) \|", line)):
            tables[section].append(row.groups())
    return tables


def _doc_type(hint: Any, meta: Any) -> str:
    """How docs/records.md writes a field's type."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _doc_type(inner, meta)
    if origin is list:
        (item,) = typing.get_args(hint)
        return "list of " + _doc_type(item, {})
    if origin is dict:
        return "object"
    if dataclasses.is_dataclass(hint):
        return f"[{hint.__name__}](#{hint.__name__.lower()})"
    if meta.get("choices"):
        return "choice"
    if meta.get("format") == "datetime":
        return "date/time"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[hint]


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@pytest.mark.parametrize("cls", DOCUMENTED_TYPES, ids=lambda c: c.__name__)
def test_docs_describe_every_field_with_its_type_and_choices(cls: type) -> None:
    table = _doc_tables().get(cls.__name__)
    assert table, f"docs/records.md has no '### {cls.__name__}' section with a field table"
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    assert [row[0] for row in table] == [f.name for f in fields], "fields missing, extra or out of order"
    for (name, doc_type, meaning), f in zip(table, fields):
        expected = _doc_type(hints[f.name], f.metadata) + (", **required**" if _is_required(f) else "")
        assert doc_type == expected, f"{cls.__name__}.{name}: documented as {doc_type!r}, is {expected!r}"
        assert meaning.strip(" .|"), f"{cls.__name__}.{name}: say what the field means"
        for choice in f.metadata.get("choices", ()):
            assert f"`{choice}`" in meaning, f"{cls.__name__}.{name}: choice {choice!r} not documented"


def test_docs_list_every_record_kind() -> None:
    text = DOCS.read_text(encoding="utf-8")
    general = text.split("## General rules", 1)[1].split("\n## ", 1)[0]
    for kind in RECORD_TYPES:
        assert f"`{kind}`" in general


# --- the JSON Schema matches the dataclasses and accepts every example ---------------------------


def _schema_property(hint: Any, meta: Any) -> dict[str, Any]:
    """The JSON Schema fragment a field of this type and metadata must have in the static file."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        fragment = _schema_property(inner, meta)
        if "$ref" in fragment:
            return {"anyOf": [fragment, {"type": "null"}]}
        fragment["type"] = [fragment["type"], "null"]
        if "enum" in fragment:
            fragment["enum"] = [*fragment["enum"], None]
        return fragment
    if origin is list:
        (item,) = typing.get_args(hint)
        return {"type": "array", "items": _schema_property(item, {})}
    if origin is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(hint):
        return {"$ref": f"#/$defs/{hint.__name__}"}
    if meta.get("format") == "datetime":
        return {"$ref": "#/$defs/DateTime"}
    fragment: dict[str, Any] = {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[hint]}
    if meta.get("choices"):
        fragment["enum"] = list(meta["choices"])
    return fragment


@pytest.mark.parametrize("cls", DOCUMENTED_TYPES, ids=lambda c: c.__name__)
def test_schema_definition_matches_the_dataclass(schema_validator, cls: type) -> None:
    definition = schema_validator.schema["$defs"][cls.__name__]
    hints = typing.get_type_hints(cls)
    expected = {f.name: _schema_property(hints[f.name], f.metadata) for f in dataclasses.fields(cls)}
    if issubclass(cls, Record):
        expected = {"kind": {"const": cls.kind}, **expected}
    assert definition["properties"] == expected
    assert definition.get("required", []) == [f.name for f in dataclasses.fields(cls) if _is_required(f)]
    # Records keep unknown keys; value types reject them, as the decoder does.
    assert definition["additionalProperties"] is issubclass(cls, Record)


def test_schema_covers_exactly_the_record_kinds_and_the_decoder_date_pattern(schema_validator) -> None:
    defs = schema_validator.schema["$defs"]
    assert defs["DateTime"]["pattern"] == ISO_DATETIME.pattern
    assert [item["$ref"] for item in defs["AnyRecord"]["oneOf"]] == [f"#/$defs/{k}" for k in RECORD_TYPES]
    assert set(defs) == {c.__name__ for c in DOCUMENTED_TYPES} | {"DateTime", "AnyRecord"}
    assert schema_validator.schema["properties"]["schema"] == {"const": SCHEMA}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_schema_accepts_every_example(schema_validator, path: Path) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in schema_validator.iter_errors(_load(path))]
    assert errors == []


def test_schema_accepts_the_single_record_form_and_rejects_envelope_extras(schema_validator, spec) -> None:
    single = {"schema": SCHEMA, "message_id": "m-1", "kind": "Patient", "id": "pat-77", "gender": "female"}
    assert schema_validator.is_valid(single)
    assert spec.decode(_raw(single), {})[0].gender == "female"
    envelope = {"schema": SCHEMA, "records": [{"kind": "Patient"}], "sender": "acme"}
    assert not schema_validator.is_valid(envelope)


# --- bad input gives the exact, documented error -------------------------------------------------

S = SCHEMA


def _one(record: dict[str, Any]) -> bytes:
    """A message of one record in the envelope form."""
    return _raw({"schema": S, "records": [record]})


ERROR_CASES: list[tuple[str, bytes, str]] = [
    ("not-utf8", b'\xff\xfe{"schema": "telemed-bridge/1"}', "not UTF-8 text (byte 0)"),
    ("invalid-json", b'{"schema": "telemed-bridge/1", "records": [',
     "invalid JSON at line 1 column 44: Expecting value"),
    ("not-an-object", b"[1]", "expected a JSON object with a 'schema' field"),
    ("no-schema", _raw({"records": [{"kind": "Patient"}]}), "missing 'schema' field (expected 'telemed-bridge/1')"),
    ("unknown-schema", _raw({"schema": "fhir+json", "records": [{"kind": "Patient"}]}),
     "schema: unknown schema 'fhir+json' (expected 'telemed-bridge/1')"),
    ("unsupported-version", _raw({"schema": "telemed-bridge/2", "records": [{"kind": "Patient"}]}),
     "schema: unsupported schema version 'telemed-bridge/2' (this engine reads 'telemed-bridge/1')"),
    ("empty-records", _raw({"schema": S, "records": []}), "records: expected a non-empty list of records"),
    ("records-not-a-list", _raw({"schema": S, "records": {"kind": "Patient"}}),
     "records: expected a non-empty list of records"),
    ("no-records-no-kind", _raw({"schema": S, "message_id": "m-1"}),
     "expected 'records' (a list) or a single record with 'kind'"),
    ("missing-kind", _one({"id": "pat-77"}),
     "records[0]: missing 'kind' (one of Account, AllergyIntolerance, Appointment, ChargeItem, ClinicalNote, "
     "Condition, Coverage, DiagnosticReport, Encounter, EpisodeOfCare, Immunization, Location, Medication, "
     "MedicationAdministration, Observation, Organization, Patient, Pharmacy, Practitioner, PractitionerRole, "
     "Prescription, PrescriptionEvent, Procedure, RelatedPerson, ServiceRequest, Specimen)"),
    ("unknown-kind", _one({"kind": "Visit"}),
     "records[0]: unknown record kind 'Visit' (one of Account, AllergyIntolerance, Appointment, ChargeItem, "
     "ClinicalNote, "
     "Condition, Coverage, DiagnosticReport, Encounter, EpisodeOfCare, Immunization, Location, Medication, "
     "MedicationAdministration, Observation, Organization, Patient, Pharmacy, Practitioner, PractitionerRole, "
     "Prescription, PrescriptionEvent, Procedure, RelatedPerson, ServiceRequest, Specimen)"),
    ("record-not-an-object", _raw({"schema": S, "records": [42]}), "records[0]: expected an object"),
    ("nested-kind-mismatch", _one({"kind": "Prescription", "prescriber": {"kind": "Patient"}}),
     "records[0].prescriber.kind: expected kind 'Practitioner', got 'Patient'"),
    ("unknown-key-in-value-type", _one({"kind": "Patient", "name": {"nickname": "AJ"}}),
     "records[0].name: unknown field(s): nickname"),
    ("required-value-missing", _one({"kind": "Patient", "identifiers": [{"system": "x"}]}),
     "records[0].identifiers[0].value: is required"),
    ("string-expected", _one({"kind": "Patient", "id": 42}),
     "records[0].id: expected a string"),
    ("integer-as-string", _one({"kind": "Prescription", "refills": "2"}),
     "records[0].refills: expected a whole number"),
    ("integer-with-fraction", _one({"kind": "Prescription", "refills": 2.0}),
     "records[0].refills: expected a whole number"),
    ("number-as-string", _one({"kind": "Prescription", "quantity": {"value": "20"}}),
     "records[0].quantity.value: expected a number"),
    ("boolean-as-string", _one({"kind": "Pharmacy", "epcs_capable": "yes"}),
     "records[0].epcs_capable: expected true or false"),
    ("list-expected", _one({"kind": "Patient", "identifiers": {"value": "MRN1"}}),
     "records[0].identifiers: expected a list"),
    ("object-expected", _one({"kind": "Patient", "name": "Alex Testpatient"}),
     "records[0].name: expected an object"),
    ("bad-date", _one({"kind": "Encounter", "period": {"start": "yesterday"}}),
     "records[0].period.start: expected an ISO 8601 date or date-time, got 'yesterday'"),
    ("date-with-space", _one({"kind": "Encounter", "period": {"start": "2026-11-27 09:00"}}),
     "records[0].period.start: expected an ISO 8601 date or date-time, got '2026-11-27 09:00'"),
    ("us-style-date-single-form", _raw({"schema": S, "kind": "Patient", "birth_date": "04/12/1980"}),
     "record.birth_date: expected an ISO 8601 date or date-time, got '04/12/1980'"),
    ("bad-choice", _one({"kind": "Patient", "gender": "F"}),
     "records[0].gender: expected one of male, female, other, unknown, got 'F'"),
]
SCHEMA_ACCEPTS = {"integer-with-fraction"}
"""Cases the JSON Schema cannot reject (JSON Schema counts 2.0 as an integer); documented."""


@pytest.mark.parametrize(("case", "raw", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_gives_the_exact_error(spec: FormatSpec, case: str, raw: bytes, message: str) -> None:
    error = _decode_error(spec, raw)
    assert str(error) == message
    if error.path:
        assert message.startswith(f"{error.path}: ")


def test_every_error_message_in_the_docs_is_one_the_decoder_gives() -> None:
    text = DOCS.read_text(encoding="utf-8").split("## Errors a submitter will see", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(.+?)` \|", text, flags=re.MULTILINE)
    assert len(documented) >= 20
    produced = {message for _, _, message in ERROR_CASES}
    assert [m for m in documented if m not in produced] == []


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


SCHEMA_CASES = [(c, _json_or_none(r)) for c, r, _ in ERROR_CASES
                if c not in SCHEMA_ACCEPTS and isinstance(_json_or_none(r), dict)]


@pytest.mark.parametrize(("case", "doc"), SCHEMA_CASES, ids=[c for c, _ in SCHEMA_CASES])
def test_schema_rejects_what_the_decoder_rejects(schema_validator, case: str, doc: dict[str, Any]) -> None:
    assert not schema_validator.is_valid(doc)


def test_error_deep_in_a_real_message_names_its_path(spec: FormatSpec) -> None:
    doc = _load(EXAMPLES / "prescription.json")
    doc["records"][0]["prescriber"]["dea_registrations"][1]["expires"] = "06/30/2027"
    error = _decode_error(spec, _raw(doc))
    assert error.path == "records[0].prescriber.dea_registrations[1].expires"
    assert str(error) == (
        "records[0].prescriber.dea_registrations[1].expires: expected an ISO 8601 date or date-time, "
        "got '06/30/2027'"
    )


@pytest.mark.parametrize(
    "value",
    ["1980", "1980-04", "1980-04-12", "2026-11-27T09", "2026-11-27T09:00", "2026-11-27T09:00:00.250",
     "2026-11-27T09:00:00-06:00", "2026-11-27T15:00:00Z", "2026-11-27T09:00:00-0600"],
)
def test_documented_date_precisions_are_accepted_and_kept_as_sent(spec: FormatSpec, value: str) -> None:
    doc = {"schema": S, "records": [{"kind": "Encounter", "period": {"start": value}, "last_in_person_visit": value}]}
    (encounter,) = spec.decode(_raw(doc), {})
    assert encounter.period.start == value and encounter.last_in_person_visit == value
    assert json.loads(spec.encode([encounter], {}))["records"][0]["period"]["start"] == value


# --- unknown fields are kept in place ------------------------------------------------------------


def test_unknown_fields_survive_a_round_trip_in_place(spec: FormatSpec) -> None:
    doc = _load(EXAMPLES / "prescription.json")
    rx_in = doc["records"][0]
    rx_in["platform_visit_url"] = "https://telehealth.example.org/v/TV-1001"
    rx_in["pharmacy"]["drive_thru"] = True
    rx_in["encounter"]["patient"] = {"kind": "Patient", "id": "pat-77", "interpreter": {"language": "es"}}
    rx_in["medication"]["extra"] = {"fhir": {"meta": {"versionId": "3"}}}
    sent = copy.deepcopy(doc)

    (rx,) = spec.decode(_raw(doc), {})
    assert rx.extra == {"json": {"platform_visit_url": "https://telehealth.example.org/v/TV-1001"}}
    assert rx.pharmacy.extra == {"json": {"drive_thru": True}}
    assert rx.encounter.patient.extra == {"json": {"interpreter": {"language": "es"}}}
    assert rx.medication.extra == {"fhir": {"meta": {"versionId": "3"}}}

    assert_format_round_trip(spec, [rx])
    written = json.loads(spec.encode([rx], {"message_control_id": doc["message_id"], "trace_id": doc.get("trace_id")}))
    assert written == sent
    # In place: in the same object, after that object's known fields, and nowhere else.
    assert list(written["records"][0])[-1] == "platform_visit_url"
    assert list(written["records"][0]["pharmacy"])[-1] == "drive_thru"
    assert "drive_thru" not in json.dumps(written["records"][0]["encounter"])


def test_unknown_field_in_the_single_record_form_is_kept(spec: FormatSpec) -> None:
    doc = {"schema": S, "message_id": "m-7", "kind": "Patient", "id": "pat-77", "preferred_pharmacy_note": "drive-thru"}
    (patient,) = spec.decode(_raw(doc), {})
    assert patient.extra == {"json": {"preferred_pharmacy_note": "drive-thru"}}
    assert json.loads(spec.encode([patient], {}))["records"][0] == {
        "kind": "Patient", "id": "pat-77", "preferred_pharmacy_note": "drive-thru"}


# --- known problems in the core, reported to the lead; strict so a fix is noticed ---------------


def test_single_record_prescription_event_keeps_its_ncpdp_message_id(spec: FormatSpec) -> None:
    doc = {"schema": S, "kind": "PrescriptionEvent", "event_type": "RxFill", "message_id": "RXFILL-1"}
    (event,) = spec.decode(_raw(doc), {})
    assert event.message_id == "RXFILL-1"


def test_prescription_event_without_event_type_is_rejected_or_round_trips_unchanged(spec: FormatSpec) -> None:
    doc = {"schema": S, "records": [{"kind": "PrescriptionEvent", "id": "evt-1"}]}
    try:
        records = spec.decode(_raw(doc), {})
    except DecodeError as error:
        assert str(error) == "records[0].event_type: is required"
        return
    assert json.loads(spec.encode(records, {}))["records"] == doc["records"]


def test_non_finite_numbers_are_rejected(spec: FormatSpec) -> None:
    raw = b'{"schema": "telemed-bridge/1", "records": [{"kind": "Prescription", "quantity": {"value": NaN}}]}'
    _decode_error(spec, raw)


def test_date_with_a_trailing_newline_is_rejected(spec: FormatSpec) -> None:
    _decode_error(spec, _one({"kind": "Patient", "birth_date": "1980-04-12\n"}))
