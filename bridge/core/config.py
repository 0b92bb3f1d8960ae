"""Load and validate ``bridge.yaml``.

The shape of this file is part of the product (hospital analysts write it by hand), so validation
reports *every* problem at once, each with the dotted path of the offending key and, for a typo, the
key it probably meant. Relative paths (``sqlite:///../var/bridge.db``, ``file://inbox``) resolve
against the config file's folder, so the engine behaves the same from any working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bridge.core.model.records import RECORD_TYPES
from bridge.core.model.times import fixed_offset_problem, zone_problem
from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.core.plugin_manager import PluginManager

TOP_KEYS = ("store", "channels", "destinations", "engine", "jobs", "web", "alerts", "logging")
LOGGING_KEYS = ("format",)
CHANNEL_KEYS = ("source", "format", "routes", "options", "order", "max_message_bytes", "description", "enabled",
                "retention", "timezone", "policies", "facility_state", "maps", "intake_journal")
JOURNAL_KEYS = ("dir", "max_bytes", "segment_bytes", "mover_priority")
MOVER_PRIORITIES = ("low", "idle")
ROUTE_KEYS = ("when", "to")
WHEN_KEYS = ("record", "match", "message_type")
ORDER_KEYS = ("by", "mode")
ORDER_BY = ("patient", "encounter", "prescription", "channel", "none")
ORDER_MODES = ("strict", "rotate")
DESTINATION_KEYS = ("url", "format", "retry", "options", "profile", "description", "maps", "passthrough")
RETRY_KEYS = ("max_attempts", "backoff", "initial_seconds", "max_seconds", "jitter")
ENGINE_KEYS = ("workers", "deliverers", "lease_seconds", "poll_seconds", "processes", "delivery_processes",
               "batch_size")
WEB_LIMIT_KEYS = ("threads", "max_queued_connections", "max_request_bytes", "timeout_seconds", "max_request_seconds")
WEB_KEYS = ("listen", "tls", "secret_key_file", "session_hours", "timezone") + WEB_LIMIT_KEYS
WEB_TLS_KEYS = ("cert_file", "key_file")
JOB_KEYS = ("type", "trigger", "channel", "settings", "catch_up", "retry", "lease_seconds", "enabled", "description")
TRIGGER_KEYS = ("cron", "interval_seconds", "timezone")
JOB_RETRY_KEYS = ("max_attempts", "backoff_seconds")
CATCH_UP_POLICIES = ("skip", "run_once")
CORE_JOB_TYPES = ("prune",)  # job types the core provides itself (they need the store; see bridge.core.retention)
RETENTION_KEYS = ("days", "statuses")
# Statuses a retention policy may prune. Never: received, processing, routed (undelivered) and held.
PRUNABLE_STATUSES = ("delivered", "filtered", "rejected", "dead", "failed", "resolved")
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_attempts`` sends in all, waits growing exponentially with jitter."""

    max_attempts: int = 8
    backoff: str = "exponential"
    initial_seconds: float = 1.0
    max_seconds: float = 300.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); ``rand`` in [0, 1)."""
        base = self.initial_seconds if self.backoff == "fixed" else self.initial_seconds * 2 ** (attempt - 1)
        base = min(base, self.max_seconds)
        return max(0.0, base * (1 + self.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class Route:
    to: tuple[str, ...]
    records: tuple[str, ...] = ()
    match: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    message_types: tuple[str, ...] = ()
    """Inbound message types the route takes (``BAR``, ``DFT^P03``): a message's type matches when
    it starts with all the components given. Empty: any type."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Prune a channel's messages older than ``days`` whose status is one of ``statuses``."""

    days: float
    statuses: tuple[str, ...] = ("delivered", "filtered")


@dataclass(frozen=True)
class JournalSettings:
    directory: str
    """This channel's journal directory on this node: ``<intake_journal.dir>/<channel>``."""
    max_bytes: int = 1 << 30
    segment_bytes: int = 64 << 20
    mover_priority: str = "low"
    """``low``: the mover runs at nice 10; ``idle``: only on otherwise idle CPU (SCHED_IDLE)."""


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    source: str
    format: str
    routes: tuple[Route, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    order_by: str = "patient"
    order_mode: str = "strict"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    enabled: bool = True
    retention: RetentionPolicy | None = None
    timezone: str | None = None
    """IANA zone of the sender's clocks: times that arrive without an offset are read in it."""
    policies: tuple[str, ...] | None = None
    """Names of the policies that judge this channel's messages; None (key absent): every registered one."""
    facility_state: str | None = None
    maps: tuple[str, ...] = ()
    """Maps (folders under maps/) run after decoding, before the policy gate and routing (docs/maps.md)."""
    intake_journal: JournalSettings | None = None
    """Opt-in intake journal (MLLP sources, SQLite store): ACK after an append-only file's flush, a
    mover process moves the entries into the store (bridge.core.journal, docs/mllp.md)."""


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    url: str | None
    format: str | None
    retry: RetryPolicy = RetryPolicy()
    options: Mapping[str, Any] = field(default_factory=dict)
    profile: str | None = None
    maps: tuple[str, ...] = ()
    """Maps run on this destination's copy of the routed records, before encoding (docs/maps.md)."""
    passthrough: bool = False
    """HL7v2 → HL7v2: send the sender's message as it came, edited only by the maps' field-position
    steps, instead of encoding the records (docs/maps.md)."""


@dataclass(frozen=True)
class EngineSettings:
    workers: int = 2
    deliverers: int = 2
    lease_seconds: float = 60.0
    poll_seconds: float = 0.2
    processes: int = 0
    """Worker processes (``bridge run`` children running workers and deliverers); 0: threads in this process."""
    delivery_processes: int = 0
    """Delivery processes (``bridge run`` children running only the ``deliverers`` threads, each); the
    workers then run without deliverers beside them. 0: the deliverers run with the workers."""
    batch_size: int = 4
    """Messages (or outbox rows) one claim takes and one transaction settles."""


@dataclass(frozen=True)
class JobConfig:
    """A scheduled job (``jobs: {NAME: …}``): exactly one of ``cron`` / ``interval_seconds`` is set."""

    name: str
    type: str
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    channel: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    catch_up: str = "skip"
    max_attempts: int = 3
    backoff_seconds: float = 10.0
    lease_seconds: float = 300.0
    enabled: bool = True


@dataclass(frozen=True)
class BridgeConfig:
    path: str
    config_dir: str
    store_url: str
    channels: Mapping[str, ChannelConfig]
    destinations: Mapping[str, DestinationConfig]
    engine: EngineSettings = EngineSettings()
    jobs: Mapping[str, JobConfig] = field(default_factory=dict)
    sections: Mapping[str, Any] = field(default_factory=dict)
    web: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[tuple[str, str], ...] = ()
    """(path, message) pairs for a config that works but probably not as meant; ``bridge check`` prints them."""
    maps: Mapping[str, Any] = field(default_factory=dict)
    """Every map beside the config by name, compiled (bridge.core.maps)."""
    alerts: Any = None
    """The ``alerts:`` section (bridge.core.alerts.config.AlertsConfig); None when built without one."""
    log_format: str = "text"
    """``logging: {format: text|json}``: plain lines or JSON lines (bridge.core.logsetup)."""


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.add(_join(path, str(key)), f"unknown key{extra}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str, problems: _Problems) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(path, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _number(value: Any, path: str, problems: _Problems, *, kind: type = float, minimum: float = 0) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        problems.add(path, f"expected a {'whole ' if kind is int else ''}number, got {value!r}")
        return None
    if value < minimum:
        problems.add(path, f"must be at least {minimum}, got {value!r}")
        return None
    return kind(value)


def resolve_store_url(url: str, config_dir: str) -> str:
    """``sqlite:///rel.db`` is relative to the config folder, ``sqlite:////abs.db`` absolute."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path == ":memory:" or os.path.isabs(path):
            return url
        return "sqlite:///" + os.path.normpath(os.path.join(config_dir, path))
    return url


def _postgres_store_url(url: str, problems: _Problems) -> str:
    """A PostgreSQL store URL is kept as written; a bad ``pool_size`` is reported (password hidden)."""
    from bridge.core.store.postgres import split_url
    from bridge.errors import StoreError

    try:
        split_url(url)
    except StoreError as exc:
        problems.add("store", str(exc))
        return "sqlite:///:memory:"
    return url


def load_config(path: str | os.PathLike[str], plugins: PluginManager | None = None) -> BridgeConfig:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read config: {exc.strerror or exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError([(str(path), f"invalid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(data, config_dir=str(path.resolve().parent), path=str(path), plugins=plugins)


def parse_config(data: Any, *, config_dir: str, path: str = "<config>",
                 plugins: PluginManager | None = None) -> BridgeConfig:
    problems = _Problems()
    data = _mapping(data, "", problems)
    sections = plugins.config_sections() if plugins else {}
    problems.unknown_keys(data, TOP_KEYS + tuple(sections), "")

    store = data.get("store", "sqlite:///var/bridge.db")
    if isinstance(store, str) and store.startswith(("postgresql://", "postgres://")):
        store = _postgres_store_url(store, problems)
    elif not isinstance(store, str) or not store.startswith("sqlite:///"):
        problems.add("store", f"expected a store URL like sqlite:///var/bridge.db or"
                              f" postgresql://user@host:5432/bridge, got {store!r}")
        store = "sqlite:///:memory:"

    destinations = _destinations(_mapping(data.get("destinations"), "destinations", problems), problems, plugins)
    channels = _channels(_mapping(data.get("channels"), "channels", problems), set(destinations), problems, plugins)
    engine = _engine(_mapping(data.get("engine"), "engine", problems), problems)
    channels = _resolve_journals(channels, config_dir, store, problems)
    jobs = _jobs(_mapping(data.get("jobs"), "jobs", problems), set(channels), problems, plugins)
    web = _web(_mapping(data.get("web"), "web", problems), config_dir, problems)
    log_format = _log_format(_mapping(data.get("logging"), "logging", problems), problems)
    for name, section in sections.items():
        if name in data:
            value = data[name]
            if isinstance(value, Mapping):  # relative paths in a section resolve against the config's folder
                value = {**value, "config_dir": config_dir}
            for sub, message in section.validate(value):
                problems.add(_join(name, sub), message)
    from bridge.core.maps.config import load_config_maps

    maps = load_config_maps(config_dir, channels, destinations, problems.add)
    from bridge.core.alerts.config import parse_alerts

    alerts = parse_alerts(data.get("alerts"), config_dir=config_dir, channels=channels, destinations=destinations,
                          jobs=jobs, add=problems.add)
    if plugins is not None:  # options: only what the plugins declare they read (bridge.core.options)
        _plugin_options(channels, destinations, {n: data[n] for n in sections if n in data}, plugins, problems)
    if problems.items:
        raise ConfigError(problems.items)
    warnings = _zone_warnings(channels, destinations, plugins)
    return BridgeConfig(
        path=path,
        config_dir=config_dir,
        store_url=resolve_store_url(store, config_dir),
        channels=channels,
        destinations=destinations,
        engine=engine,
        jobs=jobs,
        sections={name: data[name] for name in sections if name in data},
        web=web,
        warnings=warnings,
        maps=maps,
        alerts=alerts,
        log_format=log_format,
    )


def _plugin_options(channels: Mapping[str, ChannelConfig], destinations: Mapping[str, DestinationConfig],
                    sections: Mapping[str, Any], plugins: PluginManager, problems: _Problems) -> None:
    """Refuse options no plugin reads (a typo, or a key meant for another format) with their path."""
    from bridge.core.options import config_problems, section_problems

    already = {path for path, _ in problems.items}
    for path, message in config_problems(channels, destinations, plugins) + section_problems(sections, plugins,
                                                                                              already):
        problems.add(path, message)


def _log_format(raw: Mapping[str, Any], problems: _Problems) -> str:
    """``logging: {format: text|json}``; the level stays in ``BRIDGE_LOG_LEVEL`` (an operator turns
    on DEBUG for one run without editing the config)."""
    from bridge.core.logsetup import LOG_FORMATS

    problems.unknown_keys(raw, LOGGING_KEYS, "logging")
    value = raw.get("format", "text")
    if value not in LOG_FORMATS:
        problems.add("logging.format", f"expected one of {', '.join(LOG_FORMATS)}, got {value!r}")
        return "text"
    return value


def _web(raw: Mapping[str, Any], config_dir: str, problems: _Problems) -> dict[str, Any]:
    """``web: {listen: "127.0.0.1:8080", tls: {cert_file, key_file}, secret_key_file, session_hours, timezone}``;
    file paths resolve against the config folder. ``timezone`` is the site's IANA zone the dashboard shows
    times in (default UTC), checked now like a channel's zone."""
    problems.unknown_keys(raw, WEB_KEYS, "web")
    out: dict[str, Any] = {}
    listen = raw.get("listen")
    if listen is not None:
        host, _, port = str(listen).rpartition(":")
        if not isinstance(listen, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.add("web.listen", f"expected HOST:PORT such as 127.0.0.1:8080, got {listen!r}")
        else:
            out["listen"] = (host.strip("[]"), int(port))
    if "tls" in raw:
        tls = _mapping(raw.get("tls"), "web.tls", problems)
        problems.unknown_keys(tls, WEB_TLS_KEYS, "web.tls")
        for key in WEB_TLS_KEYS:
            if not isinstance(tls.get(key), str) or not tls.get(key):
                problems.add(f"web.tls.{key}", "is required (a PEM file path)")
        if all(isinstance(tls.get(k), str) and tls.get(k) for k in WEB_TLS_KEYS):
            out["tls"] = {k: os.path.join(config_dir, tls[k]) for k in WEB_TLS_KEYS}
    if raw.get("secret_key_file") is not None:
        if not isinstance(raw["secret_key_file"], str):
            problems.add("web.secret_key_file", f"expected a file path, got {raw['secret_key_file']!r}")
        else:
            out["secret_key_file"] = os.path.join(config_dir, raw["secret_key_file"])
    if "session_hours" in raw:
        hours = _number(raw["session_hours"], "web.session_hours", problems, minimum=0.01)
        if hours is not None:
            out["session_hours"] = hours
    limits = {key: _number(raw[key], f"web.{key}", problems, kind=float if key.endswith("_seconds") else int,
                           minimum=0.1 if key.endswith("_seconds") else 1)
              for key in WEB_LIMIT_KEYS if key in raw}
    out["limits"] = {key: value for key, value in limits.items() if value is not None}
    if "timezone" in raw:
        problem = zone_problem(raw["timezone"])
        if problem:
            problems.add("web.timezone", problem)
        else:
            out["timezone"] = str(raw["timezone"])
    return out


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def _known_format(name: Any, path: str, problems: _Problems, plugins: PluginManager | None) -> str | None:
    if not isinstance(name, str) or not name:
        problems.add(path, f"expected a format name, got {name!r}")
        return None
    if plugins is not None and name not in plugins.formats():
        problems.add(path, f"unknown format {name!r} (known: {', '.join(sorted(plugins.formats())) or 'none'})")
    return name


def _url(value: Any, path: str, problems: _Problems, plugins: PluginManager | None, role: str) -> str | None:
    if not isinstance(value, str) or ":" not in value:
        problems.add(path, f"expected a URL such as file:///path/to/folder, got {value!r}")
        return None
    if plugins is not None:
        spec = plugins.transports().get(_scheme(value))
        factory = getattr(spec, role, None) if spec else None
        if factory is None:
            usable = sorted(s for s, t in plugins.transports().items() if getattr(t, role))
            problems.add(path, f"no transport can be a {role} for scheme {_scheme(value)!r} "
                               f"(known: {', '.join(usable) or 'none'})")
    return value


def _channels(raw: Mapping[str, Any], destination_names: set[str], problems: _Problems,
              plugins: PluginManager | None) -> dict[str, ChannelConfig]:
    channels = {}
    for name, body in raw.items():
        path = f"channels.{name}"
        body = _mapping(body, path, problems)
        problems.unknown_keys(body, CHANNEL_KEYS, path)
        if "source" not in body:
            problems.add(f"{path}.source", "is required")
        if "format" not in body:
            problems.add(f"{path}.format", "is required")
        source = _url(body.get("source"), f"{path}.source", problems, plugins, "source") if "source" in body else ""
        fmt = _known_format(body.get("format"), f"{path}.format", problems, plugins) if "format" in body else ""
        routes_raw = body.get("routes", [])
        if not isinstance(routes_raw, list):
            problems.add(f"{path}.routes", "expected a list of routes")
            routes_raw = []
        routes = tuple(
            r for i, item in enumerate(routes_raw)
            if (r := _route(item, f"{path}.routes[{i}]", destination_names, problems)) is not None
        )
        order = _mapping(body.get("order"), f"{path}.order", problems)
        problems.unknown_keys(order, ORDER_KEYS, f"{path}.order")
        order_by = order.get("by", "patient")
        if order_by not in ORDER_BY:
            problems.add(f"{path}.order.by", f"expected one of {', '.join(ORDER_BY)}, got {order_by!r}")
        mode = order.get("mode", "strict")
        if mode not in ORDER_MODES:
            problems.add(f"{path}.order.mode", f"expected one of {', '.join(ORDER_MODES)}, got {mode!r}")
        limit = body.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
        limit = _number(limit, f"{path}.max_message_bytes", problems, kind=int, minimum=1)
        channels[str(name)] = ChannelConfig(
            name=str(name),
            source=source or "",
            format=fmt or "",
            routes=routes,
            options=dict(_mapping(body.get("options"), f"{path}.options", problems)),
            order_by=order_by,
            order_mode=mode,
            max_message_bytes=limit or DEFAULT_MAX_MESSAGE_BYTES,
            enabled=bool(body.get("enabled", True)),
            retention=_retention(body.get("retention"), f"{path}.retention", problems),
            timezone=_channel_zone(body, path, problems),
            policies=_channel_policies(body, f"{path}.policies", problems, plugins),
            facility_state=_facility_state(body.get("facility_state"), f"{path}.facility_state", problems),
            maps=_map_names(body.get("maps"), f"{path}.maps", problems),
            intake_journal=_journal(body.get("intake_journal"), str(name), source or "", f"{path}.intake_journal",
                                    problems),
        )
    return channels


def _resolve_journals(channels: dict[str, ChannelConfig], config_dir: str, store: str,
                      problems: _Problems) -> dict[str, ChannelConfig]:
    out = {}
    for name, ch in channels.items():
        if ch.intake_journal is not None:
            if not store.startswith("sqlite:"):
                problems.add(f"channels.{name}.intake_journal", "an intake journal needs a SQLite store"
                             " (PostgreSQL: not yet)")
            directory = os.path.normpath(os.path.join(config_dir, ch.intake_journal.directory))
            ch = dataclasses.replace(ch, intake_journal=dataclasses.replace(ch.intake_journal, directory=directory))
        out[name] = ch
    return out


def _journal(value: Any, channel: str, source: str, path: str, problems: _Problems) -> JournalSettings | None:
    """``intake_journal: DIR`` or ``{dir: DIR, max_bytes: N, segment_bytes: N}``; the directory is
    made absolute (against the config's folder) by ``parse_config``."""
    if value is None or value is False:
        return None
    body = {"dir": value} if isinstance(value, str) else _mapping(value, path, problems)
    problems.unknown_keys(body, JOURNAL_KEYS, path)
    folder = body.get("dir")
    if not isinstance(folder, str) or not folder.strip():
        problems.add(f"{path}.dir" if not isinstance(value, str) else path, "expected a directory path")
        return None
    if source.split(":", 1)[0].lower() not in ("mllp", "mllps"):
        problems.add(path, f"an intake journal is for MLLP listeners (mllp://, mllps://), not {source!r}")
        return None
    max_bytes = _number(body.get("max_bytes", 1 << 30), f"{path}.max_bytes", problems, kind=int, minimum=1 << 20)
    segment = _number(body.get("segment_bytes", 64 << 20), f"{path}.segment_bytes", problems, kind=int,
                      minimum=1 << 16)
    folder = os.path.expandvars(folder)  # dir: var/journal-$BRIDGE_NODE gives nodes sharing a config their own
    if "$" in folder:
        problems.add(f"{path}.dir" if not isinstance(value, str) else path,
                     f"an environment variable in {folder!r} is not set")
        return None
    priority = body.get("mover_priority", "low")
    if priority not in MOVER_PRIORITIES:
        problems.add(f"{path}.mover_priority", f"expected one of {', '.join(MOVER_PRIORITIES)}, got {priority!r}")
        priority = "low"
    return JournalSettings(os.path.join(folder, channel), max_bytes or (1 << 30), segment or (64 << 20), priority)


def _channel_zone(body: Mapping[str, Any], path: str, problems: _Problems) -> str | None:
    """The channel's ``timezone:`` (an IANA name), checked now so a typo fails at start, not per message."""
    if body.get("timezone") is None:
        return None
    problem = zone_problem(body["timezone"])
    if problem:
        problems.add(f"{path}.timezone", problem)
        return None
    return str(body["timezone"])


def _channel_policies(body: Mapping[str, Any], path: str, problems: _Problems,
                      plugins: PluginManager | None) -> tuple[str, ...] | None:
    """``policies: [name, …]`` or ``[]``; absent means every registered policy (fail closed)."""
    if "policies" not in body:
        return None
    value = body["policies"]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.add(path, f"expected a list of policy names such as [telehealth-controlled-substances] or [], "
                           f"got {value!r}")
        return None
    known = sorted(plugins.policies()) if plugins is not None else None
    for i, name in enumerate(value):
        if known is not None and name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            problems.add(f"{path}[{i}]", f"unknown policy {name!r}"
                                         + (f" (did you mean {hint[0]!r}?)" if hint
                                            else f" (known: {', '.join(known) or 'none'})"))
    return tuple(value)


def _facility_state(value: Any, path: str, problems: _Problems) -> str | None:
    """The two-letter state of the facility a channel serves (where in-person patients are)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 2 or not value.isalpha() or not value.isupper():
        problems.add(path, f"expected a two-letter state code such as IA, got {value!r}")
        return None
    return value


def _retention(value: Any, path: str, problems: _Problems) -> RetentionPolicy | None:
    if value is None:
        return None
    body = _mapping(value, path, problems)
    problems.unknown_keys(body, RETENTION_KEYS, path)
    if "days" not in body:
        problems.add(f"{path}.days", "is required (how many days to keep a message)")
        return None
    days = _number(body["days"], f"{path}.days", problems, minimum=0)
    statuses = body.get("statuses", ["delivered", "filtered"])
    statuses = [statuses] if isinstance(statuses, str) else statuses
    if not isinstance(statuses, list) or not statuses:
        problems.add(f"{path}.statuses", "expected a list of message statuses")
        return None
    allowed = ", ".join(PRUNABLE_STATUSES)
    for i, status in enumerate(statuses):
        if status not in PRUNABLE_STATUSES:
            hint = difflib.get_close_matches(str(status), PRUNABLE_STATUSES, n=1)
            problems.add(f"{path}.statuses[{i}]", f"{status!r} cannot be pruned (allowed: {allowed}; waiting and "
                                                  "held messages are never pruned)"
                                                  + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return RetentionPolicy(days=days, statuses=tuple(statuses)) if days is not None else None


def _jobs(raw: Mapping[str, Any], channel_names: set[str], problems: _Problems,
          plugins: PluginManager | None) -> dict[str, JobConfig]:
    known_types = sorted(set(CORE_JOB_TYPES) | set(plugins.job_types() if plugins else ()))
    out = {}
    for name, body in raw.items():
        path = f"jobs.{name}"
        body = _mapping(body, path, problems)
        problems.unknown_keys(body, JOB_KEYS, path)
        job_type = _job_type(body.get("type"), f"{path}.type", known_types, problems, check=plugins is not None)
        trigger = _trigger(body.get("trigger"), f"{path}.trigger", problems)
        channel = body.get("channel")
        if channel is not None and channel not in channel_names:
            hint = difflib.get_close_matches(str(channel), sorted(channel_names), n=1)
            problems.add(f"{path}.channel", f"unknown channel {channel!r}"
                                            + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        catch_up = body.get("catch_up", "skip")
        if catch_up not in CATCH_UP_POLICIES:
            problems.add(f"{path}.catch_up", f"expected one of {', '.join(CATCH_UP_POLICIES)}, got {catch_up!r}")
        out[str(name)] = JobConfig(
            name=str(name), type=job_type, channel=channel,
            settings=dict(_mapping(body.get("settings"), f"{path}.settings", problems)),
            catch_up=catch_up if catch_up in CATCH_UP_POLICIES else "skip",
            enabled=bool(body.get("enabled", True)),
            **trigger, **_job_numbers(body, path, problems),
        )
    return out


def _job_type(value: Any, path: str, known: list[str], problems: _Problems, *, check: bool) -> str:
    if not isinstance(value, str) or not value:
        problems.add(path, f"is required (known: {', '.join(known)})")
        return ""
    if check and value not in known:
        hint = difflib.get_close_matches(value, known, n=1)
        problems.add(path, f"unknown job type {value!r}"
                           + (f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(known)})"))
    return value


def _job_numbers(body: Mapping[str, Any], path: str, problems: _Problems) -> dict[str, Any]:
    """``retry: {max_attempts, backoff_seconds}`` and ``lease_seconds``, validated."""
    retry = _mapping(body.get("retry"), f"{path}.retry", problems)
    problems.unknown_keys(retry, JOB_RETRY_KEYS, f"{path}.retry")
    values: dict[str, Any] = {}
    if "max_attempts" in retry:
        values["max_attempts"] = _number(retry["max_attempts"], f"{path}.retry.max_attempts", problems,
                                         kind=int, minimum=1)
    if "backoff_seconds" in retry:
        values["backoff_seconds"] = _number(retry["backoff_seconds"], f"{path}.retry.backoff_seconds", problems)
    if "lease_seconds" in body:
        values["lease_seconds"] = _number(body["lease_seconds"], f"{path}.lease_seconds", problems, minimum=1)
    return {k: v for k, v in values.items() if v is not None}


def _trigger(value: Any, path: str, problems: _Problems) -> dict[str, Any]:
    """``{cron: "*/5 * * * *"}`` or ``{interval_seconds: 30}`` (optionally ``timezone``, default UTC)."""
    body = _mapping(value, path, problems)
    if value is None:
        problems.add(path, "is required: {cron: \"*/5 * * * *\"} or {interval_seconds: 30}")
        return {}
    problems.unknown_keys(body, TRIGGER_KEYS, path)
    has_cron, has_interval = "cron" in body, "interval_seconds" in body
    if has_cron == has_interval:
        problems.add(path, "give exactly one of cron or interval_seconds")
        return {}
    timezone = body.get("timezone", "UTC")
    problem = zone_problem(timezone)  # the same rule as a channel's zone
    if problem:
        problems.add(f"{path}.timezone", problem)
        return {}
    if has_interval:
        seconds = _number(body["interval_seconds"], f"{path}.interval_seconds", problems, minimum=1)
        return {"interval_seconds": seconds, "timezone": str(timezone)} if seconds is not None else {}
    cron = body["cron"]
    if not isinstance(cron, str):
        problems.add(f"{path}.cron", f"expected a crontab string such as \"*/5 * * * *\", got {cron!r}")
        return {}
    try:
        from apscheduler.triggers.cron import CronTrigger

        CronTrigger.from_crontab(cron, timezone=str(timezone))
    except ValueError as exc:
        problems.add(f"{path}.cron", f"invalid crontab {cron!r}: {exc}")
        return {}
    return {"cron": cron, "timezone": str(timezone)}


def _route(item: Any, path: str, destination_names: set[str], problems: _Problems) -> Route | None:
    body = _mapping(item, path, problems)
    problems.unknown_keys(body, ROUTE_KEYS, path)
    to = body.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        problems.add(f"{path}.to", "expected a list of destination names")
        return None
    for i, dest in enumerate(to):
        if dest not in destination_names:
            hint = difflib.get_close_matches(str(dest), sorted(destination_names), n=1)
            problems.add(f"{path}.to[{i}]", f"unknown destination {dest!r}"
                                            + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    when = _mapping(body.get("when"), f"{path}.when", problems)
    problems.unknown_keys(when, WHEN_KEYS, f"{path}.when")
    kinds = when.get("record", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list):
        problems.add(f"{path}.when.record", "expected a record kind or a list of them")
        kinds = []
    for kind in kinds:
        if kind not in RECORD_TYPES:
            hint = difflib.get_close_matches(str(kind), sorted(RECORD_TYPES), n=1)
            problems.add(f"{path}.when.record", f"unknown record kind {kind!r}"
                                                + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    match = _mapping(when.get("match"), f"{path}.when.match", problems)
    return Route(
        to=tuple(str(d) for d in to),
        records=tuple(kinds),
        match={str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in match.items()},
        message_types=_message_types(when.get("message_type"), f"{path}.when.message_type", problems),
    )


def _message_types(raw: Any, path: str, problems: _Problems) -> tuple[str, ...]:
    """``message_type: BAR`` or a list (``[DFT^P03, BAR^P01]``): message codes, or code^event."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        problems.add(path, "expected a message type (e.g. BAR or DFT^P03) or a list of them")
        return ()
    return tuple(i.strip().upper() for i in items)


def _destinations(raw: Mapping[str, Any], problems: _Problems,
                  plugins: PluginManager | None) -> dict[str, DestinationConfig]:
    out = {}
    for name, body in raw.items():
        path = f"destinations.{name}"
        body = _mapping(body, path, problems)
        problems.unknown_keys(body, DESTINATION_KEYS, path)
        profile = body.get("profile")
        profile_format = None
        if profile is not None and plugins is not None:
            spec = plugins.destination_profiles().get(profile)
            if spec is None:
                known = ", ".join(sorted(plugins.destination_profiles())) or "none"
                problems.add(f"{path}.profile", f"unknown profile {profile!r} (known: {known})")
            else:
                profile_format = spec.format
        url = body.get("url")
        if url is None and profile is None:
            problems.add(f"{path}.url", "is required")
        elif url is not None and profile is None:
            url = _url(url, f"{path}.url", problems, plugins, "destination")
        fmt = body.get("format", profile_format)
        if fmt is None:
            problems.add(f"{path}.format", "is required")
        else:
            fmt = _known_format(fmt, f"{path}.format", problems, plugins)
        retry = _retry(_mapping(body.get("retry"), f"{path}.retry", problems), f"{path}.retry", problems)
        _zone_options(_mapping(body.get("options"), f"{path}.options", problems), f"{path}.options", problems)
        out[str(name)] = DestinationConfig(
            name=str(name),
            url=url,
            format=fmt,
            retry=retry,
            options=dict(_mapping(body.get("options"), f"{path}.options", problems)),
            profile=profile,
            maps=_map_names(body.get("maps"), f"{path}.maps", problems),
            passthrough=_passthrough(body.get("passthrough"), fmt, f"{path}.passthrough", problems),
        )
    return out


def _passthrough(value: Any, fmt: str | None, path: str, problems: _Problems) -> bool:
    """``passthrough: true``: only for an hl7v2 destination (it sends the sender's HL7v2 message)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        problems.add(path, f"expected true or false, got {value!r}")
        return False
    if value and fmt != "hl7v2":
        problems.add(path, f"only an hl7v2 destination can pass the sender's HL7v2 message through (format: {fmt})")
        return False
    return value


def _zone_options(options: Mapping[str, Any], path: str, problems: _Problems) -> None:
    """Destination time options, checked at start for every format: ``timezone`` (the receiver's
    IANA zone, e.g. HL7v2) and the fixed-offset fallback ``default_timezone`` (FHIR and vendors)."""
    if "timezone" in options:
        problem = zone_problem(options["timezone"])
        if problem:
            problems.add(f"{path}.timezone", problem)
    if "default_timezone" in options:
        problem = fixed_offset_problem(options["default_timezone"])
        if problem:
            problems.add(f"{path}.default_timezone", problem)


def _zone_warnings(channels: Mapping[str, ChannelConfig], destinations: Mapping[str, DestinationConfig],
                   plugins: PluginManager | None) -> tuple[tuple[str, str], ...]:
    """A channel without ``timezone`` feeding a format that needs one works until the first local
    time arrives, then fails that message: say so at start."""
    if plugins is None:
        return ()
    formats = plugins.formats()
    warnings = []
    for channel in channels.values():
        own = formats.get(channel.format)
        if channel.timezone is not None or getattr(own, "needs_timezone", False):
            continue  # a format that needs zones (FHIR) also always carries them on what it receives
        fed = sorted({name for route in channel.routes for name in route.to if name in destinations})
        for name in fed:
            needs = _needs_zone(destinations[name], formats, plugins)
            fixed = destinations[name].options.get("default_timezone")
            if needs:
                outcome = (f"get the fixed offset {fixed} there (destinations.{name}.options.default_timezone), "
                           "an hour wrong half the year where daylight saving applies" if fixed else "will fail there")
                warnings.append((f"channels.{channel.name}.timezone", (
                    f"not set, but the channel feeds destination {name!r} whose {needs} needs a time zone: "
                    f"times the sender writes without an offset {outcome}; set it to the sender's IANA zone "
                    "(e.g. America/Chicago)")))
    return tuple(warnings)


def _needs_zone(destination: DestinationConfig, formats: Mapping[str, Any], plugins: PluginManager) -> str | None:
    """``"profile epic"`` or ``"format fhir"`` when the destination cannot send a local time, else None."""
    profile = plugins.destination_profiles().get(destination.profile) if destination.profile else None
    if profile is not None and getattr(profile, "needs_timezone", False):
        return f"profile {profile.name}"
    fmt = destination.format
    if fmt in formats and getattr(formats[fmt], "needs_timezone", False):
        return f"format {fmt}"
    return None


def _retry(body: Mapping[str, Any], path: str, problems: _Problems) -> RetryPolicy:
    problems.unknown_keys(body, RETRY_KEYS, path)
    values: dict[str, Any] = {}
    if "max_attempts" in body:
        values["max_attempts"] = _number(body["max_attempts"], f"{path}.max_attempts", problems, kind=int, minimum=1)
    if "backoff" in body:
        if body["backoff"] not in ("exponential", "fixed"):
            problems.add(f"{path}.backoff", f"expected exponential or fixed, got {body['backoff']!r}")
        else:
            values["backoff"] = body["backoff"]
    for key in ("initial_seconds", "max_seconds", "jitter"):
        if key in body:
            values[key] = _number(body[key], f"{path}.{key}", problems)
    if values.get("jitter") is not None and values["jitter"] > 1:
        problems.add(f"{path}.jitter", "must be between 0 and 1")
    return RetryPolicy(**{k: v for k, v in values.items() if v is not None})


def _engine(body: Mapping[str, Any], problems: _Problems) -> EngineSettings:
    problems.unknown_keys(body, ENGINE_KEYS, "engine")
    values: dict[str, Any] = {}
    for key in ("workers", "deliverers"):
        if key in body:
            values[key] = _number(body[key], f"engine.{key}", problems, kind=int, minimum=1)
    for key in ("lease_seconds", "poll_seconds"):
        if key in body:
            values[key] = _number(body[key], f"engine.{key}", problems, minimum=0.01)
    for key in ("processes", "delivery_processes"):
        if key in body:
            values[key] = _number(body[key], f"engine.{key}", problems, kind=int, minimum=0)
    if "batch_size" in body:
        values["batch_size"] = _number(body["batch_size"], "engine.batch_size", problems, kind=int, minimum=1)
    return EngineSettings(**{k: v for k, v in values.items() if v is not None})


def _map_names(value: Any, path: str, problems: _Problems) -> tuple[str, ...]:
    from bridge.core.maps.config import map_names

    return map_names(value, path, problems.add)
