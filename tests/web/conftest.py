"""Shared set-up for the admin web tests: a real engine and store with real messages, and callers
for every role (API tokens and dashboard users) created the way an administrator would."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge import PermanentDeliveryError, TransportSpec, hookimpl
from bridge.testing import engine_from_dict, plugin_manager
from bridge.web import create_app
from bridge.web.auth import ROLES, LoginLimiter, hash_password, new_token, token_digest

PASSWORD = "correct horse battery"


def encounter(n: int, patient: str) -> bytes:
    return json.dumps({"schema": "telemed-bridge/1", "records": [{
        "kind": "Encounter", "id": f"ENC-{n}", "status": "finished", "modality": "video",
        "patient": {"identifiers": [{"value": patient, "type": "MR"}], "name": {"family": "Testpatient"}},
    }]}).encode()


def prescription(number: str, patient: str, encounter_id: str) -> bytes:
    """Incomplete on purpose (no written date): the telehealth policy holds it for review."""
    return json.dumps({"schema": "telemed-bridge/1", "records": [{
        "kind": "Prescription", "prescriber_order_number": number,
        "medication": {"description": "Ibuprofen 400 mg tablet", "rxnorm": "197806", "dea_schedule": "none"},
        "quantity": {"value": 30, "unit": "tablet"}, "encounter": {"id": encounter_id},
        "patient": {"identifiers": [{"value": patient, "type": "MR"}]},
    }]}).encode()


class FailingTransport:
    """``fail://x`` destinations refuse every delivery for good: they make dead letters."""

    @hookimpl
    def bridge_transports(self):
        class Refuser:
            def __init__(self, ctx):
                pass

            def send(self, delivery):
                raise PermanentDeliveryError("peer refused (test)")

            def close(self):
                pass

        return [TransportSpec(scheme="fail", destination=Refuser)]


CONFIG = {
    "channels": {
        "intake": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["ehr"]}]},
        "lab": {"source": "file://lab-inbox", "format": "bridge", "routes": [{"to": ["broken"]}]},
    },
    "destinations": {
        "ehr": {"url": "file://outbox", "format": "bridge"},
        "broken": {"url": "fail://nowhere", "format": "bridge", "options": {"password": "hunter2"}},
    },
}


@dataclass
class Site:
    engine: Any
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def store(self):
        return self.engine.store

    def api(self, role: str | None):
        """A test client whose requests carry the ``role`` token (or none)."""
        client = self.app.test_client()
        if role:
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.tokens[role]}"
        return client

    def login(self, role: str):
        client = self.app.test_client()
        response = login(client, f"{role}-user", PASSWORD)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, name: str, password: str, address: str = "127.0.0.1"):
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": csrf_from(page.get_data(as_text=True))},
                       environ_base={"REMOTE_ADDR": address})


def build_site(tmp_path, config: dict | None = None, **app_options) -> Site:
    """The shared site; ``config`` replaces CONFIG (same channels and destinations, plus e.g. ``web``)."""
    plugins = plugin_manager(("failing", FailingTransport()))
    engine = engine_from_dict(config or CONFIG, tmp_path, plugins)
    engine.open_destinations()
    site = Site(engine=engine, app=None)
    site.ids["enc1"] = engine.submit("intake", encounter(1, "MRN-A1")).message_id
    site.ids["rx1"] = engine.submit("intake", prescription("RX-77", "MRN-A1", "ENC-1")).message_id
    site.ids["enc2"] = engine.submit("intake", encounter(2, "MRN-B2")).message_id
    site.ids["lab"] = engine.submit("lab", encounter(3, "MRN-C3")).message_id
    engine.drain()
    for role in ROLES:
        token = new_token()
        engine.store.create_token(f"{role}-token", token_digest(token), role, actor="test")
        site.tokens[role] = token
        engine.store.create_user(f"{role}-user", hash_password(PASSWORD), role, actor="test")
    app_options.setdefault("limiter", LoginLimiter(per_user=3, per_address=5))
    site.app = create_app(engine.config, plugins, engine.store, engine=engine, **app_options)
    return site


@pytest.fixture
def site(tmp_path) -> Site:
    built = build_site(tmp_path)
    yield built
    built.engine.store.close()
