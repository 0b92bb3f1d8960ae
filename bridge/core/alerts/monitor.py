"""The alert loop: evaluate every rule, record state changes in the store, send the notices due.

Each round, for each enabled rule:

1. its condition's findings are recorded (``store.alert_seen``): a new finding starts a firing
   episode; a firing alert that is no longer found is resolved (``store.alert_cleared``);
2. every alert of the rule with a notice due — the first of an episode, a repeat once
   ``repeat_minutes`` passed since the last one, or the resolved notice — is claimed in the store
   (``claim_alert_notice``) and sent by the node that won the claim.

Every engine node runs this loop against the same store; the store's compare-and-set writes (see
:mod:`bridge.core.store.alert_tables`) make each transition and each notice happen once, whichever
node sees it first, and the state survives restarts. A rule whose check raised (the store was
unreachable, say) changes nothing that round: an outage never "resolves" an alert.

``listener_down`` is about this node's own listeners, so its subjects carry the node's name and a
node only resolves its own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bridge.core import redaction

from .conditions import Finding, Situation, evaluate_rule
from .config import AlertRule, AlertsConfig
from .notify import EmailNotifier, Notice, NoticeFailed, WebhookNotifier

if TYPE_CHECKING:
    from bridge.core.config import BridgeConfig
    from bridge.core.store import Store
    from bridge.core.store.base import AlertState

log = logging.getLogger(__name__)
NODE_LOCAL = ("listener_down",)


class Notifier(Protocol):
    name: str

    def send(self, notice: Notice) -> None: ...


def make_notifiers(alerts: AlertsConfig) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    if alerts.webhook is not None:
        notifiers["webhook"] = WebhookNotifier(alerts.webhook)
    if alerts.email is not None:
        notifiers["email"] = EmailNotifier(alerts.email)
    return notifiers


def notice_lease_seconds(alerts: AlertsConfig) -> float:
    """How long a node may take to send one notice through every notifier (its claim's lease)."""
    total = 30.0
    for settings in (alerts.webhook, alerts.email):
        if settings is not None:
            total += (settings.retries + 1) * (2 * settings.timeout_seconds + 5)
    return total


class AlertMonitor:
    """Runs the alert rules of a config every ``alerts.evaluate_seconds`` (``Engine.start`` starts it)."""

    def __init__(self, store: Store, config: BridgeConfig, *, engine: Any = None,
                 notifiers: Mapping[str, Notifier] | None = None, node: str | None = None):
        self.store, self.config, self.engine = store, config, engine
        self.alerts: AlertsConfig = config.alerts or AlertsConfig()
        self.notifiers = dict(make_notifiers(self.alerts) if notifiers is None else notifiers)
        self.node = node or socket.gethostname()
        self.owner = f"{self.node}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = notice_lease_seconds(self.alerts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one round -------------------------------------------------------------------------------

    def evaluate_once(self, now: float | None = None) -> list[Notice]:
        """Evaluate every enabled rule and send the notices due; returns the notices sent."""
        now = time.time() if now is None else now
        seen = Situation(self.store, self.config, now, self.engine)
        sent: list[Notice] = []
        for rule in self.alerts.rules.values():
            if not rule.enabled:
                continue
            try:
                findings = self._findings(rule, seen)
            except Exception as exc:
                log.warning("alert rule %s: could not be evaluated: %s", rule.name, redaction.exception_text(exc))
                continue
            self._record(rule, findings, now)
            sent += self._send_due(rule, now)
        return sent

    def _findings(self, rule: AlertRule, seen: Situation) -> list[Finding]:
        findings = evaluate_rule(rule, seen)
        if rule.when in NODE_LOCAL:
            findings = [Finding(f"{f.subject}@{self.node}", f.summary, f.facts) for f in findings]
        return findings

    def _record(self, rule: AlertRule, findings: Sequence[Finding], now: float) -> None:
        found = {f.subject for f in findings}
        for finding in findings:
            if self.store.alert_seen(rule.name, finding.subject, finding.summary, finding.facts, now):
                log.warning("alert %s firing for %s", rule.name, finding.subject)
        for state in self.store.alert_states(rule.name):
            if state.state != "firing" or state.subject in found or not self._mine(rule, state.subject):
                continue
            if self.store.alert_cleared(rule.name, state.subject, now):
                log.info("alert %s resolved for %s", rule.name, state.subject)

    def _mine(self, rule: AlertRule, subject: str) -> bool:
        return rule.when not in NODE_LOCAL or subject.endswith(f"@{self.node}")

    def _send_due(self, rule: AlertRule, now: float) -> list[Notice]:
        repeat = rule.repeat_minutes * 60
        sent = []
        for state in self.store.alert_states(rule.name):
            if not _due(state, now, repeat):
                continue
            claimed = self.store.claim_alert_notice(rule.name, state.subject, self.owner, now, repeat,
                                                    self.lease_seconds)
            if claimed is None:
                continue  # another node is sending it, or sent it a moment ago
            notice = self._send(rule, claimed, now)
            if notice is not None:
                sent.append(notice)
        return sent

    def _send(self, rule: AlertRule, claimed: AlertState, now: float) -> Notice | None:
        if claimed.state == "resolved" and claimed.notices == 0:
            # never announced (its firing notice could not be sent): nothing to call off
            self.store.finish_alert_notice(claimed, self.owner, sent=True, error=None, now=now)
            return None
        kind = "resolved" if claimed.state == "resolved" else ("repeat" if claimed.notices else "firing")
        notice = Notice(rule=rule.name, condition=rule.when, subject=claimed.subject, kind=kind,
                        summary=claimed.summary, facts=claimed.facts, episode=claimed.episode,
                        started_at=claimed.started_at, resolved_at=claimed.resolved_at, sent_at=now)
        errors, delivered = [], 0
        for name in rule.notify:
            notifier = self.notifiers.get(name)
            if notifier is None:
                errors.append(f"{name}: not configured")
                continue
            try:
                notifier.send(notice)
                delivered += 1
            except NoticeFailed as exc:
                errors.append(str(exc))
            except Exception as exc:  # a notifier bug must not stop the other notices
                errors.append(f"{name}: {type(exc).__name__}")
        error = "; ".join(errors)[:500] or None
        self.store.finish_alert_notice(claimed, self.owner, sent=bool(delivered), error=error, now=time.time())
        if error:
            log.warning("alert %s for %s: %s notice: %s", rule.name, claimed.subject, kind, error)
        else:
            log.info("alert %s for %s: %s notice sent", rule.name, claimed.subject, kind)
        return notice if delivered else None

    # --- running -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
        self._thread.start()
        log.info("alerts: %d rule(s), every %g s", sum(r.enabled for r in self.alerts.rules.values()),
                 self.alerts.evaluate_seconds)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate_once()
            except Exception as exc:  # the store may be away for a while: try again next round
                log.error("alerts: round failed: %s", redaction.exception_text(exc))
            self._stop.wait(self.alerts.evaluate_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _due(state: AlertState, now: float, repeat_seconds: float) -> bool:
    if state.claim_expires is not None and state.claim_expires >= now:
        return False
    if state.state == "resolved":
        return state.notified_at is None
    return state.notified_at is None or state.notified_at <= now - repeat_seconds


def alerts_view(store: Store, config: BridgeConfig) -> dict[str, Any]:
    """The configured rules and every stored alert (for the admin API and the dashboard)."""
    from .notify import iso

    alerts: AlertsConfig = config.alerts or AlertsConfig()
    rules = [{"name": r.name, "when": r.when, "params": dict(r.params), "notify": list(r.notify),
              "repeat_minutes": r.repeat_minutes, "enabled": r.enabled} for r in alerts.rules.values()]
    items = []
    for s in store.alert_states():
        items.append({"rule": s.rule, "subject": s.subject, "state": s.state, "episode": s.episode,
                      "summary": s.summary, "facts": dict(s.facts), "started_at": iso(s.started_at),
                      "last_seen_at": iso(s.last_seen_at), "resolved_at": iso(s.resolved_at),
                      "last_notice_at": iso(s.notified_at), "notices": s.notices, "last_error": s.last_error,
                      "configured": s.rule in alerts.rules})
    items.sort(key=lambda a: (a["state"] != "firing", a["rule"], a["subject"]))
    return {"rules": rules, "alerts": items, "firing": sum(a["state"] == "firing" for a in items),
            "notifiers": [n for n in ("webhook", "email") if getattr(alerts, n) is not None]}
