"""``epic-poll``, ``oracle-poll`` and ``athena-poll``: vendor auth and parameters, paging, watermarks."""

from __future__ import annotations

import json

import pytest
import responses

from bridge import ConfigError, JobContext
from bridge.plugins.athena.jobs import ATHENA_POLL
from bridge.plugins.epic.jobs import EPIC_POLL
from bridge.plugins.fhir.poller import PollError
from bridge.plugins.oracle_health.jobs import ORACLE_POLL
from bridge.testing import engine_from_dict

from .helpers import JwtTokenEndpoint, calls, vendor_plugins, write_key
from .test_epic import BASE as EPIC_BASE
from .test_epic import TOKEN_URL as EPIC_TOKEN

ATHENA = "https://api.preview.platform.athenahealth.com"


def store_engine(tmp_path):
    config = {"channels": {"ehr-in": {"source": "file://inbox", "format": "fhir", "routes": []}},
              "destinations": {}}
    return engine_from_dict(config, tmp_path, vendor_plugins())


def context(engine, job, name: str, **settings) -> JobContext:
    return JobContext(name=name, settings={"channel": "ehr-in", "timeout": 5, **settings}, submit=engine.submit,
                      config_dir=str(engine.config.config_dir), get_watermark=engine.store.get_watermark,
                      set_watermark=engine.store.set_watermark)


def encounter(rid: str, updated: str) -> dict:
    return {"resourceType": "Encounter", "id": rid, "status": "finished", "meta": {"versionId": "1",
                                                                                   "lastUpdated": updated},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}}


def page(resources, next_url: str | None = None) -> dict:
    doc = {"resourceType": "Bundle", "type": "searchset",
           "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        doc["link"] = [{"relation": "next", "url": next_url}]
    return doc


def test_epic_poll_pages_with_smart_auth_and_moves_the_watermark(tmp_path, rsa_key):
    engine = store_engine(tmp_path)
    settings = {"base_url": EPIC_BASE, "client_ids": {"non-production": "tb-nonprod-client"}, "kid": "tb-2026",
                "key_file": write_key(tmp_path, rsa_key), "token_url": EPIC_TOKEN, "resource_type": "Encounter",
                "params": {"_count": 2}, "since": "2026-03-01T00:00:00Z"}
    with responses.RequestsMock() as mock:
        token = JwtTokenEndpoint(EPIC_TOKEN, rsa_key.public_key(), "RS384", "tb-nonprod-client", "tb-2026")
        mock.add_callback(responses.POST, EPIC_TOKEN, callback=token)
        mock.add(responses.GET, f"{EPIC_BASE}/Encounter", json=page(
            [encounter("e1", "2026-03-01T10:00:00Z"), encounter("e3", "2026-03-01T12:00:00Z")],
            f"{EPIC_BASE}/Encounter?_count=2&sessionID=abc&pageToken=2"))
        mock.add(responses.GET, f"{EPIC_BASE}/Encounter", json=page([encounter("e2", "2026-03-01T11:00:00Z")]))
        result = EPIC_POLL.run(context(engine, EPIC_POLL, "epic-encounters", **settings))
        assert (result.pages, result.resources) == (2, 3)
        assert calls(mock)[1:] == [
            ("GET", "/interconnect-fhir-oauth/api/FHIR/R4/Encounter?_count=2&_lastUpdated=gt2026-03-01T00%3A00%3A00Z"),
            ("GET", "/interconnect-fhir-oauth/api/FHIR/R4/Encounter?_count=2&sessionID=abc&pageToken=2")]
        assert mock.calls[1].request.headers["Authorization"] == "Bearer vendor-token"
        token.assert_valid_assertion()
    assert engine.store.get_watermark("epic-encounters") == "2026-03-01T12:00:00Z"
    stored = sorted(json.loads(engine.store.get_raw(m.id))["id"] for m in engine.store.search(limit=10))
    assert stored == ["e1", "e2", "e3"]


def test_athena_poll_scopes_by_practice_and_follows_its_cursor(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHENA_SECRET", "athena-secret")
    engine = store_engine(tmp_path)
    settings = {"practice_id": "195900", "department_id": "1", "client_ids": {"non-production": "0oa-preview"},
                "client_secret_env": "ATHENA_SECRET", "resource_type": "Encounter"}
    cursor = f"{ATHENA}/fhir/r4/Encounter?ah-practice=Organization/a-1.Practice-195900&cursor=eyJwIjoyfQ"
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{ATHENA}/oauth2/v1/token",
                 json={"access_token": "athena-token", "expires_in": "3600", "token_type": "Bearer"})
        mock.add(responses.GET, f"{ATHENA}/fhir/r4/Encounter",
                 json=page([encounter("a-195900.encounter-1", "2026-03-02T09:00:00Z")], cursor))
        mock.add(responses.GET, f"{ATHENA}/fhir/r4/Encounter",
                 json=page([encounter("a-195900.encounter-2", "2026-03-02T09:30:00Z")]))
        result = ATHENA_POLL.run(context(engine, ATHENA_POLL, "athena-encounters", **settings))
        assert (result.pages, result.resources) == (2, 2)
        assert calls(mock)[1:] == [
            # athena's CapabilityStatement lists ah-department for Patient only: not sent for Encounter
            ("GET", "/fhir/r4/Encounter?ah-practice=Organization%2Fa-1.Practice-195900"),
            ("GET", "/fhir/r4/Encounter?ah-practice=Organization/a-1.Practice-195900&cursor=eyJwIjoyfQ")]
    assert engine.store.get_watermark("athena-encounters") == "2026-03-02T09:30:00Z"


def test_athena_poll_narrows_patients_by_department(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHENA_SECRET", "athena-secret")
    engine = store_engine(tmp_path)
    settings = {"practice_id": "195900", "department_id": "1", "client_ids": {"non-production": "0oa-preview"},
                "client_secret_env": "ATHENA_SECRET", "resource_type": "Patient"}
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{ATHENA}/oauth2/v1/token", json={"access_token": "t", "expires_in": "3600"})
        mock.add(responses.GET, f"{ATHENA}/fhir/r4/Patient", json=page([]))
        ATHENA_POLL.run(context(engine, ATHENA_POLL, "athena-patients", **settings))
        assert calls(mock)[1] == ("GET", "/fhir/r4/Patient?ah-practice=Organization%2Fa-1.Practice-195900"
                                         "&ah-department=Organization%2Fa-195900.Department-1")


def test_a_next_link_to_another_host_stops_the_run_and_keeps_the_watermark(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHENA_SECRET", "athena-secret")
    engine = store_engine(tmp_path)
    engine.store.set_watermark("athena-encounters", "2026-03-01T00:00:00Z")
    settings = {"practice_id": "195900", "client_ids": {"non-production": "0oa-preview"},
                "client_secret_env": "ATHENA_SECRET", "resource_type": "Encounter"}
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{ATHENA}/oauth2/v1/token", json={"access_token": "t", "expires_in": 3600})
        mock.add(responses.GET, f"{ATHENA}/fhir/r4/Encounter",
                 json=page([encounter("a-195900.encounter-1", "2026-03-02T09:00:00Z")],
                           "https://elsewhere.example.test/fhir/r4/Encounter?cursor=x"))
        with pytest.raises(PollError, match="leaves the server"):
            ATHENA_POLL.run(context(engine, ATHENA_POLL, "athena-encounters", **settings))
    assert engine.store.get_watermark("athena-encounters") == "2026-03-01T00:00:00Z"


def test_oracle_poll_uses_the_tenant_base_and_names_missing_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ORACLE_SECRET", "s")
    engine = store_engine(tmp_path)
    tenant = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
    settings = {"tenant": tenant, "client_ids": {"non-production": "np"}, "auth_method": "client_secret_basic",
                "client_secret_env": "ORACLE_SECRET", "resource_type": "Encounter", "params": {"patient": "12724066"}}
    with pytest.raises(ConfigError, match=r"jobs\.oracle-visits\.channel: is required"):
        ORACLE_POLL.run(context(engine, ORACLE_POLL, "oracle-visits", **{**settings, "channel": ""}))
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"https://authorization.cerner.com/tenants/{tenant}/protocols/oauth2/profiles/"
                                 "smart-v1/token", json={"access_token": "t", "expires_in": 570})
        mock.add(responses.GET, f"https://fhir-ehr.cerner.com/r4/{tenant}/Encounter",
                 json=page([encounter("97953477", "2026-03-01T15:30:00Z")]))
        result = ORACLE_POLL.run(context(engine, ORACLE_POLL, "oracle-visits", **settings))
        assert result.resources == 1
        assert calls(mock)[1] == ("GET", f"/r4/{tenant}/Encounter?patient=12724066")
