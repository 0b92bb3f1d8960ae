"""The admin app over real sockets: plain HTTP, TLS, the CLI commands, and `bridge run` with `web.listen`."""

from __future__ import annotations

import datetime
import http.client
import io
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from bridge.cli import main
from bridge.core.config import parse_config
from bridge.testing import plugin_manager
from bridge.web import create_app
from bridge.web.server import start_admin_server

from .conftest import PASSWORD, login


def get_json(url: str, token: str | None = None, context=None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_api_over_a_real_http_listener(site):
    server, thread = start_admin_server(site.app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        status, body = get_json(f"{base}/api/v1/messages?channel=lab", site.tokens["viewer"])
        assert status == 200 and [m["id"] for m in body["items"]] == [site.ids["lab"]]
        status, body = get_json(f"{base}/api/v1/messages")
        assert status == 401 and body["error"] == "unauthorized"
        assert get_json(f"{base}/healthz")[1]["status"] == "ok"
    finally:
        server.shutdown()
        thread.join(5)


def self_signed(tmp_path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "admin.crt", tmp_path / "admin.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_tls_listener_and_secure_cookie(tmp_path):
    cert, key = self_signed(tmp_path)
    plugins = plugin_manager()
    config = parse_config({"store": "sqlite:///b.db", "web": {"tls": {"cert_file": cert, "key_file": key}}},
                          config_dir=str(tmp_path), plugins=plugins)
    app = create_app(config, plugins)
    server, thread = start_admin_server(app, "127.0.0.1", 0, config.web["tls"])
    context = ssl.create_default_context(cafile=cert)
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{server.server_port}/login", context=context,
                                    timeout=10) as response:
            cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP to a TLS port does not work
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/healthz", timeout=5)
    finally:
        server.shutdown()
        thread.join(5)


def write_config(tmp_path, port: int) -> str:
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          intake:
            source: file://inbox
            format: bridge
            routes: [{{to: [ehr]}}]
        destinations:
          ehr: {{url: "file://outbox", format: bridge}}
        web: {{listen: "127.0.0.1:{port}"}}
    """))
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_creates_tokens_and_users_that_the_app_accepts(tmp_path, capsys, monkeypatch):
    config_path = write_config(tmp_path, free_port())
    assert main(["token", "create", "-c", config_path, "--name", "ci", "--role", "operator"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("tbk_")
    assert main(["token", "create", "-c", config_path, "--name", "ci", "--role", "viewer"]) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "create", "-c", config_path, "dana", "--role", "analyst", "--password-stdin"]) == 0
    assert main(["user", "list", "-c", config_path]) == 0
    assert "dana" in capsys.readouterr().out
    plugins = plugin_manager()
    from bridge.core.config import load_config

    app = create_app(load_config(config_path, plugins), plugins)
    client = app.test_client()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()["role"] == "operator"
    assert login(app.test_client(), "dana", PASSWORD).status_code == 302
    assert main(["token", "list", "-c", config_path]) == 0
    listed = capsys.readouterr().out
    assert "ci" in listed and token not in listed
    assert main(["token", "revoke", "-c", config_path, "ci"]) == 0
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    store = app.extensions["bridge.store"]
    actions = [(e.action, e.target) for e in store.search_audit(action="token.") + store.search_audit(action="user.")]
    assert actions == [("token.revoke", "token:ci"), ("token.create", "token:ci"), ("user.create", "user:dana")]
    assert all(e.actor.startswith("cli:") for e in store.search_audit(action="token."))


def test_bridge_run_serves_the_admin_app_on_its_own_listener(tmp_path, capsys):
    port = free_port()
    config_path = write_config(tmp_path, port)
    assert main(["token", "create", "-c", config_path, "--name", "ops", "--role", "viewer"]) == 0
    token = capsys.readouterr().out.strip()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", config_path], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = get_json(f"{base}/api/v1/channels", token)
                break
            except (urllib.error.URLError, ConnectionError):
                assert engine.poll() is None, engine.stderr.read()
                assert time.monotonic() < deadline, "admin web did not come up"
                time.sleep(0.1)
        assert status == 200 and [c["name"] for c in body["items"]] == ["intake"]
        assert get_json(f"{base}/readyz")[1]["status"] == "ready"
    finally:
        engine.send_signal(signal.SIGTERM)
        _, err = engine.communicate(timeout=20)
    assert engine.returncode == 0, err
    assert f"admin web on http://127.0.0.1:{port}/" in err and "random (per process)" in err


def test_access_log_lines_carry_no_query_strings(tmp_path, caplog):
    """Searches put patient ids in the query string; the access log must not repeat them."""
    import logging
    import urllib.error
    import urllib.request

    from bridge.web.server import start_admin_server
    from tests.web.conftest import build_site

    site = build_site(tmp_path)
    server, thread = start_admin_server(site.app, "127.0.0.1", 0)
    try:
        with caplog.at_level(logging.INFO):
            request = urllib.request.Request(
                f"http://127.0.0.1:{server.server_port}/api/v1/messages?patient_id=MRN-A1",
                headers={"Authorization": f"Bearer {site.tokens['analyst']}"})
            assert urllib.request.urlopen(request, timeout=5).status == 200
    finally:
        server.shutdown()
        site.engine.store.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("/api/v1/messages" in line for line in lines), lines
    assert not any("MRN-A1" in line for line in lines)
