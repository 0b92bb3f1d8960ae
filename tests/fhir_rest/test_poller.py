"""The FHIR sync poller and the ``fhir-poll`` job against a real FHIR test server and a real store."""

from __future__ import annotations

import json

import pytest

from bridge import ConfigError, JobContext, TransientDeliveryError
from bridge.plugins.fhir.network import JOB_TYPES
from bridge.plugins.fhir.poller import PollError, later
from bridge.testing import engine_from_dict

from .fhir_server import FhirTestServer
from .helpers import VISIT_SYSTEM, net_plugins


def at(minute: int) -> str:
    return f"2026-03-01T10:{minute:02d}:00+00:00"


def seed_visits(server: FhirTestServer, minutes) -> None:
    for minute in minutes:
        server.seed({"resourceType": "Encounter", "id": f"e{minute}", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
                     "identifier": [{"system": VISIT_SYSTEM, "value": f"V{minute}"}]}, at(minute))


def make_engine(tmp_path):
    config = {"channels": {"ehr-in": {"source": "file://inbox", "format": "fhir", "routes": [{"to": ["out"]}]}},
              "destinations": {"out": {"url": "file://outbox", "format": "fhir"}}}
    return engine_from_dict(config, tmp_path, net_plugins())


def run_job(engine, server, **settings):
    (job,) = [j for j in JOB_TYPES if j.name == "fhir-poll"]
    ctx = JobContext(name="ehr-encounters",
                     settings={"base": "fhir+" + server.base, "resource_type": "Encounter", "channel": "ehr-in",
                               "params": {"_count": 2}, "timeout": 5, **settings},
                     submit=engine.submit, get_watermark=engine.store.get_watermark,
                     set_watermark=engine.store.set_watermark)
    return job.run(ctx)


def stored_resources(engine) -> list[str]:
    return sorted(json.loads(engine.store.get_raw(m.id))["id"] for m in engine.store.search(limit=100))


def test_three_pages_are_stored_and_the_watermark_moves_to_the_newest_update(tmp_path):
    with FhirTestServer() as server:
        seed_visits(server, [3, 1, 5, 2, 4])  # not in time order: the newest is on page 2
        engine = make_engine(tmp_path)
        result = run_job(engine, server)
        assert (result.pages, result.resources, result.duplicates) == (3, 5, 0)
        assert stored_resources(engine) == ["e1", "e2", "e3", "e4", "e5"]
        assert engine.store.get_watermark("ehr-encounters") == at(5)
        assert [path for _, path in server.log] == [
            "/fhir/Encounter?_count=2", "/fhir/Encounter?_count=2&_offset=2", "/fhir/Encounter?_count=2&_offset=4"]
        (newest,) = [m for m in engine.store.search() if json.loads(engine.store.get_raw(m.id))["id"] == "e5"]
        assert newest.origin["resource"] == "Encounter/e5"

        server.log.clear()
        seed_visits(server, [6])
        result = run_job(engine, server)
        assert (result.pages, result.resources) == (1, 1)
        assert server.log[0][1] == "/fhir/Encounter?_count=2&_lastUpdated=gt2026-03-01T10%3A05%3A00%2B00%3A00"
        assert engine.store.get_watermark("ehr-encounters") == at(6)

        result = run_job(engine, server)  # nothing new: the watermark stays
        assert result.resources == 0 and engine.store.get_watermark("ehr-encounters") == at(6)


def test_a_failure_mid_way_leaves_the_watermark_and_the_rerun_stores_nothing_twice(tmp_path):
    with FhirTestServer() as server:
        seed_visits(server, [1, 2, 3, 4, 5])
        engine = make_engine(tmp_path)
        engine.store.set_watermark("ehr-encounters", at(0))
        server.inject(status=500, text="search backend unavailable", when=lambda r: "_offset=4" in r.full_path)
        with pytest.raises(TransientDeliveryError, match="search Encounter page 3: HTTP 500"):
            run_job(engine, server)
        assert engine.store.get_watermark("ehr-encounters") == at(0)
        assert stored_resources(engine) == ["e1", "e2", "e3", "e4"]  # kept; the intake dedupes them next time

        result = run_job(engine, server)
        assert (result.resources, result.duplicates) == (5, 4)
        assert stored_resources(engine) == ["e1", "e2", "e3", "e4", "e5"]
        assert engine.store.get_watermark("ehr-encounters") == at(5)


def test_a_next_link_that_leaves_the_server_stops_the_run(tmp_path):
    with FhirTestServer() as server:
        engine = make_engine(tmp_path)
        server.inject(status=200, body={"resourceType": "Bundle", "type": "searchset", "entry": [],
                                        "link": [{"relation": "next", "url": "https://elsewhere.test/fhir/Encounter"}]})
        with pytest.raises(PollError, match="leaves the server"):
            run_job(engine, server)
        assert engine.store.get_watermark("ehr-encounters") is None


def test_job_settings_are_checked(tmp_path):
    with FhirTestServer() as server:
        engine = make_engine(tmp_path)
        with pytest.raises(ConfigError, match="jobs.ehr-encounters.channel: is required"):
            run_job(engine, server, channel="")
        with pytest.raises(ConfigError, match="jobs.ehr-encounters.params: must be a mapping"):
            run_job(engine, server, params=["_count=2"])


def test_later_compares_instants_not_strings():
    assert later("2026-03-01T10:00:00+01:00", "2026-03-01T09:30:00Z") == "2026-03-01T09:30:00Z"
    assert later("2026-03-01T10:00:00Z", "not a date") == "2026-03-01T10:00:00Z"
    assert later(None, "2026-03-01T10:00:00Z") == "2026-03-01T10:00:00Z"
