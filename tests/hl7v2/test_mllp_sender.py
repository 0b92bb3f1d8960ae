"""The MLLP sender (destination): kept-open connections, ACK judgement, timeouts, engine retries."""

from __future__ import annotations

import socket
import threading

import pytest

from bridge import ConfigError, Delivery, DestinationContext, PermanentDeliveryError, TransientDeliveryError
from bridge.plugins.hl7v2.mllp import MLLPDestination

from tests.hl7v2.conftest_mllp import TEST_FORMAT, RawClient, ScriptedPeer, adt, channel, listening


@pytest.fixture
def peer_factory():
    peers: list[ScriptedPeer] = []

    def make(script=()):
        peer = ScriptedPeer(script)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def destination(port: int, **options) -> MLLPDestination:
    return MLLPDestination(DestinationContext(url=f"mllp://127.0.0.1:{port}", name="ehr", options=options,
                                              config_dir="."))


def delivery(control_id: str, n: int = 1) -> Delivery:
    return Delivery(outbox_id=n, message_id=n, destination="ehr", payload=adt(control_id),
                    media_type="x-application/hl7-v2+er7", file_extension="hl7", attempt=1)


def test_connection_is_kept_open_across_sends(peer_factory):
    peer = peer_factory()
    dest = destination(peer.port)
    answers = [dest.send(delivery(f"K{i}")) for i in range(5)]
    assert answers == [f"AA from 127.0.0.1:{peer.port}"] * 5
    assert peer.connections == 1
    assert [m.split(b"|")[9] for m in peer.received] == [f"K{i}".encode() for i in range(5)]
    dest.close()


def test_concurrent_deliverer_threads_share_a_small_pool(peer_factory):
    peer = peer_factory()
    dest = destination(peer.port, max_connections=2)
    answers: list[str] = []
    lock = threading.Lock()

    def deliverer(n: int) -> None:
        for i in range(10):
            answer = dest.send(delivery(f"T{n}-{i}"))
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=deliverer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == 40 and set(answers) == {f"AA from 127.0.0.1:{peer.port}"}
    assert sorted(m.split(b"|")[9] for m in peer.received) == sorted(
        f"T{n}-{i}".encode() for n in range(4) for i in range(10))
    assert 1 <= peer.connections <= 2
    dest.close()


@pytest.mark.parametrize("code, error, ar", [
    ("AE", TransientDeliveryError, "dead"),
    ("CE", TransientDeliveryError, "dead"),
    ("AR", PermanentDeliveryError, "dead"),
    ("CR", PermanentDeliveryError, "dead"),
    ("AR", TransientDeliveryError, "retry"),
])
def test_error_acks_are_judged(peer_factory, code, error, ar):
    peer = peer_factory([code])
    dest = destination(peer.port, ar=ar)
    with pytest.raises(error) as caught:
        dest.send(delivery("J1"))
    assert type(caught.value) is error
    assert str(caught.value) == f"{code} from 127.0.0.1:{peer.port}: scripted {code}"
    assert dest.send(delivery("J2")) == f"AA from 127.0.0.1:{peer.port}"


def test_peer_that_never_acks_times_out_and_the_next_send_reconnects(peer_factory):
    peer = peer_factory(["silent"])
    dest = destination(peer.port, ack_timeout_seconds=0.3)
    with pytest.raises(TransientDeliveryError, match=r"no ACK from 127\.0\.0\.1:\d+ within 0\.3 s"):
        dest.send(delivery("S1"))
    assert dest.send(delivery("S1")) == f"AA from 127.0.0.1:{peer.port}"
    assert peer.connections == 2


def test_peer_closing_an_idle_connection_is_recovered_transparently(peer_factory):
    peer = peer_factory()
    dest = destination(peer.port)
    assert dest.send(delivery("R1")).startswith("AA")
    peer.drop_connections()
    assert dest.send(delivery("R2")).startswith("AA")
    assert peer.connections == 2


def test_peer_closing_without_an_answer_is_transient(peer_factory):
    peer = peer_factory(["close"])
    dest = destination(peer.port)
    with pytest.raises(TransientDeliveryError, match="closed the connection without a complete ACK"):
        dest.send(delivery("X1"))
    assert dest.send(delivery("X2")).startswith("AA")


@pytest.mark.parametrize("action, message", [
    ("stale", "acknowledges control id M1X, not M1"),
    ("garbage", "unreadable ACK"),
])
def test_wrong_answers_are_transient_and_drop_the_connection(peer_factory, action, message):
    peer = peer_factory([action])
    dest = destination(peer.port)
    with pytest.raises(TransientDeliveryError, match=message):
        dest.send(delivery("M1"))
    assert dest.send(delivery("M1")).startswith("AA")
    assert peer.connections == 2


def test_nobody_listening_is_transient():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(TransientDeliveryError, match=rf"cannot connect to 127.0.0.1:{port}"):
        destination(port, connect_timeout_seconds=1).send(delivery("N1"))


def test_bad_destination_url_and_options_are_config_errors():
    with pytest.raises(ConfigError, match="a sender needs a real port"):
        MLLPDestination(DestinationContext(url="mllp://127.0.0.1:0", name="ehr", options={}, config_dir="."))
    with pytest.raises(ConfigError, match=r"destinations\.ehr\.options\.ar: expected one of dead, retry"):
        destination(2575, ar="maybe")


def test_sender_against_our_listener(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        dest = destination(source.port)
        assert dest.send(delivery("OURS-1")) == f"AA from 127.0.0.1:{source.port}"
        assert dest.send(delivery("OURS-1")) == f"AA from 127.0.0.1:{source.port}"  # resend: duplicate
        assert [m.control_id for m in engine.store.search(channel="adt")] == ["OURS-1"]
        dest.close()


def engine_config(peer_port: int, **retry) -> dict:
    return {
        "channels": {"adt": channel(to="ehr")},
        "destinations": {"ehr": {"url": f"mllp://127.0.0.1:{peer_port}", "format": TEST_FORMAT,
                                 "options": {"ack_timeout_seconds": 2},
                                 "retry": {"max_attempts": 3, "initial_seconds": 0, "jitter": 0, **retry}}},
    }


def test_engine_run_ae_then_aa_is_retried_and_delivered(bridge_engine, peer_factory):
    peer = peer_factory(["AE"])
    with listening(bridge_engine, engine_config(peer.port)) as (engine, source):
        assert RawClient(source.port).send(adt("FLOW-1"))[0] == "AA"
        engine.drain()
        [message] = engine.store.search(channel="adt")
        [row] = engine.store.outbox_rows(message_id=message.id)
        assert (row.status, row.attempts) == ("delivered", 2)
        assert len(peer.received) == 2 and peer.received[0] == peer.received[1]
        assert peer.received[0].split(b"|")[9] == f"TB{message.id}".encode()


def test_engine_run_ar_goes_to_the_dead_letters(bridge_engine, peer_factory):
    peer = peer_factory(["AR"])
    with listening(bridge_engine, engine_config(peer.port)) as (engine, source):
        assert RawClient(source.port).send(adt("FLOW-2"))[0] == "AA"
        engine.drain()
        [message] = engine.store.search(channel="adt")
        [row] = engine.store.outbox_rows(message_id=message.id)
        assert (row.status, row.attempts) == ("dead", 1)
        assert f"AR from 127.0.0.1:{peer.port}: scripted AR" in row.last_error
        assert len(peer.received) == 1
