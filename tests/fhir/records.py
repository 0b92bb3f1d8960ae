"""Rich canonical records for the FHIR tests: every field of every record kind is set."""

from __future__ import annotations

from bridge import (
    Address,
    AllergyIntolerance,
    Appointment,
    ClinicalNote,
    Coding,
    Condition,
    ContactPoint,
    Coverage,
    DEARegistration,
    DiagnosticReport,
    Encounter,
    HumanName,
    Identifier,
    Medication,
    Observation,
    Patient,
    PatientLink,
    PatientLocation,
    Period,
    Pharmacy,
    Practitioner,
    Prescription,
    PrescriptionEvent,
    Quantity,
    Range,
    Ratio,
    ReferenceRange,
    SignatureEvidence,
    StateLicense,
)


def patient() -> Patient:
    return Patient(
        id="pat-100",
        identifiers=[Identifier(value="MRN-77123", system="urn:oid:1.2.3.4.5", type="MR", assigner="Acme Health"),
                     Identifier(value="999-00-1234", system="http://hl7.org/fhir/sid/us-ssn", type="SS")],
        name=HumanName(family="Rivera", given=["Ana", "Lucia"], prefix="Ms", suffix="Jr", use="official"),
        birth_date="1984-03-09", gender="female",
        addresses=[Address(lines=["12 Elm St", "Apt 4"], city="Austin", state="TX", postal_code="78701",
                           country="US", use="home")],
        telecom=[ContactPoint(value="+1-512-555-0101", system="phone", use="mobile"),
                 ContactPoint(value="ana@example.org", system="email", use="home")],
        extra={"hl7v2": {"PID-10": "2106-3"}},
    )


def practitioner() -> Practitioner:
    return Practitioner(
        id="prac-7", npi="1234567893",
        identifiers=[Identifier(value="E-555", system="urn:oid:1.2.840.114350.1", type="PRN")],
        name=HumanName(family="Okafor", given=["Chidi"], prefix="Dr", suffix="MD"),
        dea_registrations=[DEARegistration(number="BO1234563", state="TX", schedules=["CII", "CIII", "CIV"],
                                           expires="2027-01-31"),
                           DEARegistration(number="FO7654321", state="CA", schedules=["CIV"])],
        licenses=[StateLicense(state="TX", number="Q1234", expires="2026-12-31"),
                  StateLicense(state="CA")],
        addresses=[Address(lines=["1 Clinic Way"], city="Dallas", state="TX", postal_code="75201", use="work")],
        telecom=[ContactPoint(value="+1-214-555-0199", system="phone", use="work")],
    )


def pharmacy() -> Pharmacy:
    return Pharmacy(id="pharm-3", ncpdp_id="4512345", npi="1487654321", name="Corner Drug #12",
                    address=Address(lines=["500 Main St"], city="Austin", state="TX", postal_code="78702"),
                    telecom=[ContactPoint(value="+1-512-555-0300", system="phone", use="work"),
                             ContactPoint(value="+1-512-555-0301", system="fax", use="work")],
                    epcs_capable=True)


def medication() -> Medication:
    return Medication(description="Sertraline 50 mg oral tablet", rxnorm="312940", ndc="16729001101",
                      codings=[Coding(code="372594008", system="http://snomed.info/sct", display="Sertraline")],
                      dea_schedule="none", strength="50 mg", form="tablet")


def encounter() -> Encounter:
    return Encounter(
        id="enc-42",
        identifiers=[Identifier(value="V-100200", system="urn:oid:1.2.3.4.6", type="VN")],
        status="finished", modality="video", encounter_class="AMB",
        period=Period(start="2026-03-02T14:00:00-06:00", end="2026-03-02T14:25:00-06:00"),
        patient=patient(), practitioner=practitioner(),
        patient_location=PatientLocation(country="US", state="TX", at_home=True, source="patient-attested"),
        practitioner_state="TX",
        reason=[Coding(code="F41.1", system="http://hl7.org/fhir/sid/icd-10-cm", display="Generalized anxiety")],
        types=[Coding(code="VIDEO", system="urn:oid:1.2.3.4.7", display="Video visit")],
        appointment_id="appt-9", consent_captured=True, last_in_person_visit="2025-11-20",
        extra={"json": {"platform_visit_url": "https://video.example/visit/42"}},
    )


def appointment() -> Appointment:
    return Appointment(
        id="appt-9", identifiers=[Identifier(value="SCH-1", system="urn:oid:1.2.3.4.8", type="PLAC")],
        status="booked", start="2026-03-02T14:00:00-06:00", end="2026-03-02T14:30:00-06:00",
        duration_minutes=30, modality="audio_only",
        reason=[Coding(code="R51", system="http://hl7.org/fhir/sid/icd-10-cm", display="Headache")],
        appointment_type=Coding(code="FOLLOWUP", system="http://terminology.hl7.org/CodeSystem/v2-0276",
                                display="A follow up visit"),
        patient=patient(), practitioner=practitioner(),
        patient_location=PatientLocation(country="US", state="NM", at_home=False),
    )


def prescription() -> Prescription:
    return Prescription(
        id="rx-5001", prescriber_order_number="PON-88001",
        identifiers=[Identifier(value="ORD-1", system="urn:oid:1.2.3.4.9", type="FILL")],
        status="active", intent="order", medication=medication(),
        quantity=Quantity(value=30.0, unit="tablet", code="C48542", system="urn:oid:2.16.840.1.113883.3.26.1.1"),
        days_supply=30, refills=2, sig="Take 1 tablet by mouth once daily", substitution_allowed=False,
        written_date="2026-03-02T14:20:00-06:00", patient=patient(), prescriber=practitioner(),
        pharmacy=pharmacy(), encounter=encounter(),
        diagnosis=[Coding(code="F41.1", system="http://hl7.org/fhir/sid/icd-10-cm")],
        note="Patient prefers afternoon pickup",
        signature=SignatureEvidence(value="MEUCIQDsig==", kind="EPCS", signed_at="2026-03-02T14:21:00-06:00",
                                    digest="sha256:abcd"),
        pdmp_checks=[{"state": "TX", "checked_at": "2026-03-02T14:10:00-06:00", "result": "reviewed"}],
    )


def controlled_prescription() -> Prescription:
    rx = prescription()
    rx.id, rx.prescriber_order_number = "rx-5002", "PON-88002"
    rx.medication = Medication(description="Lorazepam 1 mg tablet", rxnorm="197901", dea_schedule="CIV")
    rx.substitution_allowed, rx.refills = True, 0
    return rx


def rx_fill() -> PrescriptionEvent:
    return PrescriptionEvent(
        event_type="RxFill", id="ev-1", message_id="MSG-9001", relates_to_message_id="MSG-8001",
        prescriber_order_number="PON-88001", prescription_id="rx-5001", code="000",
        description="Filled in full", occurred_at="2026-03-03T09:15:00-06:00", fill_status="Dispensed",
        quantity=Quantity(value=30.0, unit="tablet"), medication=medication(), patient=patient(),
        pharmacy=pharmacy(),
    )


def clinical_note() -> ClinicalNote:
    return ClinicalNote(
        id="note-1", identifiers=[Identifier(value="DOC-77", system="urn:oid:1.2.3.4.10")], status="final",
        note_type=Coding(code="11506-3", system="http://loinc.org", display="Progress note"),
        title="Telehealth visit note", text="Seen by video. Patient in Texas at home.\nPlan: sertraline 50 mg.",
        content_type="text/plain; charset=utf-8", authored="2026-03-02T14:30:00-06:00",
        author=practitioner(), patient=patient(), encounter=encounter(),
    )


UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
FLAGS = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def pain_score() -> Observation:
    """A standalone observation with every field set."""
    score = Quantity(value=6, unit="{score}", code="{score}", system=UCUM)
    return Observation(
        id="obs-pain-1", identifiers=[Identifier(value="PAIN-9", system="urn:oid:1.2.3.4.11")], status="final",
        category="survey",
        code=[Coding(code="72514-3", system=LOINC, display="Pain severity - 0-10 verbal numeric rating [Score]")],
        value_type="NM", value_quantity=score, units=Coding(code="{score}", system=UCUM),
        reference_range=ReferenceRange(low=Quantity(value=0, unit="{score}", code="{score}", system=UCUM),
                                       high=Quantity(value=10, unit="{score}", code="{score}", system=UCUM),
                                       text="0-10"),
        interpretation=[Coding(code="A", system=FLAGS, display="Abnormal")],
        effective="2026-03-02T14:05:00-06:00", performer=practitioner(), notes=["Worse at night."],
        patient=patient(), encounter=encounter(), extra={"hl7v2": {"fields": {"OBX-4": "1"}}},
    )


def lab_report() -> DiagnosticReport:
    """A report whose results take every value shape; they name no patient of their own."""
    mg = Quantity(value=0.5, unit="mg/dL", code="mg/dL", system=UCUM, comparator="<")
    return DiagnosticReport(
        id="rep-1", identifiers=[Identifier(value="F-100", system="urn:oid:1.2.3.4.12", type="FILL"),
                                 Identifier(value="P-100", system="urn:oid:1.2.3.4.13", type="PLAC")],
        status="final", category=Coding(code="CH", system="http://terminology.hl7.org/CodeSystem/v2-0074"),
        code=[Coding(code="24323-8", system=LOINC, display="Comprehensive metabolic panel")],
        effective="2026-03-02T08:00:00-06:00", issued="2026-03-02T11:00:00-06:00",
        observations=[
            Observation(status="final", category="laboratory", code=[Coding(code="2345-7", system=LOINC)],
                        value_quantity=mg, interpretation=[Coding(code="L", system=FLAGS)]),
            Observation(status="corrected", category="laboratory", code=[Coding(code="2345-7", system=LOINC)],
                        value_quantity=Quantity(value=92, unit="mg/dL", code="mg/dL", system=UCUM)),
            Observation(status="final", code=[Coding(code="5334-2", system=LOINC)],
                        value_ratio=Ratio(numerator=Quantity(value=1), denominator=Quantity(value=128))),
            Observation(status="final", code=[Coding(code="2160-0", system=LOINC)],
                        value_range=Range(low=Quantity(value=0.6), high=Quantity(value=0.9))),
            Observation(status="final", code=[Coding(code="600-7", system=LOINC)],
                        value_codings=[Coding(code="3092008", system="http://snomed.info/sct", display="Staph")]),
            Observation(status="final", code=[Coding(code="11778-8", system=LOINC)], value_datetime="2027-03-01"),
            Observation(status="preliminary", code=[], value_text="Impression: normal."),
        ],
        patient=patient(), encounter=encounter(), extra={"hl7v2": {"fields": {"OBR-16": "x"}}},
    )


def merged_patient() -> Patient:
    """The survivor of an A40 merge: it replaces the record whose MRN was retired."""
    survivor = patient()
    survivor.links = [PatientLink(other=Identifier(value="MRN-70001", system="urn:oid:1.2.3.4.5", type="MR",
                                                   assigner="Acme Health"), type="replaces")]
    return survivor


def allergy() -> AllergyIntolerance:
    return AllergyIntolerance(
        id="allergy-1", identifiers=[Identifier(value="AL-55", system="urn:oid:1.2.3.4.9")],
        clinical_status="active", verification_status="confirmed",
        allergen_type=Coding(code="DA", system="HL70127", display="Drug allergy"), category="medication",
        code=Coding(code="7980", system="http://www.nlm.nih.gov/research/umls/rxnorm", display="penicillin G"),
        severity="severe", reactions=["Hives", "Wheezing"], identified_at="2019-03-02", patient=patient(),
        extra={"hl7v2": {"fields": {"AL1-1": "1"}}},
    )


def condition() -> Condition:
    return Condition(
        id="dx-1", identifiers=[Identifier(value="DX-9", system="urn:oid:1.2.3.4.10")],
        clinical_status="active", verification_status="confirmed", category="encounter-diagnosis",
        diagnosis_type=Coding(code="F", system="HL70052", display="Final"),
        code=Coding(code="G89.4", system="http://hl7.org/fhir/sid/icd-10-cm", display="Chronic pain syndrome"),
        description="Chronic pain syndrome, lower back", onset="2025-06", recorded="2026-11-20T10:45:00-06:00",
        asserter=practitioner(), patient=patient(), encounter=encounter(),
    )


def coverage() -> Coverage:
    return Coverage(
        id="cov-1", identifiers=[Identifier(value="COV-3", system="urn:oid:1.2.3.4.11")], status="active",
        plan=Coding(code="PPO-GOLD", display="Gold PPO"),
        plan_type=Coding(code="PPO", system="HL70086", display="Preferred provider"),
        payer_name="Prairie Health Insurance",
        payer_identifiers=[Identifier(value="PHI-1", system="urn:oid:1.2.3.4.12", type="NIIP")],
        member_id="XJP123456789", group_number="GRP-4410", group_name="Pella Window Works",
        subscriber_id="XJP100000001", subscriber_name=HumanName(family="Rivera", given=["Luis"]),
        relationship="spouse", period=Period(start="2026-01-01", end="2026-12-31"), patient=patient(),
    )


ALL = {
    "Patient": patient, "Practitioner": practitioner, "Pharmacy": pharmacy, "Medication": medication,
    "Encounter": encounter, "Appointment": appointment, "Prescription": prescription,
    "ControlledPrescription": controlled_prescription, "PrescriptionEvent": rx_fill,
    "ClinicalNote": clinical_note, "Observation": pain_score, "DiagnosticReport": lab_report,
    "MergedPatient": merged_patient, "AllergyIntolerance": allergy, "Condition": condition, "Coverage": coverage,
}
