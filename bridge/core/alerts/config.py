"""The ``alerts:`` section of ``bridge.yaml``: rules, notifiers and timing, validated with key paths.

Every problem is reported through the config loader's ``add(path, message)``, so ``bridge check``
lists alert mistakes beside every other one. Secrets (SMTP user and password, a webhook's bearer
token) are named by environment variable, never written in the file; the variables are read when a
notice is sent, so ``bridge check`` works on a machine without them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bridge.core.config import _mapping as _config_mapping
from bridge.core.config import _number as _config_number
from bridge.core.config import _Problems

Report = Callable[[str, str], None]

ALERTS_KEYS = ("rules", "notify", "evaluate_seconds", "repeat_minutes")
WEBHOOK_KEYS = ("url", "timeout_seconds", "retries", "token_env", "ca_file")
EMAIL_KEYS = ("host", "port", "from", "to", "username_env", "password_env", "timeout_seconds", "retries",
              "ca_file", "subject_prefix")
NOTIFIERS = ("webhook", "email")

# condition -> (required parameters, optional parameters); every rule may also set these:
COMMON_RULE_KEYS = ("when", "notify", "repeat_minutes", "description", "enabled")
CONDITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "destination_failing": (("minutes",), ("destination",)),
    "channel_error_rate": (("percent",), ("channel", "minutes", "min_messages")),
    "backlog": (("minutes",), ("channel", "destination")),
    "hold_waiting": (("hours",), ()),
    "listener_down": ((), ("channel",)),
    "certificate_expiring": (("days",), ()),
    "job_failing": ((), ("job", "runs")),
}
NUMBER_PARAMS = {"minutes": 0.1, "percent": 0.0, "min_messages": 1, "hours": 0.01, "days": 0.0, "runs": 1}
WHOLE_PARAMS = ("min_messages", "runs")


@dataclass(frozen=True)
class AlertRule:
    """One rule: its name (the rule id alerts carry), its condition and the condition's parameters."""

    name: str
    when: str
    params: Mapping[str, Any] = field(default_factory=dict)
    notify: tuple[str, ...] = NOTIFIERS
    repeat_minutes: float = 60.0
    enabled: bool = True


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    timeout_seconds: float = 5.0
    retries: int = 2
    token_env: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True)
class EmailSettings:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    username_env: str | None = None
    password_env: str | None = None
    timeout_seconds: float = 10.0
    retries: int = 2
    ca_file: str | None = None
    subject_prefix: str = "[bridge]"


@dataclass(frozen=True)
class AlertsConfig:
    rules: Mapping[str, AlertRule] = field(default_factory=dict)
    webhook: WebhookSettings | None = None
    email: EmailSettings | None = None
    evaluate_seconds: float = 60.0
    repeat_minutes: float = 60.0

    @property
    def active(self) -> bool:
        return any(rule.enabled for rule in self.rules.values())


def parse_alerts(raw: Any, *, config_dir: str, channels: Mapping[str, Any], destinations: Mapping[str, Any],
                 jobs: Mapping[str, Any], add: Report) -> AlertsConfig:
    """Validate ``alerts:``; every problem goes to ``add`` with its key path."""
    if raw is None:
        return AlertsConfig()
    if not isinstance(raw, Mapping):
        add("alerts", f"expected a mapping, got {type(raw).__name__}")
        return AlertsConfig()
    _unknown(raw, ALERTS_KEYS, "alerts", add)
    evaluate = _number(raw.get("evaluate_seconds", 60), "alerts.evaluate_seconds", add, minimum=0.05) or 60.0
    repeat = _number(raw.get("repeat_minutes", 60), "alerts.repeat_minutes", add, minimum=0.01) or 60.0
    notify = _mapping(raw.get("notify"), "alerts.notify", add)
    _unknown(notify, NOTIFIERS, "alerts.notify", add)
    webhook = _webhook(notify["webhook"], config_dir, add) if "webhook" in notify else None
    email = _email(notify["email"], config_dir, add) if "email" in notify else None
    configured = tuple(n for n, v in (("webhook", webhook), ("email", email)) if v is not None)
    names = {"channel": channels, "destination": destinations, "job": jobs}
    rules = {}
    for name, body in _mapping(raw.get("rules"), "alerts.rules", add).items():
        rule = _rule(str(name), body, names, configured, repeat, add)
        if rule is not None:
            rules[rule.name] = rule
    if any(r.enabled for r in rules.values()) and not notify:
        add("alerts.notify", "rules are defined but no notifier is: add webhook and/or email")
    return AlertsConfig(rules=rules, webhook=webhook, email=email, evaluate_seconds=evaluate, repeat_minutes=repeat)


def _rule(name: str, body: Any, names: Mapping[str, Mapping[str, Any]], configured: tuple[str, ...],
          default_repeat: float, add: Report) -> AlertRule | None:
    path = f"alerts.rules.{name}"
    body = _mapping(body, path, add)
    when = body.get("when")
    if when not in CONDITIONS:
        hint = difflib.get_close_matches(str(when), CONDITIONS, n=1)
        add(f"{path}.when", f"unknown condition {when!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                             f" (one of: {', '.join(CONDITIONS)})"))
        return None
    required, optional = CONDITIONS[when]
    _unknown(body, COMMON_RULE_KEYS + required + optional, path, add)
    params: dict[str, Any] = {}
    for key in required:
        if key not in body:
            add(f"{path}.{key}", f"is required for {when}")
    for key in required + optional:
        if key not in body:
            continue
        if key in names:
            if body[key] not in names[key]:
                known = ", ".join(sorted(names[key])) or "none"
                add(f"{path}.{key}", f"no {key} named {body[key]!r} in this config ({key}s: {known})")
            params[key] = body[key]
        else:
            params[key] = _number(body[key], f"{path}.{key}", add, minimum=NUMBER_PARAMS[key],
                                  whole=key in WHOLE_PARAMS)
    if when == "backlog" and "channel" in params and "destination" in params:
        add(path, "backlog watches a channel or a destination, not both (write two rules)")
    notify = body.get("notify", list(configured))
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list) or not all(isinstance(n, str) for n in notify):
        add(f"{path}.notify", f"expected a list of notifiers ({', '.join(NOTIFIERS)}), got {notify!r}")
        notify = list(configured)
    for item in notify:
        if item not in configured:
            add(f"{path}.notify", f"notifier {item!r} is not configured under alerts.notify")
    repeat = _number(body.get("repeat_minutes", default_repeat), f"{path}.repeat_minutes", add, minimum=0.01)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        add(f"{path}.enabled", f"expected true or false, got {enabled!r}")
    return AlertRule(name=name, when=when, params=params, notify=tuple(notify),
                     repeat_minutes=repeat or default_repeat, enabled=enabled is not False)


def _webhook(raw: Any, config_dir: str, add: Report) -> WebhookSettings | None:
    body = _mapping(raw, "alerts.notify.webhook", add)
    _unknown(body, WEBHOOK_KEYS, "alerts.notify.webhook", add)
    url = body.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        add("alerts.notify.webhook.url", f"expected an http(s) URL, got {url!r}")
        return None
    if parts.username or parts.password:
        add("alerts.notify.webhook.url", "must not hold credentials: name an environment variable in token_env")
        return None
    return WebhookSettings(
        url=url,
        timeout_seconds=_number(body.get("timeout_seconds", 5), "alerts.notify.webhook.timeout_seconds", add,
                                minimum=0.1) or 5.0,
        retries=_retries(body, "alerts.notify.webhook", add),
        token_env=_env_name(body, "token_env", "alerts.notify.webhook", add),
        ca_file=_file(body, config_dir),
    )


def _email(raw: Any, config_dir: str, add: Report) -> EmailSettings | None:
    path = "alerts.notify.email"
    body = _mapping(raw, path, add)
    _unknown(body, EMAIL_KEYS, path, add)
    host, sender, to = body.get("host"), body.get("from"), body.get("to")
    if isinstance(to, str):
        to = [to]
    problems = 0
    if not isinstance(host, str) or not host:
        add(f"{path}.host", "is required (the SMTP server's name)")
        problems += 1
    if to is not None and not isinstance(to, list):
        add(f"{path}.to", f"expected a list of email addresses, got {to!r}")
        to, problems = None, problems + 1
    for key, value in [("from", sender)] + [("to", t) for t in to or []]:
        if not isinstance(value, str) or "@" not in value:
            add(f"{path}.{key}", f"expected an email address, got {value!r}")
            problems += 1
    if not to:
        add(f"{path}.to", "is required (a list of email addresses)")
        problems += 1
    port = _number(body.get("port", 587), f"{path}.port", add, minimum=1, whole=True)
    user_env = _env_name(body, "username_env", path, add)
    password_env = _env_name(body, "password_env", path, add)
    if bool(user_env) != bool(password_env):
        add(path, "username_env and password_env go together (or neither, for a relay without login)")
    timeout = _number(body.get("timeout_seconds", 10), f"{path}.timeout_seconds", add, minimum=0.1) or 10.0
    retries = _retries(body, path, add)
    if problems:
        return None
    return EmailSettings(
        host=host, sender=sender, to=tuple(to), port=port or 587, username_env=user_env, password_env=password_env,
        timeout_seconds=timeout, retries=retries, ca_file=_file(body, config_dir),
        subject_prefix=str(body.get("subject_prefix", "[bridge]")),
    )


def _retries(body: Mapping[str, Any], path: str, add: Report) -> int:
    value = _number(body.get("retries", 2), f"{path}.retries", add, minimum=0, whole=True)
    if value is not None and value > 10:
        add(f"{path}.retries", f"at most 10 (a notice must not hold the alert loop), got {value}")
        return 10
    return 2 if value is None else value


def _env_name(body: Mapping[str, Any], key: str, path: str, add: Report) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.replace("_", "").isalnum():
        add(f"{path}.{key}", f"expected the name of an environment variable, got {value!r}")
        return None
    return value


def _file(body: Mapping[str, Any], config_dir: str) -> str | None:
    value = body.get("ca_file")
    return os.path.join(config_dir, value) if isinstance(value, str) and value else None


# The config loader's checks, through this module's ``add(path, message)`` reporting.

class _Reporter(_Problems):
    def __init__(self, add: Report) -> None:
        super().__init__()
        self.add = add  # type: ignore[method-assign]


def _mapping(value: Any, path: str, add: Report) -> Mapping[str, Any]:
    return _config_mapping(value, path, _Reporter(add))


def _unknown(mapping: Mapping[str, Any], allowed: tuple[str, ...], path: str, add: Report) -> None:
    _Reporter(add).unknown_keys(mapping, allowed, path)


def _number(value: Any, path: str, add: Report, *, minimum: float, whole: bool = False) -> Any:
    return _config_number(value, path, _Reporter(add), kind=int if whole else float, minimum=minimum)
