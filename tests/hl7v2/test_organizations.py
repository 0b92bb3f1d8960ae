"""XON fields read as Organization records (PD1-3, IN1-11): name, identifier from XON.10 (or the
deprecated XON.3) with its assigning authority (XON.6) and type (XON.7); derived, so the segments
are written back as sent."""

from __future__ import annotations

from pathlib import Path

from bridge import Coverage, Identifier, Organization
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import STANDARD as STANDARD_SEPARATORS
from bridge.plugins.hl7v2.organizations import read_organization

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"


def test_xon_name_identifier_authority_and_type() -> None:
    org = read_organization("Good Health Hospital^L^^^^GHH&2.16.840.1.113883.3.1&ISO^XX^^^GH-7", STANDARD_SEPARATORS)
    assert org == Organization(name="Good Health Hospital", identifiers=[
        Identifier(value="GH-7", system="urn:oid:2.16.840.1.113883.3.1", type="XX", assigner="GHH")])
    assert read_organization("LINDAS TEST ORGANIZATION^^SIISCLIENT818", STANDARD_SEPARATORS).identifiers == [
        Identifier(value="SIISCLIENT818")]  # XON.3 before v2.5
    assert read_organization('""', STANDARD_SEPARATORS) is None
    assert read_organization("^L", STANDARD_SEPARATORS) is None


def test_in1_11_employer_from_a_v2_5_sample_and_the_segment_is_written_back_unchanged() -> None:
    raw = (SAMPLES / "MDHHS-OML-O21-1.hl7").read_bytes()
    records = decode(raw, {})
    (coverage,) = [r for r in records if isinstance(r, Coverage)]
    assert coverage.policy_holder is not None and coverage.policy_holder.name == "Walmart"
    in1 = lambda data: [s for s in data.replace(b"\n", b"\r").split(b"\r") if s.startswith(b"IN1|")]  # noqa: E731
    assert in1(encode(records, {})) == in1(raw)


def test_a_coverage_from_another_format_writes_its_policy_holder_to_in1_11_and_44() -> None:
    raw = (SAMPLES / "ADT-A01-01.hl7").read_bytes()
    records = decode(raw, {})
    (coverage,) = [r for r in records if isinstance(r, Coverage)]
    coverage.extra = {}  # as if it came from FHIR: no kept IN1
    patient = coverage.patient
    fresh = [r for r in records if not isinstance(r, Coverage)][:1]
    out = encode(fresh + [coverage], {})
    segments = [s.decode() for s in out.replace(b"\n", b"\r").split(b"\r") if s.startswith(b"IN1|")]
    kept, written = segments  # the Encounter carries the IN1 as sent; the Coverage is written from the record
    assert "IC-1.31^24^BCV" in kept and "IC-1.31^24^BCV" not in written
    in1 = written.split("|")
    assert in1[11] == "Sam P. Hil" and in1[44] == "2000 MILKY WAY^^VERONA^WI^53593^US"
    back = [r for r in decode(out, {}) if isinstance(r, Coverage)]
    assert back[-1].policy_holder == coverage.policy_holder and patient is not None
