"""Identifier and coding systems as absolute URIs, and back: one mapping for every FHIR resource.

FHIR requires ``Identifier.system`` and ``Coding.system`` to be absolute URIs; HL7v2 senders name
systems by OID (``2.16.840.1.113883.6.1``), by an HL7 name (``LN``, ``NPI``, ``HL70203``) or by a
name of their own (``99ZZZ``, ``L``). :func:`system_uri` turns each into a URI; :func:`system_name`
is its reverse for the names only we can have written (local names), so a sender's
own name survives a FHIR round trip unchanged. Public: vendor plugins import it from here (see
``docs/fhir.md``, "Systems").
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote

from . import constants as C

LOCAL = C.CS_LOCAL
"""The one namespace for a sender's own system names: ``…/CodeSystem/v2-local/<name>``."""
LEGACY_LOCAL = (f"{C.BASE}/CodeSystem/local/",)
"""Namespaces earlier releases wrote for results; read as :data:`LOCAL`, never written."""

_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_HL7_TABLE = re.compile(r"^HL7(\d{4})$", re.IGNORECASE)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
"""An absolute URI: a scheme, a colon, no spaces (``POST 12H CFST:MCNC`` is a name with a colon)."""
_SCHEMES = ("http", "https", "urn", "ftp", "mailto", "tel", "ldap", "file", "oid")

KNOWN: dict[str, str] = {
    # identifier systems (HL7 table 0203 authorities and the names senders use for them)
    "NPI": C.NPI,
    "SSN": "http://hl7.org/fhir/sid/us-ssn",
    "SS": "http://hl7.org/fhir/sid/us-ssn",
    "SSA": "http://hl7.org/fhir/sid/us-ssn",
    "USSSA": "http://hl7.org/fhir/sid/us-ssn",
    "MBI": "http://hl7.org/fhir/sid/us-mbi",
    # code systems (HL7 table 0396 names and common spellings)
    "LN": C.LOINC,
    "LOINC": C.LOINC,
    "SCT": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "SNOMED-CT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "RXNORM": C.RXNORM,
    "RXN": C.RXNORM,
    "NDC": C.NDC,
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "C4": "http://www.ama-assn.org/go/cpt",
    "UCUM": C.UCUM,
    "UNII": "http://fdasis.nlm.nih.gov",
    "NCI": "http://ncimeta.nci.nih.gov",
}
"""Names with a canonical URL (keys upper case; a sender's name is matched case-insensitively).
Sources: FHIR R4 "Using Codes" (terminologies.html, the external code systems table) and HL7 table
0396. As in table 0396 and the HL7v2 decoder (``bridge.plugins.hl7v2.datatypes.CODE_SYSTEMS``), ``I10``
is WHO ICD-10 and ``I10C`` ICD-10-CM: a sender that means ICD-10-CM says ``I10C``."""

PREFERRED_NAME: dict[str, str] = {
    C.NPI: "NPI", "http://hl7.org/fhir/sid/us-ssn": "SS", C.LOINC: "LN", "http://snomed.info/sct": "SCT",
    "http://hl7.org/fhir/sid/icd-10": "I10", "http://hl7.org/fhir/sid/icd-10-cm": "I10C",
    "http://hl7.org/fhir/sid/icd-9-cm": "I9C",
    C.RXNORM: "RXNORM", C.NDC: "NDC", "http://hl7.org/fhir/sid/cvx": "CVX", C.UCUM: "UCUM",
    "http://www.ama-assn.org/go/cpt": "C4",
}
"""The HL7v2 name (table 0396) of a canonical URL, for encoders that write HL7v2."""


def is_absolute(system: str | None) -> bool:
    """True for an absolute URI as FHIR requires (``urn:oid:1.2``, ``http://loinc.org``)."""
    if not system or not _URI.match(system):
        return False
    scheme = system.split(":", 1)[0].lower()
    return scheme in _SCHEMES or "//" in system


@lru_cache(maxsize=2048)  # a pure function of a text, asked for every identifier and coding written
def system_uri(system: str | None) -> str | None:
    """A sender's system as an absolute URI, for any Identifier.system or Coding.system we write.

    URIs stay as they are; known names become their canonical URL (``NPI`` → us-npi, ``LN`` →
    loinc.org); ``HL7nnnn`` the v2 table's code system; a bare OID ``urn:oid:…``; any other name
    ``…/CodeSystem/v2-local/<name>`` (percent-encoded), which :func:`system_name` reverses.
    """
    if not system:
        return None
    if is_absolute(system):
        return system
    known = KNOWN.get(system.upper())
    if known:
        return known
    table = _HL7_TABLE.match(system)
    if table:
        return C.V2_TABLE + table.group(1)
    if _OID.match(system):
        return f"urn:oid:{system}"
    return LOCAL + quote(system, safe="")


def system_name(uri: str | None, *, tables: bool = False) -> str | None:
    """The reverse of :func:`system_uri` for what only it writes: a local name comes back as sent.

    Canonical URLs and OIDs stay URIs (several names map to one URL, and a record read from FHIR
    carries the URL, so the URL is the record's canonical form). With ``tables`` an HL7 table URL
    comes back as ``HL7nnnn``: for record fields whose HL7v2 decoder names the table that way (AL1-2,
    DG1-6, IN1-15), so those records round-trip unchanged too. :func:`v2_name` gives HL7v2 names.
    """
    if not uri:
        return uri
    for prefix in (LOCAL, *LEGACY_LOCAL):
        if uri.startswith(prefix):
            return unquote(uri[len(prefix):])
    table = uri[len(C.V2_TABLE):] if tables and uri.startswith(C.V2_TABLE) else ""
    if len(table) == 4 and table.isdigit():
        return "HL7" + table
    return uri


def v2_name(uri: str | None) -> str | None:
    """An HL7v2 name for a system (CWE-3, CX-4): table 0396's name for a canonical URL, the OID of
    an ``urn:oid:``, the local name back; anything else as it is."""
    if not uri:
        return uri
    if uri in PREFERRED_NAME:
        return PREFERRED_NAME[uri]
    if uri.startswith("urn:oid:"):
        return uri[len("urn:oid:"):]
    return system_name(uri, tables=True)
