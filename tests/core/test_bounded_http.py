"""Issue 16 defect 2: every HTTP client of the engine finishes within its total timeout, status line and
headers included, against a real server on loopback that drips its answer one byte at a time.

Each drip below would take about 10 s to complete; each client is given a total timeout of 1 s and
must give up (with its own transient error) well before 3 s. Before the fix the FHIR destination,
its vendor profiles, the SMART token endpoint, the NCPDP switch destination and the alert webhook all
waited for the whole status line and headers (each byte came within the per-read timeout).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from bridge import Delivery, DestinationContext, TransientDeliveryError
from bridge.core.alerts.config import WebhookSettings
from bridge.core.alerts.notify import Notice, NoticeFailed, WebhookNotifier
from bridge.bounded_http import AnswerTooLarge, bounded_session, request_within
from bridge.plugins.fhir.auth import HttpSettings, NoAuth, discover_token_url, request_token
from bridge.plugins.fhir.rest import FhirRestDestination
from bridge.plugins.ncpdp.transport import SwitchDestination
from tests.drip_server import DripServer, ok_json

TOTAL_SECONDS = 1.0
LIMIT_SECONDS = 3.0  # the total timeout, plus generous room for a busy machine
NEWRX = (Path(__file__).resolve().parents[1] / "fixtures" / "ncpdp" / "newrx.xml").read_bytes()


@pytest.fixture
def dripping() -> Iterator[DripServer]:
    """A status line, headers and body that take about 10 s to arrive, each byte well within a read timeout."""
    with DripServer(ok_json(b'{"resourceType": "Bundle", "type": "transaction-response", "entry": []}'),
                    interval=0.08) as server:
        yield server


def within_the_total(call: Callable[[], object], expected: type[BaseException]) -> BaseException:
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        call()
    elapsed = time.monotonic() - started
    assert TOTAL_SECONDS * 0.9 <= elapsed < LIMIT_SECONDS, f"gave up after {elapsed:.2f} s"
    return caught.value


def test_the_helper_bounds_the_status_line_headers_and_body(dripping):
    session = bounded_session()
    error = within_the_total(lambda: request_within(session, "GET", dripping.url + "/x", connect_seconds=1,
                                                    total_seconds=TOTAL_SECONDS, max_bytes=1 << 20),
                             requests.Timeout)
    assert "no complete answer within 1 s" in str(error)
    deadline = time.monotonic() + 2
    while not dripping.hung_up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dripping.hung_up == 1  # the connection was cut, not left dripping into a forgotten socket


def test_the_helper_returns_a_prompt_answer_whole_and_refuses_an_oversized_one():
    with DripServer(ok_json(b'{"ok": true}'), interval=0) as server:
        session = bounded_session()
        answer = request_within(session, "GET", server.url, connect_seconds=1, total_seconds=5, max_bytes=100)
        assert (answer.status, answer.content, answer.headers["content-type"]) == (200, b'{"ok": true}',
                                                                                     "application/json")
        with pytest.raises(AnswerTooLarge, match="answer over 5 bytes"):
            request_within(session, "GET", server.url, connect_seconds=1, total_seconds=5, max_bytes=5)


def test_fhir_destination(dripping, tmp_path):
    destination = FhirRestDestination(DestinationContext(
        url="fhir+" + dripping.url + "/fhir", name="ehr", options={"timeout": TOTAL_SECONDS, "connect_timeout": 1},
        config_dir=str(tmp_path)))
    delivery = Delivery(outbox_id=1, message_id=1, destination="ehr", media_type="application/fhir+json",
                        payload=b'{"resourceType": "Bundle", "type": "transaction", "entry": []}',
                        file_extension="json", attempt=1, idempotency_key="tb-1-1")
    error = within_the_total(lambda: destination.send(delivery), TransientDeliveryError)
    assert "timed out (connect 1 s, total 1 s)" in str(error)


def test_vendor_profile_session(dripping, tmp_path):
    """Epic, Oracle Health and athenahealth talk through vendorkit's HTTP settings and VendorSession."""
    import bridge.plugins.fhir.resources  # noqa: F401  (first: importing vendorkit alone meets a circular import)
    from bridge.plugins.fhir.vendorkit import Options, VendorSession, http_settings

    http = http_settings(Options({"timeout": TOTAL_SECONDS, "connect_timeout": 1}, "options"), str(tmp_path))
    session = VendorSession(dripping.url + "/fhir", NoAuth(), http, errors=None)  # judging is never reached
    error = within_the_total(lambda: session.call("GET", "Patient?identifier=x"), TransientDeliveryError)
    assert "timed out" in str(error)


def test_smart_token_endpoint_and_discovery(dripping):
    http = HttpSettings(bounded_session(), 1, TOTAL_SECONDS)
    error = within_the_total(lambda: request_token(dripping.url + "/token", {"grant_type": "client_credentials"},
                                                   http), TransientDeliveryError)
    assert "Timeout" in str(error)
    within_the_total(lambda: discover_token_url(dripping.url, http), TransientDeliveryError)


def test_ncpdp_switch_destination(dripping, tmp_path):
    destination = SwitchDestination(DestinationContext(
        url=f"ncpdp+http://127.0.0.1:{dripping.port}/script", name="switch",
        options={"timeout": TOTAL_SECONDS, "connect_timeout": 1}, config_dir=str(tmp_path)))
    delivery = Delivery(outbox_id=1, message_id=1, destination="switch", payload=NEWRX,
                        media_type="application/xml", file_extension="xml", attempt=1)
    error = within_the_total(lambda: destination.send(delivery), TransientDeliveryError)
    assert "switch did not answer within 1 s" in str(error)


def test_alert_webhook(dripping):
    notifier = WebhookNotifier(WebhookSettings(url=dripping.url + "/hook", timeout_seconds=TOTAL_SECONDS))
    notice = Notice(rule="r", condition="destination_failing", subject="ehr", kind="firing", summary="s",
                    facts={}, episode=1, started_at=0.0, resolved_at=None, sent_at=0.0)
    error = within_the_total(lambda: notifier._post(notice), NoticeFailed)
    assert "Timeout" in str(error)
