"""The SCRIPT building blocks shared by transactions: patient, prescriber, pharmacy, medication.

Each block has a reader (elements → records, marking what it read) and a writer (records →
elements) that mirror each other, so a block read and written again is the same block. Defaults
that SCRIPT requires but records have no field for (quantity qualifier ``38``, DrugDBCode
qualifier ``SCD``, diagnosis qualifier ``1``) are written by the writer and kept in ``extra`` by
the reader only when a message carried something else.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from bridge import (
    Address,
    Coding,
    ContactPoint,
    DEARegistration,
    HumanName,
    Identifier,
    Medication,
    Patient,
    Pharmacy,
    Practitioner,
    Quantity,
    StateLicense,
)

from .codes import (
    DIAGNOSIS_QUALIFIER_SYSTEMS,
    DIAGNOSIS_SYSTEM_QUALIFIERS,
    GENDER_FROM_RECORD,
    GENDER_TO_RECORD,
    NCI_BY_SCHEDULE,
    SCHEDULE_BY_NCI,
    UNIT_BY_NCI,
    nci_unit_code,
    format_decimal,
    normalize_ndc,
)
from .tree import Reader, ensure, put, sub
from .validate import find

DEFAULT_QUANTITY_QUALIFIER = "38"
DEFAULT_DRUG_DB_QUALIFIER = "SCD"
DEFAULT_DIAGNOSIS_QUALIFIER = "1"
MR = "MR"


# --- names, addresses, telecom -------------------------------------------------------------------


def read_name(r: Reader, element: ET.Element | None) -> HumanName | None:
    name = r.child(element, "Name")
    if name is None:
        return None
    given = [g for g in (r.text(name, "FirstName"), r.text(name, "MiddleName")) if g]
    return HumanName(family=r.text(name, "LastName"), given=given, prefix=r.text(name, "Prefix"),
                     suffix=r.text(name, "Suffix"))


def write_name(parent: ET.Element, name: HumanName | None) -> None:
    if name is None:
        return
    element = sub(parent, "Name")
    put(element, "LastName", name.family)
    put(element, "FirstName", name.given[0] if name.given else None)
    put(element, "MiddleName", " ".join(name.given[1:]) if len(name.given) > 1 else None)
    put(element, "Suffix", name.suffix)
    put(element, "Prefix", name.prefix)


def read_address(r: Reader, element: ET.Element | None) -> Address | None:
    address = r.child(element, "Address")
    if address is None:
        return None
    lines = [line for line in (r.text(address, "AddressLine1"), r.text(address, "AddressLine2")) if line]
    return Address(lines=lines, city=r.text(address, "City"), state=r.text(address, "StateProvince"),
                   postal_code=r.text(address, "PostalCode"), country=r.text(address, "CountryCode"))


def write_address(parent: ET.Element, address: Address | None) -> None:
    if address is None:
        return
    element = sub(parent, "Address")
    put(element, "AddressLine1", address.lines[0] if address.lines else None)
    put(element, "AddressLine2", ", ".join(address.lines[1:]) if len(address.lines) > 1 else None)
    put(element, "City", address.city)
    put(element, "StateProvince", address.state)
    put(element, "PostalCode", address.postal_code)
    put(element, "CountryCode", address.country)


TELECOM = (("phone", "PrimaryTelephone/Number"), ("email", "ElectronicMail"), ("fax", "Fax/Number"))


def read_telecom(r: Reader, element: ET.Element | None) -> list[ContactPoint]:
    numbers = r.child(element, "CommunicationNumbers")
    found = []
    for system, path in TELECOM:
        value = r.text(numbers, path)
        if value:
            found.append(ContactPoint(value=value, system=system))
    return found


def write_telecom(parent: ET.Element, telecom: list[ContactPoint]) -> None:
    firsts = {}
    for contact in telecom:
        firsts.setdefault(contact.system, contact.value)
    if not any(system in firsts for system, _ in TELECOM):
        return
    element = sub(parent, "CommunicationNumbers")
    for system, path in TELECOM:
        put(element, path, firsts.get(system))


# --- people and places --------------------------------------------------------------------------


def read_patient(r: Reader, element: ET.Element | None) -> Patient | None:
    human = r.child(element, "HumanPatient")
    if human is None:
        return None
    identifiers = []
    mrn = r.text(human, "Identification/MedicalRecordIdentificationNumberEHR")
    if mrn:
        identifiers.append(Identifier(value=mrn, type=MR))
    gender = r.text(human, "Gender")
    return Patient(identifiers=identifiers, name=read_name(r, human),
                   gender=GENDER_TO_RECORD.get(gender or "", None),
                   birth_date=r.text(human, "DateOfBirth/Date"),
                   addresses=[a for a in [read_address(r, human)] if a], telecom=read_telecom(r, human))


def write_patient(parent: ET.Element, patient: Patient | None) -> None:
    if patient is None:
        return
    human = ensure(sub(parent, "Patient"), "HumanPatient")
    mrn = next((i.value for i in patient.identifiers if i.type == MR), None)
    put(human, "Identification/MedicalRecordIdentificationNumberEHR", mrn)
    write_name(human, patient.name)
    put(human, "Gender", GENDER_FROM_RECORD.get(patient.gender or "", None))
    put(human, "DateOfBirth/Date", patient.birth_date)
    write_address(human, patient.addresses[0] if patient.addresses else None)
    write_telecom(human, patient.telecom)


def read_prescriber(r: Reader, element: ET.Element | None) -> Practitioner | None:
    person = r.child(element, "NonVeterinarian")
    if person is None:
        return None
    ident = r.child(person, "Identification")
    dea = r.text(ident, "DEANumber")
    licence = r.text(ident, "StateLicenseNumber")
    return Practitioner(
        npi=r.text(ident, "NPI"),
        name=read_name(r, person),
        dea_registrations=[DEARegistration(number=dea)] if dea else [],
        # SCRIPT 2017071 does not say which state issued the licence: the state is left empty.
        licenses=[StateLicense(state="", number=licence)] if licence else [],
        addresses=[a for a in [read_address(r, person)] if a],
        telecom=read_telecom(r, person),
    )


def write_prescriber(parent: ET.Element, practitioner: Practitioner | None) -> None:
    if practitioner is None:
        return
    person = ensure(sub(parent, "Prescriber"), "NonVeterinarian")
    ident = sub(person, "Identification")
    put(ident, "NPI", practitioner.npi)
    put(ident, "DEANumber", practitioner.dea_registrations[0].number if practitioner.dea_registrations else None)
    put(ident, "StateLicenseNumber", practitioner.licenses[0].number if practitioner.licenses else None)
    write_name(person, practitioner.name)
    write_address(person, practitioner.addresses[0] if practitioner.addresses else None)
    write_telecom(person, practitioner.telecom)


def read_pharmacy(r: Reader, element: ET.Element | None) -> Pharmacy | None:
    if element is None:
        return None
    ident = r.child(element, "Identification")
    return Pharmacy(ncpdp_id=r.text(ident, "NCPDPID"), npi=r.text(ident, "NPI"),
                    name=r.text(element, "BusinessName"), address=read_address(r, element),
                    telecom=read_telecom(r, element))


def write_pharmacy(parent: ET.Element, pharmacy: Pharmacy | None) -> None:
    if pharmacy is None:
        return
    element = sub(parent, "Pharmacy")
    ident = sub(element, "Identification")
    put(ident, "NCPDPID", pharmacy.ncpdp_id)
    put(ident, "NPI", pharmacy.npi)
    put(element, "BusinessName", pharmacy.name)
    write_address(element, pharmacy.address)
    write_telecom(element, pharmacy.telecom)


# --- medication ---------------------------------------------------------------------------------


@dataclass
class MedicationBlock:
    """One MedicationPrescribed/Dispensed/Requested/Response element as record values."""

    medication: Medication | None = None
    quantity: Quantity | None = None
    days_supply: int | None = None
    refills: int | None = None
    sig: str | None = None
    substitution_allowed: bool | None = None
    written_date: str | None = None
    diagnosis: list[Coding] = field(default_factory=list)
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def read_medication(r: Reader, element: ET.Element | None) -> MedicationBlock | None:
    if element is None:
        return None
    block = MedicationBlock(medication=_read_drug(r, element), quantity=_read_quantity(r, element))
    qualifier = r.text(element, "Quantity/CodeListQualifier")
    if qualifier and qualifier != DEFAULT_QUANTITY_QUALIFIER:
        block.extra["quantity_qualifier"] = qualifier
    block.days_supply = _int(r.text(element, "DaysSupply"))
    block.written_date = r.text(element, "WrittenDate/Date") or r.text(element, "WrittenDate/DateTime")
    substitutions = r.text(element, "Substitutions")
    if substitutions in ("0", "1"):
        block.substitution_allowed = substitutions == "0"
    elif substitutions is not None:
        block.extra["substitutions"] = substitutions
    block.refills = _int(r.text(element, "NumberOfRefills"))
    block.sig = r.text(element, "Sig/SigText")
    block.diagnosis = _read_diagnoses(r, element, block.extra)
    block.note = r.text(element, "Note")
    return block


def _read_drug(r: Reader, element: ET.Element) -> Medication:
    medication = Medication(description=r.text(element, "DrugDescription"))
    coded = r.child(element, "DrugCoded")
    product = find(coded, "ProductCode")
    if product is not None and (find(product, "Qualifier") is not None
                                and (find(product, "Qualifier").text or "").strip() == "ND"):
        r.child(coded, "ProductCode/Qualifier")
        code = r.text(coded, "ProductCode/Code")
        medication.ndc = normalize_ndc(code) if code else None
    strength = r.child(coded, "Strength")
    if strength is not None:
        medication.strength = r.text(strength, "StrengthValue")
        medication.form = r.text(strength, "StrengthForm/Code")
    medication.rxnorm = r.text(coded, "DrugDBCode/Code")
    db_qualifier = r.text(coded, "DrugDBCode/Qualifier")
    if db_qualifier and db_qualifier != DEFAULT_DRUG_DB_QUALIFIER:
        medication.extra["ncpdp"] = {"drug_db_qualifier": db_qualifier}
    schedule = r.text(coded, "DEASchedule/Code")
    medication.dea_schedule = SCHEDULE_BY_NCI.get(schedule) if schedule else None
    return medication


def _read_quantity(r: Reader, element: ET.Element) -> Quantity | None:
    value = r.text(element, "Quantity/Value")
    if value is None:
        return None
    code = r.text(element, "Quantity/QuantityUnitOfMeasure/Code")
    return Quantity(value=float(value), unit=UNIT_BY_NCI.get(code or ""), code=code)


def _read_diagnoses(r: Reader, element: ET.Element, extra: dict[str, Any]) -> list[Coding]:
    codings = []
    for diagnosis in r.children(element, "Diagnosis"):
        qualifier = r.text(diagnosis, "ClinicalInformationQualifier")
        if qualifier and qualifier != DEFAULT_DIAGNOSIS_QUALIFIER:
            extra["diagnosis_qualifier"] = qualifier
        for rank in ("Primary", "Secondary"):
            code = r.text(diagnosis, f"{rank}/Code")
            if code:
                system_q = r.text(diagnosis, f"{rank}/Qualifier") or ""
                codings.append(Coding(code=code, system=DIAGNOSIS_QUALIFIER_SYSTEMS.get(system_q, system_q or None),
                                      display=r.text(diagnosis, f"{rank}/Description")))
    return codings


def write_medication(parent: ET.Element, name: str, block: MedicationBlock) -> None:
    element = sub(parent, name)
    medication = block.medication or Medication()
    put(element, "DrugDescription", medication.description)
    _write_drug_coded(element, medication)
    _write_quantity(element, block)
    put(element, "DaysSupply", block.days_supply)
    if block.written_date:
        put(element, "WrittenDate/DateTime" if "T" in block.written_date else "WrittenDate/Date", block.written_date)
    substitutions = block.extra.get("substitutions")
    if substitutions is None and block.substitution_allowed is not None:
        substitutions = "0" if block.substitution_allowed else "1"
    put(element, "Substitutions", substitutions)
    put(element, "NumberOfRefills", block.refills)
    put(element, "Sig/SigText", block.sig)
    _write_diagnoses(element, block)
    put(element, "Note", block.note)


def _write_drug_coded(element: ET.Element, medication: Medication) -> None:
    if not any((medication.ndc, medication.strength, medication.form, medication.rxnorm, medication.dea_schedule)):
        return
    coded = sub(element, "DrugCoded")
    if medication.ndc:
        product = sub(coded, "ProductCode")
        put(product, "Code", normalize_ndc(medication.ndc) or medication.ndc)
        put(product, "Qualifier", "ND")
    if medication.strength or medication.form:
        strength = sub(coded, "Strength")
        put(strength, "StrengthValue", medication.strength)
        put(strength, "StrengthForm/Code", medication.form)
    if medication.rxnorm:
        db = sub(coded, "DrugDBCode")
        put(db, "Code", medication.rxnorm)
        put(db, "Qualifier", (medication.extra.get("ncpdp") or {}).get("drug_db_qualifier", DEFAULT_DRUG_DB_QUALIFIER))
    if medication.dea_schedule:
        put(coded, "DEASchedule/Code", NCI_BY_SCHEDULE.get(medication.dea_schedule, medication.dea_schedule))


def _write_quantity(element: ET.Element, block: MedicationBlock) -> None:
    quantity = block.quantity
    if quantity is None:
        return
    node = sub(element, "Quantity")
    put(node, "Value", format_decimal(quantity.value))
    put(node, "CodeListQualifier", block.extra.get("quantity_qualifier", DEFAULT_QUANTITY_QUALIFIER))
    put(node, "QuantityUnitOfMeasure/Code", nci_unit_code(quantity.code, quantity.unit))


def _write_diagnoses(element: ET.Element, block: MedicationBlock) -> None:
    codings = list(block.diagnosis)
    while codings:
        pair, codings = codings[:2], codings[2:]
        diagnosis = sub(element, "Diagnosis")
        put(diagnosis, "ClinicalInformationQualifier", block.extra.get("diagnosis_qualifier", DEFAULT_DIAGNOSIS_QUALIFIER))
        for rank, coding in zip(("Primary", "Secondary"), pair):
            node = sub(diagnosis, rank)
            put(node, "Code", coding.code)
            put(node, "Qualifier", DIAGNOSIS_SYSTEM_QUALIFIERS.get(coding.system or "", coding.system))
            put(node, "Description", coding.display)
