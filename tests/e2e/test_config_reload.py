"""SIGHUP reloads routes, destinations and maps in a running `bridge run`: an MLLP connection opened
before the reload stays open, and its next message follows the new route; a config that fails
`bridge check`, or changes what only a restart can, is refused, logged, and the running one kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.plugins.hl7v2.mllp import frame

from .support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
VISIT = (ROOT / "examples/messages/adt-a04-telehealth.hl7").read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")

pytestmark = pytest.mark.slow


def config_text(port: int, routes_to: str, extra_destination: str = "", channel_extra: str = "") -> str:
    return textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          visits:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            timezone: America/Chicago
            routes: [{{to: [{routes_to}]}}]
            {channel_extra}
        destinations:
          ehr-a: {{url: "file://out-a", format: bridge}}
          ehr-b: {{url: "file://out-b", format: bridge}}
          {extra_destination}
    """)


def visit(control_id: str) -> bytes:
    return VISIT.replace(b"TV20261127-0001", control_id.encode())


def exchange(sock: socket.socket, message: bytes) -> bytes:
    """Send one framed message on this connection and read its ACK frame."""
    sock.sendall(frame(message))
    answer = b""
    while not answer.endswith(b"\x1c\r"):
        chunk = sock.recv(4096)
        assert chunk, "the listener closed the connection"
        answer += chunk
    return answer


def files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


class Log:
    """The engine's stderr, read as it grows (a file: no pipe to fill up)."""

    def __init__(self, path: Path):
        self.path = path

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def wait_for(self, needle: str, start: int = 0) -> str:
        wait_for(lambda: needle in self.text()[start:], timeout=30)
        return self.text()


def test_sighup_reloads_routes_while_an_mllp_connection_stays_open(tmp_path):
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(config_text(port, "ehr-a"))
    log = Log(tmp_path / "engine.log")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log.path, "w") as stderr:
        engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", "bridge.yaml"], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        log.wait_for("engine started")
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        assert b"MSA|AA|V-1" in exchange(sock, visit("V-1"))
        wait_for(lambda: len(files(tmp_path / "out-a")) == 1)

        # 1. the route changes to ehr-b, and a third destination appears
        config.write_text(config_text(port, "ehr-b", 'ehr-c: {url: "file://out-c", format: bridge}'))
        seen = len(log.text())
        engine.send_signal(signal.SIGHUP)
        log.wait_for("configuration reloaded", seen)
        assert b"MSA|AA|V-2" in exchange(sock, visit("V-2"))  # the same socket: it was never closed
        wait_for(lambda: len(files(tmp_path / "out-b")) == 1)
        assert len(files(tmp_path / "out-a")) == 1

        # 2. a config that fails `bridge check`: refused, logged with its key path, the running one kept
        config.write_text(config_text(port, "ehr-nowhere"))
        seen = len(log.text())
        engine.send_signal(signal.SIGHUP)
        text = log.wait_for("configuration reload refused", seen)
        assert "fails bridge check" in text[seen:] and "channels.visits.routes" in text[seen:]
        assert b"MSA|AA|V-3" in exchange(sock, visit("V-3"))
        wait_for(lambda: len(files(tmp_path / "out-b")) == 2)

        # 3. a valid config that changes the listener itself: only a restart can apply it
        config.write_text(config_text(free_port(), "ehr-a"))
        seen = len(log.text())
        engine.send_signal(signal.SIGHUP)
        text = log.wait_for("configuration reload refused", seen)
        assert "channels.visits.source" in text[seen:] and "restart" in text[seen:]
        assert b"MSA|AA|V-4" in exchange(sock, visit("V-4"))
        wait_for(lambda: len(files(tmp_path / "out-b")) == 3)
        assert len(files(tmp_path / "out-a")) == 1 and not files(tmp_path / "out-c")
        sock.close()
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=30)
    assert engine.returncode == 0, log.text()
    assert "Traceback" not in log.text()
    audit = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from bridge.core.store import open_store
        store = open_store("sqlite:///{tmp_path}/var/bridge.db")
        print(",".join(e.action for e in reversed(store.search_audit(action="config."))))
    """)], capture_output=True, text=True, env=env, timeout=60)
    assert audit.stdout.strip() == "config.reload,config.reload_refused,config.reload_refused", audit.stderr


def test_with_worker_processes_the_children_reload_too(tmp_path):
    """engine.processes: the parent keeps the listener, a child routes and delivers; SIGHUP reaches both."""
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(config_text(port, "ehr-a") + "engine: {processes: 1}\n")
    log = Log(tmp_path / "engine.log")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log.path, "w") as stderr:
        engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", "bridge.yaml"], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        log.wait_for("worker process started")
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        assert b"MSA|AA|V-1" in exchange(sock, visit("V-1"))
        wait_for(lambda: len(files(tmp_path / "out-a")) == 1)
        config.write_text(config_text(port, "ehr-b") + "engine: {processes: 1}\n")
        engine.send_signal(signal.SIGHUP)
        wait_for(lambda: log.text().count("configuration reloaded") == 2)  # the parent and its child
        assert b"MSA|AA|V-2" in exchange(sock, visit("V-2"))
        wait_for(lambda: len(files(tmp_path / "out-b")) == 1)
        assert len(files(tmp_path / "out-a")) == 1
        sock.close()
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=30)
    assert engine.returncode == 0, log.text()
    assert "Traceback" not in log.text()
