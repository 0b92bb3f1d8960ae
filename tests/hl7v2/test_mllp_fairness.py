"""Issue 16, defect 3: one peer must not lock senders out of an MLLP listener.

Real sockets on loopback, a real engine and SQLite store. Attackers connect from 127.0.0.2 (Linux
routes all of 127.0.0.0/8 to the loopback interface), legitimate senders from 127.0.0.1 or 127.0.0.3,
so the listener sees distinct source addresses as it would on a network.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bridge import ConfigError

from tests.hl7v2.conftest_mllp import SB, RawClient, adt, channel, listening, make_pki, mllp, wait_until
from tests.hl7v2.test_mllp_tls import delivery, sender

ATTACKER = "127.0.0.2"
OTHER = "127.0.0.3"
CANARY = "Zzyzxcanary"  # a surname that must never reach a log


def connect_from(address: str, port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def client_from(address: str, port: int) -> RawClient:
    return RawClient(port, sock=connect_from(address, port))


@contextlib.contextmanager
def dripping(socks: list[socket.socket], every: float) -> Iterator[None]:
    """Send each socket a frame start and then one byte of the frame per ``every`` seconds."""
    stop = threading.Event()

    def drip() -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(SB + b"MSH|")
        while not stop.wait(every):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"x")

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def test_100_slowloris_and_500_idle_connections_from_one_address_do_not_lock_out_a_sender(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (_, source):  # the defaults
        established = RawClient(source.port)
        assert established.send(adt("LEGIT-0"))[0] == "AA"
        slow = [connect_from(ATTACKER, source.port) for _ in range(100)]
        idle: list[socket.socket] = []
        worst = 0.0
        sent = 0
        with dripping(slow, every=0.2):
            for n in range(500):
                idle.append(connect_from(ATTACKER, source.port))
                if n % 25 == 0:  # the established sender keeps sending throughout the attack
                    started = time.monotonic()
                    assert established.send(adt(f"LEGIT-{n + 1}"))[:2] == ("AA", f"LEGIT-{n + 1}")
                    worst, sent = max(worst, time.monotonic() - started), sent + 1
            assert wait_until(lambda: source.guard.refused + source.guard.per_host[ATTACKER] == 600, timeout=20)
            assert source.guard.per_host[ATTACKER] == 50  # max_connections_per_peer's default
            # a sender that connects now, from its own address or from the established one's, is served
            for address in ("127.0.0.1", OTHER):
                newcomer = client_from(address, source.port)
                started = time.monotonic()
                assert newcomer.send(adt(f"NEW-{address}"))[0] == "AA"
                worst = max(worst, time.monotonic() - started)
                newcomer.close()
            for n in range(20):
                started = time.monotonic()
                assert established.send(adt(f"LEGIT-AFTER-{n}"))[0] == "AA"
                worst = max(worst, time.monotonic() - started)
        assert sent == 20
        assert worst < 2.0, f"a legitimate sender waited {worst:.2f} s for an ACK"
        for sock in slow + idle:
            sock.close()
        established.close()


def test_a_full_cap_evicts_a_frameless_connection_of_the_biggest_holder_never_an_established_sender(
        bridge_engine, caplog):
    options = {"max_connections": 12, "max_connections_per_peer": 1000}
    with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}) as (_, source):
        established = RawClient(source.port)
        assert established.send(adt("EST-1"))[0] == "AA"
        attackers = [connect_from(ATTACKER, source.port) for _ in range(40)]
        assert wait_until(lambda: source.guard.refused == 29)  # 11 admitted; then the biggest holder is refused
        assert source.connections == 12 and source.guard.per_host[ATTACKER] == 11
        assert source.guard.evicted == 0
        # a newcomer from an address holding fewer takes the slot of one of the attacker's connections
        with caplog.at_level(logging.WARNING, logger="bridge.plugins.hl7v2.mllp"):
            newcomer = client_from(OTHER, source.port)
            assert newcomer.send(adt("NEW-1"))[0] == "AA"
        assert source.guard.evicted == 1 and source.guard.per_host[ATTACKER] == 10
        assert any("completed no frame" in r.getMessage() and ATTACKER in r.getMessage() for r in caplog.records)
        assert established.send(adt("EST-2"))[0] == "AA"  # never the one evicted
        assert sum(1 for sock in attackers if _closed(sock, wait=0.3)) == 30  # 29 refused, 1 evicted
        newcomer.close()
        established.close()
        for sock in attackers:
            sock.close()


def test_a_newcomer_is_refused_when_every_slot_holds_an_established_sender(bridge_engine):
    options = {"max_connections": 3, "max_connections_per_peer": 1000}
    with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}) as (_, source):
        senders = [client_from(ATTACKER, source.port) for _ in range(3)]
        for n, sender in enumerate(senders):
            assert sender.send(adt(f"EST-{n}"))[0] == "AA"
        newcomer = client_from(OTHER, source.port)
        assert newcomer.closed_by_peer(wait=5)
        assert source.guard.evicted == 0
        assert [sender.send(adt(f"AGAIN-{n}"))[0] for n, sender in enumerate(senders)] == ["AA"] * 3
        for sender in senders:
            sender.close()


def test_a_peer_dripping_a_frame_is_cut_off_at_the_frame_deadline_and_the_log_has_no_frame_bytes(
        bridge_engine, caplog):
    options = {"frame_timeout_seconds": 1.5, "idle_timeout_seconds": 300}
    with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}) as (_, source):
        sock = connect_from(ATTACKER, source.port)
        started = time.monotonic()
        payload = mllp(adt("DRIP-1", patient=CANARY))
        with caplog.at_level(logging.INFO, logger="bridge.plugins.hl7v2.mllp"):
            closed_at = None
            for byte in payload[:-2]:  # one byte per 0.1 s, never the end block
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    closed_at = time.monotonic()
                    break
                if _closed(sock, wait=0.1):
                    closed_at = time.monotonic()
                    break
            assert closed_at is not None, "the dripping peer was never cut off"
        assert 1.4 <= closed_at - started < 3.0
        lines = [r.getMessage() for r in caplog.records]
        assert any("not completed within 1.5 s" in line for line in lines)
        assert not any(CANARY in line or "DRIP-1" in line for line in lines)
        assert wait_until(lambda: source.connections == 0)
        sock.close()


def test_bytes_outside_frames_do_not_keep_a_connection_open(bridge_engine):
    options = {"idle_timeout_seconds": 1.0}
    with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}) as (_, source):
        sock = connect_from(ATTACKER, source.port)
        started = time.monotonic()
        while not _closed(sock, wait=0.1):
            with contextlib.suppress(OSError):
                sock.send(b"z")  # no start byte: never part of a frame
            assert time.monotonic() - started < 5, "junk bytes kept the connection open"
        assert 0.9 <= time.monotonic() - started < 3.0
        sock.close()


def test_a_sender_between_frames_is_closed_only_after_the_idle_timeout(bridge_engine):
    options = {"idle_timeout_seconds": 1.0, "frame_timeout_seconds": 0.5}
    with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}) as (_, source):
        client = RawClient(source.port)
        for n in range(4):  # each frame in two halves 0.2 s apart: within the frame deadline
            payload = mllp(adt(f"HALF-{n}"))
            client.send_raw(payload[:20])
            time.sleep(0.2)
            client.send_raw(payload[20:])
            assert client.ack()[:2] == ("AA", f"HALF-{n}")
            answered = time.monotonic()
            time.sleep(0.5)  # 0.7 s per frame: the idle clock restarts at each completed frame
        assert client.closed_by_peer(wait=5)
        assert 0.9 <= time.monotonic() - answered < 2.5


def test_per_peer_refusals_are_logged_once_per_interval_with_address_and_counts_only(bridge_engine, caplog):
    options = {"max_connections_per_peer": 2}
    with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}) as (_, source):
        held = [client_from(ATTACKER, source.port) for _ in range(2)]
        for n, client in enumerate(held):
            assert client.send(adt(f"HELD-{n}", patient=CANARY))[0] == "AA"
        with caplog.at_level(logging.INFO, logger="bridge.plugins.hl7v2.mllp"):
            refused = []
            for n in range(5):
                sock = connect_from(ATTACKER, source.port)
                with contextlib.suppress(OSError):
                    sock.sendall(mllp(adt(f"REFUSED-{n}", patient=CANARY)))
                refused.append(sock)
            assert all(_closed(sock, wait=5) for sock in refused)
            other = client_from(OTHER, source.port)
            assert other.send(adt("OTHER-1"))[0] == "AA"  # another address is not affected
        assert source.guard.refused == 5
        lines = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
        assert lines == [f"channel adt: refused a connection from {ATTACKER}: 2 connections from this address "
                         "already open (max_connections_per_peer 2)"]  # the other 4 within the interval
        assert not any(CANARY in r.getMessage() or "REFUSED-" in r.getMessage() for r in caplog.records)
        for sock in [*refused, *(c.sock for c in held), other.sock]:
            sock.close()


def test_the_per_peer_limit_holds_on_tls_and_a_failed_handshake_frees_its_slot(bridge_engine, tmp_path):
    pki = make_pki(tmp_path)
    options = {"cert_file": pki.server_cert.name, "key_file": pki.server_key.name, "max_connections_per_peer": 2,
               "handshake_timeout_seconds": 1}
    with listening(bridge_engine, {"channels": {"adt": channel("mllps://127.0.0.1:0", options=options)}}) as (
            _, source):
        first, second = sender(source.port, tmp_path, ca_file="ca.pem"), sender(source.port, tmp_path, ca_file="ca.pem")
        assert first.send(delivery("TLS-A")).startswith("AA")
        assert second.send(delivery("TLS-B")).startswith("AA")
        extra = socket.create_connection(("127.0.0.1", source.port), timeout=5)
        assert _closed(extra)
        assert source.guard.per_host["127.0.0.1"] == 2 and source.guard.refused == 1
        second.close()
        assert wait_until(lambda: source.guard.per_host["127.0.0.1"] == 1)
        plain = socket.create_connection(("127.0.0.1", source.port), timeout=5)
        plain.sendall(mllp(adt("NOT-TLS")))  # no ClientHello: the handshake fails and its slot is freed
        assert _closed(plain)
        assert wait_until(lambda: source.guard.per_host["127.0.0.1"] == 1), dict(source.guard.per_host)
        assert sender(source.port, tmp_path, ca_file="ca.pem").send(delivery("TLS-C")).startswith("AA")
        for sock in (extra, plain):
            sock.close()
        first.close()


@pytest.mark.parametrize("options, path, problem", [
    ({"max_connections_per_peer": "many"}, "channels.adt.options.max_connections_per_peer", "whole number"),
    ({"max_connections_per_peer": 0}, "channels.adt.options.max_connections_per_peer", "must be at least"),
    ({"frame_timeout_seconds": 0}, "channels.adt.options.frame_timeout_seconds", "must be at least"),
])
def test_bad_fairness_options_name_the_option(bridge_engine, options, path, problem):
    with pytest.raises(ConfigError) as caught:
        with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}):
            pass
    assert caught.value.problems[0][0] == path
    assert problem in caught.value.problems[0][1]


def _closed(sock: socket.socket, wait: float = 5.0) -> bool:
    """Whether the listener closed (or reset) this connection within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
