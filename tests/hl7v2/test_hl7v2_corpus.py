"""Every public corpus message either decodes or is refused with a clear DecodeError, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge import DecodeError, Record
from bridge.plugins.hl7v2.codec import FORMAT

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus"
FOLDERS = ("fhir-converter-input", "lfh-hl7v2-fhir-converter", "python-hl7", "hl7apy",
           "cdc-trusted-intermediary", "bcgov-moh-erx-pharmanet")


def corpus_files(folder: str) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).rglob("*") if p.is_file() and p.suffix in (".hl7", ".hl7v2"))


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_message_decodes_or_is_refused_clearly(folder: str) -> None:
    files = corpus_files(folder)
    assert files, f"no fixtures in {folder}"
    decoded = refused = 0
    for path in files:
        start = time.perf_counter()
        try:
            records = FORMAT.decode(path.read_bytes(), {})
        except DecodeError as exc:
            assert str(exc).strip(), path.name
            refused += 1
        else:
            assert records and all(isinstance(r, Record) for r in records), path.name
            decoded += 1
        assert time.perf_counter() - start < 1.0, f"{path.name} took too long"
    assert decoded + refused == len(files)


def test_corpus_outcomes_are_the_expected_ones() -> None:
    """Pin the corpus-wide counts so a regression in either direction shows up."""
    outcomes: dict[str, int] = {}
    for folder in FOLDERS:
        for path in corpus_files(folder):
            try:
                # An account (PID-18) and an episode (PV1-54) come with a visit or a patient wherever
                # they are valued, and carried companions (an SIU's booked services, an ORU's orders,
                # a mother) with the records they accompany: they do not change what a message is.
                kinds = {r.kind for r in FORMAT.decode(path.read_bytes(), {})
                         if not r.extra.get("hl7v2", {}).get("carried")} - {"Account", "EpisodeOfCare"}
                key = "+".join(sorted(kinds))
            except DecodeError as exc:
                text = str(exc)
                key = "unsupported" if "unsupported message type" in text else "refused"
            outcomes[key] = outcomes.get(key, 0) + 1
    # an ADT's visit, with its companions since issue 13 (NK1 and PID-21 RelatedPersons, OBX…)
    assert sum(n for k, n in outcomes.items() if "Encounter" in k.split("+")) >= 90
    assert outcomes.get("Prescription", 0) >= 25
    assert outcomes.get("Appointment", 0) >= 15  # SIU S12-S26 since issue 13
    assert outcomes.get("ClinicalNote", 0) >= 16  # MDM T01-T11; ORU gives results since issue 13
    assert outcomes.get("DiagnosticReport", 0) >= 12
    assert outcomes.get("Observation", 0) >= 3  # ORU without OBR
    assert sum(n for k, n in outcomes.items() if "ServiceRequest" in k) >= 30  # ORM/OML/OMG orders, REF referrals
    assert sum(n for k, n in outcomes.items() if "Immunization" in k) >= 14  # VXU (+NK1, AL1…)
    assert sum(n for k, n in outcomes.items() if "PrescriptionEvent" in k) >= 2  # RDS dispenses
    assert outcomes.get("unsupported", 0) <= 125  # 256 before orders, pharmacy and VXU were decoded


def test_unsupported_types_say_which() -> None:
    raw = (CORPUS / "fhir-converter-input" / "PC1-Problem-Add-v2.3.1.hl7").read_bytes().replace(b"PPR^PC1", b"PGL^PC6")
    with pytest.raises(DecodeError, match=r"unsupported message type PGL\^PC6"):  # a goal: no record maps it
        FORMAT.decode(raw, {})


@pytest.mark.parametrize("name", ["test_parser_test_parse_message_duplicate_encoding_chars_8.hl7",
                                  "test_parser_test_parse_message_duplicate_encoding_chars_9.hl7"])
def test_hl7apy_duplicate_encoding_samples_are_refused(name: str) -> None:
    with pytest.raises(DecodeError, match="duplicate encoding characters"):
        FORMAT.decode((CORPUS / "hl7apy" / name).read_bytes(), {})


def test_python_hl7_batches_and_bad_batches() -> None:
    good = FORMAT.decode((CORPUS / "python-hl7" / "sample_batch.hl7").read_bytes(), {})
    assert good
    with pytest.raises(DecodeError, match="before any MSH"):
        FORMAT.decode((CORPUS / "python-hl7" / "sample_bad_batch.hl7").read_bytes(), {})


def test_pharmanet_z_segment_messages_are_refused_not_crashed() -> None:
    for path in corpus_files("bcgov-moh-erx-pharmanet"):
        with pytest.raises(DecodeError):
            FORMAT.decode(path.read_bytes(), {})
