"""Issue 15, done when: a destination taken down shows as failing on the dashboard's destinations
table and in /api/v1/destinations, an alert arrives by webhook and by email, the Prometheus counter
of failed attempts rises, and when the receiver returns the state goes back to flowing and a
resolved notice arrives; /readyz fails with the reason when a listener stops. Everything real: the
engine's threads (its alert loop included), its MLLP listener, an MLLP receiver, an HTTP webhook
receiver and an SMTP server with STARTTLS on loopback, the admin app on a real HTTP listener, and
promtool checking what /metrics serves."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from bridge.testing import engine_from_dict
from bridge.web import create_app
from bridge.web.auth import new_token, token_digest
from bridge.web.server import start_admin_server
from tests.hl7v2.conftest_mllp import TEST_FORMAT, RawClient, adt, mllp_plugins
from tests.ops.alert_receivers import alert_receivers  # noqa: F401  (fixture)
from tests.ops.promtool import check_metrics
from tests.ops.test_metrics import parse, values

SB, EB = b"\x0b", b"\x1c\x0d"


class Receiver:
    """An MLLP receiver on a fixed loopback port that answers AA to every frame (written here,
    independently of the product's MLLP code). While it is not running the port refuses."""

    def __init__(self, port: int):
        self.port = port
        self.received = 0
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server.settimeout(0.1)
        self._stop.clear()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            conn.settimeout(5)
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                pending += chunk
                while EB in pending:
                    frame, pending = pending.split(EB, 1)
                    fields = frame[frame.index(SB) + 1:].split(b"\r")[0].split(b"|")
                    self.received += 1
                    ack = (b"MSH|^~\\&|RECV|FAC|" + fields[2] + b"|" + fields[3] + b"|20260101000000||ACK|A"
                           + fields[9] + b"|P|2.5\rMSA|AA|" + fields[9] + b"\r")
                    conn.sendall(SB + ack + EB)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def running(tmp_path, alert_receivers):  # noqa: F811
    port = free_port()
    plugins = mllp_plugins()
    webhook, smtp = alert_receivers
    engine = engine_from_dict({
        "channels": {"adt": {"source": "mllp://127.0.0.1:0", "format": TEST_FORMAT, "routes": [{"to": ["emr"]}]}},
        "destinations": {"emr": {"url": f"mllp://127.0.0.1:{port}", "format": TEST_FORMAT,
                                 "options": {"connect_timeout_seconds": 1},
                                 "retry": {"max_attempts": 2, "initial_seconds": 0.05, "jitter": 0}}},
        "engine": {"poll_seconds": 0.05},
        "alerts": {
            "evaluate_seconds": 0.1,
            "notify": {
                "webhook": {"url": webhook.url, "timeout_seconds": 5, "retries": 1},
                "email": {"host": "127.0.0.1", "port": smtp.port, "from": "bridge@hospital.example",
                          "to": ["oncall@hospital.example"], "username_env": "BRIDGE_SMTP_USER",
                          "password_env": "BRIDGE_SMTP_PASSWORD", "ca_file": str(smtp.pki.ca), "retries": 1}},
            "rules": {"emr-down": {"when": "destination_failing", "destination": "emr", "minutes": 0.1}},
        },
    }, tmp_path, plugins)
    engine.start()
    token = new_token()
    engine.store.create_token("prometheus", token_digest(token), "viewer", actor="test")
    server, thread = start_admin_server(create_app(engine.config, plugins, engine.store, engine=engine),
                                        "127.0.0.1", 0)
    try:
        yield engine, Receiver(port), f"http://127.0.0.1:{server.server_port}", token, alert_receivers
    finally:
        server.shutdown()
        thread.join(5)
        engine.stop()


def emr(base: str, token: str) -> dict:
    status, body = fetch(f"{base}/api/v1/destinations", token)
    assert status == 200
    (item,) = json.loads(body)["items"]
    return item


def scrape(base: str, token: str) -> dict:
    status, text = fetch(f"{base}/metrics", token)
    assert status == 200
    checked = check_metrics(text)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    return parse(text)


def test_a_destination_down_then_back_is_seen_in_the_api_the_dashboard_and_the_counters(running):
    engine, receiver, base, token, (webhook, smtp) = running
    listener = engine.sources_by_channel["adt"]
    client = RawClient(listener.port)
    try:
        assert client.send(adt("DOWN-1"))[0] == "AA"  # stored and acknowledged: the receiver is down
        # the state and the counts are separate reads: wait until both show the dead letter
        failing = wait_for(lambda: (d := emr(base, token))["state"] == "failing" and d["dead_letters"] == 1 and d,
                           "the emr to be failing")
        assert failing["dead_letters"] == 1 and failing["failures_last_hour"] == 2
        assert failing["last_success_at"] is None
        assert "last_error" not in failing  # a viewer token: no error text
        status, page = fetch(f"{base}/", token)
        assert status == 200 and 'class="destination-failing"' in page and "emr" in page
        # the engine's own alert loop: one firing notice by webhook and by email, no patient data
        fired = wait_for(lambda: webhook.posts and smtp.messages and (webhook.posts[0], smtp.messages[0]),
                         "the firing alert by webhook and email")
        assert (fired[0]["rule"], fired[0]["notice"], fired[0]["subject"]) == ("emr-down", "firing", "destination:emr")
        assert fired[1]["Subject"].startswith("[bridge] FIRING emr-down")
        assert "DOWN-1" not in json.dumps(webhook.posts) and "Testpatient" not in fired[1].as_string()

        down = scrape(base, token)
        assert values(down["bridge_delivery_failures_total"], destination="emr") == [2]
        assert values(down["bridge_delivery_attempts_total"], destination="emr") == [2]
        assert values(down["bridge_dead_letters_total"], destination="emr", stage="send") == [1]
        assert values(down["bridge_destination_state"], destination="emr", state="failing") == [1]
        assert values(down["bridge_channel_listener_up"], channel="adt") == [1]

        receiver.start()
        assert client.send(adt("BACK-1"))[0] == "AA"
        flowing = wait_for(lambda: (d := emr(base, token))["state"] == "flowing" and d["backlog"] == 0 and d,
                           "the emr to flow again")  # state and backlog are separate reads
        assert flowing["last_success_at"] and flowing["backlog"] == 0 and receiver.received == 1
        back = scrape(base, token)
        assert values(back["bridge_delivery_failures_total"], destination="emr") == [2]  # counters never fall
        assert values(back["bridge_deliveries_total"], destination="emr") == [1]
        assert values(back["bridge_messages_received_total"], channel="adt") == [2]
        assert values(back["bridge_messages_routed_total"], channel="adt") == [2]
        assert values(back["bridge_destination_state"], destination="emr", state="flowing") == [1]
        resolved = wait_for(lambda: [p for p in webhook.posts if p["notice"] == "resolved"], "the resolved notice")
        assert len(resolved) == 1 and resolved[0]["rule"] == "emr-down"
        wait_for(lambda: any(m["Subject"].startswith("[bridge] RESOLVED emr-down") for m in smtp.messages),
                 "the resolved email")
        assert len([p for p in webhook.posts if p["notice"] == "firing"]) == 1  # fired once while it lasted
        ack_count = [v for name, labels, v in back["bridge_ack_latency_seconds"]["samples"]
                     if name.endswith("_count") and labels["channel"] == "adt"]
        assert ack_count == [2]
        delivered = [v for name, labels, v in back["bridge_delivery_latency_seconds"]["samples"]
                     if name.endswith("_count") and labels["destination"] == "emr"]
        assert delivered == [1]
    finally:
        client.close()
        receiver.stop()


def test_readyz_fails_with_the_reason_when_a_listener_stops(running):
    engine, _, base, token, _ = running
    status, body = fetch(f"{base}/readyz", token)
    assert status == 200 and json.loads(body)["status"] == "ready"
    engine.sources_by_channel["adt"].stop()  # the port is closed now
    status, body = fetch(f"{base}/readyz", token)
    assert status == 503 and json.loads(body)["problems"] == ["channel adt: listener down"]
    assert values(scrape(base, token)["bridge_channel_listener_up"], channel="adt") == [0]


def test_the_channels_api_says_whether_each_listener_is_up(running):
    engine, _, base, token, _ = running
    (adt_channel,) = json.loads(fetch(f"{base}/api/v1/channels", token)[1])["items"]
    assert adt_channel["listener"] == "up"
    engine.sources_by_channel["adt"].stop()
    (adt_channel,) = json.loads(fetch(f"{base}/api/v1/channels", token)[1])["items"]
    assert adt_channel["listener"] == "down" and adt_channel["state"] == "running"


def post(url: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_operator_stops_and_starts_a_listener_and_the_overview_charts_its_traffic(running):
    """Stopped means the port is closed (not "acknowledged and queued"); health, /readyz and the
    audit say so; started again it takes messages; the overview draws the hour's arrivals."""
    engine, _, base, viewer, _ = running
    operator = new_token()
    engine.store.create_token("oncall", token_digest(operator), "operator", actor="test")
    port = engine.sources_by_channel["adt"].port
    assert RawClient(port).send(adt("BEFORE-STOP"))[0] == "AA"

    assert post(f"{base}/api/v1/channels/adt/listener/stop", viewer, {"reason": "x"})[0] == 403
    status, body = post(f"{base}/api/v1/channels/adt/listener/stop", operator, {"reason": "EHR cutover"})
    assert (status, body["listener"]) == (200, "down")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    (adt_channel,) = json.loads(fetch(f"{base}/api/v1/channels", viewer)[1])["items"]
    assert adt_channel["listener"] == "down"
    assert fetch(f"{base}/readyz", viewer)[0] == 503
    assert post(f"{base}/api/v1/channels/adt/listener/stop", operator, {"reason": "again"})[0] == 200  # idempotent
    [entry] = [e for e in engine.store.search_audit(action="channel.listener_stop") if e.detail["reason"] == "EHR cutover"]
    assert entry.actor.endswith("oncall") and entry.target == "channel:adt"

    status, body = post(f"{base}/api/v1/channels/adt/listener/start", operator, {"reason": "cutover done"})
    assert (status, body["listener"]) == (200, "up")
    assert post(f"{base}/api/v1/channels/adt/listener/start", operator, {"reason": "twice"})[0] == 409
    assert RawClient(engine.sources_by_channel["adt"].port).send(adt("AFTER-START"))[0] == "AA"
    assert fetch(f"{base}/readyz", viewer)[0] == 200

    status, page = fetch(f"{base}/", viewer)
    assert status == 200 and '<svg class="sparkline"' in page
    assert "adt: 2 received in the last 60 minutes, at most 2 in one minute" in page
