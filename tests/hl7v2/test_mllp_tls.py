"""MLLP over TLS (``mllps://``) and mutual TLS, with certificates made in the test's folder."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from bridge import ConfigError, Delivery, DestinationContext, TransientDeliveryError
from bridge.plugins.hl7v2.mllp import MLLPDestination

from tests.hl7v2.conftest_mllp import RawClient, adt, channel, listening, make_pki, mllp


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path)


def tls_channel(pki, **extra):
    # relative paths: resolved against the config folder (tmp_path)
    options = {"cert_file": pki.server_cert.name, "key_file": pki.server_key.name, **extra}
    return {"channels": {"adt": channel("mllps://127.0.0.1:0", options=options)}}


def sender(port, folder, **options) -> MLLPDestination:
    ctx = DestinationContext(url=f"mllps://127.0.0.1:{port}", name="ehr", options=options, config_dir=str(folder))
    return MLLPDestination(ctx)


def delivery(control_id: str) -> Delivery:
    return Delivery(outbox_id=1, message_id=1, destination="ehr", payload=adt(control_id),
                    media_type="x-application/hl7-v2+er7", file_extension="hl7", attempt=1)


def test_tls_listener_and_sender(bridge_engine, pki, tmp_path):
    with listening(bridge_engine, tls_channel(pki)) as (engine, source):
        dest = sender(source.port, tmp_path, ca_file="ca.pem")
        assert dest.send(delivery("TLS-1")) == f"AA from 127.0.0.1:{source.port}"
        assert dest.send(delivery("TLS-2")).startswith("AA")
        rows = engine.store.search(channel="adt")
        assert sorted(m.control_id for m in rows) == ["TLS-1", "TLS-2"]
        assert {m.origin["transport"] for m in rows} == {"mllps"}
        dest.close()


def test_sender_refuses_a_server_it_cannot_verify(bridge_engine, pki, tmp_path):
    with listening(bridge_engine, tls_channel(pki)) as (engine, source):
        dest = sender(source.port, tmp_path)  # system trust store: our test CA is not in it
        with pytest.raises(TransientDeliveryError, match="TLS handshake with 127.0.0.1:.* failed"):
            dest.send(delivery("NOPE"))
        wrong_name = sender(source.port, tmp_path, ca_file="ca.pem", server_hostname="ehr.example.org")
        with pytest.raises(TransientDeliveryError, match="TLS handshake"):
            wrong_name.send(delivery("NOPE"))
        assert engine.store.search(channel="adt") == []


def test_plain_mllp_to_a_tls_listener_is_not_acknowledged(bridge_engine, pki):
    with listening(bridge_engine, tls_channel(pki)) as (engine, source):
        client = RawClient(source.port, timeout=5)
        client.send_raw(mllp(adt("PLAIN")))
        with pytest.raises((ConnectionError, AssertionError, TimeoutError)):
            client.ack()
        assert engine.store.search(channel="adt") == []


def test_mutual_tls_requires_a_client_certificate_from_our_ca(bridge_engine, pki, tmp_path, caplog):
    config = tls_channel(pki, ca_file="ca.pem", require_client_cert=True)
    with listening(bridge_engine, config) as (engine, source):
        good = sender(source.port, tmp_path, ca_file="ca.pem", cert_file="client.pem", key_file="client.key")
        assert good.send(delivery("MTLS-1")).startswith("AA")
        without = sender(source.port, tmp_path, ca_file="ca.pem")
        with pytest.raises(TransientDeliveryError):
            without.send(delivery("MTLS-2"))
        rogue = sender(source.port, tmp_path, ca_file="ca.pem", cert_file="rogue.pem", key_file="rogue.key")
        with pytest.raises(TransientDeliveryError):
            rogue.send(delivery("MTLS-3"))
        [row] = engine.store.search(channel="adt")
        assert row.control_id == "MTLS-1"
        assert row.origin["tls_client"] == "clinic-sender"
        def refusals():
            return [r.getMessage() for r in caplog.records if "TLS handshake from 127.0.0.1:" in r.getMessage()]

        deadline = time.monotonic() + 5  # the listener logs from its own thread, maybe after we saw the reset
        while len(refusals()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(refusals()) == 2, "each refused handshake is logged for the operator"
        good.close()


def test_raw_tls_client_without_certificate_gets_no_ack(bridge_engine, pki):
    config = tls_channel(pki, ca_file="ca.pem", require_client_cert=True)
    with listening(bridge_engine, config) as (engine, source):
        context = ssl.create_default_context(cafile=str(pki.ca))
        raw = socket.create_connection(("127.0.0.1", source.port), timeout=5)
        try:
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(mllp(adt("RAW")))
            data = tls.recv(1024)
        except (ssl.SSLError, ConnectionError):
            data = b""
        assert b"MSA|" not in data
        assert engine.store.search(channel="adt") == []


@pytest.mark.parametrize("options, path", [
    ({}, "channels.adt.options.cert_file"),
    ({"cert_file": "missing.pem"}, "channels.adt.options.cert_file"),
    ({"cert_file": "server.pem", "key_file": "server.key", "require_client_cert": True},
     "channels.adt.options.ca_file"),
    ({"cert_file": "server.pem", "key_file": "client.key"}, "channels.adt.options.cert_file"),
])
def test_tls_configuration_problems_name_the_option(bridge_engine, pki, options, path):
    with pytest.raises(ConfigError) as caught:
        with listening(bridge_engine, {"channels": {"adt": channel("mllps://127.0.0.1:0", options=options)}}):
            pass
    assert caught.value.problems[0][0] == path


def test_a_misspelt_verify_flag_is_an_error_not_verification_off():
    from bridge import ConfigError
    from bridge.plugins.hl7v2.mllp_tls import client_context

    with pytest.raises(ConfigError, match="verify: expected true or false"):
        client_context({"verify": "ture"}, ".", "destinations.ehr")
    assert client_context({"verify": "yes"}, ".", "destinations.ehr").check_hostname is True


def test_bytes_handed_over_before_the_connection_is_set_up_are_answered(tmp_path):
    """After a TLS handshake the secure transport may deliver the first frame before start_tls has
    returned to the listener: that frame is kept and answered once the connection is set up, with
    its origin, never dropped."""
    import asyncio

    from bridge import Receipt, SourceContext
    from bridge.plugins.hl7v2.mllp import MLLPSource, _Connection, frame

    origins = []

    def submit_many(items):
        origins.extend(dict(origin) for _, origin, *_ in items)
        return [Receipt(7, True)] * len(items)

    ctx = SourceContext(url="mllps://127.0.0.1:0", channel="adt", options={}, config_dir=str(tmp_path),
                        submit=lambda raw, origin=None, error=None: Receipt(7, True), submit_many=submit_many,
                        max_message_bytes=10_000, format_name="hl7v2")
    source = MLLPSource.__new__(MLLPSource)  # no TLS files needed: only the connection logic is used
    source.__dict__.update(ctx=ctx, scheme="mllps", idle_timeout=5.0, max_connections=5, policy_ack=False,
                           connections=1, _open=set(), ack_mode="auto")

    class FakeTransport(asyncio.Transport):
        def __init__(self):
            super().__init__()
            self.written = b""

        def get_extra_info(self, name, default=None):
            return ("127.0.0.1", 5555) if name == "peername" else default

        def write(self, data):
            self.written += data

        def pause_reading(self):
            pass

        def resume_reading(self):
            pass

        def close(self):
            pass

    async def scenario() -> bytes:
        from concurrent.futures import ThreadPoolExecutor

        from bridge.plugins.hl7v2.mllp import _ThreadBatcher
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1)
        source._loop = loop
        source._commits = _ThreadBatcher(loop, pool, source._submit_many)
        source._verdicts = _ThreadBatcher(loop, pool, source._evaluate_many)
        connection = _Connection(source, counted=True)
        transport = FakeTransport()
        connection.data_received(frame(b"MSH|^~\\&|APP|FAC|BRIDGE|TB|20240101||ADT^A04|EARLY-1|P|2.5\r"))
        connection.connection_made(transport)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if transport.written:
                break
        pool.shutdown()
        return transport.written

    written = asyncio.run(scenario())
    assert b"MSA|AA|EARLY-1" in written
    assert origins == [{"transport": "mllps", "peer": "127.0.0.1:5555"}]
