"""Our own structural validation of SCRIPT 2017071 messages, reported by element path.

NCPDP's XSDs are licensed, so this is not schema validation: it checks what this engine relies on
— the header, one known transaction, the elements each transaction needs, and the formats of the
identifiers and codes (NCPDPID, NPI with its check digit, DEA number with its check digit, NDC,
DEA schedule, dates, numbers). Every problem is listed, each starting with its path, so an analyst
fixes a message in one pass. Values are echoed only for provider and product codes, never for
patient data.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

from .codes import (
    CONTROLLED,
    DECIMAL,
    GENDER_TO_RECORD,
    NCPDPID,
    SCHEDULE_BY_NCI,
    VERSION_ATTRIBUTE,
    WHOLE,
    date_is_valid,
    datetime_is_valid,
    dea_problem,
    normalize_ndc,
    npi_is_valid,
)
from .xmlsafe import local

TRANSACTIONS = ("NewRx", "CancelRx", "RxRenewalResponse", "RxChangeResponse", "Status", "Error", "Verify",
                "CancelRxResponse", "RxRenewalRequest", "RxChangeRequest", "RxFill")
NEEDS_RELATES_TO = ("Status", "Error", "Verify", "RxFill", "CancelRxResponse", "RxRenewalResponse",
                    "RxChangeResponse")
RESPONSE_CHOICES = {
    "CancelRxResponse": ("Approved", "Denied"),
    "RxRenewalResponse": ("Approved", "ApprovedWithChanges", "Denied", "Replace"),
    "RxChangeResponse": ("Approved", "ApprovedWithChanges", "Denied", "Validated"),
}
FILL_STATUSES = ("Dispensed", "PartiallyDispensed", "NotDispensed", "Transferred")
CHANGE_TYPES = ("G", "T", "D", "S", "OS", "P", "U")

PATIENT = ("Patient/HumanPatient/Name/LastName", "Patient/HumanPatient/Name/FirstName",
           "Patient/HumanPatient/Gender", "Patient/HumanPatient/DateOfBirth/Date")
PRESCRIBER = ("Prescriber/NonVeterinarian/Name/LastName", "Prescriber/NonVeterinarian/Identification/NPI")
PHARMACY = ("Pharmacy/Identification/NCPDPID",)


def _medication(element: str) -> tuple[str, ...]:
    return (f"{element}/DrugDescription", f"{element}/Quantity/Value", f"{element}/Quantity/CodeListQualifier",
            f"{element}/Quantity/QuantityUnitOfMeasure/Code")


REQUIRED: dict[str, tuple[str, ...]] = {
    "NewRx": PATIENT + PRESCRIBER + _medication("MedicationPrescribed")
    + ("MedicationPrescribed/WrittenDate/Date|MedicationPrescribed/WrittenDate/DateTime",
       "MedicationPrescribed/Substitutions", "MedicationPrescribed/NumberOfRefills"),
    "CancelRx": PATIENT + PHARMACY + PRESCRIBER + ("MedicationPrescribed/DrugDescription",),
    "RxRenewalResponse": ("Response",) + PATIENT + PHARMACY + PRESCRIBER,
    "RxChangeResponse": ("Response",) + PATIENT + PHARMACY + PRESCRIBER,
    "Status": ("Code",),
    "Error": ("Code",),
    "Verify": ("VerifyStatus/Code",),
    "CancelRxResponse": ("Response",),
    "RxRenewalRequest": PATIENT + PHARMACY + PRESCRIBER
    + ("MedicationDispensed/DrugDescription|MedicationPrescribed/DrugDescription",),
    "RxChangeRequest": ("MessageRequestCode",) + PATIENT + PHARMACY + PRESCRIBER
    + ("MedicationPrescribed/DrugDescription",),
    "RxFill": ("FillStatus",) + PATIENT + PHARMACY,
}
ROUTING_REQUIRED = {"NewRx": PHARMACY, "CancelRx": ()}


def find(element: ET.Element | None, path: str) -> ET.Element | None:
    node = element
    for name in path.split("/"):
        if node is None:
            return None
        node = next((c for c in node if local(c.tag) == name), None)
    return node


def has_text(element: ET.Element | None, path: str) -> bool:
    node = find(element, path)
    if node is None:
        return False
    if len(node):
        return True
    return bool(node.text and node.text.strip())


def walk(element: ET.Element, path: str) -> Iterator[tuple[str, ET.Element]]:
    for child in element:
        if isinstance(child.tag, str):
            child_path = f"{path}/{local(child.tag)}" if path else local(child.tag)
            yield child_path, child
            if local(child.tag) != "DigitalSignature":
                yield from walk(child, child_path)


def validate(root: ET.Element, *, routing_required: bool = False) -> list[str]:
    """Every structural problem of a SCRIPT ``<Message>``, each as ``"path: problem"``."""
    problems: list[str] = []
    problems += _version(root)
    header = find(root, "Header")
    body = find(root, "Body")
    if header is None:
        problems.append("Header is missing")
    if body is None:
        problems.append("Body is missing")
        return problems
    transactions = [c for c in body if isinstance(c.tag, str)]
    if len(transactions) != 1:
        problems.append(f"Body must hold exactly one transaction, found {len(transactions)}")
        return problems
    name = local(transactions[0].tag)
    if name not in TRANSACTIONS:
        problems.append(f"Body/{name} is not a supported transaction (supported: {', '.join(TRANSACTIONS)})")
        return problems
    problems += _header(header, name, routing_required)
    problems += _required(transactions[0], f"Body/{name}", name, routing_required)
    problems += _choices(transactions[0], f"Body/{name}", name)
    problems += _formats(root)
    problems += _controlled(transactions[0], f"Body/{name}")
    return problems


def transaction_of(root: ET.Element) -> str | None:
    body = find(root, "Body")
    first = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    return local(first.tag) if first is not None else None


def _version(root: ET.Element) -> list[str]:
    version = root.get("TransactionVersion")
    if version is not None and version.strip() != VERSION_ATTRIBUTE:
        return [f"Message/@TransactionVersion {version.strip()!r} is not supported (this plugin reads "
                f"SCRIPT 2017071, TransactionVersion {VERSION_ATTRIBUTE!r})"]
    return []


def _header(header: ET.Element | None, transaction: str, routing_required: bool) -> list[str]:
    if header is None:
        return []
    problems = []
    message_id = find(header, "MessageID")
    text = (message_id.text or "").strip() if message_id is not None else ""
    if not text:
        problems.append("Header/MessageID is missing")
    elif len(text) > 35:
        problems.append(f"Header/MessageID is {len(text)} characters, over the 35 allowed")
    if transaction in NEEDS_RELATES_TO and not has_text(header, "RelatesToMessageID"):
        problems.append(f"Header/RelatesToMessageID is missing (required on {transaction})")
    if routing_required:
        for path in ("To", "From", "SentTime"):
            if not has_text(header, path):
                problems.append(f"Header/{path} is missing")
        if transaction == "CancelRx" and not has_text(header, "PrescriberOrderNumber"):
            problems.append("Header/PrescriberOrderNumber is missing (required on CancelRx)")
    return problems


def _required(element: ET.Element, path: str, transaction: str, routing_required: bool) -> list[str]:
    wanted = REQUIRED[transaction] + (ROUTING_REQUIRED.get(transaction, ()) if routing_required else ())
    problems = []
    for rule in wanted:
        alternatives = rule.split("|")
        if not any(has_text(element, alt) for alt in alternatives):
            problems.append(" or ".join(f"{path}/{alt}" for alt in alternatives) + " is missing")
    return problems


def _choices(element: ET.Element, path: str, transaction: str) -> list[str]:
    problems = []
    if transaction in RESPONSE_CHOICES:
        response = find(element, "Response")
        choice = next((c for c in response if isinstance(c.tag, str)), None) if response is not None else None
        allowed = RESPONSE_CHOICES[transaction]
        if response is not None and (choice is None or local(choice.tag) not in allowed):
            found = local(choice.tag) if choice is not None else "nothing"
            problems.append(f"{path}/Response must hold one of {', '.join(allowed)}, found {found}")
    if transaction == "RxFill":
        status = find(element, "FillStatus")
        choice = next((c for c in status if isinstance(c.tag, str)), None) if status is not None else None
        if status is not None and (choice is None or local(choice.tag) not in FILL_STATUSES):
            found = local(choice.tag) if choice is not None else "nothing"
            problems.append(f"{path}/FillStatus must hold one of {', '.join(FILL_STATUSES)}, found {found}")
    if transaction == "RxChangeRequest":
        code = (find(element, "MessageRequestCode").text or "").strip() if find(element, "MessageRequestCode") is not None else ""
        if code and code not in CHANGE_TYPES:
            problems.append(f"{path}/MessageRequestCode {code!r} is not one of {', '.join(CHANGE_TYPES)}")
    return problems


def _formats(root: ET.Element) -> list[str]:
    problems = []
    for path, element in walk(root, ""):
        if len(element):
            if local(element.tag) == "ProductCode":
                problems += _product_code(element, path)
            continue
        problem = _leaf_problem(path, local(element.tag), (element.text or "").strip())
        if problem:
            problems.append(f"{path} {problem}")
    return problems


def _leaf_problem(path: str, name: str, text: str) -> str | None:
    if not text:
        return None
    parent = path.rsplit("/", 2)[-2] if path.count("/") >= 1 else ""
    if name == "NCPDPID" and not NCPDPID.match(text):
        return f"{text!r} is not an NCPDPID (7 digits)"
    if name == "NPI" and not npi_is_valid(text):
        return f"{text!r} is not a valid NPI (10 digits with the Luhn check digit over prefix 80840)"
    if name == "DEANumber":
        problem = dea_problem(text)
        return f"{text!r} {problem}" if problem else None
    if name == "Date" and not date_is_valid(text):
        return "is not a date (YYYY-MM-DD)"
    if name in ("DateTime", "SentTime") and not datetime_is_valid(text):
        return "is not a date-time (YYYY-MM-DDThh:mm:ss with an offset or Z)"
    if name == "Code" and parent == "DEASchedule" and text not in SCHEDULE_BY_NCI:
        return f"{text!r} is not a DEA schedule NCI code ({', '.join(sorted(SCHEDULE_BY_NCI))})"
    if name == "Gender" and text not in GENDER_TO_RECORD:
        return "is not one of M, F, U"  # the value is not quoted: a misplaced field here held a surname
    if name == "Value" and parent == "Quantity" and not DECIMAL.match(text):
        return f"{text!r} is not a decimal quantity"
    if name in ("NumberOfRefills", "DaysSupply") and not WHOLE.match(text):
        return f"{text!r} is not a whole number"
    if name == "Substitutions" and not text.isdigit():
        return f"{text!r} is not a substitution code (0 allowed, 1 dispense as written)"
    if name == "Code" and parent in ("Status", "Error", "VerifyStatus") and not (text.isdigit() and len(text) == 3):
        return f"{text!r} is not a 3-digit code"
    return None


def _product_code(element: ET.Element, path: str) -> list[str]:
    qualifier = (find(element, "Qualifier").text or "").strip() if find(element, "Qualifier") is not None else ""
    code = (find(element, "Code").text or "").strip() if find(element, "Code") is not None else ""
    if not code:
        return [f"{path}/Code is missing"]
    if qualifier == "ND" and normalize_ndc(code) is None:
        return [f"{path}/Code {code!r} is not an NDC (11 digits, or 10 digits hyphenated 4-4-2, 5-3-2 or 5-4-1)"]
    return []


def _controlled(element: ET.Element, path: str) -> list[str]:
    """21 CFR 1306.05: every controlled prescription carries the prescriber's DEA number."""
    problems = []
    for name in ("MedicationPrescribed",):
        code = find(element, f"{name}/DrugCoded/DEASchedule/Code")
        schedule = SCHEDULE_BY_NCI.get((code.text or "").strip()) if code is not None else None
        if schedule in CONTROLLED and not has_text(element, "Prescriber/NonVeterinarian/Identification/DEANumber"):
            problems.append(f"{path}/Prescriber/NonVeterinarian/Identification/DEANumber is missing "
                            f"(required on a schedule {schedule} prescription)")
    return problems
