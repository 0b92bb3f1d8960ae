"""Issue 16 defect 4 on the NCPDP callback: memory, a whole-request deadline, early answers. Real HTTP on loopback."""

from __future__ import annotations

import base64
import re
import socket
import time
import tracemalloc

import pytest

from bridge import DecodeError
from bridge.plugins.ncpdp.xmlsafe import parse_xml
from tests.ncpdp.test_transport import AUTH, credentials, inbound_engine, plugins, raw  # noqa: F401 - fixtures

DEEP = b"<a>" * 140_000 + b"</a>" * 140_000  # ~1 MiB, 140,000 levels


def test_a_deep_document_is_refused_while_parsing_not_after_building_its_tree():
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="deeper than 64"):
            parse_xml(DEEP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"parsing a refused 1 MiB deep body peaked at {peak / 2**20:.1f} MiB"


def _head(length: int, auth: tuple[str, str] | None = AUTH, path: str = "/script") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/xml",
             f"Content-Length: {length}"]
    if auth:
        lines.append("Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answers(sock: socket.socket, wait: float = 3.0) -> list[bytes]:
    """Every HTTP status line the server sent until it closed or went quiet."""
    sock.settimeout(wait)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return re.findall(rb"HTTP/1\.1 \d{3} ", data)  # answers' bodies end without a newline


def test_a_slow_body_is_cut_at_the_request_deadline(tmp_path, plugins, credentials):  # noqa: F811
    engine, source, _ = inbound_engine(tmp_path, plugins, credentials, options={**credentials,
                                                                                "request_timeout": 1.5})
    try:
        body = raw("rxfill.xml")
        with socket.create_connection(("127.0.0.1", source.port)) as sock:
            sock.sendall(_head(len(body)))
            started = time.monotonic()
            closed_after = None
            for byte in body[:40]:  # one byte every 0.3 s: each read is quick, the request is not
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                sock.settimeout(0.3)
                try:
                    if sock.recv(1) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
        assert closed_after is not None and closed_after < 4.0, "the slow request was not cut at its deadline"
        assert engine.store.search() == []
    finally:
        engine.stop()


@pytest.mark.parametrize("auth, path, status", [(("switch-user", "wrong"), "/script", b"401"),
                                                (AUTH, "/elsewhere", b"404")])
def test_an_early_answer_never_lets_its_unread_body_be_parsed_as_a_request(
        tmp_path, plugins, credentials, auth, path, status):  # noqa: F811
    engine, source, _ = inbound_engine(tmp_path, plugins, credentials)
    try:
        smuggled = b"GET /script HTTP/1.1\r\nHost: x\r\n\r\n"
        good = raw("rxfill.xml")
        with socket.create_connection(("127.0.0.1", source.port)) as sock:
            sock.sendall(_head(len(smuggled), auth, path) + smuggled + _head(len(good)) + good)
            answers = _answers(sock)
        assert answers[0].startswith(b"HTTP/1.1 " + status)
        # the smuggled GET (405) must never be answered; the real next request is answered, or the connection closed
        assert not any(b" 405 " in line for line in answers), answers
        assert len(answers) <= 2 and all(b" 200 " in line for line in answers[1:]), answers
    finally:
        engine.stop()
