"""The admin web's production server (cheroot): what a hospital network can throw at it, and what
reaches the logs. Real sockets, a real `bridge run`, and the real MLLP sender (`bridge send`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.core.config import parse_config
from bridge.errors import ConfigError
from bridge.web.server import ServerLimits, loggable_path, start_admin_server

ROOT = Path(__file__).resolve().parents[2]
VISIT = ROOT / "examples/messages/adt-a04-telehealth.hl7"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, engine: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert engine.poll() is None, engine.stderr.read()
            assert time.monotonic() < deadline, "admin web did not come up"
            time.sleep(0.1)


def test_an_mllp_sender_pointed_at_the_admin_port_leaves_no_payload_and_no_traceback_in_the_log(tmp_path):
    """Issue 15: werkzeug logged part of the message (a word of PV2) and a traceback. The visit's
    surname, MRN, reason and the word 'Traceback' must appear nowhere in `bridge run`'s output."""
    port = free_port()
    (tmp_path / "bridge.yaml").write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          intake: {{source: "file://inbox", format: bridge, routes: [{{to: [ehr]}}]}}
        destinations:
          ehr: {{url: "file://outbox", format: bridge}}
        web: {{listen: "127.0.0.1:{port}", timeout_seconds: 1}}
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BRIDGE_LOG_LEVEL": "DEBUG"}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", "bridge.yaml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until_listening(port, engine)
        started = time.monotonic()
        sent = subprocess.run([sys.executable, "-m", "bridge.cli", "send", "--to", f"mllp://127.0.0.1:{port}",
                               str(VISIT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        refused_after = time.monotonic() - started
        assert sent.returncode == 1 and "not accepted" in sent.stderr  # no ACK: the sender knows it failed
        with pytest.raises(urllib.error.HTTPError) as answer:  # and the server still serves HTTP
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/messages?patient_id=MRN00012345", timeout=10)
        assert answer.value.code == 401
    finally:
        engine.send_signal(signal.SIGTERM)
        out, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    log = out + err
    assert refused_after < 15, refused_after  # closed after the timeout, not the sender's 30 s ACK wait
    for secret in ("Testpatient", "MRN00012345", "Low back pain", "Prairie", "check-in", "Traceback", "PID|1"):
        assert secret not in log, (secret, log)
    assert '"GET /api/v1/messages" 401' in log  # the access line, without its query string


@pytest.fixture
def small_server(site):
    limits = ServerLimits(threads=2, max_queued_connections=4, max_request_bytes=1000, timeout_seconds=1)
    server, thread = start_admin_server(site.app, "127.0.0.1", 0, limits=limits)
    yield server
    server.shutdown()
    thread.join(5)


def test_a_body_over_the_limit_is_refused_with_413(small_server, site):
    request = urllib.request.Request(f"http://127.0.0.1:{small_server.server_port}/api/v1/replay", method="POST",
                                     data=b"{" + b" " * 5000 + b"}",
                                     headers={"Authorization": f"Bearer {site.tokens['operator']}",
                                              "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 413


def test_a_silent_connection_is_closed_after_the_timeout(small_server):
    with socket.create_connection(("127.0.0.1", small_server.server_port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert time.monotonic() - started < 5
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_requests_beyond_the_thread_pool_wait_and_are_then_served(site):
    """Two threads, four slow clients holding connections: a fifth request waits in the queue and is
    answered once they time out."""
    limits = ServerLimits(threads=2, max_queued_connections=8, timeout_seconds=1)
    server, thread = start_admin_server(site.app, "127.0.0.1", 0, limits=limits)
    holders = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(4)]
    try:
        for sock in holders:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/healthz", timeout=20) as r:
            assert r.status == 200
        assert time.monotonic() - started > 0.5  # it did wait for a thread
    finally:
        for sock in holders:
            sock.close()
        server.shutdown()
        thread.join(5)


def test_logged_paths_have_no_query_no_control_characters_and_no_segments():
    assert loggable_path("/api/v1/messages?patient_id=MRN1") == "/api/v1/messages"
    assert "\x1b" not in loggable_path("/a\x1b[31m")
    assert "Doe" not in loggable_path("/PID|1||MRN1||Doe^Jane")
    assert len(loggable_path("/" + "a" * 5000)) < 250


@pytest.mark.parametrize("web, problem", [
    ({"threads": 0}, "web.threads"),
    ({"threads": "many"}, "web.threads"),
    ({"max_request_bytes": 1.5}, "web.max_request_bytes"),
    ({"timeout_seconds": 0}, "web.timeout_seconds"),
    ({"max_queued_connections": -1}, "web.max_queued_connections"),
])
def test_bad_limits_are_refused_with_their_key(tmp_path, web, problem):
    with pytest.raises(ConfigError) as refused:
        parse_config({"web": web}, config_dir=str(tmp_path))
    assert [path for path, _ in refused.value.problems] == [problem]


def test_limits_from_the_config_reach_the_server(tmp_path):
    config = parse_config({"web": {"threads": 3, "max_request_bytes": 2048, "timeout_seconds": 2.5}},
                          config_dir=str(tmp_path))
    assert ServerLimits(**config.web["limits"]) == ServerLimits(threads=3, max_request_bytes=2048,
                                                                timeout_seconds=2.5)


def trickle_until_closed(port: int, seconds: float) -> float | None:
    """A slow-loris client: a header byte every 0.2 s (each resets the socket timeout). How long until
    the server closed the connection, or None if it was still open after ``seconds``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            try:
                sock.sendall(b"a")
            except OSError:
                return time.monotonic() - started
            sock.settimeout(0.2)
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - started
            except socket.timeout:
                pass
            except OSError:
                return time.monotonic() - started
    return None


@pytest.mark.parametrize("deadline, closed", [(1.5, True), (60, False)])
def test_a_request_trickled_byte_by_byte_is_cut_off_at_its_deadline(site, deadline, closed):
    limits = ServerLimits(threads=2, timeout_seconds=1, max_request_seconds=deadline)
    server, thread = start_admin_server(site.app, "127.0.0.1", 0, limits=limits)
    try:
        after = trickle_until_closed(server.server_port, 4)
    finally:
        server.shutdown()
        thread.join(5)
    if closed:
        assert after is not None and 1.4 < after < 3.5, after
    else:  # the socket timeout alone never ends it: the deadline is what does
        assert after is None
