"""`bridge.testing.listening_engine`: a plugin author's engine with real listeners, torn down even
when the test body fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bridge.testing import listening_engine, plugin_manager

ADT = (Path(__file__).resolve().parents[2] / "examples" / "messages" / "adt-a04-telehealth.hl7").read_bytes()
CONFIG = {
    "channels": {"adt-in": {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "timezone": "America/Chicago",
                            "routes": [{"to": ["out"]}]}},
    "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
}


def send_and_read_ack(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x0b" + raw + b"\x1c\r")
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def test_the_engine_listens_delivers_and_closes_its_listener_after_a_failed_test(tmp_path):
    with pytest.raises(RuntimeError), listening_engine(CONFIG, tmp_path, plugin_manager()) as engine:
        (source,) = engine.sources
        port = source.port
        assert b"MSA|AA|" in send_and_read_ack(port, ADT)
        engine.drain()
        assert [m.status for m in engine.store.search()] == ["delivered"]
        assert len(list((tmp_path / "outbox").iterdir())) == 1
        raise RuntimeError("the test body fails")
    with pytest.raises(OSError):  # stopped means the port is closed, not merely idle
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
