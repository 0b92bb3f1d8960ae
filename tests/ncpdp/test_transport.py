"""The ncpdp+http(s) transport against the switch simulator, over real HTTP with a real engine."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import bridge.plugins.ncpdp as p
from bridge import (
    ConfigError,
    Delivery,
    DestinationContext,
    PermanentDeliveryError,
    Receipt,
    SourceContext,
    TransientDeliveryError,
)
from bridge.errors import StoreError
from bridge.plugins.ncpdp.transport import CallbackSource, SwitchDestination, judge
from bridge.testing import engine_from_dict, plugin_manager
from tests.ncpdp.switch_sim import SwitchSim, answer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ncpdp"
AUTH = ("switch-user", "s3cret-for-tests")


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def plugins():
    # the transport is under test here; the telehealth gate's own suite covers what it holds or blocks
    return plugin_manager(("ncpdp", p), disabled=("telehealth_policy",))


@pytest.fixture
def sim():
    with SwitchSim() as switch:
        yield switch


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("TB_TEST_SWITCH_PASSWORD", AUTH[1])
    return {"username": AUTH[0], "password_env": "TB_TEST_SWITCH_PASSWORD"}


def outbound_engine(tmp_path, plugins, url, **retry):
    config = {
        "channels": {"platform": {"source": "file://inbox", "format": "ncpdp", "routes": [{"to": ["switch"]}]}},
        "destinations": {"switch": {"url": url, "format": "ncpdp", "retry": {"max_attempts": 3, "initial_seconds": 60, **retry},
                                    "options": {"from_id": "TBCLINIC01", "directory": str(FIXTURES / "pharmacies.csv"),
                                                "connect_timeout": 2, "timeout": 5}}},
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    return engine


# --- destination --------------------------------------------------------------------------------


def test_newrx_is_delivered_to_the_switch_with_a_stable_message_id(tmp_path, plugins, sim):
    engine = outbound_engine(tmp_path, plugins, sim.url)
    try:
        receipt = engine.submit("platform", raw("newrx.xml"))
        engine.drain()
        (row,) = engine.store.outbox_rows(receipt.message_id)
        assert row.status == "delivered", row.last_error
        (sent,) = sim.received
        assert p.peek(sent).control_id == f"TB{receipt.message_id}-NewRx"
        assert sim.answers == [(200, "Status 000")]
        (rx,) = p.decode(sent, {})
        assert rx.pharmacy.ncpdp_id == "9912345" and rx.extra["ncpdp"]["from"]["id"] == "TBCLINIC01"
    finally:
        engine.stop()


def test_error_900_is_a_dead_letter_and_500_is_retried(tmp_path, plugins, sim):
    engine = outbound_engine(tmp_path, plugins, sim.url)
    try:
        sim.mode = "reject"
        first = engine.submit("platform", raw("newrx.xml"))
        engine.drain()
        (row,) = engine.store.outbox_rows(first.message_id)
        assert row.status == "dead" and "SCRIPT Error 900" in row.last_error
        assert "not on this network" in row.last_error  # the switch's description is kept
        sim.mode = "fail500"
        second = engine.submit("platform", raw("cancelrx.xml"))
        engine.drain()
        (row,) = engine.store.outbox_rows(second.message_id)
        assert row.status not in ("delivered", "dead") and "HTTP 500" in row.last_error
    finally:
        engine.stop()


def delivery(payload: bytes) -> Delivery:
    return Delivery(outbox_id=1, message_id=1, destination="switch", payload=payload,
                    media_type="application/xml", file_extension="xml", attempt=1)


def test_verify_is_delivered_and_429_honours_retry_after(tmp_path, sim):
    dest = SwitchDestination(DestinationContext(url=sim.url, name="switch", options={}, config_dir=str(tmp_path)))
    try:
        sim.mode = "verify"
        said = dest.send(delivery(raw("newrx.xml")))
        assert said.detail.startswith("switch accepted: Verify 010") and "switch MessageID SW-" in said.detail
        assert b"<Verify>" in said.reply  # the answer itself goes back to the engine for correlation
        sim.mode = "ratelimit"
        with pytest.raises(TransientDeliveryError, match="429") as info:
            dest.send(delivery(raw("newrx.xml")))
        assert info.value.retry_after == 7.0
    finally:
        dest.close()


def test_timeouts_and_refused_connections_are_transient(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    try:
        ctx = DestinationContext(url=f"ncpdp+http://127.0.0.1:{port}/script", name="s",
                                 options={"timeout": 0.5}, config_dir=str(tmp_path))
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError, match="did not answer within 0.5 s"):
            SwitchDestination(ctx).send(delivery(raw("newrx.xml")))
        assert time.monotonic() - started < 3
    finally:
        silent.close()
    closed = DestinationContext(url=f"ncpdp+http://127.0.0.1:{port}/script", name="s", options={}, config_dir=str(tmp_path))
    with pytest.raises(TransientDeliveryError, match="could not reach the switch"):
        SwitchDestination(closed).send(delivery(raw("newrx.xml")))


def test_judging_answers():
    status, _ = answer("Status", "010", "ok", "M1")
    assert "Status 010" in judge(200, status, {}, "M1")
    error, _ = answer("Error", "601", "receiver busy", "M1")
    with pytest.raises(TransientDeliveryError, match="Error 601"):
        judge(200, error, {}, "M1")
    other, _ = answer("Status", "000", "ok", "SOMEONE-ELSE")
    with pytest.raises(TransientDeliveryError, match="relates to MessageID SOMEONE-ELSE"):
        judge(200, other, {}, "M1")
    with pytest.raises(PermanentDeliveryError, match="credentials"):
        judge(401, b"", {}, "M1")
    with pytest.raises(TransientDeliveryError, match="without a readable SCRIPT"):
        judge(200, b"<html/>", {}, "M1")


def test_plain_http_is_refused_off_loopback(tmp_path):
    with pytest.raises(ConfigError, match="clear text"):
        SwitchDestination(DestinationContext(url="ncpdp+http://switch.example/script", name="s", options={},
                                             config_dir=str(tmp_path)))


# --- callback source ------------------------------------------------------------------------------


def inbound_engine(tmp_path, plugins, credentials, **channel):
    config = {"channels": {"pharmacy": {"source": "ncpdp+http://127.0.0.1:0/script", "format": "ncpdp",
                                        "options": credentials, **channel}}}
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_sources()
    (source,) = engine.sources
    source.start()
    return engine, source, f"http://127.0.0.1:{source.port}/script"


def test_callback_answers_status_000_after_commit_and_dedupes(tmp_path, plugins, credentials):
    engine, source, url = inbound_engine(tmp_path, plugins, credentials)
    try:
        first = SwitchSim.post_callback(url, raw("rxfill.xml"), AUTH)
        assert first.status_code == 200
        (event,) = p.decode(first.content, {})
        assert (event.event_type, event.code, event.relates_to_message_id) == ("Status", "000", "PH-FILL-83")
        assert (messages := engine.store.search()) and len(messages) == 1  # committed before the answer
        again = SwitchSim.post_callback(url, raw("rxfill.xml"), AUTH)
        assert again.status_code == 200 and b"<Code>000</Code>" in again.content
        assert len(engine.store.search()) == 1
        engine.drain()
        (stored,) = engine.store.search()
        (record,) = stored.records
        assert (record["event_type"], record["fill_status"], record["relates_to_message_id"],
                record["prescriber_order_number"]) == ("RxFill", "Dispensed", "NEWRX-0001", "TB-ORD-1001")
        assert stored.ncpdp_message_id == "PH-FILL-83" or stored.control_id == "PH-FILL-83"
    finally:
        engine.stop()


def test_callback_refusals(tmp_path, plugins, credentials):
    engine, source, url = inbound_engine(tmp_path, plugins, credentials, max_message_bytes=6000)
    try:
        assert SwitchSim.post_callback(url, raw("rxfill.xml"), ("switch-user", "wrong")).status_code == 401
        assert SwitchSim.post_callback(url, raw("rxfill.xml"), None).status_code == 401
        big = raw("status.xml") + b"<!--" + b"x" * 8000 + b"-->"
        assert SwitchSim.post_callback(url, big, AUTH).status_code == 413
        assert engine.store.search() == []
        invalid = raw("status.xml").replace(b"<Code>000</Code>", b"")
        refused = SwitchSim.post_callback(url, invalid, AUTH)
        assert refused.status_code == 400
        (error,) = p.decode(refused.content, {})
        assert error.code == "900" and "Body/Status/Code is missing" in error.description
        assert error.relates_to_message_id == "SW-STATUS-77"
        (kept,) = engine.store.search()
        assert kept.status == "failed" and engine.store.get_raw(kept.id) == invalid
        garbage = SwitchSim.post_callback(url, b"<not-closed", AUTH)
        assert garbage.status_code == 400 and b"<Code>900</Code>" in garbage.content
    finally:
        engine.stop()


def test_store_failure_answers_a_transient_error(tmp_path, credentials):
    def failing_submit(raw_bytes, origin=None, error=None):
        raise StoreError("disk full")

    ctx = SourceContext(url="ncpdp+http://127.0.0.1:0/script", channel="pharmacy", options=credentials,
                        submit=failing_submit, config_dir=str(tmp_path), max_message_bytes=100_000,
                        format_name="ncpdp")
    source = CallbackSource(ctx)
    source.start()
    try:
        answer_ = SwitchSim.post_callback(f"http://127.0.0.1:{source.port}/script", raw("rxfill.xml"), AUTH)
        assert answer_.status_code == 503 and answer_.headers["Retry-After"] == "5"
        (error,) = p.decode(answer_.content, {})
        assert error.event_type == "Error" and error.code == "600"
    finally:
        source.stop()


def test_callback_needs_authentication_configured(tmp_path):
    ctx = SourceContext(url="ncpdp+http://127.0.0.1:0/script", channel="c", options={},
                        submit=lambda *a, **k: Receipt(1, True), config_dir=str(tmp_path),
                        max_message_bytes=1000, format_name="ncpdp")
    with pytest.raises(ConfigError, match="needs authentication"):
        CallbackSource(ctx)


def test_end_to_end_newrx_out_and_rxfill_back(tmp_path, plugins, sim, credentials):
    """A running engine: a NewRx goes to the switch; the switch later calls back with an RxFill."""
    config = {
        "channels": {
            "platform": {"source": "file://inbox", "format": "ncpdp", "routes": [{"to": ["switch"]}]},
            "pharmacy": {"source": "ncpdp+http://127.0.0.1:0/script", "format": "ncpdp", "options": credentials},
        },
        "destinations": {"switch": {"url": sim.url, "format": "ncpdp",
                                    "options": {"from_id": "TBCLINIC01", "directory": str(FIXTURES / "pharmacies.csv")}}},
        "engine": {"poll_seconds": 0.05},
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.start()
    try:
        receipt = engine.submit("platform", raw("newrx.xml"))
        deadline = time.monotonic() + 10
        while not sim.received and time.monotonic() < deadline:
            time.sleep(0.05)
        sent_id = p.peek(sim.received[0]).control_id
        assert sent_id == f"TB{receipt.message_id}-NewRx"
        callback = next(s for s in engine.sources if isinstance(s, CallbackSource))
        fill = raw("rxfill.xml").replace(b"NEWRX-0001", sent_id.encode())
        reply = SwitchSim.post_callback(f"http://127.0.0.1:{callback.port}/script", fill, AUTH)
        assert reply.status_code == 200
        while time.monotonic() < deadline:
            done = [m for m in engine.store.search(channel="pharmacy") if m.records]
            if done:
                break
            time.sleep(0.05)
        assert done[0].records[0]["relates_to_message_id"] == sent_id
    finally:
        engine.stop()
