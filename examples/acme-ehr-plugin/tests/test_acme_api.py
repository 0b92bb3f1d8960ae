"""The acme destination profile against a fake Acme on loopback: the kit's profile contract, the
answers Acme documents, and a whole engine delivering a visit."""

from __future__ import annotations

import json

import pytest

import acme_bridge
from bridge import (
    ClinicalNote,
    ConfigError,
    Delivery,
    DestinationContext,
    Encounter,
    Identifier,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from bridge.testing import FAKE_PHI, ProfileContract, fake_patient, plugin_manager


def visit(number: str) -> list:
    patient = fake_patient(identifiers=[Identifier(value=FAKE_PHI.mrn, type="MR")])
    return [Encounter(identifiers=[Identifier(value=number, type="VN")], status="finished", modality="video",
                      patient=patient),
            ClinicalNote(title="Visit note", text="Ottoline Quillfeather: follow up in 2 weeks.",
                         content_type="text/plain")]


class TestAcmeProfile(ProfileContract):
    plugin, plugin_name = acme_bridge, "acme"
    profile_name = "acme"
    sample_records = [visit("V2001"), visit("V2002")]
    timeout_budget_seconds = 5.0

    @pytest.fixture
    def peer(self, acme):
        return acme

    def destination_options(self, peer):
        return peer.options()

    def effects(self, peer):
        return len(peer.api.visits)

    def script_failure(self, peer, kind):
        if kind == "transient":
            peer.api.inject(status=503, text="maintenance")
        elif kind == "permanent":
            peer.api.inject(status=422, body={"error": {"code": "INVALID_VISIT", "message": "bad body"}})
        else:
            peer.api.inject(status=201, delay=1.0)


@pytest.fixture
def destination(acme, tmp_path, bridge_register):
    profile = bridge_register(acme_bridge, "acme").destination_profiles()["acme"]
    made = []

    def make(**options):
        ctx = DestinationContext(url="", name="acme-ehr", options=acme.options(**options), config_dir=str(tmp_path))
        made.append(profile.make_destination(ctx))
        return made[-1]

    yield make
    for item in made:
        item.close()


def delivery_of(records):
    spec = plugin_manager(("acme", acme_bridge)).format("acme-json")
    return Delivery(outbox_id=1, message_id=1, destination="acme-ehr", payload=spec.encode(records, {}),
                    media_type=spec.media_type, file_extension="json", attempt=1, idempotency_key="tb-1-1")


def test_a_visit_is_posted_with_a_token_from_client_secret_basic(acme, destination):
    dest = destination()
    assert dest.send(delivery_of(visit("V1"))) == "visit recorded by Acme (HTTP 201)"
    (token_request,) = acme.tokens.requests
    assert token_request.headers["Authorization"].startswith("Basic ")
    (post,) = acme.api.requests
    assert post.path == "/api/v1/practices/1234/visits"
    assert post.headers["Content-Type"] == "application/vnd.acme.visit+json"
    assert post.headers["X-Request-Id"] == "tb-1-1"
    assert post.json()["visit"]["visit_number"] == "V1"


def test_the_token_is_reused_and_renewed_after_a_401(acme, destination):
    dest = destination()
    dest.send(delivery_of(visit("V1")))
    dest.send(delivery_of(visit("V2")))
    assert len(acme.tokens.requests) == 1
    acme.tokens.revoke_all()
    dest.send(delivery_of(visit("V3")))
    assert len(acme.tokens.requests) == 2 and set(acme.api.visits) == {"V1", "V2", "V3"}


def test_409_duplicate_is_success(acme, destination):
    dest = destination()
    dest.send(delivery_of(visit("V1")))
    assert "already recorded" in dest.send(delivery_of(visit("V1")))


def test_429_honours_retry_after(acme, destination):
    acme.api.inject(status=429, headers={"Retry-After": "7"})
    with pytest.raises(TransientDeliveryError) as caught:
        destination().send(delivery_of(visit("V1")))
    assert caught.value.retry_after == 7 and "HTTP 429" in str(caught.value)


def test_a_wrong_practice_is_permanent_and_names_it(acme, destination):
    with pytest.raises(PermanentDeliveryError, match="practice 9999 .*403: PRACTICE_FORBIDDEN"):
        destination(practice_id="9999").send(delivery_of(visit("V1")))


def test_a_wrong_secret_is_permanent(acme, destination, monkeypatch):
    monkeypatch.setenv("ACME_CLIENT_SECRET", "wrong")
    with pytest.raises(PermanentDeliveryError, match="Acme refused client 'telemed-bridge' \\(HTTP 401\\)"):
        destination().send(delivery_of(visit("V1")))
    assert not acme.api.visits


def test_an_unreachable_api_is_transient(acme, destination):
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        destination(base_url="http://127.0.0.1:9", token_url=acme.tokens.token_url).send(delivery_of(visit("V1")))


def test_configuration_problems_are_listed_with_their_paths(acme, destination, monkeypatch):
    monkeypatch.delenv("ACME_CLIENT_SECRET")
    with pytest.raises(ConfigError) as caught:
        destination(base_url="ftp://acme", practice_id="", timeout="soon")
    paths = {path for path, _ in caught.value.problems}
    assert paths == {f"destinations.acme-ehr.options.{k}" for k in
                     ("base_url", "practice_id", "client_secret_env", "timeout")}


def test_an_engine_delivers_a_visit_to_acme(acme, tmp_path, bridge_register, bridge_engine):
    """The whole path: a bridge-format file dropped in an inbox becomes a visit at Acme."""
    plugins = bridge_register(acme_bridge, "acme")
    (tmp_path / "inbox").mkdir()
    engine = bridge_engine({
        "channels": {"visits": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["acme-ehr"]}]}},
        "destinations": {"acme-ehr": {"profile": "acme", "options": acme.options()}},
    }, plugins)
    engine.open_destinations()
    envelope = {"schema": "telemed-bridge/1", "records": [
        {"kind": "Encounter", "status": "finished", "modality": "video",
         "identifiers": [{"value": "V77", "type": "VN"}],
         "patient": {"identifiers": [{"value": "MRN-1", "type": "MR"}], "name": {"family": "Testpatient"}}}]}
    engine.submit("visits", json.dumps(envelope).encode())
    engine.drain(timeout=10)
    (row,) = engine.store.outbox_rows()
    assert row.status == "delivered", row
    assert acme.api.visits["V77"]["visit"]["patient"]["mrn"] == "MRN-1"
