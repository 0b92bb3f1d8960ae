"""A destination taken down (a real MLLP receiver whose port refuses), an alert by webhook and by email
(real receivers on loopback), no duplicate after a restart, a repeat while it lasts, and a resolved
notice once the receiver is back and the message delivered — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from bridge.core.alerts import AlertMonitor
from bridge.core.config import parse_config
from bridge.core.engine import Engine
from tests.hl7v2.conftest_mllp import RawClient, ScriptedPeer, adt, channel, mllp_plugins
from tests.ops.alert_receivers import alert_receivers  # noqa: F401  (fixture)
from tests.pg import store_url  # noqa: F401  (fixture)

PATIENT = "Testpatient"  # adt() puts this surname in PID-5: it must never reach an alert


class AckingPeerOn(ScriptedPeer):
    """The receiver coming back on the port it had: answers AA to every frame."""

    def __init__(self, port: int):  # noqa: D107 - ScriptedPeer's fields, on a given port
        self.script, self.received, self.connections = [], [], 0
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads, self._open = [], []
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = port
        threading.Thread(target=self._accept, daemon=True).start()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alerting_config(tmp_path, store, peer_port, webhook, smtp, plugins):
    data = {
        "store": store or "sqlite:///bridge.db",
        "channels": {"lab": channel(to="ehr")},
        "destinations": {"ehr": {"url": f"mllp://127.0.0.1:{peer_port}", "format": "hl7v2-test",
                                 "retry": {"max_attempts": 100, "initial_seconds": 0.05, "max_seconds": 0.2}}},
        "alerts": {
            "notify": {
                "webhook": {"url": webhook.url, "timeout_seconds": 5, "retries": 1},
                "email": {"host": "127.0.0.1", "port": smtp.port, "from": "bridge@hospital.example",
                          "to": ["oncall@hospital.example"], "username_env": "BRIDGE_SMTP_USER",
                          "password_env": "BRIDGE_SMTP_PASSWORD", "ca_file": str(smtp.pki.ca), "retries": 1},
            },
            "rules": {"ehr-down": {"when": "destination_failing", "destination": "ehr", "minutes": 1,
                                   "repeat_minutes": 30}},
        },
    }
    return parse_config(data, config_dir=str(tmp_path), plugins=plugins)


def test_destination_down_alerts_by_webhook_and_email_then_resolves(tmp_path, alert_receivers, store_url,  # noqa: F811
                                                                    caplog):
    webhook, smtp = alert_receivers
    port = free_port()  # nothing listens: every connection is refused
    plugins = mllp_plugins()
    config = alerting_config(tmp_path, store_url, port, webhook, smtp, plugins)
    engine = Engine(config, plugins)
    engine.open_destinations()
    engine.open_sources()
    engine.sources[0].start()
    peer = None
    caplog.set_level("DEBUG", logger="bridge.core.alerts")
    try:
        assert RawClient(engine.sources[0].port).send(adt("C1", patient="P77"))[0] == "AA"
        engine.drain()
        [row] = engine.store.outbox_rows(status="pending")
        assert row.attempts >= 1 and "refused" in (row.last_error or "").lower()

        monitor = AlertMonitor(engine.store, config, engine=engine)
        t0 = time.time()
        assert monitor.evaluate_once(now=t0) == []  # waiting less than a minute: not yet
        [fired] = monitor.evaluate_once(now=t0 + 90)
        assert (fired.kind, fired.subject) == ("firing", "destination:ehr")
        [posted] = webhook.posts
        assert (posted["rule"], posted["notice"], posted["facts"]["pending"]) == ("ehr-down", "firing", 1)
        [mail] = smtp.messages
        assert mail["Subject"].startswith("[bridge] FIRING ehr-down: destination ehr has delivered nothing")
        assert smtp.mailbox.tls == [True]

        assert monitor.evaluate_once(now=t0 + 100) == []  # still down: no repeat before 30 minutes
        restarted = AlertMonitor(engine.store, config, engine=engine)  # a new process, same store
        assert restarted.evaluate_once(now=t0 + 110) == []
        [repeat] = restarted.evaluate_once(now=t0 + 90 + 30 * 60 + 1)
        assert repeat.kind == "repeat" and len(webhook.posts) == 2 and len(smtp.messages) == 2

        peer = AckingPeerOn(port)  # the receiver returns
        deadline = time.monotonic() + 10
        while not peer.received and time.monotonic() < deadline:
            time.sleep(0.05)
            engine.drain()
        assert len(peer.received) == 1 and engine.store.outbox_rows(status="pending") == []
        [resolved] = monitor.evaluate_once(now=time.time())
        assert resolved.kind == "resolved"
        assert webhook.posts[-1]["notice"] == "resolved" and webhook.posts[-1]["resolved_at"]
        assert smtp.messages[-1]["Subject"].startswith("[bridge] RESOLVED ehr-down")
        assert monitor.evaluate_once(now=time.time() + 7200) == []  # resolved once, quiet after
        [state] = engine.store.alert_states()
        assert (state.state, state.notices, state.last_error) == ("resolved", 3, None)

        everything = json.dumps(webhook.posts) + "".join(m.as_string() for m in smtp.messages)
        assert PATIENT not in everything and "P77" not in everything and "C1" not in everything
        alert_logs = [r.getMessage() for r in caplog.records if r.name.startswith("bridge.core.alerts")]
        assert any("ehr-down firing for destination:ehr" in line for line in alert_logs)
        assert not any(PATIENT in line or "P77" in line for line in alert_logs)
    finally:
        if peer is not None:
            peer.close()
        for source in engine.sources:
            source.stop()
        for destination in engine.destinations.values():
            destination.close()
        engine.store.close()
