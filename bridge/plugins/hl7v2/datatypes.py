"""HL7v2 data types to and from the canonical value types (TS/DTM, CX, XPN, XAD, XTN, CWE, XCN).

Each ``read_*`` takes one wire repetition and the message's separators; each ``write_*`` returns a
wire value in standard separators, already escaped. Readers and writers are inverse on what the
writers produce, which is what makes encode → decode → encode stable. Code-system names map to the
URIs FHIR uses (NDC, RxNorm, LOINC, SNOMED CT, ICD-10) and back; HL7 tables stay ``HL7nnnn``.
"""

from __future__ import annotations

import re

from bridge import Address, Coding, ContactPoint, HumanName, Identifier, Practitioner

from .header import Separators
from .reader import comp, esc, sub, text

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
_ISO = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)
_LIMITS = (None, (1, 12), (1, 31), (0, 23), (0, 59), (0, 60))

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
NPI_OID = "2.16.840.1.113883.4.6"
CODE_SYSTEMS = {
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "UCUM": "http://unitsofmeasure.org",
}
_SYSTEM_NAMES = {uri: name for name, uri in CODE_SYSTEMS.items()}
_SYSTEM_ALIASES = {"RXN": "RXNORM", "RXNORM": "RXNORM", "SNM": "SCT", "SNOMEDCT": "SCT", "LOINC": "LN"}

NAME_USES = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "S": "anonymous"}
ADDRESS_USES = {"H": "home", "B": "work", "C": "temp", "BA": "old"}
TELECOM_USES = {"PRN": "home", "WPN": "work", "VHN": "temp"}
TELECOM_SYSTEMS = {"PH": "phone", "FX": "fax", "Internet": "email", "X.400": "email", "CP": "phone",
                   "BP": "other", "MD": "other", "TDD": "other", "TTY": "other"}
_REVERSE_SYSTEMS = {"phone": "PH", "fax": "FX", "email": "Internet", "url": "Internet", "other": "BP"}


def _reverse(mapping: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for code, value in mapping.items():
        out.setdefault(value, code)
    return out


# --- dates ---------------------------------------------------------------------------------------


def read_datetime(value: str) -> str | None:
    """HL7 DTM/TS (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``) → ISO 8601 with the same precision.

    Returns None for a value that is not a valid HL7 date (``2014/09/09 12:11:11``): the caller
    keeps the raw text so nothing is lost. A TS's degree-of-precision component is ignored.
    """
    value = value.split("^", 1)[0].strip()
    match = _TS.match(value)
    if not match:
        return None
    year, *parts, frac, offset = match.groups()
    numbers = [p for p in parts if p is not None]
    for number, limits in zip(numbers, _LIMITS[1:]):
        low, high = limits
        if not low <= int(number) <= high:
            return None
    out = year
    for i, number in enumerate(numbers):
        out += ("-", "-", "T", ":", ":")[i] + number
    if frac and len(numbers) == 5:
        out += frac
    if offset and len(numbers) >= 3:
        out += f"{offset[:3]}:{offset[3:]}"
    return out


def write_number(value: float | int | None) -> str:
    """A number as HL7 NM: no trailing ``.0``, no exponent."""
    if value is None:
        return ""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def write_datetime(value: str | None) -> str:
    """ISO 8601 → HL7 DTM keeping its precision (``Z`` becomes ``+0000``)."""
    if not value:
        return ""
    match = _ISO.match(value)
    if not match:
        return ""
    year, month, day, hour, minute, second, frac, offset = match.groups()
    out = year + "".join(p for p in (month, day, hour, minute, second) if p)
    if frac and second:
        out += frac
    if offset:
        out += "+0000" if offset == "Z" else offset.replace(":", "")
    return out


# --- codes ---------------------------------------------------------------------------------------


def system_uri(name: str) -> str | None:
    """A v2 coding-system name (table 0396) → the URI FHIR uses, or the name itself."""
    if not name:
        return None
    key = _SYSTEM_ALIASES.get(name.upper(), name)
    return CODE_SYSTEMS.get(key, name)


def system_name(uri: str | None) -> str:
    if not uri:
        return ""
    return _SYSTEM_NAMES.get(uri, uri)


def read_coding(value: str, seps: Separators) -> Coding | None:
    """CE/CWE/CNE → Coding (code, display, system); the alternate triplet is ignored."""
    if not value:
        return None
    parts = value.split(seps.component)
    code = text(parts[0], seps)
    display = text(parts[1], seps) if len(parts) > 1 else ""
    system = text(parts[2], seps) if len(parts) > 2 else ""
    if not code and not display:
        return None
    return Coding(code=code, display=display or None, system=system_uri(system))


def read_codings(value: str, seps: Separators) -> list[Coding]:
    """CWE with its alternate triplet (components 4-6) as a second coding."""
    codings = []
    first = read_coding(value, seps)
    if first:
        codings.append(first)
    parts = value.split(seps.component) if value else []
    if len(parts) > 3:
        alt = read_coding(seps.component.join(parts[3:6]), seps)
        if alt:
            codings.append(alt)
    return codings


def write_coding(coding: Coding | None) -> str:
    if coding is None:
        return ""
    return comp(esc(coding.code), esc(coding.display), esc(system_name(coding.system)))


# --- identifiers ---------------------------------------------------------------------------------


def _read_hd(value: str, seps: Separators) -> tuple[str | None, str | None]:
    """HD (namespace & universal id & type) → (assigner, system)."""
    subs = value.split(seps.subcomponent)
    namespace = text(subs[0], seps)
    universal = text(subs[1], seps) if len(subs) > 1 else ""
    kind = text(subs[2], seps) if len(subs) > 2 else ""
    system = None
    if universal:
        prefix = {"ISO": "urn:oid:", "UUID": "urn:uuid:"}.get(kind.upper(), "")
        system = universal if universal.startswith(("urn:", "http")) else prefix + universal
    return namespace or None, system


def _write_hd(assigner: str | None, system: str | None) -> str:
    if system and system.startswith("urn:oid:"):
        return sub(esc(assigner), esc(system[8:]), "ISO")
    if system and system.startswith("urn:uuid:"):
        return sub(esc(assigner), esc(system[9:]), "UUID")
    return sub(esc(assigner), esc(system))


read_hd = _read_hd
"""HD → (assigner, system), for the readers outside this module (places.py: XON assigning authority)."""
write_hd = _write_hd


def read_identifier(value: str, seps: Separators, default_type: str | None = None) -> Identifier | None:
    """CX → Identifier: CX.1 value, CX.4 assigning authority (assigner, system), CX.5 type."""
    parts = value.split(seps.component)
    ident = text(parts[0], seps)
    if not ident:
        return None
    assigner, system = _read_hd(parts[3], seps) if len(parts) > 3 else (None, None)
    kind = text(parts[4], seps) if len(parts) > 4 else ""
    return Identifier(value=ident, system=system, type=kind or default_type, assigner=assigner)


def write_identifier(identifier: Identifier) -> str:
    return comp(esc(identifier.value), "", "", _write_hd(identifier.assigner, identifier.system),
                esc(identifier.type))


# --- names, addresses, telecom -------------------------------------------------------------------


def read_name(value: str, seps: Separators) -> HumanName | None:
    """XPN → HumanName: family, given + middle names, suffix, prefix, use from XPN.7 (table 0200)."""
    parts = value.split(seps.component)
    get = lambda i: text(parts[i], seps) if len(parts) > i else ""  # noqa: E731
    family = text(parts[0].split(seps.subcomponent)[0], seps) if parts else ""
    given = [g for g in (get(1), *get(2).split(" ")) if g] if get(2) else [g for g in (get(1),) if g]
    name = HumanName(family=family or None, given=given, suffix=get(3) or None, prefix=get(4) or None,
                     use=NAME_USES.get(get(6)))
    if not (name.family or name.given):
        return None
    return name


def write_name(name: HumanName | None) -> str:
    if name is None:
        return ""
    given = name.given[0] if name.given else ""
    middle = " ".join(name.given[1:])
    return comp(esc(name.family), esc(given), esc(middle), esc(name.suffix), esc(name.prefix), "",
                _reverse(NAME_USES).get(name.use or "", ""))


def read_address(value: str, seps: Separators) -> Address | None:
    """XAD → Address: street (SAD parts joined by a space), other designation, city, state, zip…"""
    parts = value.split(seps.component)
    get = lambda i: text(parts[i], seps) if len(parts) > i else ""  # noqa: E731
    street = " ".join(t for t in (text(s, seps) for s in parts[0].split(seps.subcomponent)) if t)
    lines = [line for line in (street, get(1)) if line]
    address = Address(lines=lines, city=get(2) or None, state=get(3) or None, postal_code=get(4) or None,
                      country=get(5) or None, use=ADDRESS_USES.get(get(6)))
    if not (lines or address.city or address.state or address.postal_code or address.country):
        return None
    return address


def write_address(address: Address) -> str:
    """Lines beyond the second are joined into XAD.2 (XAD has only two street components)."""
    first = address.lines[0] if address.lines else ""
    other = ", ".join(address.lines[1:])
    return comp(esc(first), esc(other), esc(address.city), esc(address.state), esc(address.postal_code),
                esc(address.country), _reverse(ADDRESS_USES).get(address.use or "", ""))


def read_telecom(value: str, seps: Separators) -> ContactPoint | None:
    """XTN → ContactPoint: XTN.1 (or XTN.4 e-mail, or country/area/local), use XTN.2, system XTN.3."""
    parts = value.split(seps.component)
    get = lambda i: text(parts[i], seps) if len(parts) > i else ""  # noqa: E731
    equipment = get(2)
    number = get(0) or get(3) or "".join(p for p in (get(4) and "+" + get(4), get(5), get(6)) if p)
    if not number:
        return None
    system = TELECOM_SYSTEMS.get(equipment)
    if system is None and get(3) and not get(0):
        system = "email"
    use = TELECOM_USES.get(get(1)) or ("mobile" if equipment == "CP" else None)
    return ContactPoint(value=number, system=system, use=use)


def write_telecom(point: ContactPoint) -> str:
    use = _reverse(TELECOM_USES).get(point.use or "", "")
    equipment = _REVERSE_SYSTEMS.get(point.system or "", "")
    if point.use == "mobile" and point.system == "phone":
        equipment = "CP"
    if point.system == "email":
        return comp("", use, equipment, esc(point.value))
    return comp(esc(point.value), use, equipment)


# --- practitioners -------------------------------------------------------------------------------


def read_practitioner(value: str, seps: Separators) -> Practitioner | None:
    """XCN → Practitioner. An id whose type (XCN.13) or authority (XCN.9) says NPI fills ``npi``.

    The plain form ``NPI^family^given^^^^^^^^^^NPI`` (what we write) carries the NPI only; any other
    identified form is kept in ``identifiers`` too, with its authority and type.
    """
    parts = value.split(seps.component)
    get = lambda i: text(parts[i], seps) if len(parts) > i else ""  # noqa: E731
    ident, kind = get(0), get(12)
    assigner, system = _read_hd(parts[8], seps) if len(parts) > 8 and parts[8] else (None, None)
    family = text(parts[1].split(seps.subcomponent)[0], seps) if len(parts) > 1 else ""
    given = [g for g in (get(2), *get(3).split(" ")) if g]
    name = HumanName(family=family or None, given=given, suffix=get(4) or None, prefix=get(5) or None)
    if not (name.family or name.given):
        name = None
    if not ident and name is None:
        return None
    is_npi = kind == "NPI" or (assigner or "").upper() in ("NPI", "CMS") and kind in ("", "NPI") \
        or system == f"urn:oid:{NPI_OID}"
    practitioner = Practitioner(name=name, npi=ident if ident and is_npi else None)
    plain_npi = is_npi and kind == "NPI" and assigner is None and system is None
    if ident and not plain_npi:
        practitioner.identifiers.append(Identifier(value=ident, system=system, type=kind or None, assigner=assigner))
    return practitioner


def write_practitioner(practitioner: Practitioner | None) -> str:
    if practitioner is None:
        return ""
    name = practitioner.name or HumanName()
    names = [esc(name.family), esc(name.given[0] if name.given else ""), esc(" ".join(name.given[1:])),
             esc(name.suffix), esc(name.prefix)]
    if practitioner.identifiers:
        ident = practitioner.identifiers[0]
        return comp(esc(ident.value), *names, "", "", _write_hd(ident.assigner, ident.system), "", "", "",
                    esc(ident.type))
    if practitioner.npi:
        return comp(esc(practitioner.npi), *names, "", "", "", "", "", "", "NPI")
    return comp("", *names)
