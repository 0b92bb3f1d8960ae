"""Issue 16 defect 4 on the FHIR inbound endpoint: a whole-request deadline, early answers, 415. Real HTTP on loopback."""

from __future__ import annotations

import re
import socket
import time

import requests

from .test_inbound import VISIT_BUNDLE, inbound, issue  # noqa: F401 - the fixture


def _head(length: int, path: str = "/fhir/r4", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\n{extra}"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_a_wrong_content_type_is_refused_415_and_nothing_is_stored(inbound):  # noqa: F811
    engine, _, url = inbound()
    for media_type in ("text/plain", "application/xml", "multipart/form-data; boundary=x"):
        answer = requests.post(url, data=VISIT_BUNDLE, headers={"Content-Type": media_type}, timeout=5)
        assert answer.status_code == 415, media_type
        assert issue(answer)["code"] == "not-supported" and "application/fhir+json" in issue(answer)["diagnostics"]
    assert engine.store.search() == []
    for media_type in ("application/fhir+json; charset=utf-8", "application/json"):
        assert requests.post(url, data=VISIT_BUNDLE, headers={"Content-Type": media_type},
                             timeout=5).status_code == 202


def test_a_slow_body_is_cut_at_the_request_deadline(inbound):  # noqa: F811
    engine, source, _ = inbound(request_timeout=1.5)
    with socket.create_connection(("127.0.0.1", source.port)) as sock:
        sock.sendall(_head(len(VISIT_BUNDLE)))
        started = time.monotonic()
        closed_after = None
        for byte in VISIT_BUNDLE[:40]:  # one byte every 0.3 s: each read is quick, the request is not
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.3)
                if sock.recv(4096) != b"":
                    continue  # an answer (408): the server ends the connection next
                closed_after = time.monotonic() - started
                break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 4.0, "the slow request was not cut at its deadline"
    assert engine.store.search() == []


def test_slow_headers_are_cut_at_the_request_deadline_too(inbound):  # noqa: F811
    _, source, _ = inbound(request_timeout=1.0)
    with socket.create_connection(("127.0.0.1", source.port)) as sock:
        started = time.monotonic()
        sock.settimeout(0.25)
        closed = False
        for byte in b"POST /fhir/r4 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - started < 3.5


def test_an_early_401_never_lets_its_unread_body_be_parsed_as_a_request(inbound, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TB_TEST_INBOUND_TOKEN", "right-token")
    _, source, _ = inbound(token_env="TB_TEST_INBOUND_TOKEN")
    smuggled = b"GET /fhir/r4/metadata HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", source.port)) as sock:
        sock.sendall(_head(len(smuggled), extra="Authorization: Bearer wrong\r\n") + smuggled)
        sock.settimeout(3)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    assert re.findall(rb"HTTP/1\.1 \d{3} ", data) == [b"HTTP/1.1 401 "]
