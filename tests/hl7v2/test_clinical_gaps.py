"""What the coverage pass of issue 13 (2026-12-06, h13-coverage) reads that was kept raw before:
PDA-6/7/8 autopsies, IAM-14/15 allergy reporters and OML/OMG prior results, each on Microsoft's
corpus samples, to FHIR (valid, bindings met) and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge import (
    AllergyIntolerance,
    DiagnosticReport,
    Observation,
    Procedure,
    Record,
    ServiceRequest,
    localize_records,
    record_from_dict,
    record_to_dict,
)
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import decode, encode
from tests.fhir.test_adt_background import check_valid, system_problems

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00", "sending_application": "TB"}


def _records(name: str) -> list[Record]:
    records = decode((CORPUS / name).read_bytes(), {})
    localize_records(records, "America/Chicago")
    return records


def _bundle(records: list[Record]) -> dict[str, Any]:
    bundle = json.loads(FHIR.encode(records, {}))
    check_valid(bundle)  # fhir.resources and the required bindings
    assert system_problems(bundle) == []
    return bundle


def _entries(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


# --- PDA-6/7/8: the autopsy -----------------------------------------------------------------------


def test_an_autopsy_is_a_completed_procedure_over_its_period_by_its_pathologist() -> None:
    records = _records("ADT-A01-01.hl7")
    (autopsy,) = [r for r in records if isinstance(r, Procedure) and r.code and r.code.code == "29240004"]
    bundle = _bundle(records)
    urls = {e["fullUrl"]: e for e in bundle["entry"]}
    (entry,) = [e for e in _entries(bundle, "Procedure") if e["resource"].get("code", {}).get("coding", [{}])[0]
                .get("code") == "29240004"]
    resource = entry["resource"]
    assert resource["status"] == "completed" and "performedDateTime" not in resource
    assert resource["performedPeriod"] == {"start": "2021-11-02T10:30:00+01:15", "end": "2021-11-02T11:30:00+01:15"}
    doctor = urls[resource["performer"][0]["actor"]["reference"]]["resource"]
    assert doctor["resourceType"] == "Practitioner" and doctor["name"][0]["family"] == "Autopsy"
    assert entry["request"]["method"] == "PUT"  # a re-sent message updates the one it created
    (back,) = [r for r in FHIR.decode(json.dumps(bundle).encode(), {})
               if isinstance(r, Procedure) and r.code and r.code.code == "29240004"]
    assert (back.performed, back.performed_end) == (autopsy.performed, autopsy.performed_end)
    assert back.performers[0].practitioner.name.family == "Autopsy"


def test_no_autopsy_flag_no_procedure_and_the_adt_goes_back_unchanged() -> None:
    raw = (CORPUS / "ADT-A01-01.hl7").read_bytes()
    period = b"|20211102103000+0115^20211102113000+0115|"
    without = raw.replace(b"|Y" + period, b"|N" + period)
    assert without != raw
    assert not [r for r in decode(without, {}) if isinstance(r, Procedure) and r.code and r.code.code == "29240004"]
    pda = [line for line in encode(decode(raw, {}), OPTS).split(b"\r") if line.startswith(b"PDA")]
    assert pda == [line for line in raw.replace(b"\n", b"\r").split(b"\r") if line.startswith(b"PDA")]


def test_performed_end_survives_the_bridge_json() -> None:
    (autopsy,) = [r for r in _records("ADT-A01-01.hl7") if isinstance(r, Procedure) and r.code
                  and r.code.code == "29240004"]
    back = record_from_dict(record_to_dict(autopsy))
    assert (back.performed, back.performed_end) == (autopsy.performed, autopsy.performed_end)


# --- PDA-3/4/5: the death certification (VRDR) ----------------------------------------------------


def test_a_certified_death_is_a_completed_certification_procedure_by_its_certifier() -> None:
    records = _records("ADT-A01-01.hl7")
    (cert,) = [r for r in records if isinstance(r, Procedure) and r.code and r.code.code == "308646001"]
    assert (cert.status, cert.code.system) == ("completed", "http://snomed.info/sct")
    bundle = _bundle(records)
    urls = {e["fullUrl"]: e for e in bundle["entry"]}
    (entry,) = [e for e in _entries(bundle, "Procedure") if e["resource"].get("code", {}).get("coding", [{}])[0]
                .get("code") == "308646001"]
    resource = entry["resource"]
    assert resource["performedDateTime"] == "2021-11-02T12:30:00+01:15"  # PDA-4, its own offset kept
    certifier = urls[resource["performer"][0]["actor"]["reference"]]["resource"]
    assert certifier["resourceType"] == "Practitioner" and certifier["name"][0]["family"] == "DeathCert"
    (back,) = [r for r in FHIR.decode(json.dumps(bundle).encode(), {})
               if isinstance(r, Procedure) and r.code and r.code.code == "308646001"]
    assert back.performed == cert.performed and back.performers[0].practitioner.name.family == "DeathCert"


def test_an_uncertified_death_has_no_certification_and_the_pda_goes_back_unchanged() -> None:
    raw = (CORPUS / "ADT-A01-01.hl7").read_bytes()
    signed = b"|20211102123000+0115|005454^DeathCert^Robin^B|"
    without = raw.replace(b"|Y" + signed, b"|N" + signed)
    assert without != raw
    assert not [r for r in decode(without, {}) if isinstance(r, Procedure) and r.code
                and r.code.code == "308646001"]
    pda = [line for line in encode(decode(raw, {}), OPTS).split(b"\r") if line.startswith(b"PDA")]
    assert pda == [line for line in raw.replace(b"\n", b"\r").split(b"\r") if line.startswith(b"PDA")]


# --- IAM-14/15: who reported the allergy -----------------------------------------------------------


def test_an_allergy_reported_by_a_spouse_names_her_as_asserter_created_if_absent() -> None:
    records = _records("ADT-A60-01.hl7")
    (allergy,) = [r for r in records if isinstance(r, AllergyIntolerance)]
    reporter = allergy.reported_by
    assert (reporter.name.family, reporter.name.given) == ("Doe", ["Rosallie", "John"])
    assert (reporter.relationship[0].code, reporter.relationship[0].system) == ("SPO", "HL70063")
    assert reporter.patient is allergy.patient
    bundle = _bundle(records)
    urls = {e["fullUrl"]: e for e in bundle["entry"]}
    (entry,) = _entries(bundle, "AllergyIntolerance")
    asserter = urls[entry["resource"]["asserter"]["reference"]]
    assert asserter["resource"]["resourceType"] == "RelatedPerson"
    assert asserter["resource"]["relationship"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0063", "code": "SPO", "display": "Spouse"}
    # a name and a relationship only: never overwrites the fuller record a server may hold
    assert asserter["request"]["method"] == "POST" and "ifNoneExist" in asserter["request"]
    (back,) = [r for r in FHIR.decode(json.dumps(bundle).encode(), {}) if isinstance(r, AllergyIntolerance)]
    assert back.reported_by.name.family == "Doe" and back.reported_by.relationship[0].code == "SPO"


def test_an_allergy_the_patient_reported_has_no_related_person() -> None:
    raw = (CORPUS / "ADT-A60-01.hl7").read_bytes().replace(b"|SPO^Spouse|", b"|SEL^Self|")
    (allergy,) = [r for r in decode(raw, {}) if isinstance(r, AllergyIntolerance)]
    assert allergy.reported_by is None


# --- OML/OMG PRIOR_RESULT: earlier results sent with an order --------------------------------------


def test_a_prior_result_is_a_report_of_its_earlier_visit_and_its_order_stays_a_request() -> None:
    records = _records("OMG-O19-01.hl7")
    (report,) = [r for r in records if isinstance(r, DiagnosticReport)]
    assert [c.code for c in report.code] == ["57698-3"] and report.status == "partial"  # OBR-25 S
    assert [o.code[0].code for o in report.observations] == ["3DHISTECH_SD", "3DHISTECH_SD"]  # RP, ST
    assert report.encounter.identifiers[0].value == "50011"  # the prior PV1-19, not the order's 5001
    assert records[0].encounter.identifiers[0].value == "5001"
    assert report.extra == {"hl7v2": {"carried": True}}
    assert all(o.patient is report.patient for o in report.observations)
    # the prior OBX are the report's results, not also loose observations
    loose = [r for r in records if isinstance(r, Observation)]
    assert not any(o in report.observations for o in loose)
    assert len(loose) == 2  # the first order's own OBX (before its SPM)
    assert len([r for r in records if isinstance(r, ServiceRequest)]) == 2
    bundle = _bundle(records)
    (entry,) = _entries(bundle, "DiagnosticReport")
    assert len(entry["resource"]["result"]) == 2 and len(_entries(bundle, "Encounter")) == 2


def test_orders_without_a_prior_visit_stay_orders_and_the_message_goes_back_unchanged() -> None:
    for name in ("OML-O21-01.hl7", "ORM-O01-01.hl7", "MDHHS-OML-O21-1.hl7"):
        assert not [r for r in decode((CORPUS / name).read_bytes(), {}) if isinstance(r, DiagnosticReport)], name
    for name in ("OMG-O19-02.hl7", "OML-O21-03.hl7"):
        raw = (CORPUS / name).read_bytes()
        records = decode(raw, {})
        assert len([r for r in records if isinstance(r, DiagnosticReport)]) == 2, name
        body = [s for s in raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:] if s]
        assert encode(records, OPTS).decode("utf-8").split("\r")[1:len(body) + 1] == body, name


# --- RXD-10 and RXD-13: who dispensed, and where to ---------------------------------------------------


def test_a_dispense_names_its_dispensing_provider_and_destination() -> None:
    raw = (CORPUS / "RDS-O13-01.hl7").read_bytes()
    # RXD-13 is empty in Microsoft's sample: a ward the dispense was sent to, as an LA1
    sent = raw.replace(b"||1^385055001&Tablet&SCT|", b"||1^385055001&Tablet&SCT|4EAST^401^A^GHH|", 1)
    assert sent != raw
    records = decode(sent, {})
    localize_records(records, "America/Chicago")
    (dispense,) = [r for r in records if r.kind == "PrescriptionEvent"]
    assert dispense.dispenser.name.family == "Smith" and dispense.dispenser.identifiers[0].value == "9941339108"
    assert dispense.destination.name == "A" and dispense.destination.part_of.name == "401"  # the bed, in its room
    bundle = _bundle(records)
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    (entry,) = _entries(bundle, "MedicationDispense")
    actors = [urls[p["actor"]["reference"]]["resourceType"] for p in entry["resource"]["performer"]]
    assert actors == ["Practitioner"]  # no pharmacy stated: RXD-30/31 stay kept
    assert urls[entry["resource"]["destination"]["reference"]]["name"] == "A"
    (back,) = [r for r in FHIR.decode(json.dumps(bundle).encode(), {}) if r.kind == "PrescriptionEvent"]
    assert back.dispenser.name.family == "Smith" and back.destination.name == "A"
    body = [s for s in sent.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:] if s]
    assert encode(decode(sent, {}), OPTS).decode("utf-8").split("\r")[1:len(body) + 1] == body  # kept whole
