"""Code lists and identifier checks used by the SCRIPT plugin.

Only facts published outside NCPDP's licensed material are here: the NCI Thesaurus codes for DEA
schedules and a few units of measure, the NPI check digit (Luhn over the ``80840`` prefix, as CMS
publishes it), the DEA registration number check digit, and the NDC 10→11 digit padding rules.
"""

from __future__ import annotations

import re
from datetime import date, datetime

VERSION = "2017071"
VERSION_ATTRIBUTE = "20170715"
VERSION_ATTRIBUTES = ("DatatypesVersion", "TransportVersion", "TransactionDomain", "TransactionVersion",
                      "StructuresVersion", "ECLVersion")
LEGACY_NAMESPACE = "http://www.ncpdp.org/schema/SCRIPT"

SCHEDULE_BY_NCI = {
    "C48672": "CI",
    "C48675": "CII",
    "C48676": "CIII",
    "C48677": "CIV",
    "C48679": "CV",
    "C38046": "none",
}
NCI_BY_SCHEDULE = {schedule: code for code, schedule in SCHEDULE_BY_NCI.items()}
CONTROLLED = ("CI", "CII", "CIII", "CIV", "CV")

UNIT_BY_NCI = {
    "C48542": "tablet",
    "C48480": "capsule",
    "C28254": "mL",
    "C48155": "gram",
    "C64933": "each",
    "C48524": "patch",
    "C38046": "unspecified",
}
NCI_BY_UNIT = {unit.lower(): code for code, unit in UNIT_BY_NCI.items()}
# What other systems call those units: UCUM (http://unitsofmeasure.org, FHIR's usual choice) and its
# annotations, HL7 v3 orderableDrugForm codes (as in FHIR's MedicationRequest examples), HL7v2 RXE-5
# words, and plurals. Anything else has no NCI code here: the encoder refuses it rather than guess.
NCI_BY_UNIT.update({
    "ml": "C28254", "milliliter": "C28254", "milliliters": "C28254", "millilitre": "C28254",
    "g": "C48155", "gm": "C48155", "grams": "C48155",
    "tab": "C48542", "tabs": "C48542", "tablets": "C48542", "{tbl}": "C48542", "{tablet}": "C48542",
    "{tablets}": "C48542",
    "cap": "C48480", "caps": "C48480", "capsules": "C48480", "{capsule}": "C48480", "{capsules}": "C48480",
    "ea": "C64933", "{each}": "C64933",
    "patches": "C48524", "{patch}": "C48524",
})


def nci_unit_code(code: str | None, unit: str | None) -> str | None:
    """The NCI Thesaurus code SCRIPT needs for a quantity's unit: an NCI code as given, else the code
    or the unit text looked up among the names above (case-insensitive); None when neither is known."""
    if code and code in UNIT_BY_NCI:
        return code
    for name in (code, unit):
        if name and name.strip().lower() in NCI_BY_UNIT:
            return NCI_BY_UNIT[name.strip().lower()]
    return None

GENDER_TO_RECORD = {"M": "male", "F": "female", "U": "unknown"}
GENDER_FROM_RECORD = {"male": "M", "female": "F", "unknown": "U", "other": "U"}

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
DIAGNOSIS_QUALIFIER_SYSTEMS = {"ABF": ICD10_SYSTEM, "LD": "http://snomed.info/sct"}
DIAGNOSIS_SYSTEM_QUALIFIERS = {system: q for q, system in DIAGNOSIS_QUALIFIER_SYSTEMS.items()}

NCPDPID = re.compile(r"^\d{7}$")
NPI = re.compile(r"^\d{10}$")
DEA = re.compile(r"^[A-Z][A-Z9]\d{7}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
NDC_HYPHENATED = re.compile(r"^(\d{4,5})-(\d{3,4})-(\d{1,2})$")
DECIMAL = re.compile(r"^\d{1,11}(\.\d{1,5})?$")
WHOLE = re.compile(r"^\d{1,6}$")


def npi_is_valid(value: str) -> bool:
    """10 digits whose last digit is the Luhn check digit computed over ``80840`` + the first nine."""
    if not NPI.match(value):
        return False
    total = 0
    for position, char in enumerate(reversed("80840" + value)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def dea_problem(value: str) -> str | None:
    """Why ``value`` is not a DEA registration number, or None.

    Check digit: (d1 + d3 + d5) + 2 × (d2 + d4 + d6); its last digit must equal d7.
    """
    if not DEA.match(value):
        return "is not a DEA number (2 letters, or a letter and 9, then 7 digits)"
    d = [int(c) for c in value[2:]]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    if check != d[6]:
        return "has a wrong DEA check digit"
    return None


def normalize_ndc(value: str) -> str | None:
    """The 11-digit NDC for ``value`` (11 digits, or hyphenated 4-4-2, 5-3-2, 5-4-1), else None."""
    value = value.strip()
    if re.fullmatch(r"\d{11}", value):
        return value
    match = NDC_HYPHENATED.match(value)
    if not match:
        return None
    labeler, product, package = match.groups()
    if (len(labeler), len(product), len(package)) == (5, 4, 2):
        return labeler + product + package
    if len(labeler) + len(product) + len(package) != 10:
        return None
    return labeler.zfill(5) + product.zfill(4) + package.zfill(2)


def date_is_valid(value: str) -> bool:
    if not ISO_DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def datetime_is_valid(value: str) -> bool:
    if not ISO_DATETIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def format_decimal(value: float | int) -> str:
    """``90.0`` → ``"90"``, ``2.5`` → ``"2.5"``: SCRIPT quantities carry no needless zeros."""
    if float(value).is_integer():
        return str(int(value))
    return format(float(value), "f").rstrip("0").rstrip(".")
