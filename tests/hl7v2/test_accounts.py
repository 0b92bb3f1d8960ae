"""PID-18 and PV1-54 as Account and EpisodeOfCare records, and as FHIR, on Microsoft's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import Account, EncodeError, EpisodeOfCare, localize_records, record_from_dict
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00", "sending_application": "TB"}


def _decoded(name: str) -> list:
    records = decode((CORPUS / name).read_bytes(), {})
    localize_records(records, "America/Chicago")
    return records


def test_adt_names_the_account_and_the_episode_of_the_visit() -> None:
    records = _decoded("ADT-A01-01.hl7")
    (account,) = [r for r in records if isinstance(r, Account)]
    (episode,) = [r for r in records if isinstance(r, EpisodeOfCare)]
    assert (account.identifiers[0].value, account.identifiers[0].type, account.status) == ("4000776", "VN", "active")
    assert account.identifiers[0].system == "urn:oid:1.3.6.1.4.1.44750.1.2.2"
    assert (episode.identifiers[0].value, episode.status) == ("EOC124", "active")
    assert account.patient is records[0].patient and episode.patient is records[0].patient
    assert account.extra["hl7v2"]["carried"] and episode.extra["hl7v2"]["carried"]


def test_a_plain_account_number_is_typed_an_and_a_purge_closes_it() -> None:
    (account,) = [r for r in _decoded("ADT-A06-01.hl7") if isinstance(r, Account)]
    assert (account.identifiers[0].value, account.identifiers[0].type) == ("PACCT110", "AN")
    purged = [r for r in _decoded("BAR-P02-01.hl7") if isinstance(r, Account)]
    assert [a.status for a in purged] == ["inactive", "inactive"]  # BAR^P02 purges each account it names


def test_the_fields_go_back_once_in_an_hl7v2_round_trip() -> None:
    raw = (CORPUS / "ADT-A01-01.hl7").read_bytes()
    out = read_messages(encode(decode(raw, {}), OPTS))[0]
    assert out.segment("PID").get(18).startswith("4000776^") and out.segment("PV1").get(54).startswith("EOC124^")


def test_fhir_account_and_episode_are_keyed_valid_and_read_back() -> None:
    bundle = json.loads(FHIR.encode(_decoded("ADT-A01-01.hl7"), {}))
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    account, episode = by_type["Account"], by_type["EpisodeOfCare"]
    assert account["resource"]["status"] == "active" and account["resource"]["subject"][0]["reference"]
    assert account["request"]["url"] == "Account?identifier=urn:oid:1.3.6.1.4.1.44750.1.2.2|4000776"
    assert episode["resource"]["patient"]["reference"] == account["resource"]["subject"][0]["reference"]
    assert episode["request"]["url"] == "EpisodeOfCare?identifier=urn:oid:2.16.1|EOC124"  # CX.4's universal id
    again = json.loads(FHIR.encode(_decoded("ADT-A01-01.hl7"), {}))
    assert again == bundle
    back = FHIR.decode(json.dumps(bundle).encode(), {})
    (acc,) = [r for r in back if isinstance(r, Account)]
    (ep,) = [r for r in back if isinstance(r, EpisodeOfCare)]
    assert (acc.identifiers[0].value, acc.status, ep.identifiers[0].value, ep.status) == \
        ("4000776", "active", "EOC124", "active")


def test_fhir_refuses_an_account_without_status_or_patient() -> None:
    doc = json.loads((ROOT / "examples" / "messages" / "account.json").read_text(encoding="utf-8"))
    account = record_from_dict(doc["records"][0])
    account.status = None
    with pytest.raises(EncodeError, match="Account.status is required by FHIR"):
        FHIR.encode([account], {})


def test_hl7v2_does_not_write_an_account_built_elsewhere() -> None:
    doc = json.loads((ROOT / "examples" / "messages" / "account.json").read_text(encoding="utf-8"))
    with pytest.raises(EncodeError, match="no message for a Account"):
        encode([record_from_dict(doc["records"][0])], OPTS)
