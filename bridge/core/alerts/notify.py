"""Sending alert notices: a JSON POST to a webhook, and an email over SMTP with STARTTLS.

A notice holds the rule id, the condition, the subject (a configured name), a summary and facts
built from names, counts, ages and dates (see :mod:`.conditions`), and times: no PHI. Each sender
makes at most ``1 + retries`` attempts, each bounded by ``timeout_seconds``, with a short backoff
between them, so one unreachable receiver cannot hold the alert loop for long; a notice that could
not be sent stays due in the store and is tried again next round.

Secrets are read from the environment when a notice is sent (``token_env``, ``username_env``,
``password_env``), never from the config file. Error texts name the failure (HTTP status, exception
class, SMTP code), never the URL, which may carry a token.
"""

from __future__ import annotations

import datetime
import json
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import requests

from bridge import __version__
from bridge.bounded_http import AnswerTooLarge, bounded_session, request_within

from .config import EmailSettings, WebhookSettings

BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
PERMANENT_HTTP = frozenset(range(400, 500)) - {408, 425, 429}


class NoticeFailed(Exception):
    """A notice could not be delivered; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Notice:
    """One alert notice, as every notifier sends it."""

    rule: str
    condition: str
    subject: str
    kind: str
    """``firing`` (first notice of an episode), ``repeat`` (still firing) or ``resolved``."""
    summary: str
    facts: Mapping[str, Any]
    episode: int
    started_at: float
    resolved_at: float | None
    sent_at: float

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "condition": self.condition, "subject": self.subject, "notice": self.kind,
                "status": "resolved" if self.kind == "resolved" else "firing", "summary": self.summary,
                "facts": dict(self.facts), "episode": self.episode, "started_at": iso(self.started_at),
                "resolved_at": iso(self.resolved_at), "sent_at": iso(self.sent_at), "source": "telemed-bridge",
                "node": socket.gethostname(), "version": __version__}

    def title(self) -> str:
        label = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[self.kind]
        return f"{label} {self.rule}: {self.summary}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    when = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_retries(send: Callable[[], None], retries: int, sleep: Callable[[float], None] = time.sleep) -> None:
    """Call ``send`` until it succeeds, at most ``1 + retries`` times; a permanent failure stops early."""
    for attempt in range(retries + 1):
        try:
            send()
            return
        except NoticeFailed as exc:
            if exc.permanent or attempt == retries:
                raise
        sleep(min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** attempt))


WEBHOOK_ANSWER_BYTES = 64 * 1024
"""A webhook's answer is read (so the whole exchange is bounded) but not used: more than this is refused."""


class WebhookNotifier:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, session: requests.Session | None = None):
        self.settings = settings
        self.session = session or bounded_session()

    def send(self, notice: Notice) -> None:
        with_retries(lambda: self._post(notice), self.settings.retries)

    def _post(self, notice: Notice) -> None:
        s = self.settings
        headers = {"Content-Type": "application/json", "User-Agent": f"telemed-bridge/{__version__}"}
        if s.token_env:
            token = os.environ.get(s.token_env)
            if not token:
                raise NoticeFailed(f"webhook: environment variable {s.token_env} is not set", permanent=True)
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = request_within(self.session, "POST", s.url, data=json.dumps(notice.as_json()).encode(),
                                      headers=headers, verify=s.ca_file or True, allow_redirects=False,
                                      connect_seconds=min(s.timeout_seconds, 5.0), total_seconds=s.timeout_seconds,
                                      max_bytes=WEBHOOK_ANSWER_BYTES)
        except (requests.RequestException, AnswerTooLarge) as exc:
            raise NoticeFailed(f"webhook: {type(exc).__name__}") from None
        if not 200 <= response.status < 300:
            raise NoticeFailed(f"webhook: HTTP {response.status}", permanent=response.status in PERMANENT_HTTP)


class EmailNotifier:
    name = "email"

    def __init__(self, settings: EmailSettings):
        self.settings = settings

    def send(self, notice: Notice) -> None:
        message = self.message(notice)
        with_retries(lambda: self._deliver(message), self.settings.retries)

    def message(self, notice: Notice) -> EmailMessage:
        s = self.settings
        message = EmailMessage()
        message["From"], message["To"] = s.sender, ", ".join(s.to)
        message["Subject"] = f"{s.subject_prefix} {notice.title()}"[:200]
        lines = [notice.title(), "", f"rule: {notice.rule} ({notice.condition})", f"subject: {notice.subject}",
                 f"started: {iso(notice.started_at)}", f"episode: {notice.episode}"]
        if notice.resolved_at:
            lines.append(f"resolved: {iso(notice.resolved_at)}")
        lines += [f"{key}: {value}" for key, value in sorted(notice.facts.items())]
        lines += ["", f"sent by {socket.gethostname()} (telemed-bridge {__version__})"]
        message.set_content("\n".join(lines) + "\n")
        return message

    def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise NoticeFailed("email: the server does not offer STARTTLS; refusing to send in clear",
                                       permanent=True)
                smtp.starttls(context=context)
                smtp.ehlo()
                if s.username_env:
                    self._login(smtp)
                smtp.send_message(message)
        except NoticeFailed:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise NoticeFailed(f"email: login refused (SMTP {exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise NoticeFailed(f"email: SMTP {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600) from None
        except ssl.SSLCertVerificationError:
            raise NoticeFailed("email: the server's certificate did not verify", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NoticeFailed(f"email: {type(exc).__name__}") from None

    def _login(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.login(*self._credentials())
        except smtplib.SMTPServerDisconnected:  # some servers hang up after a refused login
            raise NoticeFailed("email: login refused (the server closed the connection)", permanent=True) from None

    def _credentials(self) -> tuple[str, str]:
        s = self.settings
        user, password = os.environ.get(s.username_env or ""), os.environ.get(s.password_env or "")
        if not user or not password:
            raise NoticeFailed(f"email: environment variables {s.username_env} and {s.password_env} must be set",
                               permanent=True)
        return user, password
