"""Specimens (issue 13): an ORU's SPM becomes a Specimen of its DiagnosticReport (derived: the SPM is
kept as read, so an HL7v2 round trip is unchanged), and a FHIR Specimen the report references."""

from __future__ import annotations

import json

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import DiagnosticReport
from bridge.plugins.fhir import constants as C
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.hl7v2.codec import decode as hl7_decode
from bridge.plugins.hl7v2.codec import encode as hl7_encode

OPTS = {"message_datetime": "2026-11-26T10:00:00-06:00"}
SPM_FIELDS = {1: "1", 2: "SPC-5521-1&&2.16.840.1.113883.3.999.8&ISO^LAB-778120-1", 4: "BLD^Whole blood^HL70487",
              8: "368208006^Left upper arm structure^SCT", 17: "20261126074500-0600^20261126075000-0600",
              18: "20261126083000-0600"}
SPM = "|".join(["SPM", *(SPM_FIELDS.get(n, "") for n in range(1, 19))])


def oru(spm: str = SPM, control: str = "1") -> bytes:
    return "\r".join([
        f"MSH|^~\\&|LAB|RIVERBEND|TB|TB|20261126110200||ORU^R01^ORU_R01|CTL{control}|P|2.5",
        "PID|1||MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||Testpatient^Alex^J||19800412|F",
        "OBR|1|ORD-5521|LAB-778120|58410-2^CBC panel^LN|||20261126074500-0600",
        "OBX|1|NM|718-7^Hemoglobin^LN||11.8|g/dL|12.0-16.0|L|||F",
        spm]).encode() + b"\r"


def report(raw: bytes) -> DiagnosticReport:
    (first,) = [r for r in hl7_decode(raw, OPTS) if isinstance(r, DiagnosticReport)]
    return first


def test_spm_gives_the_reports_specimen() -> None:
    (sample,) = report(oru()).specimens
    assert [(i.value, i.type, i.system) for i in sample.identifiers] == [
        ("SPC-5521-1", "PLAC", "urn:oid:2.16.840.1.113883.3.999.8"), ("LAB-778120-1", "FILL", None)]
    assert (sample.specimen_type.code, sample.specimen_type.system) == ("BLD", "HL70487")
    assert sample.body_site.code == "368208006"
    assert (sample.collected.start, sample.collected.end) == ("2026-11-26T07:45:00-06:00", "2026-11-26T07:50:00-06:00")
    assert sample.received == "2026-11-26T08:30:00-06:00"
    assert sample.patient is not None and sample.patient.identifiers[0].value == "MRN00012345"


def test_a_report_without_spm_has_only_what_its_obr_says_of_the_sample() -> None:
    """No SPM: the OBR's collection time is the sample's (the v2-to-FHIR IG's OBR → Specimen map),
    with no id or type invented (tests/hl7v2/test_ig_specimens_immunization_observations.py)."""
    raw = b"\r".join(oru().split(b"\r")[:4]) + b"\r"
    (sample,) = report(raw).specimens
    assert (sample.identifiers, sample.specimen_type) == ([], None)
    assert sample.collected is not None and sample.collected.start == "2026-11-26T07:45:00-06:00"


def test_the_spm_round_trips_unchanged() -> None:
    records = hl7_decode(oru(), OPTS)
    out = hl7_encode(records, {}).decode().split("\r")
    assert SPM in out
    assert out.count(SPM) == 1  # written once: the Specimen record is derived, not written again


def test_fhir_report_references_its_specimen_keyed_for_redelivery(fhir_format) -> None:
    def bundle(raw: bytes) -> dict:
        return json.loads(fhir_format.encode(hl7_decode(raw, OPTS), {}))

    first = bundle(oru())
    entries = {e["fullUrl"]: e for e in first["entry"]}
    diag = next(e["resource"] for e in first["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    (ref,) = diag["specimen"]
    entry = entries[ref["reference"]]
    sample = entry["resource"]
    assert sample["resourceType"] == "Specimen"
    assert sample["type"]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0487", "code": "BLD",
                                           "display": "Whole blood"}
    assert sample["collection"]["collectedPeriod"] == {"start": "2026-11-26T07:45:00-06:00",
                                                       "end": "2026-11-26T07:50:00-06:00"}
    assert sample["receivedTime"] == "2026-11-26T08:30:00-06:00"
    assert entry["request"]["method"] == "PUT"
    assert entry["request"]["url"] == "Specimen?identifier=urn:oid:2.16.840.1.113883.3.999.8|SPC-5521-1"
    assert bundle_violations(first) == []
    R4BBundle.model_validate(first)
    # without a system the key is derived, and the same sample re-sent keeps it
    bare = SPM.replace("SPC-5521-1&&2.16.840.1.113883.3.999.8&ISO", "SPC-5521-1")

    def key(raw: bytes) -> str:
        return next(e["request"]["url"] for e in bundle(raw)["entry"] if e["resource"]["resourceType"] == "Specimen")

    assert key(oru(bare, "1")).startswith(f"Specimen?identifier={C.SID_SPECIMEN_KEY}|")
    assert key(oru(bare, "1")) == key(oru(bare, "2"))
    assert key(oru(bare.replace("BLD^Whole blood", "SER^Serum"))) != key(oru(bare))


def test_fhir_specimen_decodes_back(fhir_format) -> None:
    records = hl7_decode(oru(), OPTS)
    back = fhir_format.decode(fhir_format.encode(records, {}), {})
    (diag,) = [r for r in back if isinstance(r, DiagnosticReport)]
    assert diag.specimens == report(oru()).specimens


def test_obx_23_performing_lab_is_the_results_performing_organization(fhir_format) -> None:
    fields = ["1", "NM", "718-7^Hemoglobin^LN", "", "11.8", "g/dL", "12.0-16.0", "L", "", "", "F"] + [""] * 11 + [
        "State Lab^^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^16D0648109", "1 Lab Way^^Iowa City^IA^52242"]
    obx = "|".join(["OBX", *fields])
    raw = oru().replace(b"OBX|1|NM|718-7^Hemoglobin^LN||11.8|g/dL|12.0-16.0|L|||F", obx.encode())
    records = hl7_decode(raw, OPTS)
    (obs,) = report(raw).observations
    lab = obs.performing_organization
    assert lab is not None and lab.name == "State Lab"
    assert [(i.value, i.system, i.type) for i in lab.identifiers] == [
        ("16D0648109", "urn:oid:2.16.840.1.113883.4.7", "XX")]
    assert lab.addresses[0].city == "Iowa City"
    out = hl7_encode(records, {}).decode().split("\r")
    assert obx in out  # OBX-23/24 written back as read
    bundle = json.loads(fhir_format.encode(records, {}))
    entries = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    fhir_obs = next(r for r in entries.values() if r["resourceType"] == "Observation")
    kinds = [entries[p["reference"]]["resourceType"] for p in fhir_obs["performer"]]
    assert kinds == ["Organization"]
    back = fhir_format.decode(json.dumps(bundle).encode(), {})
    (diag,) = [r for r in back if isinstance(r, DiagnosticReport)]
    assert diag.observations[0].performing_organization == lab


def test_a_performing_lab_from_fhir_is_written_to_obx_23(fhir_format) -> None:
    """A result from another format has no kept OBX-23: the lab is written from the record."""
    fields = ["1", "NM", "718-7^Hemoglobin^LN", "", "11.8", "g/dL", "12.0-16.0", "L", "", "", "F"] + [""] * 11 + [
        "State Lab^^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^16D0648109", "1 Lab Way^^Iowa City^IA^52242"]
    raw = oru().replace(b"OBX|1|NM|718-7^Hemoglobin^LN||11.8|g/dL|12.0-16.0|L|||F", "|".join(["OBX", *fields]).encode())
    from_fhir = fhir_format.decode(fhir_format.encode(hl7_decode(raw, OPTS), {}), {})
    for record in from_fhir:  # what HL7v2 kept travels in record-extra: drop it to be a FHIR-only result
        record.extra.pop("hl7v2", None)
        for obs in getattr(record, "observations", []):
            obs.extra.pop("hl7v2", None)
    out = hl7_encode(from_fhir, {}).decode().split("\r")
    obx = next(s for s in out if s.startswith("OBX")).split("|")
    assert obx[23] == "State Lab^^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^16D0648109"
    assert obx[24].startswith("1 Lab Way^^Iowa City^IA^52242")
    back = report("\r".join(out).encode())
    assert back.observations[0].performing_organization.identifiers[0].value == "16D0648109"


PARENTED = SPM.replace("||BLD^Whole blood", "|SPC-5521&&2.16.840.1.113883.3.999.8&ISO~SPC-55&L|BLD^Whole blood")


def test_spm_3_names_the_specimens_it_was_taken_from() -> None:
    (sample,) = report(oru(PARENTED)).specimens
    assert [[(i.value, i.type, i.system, i.assigner) for i in parent.identifiers] for parent in sample.parents] == [
        [("SPC-5521", "PLAC", "urn:oid:2.16.840.1.113883.3.999.8", None)], [("SPC-55", "PLAC", None, "L")]]
    # the message says nothing else of a parent: no type, no collection, only whose sample it is
    assert all(p.specimen_type is None and p.collected is None and p.patient is sample.patient for p in sample.parents)
    assert report(oru()).specimens[0].parents == []


def test_parent_specimens_are_created_if_absent_never_overwritten(fhir_format) -> None:
    first = json.loads(fhir_format.encode(hl7_decode(oru(PARENTED), OPTS), {}))
    entries = {e["fullUrl"]: e for e in first["entry"]}
    (child,) = [e for e in first["entry"] if e["resource"]["resourceType"] == "Specimen" and "parent" in e["resource"]]
    parents = [entries[ref["reference"]] for ref in child["resource"]["parent"]]
    assert [p["request"] for p in parents] == [
        {"method": "POST", "url": "Specimen", "ifNoneExist": "identifier=urn:oid:2.16.840.1.113883.3.999.8|SPC-5521"},
        {"method": "POST", "url": "Specimen", "ifNoneExist": parents[1]["request"]["ifNoneExist"]}]
    assert parents[1]["request"]["ifNoneExist"].startswith(f"identifier={C.SID_SPECIMEN_KEY}|")
    assert all(set(p["resource"]) == {"resourceType", "identifier", "subject"} for p in parents)
    assert child["request"]["method"] == "PUT"  # the sample itself is still updated on a resend
    assert bundle_violations(first) == []
    R4BBundle.model_validate(first)
    back = fhir_format.decode(json.dumps(first).encode(), {})
    (diag,) = [r for r in back if isinstance(r, DiagnosticReport)]
    assert [[i.value for i in p.identifiers] for p in diag.specimens[0].parents] == [["SPC-5521"], ["SPC-55"]]


def test_a_parented_spm_round_trips_unchanged() -> None:
    out = hl7_encode(hl7_decode(oru(PARENTED), OPTS), {}).decode().split("\r")
    assert out.count(PARENTED) == 1
