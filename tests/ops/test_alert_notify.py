"""Alert notifiers against real receivers on loopback: a webhook (http.server) and SMTP with STARTTLS
(aiosmtpd). Bounded in time and attempts; credentials only from the environment."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bridge.core.alerts.config import EmailSettings, WebhookSettings
from bridge.core.alerts.notify import EmailNotifier, Notice, NoticeFailed, WebhookNotifier
from tests.ops.alert_receivers import SmtpReceiver, WebhookReceiver


def notice(kind="firing"):
    return Notice(rule="ehr-down", condition="destination_failing", subject="destination:ehr", kind=kind,
                  summary="destination ehr has delivered nothing for 5.0 min: 3 waiting (3 failing)",
                  facts={"destination": "ehr", "pending": 3}, episode=1, started_at=1_800_000_000.0,
                  resolved_at=None if kind != "resolved" else 1_800_000_600.0, sent_at=1_800_000_600.0)


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp(tmp_path):
    receiver = SmtpReceiver(tmp_path)
    yield receiver
    receiver.close()


def test_webhook_posts_the_notice_as_json_with_a_token_from_the_environment(webhook, monkeypatch):
    monkeypatch.setenv("ALERT_HOOK_TOKEN", "tok-123")
    WebhookNotifier(WebhookSettings(url=webhook.url, token_env="ALERT_HOOK_TOKEN")).send(notice())
    [body] = webhook.posts
    assert body["rule"] == "ehr-down" and body["notice"] == "firing" and body["status"] == "firing"
    assert body["subject"] == "destination:ehr" and body["facts"] == {"destination": "ehr", "pending": 3}
    assert body["started_at"] == "2027-01-15T08:00:00.000Z"
    assert webhook.headers[0]["Authorization"] == "Bearer tok-123"


def test_webhook_retries_a_server_error_and_gives_up_on_a_client_error(webhook):
    webhook.statuses = [503, 502]
    WebhookNotifier(WebhookSettings(url=webhook.url, retries=2)).send(notice())
    assert len(webhook.posts) == 1
    webhook.statuses = [400]
    with pytest.raises(NoticeFailed, match="HTTP 400") as failed:
        WebhookNotifier(WebhookSettings(url=webhook.url, retries=5)).send(notice())
    assert failed.value.permanent and webhook.statuses == []


def test_webhook_that_never_answers_is_abandoned_within_its_bounds():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog) and never answers
    try:
        settings = WebhookSettings(url=f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_seconds=0.3, retries=1)
        started = time.monotonic()
        with pytest.raises(NoticeFailed, match="webhook: ReadTimeout"):
            WebhookNotifier(settings).send(notice())
        assert time.monotonic() - started < 0.3 * 2 + 0.5 + 1.0  # two attempts and one backoff
    finally:
        silent.close()


def test_webhook_without_its_token_in_the_environment_says_which_variable(webhook, monkeypatch):
    monkeypatch.delenv("ALERT_HOOK_TOKEN", raising=False)
    with pytest.raises(NoticeFailed, match="ALERT_HOOK_TOKEN is not set"):
        WebhookNotifier(WebhookSettings(url=webhook.url, token_env="ALERT_HOOK_TOKEN")).send(notice())
    assert webhook.posts == []


def email_settings(smtp, **extra):
    return EmailSettings(host="127.0.0.1", port=smtp.port, sender="bridge@hospital.example",
                         to=("oncall@hospital.example",), username_env="SMTP_USER", password_env="SMTP_PASSWORD",
                         ca_file=str(smtp.pki.ca), timeout_seconds=5, **extra)


def test_email_goes_over_starttls_with_a_login_from_the_environment(smtp, monkeypatch):
    monkeypatch.setenv("SMTP_USER", smtp.user)
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password)
    EmailNotifier(email_settings(smtp)).send(notice("resolved"))
    [message] = smtp.messages
    assert smtp.mailbox.tls == [True] and smtp.mailbox.logins == [smtp.user]
    assert message["Subject"].startswith("[bridge] RESOLVED ehr-down: destination ehr")
    assert message["To"] == "oncall@hospital.example"
    body = message.get_payload()
    assert "subject: destination:ehr" in body and "resolved: 2027-01-15T08:10:00.000Z" in body


def test_email_with_a_wrong_password_fails_once_without_retrying(smtp, monkeypatch):
    monkeypatch.setenv("SMTP_USER", smtp.user)
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    with pytest.raises(NoticeFailed, match="login refused") as failed:
        EmailNotifier(email_settings(smtp, retries=3)).send(notice())
    assert failed.value.permanent and smtp.messages == []


def test_email_refuses_a_server_whose_certificate_does_not_verify(smtp, monkeypatch):
    monkeypatch.setenv("SMTP_USER", smtp.user)
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password)
    settings = EmailSettings(host="127.0.0.1", port=smtp.port, sender="bridge@hospital.example",
                             to=("oncall@hospital.example",), username_env="SMTP_USER", password_env="SMTP_PASSWORD")
    with pytest.raises(NoticeFailed, match="certificate did not verify"):
        EmailNotifier(settings).send(notice())
    assert smtp.messages == []


def test_email_to_a_server_without_starttls_is_refused(monkeypatch):
    server = socket.create_server(("127.0.0.1", 0))

    def plain_smtp():
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"220 plain ESMTP\r\n")
            conn.recv(1024)
            conn.sendall(b"250-plain\r\n250 AUTH PLAIN LOGIN\r\n")
            conn.recv(1024)

    threading.Thread(target=plain_smtp, daemon=True).start()
    settings = EmailSettings(host="127.0.0.1", port=server.getsockname()[1], sender="b@h.example",
                             to=("o@h.example",), timeout_seconds=2, retries=0)
    try:
        with pytest.raises(NoticeFailed, match="does not offer STARTTLS"):
            EmailNotifier(settings).send(notice())
    finally:
        server.close()
