"""Alert conditions: what each rule's ``when:`` checks, and the one read each condition makes.

A condition returns the *findings* that hold now: a subject (``destination:ehr``, ``channel:lab``,
``holds``, ``certificate:channels.lab.options.cert_file``, ``job:nightly``) with a one-line summary
and a few facts. Summaries and facts are built only from configured names, counts, ages and dates —
never from message content or error text, so no alert can carry PHI.

Each condition reads its state through one small ``read_*`` function below; the engine's shared
per-destination state can later replace a reader without touching the condition.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography import x509

from .config import AlertRule

if TYPE_CHECKING:
    from bridge.core.config import BridgeConfig
    from bridge.core.store import Store
    from bridge.core.store.base import DestinationDelivery

CERTIFICATE_KEYS = ("cert_file", "ca_file", "client_ca_file")
"""Option keys that name a PEM certificate file, in channels' and destinations' ``options:``."""
NOT_LISTENERS = ("file",)
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Finding:
    subject: str
    summary: str
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Situation:
    """What the conditions look at in one evaluation round."""

    store: Store
    config: BridgeConfig
    now: float
    engine: Any = None


# --- reads (one per condition) ---------------------------------------------------------------------


def read_destination_delivery(store: Store, since: float) -> Mapping[str, DestinationDelivery]:
    return store.destination_delivery(since)


def read_channel_errors(store: Store, since: float) -> Mapping[str, tuple[int, int]]:
    """Per channel: (messages received since ``since``, of which failed, rejected or dead)."""
    return store.channel_errors(since)


def read_channel_backlog(store: Store) -> Mapping[str, tuple[int, float]]:
    """Per channel with unprocessed messages: (how many, the oldest's receipt time)."""
    return store.channel_backlog()


def read_open_hold_times(store: Store) -> list[float]:
    return [hold.created_at for hold in store.holds("open")]


def read_last_job_runs(store: Store, job: str, count: int) -> list[Mapping[str, Any]]:
    """The job's newest finished scheduled or manual runs, newest first."""
    return [run for run in store.job_run_history(job, limit=count + 5) if run["status"] != "running"][:count]


def read_listener_states(engine: Any, config: BridgeConfig) -> dict[str, bool]:
    """Per enabled listening channel of this engine: is its port accepting? A source that says so
    itself (``listening``) is asked; another is probed with a TCP connection to its address."""
    if engine is None:
        return {}
    states = {}
    for source in getattr(engine, "sources", []):
        channel = getattr(getattr(source, "ctx", None), "channel", None)
        if channel not in config.channels or _scheme(config.channels[channel].source) in NOT_LISTENERS:
            continue
        listening = getattr(source, "listening", None)
        if listening is None:
            listening = _accepts(getattr(source, "host", None), getattr(source, "port", None))
        states[channel] = bool(listening)
    return states


def read_certificates(config: BridgeConfig) -> dict[str, Path]:
    """Every certificate file the config names, by its key path."""
    found = {}
    for kind, items in (("channels", config.channels), ("destinations", config.destinations)):
        for name, item in items.items():
            for key in CERTIFICATE_KEYS:
                value = (item.options or {}).get(key)
                if isinstance(value, str) and value:
                    found[f"{kind}.{name}.options.{key}"] = Path(config.config_dir, value)
    tls = (config.web or {}).get("tls") or {}
    if tls.get("cert_file"):
        found["web.tls.cert_file"] = Path(tls["cert_file"])
    return found


# --- conditions ------------------------------------------------------------------------------------


def destination_failing(rule: AlertRule, seen: Situation) -> list[Finding]:
    """Work is waiting and nothing was delivered for ``minutes``, or everything sent lately went dead."""
    window = rule.params["minutes"] * 60
    since = seen.now - window
    out = []
    for name, d in sorted(read_destination_delivery(seen.store, since).items()):
        if rule.params.get("destination") not in (None, name):
            continue
        delivered_lately = d.last_delivered_at is not None and d.last_delivered_at > since
        stuck = d.pending and d.oldest_pending_at is not None and d.oldest_pending_at <= since
        if delivered_lately or not (stuck or d.dead_recent):
            continue
        idle = _minutes(seen.now - d.last_delivered_at) if d.last_delivered_at else None
        out.append(Finding(
            f"destination:{name}",
            f"destination {name} has delivered nothing for {_minutes(window)} min: {d.pending} waiting"
            f" ({d.retrying} failing), {d.dead_recent} dead letter(s) in the window",
            {"destination": name, "pending": d.pending, "retrying": d.retrying, "dead_in_window": d.dead_recent,
             "oldest_waiting_minutes": _minutes(seen.now - d.oldest_pending_at) if d.oldest_pending_at else None,
             "minutes_since_last_delivery": idle}))
    return out


def channel_error_rate(rule: AlertRule, seen: Situation) -> list[Finding]:
    """At least ``percent`` % of the messages received in the window failed, were rejected or dead."""
    window = rule.params.get("minutes", 60) * 60
    least = rule.params.get("min_messages", 5)
    out = []
    for name, (received, errors) in sorted(read_channel_errors(seen.store, seen.now - window).items()):
        if rule.params.get("channel") not in (None, name) or received < least:
            continue
        percent = round(100 * errors / received, 1)
        if percent >= rule.params["percent"]:
            out.append(Finding(
                f"channel:{name}",
                f"channel {name}: {errors} of {received} messages in the last {_minutes(window)} min failed"
                f" ({percent} %)",
                {"channel": name, "errors": errors, "received": received, "percent": percent,
                 "window_minutes": _minutes(window)}))
    return out


def backlog(rule: AlertRule, seen: Situation) -> list[Finding]:
    """A channel's oldest unprocessed message, or a destination's oldest undelivered one, is older
    than ``minutes`` (without ``channel``/``destination``: every channel and destination)."""
    limit = rule.params["minutes"] * 60
    cutoff = seen.now - limit
    only_channel, only_destination = rule.params.get("channel"), rule.params.get("destination")
    out = []
    if only_destination is None:
        for name, (waiting, oldest) in sorted(read_channel_backlog(seen.store).items()):
            if only_channel in (None, name) and oldest <= cutoff:
                out.append(_backlog("channel", name, waiting, seen.now - oldest, limit))
    if only_channel is None:
        for name, d in sorted(read_destination_delivery(seen.store, seen.now).items()):
            if only_destination in (None, name) and d.oldest_pending_at and d.oldest_pending_at <= cutoff:
                out.append(_backlog("destination", name, d.pending, seen.now - d.oldest_pending_at, limit))
    return out


def _backlog(kind: str, name: str, waiting: int, age: float, limit: float) -> Finding:
    return Finding(f"{kind}:{name}", f"{kind} {name}: {waiting} waiting, the oldest for {_minutes(age)} min"
                                     f" (limit {_minutes(limit)} min)",
                   {kind: name, "waiting": waiting, "oldest_waiting_minutes": _minutes(age)})


def hold_waiting(rule: AlertRule, seen: Situation) -> list[Finding]:
    """Held prescriptions have waited for a pharmacist or prescriber more than ``hours``."""
    cutoff = seen.now - rule.params["hours"] * 3600
    old = [t for t in read_open_hold_times(seen.store) if t <= cutoff]
    if not old:
        return []
    hours = round((seen.now - min(old)) / 3600, 1)
    return [Finding("holds", f"{len(old)} held prescription(s) waiting more than {rule.params['hours']:g} h,"
                             f" the oldest {hours} h", {"waiting": len(old), "oldest_hours": hours})]


def listener_down(rule: AlertRule, seen: Situation) -> list[Finding]:
    """An enabled listener of this engine does not accept connections."""
    out = []
    for name, up in sorted(read_listener_states(seen.engine, seen.config).items()):
        if rule.params.get("channel") in (None, name) and not up:
            out.append(Finding(f"listener:{name}", f"the listener of channel {name} does not accept connections",
                               {"channel": name, "node": socket.gethostname()}))
    return out


def certificate_expiring(rule: AlertRule, seen: Situation) -> list[Finding]:
    """A certificate the config names expires within ``days`` (or has expired, or cannot be read)."""
    out = []
    for key, path in sorted(read_certificates(seen.config).items()):
        try:
            not_after = earliest_expiry(path.read_bytes())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no PEM certificate in it"
            out.append(Finding(f"certificate:{key}", f"the certificate named by {key} cannot be read: {reason}",
                               {"config_key": key, "readable": False}))
            continue
        days = round((not_after.timestamp() - seen.now) / 86400, 1)
        if days <= rule.params["days"]:
            state = "expired" if days < 0 else f"expires in {days:g} day(s)"
            out.append(Finding(f"certificate:{key}", f"the certificate named by {key} {state}"
                                                     f" ({not_after.date().isoformat()})",
                               {"config_key": key, "days_left": days, "not_after": not_after.isoformat()}))
    return out


def job_failing(rule: AlertRule, seen: Situation) -> list[Finding]:
    """A job's last ``runs`` finished runs (default 1) all failed."""
    count = rule.params.get("runs", 1)
    names = [rule.params["job"]] if rule.params.get("job") else sorted(seen.config.jobs)
    out = []
    for name in names:
        runs = read_last_job_runs(seen.store, name, count)
        if len(runs) == count and all(run["status"] == "failed" for run in runs):
            out.append(Finding(f"job:{name}", f"job {name}: the last {count} run(s) failed",
                               {"job": name, "failed_runs": count, "last_slot": runs[0]["slot"]}))
    return out


CONDITION_CHECKS: dict[str, Callable[[AlertRule, Situation], list[Finding]]] = {
    "destination_failing": destination_failing,
    "channel_error_rate": channel_error_rate,
    "backlog": backlog,
    "hold_waiting": hold_waiting,
    "listener_down": listener_down,
    "certificate_expiring": certificate_expiring,
    "job_failing": job_failing,
}


# --- helpers ---------------------------------------------------------------------------------------


def earliest_expiry(pem: bytes) -> datetime.datetime:
    """The earliest ``notAfter`` of the PEM certificates in a file (a chain expires with its first)."""
    certificates = x509.load_pem_x509_certificates(pem)
    return min(cert.not_valid_after_utc for cert in certificates)


def _accepts(host: str | None, port: int | None) -> bool:
    if not port:
        return False
    target = "127.0.0.1" if host in (None, "", "0.0.0.0") else ("::1" if host == "::" else host)
    try:
        with socket.create_connection((target, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 1)


def evaluate_rule(rule: AlertRule, seen: Situation) -> list[Finding]:
    return CONDITION_CHECKS[rule.when](rule, seen)


__all__ = ["CONDITION_CHECKS", "Finding", "Situation", "evaluate_rule", "earliest_expiry"]
